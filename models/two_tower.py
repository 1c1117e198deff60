"""Hybrid two-tower retrieval: a user tower over user features and recent items (no user id,
so a fresh user needs none) and an item tower with multi-head attention over the item's
feature tokens, scored by a dot product and trained for retrieval.

    user: hist [B, H] item indices (right-aligned, -1 pads), user_tok [B, U] (0 pads)
          -> [mean of history item vectors, mean of the last `recent`, mean of user tokens,
              log1p(len)] -> Dense relu -> Dense -> L2 normalise -> [B, d]
    item: id (0 = none: a cold item, or id dropout in training), tokens [B, T]
          -> [id vector, mean(MHA(tokens) + tokens), mean(tokens)] -> Dense relu -> Dense
          -> L2 normalise -> [B, d]

Loss: in-batch sampled softmax with logQ correction over (items before position j, item j).
Items without train events get vectors from their tokens alone (cold items).

    python -m benchmarks.cold_items   # trains it on synthetic data with held-back items
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.evaluation import Cases, build_cases, ndcg_at_k, temporal_split
from models.finite import NonFiniteError, require_finite
from models.schema import natural_key
from models.vocab import Vocab

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TwoTowerConfig:
    """Hyperparameters of the two-tower model.

    Attributes:
        dim: embedding dimension of both towers.
        hidden: width of each tower's hidden layer.
        heads: attention heads of the item tower (divides dim).
        history: items of a user's history the user tower reads (the most recent).
        recent: of those, the last ones averaged apart (short-term interest).
        epochs: most passes over the examples; early stopping may pick fewer.
        batch_size: examples per step, the in-batch negatives of each other.
        learning_rate: Adam learning rate.
        temperature: softmax temperature of the cosine scores.
        id_dropout: share of training items whose id vector is hidden, so that the item
            tower learns to place items from their tokens alone (cold items).
        l2: L2 penalty on the batch's embedding rows.
        validation: share of train events (the last in time) held out to pick the epochs;
            0 trains `epochs` epochs on everything.
        patience: epochs without a better validation NDCG@10 before stopping.
        cold_items: also index items of the items table without train events whose
            `created_ts` precedes the last train event.
        max_per_user: examples drawn per user and epoch (None: all), so that long histories
            do not dominate an epoch's time and gradient.
        max_examples: examples drawn per epoch (None: all).
        xla: compile the training step with XLA. None decides per fit: XLA when epochs x
            steps per epoch x items reaches 1e7. Compiling costs a few seconds per fit and
            removes much of a step's fixed cost, which grows with the catalog: at 19,647
            items a step of 1,024 took 75 ms instead of 89 and one of 256 took 20 instead of
            37 (`python -m benchmarks.tower_step`), while on the 500-item synthetic default a
            4-epoch fit took 14 s instead of 5.5.
        warm_start_epochs: epochs of a fit that continues an earlier fit's weights
            (`fit_tower`'s `start`): models.served_fit fits the tower once on its first
            window's past and continues it on each later window's past and on all of the
            train side for this many epochs; None fits each from scratch.
        warm_start_recent: a continued fit trains on the examples newer than the starting
            model's last train event only (its window's new events), not on all of them.
        seed: random seed.
    """

    dim: int = 32
    hidden: int = 128
    heads: int = 2
    history: int = 50
    recent: int = 5
    epochs: int = 12
    batch_size: int = 512
    learning_rate: float = 0.003
    temperature: float = 0.1
    id_dropout: float = 0.2
    l2: float = 1e-4
    validation: float = 0.1
    patience: int = 2
    cold_items: bool = True
    max_per_user: int | None = 64
    max_examples: int | None = None
    xla: bool | None = None
    warm_start_epochs: int | None = 1
    warm_start_recent: bool = True
    seed: int = 0


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


def history_matrix(histories: list[np.ndarray], width: int) -> np.ndarray:
    """The towers' history input: each history's last `width` item indices, right-aligned.

    Args:
        histories: item indices per user, oldest first.
        width: H.

    Returns:
        [num_users, H] int32, -1 pads on the left.
    """
    out = np.full((len(histories), width), -1, np.int32)
    for r, h in enumerate(histories):
        tail = np.asarray(h, np.int64)[-width:]
        if len(tail):
            out[r, width - len(tail):] = tail
    return out


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
    """Fits the towers' inputs on the train side (see TowerData)."""
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


def _dense(x, w, b):
    import tensorflow as tf

    return tf.matmul(x, w) + b


