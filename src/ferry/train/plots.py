"""The evaluation pictures of a version, per task, each with the champion beside it when there is one: both models'
answers on the candidate's holdout, on the same axes.

- binary: ``plot_roc.svg`` (ROC curves, AUC in the legend), ``plot_calibration.svg`` (reliability, 10 bins);
- multiclass: ``plot_roc.svg`` (one-vs-rest per class), ``plot_calibration.svg`` (confidence of the predicted class
  against its accuracy), ``plot_confusion.svg`` (counts, coloured by share of the actual class);
- regression: ``plot_predicted.svg`` (predicted against actual), ``plot_residuals.svg`` (residual against
  predicted).

Curves of the two models share one axes (candidate solid, champion dashed); matrices and scatters are panels side by
side with shared axes and colour scale. Drawn with :func:`ferry.explain.pictures.figure` / ``render``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ferry.explain.pictures import CANDIDATE, CHAMPION, figure, render
from ferry.train.metrics import calibration_table

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["PLOT_FILES", "evaluation_plots"]

#: Every evaluation picture a version may carry (each task draws its own).
PLOT_FILES = ("plot_roc.svg", "plot_calibration.svg", "plot_confusion.svg", "plot_predicted.svg", "plot_residuals.svg")

_BINS = 10
Model = tuple[str, np.ndarray, str, str]  # label, answers, line style, colour


def _models(candidate: np.ndarray, champion: np.ndarray | None, champion_id: str | None) -> list[Model]:
    out: list[Model] = [("candidate", candidate, "-", CANDIDATE)]
    if champion is not None:
        out.append((f"champion {champion_id}" if champion_id else "champion", champion, "--", CHAMPION))
    return out


def _roc(y: np.ndarray, models: list[Model], classes: Sequence[int | str], task: str) -> bytes:
    from matplotlib import colormaps
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, (ax,) = figure(6, 5.5, fit=False)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
    for label, answers, style, colour in models:
        if task == "binary":
            if len(np.unique(y)) == 2:
                fpr, tpr, _ = roc_curve(y, answers)
                ax.plot(fpr, tpr, style, color=colour, label=f"{label} (AUC {roc_auc_score(y, answers):.3f})")
            continue
        palette = colormaps["tab10"]
        for k, name in enumerate(classes):
            hit = (y == k).astype(int)
            if hit.min() == hit.max():
                continue
            fpr, tpr, _ = roc_curve(hit, answers[:, k])
            auc = roc_auc_score(hit, answers[:, k])
            ax.plot(fpr, tpr, style, color=palette(k % 10), label=f"{label}: {name} vs rest (AUC {auc:.3f})")
    _square(ax, "false positive rate", "true positive rate", "ROC" + (" (one vs rest)" if task != "binary" else ""))
    return render(fig)


def _reliability(hit: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean confidence and observed rate of the non-empty bins (:func:`ferry.train.metrics.calibration_table`)."""
    rows = [r for r in calibration_table(hit, confidence, bins=_BINS) if r["rows"]]
    return np.array([r["mean_predicted"] for r in rows]), np.array([r["observed_rate"] for r in rows])


def _calibration(y: np.ndarray, models: list[Model], task: str) -> bytes:
    fig, (ax,) = figure(6, 5.5, fit=False)
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":", label="perfectly calibrated")
    for label, answers, style, colour in models:
        if task == "binary":
            mean_p, rate = _reliability(y.astype(np.float64), answers)
        else:
            predicted = answers.argmax(axis=1)
            mean_p, rate = _reliability((predicted == y).astype(np.float64), answers.max(axis=1))
        ax.plot(mean_p, rate, style, marker="o", color=colour, label=label)
    what = "P(positive)" if task == "binary" else "probability of the predicted class"
    _square(ax, f"mean {what} ({_BINS} bins)", "observed rate" if task == "binary" else "accuracy", "Calibration")
    return render(fig)


def _confusion(y: np.ndarray, models: list[Model], classes: Sequence[int | str]) -> bytes:
    k = len(classes)
    fig, axes = figure(4.6 * len(models) + 1.2, 4.6, panels=len(models), share=True, fit=False)
    image = None
    for ax, (label, answers, _, _) in zip(axes, models, strict=True):
        counts = np.zeros((k, k))
        np.add.at(counts, (y.astype(int), answers.argmax(axis=1)), 1)
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(share, vmin=0, vmax=1, cmap="Blues")
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center",
                        color="white" if share[i, j] > 0.5 else "black")  # fmt: skip
        names = [str(c) for c in classes]
        ax.set_xticks(range(k), names, rotation=45, ha="right")
        ax.set_yticks(range(k), names)
        ax.set_xlabel("predicted")
        ax.set_title(label, fontsize="medium")
    axes[0].set_ylabel("actual")
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="share of the actual class", shrink=0.8)
    fig.suptitle("Confusion matrix (counts; colour: share of each actual class)")
    return render(fig)


def _scatter(y: np.ndarray, models: list[Model], *, residuals: bool) -> bytes:
    fig, axes = figure(5 * len(models), 4.6, panels=len(models), share=True, fit=False)
    values = np.concatenate([np.asarray(m[1], dtype=np.float64) for m in models] + [y])
    low, high = float(np.nanmin(values)), float(np.nanmax(values))
    for ax, (label, answers, _, colour) in zip(axes, models, strict=True):
        pred = np.asarray(answers, dtype=np.float64)
        if residuals:
            ax.scatter(pred, y - pred, s=6, alpha=0.5, color=colour)
            ax.axhline(0, color="grey", linewidth=0.8, linestyle=":")
            ax.set_xlabel("predicted")
        else:
            ax.scatter(y, pred, s=6, alpha=0.5, color=colour)
            ax.plot([low, high], [low, high], color="grey", linewidth=0.8, linestyle=":")
            ax.set_xlabel("actual")
        rmse = float(np.sqrt(np.mean((y - pred) ** 2)))
        ax.set_title(f"{label} (RMSE {rmse:.4g})", fontsize="medium")
    axes[0].set_ylabel("actual - predicted" if residuals else "predicted")
    fig.suptitle("Residuals" if residuals else "Predicted against actual")
    return render(fig)


def _square(ax: Axes, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")


def evaluation_plots(
    task: str,
    y: np.ndarray,
    candidate: np.ndarray,
    *,
    classes: Sequence[int | str] = (),
    champion: np.ndarray | None = None,
    champion_id: str | None = None,
) -> dict[str, bytes]:
    """The task's pictures (file name -> SVG bytes) from the holdout's targets ``y`` and each model's answers:
    P(positive) (binary), a probability per class (multiclass) or values (regression)."""
    models = _models(candidate, champion, champion_id)
    if task == "regression":
        y = np.asarray(y, dtype=np.float64)
        return {
            "plot_predicted.svg": _scatter(y, models, residuals=False),
            "plot_residuals.svg": _scatter(y, models, residuals=True),
        }
    y = np.asarray(y).astype(int)
    out = {"plot_roc.svg": _roc(y, models, classes, task), "plot_calibration.svg": _calibration(y, models, task)}
    if task == "multiclass":
        out["plot_confusion.svg"] = _confusion(y, models, classes)
    return out
