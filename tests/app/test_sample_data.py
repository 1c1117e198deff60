"""`recsys sample-data DIR` writes the one input layout (docs/SCHEMA.md, the input folder) that
docs/QUICKSTART.md starts from: the nightly job and the evaluation both find its three tables."""

from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from app.cli import main
from app.sample_data import GENRES
from infra.datasets import load_dataset
from infra.sources import resolve_input


def test_sample_data_writes_the_input_layout_with_several_categories_per_item(tmp_path):
    out = tmp_path / "mydata"
    result = CliRunner().invoke(main, ["sample-data", str(out), "--users", "60", "--items", "40"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["interactions.csv", "items.csv", "users.csv"]

    layout = resolve_input(str(out))
    assert layout.interactions == [str(out / "interactions.csv")]
    assert (layout.users, layout.items) == (str(out / "users.csv"), str(out / "items.csv"))
    dataset = load_dataset(f"csv:{out}")
    assert len(dataset.users) == 60 and len(dataset.items) == 40
    assert set(dataset.interactions.item_id) <= set(dataset.items.item_id)

    categories = pd.read_csv(out / "items.csv")["category"].str.split("|")
    assert all(set(c) <= set(GENRES) and len(set(c)) == len(c) for c in categories)
    assert categories.map(len).max() == 2 and categories.map(len).min() == 1


def test_sample_data_is_the_same_for_the_same_seed(tmp_path):
    for name in ("a", "b"):
        CliRunner().invoke(main, ["sample-data", str(tmp_path / name), "--users", "30",
                                  "--items", "20", "--seed", "4"])
    for table in ("interactions.csv", "users.csv", "items.csv"):
        assert (tmp_path / "a" / table).read_bytes() == (tmp_path / "b" / table).read_bytes()


def test_parquet_format_writes_the_same_tables_as_csv(tmp_path):
    """`--format parquet` (docs/DEPLOY.md uploads it) is the same data as the CSV sample: one
    synthetic-data command, not a second generator with one category per item."""
    for fmt in ("csv", "parquet"):
        result = CliRunner().invoke(main, ["sample-data", str(tmp_path / fmt), "--users", "30",
                                           "--items", "20", "--format", fmt])
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "parquet").iterdir()) == [
        "interactions.parquet", "items.parquet", "users.parquet"]
    from_csv, from_parquet = load_dataset(f"csv:{tmp_path / 'csv'}"), load_dataset(
        f"parquet:{tmp_path / 'parquet'}")
    for table in ("interactions", "users", "items"):
        pd.testing.assert_frame_equal(getattr(from_parquet, table), getattr(from_csv, table),
                                      check_dtype=False)
    assert from_parquet.items["category"].str.contains("|", regex=False).any()


def test_there_is_one_synthetic_data_command():
    assert "sample-data" in main.commands and "generate" not in main.commands


def test_evaluate_dataset_help_points_to_the_input_folder_section():
    result = CliRunner().invoke(main, ["evaluate", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    help_text = " ".join(result.output.split())
    assert 'docs/SCHEMA.md, "The input folder"' in help_text
    with open(Path(__file__).parents[2] / "docs" / "SCHEMA.md") as f:
        assert "\n## The input folder\n" in f.read()