def _masked_mean(x, mask):
    """x [..., n, d], mask [..., n] bool -> [..., d]."""
    import tensorflow as tf

    m = tf.cast(mask, x.dtype)[..., None]
    return tf.reduce_sum(x * m, -2) / tf.maximum(tf.reduce_sum(m, -2), 1.0)


def history_table(w):
    """[n_items + 1, d]: row 0 (padding) is zero, row i + 1 = id vector + mean token vector."""
    import tensorflow as tf

    tokens = w["item_tokens"]
    te = _masked_mean(tf.gather(w["item_tok"], tokens), tokens > 0)
    return tf.concat([tf.zeros_like(te[:1]), w["hist_id"][1:] + te], 0)


def user_tower(w, table, hist, user_tok, recent: int):
    """Args: table [n_items + 1, d] (history_table), hist [B, H] int32, user_tok [B, U] int32.

    Returns: [B, d] unit query vectors.
    """
    import tensorflow as tf

    he = tf.gather(table, hist + 1)  # padding -1 -> the zero row
    m = tf.cast(hist >= 0, tf.float32)
    n = tf.reduce_sum(m, 1, keepdims=True)
    h_all = tf.reduce_sum(he, 1) / tf.maximum(n, 1.0)
    n_rec = tf.reduce_sum(m[:, -recent:], 1, keepdims=True)
    h_rec = tf.reduce_sum(he[:, -recent:], 1) / tf.maximum(n_rec, 1.0)
    ue = _masked_mean(tf.gather(w["user_tok"], user_tok), user_tok > 0)
    x = tf.concat([h_all, h_rec, ue, tf.math.log1p(n) / 4.0], 1)
    h = tf.nn.relu(_dense(x, w["u_w1"], w["u_b1"]))
    return tf.math.l2_normalize(_dense(h, w["u_w2"], w["u_b2"]), axis=1)


def item_tower(w, ids1, tokens, heads: int):
    """Args: ids1 [B] int32 item index + 1 (0: no id), tokens [B, T] int32 (0 pads).

    Returns: [B, d] unit item vectors.
    """
    import tensorflow as tf

    t = tf.gather(w["item_tok"], tokens)  # [B, T, d]
    mask = tokens > 0
    d = t.shape[-1]
    dh = d // heads

    def split(x):  # [B, T, d] -> [B, heads, T, dh]
        return tf.transpose(tf.reshape(x, [-1, tf.shape(x)[1], heads, dh]), [0, 2, 1, 3])

    q, k, v = (split(tf.einsum("btd,de->bte", t, w[n])) for n in ("wq", "wk", "wv"))
    bias = (1.0 - tf.cast(mask, tf.float32))[:, None, None, :] * -1e9
    att = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) / math.sqrt(dh) + bias)
    o = tf.transpose(tf.matmul(att, v), [0, 2, 1, 3])
    o = tf.einsum("btd,de->bte", tf.reshape(o, tf.shape(t)), w["wo"]) + t
    x = tf.concat([tf.gather(w["item_id"], ids1), _masked_mean(o, mask),
                   _masked_mean(t, mask)], 1)
    h = tf.nn.relu(_dense(x, w["i_w1"], w["i_b1"]))
    return tf.math.l2_normalize(_dense(h, w["i_w2"], w["i_b2"]), axis=1)


@dataclass
class TwoTowerModel:
    """A trained two-tower model: its inputs, weights (NumPy) and the item vectors."""

    data: TowerData
    weights: dict[str, np.ndarray]
    config: TwoTowerConfig
    epochs: int  # epochs trained
    item_vectors: np.ndarray | None = None  # [n_items, d]

    def __post_init__(self):
        self._users = None
        if self.item_vectors is None:
            w, c = self._graph_weights(), self.config
            ids1 = np.where(self.data.has_events, np.arange(1, len(self.data.items) + 1), 0)
            out = [item_tower(w, ids1[lo:lo + 4096].astype(np.int32),
                              self.data.item_tokens[lo:lo + 4096], c.heads).numpy()
                   for lo in range(0, len(ids1), 4096)]
            self.item_vectors = np.concatenate(out).astype(np.float32)

    def _graph_weights(self) -> dict:
        import tensorflow as tf

        w = {k: tf.constant(v) for k, v in self.weights.items()}
        w["item_tokens"] = tf.constant(self.data.item_tokens)
        return w

    def user_vectors(self, hist: np.ndarray, user_tok: np.ndarray,
                     batch_size: int = 4096) -> np.ndarray:
        """Args: hist [B, H] int32, user_tok [B, U] int32. Returns: [B, d] float32."""
        if self._users is None:  # TensorFlow only when the tower runs here
            import tensorflow as tf

            w = self._graph_weights()
            table = history_table(w)
            self._users = tf.function(lambda h, u: user_tower(w, table, h, u,
                                                              self.config.recent))
        out = [self._users(hist[lo:lo + batch_size], user_tok[lo:lo + batch_size]).numpy()
               for lo in range(0, len(hist), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.config.dim), np.float32)

    def queries(self, user_ids: list[str], histories: list[np.ndarray]) -> np.ndarray:
        """Query vectors [B, d] from item-index histories (oldest first) and user ids."""
        hist = history_matrix(histories, self.config.history)
        return self.user_vectors(hist, self.data.user_matrix(user_ids))


