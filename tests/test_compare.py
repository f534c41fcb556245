"""``clbench compare RUN_A RUN_B``: terminal tables and HTML page, differences marked."""

from __future__ import annotations

import re

import pytest

from clbench.cli import main
from clbench.leaderboard.compare import compare_runs, write_comparison
from clbench.results import ResultsStore
from tests.leaderboard_fixtures import fake_result

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def pair():
    a = fake_result("aper", level=0.6)
    b = fake_result("aper", level=0.7)
    b.config["method"]["train"]["epochs"] = 5
    b.manifest["created_at"] = "2026-02-02T00:00:00+00:00"
    return a, b


def section(comparison, title):
    return next(s for s in comparison.sections if s.title.startswith(title))


def test_differences_are_found_and_only_they(pair):
    a, b = pair
    c = compare_runs(a, b)
    config = section(c, "Configuration")
    assert [r.key for r in config.rows if r.differs] == ["method.train.epochs"]
    epochs = next(r for r in config.rows if r.key == "method.train.epochs")
    assert (epochs.a, epochs.b) == ("20", "5")
    assert section(c, "Manifest").differences == 0  # created_at always differs: not counted
    run = section(c, "Run")
    assert [r.key for r in run.rows if r.differs] == ["label"]  # the run ids are not counted
    avg = next(r for r in section(c, "Metrics").rows if r.key.startswith("Ā, sample"))
    expected = 100 * (b.metrics["avg_acc_sample"] - a.metrics["avg_acc_sample"])
    assert avg.differs and avg.delta == f"{expected:+.2f}"
    # B is 10 points more accurate on every measured cell.
    assert c.matrix_delta[0][0][0] == "+10.0" and c.matrix_delta[0][1][0] == "-"


def test_a_key_only_one_run_has_is_a_difference(pair):
    a, b = pair
    b.config["extra_option"] = None
    row = next(
        r for r in section(compare_runs(a, b), "Configuration").rows if r.key == "extra_option"
    )
    assert row.differs and row.a == "(absent)" and row.b == "-"


def test_runs_of_different_lengths_have_no_cell_difference(tmp_path):
    c = compare_runs(fake_result("ncm", tasks=3), fake_result("ncm", tasks=4))
    assert c.matrix_delta is None
    page = write_comparison(c, tmp_path / "c.html").read_text()
    assert "different numbers of tasks" in page


def test_cli_prints_tables_and_writes_the_page(pair, tmp_path, capsys):
    a, b = pair
    a.method = HOSTILE
    store = ResultsStore(tmp_path / "runs")
    store.write(a)
    store.write(b)
    html = tmp_path / "out" / "c.html"
    assert (
        main(["compare", a.run_id, b.run_id, "--runs", str(store.root), "--html", str(html)]) == 0
    )
    out = capsys.readouterr().out
    assert "≠ method.train.epochs" in out and "B - A" in out and f"compare: {html.resolve()}" in out
    assert "method.train.batch_size" not in out  # equal rows are left out without --all
    page = html.read_text()
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert re.search(r'<tr class="differs"><th>method.train.epochs</th><td><code>20</code>', page)
    assert 'class="num better"' in page and "<script>" in page  # only the site's own script
    assert page.count("<script>") == 1

    assert (
        main(
            ["compare", a.run_id, b.run_id, "--runs", str(store.root), "--html", str(html), "--all"]
        )
        == 0
    )
    assert "method.train.batch_size" in capsys.readouterr().out


def test_an_unknown_run_is_a_clear_error(tmp_path, capsys):
    store = ResultsStore(tmp_path / "runs")
    store.write(fake_result("ncm"))
    assert (
        main(
            [
                "compare",
                "nope",
                "ncm",
                "--runs",
                str(store.root),
                "--html",
                str(tmp_path / "x.html"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "no unique stored run matches 'nope'" in err and "Traceback" not in err
    assert not (tmp_path / "x.html").exists()
