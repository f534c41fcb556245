"""Matplotlib figures of stored runs, written as PNG files.

The object-oriented API (``Figure`` without pyplot) keeps no global state, so
figures can be drawn in worker processes. Mathtext is off: a method or
scenario name with a ``$`` in it is printed as typed, not parsed as TeX.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from clbench import metrics
from clbench.results import RunResult

DPI = 80
STYLE = {"text.parse_math": False, "font.size": 9, "axes.titlesize": 10, "figure.dpi": DPI}


def correct_counts(result: RunResult) -> tuple[np.ndarray, np.ndarray]:
    correct = np.array(
        [[-1 if v is None else v for v in row] for row in result.correct_matrix], dtype=float
    )
    return correct, np.asarray(result.test_counts, dtype=float)


def step_accuracy(result: RunResult, convention: str = "sample") -> np.ndarray:
    """Accuracy (%) over the seen tasks after each task, from the stored counts."""
    correct, counts = correct_counts(result)
    return 100 * metrics.step_accuracy(correct.clip(min=0), counts, convention)


def accuracy_percent(result: RunResult) -> np.ndarray:
    return 100 * np.array(
        [[np.nan if v is None else v for v in row] for row in result.accuracy_matrix], dtype=float
    )


def _save(fig: Figure, path: Path) -> Path:
    # Fixed margins instead of bbox_inches="tight", which draws every figure
    # twice: the site draws hundreds of them.
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def heatmap(result: RunResult, path: Path) -> Path:
    """acc[t, i]: accuracy on task i (columns) after learning task t (rows)."""
    acc = accuracy_percent(result)
    n = acc.shape[0]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(4.6, 3.8))
        fig.subplots_adjust(left=0.14, right=0.9, bottom=0.12, top=0.92)
        ax = fig.add_subplot()
        image = ax.imshow(np.ma.masked_invalid(acc), vmin=0, vmax=100, cmap="viridis")
        # No numbers in the cells: the run page prints the matrix as a table next
        # to the figure, and text is most of a figure's drawing time.
        ax.set_xlabel("task i (tested)")
        ax.set_ylabel("after learning task t")
        ticks = range(0, n, max(1, n // 10))  # at most about ten labels per axis
        ax.set_xticks(ticks)
        ax.set_yticks(ticks)
        ax.set_title("accuracy matrix (%)")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        return _save(fig, path)


def step_curve(result: RunResult, path: Path) -> Path:
    """Accuracy over all seen tasks after each task, in both conventions."""
    steps = np.arange(1, len(result.test_counts) + 1)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(5, 3.2))
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.15, top=0.9)
        ax = fig.add_subplot()
        ax.plot(steps, step_accuracy(result, "sample"), marker="o", label="sample-weighted (PILOT)")
        ax.plot(
            steps,
            step_accuracy(result, "task"),
            marker="s",
            linestyle="--",
            label="task-averaged (Mammoth)",
        )
        ax.set_xlabel("tasks learned")
        ax.set_ylabel("accuracy on seen tasks (%)")
        ax.set_ylim(0, 100)
        ax.set_xticks(steps)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left")
        ax.set_title("accuracy after each task")
        return _save(fig, path)


def task_bars(result: RunResult, path: Path) -> Path:
    """Per task: accuracy right after learning it, and after the last task."""
    acc = accuracy_percent(result)
    n = acc.shape[0]
    tasks = np.arange(n)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(max(5, 0.45 * n + 1.5), 3.2))
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.15, top=0.9)
        ax = fig.add_subplot()
        ax.bar(tasks - 0.2, np.diag(acc), width=0.4, label="just after learning it")
        ax.bar(tasks + 0.2, acc[-1], width=0.4, label="after the last task")
        ax.set_xlabel("task")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 118)  # headroom: the legend sits above the bars, not on them
        ax.set_yticks(range(0, 101, 20))
        ax.set_xticks(tasks)
        ax.legend(loc="upper center", ncol=2)
        ax.set_title("per-task accuracy")
        return _save(fig, path)


def comparison(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str, path: Path
) -> Path:
    """Every method's accuracy-after-each-task curve on one plot.

    ``curves`` holds (label, mean curve, standard deviation or NaNs) per method;
    the spread over seeds is drawn as a band.
    """
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(7.5, 4.5))
        fig.subplots_adjust(left=0.1, right=0.97, bottom=0.12, top=0.92)
        ax = fig.add_subplot()
        for label, mean, std in curves:
            steps = np.arange(1, len(mean) + 1)
            (line,) = ax.plot(steps, mean, marker="o", markersize=3, label=label)
            if np.isfinite(std).any():
                ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set_xlabel("tasks learned")
        ax.set_ylabel("accuracy on seen tasks (%, sample-weighted)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        if curves:
            ax.legend(loc="best", fontsize=7)
        ax.set_title(title)
        return _save(fig, path)