ID_ROWS, TOKEN_ROWS = ("item_id", "hist_id"), ("item_tok", "user_tok")  # rows keyed by vocab


def _init_weights(data: TowerData, c: TwoTowerConfig, rng,
                  start: TwoTowerModel | None = None) -> dict:
    import tensorflow as tf

    n, d, h = len(data.items), c.dim, c.hidden
    shapes = {"item_tok": (data.item_enc.size, d), "user_tok": (data.user_enc.size, d),
              "item_id": (n + 1, d), "hist_id": (n + 1, d), "wq": (d, d), "wk": (d, d),
              "wv": (d, d), "wo": (d, d), "i_w1": (3 * d, h), "i_w2": (h, d),
              "u_w1": (3 * d + 1, h), "u_w2": (h, d)}
    w = {k: rng.normal(0, (0.05 if k.endswith("_tok") or k.endswith("_id")
                           else 1 / math.sqrt(s[0])), s).astype(np.float32)
         for k, s in shapes.items()}
    w.update({k: np.zeros(s, np.float32) for k, s in (("i_b1", h), ("i_b2", d), ("u_b1", h),
                                                      ("u_b2", d))})
    if start is not None:
        carry_over(w, data, start)
    return {k: tf.Variable(v, name=k) for k, v in w.items()}


def carry_over(w: dict[str, np.ndarray], data: TowerData, start: TwoTowerModel) -> None:
    """Overwrites the fresh weights `w` (shaped for `data`) with `start`'s: the id rows of the
    items both know (by item id), the token rows of the tokens both know (by token), every
    other weight whole. Items and tokens new to `data` keep their fresh rows.

    Raises:
        ValueError: `start` was trained with other dimensions (dim, hidden).
    """
    old = start.weights
    if any(old[k].shape != w[k].shape for k in w if k not in ID_ROWS + TOKEN_ROWS):
        raise ValueError("two-tower warm start: the starting model's dim or hidden differs "
                         "from TwoTowerConfig's; start from scratch (warm_start_epochs=None)")
    for k in w:
        if k not in ID_ROWS + TOKEN_ROWS:
            w[k] = old[k].copy()
    src = start.data.items.lookup(data.items.ids) + 1  # row i + 1 holds item i; 0 unknown
    hit = np.flatnonzero(src > 0) + 1
    for k in ID_ROWS:
        w[k][0], w[k][hit] = old[k][0], old[k][src[hit - 1]]
    for k, new, prev in (("item_tok", data.item_enc, start.data.item_enc),
                         ("user_tok", data.user_enc, start.data.user_enc)):
        pairs = np.array([(j, prev.vocab[t]) for t, j in new.vocab.items() if t in prev.vocab],
                         np.int64).reshape(-1, 2)
        w[k][0], w[k][pairs[:, 0]] = old[k][0], old[k][pairs[:, 1]]


