"""report.md says what the cutoff, warm, fresh and all are, and which model to ship."""

from evaluation.report import markdown_report


def _model(ndcg: float, ci: list[float] | None, seconds: float) -> dict:
    segment = {"ndcg@10": ndcg, "recall@20": 0.5, "hr@10": 0.7}
    return {"warm": segment, "fresh": segment,
            "all": {**segment, "ndcg@10_ci": ci, "recall@20_ci": [0.4, 0.6]},
            "coverage@10": 0.1, "longtail_coverage@10": 0.01, "train_seconds": seconds}


def _report(**models: dict) -> dict:
    return {"dataset": "shop", "protocol": "temporal-holdout", "cutoff": "2026-01-31T00:00Z",
            "train_events": 8000, "test_events": 2000, "cases": {"warm": 109, "fresh": 192},
            "models": models}


def _page(**models: dict) -> str:
    return " ".join(markdown_report(_report(**models)).split())


def test_the_page_says_what_the_cutoff_and_the_segments_are_above_the_table():
    page = markdown_report(_report(mf=_model(0.30, [0.27, 0.33], 5.0)))
    prose = " ".join(page[:page.index("| model |")].split())
    assert ("**Cutoff** 2026-01-31T00:00Z: the 0.8-quantile of the event timestamps. Every "
            "model trains on the 8,000 events before it and is scored on the 2,000 after it."
            ) in prose
    assert "**warm**: 109 users seen before the cutoff" in prose
    assert "**fresh**: 192 users first seen after it, given their first 5 items" in prose
    assert "**all**: both" in prose


def test_a_best_model_whose_interval_leaves_the_others_behind_is_shipped_plainly():
    page = _page(popularity=_model(0.31, [0.28, 0.34], 0.0),
                 served=_model(0.40, [0.36, 0.43], 10.6), mf=_model(0.29, [0.26, 0.32], 5.5))
    assert ("**Ship served**: best on all NDCG@10, served 0.4000 [0.3600, 0.4300]; its "
            "interval is above every other model's (next: popularity 0.3100 [0.2800, "
            "0.3400]).") in page
    assert "--model` serves" not in page  # served is a kind the nightly ships


def test_overlapping_intervals_are_said_with_the_cheaper_model():
    page = _page(item_knn=_model(0.35, [0.31, 0.38], 0.1),
                 served=_model(0.37, [0.34, 0.40], 10.6))
    assert ("**Ship served**: best on all NDCG@10, served 0.3700 [0.3400, 0.4000]; its "
            "interval overlaps item_knn 0.3500 [0.3100, 0.3800]: on this data the difference "
            "may be noise, and item_knn trains fastest (0.1 s).") in page


def test_a_best_model_the_nightly_cannot_serve_names_the_best_one_it_can():
    page = _page(item_knn=_model(0.35, [0.31, 0.38], 0.1), mf=_model(0.29, [0.26, 0.32], 5.5))
    assert "**Ship item_knn**" in page
    assert ("`recsys nightly --model` serves graphsage, mf, served, served_dqn: of those, mf "
            "0.2900 [0.2600, 0.3200] is best here.") in page
    assert "none of them was evaluated" in _page(popularity=_model(0.3, None, 0.0))


def test_pool_recall_and_the_loo_pool_sentence_are_on_the_page():
    segment = {"hr@10": 0.4, "ndcg@10": 0.2, "hr@10_ci": [0.3, 0.5], "ndcg@10_ci": [0.1, 0.3],
               "mean_rank": 20.0}
    served = {"all": segment, "coverage@10": 0.3, "longtail_coverage@10": 0.2,
              "train_seconds": 60.0,
              "pool": {"positive_in_pool": 0.668, "hr@10_in_pool": 0.519,
                       "hr@10_out_of_pool": 0.153, "negatives_out_of_pool": 86.5,
                       "out_of_pool_at_or_above": 15.0}}
    report = {"dataset": "ml", "protocol": "loo-sampled", "train_events": 99057,
              "cases": {"all": 943}, "negatives": 99, "train_catalog": 1679,
              "models": {"popularity": {**served, "pool": None,
                                        "all": {**segment, "hr@10": 0.2}}, "served": served},
              "pool_recall": {"served": {"warm": {"tower": 0.5, "pool": 0.7}, "fresh": {
                  "tower": None, "pool": None}, "all": {"tower": 0.5, "pool": 0.7}}}}
    page = " ".join(markdown_report(report).split())
    assert "each of 943 users' latest item is held out and ranked among 99 items" in page
    assert "| served | 0.4000 | [0.3000, 0.5000] | 0.2000 |" in page
    assert "0.2000 | 2.0000 | 1.0000 | 60.0000 |" in page  # HR@10, NDCG@10 over popularity's
    assert "| served | pool | 0.7000 | – | 0.7000 |" in page
    assert ("served: the held-out item is in its pool for 0.6680 of the users, HR@10 0.5190 "
            "for them and 0.1530 for the others; of 86.5000 negatives per user outside its "
            "pool, 15.0000 score at or above the held-out item.") in page
