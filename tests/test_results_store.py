"""The results store under several writers at once: nothing lost, nothing torn."""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import queue
import time

import pytest

from clbench.results import ResultsStore
from tests.leaderboard_fixtures import fake_result

WRITERS = 4
RECORDS = 20


def _write_many(root: str, writer: int, start, done) -> None:
    start.wait()  # every writer starts together, so writes really interleave
    store = ResultsStore(root)
    for n in range(RECORDS):
        # Same scenario, method and seed for everyone: run ids differ only by
        # their random part, the case that collided with a short suffix.
        result = fake_result(
            method="simplecil",
            seed=1993,
            level=0.3 + 0.001 * n,
            config={"method": {"name": "simplecil"}},
        )
        result.extra = {"writer": writer, "n": n}
        store.write(result)
        done.put(result.run_id)


def test_concurrent_writers_lose_no_record(tmp_path):
    # Separate processes, each with its own store object and file handles, as
    # separate `clbench run`s finishing at once are (fork: cheap to start).
    ctx = mp.get_context("fork")
    start, done = ctx.Barrier(WRITERS + 1), ctx.Queue()
    writers = [
        ctx.Process(target=_write_many, args=(str(tmp_path), w, start, done))
        for w in range(WRITERS)
    ]
    for process in writers:
        process.start()
    start.wait()
    # Read while they write: a reader must never see a half-written record.
    # (The queue is drained as we go: a child exits only once its items are read.)
    reads, written, deadline = 0, [], time.monotonic() + 120
    while len(written) < WRITERS * RECORDS:
        assert time.monotonic() < deadline, f"writers stalled: {len(written)} records reported"
        for result in ResultsStore(tmp_path).all():
            assert result.extra["n"] < RECORDS
        reads += 1
        with contextlib.suppress(queue.Empty):
            while True:
                written.append(done.get(timeout=0.01))
    for process in writers:
        process.join(timeout=60)
        assert process.exitcode == 0

    stored = ResultsStore(tmp_path).all()
    assert len(written) == len(set(written))
    assert sorted(r.run_id for r in stored) == sorted(written)
    assert {(r.extra["writer"], r.extra["n"]) for r in stored} == {
        (w, n) for w in range(WRITERS) for n in range(RECORDS)
    }
    for path in tmp_path.glob("*.json"):
        json.loads(path.read_text())  # every file on disk is whole JSON
    assert not list(tmp_path.glob(".tmp-*"))
    assert reads > 0


def test_a_killed_writers_temporary_file_is_not_a_record(tmp_path):
    store = ResultsStore(tmp_path)
    kept = fake_result()
    store.write(kept)
    (tmp_path / ".tmp-abc123.json").write_text('{"run_id": "half')  # what SIGKILL mid-write leaves
    assert [r.run_id for r in store.all()] == [kept.run_id]
    assert store.load(kept.run_id[-12:]).run_id == kept.run_id


def test_run_ids_are_plain_file_names_whatever_the_names(tmp_path):
    from clbench.errors import ClbenchError
    from clbench.results import new_run_id

    run_id = new_run_id("../etc", '<script>alert("x")</script>', 1)
    assert "/" not in run_id and not run_id.startswith(".")
    with pytest.raises(ClbenchError, match="not a plain file name"):
        ResultsStore(tmp_path).path("../outside")
