"""Item filters from an items table or flags: the changes `POST /admin/items` makes, taken by
`recsys items` and by the nightly job (batch/stages.py: item_filter_changes), validated whole
before one write.

    recsys items --unavailable 42 --unavailable 43 --category '7=books|comics'
    recsys items --items s3://BUCKET/recsys/admin/items.parquet     # item_id, category, available

An item may have several categories: `Comedy|Drama` in one cell (or a list column in Parquet;
docs/SCHEMA.md). Ids and each category follow the id rules of every other input
(models.rows.clean_id: a string or a finite number, at most 256 characters after stripping, no
control characters, no lone surrogates). One bad value refuses the whole change, naming each
row and reason, so nothing is half applied; ItemFilters.update (infra/redis/item_filters.py)
then writes everything in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from infra.redis.item_filters import CATEGORY_SEP, join_categories
from models.rows import clean_id, is_missing

MAX_SHOWN = 10  # problems listed in one error; the count says how many more
TRUE, FALSE = {"true", "1", "yes", "y", "t"}, {"false", "0", "no", "n", "f"}


class ItemsError(ValueError):
    """The changes cannot be applied; the message names each bad value and how to fix it."""


@dataclass
class ItemChanges:
    """What to change: ids to mark unavailable or available again, item id -> categories."""

    unavailable: dict[str, str] = field(default_factory=dict)  # id -> where it was given
    available: dict[str, str] = field(default_factory=dict)
    # item id -> (its categories, where they were given)
    categories: dict[str, tuple[tuple[str, ...], str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def _id(self, value, name: str, where: str) -> str | None:
        text, reason = clean_id(value, name)
        if reason:
            self.problems.append(f"{where}: {reason}")
        return text

    def mark(self, value, available: bool, where: str) -> None:
        """Marks one item available (True) or unavailable (False)."""
        item = self._id(value, "item_id", where)
        if item is None:
            return
        same, other = ((self.available, self.unavailable) if available
                       else (self.unavailable, self.available))
        if item in other:
            self.problems.append(f"{where}: item {item!r} is also marked "
                                 f"{'un' if available else ''}available at {other[item]}")
        same.setdefault(item, where)

    def categorize(self, item_value, category_value, where: str) -> None:
        """Sets one item's categories: one value (`Comedy|Drama` holds two) or a list."""
        item = self._id(item_value, "item_id", where)
        categories = self._categories(category_value, where)
        if item is None or categories is None:
            return
        before = self.categories.setdefault(item, (categories, where))
        if set(before[0]) != set(categories):
            self.problems.append(
                f"{where}: item {item!r} gets category {join_categories(categories)!r}, but "
                f"{before[1]} gives it {join_categories(before[0])!r}")

    def _categories(self, value, where: str) -> tuple[str, ...] | None:
        """The categories of a cell or flag, each checked as an id; None after a problem."""
        found: list[str] = []
        for cell in value if isinstance(value, list | tuple) else [value]:
            parts = cell.split(CATEGORY_SEP) if isinstance(cell, str) else [cell]
            for part in parts:
                if isinstance(part, str) and not part.strip() and len(parts) > 1:
                    continue  # "Comedy||Drama", "Comedy|": blanks between separators
                text = self._id(part, "category", where)
                if text is None:
                    return None
                found.append(text)
        if not found:
            self.problems.append(f"{where}: missing category")
            return None
        return tuple(dict.fromkeys(found))

    def check(self) -> None:
        """Raises ItemsError listing the problems, or if there is nothing to change."""
        if self.problems:
            problems = list(dict.fromkeys(self.problems))
            shown, more = problems[:MAX_SHOWN], len(problems) - MAX_SHOWN
            raise ItemsError(
                f"{len(problems)} bad value(s), nothing was changed:\n  "
                + "\n  ".join(shown) + (f"\n  ... and {more} more" if more > 0 else "")
                + "\nIds and categories: a string or a number, at most 256 characters, no "
                  "control characters (docs/SCHEMA.md); an item is either available or not.")
        if not (self.unavailable or self.available or self.categories):
            raise ItemsError("nothing to change: give --unavailable, --available, --category "
                             "or an --items table with a category or available column")

    def arguments(self) -> dict:
        """The keyword arguments of ItemFilters.update."""
        return {"unavailable": sorted(self.unavailable), "available": sorted(self.available),
                "categories": {item: join_categories(cats)
                               for item, (cats, _) in sorted(self.categories.items())}}


