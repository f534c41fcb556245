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
# Line styles (matplotlib, plotly) taken in turn after each 10 entries, when colours repeat.
LINESTYLES = ("-", ":", "--", "-.")
DASHES = ("solid", "dot", "dash", "dashdot")


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


def _legend_below(fig: Figure, ax, count: int, width: float) -> None:
    """A legend under the axes, in as many columns as fit: with 26 entries a legend
    inside the axes covers the curves."""
    columns = max(1, min(count, int(width // 2.4)))
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(0, -0.16),
        ncol=columns,
        fontsize=7,
        frameon=False,
        handlelength=1.5,
    )


def _figure_with_legend(count: int, width: float = 7.5, plot_height: float = 3.6) -> Figure:
    rows = -(-count // max(1, min(count, int(width // 2.4)))) if count else 0
    height = plot_height + 0.5 + 0.17 * rows
    fig = Figure(figsize=(width, height))
    bottom = (0.5 + 0.17 * rows) / height
    fig.subplots_adjust(left=0.1, right=0.97, bottom=bottom, top=1 - 0.3 / height)
    return fig


def comparison(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]],
    title: str,
    path: Path,
    ylabel: str = "accuracy on seen tasks (%, sample-weighted)",
) -> Path:
    """Every method's accuracy-after-each-task curve on one plot (the static
    fallback of the interactive chart).

    ``curves`` holds (label, mean curve, standard deviation or NaNs) per method;
    the spread over seeds is drawn as a band.
    """
    with matplotlib.rc_context(STYLE):
        fig = _figure_with_legend(len(curves))
        ax = fig.add_subplot()
        for index, (label, mean, std) in enumerate(curves):
            steps = np.arange(1, len(mean) + 1)
            # matplotlib cycles 10 colours: every further 10 entries get another line style
            style = LINESTYLES[index // 10 % len(LINESTYLES)]
            (line,) = ax.plot(steps, mean, style, marker="o", markersize=3, label=label)
            if np.isfinite(std).any():
                ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        ax.set_xlabel("tasks learned")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        if curves:
            _legend_below(fig, ax, len(curves), 7.5)
        ax.set_title(title)
        return _save(fig, path)


def cost_scatter(
    labels: Sequence[str],
    costs: Sequence[float],
    scores: Sequence[float],
    front: Sequence[int],
    xlabel: str,
    title: str,
    path: Path,
) -> Path:
    """Accuracy against a cost, one point per entry, the Pareto front as a line;
    points on the front are named, the others are not (their names would overlap)."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(5.6, 3.8))
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.14, top=0.91)
        ax = fig.add_subplot()
        x, y = np.asarray(costs, dtype=float), np.asarray(scores, dtype=float)
        ax.scatter(x, y, s=18, color="#4c72b0", alpha=0.7, label="entry")
        if front:
            ax.plot(x[front], y[front], color="#c44e52", marker="o", label="Pareto front")
            for i in front:
                ax.annotate(
                    labels[i], (x[i], y[i]), fontsize=6, xytext=(3, 3), textcoords="offset points"
                )
        finite = x[np.isfinite(x)]
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 50:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Ā (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
        ax.set_title(title)
        return _save(fig, path)


def forgetting_map(labels: Sequence[str], values: np.ndarray, title: str, path: Path) -> Path:
    """Forgetting (%) of each task (columns) per entry (rows), as a heatmap."""
    rows, tasks = values.shape if values.size else (0, 0)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(max(5.0, 0.45 * tasks + 3.5), 1.2 + 0.2 * max(rows, 1)))
        fig.subplots_adjust(left=0.4, right=0.92, bottom=0.6 / (1.2 + 0.2 * max(rows, 1)), top=0.9)
        ax = fig.add_subplot()
        image = ax.imshow(np.ma.masked_invalid(values), aspect="auto", cmap="Reds", vmin=0)
        ax.set_yticks(range(rows))
        ax.set_yticklabels(labels, fontsize=6)
        ax.set_xticks(range(tasks))
        ax.set_xlabel("task")
        ax.set_title(title)
        fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
        return _save(fig, path)


# ---------------------------------------------------------------- interactive (plotly)
# Figure specs as plain dicts for Plotly.newPlot in the page: no plotly Python
# objects (their validation costs more than drawing the PNG). Names reach plotly
# with <, > and & as entities, which plotly shows as typed text.


def plotly_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _finite_list(values: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else round(float(v), 3) for v in values]


def curves_spec(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str, ylabel: str
) -> dict:
    data = []
    for index, (label, mean, std) in enumerate(curves):
        steps = list(range(1, len(mean) + 1))
        trace = {
            "type": "scatter",
            "mode": "lines+markers",
            # plotly cycles 10 colours: every further 10 entries get another dash
            "line": {"dash": DASHES[index // 10 % len(DASHES)]},
            "name": plotly_text(label),
            "x": steps,
            "y": _finite_list(mean),
            "hovertemplate": "%{fullData.name}<br>after task %{x}: %{y:.2f}%<extra></extra>",
        }
        if np.isfinite(std).any():
            trace["error_y"] = {
                "type": "data",
                "array": _finite_list(std),
                "visible": True,
                "thickness": 1,
            }
        data.append(trace)
    return {
        "data": data,
        "layout": {
            "title": {"text": plotly_text(title)},
            "xaxis": {"title": {"text": "tasks learned"}, "dtick": 1},
            "yaxis": {"title": {"text": ylabel}, "range": [0, 100]},
            "legend": {"orientation": "h", "y": -0.2, "font": {"size": 10}},
            "height": 460 + 22 * (len(curves) // 3),
            "margin": {"t": 40, "l": 60, "r": 20},
            "hovermode": "closest",
        },
    }


def scatter_spec(
    labels: Sequence[str],
    costs: Sequence[float],
    scores: Sequence[float],
    front: Sequence[int],
    xlabel: str,
    title: str,
) -> dict:
    x = np.asarray(costs, dtype=float)
    y = np.asarray(scores, dtype=float)
    finite = x[np.isfinite(x)]
    log = bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 50)
    names = [plotly_text(label) for label in labels]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "markers",
                "name": "entries",
                "x": _finite_list(x),
                "y": _finite_list(y),
                "text": names,
                "hovertemplate": "%{text}<br>%{x:,}<br>Ā %{y:.2f}%<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "Pareto front",
                "x": _finite_list(x[list(front)]),
                "y": _finite_list(y[list(front)]),
                "text": [names[i] for i in front],
                "hovertemplate": "%{text}<br>%{x:,}<br>Ā %{y:.2f}% (Pareto front)<extra></extra>",
                "line": {"color": "#c44e52"},
            },
        ],
        "layout": {
            "title": {"text": plotly_text(title)},
            "xaxis": {"title": {"text": xlabel}, "type": "log" if log else "linear"},
            "yaxis": {"title": {"text": "Ā (%)"}},
            "height": 420,
            "margin": {"t": 40, "l": 60, "r": 20},
        },
    }


def forgetting_spec(labels: Sequence[str], values: np.ndarray, title: str) -> dict:
    rows, tasks = values.shape if values.size else (0, 0)
    return {
        "data": [
            {
                "type": "heatmap",
                "z": [_finite_list(row) for row in values],
                "x": list(range(tasks)),
                "y": [plotly_text(label) for label in labels],
                "colorscale": [[0, "#ffffff"], [1, "#b2182b"]],
                "zmin": 0,
                "hovertemplate": "%{y}<br>task %{x}: forgetting %{z:.2f}%<extra></extra>",
            }
        ],
        "layout": {
            "title": {"text": plotly_text(title)},
            "xaxis": {"title": {"text": "task"}, "dtick": 1},
            "yaxis": {"automargin": True, "autorange": "reversed"},
            "height": 160 + 22 * rows,
            "margin": {"t": 40, "r": 20},
        },
    }
