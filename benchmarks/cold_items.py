"""Cold items: items held back from training still reach top-10 lists through their features.

    python -m benchmarks.cold_items --users 2000 --items 1000 --share 0.1 --json cold.json
    python -m benchmarks.cold_items --models two_tower,served --sweep new_item_slots=1
    python -m benchmarks.cold_items --models two_tower,graphsage

On synthetic data (models.synthetic), a random share of the train catalog loses all its train
events; the items stay in the items table (features, `created_ts` before the cutoff), so the
two-tower model indexes them with vectors from their feature tokens alone (GraphSAGE likewise:
its layer 0 of an item without edges is its tokens' mean). Reports, per model,
how often they appear in the top-10 lists of the temporal-holdout cases, and how often they
are right; `--sweep` re-scores the fitted `served` model with other rule settings.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import numpy as np

from benchmarks.output import emit
from models.evaluation import Split, build_cases, recommend_cases, score_lists, temporal_split

log = logging.getLogger(__name__)


def cold_item_report(lists: list[list[str]], truths: list[frozenset], held: set[str],
                     k: int = 10) -> dict:
    """Share of top-k slots, lists and held-back items touched by held-back items, and the
    share of recommended held-back items that are in the truth."""
    top = [r[:k] for r in lists]
    slots = sum(len(r) for r in top)
    cold = [[i for i in r if i in held] for r in top]
    shown = {i for r in cold for i in r}
    hits = sum(len(set(c) & t) for c, t in zip(cold, truths, strict=True))
    n_cold = sum(map(len, cold))
    return {"held_back_share_of_top10_slots": n_cold / max(slots, 1),
            "lists_with_a_held_back_item": float(np.mean([bool(c) for c in cold])),
            "held_back_items_shown": len(shown) / max(len(held), 1),
            "held_back_precision": hits / max(n_cold, 1),
            "held_back_share_of_truth": float(np.mean([len(t & held) / len(t)
                                                       for t in truths]))}


def run(n_users: int, n_items: int, share: float, models: list[str], seed: int = 0,
        sweeps: Sequence[str] = ()) -> dict:
    from benchmarks.validate_served import served_config
    from evaluation.registry import MODEL_REGISTRY
    from models.synthetic import generate

    ds = generate(n_users, n_items, seed)
    split = temporal_split(ds.interactions)
    catalog = np.array(sorted(set(split.train["item_id"])))
    rng = np.random.default_rng(seed)
    held = set(rng.choice(catalog, int(share * len(catalog)), replace=False))
    train = split.train[~split.train["item_id"].isin(held)].reset_index(drop=True)
    cold_split = Split(train, split.test, split.cutoff)
    cases = build_cases(cold_split)
    all_cases = cases.warm + cases.fresh
    report = {"dataset": ds.name, "held_back_items": len(held), "train_catalog": len(catalog),
              "cases": {"warm": len(cases.warm), "fresh": len(cases.fresh)}, "models": {}}
    n_warm = len(cases.warm)

    def measure(model) -> dict:
        lists = recommend_cases(model, cases.warm) + recommend_cases(model, cases.fresh)
        metrics = score_lists(cases, lists[:n_warm], lists[n_warm:], train, n_resamples=100)
        return {**cold_item_report(lists, [c.truth for c in all_cases], held),
                "ndcg@10": {s: metrics[s]["ndcg@10"] for s in ("warm", "fresh", "all")}}

    for name in models:
        model = MODEL_REGISTRY[name]().fit(train.copy(), ds.users, ds.items)
        report["models"][name] = measure(model)
        log.info("%s: %s", name, report["models"][name])
        for sweep in sweeps if name == "served" else ():
            model.model.config = served_config(sweep.split(), model.config)
            report["models"][f"served[{sweep}]"] = measure(model)
            log.info("served[%s]: %s", sweep, report["models"][f"served[{sweep}]"])
    return report


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--share", type=float, default=0.1, help="train items held back")
    parser.add_argument("--models", default="two_tower")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep", action="append", default=[],
                        help="served settings 'field=value ...' re-scored without refitting")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run(args.users, args.items, args.share, args.models.split(","), args.seed,
                 args.sweep)
    emit(report, args.json)
    return report


if __name__ == "__main__":
    main()