def _flag(value: str) -> bool | None:
    """An `available` cell: a boolean, 0/1, or true/false/yes/no text; None if empty."""
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise ValueError(value)


def add_flags(changes: ItemChanges, unavailable: Iterable[str], available: Iterable[str],
              categories: Iterable[str]) -> None:
    """Adds the changes of --unavailable ID, --available ID and --category ID=CATEGORY."""
    for item in unavailable:
        changes.mark(item, False, f"--unavailable {item[:40]!r}")
    for item in available:
        changes.mark(item, True, f"--available {item[:40]!r}")
    for pair in categories:
        item, sep, category = pair.partition("=")
        if not sep:
            changes.problems.append(f"--category {pair[:40]!r}: expected ITEM_ID=CATEGORY")
            continue
        changes.categorize(item, category, f"--category {pair[:40]!r}")


def add_table(changes: ItemChanges, path: str, columns: dict[str, Sequence]) -> None:
    """Adds the changes of an items table's rows (item_id; category and available optional).

    Args:
        path: the file, for messages.
        columns: column name -> values ("category": `|`-separated text or a list of
            categories; "available": a boolean, 0/1 or true/false text; an empty cell changes
            nothing).
    """
    if "category" not in columns and "available" not in columns:
        changes.problems.append(f"{path}: no category or available column (found "
                                f"{sorted(columns)}); nothing in it could change")
        return
    ids = columns["item_id"]
    for n, item in enumerate(ids):
        where = f"{path} row {n + 1}"
        category = columns["category"][n] if "category" in columns else None
        if not _empty(category):
            changes.categorize(item, category, where)
        if "available" in columns:
            try:
                flag = _flag(columns["available"][n])
            except ValueError:
                changes.problems.append(f"{where}: available must be true/false, 1/0 or "
                                        f"empty, got {str(columns['available'][n])[:40]!r}")
                continue
            if flag is not None:
                changes.mark(item, flag, where)


def _empty(cell) -> bool:
    """A cell that changes nothing: missing, blank text or an empty list."""
    if isinstance(cell, list | tuple):
        return not cell
    return is_missing(cell) or (isinstance(cell, str) and not cell.strip())


def table_changes(path: str) -> ItemChanges | None:
    """The item filter changes of an items table, checked whole (the nightly's): None when it
    changes nothing (no category or available column, a table of features only; or only
    empty cells).

    Raises:
        ItemsError: a bad value (each named with its row); nothing is to be changed.
        SchemaError: the file is unreadable or has no item_id column.
    """
    columns = read_items_table(path)
    if "category" not in columns and "available" not in columns:
        return None
    changes = ItemChanges()
    add_table(changes, path, columns)
    if not (changes.problems or changes.unavailable or changes.available or changes.categories):
        return None
    changes.check()
    return changes


def read_items_table(path: str) -> dict[str, list]:
    """The item_id, category and available columns of a .parquet/.csv file (local or s3://).

    Raises:
        SchemaError: the file is unreadable or has no item_id column.
    """
    from infra.sources import read_table
    from models.schema import check_columns

    table = read_table(path)
    check_columns(path, table.column_names, ("item_id",))
    wanted = [c for c in ("item_id", "category", "available") if c in table.column_names]
    return {name: table.column(name).to_pylist() for name in wanted}
