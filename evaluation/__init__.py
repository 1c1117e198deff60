"""Offline evaluation under the temporal-holdout protocol (../shared/EVALUATION.md; our figures
in docs/EVALUATION_RESULTS.md): `registry` names the models, `run` fits and scores them with the
protocol of models/evaluation.py, `report` writes report.md and the plot. No Beam here: it runs
in one process on a dataset that fits in memory."""
