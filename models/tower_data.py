"""The two-tower model's inputs fitted on the train side: the item universe, the feature
tokens of items and users (`TokenEncoder`) and each train user's item sequence (`TowerData`);
the history matrix the user tower reads is models.histories.history_matrix.

No TensorFlow here: the on-demand scorer encodes its requests with these.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.schema import natural_key
from models.vocab import Vocab

if TYPE_CHECKING:
    import pandas as pd

SKIPPED_COLUMNS = ("title", "timestamp", "signup_ts", "created_ts")


@dataclass
class TokenEncoder:
    """Feature tokens "column=value" of one features table ('|'-joined strings give one token
    per part; numbers with many distinct values are bucketed by quantiles, "column#bucket").

    Attributes:
        key: the id column (user_id or item_id).
        columns: the feature columns read.
        vocab: token -> id >= 1; 0 pads.
        bins: numeric column -> inner bucket edges.
        width: tokens per row (longer rows are cut).
    """

    key: str
    columns: list[str]
    vocab: dict[str, int]
    bins: dict[str, list[float]]
    width: int

    @property
    def size(self) -> int:
        return len(self.vocab) + 1

    @classmethod
    def fit(cls, table: pd.DataFrame | None, key: str, max_width: int = 16,
            max_exact: int = 100, n_bins: int = 8) -> TokenEncoder:
        import pandas as pd

        if table is None or table.empty:
            return cls(key, [], {}, {}, 1)
        columns = [c for c in table.columns if c != key and c not in SKIPPED_COLUMNS]
        enc = cls(key, columns, {}, {}, 1)
        for col in columns:
            v = pd.to_numeric(table[col], errors="coerce") if _numeric(table[col]) else None
            if v is not None and v.nunique() > max_exact:
                qs = np.quantile(v.dropna(), np.linspace(0, 1, n_bins + 1)[1:-1])
                enc.bins[col] = sorted({float(q) for q in qs})
        rows = [enc.row_tokens(r) for r in table.to_dict("records")]
        enc.vocab.update({t: n + 1 for n, t in enumerate(sorted({t for r in rows for t in r}))})
        enc.width = max(1, min(max_width, max((len(r) for r in rows), default=1)))
        return enc

    def row_tokens(self, row: dict) -> list[str]:
        """The tokens of one row {column: value} (unknown columns are ignored)."""
        out = []
        for col in self.columns:
            v = row.get(col)
            if _missing(v):
                continue
            if col in self.bins:
                out.append(f"{col}#{int(np.searchsorted(self.bins[col], float(v)))}")
            elif isinstance(v, str):
                out.extend(f"{col}={p}" for p in v.split("|") if p)
            else:
                num = float(v)
                out.append(f"{col}={int(num) if num.is_integer() else num}")
        return out

    def encode_rows(self, rows: list[dict | None]) -> np.ndarray:
        """Token ids [len(rows), width] int32 of feature rows (None: no features)."""
        out = np.zeros((len(rows), self.width), np.int32)
        for r, row in enumerate(rows):
            t = [self.vocab[x] for x in self.row_tokens(row or {}) if x in self.vocab]
            out[r, :min(len(t), self.width)] = t[:self.width]
        return out

    def encode(self, table: pd.DataFrame | None, ids) -> np.ndarray:
        """Token ids [len(ids), width] int32 of the rows whose key is in `ids` (0 elsewhere)."""
        if table is None or table.empty or not self.vocab:
            return np.zeros((len(ids), self.width), np.int32)
        by_key = {str(r[self.key]): r for r in table.to_dict("records")}
        return self.encode_rows([by_key.get(str(x)) for x in ids])


def _missing(v) -> bool:
    """None, NaN or pandas' NA (only a loaded pandas can have made one: the on-demand
    function's request rows come from JSON and load no pandas)."""
    pandas = sys.modules.get("pandas")
    return (v is None or (pandas is not None and v is pandas.NA)
            or (isinstance(v, float) and math.isnan(v)))


