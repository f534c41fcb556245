"""Continual-learning metrics as pure functions of a stored run.

Inputs are the accuracy matrix ``acc[t, i]`` (accuracy on task i's test data
after learning task t; NaN where not evaluated) and, for sample-weighted
accuracy, the correct-count matrix and per-task test counts. Every convention
in PROTOCOLS.md is computed from the same run and named in the output.
"""

from __future__ import annotations

import numpy as np

FORGETTING_CONVENTIONS = ("pilot", "chaudhry", "avalanche")


def accuracy_matrix(correct: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Fractions from correct counts; NaN where a cell was not evaluated."""
    correct = np.asarray(correct, dtype=float)
    counts = np.asarray(counts, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts[None, :] > 0, correct / counts[None, :], np.nan)


def step_accuracy(
    correct: np.ndarray, counts: np.ndarray, convention: str = "sample"
) -> np.ndarray:
    """Accuracy after each step over all tasks seen so far.

    ``sample`` (PILOT/PyCIL): top-1 over all test samples of the seen tasks.
    ``task`` (Mammoth): mean of the seen tasks' accuracies; a task without test
    data (CORe50's later sessions share task 0's held-out set) has no accuracy
    and is left out of the mean.
    """
    correct = np.asarray(correct, dtype=float)
    counts = np.asarray(counts, dtype=float)
    steps = correct.shape[0]
    out = np.empty(steps)
    acc = accuracy_matrix(correct, counts)
    for t in range(steps):
        if convention == "sample":
            out[t] = correct[t, : t + 1].sum() / counts[: t + 1].sum()
        elif convention == "task":
            seen = acc[t, : t + 1][counts[: t + 1] > 0]
            out[t] = np.mean(seen) if seen.size else np.nan
        else:
            raise ValueError(f"unknown accuracy convention {convention!r}: use 'sample' or 'task'")
    return out


def average_incremental_accuracy(step_acc: np.ndarray) -> float:
    """Ā: the mean of the accuracy after each step."""
    return float(np.mean(step_acc))


def last_accuracy(step_acc: np.ndarray) -> float:
    return float(step_acc[-1])


def task_forgetting(acc: np.ndarray, convention: str = "pilot") -> np.ndarray:
    """Forgetting of each task before the last one, in the conventions of
    ``forgetting``; NaN for a task whose final accuracy was not measured."""
    acc = np.asarray(acc, dtype=float)
    last = acc.shape[0] - 1
    values = np.full(max(last, 0), np.nan)
    for i in _tested(acc, last):
        if convention == "pilot":
            best = np.nanmax(acc[i:, i])
        elif convention == "chaudhry":
            best = np.nanmax(acc[i:last, i])
        elif convention == "avalanche":
            best = acc[i, i]
        else:
            raise ValueError(
                f"unknown forgetting convention {convention!r}: use {FORGETTING_CONVENTIONS}"
            )
        values[i] = best - acc[last, i]
    return values


def forgetting(acc: np.ndarray, convention: str = "pilot") -> float:
    """Average forgetting over the tasks before the last one.

    ``pilot``: max over every step t >= i (the last included) of acc[t, i], minus
    acc[T, i]; never negative. ``chaudhry`` (Continuum, FACIL): the max runs over
    steps before the last only, so it can be negative. ``avalanche``:
    acc[i, i] - acc[T, i].
    """
    acc = np.asarray(acc, dtype=float)
    if acc.shape[0] == 1:
        return 0.0
    values = task_forgetting(acc, convention)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def backward_transfer(acc: np.ndarray) -> float:
    """BWT: mean over i < T of acc[T, i] - acc[i, i] (negative means forgetting)."""
    acc = np.asarray(acc, dtype=float)
    last = acc.shape[0] - 1
    if last == 0:
        return 0.0
    return float(np.mean([acc[last, i] - acc[i, i] for i in _tested(acc, last)]))


def _tested(acc: np.ndarray, last: int) -> list[int]:
    """Tasks before the last whose final accuracy exists (tasks without test data have none)."""
    tested = [i for i in range(last) if np.isfinite(acc[last, i])]
    return tested or [0]


def forward_transfer(acc: np.ndarray, baseline: np.ndarray | None = None) -> float | None:
    """FWT (Lopez-Paz & Ranzato): mean over i > 0 of acc[i-1, i] - baseline[i].

    Needs each task's accuracy before it is learned, so it is defined only when
    unseen tasks were evaluated (domain-incremental); None otherwise.
    """
    acc = np.asarray(acc, dtype=float)
    if acc.shape[0] < 2:
        return None
    before = np.array([acc[i - 1, i] for i in range(1, acc.shape[1])])
    if np.isnan(before).any():
        return None
    base = np.zeros_like(before) if baseline is None else np.asarray(baseline, float)[1:]
    return float(np.mean(before - base))


def harmonic_mean(base: float, novel: float) -> float:
    """Harmonic mean of base and novel accuracy (few-shot CIL)."""
    return 0.0 if base + novel == 0 else float(2 * base * novel / (base + novel))


def few_shot_metrics(correct: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    """Few-shot CIL after the last session: base accuracy (task 0's classes), novel
    accuracy (all later sessions' classes, sample-weighted) and their harmonic mean."""
    correct = np.asarray(correct, dtype=float)
    counts = np.asarray(counts, dtype=float)
    last = correct.shape[0] - 1
    base = correct[last, 0] / counts[0] if counts[0] else float("nan")
    novel_count = counts[1:].sum()
    novel = correct[last, 1:].sum() / novel_count if novel_count else float("nan")
    return {
        "base_acc": float(base),
        "novel_acc": float(novel),
        "harmonic_mean": harmonic_mean(base, novel) if novel_count else float("nan"),
    }


def mtil_metrics(acc: np.ndarray) -> dict[str, float]:
    """MTIL (ZSCL/CoDyRA): Transfer = mean over tasks j > 0 of the mean zero-shot
    accuracy on j before it is learned (rows i < j), Average = mean over tasks of
    each task's column mean over all steps, Last = mean of the final row.

    The references compute Transfer with ``np.ma.masked_equal(np.triu(A, 1), 0)``,
    which also drops any above-diagonal cell that is exactly 0; here a 0 counts
    (they agree whenever no zero-shot accuracy is exactly 0)."""
    acc = np.asarray(acc, dtype=float)
    n = acc.shape[1]
    transfer = [np.mean(acc[:i, i]) for i in range(1, n)]
    return {
        "transfer": float(np.mean(transfer)) if transfer else float("nan"),
        "average": float(np.mean([np.mean(acc[:, i]) for i in range(n)])),
        "last": float(np.mean(acc[-1])),
    }


def summarize(
    correct: np.ndarray, counts: np.ndarray, evaluate_unseen: bool = False, few_shot: bool = False
) -> dict[str, float | None]:
    """Every headline metric of a run, each named with its convention.

    ``few_shot`` adds base/novel accuracy and their harmonic mean (FSCIL), where
    task 0 is the base session.
    """
    acc = accuracy_matrix(correct, counts)
    sample = step_accuracy(correct, counts, "sample")
    task = step_accuracy(correct, counts, "task")
    out: dict[str, float | None] = {
        "avg_acc_sample": average_incremental_accuracy(sample),
        "last_acc_sample": last_accuracy(sample),
        "avg_acc_task": average_incremental_accuracy(task),
        "last_acc_task": last_accuracy(task),
        "forgetting_pilot": forgetting(acc, "pilot"),
        "forgetting_chaudhry": forgetting(acc, "chaudhry"),
        "forgetting_avalanche": forgetting(acc, "avalanche"),
        "bwt": backward_transfer(acc),
    }
    if evaluate_unseen:
        out["fwt"] = forward_transfer(acc)
        if np.isfinite(acc).all():  # every task tested after every step
            out.update({f"mtil_{k}": v for k, v in mtil_metrics(acc).items()})
    if few_shot:
        out.update(few_shot_metrics(correct, counts))
    return out


def overall_performance(acc: np.ndarray) -> float:
    """OP (TRACE): the mean score over all tasks after the last one (task-averaged)."""
    final = np.asarray(acc, dtype=float)[-1]
    return float(np.nanmean(final))


def retention(before: np.ndarray, after: np.ndarray) -> float | None:
    """General-ability retention: mean held-out score after the last task minus before
    the first (0 = nothing lost; negative = general ability forgotten). None without
    held-out tasks."""
    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if before.size == 0:
        return None
    return float(np.mean(after) - np.mean(before))


def instruction_metrics(
    acc: np.ndarray, initial: np.ndarray, heldout: np.ndarray | None
) -> dict[str, float | None]:
    """The metrics of a text stream from its score matrix.

    ``acc[t, i]``: mean score on task i after task t (every task tested after every
    step); ``initial``: mean score of the untouched model on the T stream tasks then
    the H held-out tasks; ``heldout[t, h]``: held-out scores after step t. FWT is
    read against the zero-shot scores (acc[i-1, i] - initial[i]), BWT and the
    forgetting conventions as for images, retention on the held-out tasks.
    """
    acc = np.asarray(acc, dtype=float)
    initial = np.asarray(initial, dtype=float)
    n = acc.shape[1]
    held_before = initial[n:]
    held_after = np.asarray(heldout, dtype=float)[-1] if heldout is not None else np.zeros(0)
    return {
        "op": overall_performance(acc),
        "bwt": backward_transfer(acc),
        "fwt_zero_shot": forward_transfer(acc, initial[:n]),
        "forgetting_pilot": forgetting(acc, "pilot"),
        "forgetting_chaudhry": forgetting(acc, "chaudhry"),
        "forgetting_avalanche": forgetting(acc, "avalanche"),
        "zero_shot_mean": float(np.mean(initial[:n])),
        "heldout_before": float(np.mean(held_before)) if held_before.size else None,
        "heldout_after": float(np.mean(held_after)) if held_after.size else None,
        "retention": retention(held_before, held_after),
    }
