"""Metric conventions against hand-computed values and Avalanche's own functions."""

from __future__ import annotations

import numpy as np
import pytest

from clbench import metrics

NAN = np.nan
# acc[t, i]: three tasks; task 0 rises at t=1 before dropping (PILOT and Chaudhry differ there).
ACC = np.array(
    [
        [0.80, NAN, NAN],
        [0.90, 0.70, NAN],
        [0.60, 0.50, 0.90],
    ]
)
COUNTS = np.array([100, 50, 10])
CORRECT = np.array(
    [
        [80, -1, -1],
        [90, 35, -1],
        [60, 25, 9],
    ]
)


def test_step_accuracy_sample_weighted_is_over_all_seen_samples():
    step = metrics.step_accuracy(CORRECT.clip(min=0), COUNTS, "sample")
    assert step == pytest.approx([0.80, 125 / 150, 94 / 160])


def test_step_accuracy_task_averaged_is_mean_of_task_accuracies():
    step = metrics.step_accuracy(CORRECT.clip(min=0), COUNTS, "task")
    assert step == pytest.approx([0.80, 0.80, (0.6 + 0.5 + 0.9) / 3])


def test_sample_and_task_conventions_differ_on_unbalanced_tests():
    sample = metrics.step_accuracy(CORRECT.clip(min=0), COUNTS, "sample")
    task = metrics.step_accuracy(CORRECT.clip(min=0), COUNTS, "task")
    assert sample[-1] != pytest.approx(task[-1])


def test_average_and_last():
    step = np.array([0.8, 0.6, 0.4])
    assert metrics.average_incremental_accuracy(step) == pytest.approx(0.6)
    assert metrics.last_accuracy(step) == pytest.approx(0.4)


def test_forgetting_pilot_takes_max_over_all_steps():
    # task 0: max(0.8, 0.9, 0.6) - 0.6 = 0.3; task 1: max(0.7, 0.5) - 0.5 = 0.2
    assert metrics.forgetting(ACC, "pilot") == pytest.approx(0.25)


def test_forgetting_chaudhry_excludes_the_last_step():
    # task 0: max(0.8, 0.9) - 0.6 = 0.3; task 1: max(0.7) - 0.5 = 0.2
    assert metrics.forgetting(ACC, "chaudhry") == pytest.approx(0.25)
    rising = np.array([[0.5, NAN], [0.9, 0.8]])
    assert metrics.forgetting(rising, "chaudhry") == pytest.approx(-0.4)
    assert metrics.forgetting(rising, "pilot") == pytest.approx(0.0)


def test_forgetting_avalanche_uses_accuracy_right_after_learning():
    # task 0: 0.8 - 0.6 = 0.2; task 1: 0.7 - 0.5 = 0.2
    assert metrics.forgetting(ACC, "avalanche") == pytest.approx(0.2)


def test_bwt_is_minus_avalanche_forgetting():
    assert metrics.backward_transfer(ACC) == pytest.approx(-0.2)


def test_single_task_has_no_forgetting():
    one = np.array([[0.7]])
    for convention in metrics.FORGETTING_CONVENTIONS:
        assert metrics.forgetting(one, convention) == 0.0


def test_unknown_convention_is_rejected():
    with pytest.raises(ValueError, match="unknown forgetting convention"):
        metrics.forgetting(ACC, "mine")


def test_forward_transfer_needs_unseen_evaluations():
    assert metrics.forward_transfer(ACC) is None
    full = np.array([[0.8, 0.3, 0.2], [0.7, 0.9, 0.4], [0.6, 0.8, 0.9]])
    assert metrics.forward_transfer(full) == pytest.approx((0.3 + 0.4) / 2)
    assert metrics.forward_transfer(full, baseline=np.array([0, 0.1, 0.1])) == pytest.approx(0.25)


def test_harmonic_mean():
    assert metrics.harmonic_mean(0.6, 0.3) == pytest.approx(0.4)
    assert metrics.harmonic_mean(0.0, 0.0) == 0.0


def test_mtil_metrics():
    acc = np.array([[0.9, 0.2], [0.8, 0.7]])
    out = metrics.mtil_metrics(acc)
    assert out == pytest.approx({"transfer": 0.2, "average": (0.85 + 0.45) / 2, "last": 0.75})


def test_summarize_names_every_convention():
    out = metrics.summarize(CORRECT.clip(min=0), COUNTS)
    assert set(out) >= {
        "avg_acc_sample",
        "last_acc_sample",
        "avg_acc_task",
        "last_acc_task",
        "forgetting_pilot",
        "forgetting_chaudhry",
        "forgetting_avalanche",
        "bwt",
    }


# --- against Avalanche's implementations on the same matrix ----------------------------------


def _random_lower_triangular(seed: int, n: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    acc = rng.uniform(0.2, 1.0, size=(n, n))
    acc[np.triu_indices(n, 1)] = 0.0  # Avalanche treats unseen experiences as zero
    return acc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_avalanche_forgetting_matches_avalanche_functional(seed):
    from avalanche.evaluation.functional import forgetting as av_forgetting

    acc = _random_lower_triangular(seed)
    matrix = av_forgetting(acc)
    expected = matrix[-1, :-1].mean()
    assert metrics.forgetting(acc, "avalanche") == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_avalanche_forgetting_and_bwt_match_avalanche_streaming_metrics(seed):
    from avalanche.evaluation.metrics import BWT, Forgetting

    acc = _random_lower_triangular(seed)
    n = acc.shape[0]
    forgetting, bwt = Forgetting(), BWT()
    for t in range(n):
        for i in range(t + 1):
            for metric in (forgetting, bwt):
                if i == t:
                    metric.update_initial(i, acc[t, i])
                metric.update_last(i, acc[t, i])
    # Avalanche reports per-experience values for every experience but the last one learned.
    per_task = forgetting.result()
    expected = np.mean([per_task[i] for i in range(n - 1)])
    assert metrics.forgetting(acc, "avalanche") == pytest.approx(expected)
    per_task_bwt = bwt.result()
    assert metrics.backward_transfer(acc) == pytest.approx(
        np.mean([per_task_bwt[i] for i in range(n - 1)])
    )
