"""The results store writes whole records and never replaces one."""

from __future__ import annotations

import json

import pytest

from clbench.errors import ClbenchError
from clbench.results import ResultsStore, RunResult


def make_result(run_id: str = "r1", value: float = 0.5) -> RunResult:
    return RunResult(
        run_id=run_id,
        scenario="s",
        scenario_kind="class-incremental",
        method="m",
        backbone="b",
        seed=1,
        config={},
        manifest={},
        split_hash="h",
        class_order=[1, 0],
        task_classes=[[0], [1]],
        correct_matrix=[[1, None], [1, 1]],
        test_counts=[2, 2],
        accuracy_matrix=[[value, float("nan")], [0.5, 0.5]],
        metrics={"last_acc_sample": value, "fwt": None},
        timings={},
        peak_memory={},
        trainable_parameters=[0, 0],
    )


def test_round_trip_stores_nan_as_null(tmp_path):
    store = ResultsStore(tmp_path)
    path = store.write(make_result())
    raw = json.loads(path.read_text())
    assert raw["accuracy_matrix"][0][1] is None
    assert store.load("r1").accuracy_matrix[0][0] == 0.5
    assert [r.run_id for r in store.all()] == ["r1"]
    assert not list(tmp_path.glob(".tmp-*"))


def test_existing_record_is_never_overwritten(tmp_path):
    store = ResultsStore(tmp_path)
    store.write(make_result(value=0.5))
    with pytest.raises(ClbenchError, match="already stored"):
        store.write(make_result(value=0.9))
    assert store.load("r1").metrics["last_acc_sample"] == 0.5


def test_unknown_run_is_a_clear_error(tmp_path):
    with pytest.raises(ClbenchError, match="no unique stored run"):
        ResultsStore(tmp_path).load("nope")
