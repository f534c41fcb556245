"""Sweeps with real runs (SimpleCIL, NCM, kNN on emoji-cil, EfficientNet-Lite0,
features cached): local worker processes, a real local Ray with 2 CPUs,
retries, resuming a killed sweep, and the same matrices as sequential runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clbench.results import ResultsStore
from clbench.runner import RunSpec, run
from clbench.sweep import run_sweep, stored_keys
from clbench.sweep.grid import Grid

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
SMALL = {"num_tasks": 3}
IMAGE_SIZE = 32  # the session's feature cache starts empty: embed small images


def small_grid(methods=("simplecil", "ncm"), seeds=(1993,), **options) -> list[RunSpec]:
    return Grid(
        methods=list(methods),
        scenarios=["emoji-cil"],
        seeds=list(seeds),
        scenario_options={"*": dict(SMALL)},
        run={"image_size": IMAGE_SIZE},
        **options,
    ).points()


def records_by_key(store: ResultsStore) -> dict[str, list]:
    out: dict[str, list] = {}
    for result in store.all():
        out.setdefault(result.config["spec_key"], []).append(result)
    return out


def alive(pid: int) -> bool:
    """Running (a zombie nobody has reaped yet has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc (macOS): trust kill(pid, 0)
    return state != "Z"


@pytest.fixture
def store(tmp_path) -> ResultsStore:
    return ResultsStore(tmp_path / "runs")


@pytest.fixture
def ray_cluster(monkeypatch):
    ray = pytest.importorskip("ray")
    # Ray's workers inherit this environment: they find tests.sweep_plugin.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


def test_local_workers_give_the_matrices_of_sequential_runs(store, tmp_path):
    points = small_grid(methods=("simplecil", "ncm", "knn"), seeds=(1993, 1994))
    sequential = {spec.key(): run(spec).correct_matrix for spec in points}
    summary = run_sweep(points, store, tmp_path / "logs", workers=2)
    assert [o.status for o in summary.outcomes] == ["done"] * len(points)
    stored = records_by_key(store)
    assert set(stored) == set(sequential)
    for key, results in stored.items():
        assert len(results) == 1
        assert results[0].correct_matrix == sequential[key]
    # Every point has its log, holding what the run printed.
    logs = sorted((tmp_path / "logs").glob("*.log"))
    assert len(logs) == len(points)
    assert all("stored " in log.read_text() for log in logs)
    # Idempotent: run again, nothing runs.
    again = run_sweep(points, store, tmp_path / "logs", workers=2)
    assert [o.status for o in again.outcomes] == ["skipped"] * len(points)
    assert sum(len(r) for r in records_by_key(store).values()) == len(points)


def test_local_retry_and_a_deterministic_failure_with_its_reason(store, tmp_path, monkeypatch):
    import tests.sweep_plugin  # noqa: F401  (the driver validates the plugin method too)

    monkeypatch.setenv("CLBENCH_DATA", str(tmp_path / "no-data"))  # cifar100 is missing
    flaky = small_grid(
        methods=("flaky-simplecil",), method_options={"*": {"marker": str(tmp_path / "m")}}
    )
    missing = Grid(methods=["simplecil"], scenarios=["cifar100"]).points()
    summary = run_sweep(
        flaky + missing,
        store,
        tmp_path / "logs",
        workers=1,
        retries=1,
        plugins=["tests.sweep_plugin"],
    )
    done, failed = summary.outcomes  # in the order they finished: the flaky one ran first
    assert done.label.startswith("flaky-simplecil on emoji-cil")
    assert done.status == "done" and done.attempts == 2
    assert failed.label.startswith("simplecil on cifar100")
    assert failed.status == "failed" and failed.attempts == 1  # not retried: it would fail again
    assert "DataMissingError" in failed.reason and "\n" not in failed.reason
    log = next((tmp_path / "logs").glob("emoji-cil-flaky-simplecil-*.log")).read_text()
    assert log.count("--- attempt") == 2 and "injected failure" in log
    assert len(store.all()) == 1


def test_a_killed_sweep_resumed_runs_only_the_missing_points(store, tmp_path):
    points = small_grid(methods=("simplecil", "ncm"), seeds=(1993, 1994, 1995))
    command = [
        sys.executable,
        "-m",
        "clbench.cli",
        "sweep",
        "--method",
        "simplecil,ncm",
        "--scenario",
        "emoji-cil",
        "--seeds",
        "3",
        "--set",
        "scenario.num_tasks=3",
        "--image-size",
        str(IMAGE_SIZE),
        "--workers",
        "1",
        "--results-dir",
        str(store.root),
        "--logs",
        str(tmp_path / "logs"),
    ]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while len(store.paths()) < 2 and process.poll() is None:
        assert time.monotonic() < deadline, "the sweep stored nothing"
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)  # the driver only, mid-sweep: no clean shutdown
    process.wait()
    # Its worker (named in the point logs) notices and exits instead of lingering.
    worker_pids = {
        int(line.split("(pid ")[1].split(",")[0])
        for log in (tmp_path / "logs").glob("*.log")
        for line in log.read_text().splitlines()
        if line.startswith("--- attempt")
    }
    assert worker_pids
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in worker_pids):
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"workers {worker_pids} outlived their killed driver")
        time.sleep(0.2)
    finished = stored_keys(store)
    assert 0 < len(finished) < len(points), "kill the sweep earlier: it had finished"
    assert finished <= {p.key() for p in points}
    summary = run_sweep(points, store, tmp_path / "logs", workers=1)
    assert {o.key for o in summary.by_status("skipped")} == finished
    assert {o.key for o in summary.by_status("done")} == {p.key() for p in points} - finished
    stored = records_by_key(store)
    assert set(stored) == {p.key() for p in points}
    assert all(len(r) == 1 for r in stored.values())


def test_ray_grid_completes_with_one_record_per_point(store, tmp_path, ray_cluster):
    points = small_grid(methods=("simplecil", "ncm", "lda"))
    summary = run_sweep(points, store, tmp_path / "logs", ray_address="auto", threads=1)
    assert [o.status for o in summary.outcomes] == ["done"] * 3
    stored = records_by_key(store)
    assert set(stored) == {p.key() for p in points} and all(len(r) == 1 for r in stored.values())
    # Resumed with one more seed: only the new points run.
    more = small_grid(methods=("simplecil", "ncm", "lda"), seeds=(1993, 1994))
    again = run_sweep(more, store, tmp_path / "logs", ray_address="auto", threads=1)
    assert len(again.by_status("skipped")) == 3 and len(again.by_status("done")) == 3


def test_ray_retries_a_point_that_fails_once(store, tmp_path, ray_cluster):
    marker = tmp_path / "failed-once"
    points = small_grid(methods=("flaky-simplecil",), method_options={"*": {"marker": str(marker)}})
    import tests.sweep_plugin  # noqa: F401

    summary = run_sweep(
        points,
        store,
        tmp_path / "logs",
        ray_address="auto",
        threads=1,
        retries=2,
        plugins=["tests.sweep_plugin"],
    )
    (outcome,) = summary.outcomes
    assert outcome.status == "done" and outcome.attempts == 2
    assert marker.exists()
    assert len(store.all()) == 1
    # With no retries the same failure is reported, with its reason.
    marker.unlink()
    failed = run_sweep(
        points,
        store,
        tmp_path / "logs",
        ray_address="auto",
        threads=1,
        retries=0,
        rerun=True,
        plugins=["tests.sweep_plugin"],
    )
    assert failed.outcomes[0].status == "failed"
    assert "injected failure" in failed.outcomes[0].reason
