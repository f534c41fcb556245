"""The results store under several writers at once: nothing lost, nothing torn."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest

from clbench.results import ResultsStore
from tests.leaderboard_fixtures import fake_result

WRITERS = 6
RECORDS = 25


def _write_many(root: str, writer: int, start) -> list[str]:
    start.wait()  # every writer starts together, so writes really interleave
    store = ResultsStore(root)
    ids = []
    for n in range(RECORDS):
        # Same scenario, method and seed for everyone: run ids differ only by
        # their random part, the case that collided with a short suffix.
        result = fake_result(method="simplecil", seed=1993, level=0.3 + 0.001 * n, config={"method": {"name": "simplecil"}})
        result.extra = {"writer": writer, "n": n}
        store.write(result)
        ids.append(result.run_id)
    return ids


def test_concurrent_writers_lose_no_record(tmp_path):
    ctx = mp.get_context("spawn")  # separate interpreters, as separate `clbench run`s are
    with ctx.Manager() as manager:
        start = manager.Barrier(WRITERS + 1)
        with ctx.Pool(WRITERS) as pool:
            pending = [pool.apply_async(_write_many, (str(tmp_path), w, start)) for w in range(WRITERS)]
            start.wait()
            # Read while they write: a reader must never see a half-written record.
            reads = 0
            while not all(p.ready() for p in pending):
                for result in ResultsStore(tmp_path).all():
                    assert result.extra["n"] < RECORDS
                reads += 1
            written = [run_id for p in pending for run_id in p.get(timeout=120)]

    stored = ResultsStore(tmp_path).all()
    assert len(written) == WRITERS * RECORDS == len(set(written))
    assert sorted(r.run_id for r in stored) == sorted(written)
    assert {(r.extra["writer"], r.extra["n"]) for r in stored} == {
        (w, n) for w in range(WRITERS) for n in range(RECORDS)}
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
