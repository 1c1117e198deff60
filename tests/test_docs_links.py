"""No link of the project points to a missing file: every `docs/X.md`-like path in the code,
the Terraform, README.md and docs/, and every relative markdown link of a page. And the pages
written for `recsys` users spell its flags as `--help` does."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"node_modules", "__pycache__", "recsys.egg-info"}  # and every .folder (.venv, .git)
DOCS_PATH = re.compile(r"(?<![\w./-])docs/[\w./-]*\w\.(?:md|png|json|txt)")
MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def _files() -> list[Path]:
    """The project's *.py, *.md and *.tf files, this one (its examples are broken) left out."""
    return sorted(p for ext in ("py", "md", "tf") for p in ROOT.rglob(f"*.{ext}")
                  if p != Path(__file__).resolve() and not any(
                      part in SKIP or part.startswith(".")
                      for part in p.relative_to(ROOT).parts[:-1]))


def _broken(text: str, page_folder: Path | None) -> list[str]:
    """The link targets in `text` that do not exist: `docs/...` paths from the project root,
    and for a markdown page (`page_folder` given) its relative links from that folder."""
    missing = [m for m in DOCS_PATH.findall(text) if not (ROOT / m).exists()]
    if page_folder is not None:
        missing += [m for m in MD_LINK.findall(text) if "://" not in m
                    and not m.startswith("mailto:") and not (page_folder / m).exists()]
    return missing


def test_the_scan_sees_the_docs_and_the_code():
    names = {p.relative_to(ROOT).as_posix() for p in _files()}
    assert {"README.md", "docs/ARCHITECTURE.md", "app/cli.py"} <= names
    assert any(n.endswith(".tf") for n in names)


def test_a_missing_target_is_found():
    text = ("see docs/NOPE.md, [x](docs/ARCHITECTURE.md), [a](docs/NOPE2.md#part), "
            "[b](SCHEMA.md), `docs/SCHEMA.md`, https://example.org/docs/OTHER.md")
    assert _broken(text, None) == ["docs/NOPE.md", "docs/NOPE2.md"]
    assert _broken(text, ROOT) == ["docs/NOPE.md", "docs/NOPE2.md", "docs/NOPE2.md",
                                   "SCHEMA.md"]
    assert _broken(text, ROOT / "docs") == ["docs/NOPE.md", "docs/NOPE2.md",
                                           "docs/ARCHITECTURE.md", "docs/NOPE2.md"]


def test_no_link_points_to_a_missing_file():
    broken = {}
    for path in _files():
        text = path.read_text(encoding="utf-8", errors="replace")
        if missing := _broken(text, path.parent if path.suffix == ".md" else None):
            broken[path.relative_to(ROOT).as_posix()] = missing
    assert broken == {}


def test_the_users_pages_spell_the_nightly_flags_as_recsys_nightly_takes_them():
    """README once said `--served_config` where `recsys nightly --help` says `--served-config`
    (the underscored names are `python -m batch.nightly`'s, used in docs/ARCHITECTURE.md and
    docs/RUNNERS.md beside that command)."""
    from batch.options import fields

    underscored = {f"--{f.name}" for f in fields() if "_" in f.name}
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("QUICKSTART*.md")]
    found = {p.name: sorted(set(re.findall(r"--\w+", p.read_text())) & underscored)
             for p in pages}
    assert {name: flags for name, flags in found.items() if flags} == {}
