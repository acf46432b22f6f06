"""The evaluation pictures per task, from answers alone: the files each task draws, and the champion beside."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import svg_texts

from ferry.train.plots import PLOT_FILES, evaluation_plots

RNG = np.random.default_rng(0)
Y2 = RNG.integers(0, 2, 120)
P2 = np.clip(Y2 * 0.6 + RNG.uniform(0, 0.4, 120), 0, 1)
Y3 = RNG.integers(0, 3, 120)
P3 = RNG.dirichlet([1, 1, 1], 120)
Y = RNG.normal(10, 2, 120)


@pytest.mark.parametrize(
    ("task", "y", "answers", "files"),
    [
        ("binary", Y2, P2, {"plot_roc.svg", "plot_calibration.svg"}),
        ("multiclass", Y3, P3, {"plot_roc.svg", "plot_calibration.svg", "plot_confusion.svg"}),
        ("regression", Y, Y + RNG.normal(0, 1, 120), {"plot_predicted.svg", "plot_residuals.svg"}),
    ],
)
def test_each_task_draws_its_pictures_with_the_champion_beside(
    task: str, y: np.ndarray, answers: np.ndarray, files: set[str]
) -> None:
    classes = ("a", "b", "c") if task == "multiclass" else (0, 1)
    # (without a champion: the versions of the session's models, tests/train/test_explaining.py)
    beside = evaluation_plots(task, y, answers, classes=classes, champion=answers[::-1].copy(), champion_id="v0")
    assert set(beside) == files
    assert files <= set(PLOT_FILES)
    for name, data in beside.items():
        texts = " ".join(svg_texts(data))
        assert "candidate" in texts, name
        assert "champion v0" in texts, name
