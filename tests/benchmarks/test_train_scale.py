"""The scale benchmark's memory figure belongs to the process that measures it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from benchmarks.train_scale import peak_rss_mb


def test_peak_rss_of_a_child_ignores_the_parents_memory():
    ballast = np.ones(400 * 2**20 // 8)  # 400 MB resident in this (the parent) process
    assert peak_rss_mb() >= 400
    code = "from benchmarks.train_scale import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) < 300, out.stdout
    del ballast