def fit_tower(data: TowerData, config: TwoTowerConfig, epochs: int,
              monitor: Cases | None = None,
              start: TwoTowerModel | None = None) -> tuple[TwoTowerModel, list[float]]:
    """Trains for `epochs` epochs; with `monitor`, keeps the epoch of best NDCG@10 on it and
    stops after `config.patience` epochs without improvement. With `start` (a model fitted
    on other data, e.g. an earlier window's), training continues from its weights
    (`carry_over`) instead of random ones, on the examples whose item came after `start`'s
    last train event when `config.warm_start_recent` (on all of them otherwise).

    Returns:
        (model, validation NDCG@10 per epoch, empty without `monitor`).

    Raises:
        NonFiniteError: the loss or a trained weight is NaN or inf.
    """
    import keras
    import tensorflow as tf

    c = config
    keras.utils.set_random_seed(c.seed)
    rng = np.random.default_rng(c.seed)
    w = _init_weights(data, c, rng, start)
    w_const = {"item_tokens": tf.constant(data.item_tokens)}
    train_vars = list(w.values())
    adam = Adam(train_vars, c.learning_rate)
    ex_user, ex_pos = data.examples()
    if start is not None and c.warm_start_recent and data.seq_ts is not None:
        new = data.seq_ts[data.offsets[ex_user] + ex_pos] > start.data.now
        ex_user, ex_pos = ex_user[new], ex_pos[new]
        log.debug("two_tower: continued on the %d examples after %s", len(ex_user),
                  start.data.now)
    counts = np.bincount(data.seq[data.offsets[ex_user] + ex_pos], minlength=len(data.items))
    logq_all = np.log(np.maximum(counts, 1) / max(len(ex_user), 1)).astype(np.float32)
    i32 = tf.int32
    spec = [tf.TensorSpec([None, c.history], i32), tf.TensorSpec([None, data.user_enc.width], i32),
            tf.TensorSpec([None], i32), tf.TensorSpec([None], i32), tf.TensorSpec([None])]

    per_epoch = _epoch_size(ex_user, c.max_per_user, c.max_examples)
    xla = c.xla if c.xla is not None else (
        epochs * -(-per_epoch // c.batch_size) * len(data.items) >= 1e7)
    log.debug("two_tower: %d examples per epoch, XLA %s", per_epoch, xla)

    @tf.function(input_signature=spec, jit_compile=xla)
    def step(hist, utok, target, keep, logq):
        with tf.GradientTape() as tape:
            ww = {**w, **w_const}
            q = user_tower(ww, history_table(ww), hist, utok, c.recent)
            ids1 = (target + 1) * keep
            v = item_tower(ww, ids1, tf.gather(w_const["item_tokens"], target), c.heads)
            logits = tf.matmul(q, v, transpose_b=True) / c.temperature - logq[None, :]
            same = tf.equal(target[:, None], target[None, :])
            other = tf.logical_and(same, tf.logical_not(tf.eye(tf.shape(target)[0]) > 0))
            logits = tf.where(other, -1e9, logits)
            labels = tf.range(tf.shape(target)[0])
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            rows = [tf.gather(w["item_id"], ids1), tf.gather(w["hist_id"], hist + 1)]
            loss += c.l2 * tf.add_n([tf.reduce_sum(tf.reduce_mean(r * r, 0)) for r in rows])
        adam.apply(tape.gradient(loss, train_vars))
        return loss

    history, best, best_w, bad = [], -1.0, None, 0
    done = start.epochs if start is not None else 0  # TwoTowerModel.epochs counts them all
    for epoch in range(epochs):
        order = _epoch_sample(ex_user, c.max_per_user, c.max_examples, rng)
        total = 0.0
        for lo in range(0, len(order) - c.batch_size // 4, c.batch_size):
            b = order[lo:lo + c.batch_size]
            hist = data.histories(ex_user[b], ex_pos[b], c.history)
            target = data.seq[data.offsets[ex_user[b]] + ex_pos[b]].astype(np.int32)
            keep = (rng.random(len(b)) >= c.id_dropout).astype(np.int32)
            total += float(step(hist, data.user_tokens[ex_user[b]], target, keep,
                                logq_all[target])) * len(b)
        log.debug("two_tower epoch %d loss %.4f", epoch + 1, total / max(len(order), 1))
        if not math.isfinite(total):  # as Keras' TerminateOnNaN: later steps spread the NaN
            raise NonFiniteError(f"two-tower: the training loss is {total} at epoch "
                                 f"{epoch + 1}; nothing was exported. Check {_CHECK}")
        if monitor is None:
            continue
        model = _snapshot(data, w, c, done + epoch + 1)
        history.append(monitor_ndcg(model, monitor))
        log.info("two_tower epoch %d validation NDCG@10 %.4f", epoch + 1, history[-1])
        if history[-1] > best:
            best, best_w, bad = history[-1], model, 0
        else:
            bad += 1
            if bad >= c.patience:
                break
    model = best_w if best_w is not None else _snapshot(data, w, c, done + epochs)
    require_finite({**model.weights, "item_vectors": model.item_vectors}, "two-tower", _CHECK)
    return model, history


_CHECK = ("the items and users tables' values and TwoTowerConfig's learning_rate, temperature "
          "and l2")


def _epoch_size(ex_user: np.ndarray, per_user: int | None, total: int | None) -> int:
    """len(_epoch_sample(ex_user, per_user, total, rng)) for any rng."""
    n = len(ex_user)
    if per_user is not None:
        n = int(np.minimum(np.bincount(ex_user), per_user).sum()) if n else 0
    return n if total is None else min(n, total)


def _epoch_sample(ex_user: np.ndarray, per_user: int | None, total: int | None,
                  rng) -> np.ndarray:
    """A shuffled sample of example rows: at most `per_user` per user, `total` in all."""
    order = rng.permutation(len(ex_user))
    if per_user is not None:
        by_user = order[np.argsort(ex_user[order], kind="stable")]
        starts = np.searchsorted(ex_user[by_user], ex_user[by_user], side="left")
        keep = by_user[np.arange(len(by_user)) - starts < per_user]
        order = keep[rng.permutation(len(keep))]
    return order[:total]


class Adam:
    """Adam with TensorFlow's fused kernel (one op per variable; XLA-compilable)."""

    def __init__(self, variables, learning_rate: float, beta1=0.9, beta2=0.999, eps=1e-7):
        import tensorflow as tf

        self.slots = [(tf.Variable(tf.zeros_like(v)), tf.Variable(tf.zeros_like(v)))
                      for v in variables]
        self.variables, self.t = variables, tf.Variable(0.0)
        self.hyper = (learning_rate, beta1, beta2, eps)

    def apply(self, grads) -> None:
        import tensorflow as tf

        lr, b1, b2, eps = self.hyper
        self.t.assign_add(1.0)
        b1p, b2p = tf.pow(b1, self.t), tf.pow(b2, self.t)
        for v, (m, s), g in zip(self.variables, self.slots, grads, strict=True):
            tf.raw_ops.ResourceApplyAdam(var=v.handle, m=m.handle, v=s.handle, beta1_power=b1p,
                                         beta2_power=b2p, lr=lr, beta1=b1, beta2=b2,
                                         epsilon=eps, grad=tf.convert_to_tensor(g))


def _snapshot(data, w, c, epochs) -> TwoTowerModel:
    return TwoTowerModel(data, {k: v.numpy() for k, v in w.items()}, c, epochs)


def monitor_ndcg(model: TwoTowerModel, cases: Cases, max_cases: int = 2000) -> float:
    """Mean NDCG@10 of the model's own top 10 (history excluded) over warm + fresh cases."""
    from models.topk import brute_force_topk

    chosen = (cases.warm + cases.fresh)[:max_cases]
    if not chosen:
        return 0.0
    items = model.data.items
    hist = [items.lookup(c.history) for c in chosen]
    hist = [h[h >= 0] for h in hist]
    xq = model.queries([c.user_id for c in chosen], hist)
    I, _ = brute_force_topk(xq, model.item_vectors, 10, hist)
    return float(np.mean([ndcg_at_k([str(items.ids[i]) for i in row if i >= 0], c.truth)
                          for row, c in zip(I, chosen, strict=True)]))


def train_two_tower(train: pd.DataFrame, users: pd.DataFrame | None = None,
                    items: pd.DataFrame | None = None,
                    config: TwoTowerConfig = TwoTowerConfig()) -> TwoTowerModel:
    """Picks the epochs on the last `config.validation` of train events, then refits on all.

    Args:
        train: the train side's interactions.
        users: user features (user_id + columns) or None.
        items: item features (item_id + columns) or None.
        config: hyperparameters.

    Returns:
        The model trained on all of `train`.
    """
    epochs = config.epochs
    if config.validation > 0:
        split = temporal_split(train, 1.0 - config.validation)
        _, scores = fit_tower(prepare(split.train, users, items, config), config, epochs,
                              build_cases(split))
        epochs = int(np.argmax(scores)) + 1 if scores else epochs
    return fit_tower(prepare(train, users, items, config), config, epochs)[0]


class TwoTowerRecommender:
    """The two-tower model alone: user tower -> Faiss over item vectors -> rules."""

    name = "two_tower"

    def __init__(self, config: TwoTowerConfig = TwoTowerConfig()):
        self.config = config

    def fit(self, train, users=None, items=None) -> TwoTowerRecommender:
        from models.topk import build_flat_index

        self.model = train_two_tower(train, users, items, self.config)
        self.index = build_flat_index(self.model.item_vectors)
        return self

    def recommend(self, user_ids, histories, k, fresh):
        from models.topk import faiss_topk

        items = self.model.data.items
        seen = [items.lookup(h) for h in histories]
        seen = [s[s >= 0] for s in seen]
        I, _ = faiss_topk(self.index, self.model.queries(list(user_ids), seen), k, seen)
        return [[str(items.ids[i]) for i in row if i >= 0] for row in I]
