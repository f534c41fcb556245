"""`clbench check`: one-sided gate, clear errors, missing runs run, records untouched."""

from __future__ import annotations

import pytest

from clbench.cli import main
from clbench.errors import ConfigError
from clbench.regression import COLUMNS, read_expected
from clbench.results import ResultsStore
from tests.leaderboard_fixtures import fake_result

HEADER = ",".join(COLUMNS)


def expected_file(tmp_path, rows: list[str], name: str = "expected.csv"):
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


@pytest.fixture
def store(tmp_path):
    store = ResultsStore(tmp_path / "runs")
    store.write(fake_result("simplecil", level=0.6, forgetting=0.05))
    store.write(fake_result("ncm", level=0.7, forgetting=0.02))
    return store


def measured(store, method: str, metric: str) -> float:
    return 100 * next(r for r in store.all() if r.method == method).metrics[metric]


def check(path, store, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["check", str(path), "--runs", str(store.root), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_drop_one_point_below_tolerance_fails_and_names_the_row(tmp_path, store, capsys):
    last = measured(store, "ncm", "last_acc_sample")
    avg = measured(store, "simplecil", "avg_acc_sample")
    path = expected_file(
        tmp_path,
        [
            f"emoji-cil,simplecil,efficientnet-lite0,1993,,avg_acc_sample,{avg:.4f},0.5",
            # measured = expected - tolerance - 1 point
            f"emoji-cil,ncm,efficientnet-lite0,1993,,last_acc_sample,{last + 0.5 + 1:.4f},0.5",
        ],
    )
    code, out, _ = check(path, store, capsys)
    assert code == 1
    assert "1 of 2 checks regressed" in out
    failures = [line for line in out.splitlines() if line.strip().startswith("REGRESSED line")]
    assert len(failures) == 1
    assert (
        "line 3" in failures[0]
        and "ncm on emoji-cil" in failures[0]
        and "last_acc_sample" in failures[0]
    )


def test_a_rise_and_a_drop_within_tolerance_pass(tmp_path, store, capsys):
    avg = measured(store, "simplecil", "avg_acc_sample")
    last = measured(store, "ncm", "last_acc_sample")
    path = expected_file(
        tmp_path,
        [
            f"emoji-cil,simplecil,efficientnet-lite0,1993,,avg_acc_sample,{avg - 5:.4f},0.5",  # rose 5 points
            f"emoji-cil,ncm,efficientnet-lite0,1993,,last_acc_sample,{last + 0.5:.6f},0.5",  # exactly at tolerance
        ],
    )
    code, out, _ = check(path, store, capsys)
    assert code == 0, out
    assert "improved" in out and "all 2 checks passed" in out


def test_forgetting_fails_when_it_rises_not_when_it_falls(tmp_path, store, capsys):
    forgetting = measured(store, "simplecil", "forgetting_pilot")
    worse = expected_file(
        tmp_path,
        [f"emoji-cil,simplecil,efficientnet-lite0,1993,,forgetting_pilot,{forgetting - 2:.4f},0.5"],
        "w.csv",
    )
    better = expected_file(
        tmp_path,
        [f"emoji-cil,simplecil,efficientnet-lite0,1993,,forgetting_pilot,{forgetting + 2:.4f},0.5"],
        "b.csv",
    )
    assert check(worse, store, capsys)[0] == 1
    assert check(better, store, capsys)[0] == 0


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            ["emoji-cil,simplecil,efficientnet-lite0,1993,,avg_acc_sample,fifty,0.5"],
            "value is 'fifty', not a number",
        ),
        (
            ["emoji-cil,simplecil,efficientnet-lite0,1993,,accuracy,50,0.5"],
            "unknown metric 'accuracy'",
        ),
        (
            ["emoji-cil,simplecil,efficientnet-lite0,1993,,avg_acc_sample,50"],
            "fewer fields than the header",
        ),
        (
            ["emoji-cil,simplecil,efficientnet-lite0,1993,,avg_acc_sample,50,0.5,9"],
            "more fields than the header",
        ),
        (
            ["emoji-cil,simplecil,efficientnet-lite0,1993,,avg_acc_sample,50,-1"],
            "tolerance -1.0 is negative",
        ),
        (["emoji-cil,simplecil,efficientnet-lite0,1993,,avg_acc_sample,,0.5"], "no expected value"),
        (
            ["emoji-cil,simplecil,efficientnet-lite0,1993,,avg_acc_sample,50,0.5"] * 2,
            "listed twice",
        ),
    ],
)
def test_a_malformed_expected_file_is_a_clear_error(tmp_path, store, capsys, rows, message):
    path = expected_file(tmp_path, rows)
    code, _, err = check(path, store, capsys)
    assert code == 2
    assert message in err
    assert f"{path}:{3 if 'twice' in message else 2}" in err  # the offending line is named


