"""The served model's own files in a bundle: served.npz (arrays) and served.json (configs,
encoders), written by `save` and read back by `load` / `from_files` with the runtime asked for.

    save(model, path)                          served.npz + served.json into path
    load(path, runtime="litert")               ServedModel (LiteRT, NumPy or TF runtime)
    from_files(meta, arrays, runtime, litert)  the same from the parsed files (no folder)

served.npz keys: `item_ids`, `has_events`, `item_tokens`, `item_vectors`, `popular`,
`user_last_ids`/`user_last_ts`; `w:<name>` the tower weights; `t:<field>` the FeatureTables
fields, with the neighbour tables as CSR rows `t:<knn|sess|ease>_<indptr|indices|data>`
(`ease` with EASE only); `g:<name>` GraphSAGE's query weights and item tables (with
GraphSAGE only, models.served_sage); `r:<member>:<k>` the ranker's layers and `r:mean`,
`r:std`. Reading TensorFlow is needed only
for runtime "tf" (models.served_graph).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict

import numpy as np

from models.features import neighbour_padded
from models.graphsage import GraphSAGEConfig
from models.ranker import FeatureTables, RankerConfig, RankerModel
from models.runtimes import LiteRTRuntime
from models.served import NEIGHBOURS, PADDED, ServedConfig, ServedModel
from models.served_sage import sage_arrays, sage_from_arrays
from models.tower_data import TokenEncoder, TowerData
from models.two_tower import TwoTowerConfig, TwoTowerModel
from models.vocab import Vocab

RUNTIMES = ("litert", "numpy", "tf")


def save(model: ServedModel, path: str) -> None:
    """Writes served.npz (arrays) and served.json (configs, encoders) into `path`.

    Uncompressed (np.savez): at 20,000 items served.npz is 67 MB, and checking and loading
    it from memory took 0.06 s against 0.21 s for savez_compressed's 35 MB.
    """
    os.makedirs(path, exist_ok=True)
    d, t, r = model.tower.data, model.tables, model.ranker
    arrays = {"item_ids": np.asarray(d.items.ids, str), "has_events": d.has_events,
              "item_tokens": d.item_tokens, "item_vectors": model.tower.item_vectors,
              "popular": model.popular,
              "user_last_ids": np.asarray(list(model.user_last), str),
              "user_last_ts": np.asarray(list(model.user_last.values()), np.float64)}
    arrays.update({f"w:{k}": v for k, v in model.tower.arrays.items()})
    arrays.update({f"t:{k}": getattr(t, k) for k in FeatureTables.__dataclass_fields__
                   if k not in ("now", *PADDED)})
    for name in model.neighbour_names():
        arrays.update(zip((f"t:{name}_indptr", f"t:{name}_indices", f"t:{name}_data"),
                          model.neighbour_csr(name), strict=True))
    if model.sage is not None:
        arrays.update({f"g:{k}": v for k, v in sage_arrays(model.sage).items()})
    arrays.update({f"r:{n}:{k}": v for n, m in enumerate(r.members) for k, v in enumerate(m)})
    arrays.update({"r:mean": r.mean, "r:std": r.std})
    np.savez(os.path.join(path, "served.npz"), **arrays)
    meta = {"config": asdict(model.config), "now": t.now, "tower_epochs": model.tower.epochs,
            "ranker_epochs": r.epochs, "members": len(r.members),
            "layers": len(r.members[0]), "item_enc": asdict(d.item_enc),
            "neighbour_width": neighbour_width(model), "user_enc": asdict(d.user_enc),
            "features": list(model.feature_names()),
            "graphsage_epochs": None if model.sage is None else model.sage.epochs,
            "fallback": model.fallback}
    with open(os.path.join(path, "served.json"), "w") as f:
        json.dump(meta, f, indent=1)


def neighbour_width(model: ServedModel) -> int:
    """M, the columns of the padded neighbour tables (the TF graph's)."""
    if model.tables.knn_idx is not None:
        return int(model.tables.knn_idx.shape[1])
    return int(model.width if model.width is not None else model.config.ranker.neighbours)


def load(path: str, runtime: str = "litert") -> ServedModel:
    """Reads a bundle folder written by models.served_export.export (or `save`).

    Args:
        path: the bundle folder.
        runtime: "litert" runs user_tower.tflite and ranker.tflite (the on-demand
            function), "numpy" the weights in NumPy (the nightly batch; needs only
            served.npz and served.json), neither importing TensorFlow; "tf" builds the
            TensorFlow graph (a reference).
    """
    with open(os.path.join(path, "served.json")) as f:
        meta = json.load(f)
    with np.load(os.path.join(path, "served.npz"), allow_pickle=False) as arrays:
        return from_files(meta, arrays, runtime, (os.path.join(path, "user_tower.tflite"),
                                                  os.path.join(path, "ranker.tflite")))


def from_files(meta: dict, a: Mapping[str, np.ndarray], runtime: str = "litert",
               litert: tuple | None = None) -> ServedModel:
    """The model of a bundle's served.json (`meta`) and served.npz (`a`, e.g. np.load of its
    bytes: no folder needed), as `load` reads them.

    Args:
        meta, a: the parsed files.
        runtime: as in `load`.
        litert: (user_tower.tflite, ranker.tflite), bytes or paths (runtime "litert").

    A bundle written before the neighbour tables were stored sparse (padded t:knn_idx and
    the like) loads too.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    config = config_from_json(meta["config"])
    none = np.zeros(0, np.int64)
    data = TowerData(Vocab(a["item_ids"].astype(object)), a["has_events"], a["item_tokens"],
                     TokenEncoder(**meta["item_enc"]), TokenEncoder(**meta["user_enc"]),
                     None, none, none, none, np.zeros((0, 1), np.int32), meta["now"])
    names = list(a.keys())
    weights = {k[2:]: a[k] for k in names if k.startswith("w:")}
    tower = TwoTowerModel(data, weights, config.tower, meta["tower_epochs"], a["item_vectors"])
    sparse = "t:knn_indptr" in names
    csr = {n: tuple(a[f"t:{n}_{p}"] for p in ("indptr", "indices", "data"))
           for n in NEIGHBOURS if f"t:{n}_indptr" in names} if sparse else {}
    width = meta.get("neighbour_width", config.ranker.neighbours)
    padded = {}
    if sparse and runtime == "tf":  # the graph gathers from the padded tables
        for n in csr:
            w = width if n != "ease" else config.ease_neighbours
            padded[f"{n}_idx"], padded[f"{n}_sim"] = neighbour_padded(*csr[n], w)
    tables = FeatureTables(**{k: padded.get(k) if sparse and k in PADDED
                              else a[f"t:{k}"] if f"t:{k}" in names else None
                              for k in FeatureTables.__dataclass_fields__ if k != "now"},
                           now=meta["now"])
    members = [[a[f"r:{n}:{k}"] for k in range(meta["layers"])] for n in range(meta["members"])]
    ranker = RankerModel(members, a["r:mean"], a["r:std"], meta["ranker_epochs"])
    user_last = dict(zip(a["user_last_ids"].tolist(), a["user_last_ts"].tolist(), strict=True))
    sage = None
    if config.graphsage is not None and "g:item_vectors" in names:
        sage = sage_from_arrays({k[2:]: a[k] for k in names if k.startswith("g:")},
                                config.graphsage, meta.get("graphsage_epochs") or 0)
    model = ServedModel(tower, tables, ranker, config, a["popular"], user_last,
                        neighbours=csr, width=width, sage=sage,
                        fallback=guard_fallback(meta.get("fallback")))
    if runtime == "litert":
        model.runtime = LiteRTRuntime(*litert)
    elif runtime == "tf":
        from models.served_graph import GraphRuntime

        model.runtime = GraphRuntime(model)
    return model


def guard_fallback(value) -> dict[str, str]:
    """served.json's "fallback" (models.served_guard; absent in older bundles) checked:
    {"warm" | "fresh": source name}."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            k in ("warm", "fresh") and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"served.json: fallback {value!r} must map 'warm' / 'fresh' to a "
                         "candidate source name")
    return dict(value)


def config_from_json(c: dict) -> ServedConfig:
    """The ServedConfig of served.json's "config" (dataclasses.asdict of one). A bundle
    written before EASE was a source has no `ease_l2`: EASE is off for it; one written before
    the exposure re-rank has no `rerank_slots`: its lists stay as published (re-rank off);
    one written before score fusion has no `fusion_*`: fusion is off for it."""
    sage = c.get("graphsage")
    return ServedConfig(
        tower=TwoTowerConfig(**c["tower"]),
        ranker=RankerConfig(**{**c["ranker"], "hidden": tuple(c["ranker"]["hidden"])}),
        graphsage=None if sage is None else GraphSAGEConfig(**sage),
        **{"ease_l2": None, "rerank_slots": 0, "fusion_warm": 0.0, "fusion_fresh": 0.0,
           **{k: tuple(v) if isinstance(v, list) else v for k, v in c.items()
              if k not in ("tower", "ranker", "graphsage")}})
