"""docs/ARCHITECTURE.md opens with the data flow in one picture whose boxes are the folder and
file names: every name in it must be a file of the checkout, and every module of the product's
packages must stand in it, so a reader can go from the picture to the code and back."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "batch", "evaluation", "functions", "infra", "models")


def _picture() -> str:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split("## The data flow in one picture", 1)[1]
    return section.split("```", 2)[1]


def _named_files(picture: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*\.py", picture))


def test_the_picture_comes_first():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    first_section = re.search(r"^## .*$", text, flags=re.M).group(0)
    assert first_section == "## The data flow in one picture"


def test_every_name_in_the_picture_is_a_file_or_folder_of_the_checkout():
    picture = _picture()
    modules = {p.name for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    missing = sorted(_named_files(picture) - modules)
    assert not missing, f"the picture names files that do not exist: {missing}"
    folders = set(re.findall(r"(?<![\w/.])([a-z_]+(?:/[a-z_]+)*)/(?=[\s(:])", picture))
    assert {"app", "batch", "functions", "evaluation", "infra", "models"} <= folders
    gone = sorted(f for f in folders if not any((ROOT / pkg / f).is_dir() or (ROOT / f).is_dir()
                                                for pkg in ("", *PACKAGES)))
    assert not gone, f"the picture names folders that do not exist: {gone}"


def test_every_module_of_the_product_stands_in_the_picture():
    named = _named_files(_picture())
    absent = sorted(str(p.relative_to(ROOT)) for pkg in PACKAGES
                    for p in (ROOT / pkg).rglob("*.py")
                    if p.name != "__init__.py" and p.name not in named)
    assert not absent, f"modules the picture does not show (add them to their box): {absent}"