def test_missing_columns_and_missing_file_are_clear_errors(tmp_path, store, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("scenario,method,value\nemoji-cil,ncm,3\n")
    code, _, err = check(path, store, capsys)
    assert code == 2 and "lacks the columns backbone, seed, metric, tolerance" in err
    code, _, err = check(tmp_path / "nope.csv", store, capsys)
    assert code == 2 and "expected-numbers file not found" in err


def test_comments_blank_lines_and_line_numbers(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(
        f"# gate for CI\n{HEADER}\n\nemoji-cil,ncm,efficientnet-lite0,1993,,bwt,-3,0.5\n"
        "emoji-cil,ncm,efficientnet-lite0,1993,,fwt,x,0.5\n"
    )
    with pytest.raises(ConfigError, match=r"e.csv:5: value is 'x'"):
        read_expected(path)


def fake_runner(calls: list):
    def run(spec, store=None, **_):
        calls.append(spec)
        result = fake_result(spec.method, scenario=spec.scenario, seed=spec.seed, level=0.5)
        result.extra = {"fresh": True}
        store.write(result)
        return result

    return run


def test_missing_runs_are_run_and_added_without_touching_stored_records(
    tmp_path, store, capsys, monkeypatch
):
    import clbench.runner

    calls: list = []
    monkeypatch.setattr(clbench.runner, "run", fake_runner(calls))
    before = {p.name: p.read_bytes() for p in store.root.glob("*.json")}
    path = expected_file(
        tmp_path,
        [
            "emoji-cil,ncm,efficientnet-lite0,1993,,avg_acc_sample,10,0.5",  # stored: answered from the store
            "emoji-cil,knn,efficientnet-lite0,1993,,avg_acc_sample,10,0.5",  # missing: run now
            "emoji-cil,knn,efficientnet-lite0,1993,,last_acc_sample,10,0.5",  # same run, not run twice
            "emoji-cil,ncm,efficientnet-lite0,7,,avg_acc_sample,10,0.5",  # another seed: missing
            "emoji-cil,ncm,efficientnet-lite0,1993,k=3,avg_acc_sample,10,0.5",  # ncm has no k: config error
        ],
    )
    code, _, err = check(path, store, capsys)
    assert code == 2 and "has no option k" in err  # options are validated like `clbench run --set`
    assert calls == []  # ... before anything runs

    path = expected_file(
        tmp_path,
        [
            "emoji-cil,ncm,efficientnet-lite0,1993,,avg_acc_sample,10,0.5",
            "emoji-cil,knn,efficientnet-lite0,1993,,avg_acc_sample,10,0.5",
            "emoji-cil,knn,efficientnet-lite0,1993,,last_acc_sample,10,0.5",
            "emoji-cil,ncm,efficientnet-lite0,7,,avg_acc_sample,10,0.5",
        ],
    )
    calls.clear()
    code, out, err = check(path, store, capsys)
    assert code == 0, out + err
    assert [(s.method, s.seed) for s in calls] == [("knn", 1993), ("ncm", 7)]
    after = {p.name: p.read_bytes() for p in store.root.glob("*.json")}
    assert {k: after[k] for k in before} == before and len(after) == len(before) + 2

    calls.clear()
    assert check(path, store, capsys)[0] == 0
    assert calls == []  # now everything is stored
    assert check(path, store, capsys, "--rerun")[0] == 0
    assert len(calls) == 3


def test_a_run_with_other_hyper_parameters_does_not_answer(tmp_path, store, capsys, monkeypatch):
    import clbench.runner

    calls: list = []
    monkeypatch.setattr(clbench.runner, "run", fake_runner(calls))
    other = fake_result("knn")
    other.config["method"]["k"] = 99
    store.write(other)
    path = expected_file(tmp_path, ["emoji-cil,knn,efficientnet-lite0,1993,,avg_acc_sample,10,0.5"])
    assert check(path, store, capsys)[0] == 0
    assert [s.method for s in calls] == ["knn"]


def test_update_rewrites_values_from_fresh_runs_and_shows_the_diff(
    tmp_path, store, capsys, monkeypatch
):
    import clbench.runner

    calls: list = []
    monkeypatch.setattr(clbench.runner, "run", fake_runner(calls))
    path = expected_file(
        tmp_path,
        [
            "emoji-cil,ncm,efficientnet-lite0,1993,,avg_acc_sample,99.00,0.5",
            "emoji-cil,knn,efficientnet-lite0,1993,k=3,last_acc_sample,,0.25",
        ],
    )
    code, out, _ = check(path, store, capsys, "--update")
    assert code == 0
    assert len(calls) == 2  # --update never trusts stored runs
    expectations = read_expected(path)
    fresh = {r.method: r for r in ResultsStore(store.root).all() if r.extra.get("fresh")}
    assert expectations[0].value == pytest.approx(
        100 * fresh["ncm"].metrics["avg_acc_sample"], abs=0.005
    )
    assert expectations[1].tolerance == 0.25 and expectations[1].key.options == "k=3"
    assert "99.00" in out and "new" in out
    assert check(path, store, capsys)[0] == 0


def test_progress_goes_to_stderr_and_the_table_to_stdout(tmp_path, store, capsys):
    avg = measured(store, "simplecil", "avg_acc_sample")
    path = expected_file(
        tmp_path, [f"emoji-cil,simplecil,efficientnet-lite0,1993,,avg_acc_sample,{avg:.4f},0.5"]
    )
    code, out, err = check(path, store, capsys)
    assert code == 0
    assert "stored run" in err and "stored run" not in out
    assert "simplecil" in out and "ok" in out


@pytest.mark.integration
def test_committed_expected_numbers_reproduce(tmp_path, capsys):
    """The committed gate's SimpleCIL rows hold on a real run of the current code."""
    from pathlib import Path

    rows = [
        line
        for line in Path("leaderboards/expected.csv").read_text().splitlines()[1:]
        if line.startswith("emoji-cil,simplecil,")
    ]
    assert rows, "leaderboards/expected.csv lost its SimpleCIL rows"
    path = expected_file(tmp_path, rows)
    code = main(["check", str(path), "--runs", str(tmp_path / "fresh")])
    out, _ = capsys.readouterr()
    assert code == 0, out
