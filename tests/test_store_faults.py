"""A results folder with broken records, a full or read-only disk, and broken
expected files: one warning or one message, and nothing finished is lost."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from clbench.cli import main
from clbench.errors import ClbenchError
from clbench.regression import Expectation, Outcome, RunKey, read_expected
from clbench.results import ResultsStore, read_result
from tests.leaderboard_fixtures import fake_result

BROKEN = {
    "empty-list.json": lambda p: p.write_text("[]"),
    "null.json": lambda p: p.write_text("null"),
    "number.json": lambda p: p.write_text("3"),
    "binary.json": lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe"),
    "truncated.json": lambda p: p.write_text('{"run_id": "x", "scen'),
    "empty.json": lambda p: p.write_text(""),
    "partial-object.json": lambda p: p.write_text('{"run_id": "x"}'),
    "folder.json": lambda p: p.mkdir(),
    "latin1.json": lambda p: p.write_bytes('{"run_id": "caf\xe9"}'.encode("latin-1")),
}


@pytest.fixture
def broken_store(tmp_path) -> tuple[ResultsStore, Path]:
    store = ResultsStore(tmp_path / "runs")
    good = store.write(fake_result())
    for name, make in BROKEN.items():
        make(store.root / name)
    return store, good


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_kind_of_broken_record_is_one_error_naming_the_file(broken_store, name):
    store, _ = broken_store
    with pytest.raises(ClbenchError, match=name):
        read_result(store.root / name)


def test_broken_records_are_skipped_with_a_warning_each(broken_store, capsys):
    store, good = broken_store
    results = store.all()
    assert [r.run_id for r in results] == [good.stem]
    err = capsys.readouterr().err
    for name in BROKEN:
        assert f"{name}" in err
    assert err.count("clbench: warning: skipped") == len(BROKEN)


def test_strict_fails_on_the_first_broken_record(broken_store):
    store, _ = broken_store
    with pytest.raises(ClbenchError, match="not a"):
        store.all(strict=True)


@pytest.mark.parametrize("command", [["results"], ["results", "--csv", "-"]])
def test_results_command_survives_broken_records(broken_store, capsys, command):
    store, good = broken_store
    assert main([*command, "--runs", str(store.root)]) == 0
    out, err = capsys.readouterr()
    assert good.stem[:20] in out or "simplecil" in out
    assert "binary.json" in err
    assert main([*command, "--runs", str(store.root), "--strict"]) == 2


def test_leaderboard_survives_broken_records(broken_store, tmp_path, capsys):
    store, _ = broken_store
    assert (
        main(
            [
                "leaderboard",
                "--runs",
                str(store.root),
                "--out",
                str(tmp_path / "site"),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert (tmp_path / "site" / "index.html").exists()
    assert (
        main(["leaderboard", "--runs", str(store.root), "--strict", "--out", str(tmp_path / "s2")])
        == 2
    )


# ------------------------------------------------------------------ writing


def test_a_folder_that_is_a_file_is_refused_before_running(tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(ClbenchError, match="is a file"):
        ResultsStore(tmp_path / "runs").check_writable()


def test_a_failed_write_keeps_the_result_and_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    store = ResultsStore(tmp_path / "runs")
    result = fake_result()

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(ClbenchError, match="No space left") as info:
        store.write(result)
    kept = tmp_path / "cache" / "rescued-runs" / f"{result.run_id}.json"
    assert str(kept) in str(info.value)
    monkeypatch.undo()
    assert read_result(kept).metrics == result.metrics
    assert not list((tmp_path / "runs").glob(".tmp-*"))  # no half-written record left


def test_stale_temporaries_are_cleaned_fresh_ones_kept(tmp_path):
    store = ResultsStore(tmp_path)
    old, fresh = tmp_path / ".tmp-old.json", tmp_path / ".tmp-live.json"
    old.write_text("{")
    fresh.write_text("{")
    hour_ago = time.time() - 7200
    os.utime(old, (hour_ago, hour_ago))
    store.write(fake_result())
    assert not old.exists() and fresh.exists()


def _mount_tmpfs(folder: Path, options: str) -> bool:
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def tiny_disk(tmp_path):
    folder = tmp_path / "tiny"
    if not _mount_tmpfs(folder, "size=16k"):
        pytest.skip("needs root and a mountable tmpfs to fill a real disk")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_full_disk_keeps_the_finished_run(tiny_disk, tmp_path, monkeypatch):
    """A real full filesystem: the probe before the run passes, the record does not fit."""
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    store = ResultsStore(tiny_disk / "runs")
    (tiny_disk / "keep.txt").write_text("pre-existing")
    store.check_writable()
    result = fake_result()
    result.extra["padding"] = "x" * 64_000  # larger than the 16 KiB disk
    with pytest.raises(ClbenchError, match="kept in") as info:
        store.write(result)
    kept = Path(str(info.value).split("kept in ")[1].split("\n")[0])
    assert read_result(kept).extra["padding"] == result.extra["padding"]
    assert (tiny_disk / "keep.txt").read_text() == "pre-existing"


def test_read_only_disk_is_refused_before_running(tmp_path):
    folder = tmp_path / "ro"
    if not _mount_tmpfs(folder, "ro,size=16k"):
        pytest.skip("needs root and a mountable tmpfs (root ignores file permissions)")
    try:
        with pytest.raises(ClbenchError, match="cannot write"):
            ResultsStore(folder / "runs").check_writable()
    finally:
        subprocess.run(["umount", str(folder)], check=False)


# ------------------------------------------------------------------ expected.csv

HEADER = "scenario,method,backbone,seed,options,metric,value,tolerance\n"
ROW = "emoji-cil,simplecil,efficientnet-lite0,1993,,last_acc_sample,45.86,0.5\n"


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "e.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + ROW).encode())
    assert read_expected(path)[0].value == 45.86


@pytest.mark.parametrize(
    "content,message",
    [
        (
            (HEADER + ROW).encode() + b"emoji-cil,ncm,x,1,,avg_acc_sample,4\xe9,0.5\n",
            "e.csv:3: not UTF-8",
        ),
        (
            (HEADER + 'emoji-cil,knn,x,1,"k=3\nk=4",last_acc_sample,1,0.5\n').encode(),
            "e.csv:2: a quoted field",
        ),
    ],
    ids=["non-utf8", "multi-line-field"],
)
def test_broken_expected_file_is_exit_2_not_regressed(tmp_path, capsys, content, message):
    path = tmp_path / "e.csv"
    path.write_bytes(content)
    assert main(["check", str(path), "--runs", str(tmp_path / "runs")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("measured", [45.355, 45.36, 45.354, 45.35, 45.3551, 46.365, 46.37])
def test_the_rule_judges_the_printed_change(measured):
    expectation = Expectation(RunKey("s", "m", "b", 1), "last_acc_sample", 45.86, 0.5, line=2)
    outcome = Outcome(expectation, measured, "run")
    printed = float(f"{outcome.change:+.2f}")
    assert (outcome.status == "REGRESSED") == (printed < -0.5)
    assert (outcome.status == "improved") == (printed > 0.5)


def test_exactly_at_tolerance_is_ok():
    expectation = Expectation(RunKey("s", "m", "b", 1), "last_acc_sample", 45.86, 0.5, line=2)
    assert Outcome(expectation, 45.36, "run").status == "ok"
    assert Outcome(expectation, 45.35, "run").status == "REGRESSED"


def test_update_refuses_an_unwritable_file_before_running(tmp_path, capsys, monkeypatch):
    path = tmp_path / "e.csv"
    path.write_text(HEADER + ROW)
    import clbench.regression

    def refuse(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    ran = []
    monkeypatch.setattr(clbench.regression.tempfile, "mkstemp", refuse)
    monkeypatch.setattr(clbench.regression, "gather_runs", lambda *a, **k: ran.append(1))
    assert main(["check", str(path), "--update", "--runs", str(tmp_path / "runs")]) == 2
    assert "cannot rewrite" in capsys.readouterr().err and not ran