def _numeric(s: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


@dataclass
class TowerData:
    """The towers' inputs fitted on the train side: item universe, tokens, sequences.

    Attributes:
        items: every retrievable item (train catalog plus cold items).
        has_events: [n_items] bool, False for cold items.
        item_tokens: [n_items, T] int32.
        item_enc, user_enc: the token encoders.
        users_table: the users table (features of any user, fresh ones included).
        seq: [n_pairs] int32 item indices, per train user in order of first event.
        offsets: [n_train_users] int64 start of each user in `seq`; lengths likewise.
        user_tokens: [n_train_users, U] int32.
        now: last train timestamp.
        seq_ts: [n_pairs] float64 time of each `seq` entry (the pair's first event); None
            in a loaded bundle.
    """

    items: Vocab
    has_events: np.ndarray
    item_tokens: np.ndarray
    item_enc: TokenEncoder
    user_enc: TokenEncoder
    users_table: pd.DataFrame | None
    seq: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    user_tokens: np.ndarray
    now: float
    seq_ts: np.ndarray | None = None

    def user_matrix(self, user_ids: list[str]) -> np.ndarray:
        """[B, U] int32 user tokens from the users table (zeros for unknown users)."""
        rows = self.__dict__.get("_user_rows")
        if rows is None:
            table = self.users_table
            rows = {} if table is None else {str(r["user_id"]): r
                                             for r in table.to_dict("records")}
            self.__dict__["_user_rows"] = rows
        return self.user_enc.encode_rows([rows.get(str(u)) for u in user_ids])

    def examples(self) -> tuple[np.ndarray, np.ndarray]:
        """(user row, position >= 1) of every training example, [n_examples] each."""
        ex_user = np.repeat(np.arange(len(self.lengths)), np.maximum(self.lengths - 1, 0))
        starts = np.cumsum(np.maximum(self.lengths - 1, 0)) - np.maximum(self.lengths - 1, 0)
        ex_pos = np.arange(len(ex_user)) - np.repeat(starts, np.maximum(self.lengths - 1, 0)) + 1
        return ex_user, ex_pos

    def histories(self, ex_user: np.ndarray, ex_pos: np.ndarray, width: int) -> np.ndarray:
        """[B, width] int32 right-aligned items before each example's position."""
        rel = ex_pos[:, None] - width + np.arange(width)[None, :]
        idx = self.offsets[ex_user][:, None] + np.maximum(rel, 0)
        return np.where(rel >= 0, self.seq[idx], -1).astype(np.int32)


def prepare(train: pd.DataFrame, users: pd.DataFrame | None, items: pd.DataFrame | None,
            config) -> TowerData:
    """Fits the towers' inputs on the train side (see TowerData).

    Args:
        train: the train side's interactions (user_id, item_id, timestamp).
        users, items: the features tables or None.
        config: a TwoTowerConfig (`cold_items`: also index the items table's items created
            before the last train event).
    """
    import pandas as pd

    now = float(train["timestamp"].max())
    # ids through their distinct values (pd.factorize), not a Python loop over every event
    item_codes, with_events = pd.factorize(train["item_id"].astype(str))
    with_events = [str(x) for x in with_events]
    ids = set(with_events)
    if config.cold_items and items is not None and "created_ts" in items:
        ids |= set(items.loc[items["created_ts"] <= now, "item_id"].astype(str))
    vocab = Vocab(np.array(sorted(ids, key=natural_key), dtype=object))
    known = None if items is None else items[items["item_id"].astype(str).isin(ids)]
    item_enc = TokenEncoder.fit(known, "item_id")
    user_codes, names = pd.factorize(train["user_id"].astype(str))
    names = np.array([str(x) for x in names], dtype=object)
    by_name = np.argsort(names, kind="stable")  # users in sorted id order, as np.unique
    rank = np.empty(len(names), np.int64)
    rank[by_name] = np.arange(len(names))
    pairs = pd.DataFrame({"u": rank[user_codes], "i": vocab.lookup(with_events)[item_codes],
                          "t": train["timestamp"].to_numpy()})
    pairs = pairs.groupby(["u", "i"], as_index=False, sort=False)["t"].min()
    pairs = pairs.sort_values(["u", "t", "i"], kind="stable")
    present, lengths = np.unique(pairs["u"].to_numpy(), return_counts=True)
    user_ids = names[by_name][present]
    train_users = None if users is None else users[users["user_id"].astype(str).isin(
        set(user_ids))]
    user_enc = TokenEncoder.fit(train_users, "user_id", max_width=8, max_exact=20)
    return TowerData(
        items=vocab, has_events=np.isin(vocab.ids, with_events),
        item_tokens=item_enc.encode(known, vocab.ids), item_enc=item_enc, user_enc=user_enc,
        users_table=users, seq=pairs["i"].to_numpy(np.int32),
        offsets=(np.cumsum(lengths) - lengths).astype(np.int64), lengths=lengths,
        user_tokens=user_enc.encode(users, user_ids), now=now,
        seq_ts=pairs["t"].to_numpy(np.float64))

