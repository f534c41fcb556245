"""The leaderboard site, run reports and the tidy results table."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from clbench.cli import main
from clbench.leaderboard.published import load_published, published_for
from clbench.leaderboard.site import build_site, slug
from clbench.leaderboard.tables import runs_frame, scenario_board
from clbench.results import ResultsStore
from tests.leaderboard_fixtures import fake_result

HOSTILE = '<script>alert("x")</script>'


@pytest.fixture(scope="module")
def runs():
    return [
        fake_result("simplecil", seed=1, level=0.60, created_at="2026-01-01T00:00:01+00:00"),
        fake_result("simplecil", seed=2, level=0.64, created_at="2026-01-01T00:00:02+00:00"),
        fake_result("ncm", seed=1, level=0.70, created_at="2026-01-01T00:00:03+00:00"),
        fake_result(HOSTILE, seed=1, level=0.40, created_at="2026-01-01T00:00:04+00:00"),
        fake_result(
            "simplecil",
            scenario="imagenet-r",
            seed=1,
            level=0.5,
            protocol={"init_cls": 20, "increment": 20},
            created_at="2026-01-01T00:00:05+00:00",
        ),
    ]


@pytest.fixture(scope="module")
def site(runs, tmp_path_factory):
    return build_site(runs, tmp_path_factory.mktemp("site"), workers=1)


def test_board_has_one_row_per_method_with_mean_and_spread_over_seeds(runs):
    frame = runs_frame(runs)
    board = scenario_board(frame, "emoji-cil")
    assert list(board["method"]) == ["ncm", "simplecil", HOSTILE]  # best Ā first
    simple = board[board["method"] == "simplecil"].iloc[0]
    seeds = frame[(frame["method"] == "simplecil") & (frame["scenario"] == "emoji-cil")][
        "avg_acc_sample"
    ]
    assert simple["seeds"] == 2
    assert simple["avg_acc_sample_mean"] == pytest.approx(seeds.mean())
    assert simple["avg_acc_sample_std"] == pytest.approx(seeds.std(ddof=1))
    assert pd.isna(
        board[board["method"] == "ncm"].iloc[0]["avg_acc_sample_std"]
    )  # one seed: no spread


def test_a_rerun_of_the_same_seed_replaces_the_older_one_on_the_board(runs):
    newer = fake_result("ncm", seed=1, level=0.2, created_at="2026-02-01T00:00:00+00:00")
    board = scenario_board(runs_frame([*runs, newer]), "emoji-cil")
    ncm = board[board["method"] == "ncm"].iloc[0]
    assert ncm["seeds"] == 1 and ncm["run_ids"] == [newer.run_id]


def test_scenario_options_make_another_board(runs):
    other = fake_result("ncm", config=None)
    other.config["scenario"]["num_tasks"] = 5
    assert set(runs_frame([*runs, other])["scenario"]) == {
        "emoji-cil",
        "emoji-cil (num_tasks=5)",
        "imagenet-r",
    }


def test_site_pages_and_figures_exist_with_relative_links(site, runs):
    assert site.index.exists()
    assert set(site.scenario_pages) == {"emoji-cil", "imagenet-r"}
    assert len(site.run_pages) == len(runs)
    for page in [site.index, *site.scenario_pages.values(), *site.run_pages.values()]:
        html = page.read_text()
        for link in re.findall(r'(?:href|src)="(?!data:)([^"#]+)"', html):
            assert not link.startswith(("/", "http")), f"{page}: {link} is not relative"
            assert (page.parent / link).exists(), f"{page} links to missing {link}"
    for folder in (p.parent for p in site.run_pages.values()):
        for name in ("heatmap.png", "curve.png", "bars.png"):
            assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_record_string_is_escaped(site):
    pages = [site.index, *site.scenario_pages.values(), *site.run_pages.values()]
    html = "\n".join(p.read_text() for p in pages)
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    # The only script elements are the site's own sorter, one per page.
    assert html.count("<script>") == len(pages)


def test_published_numbers_only_on_matching_scenarios_and_labelled(site):
    emoji = site.scenario_pages["emoji-cil"].read_text()
    imr = site.scenario_pages["imagenet-r"].read_text()
    assert "published" not in emoji.split("<main>")[1].split("</main>")[0]
    assert (
        '<th class="published">published Ā / last (%), not measured here</th>' in imr
        and "Published numbers for this protocol" in imr
    )
    assert "61.26 / 54.55 (ViT-B/16-IN21K)" in imr  # SimpleCIL's published IN-R B0Inc20 Ā / last
    assert "MOS paper" in imr


def test_published_rows_require_the_same_protocol():
    entries = load_published()
    assert published_for(entries, "imagenet-r", {"init_cls": 20, "increment": 20})
    assert not [
        e
        for e in published_for(entries, "imagenet-r", {"init_cls": 10, "increment": 10})
        if e.init_cls
    ]
    assert not published_for(entries, "emoji-cil", {})
    assert {
        e.method_label for e in published_for(entries, "CUB-200", {"init_cls": 10, "increment": 10})
    } >= {"SimpleCIL", "MOS"}


def test_figures_are_reused_and_redrawn_on_request(runs, tmp_path):
    first = build_site(runs[:2], tmp_path, workers=1)
    again = build_site(runs[:2], tmp_path, workers=1)
    # 2 runs x 3 figures, and the scenario's 4 (curves, 2 cost scatters, forgetting)
    assert first.figures_reused == 0 and first.figures_drawn == 10
    assert again.figures_reused == 10 and again.figures_drawn == 0
    # A new run changes what the scenario figures show: those 4 and its own 3 are drawn.
    third = build_site(runs[:3], tmp_path, workers=1)
    assert third.figures_drawn == 7 and third.figures_reused == 6
    assert build_site(runs[:2], tmp_path, reuse=False, workers=1).figures_reused == 0


def test_figures_drawn_in_worker_processes_match(runs, tmp_path):
    many = [fake_result("ncm", seed=s) for s in range(5)]
    summary = build_site(many, tmp_path, workers=2)
    assert summary.figures_drawn == 19  # 5 runs x 3 + the scenario's 4
    assert all((p.parent / "heatmap.png").exists() for p in summary.run_pages.values())


def test_slugs_are_safe_and_distinct():
    assert slug("20260101T000000-emoji-cil-ncm-s1-abc") == "20260101T000000-emoji-cil-ncm-s1-abc"
    names = {slug(x) for x in ("a/b", "a:b", "a b", "../x", HOSTILE, "")}
    assert len(names) == 6
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", n) and not n.startswith(".") for n in names)


def test_leaderboard_report_and_results_commands(runs, tmp_path, capsys):
    store = ResultsStore(tmp_path / "runs")
    for result in runs:
        store.write(result)
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
    assert "open:" in capsys.readouterr().out and (tmp_path / "site" / "index.html").exists()

    assert (
        main(
            [
                "report",
                runs[2].run_id,
                "--runs",
                str(store.root),
                "--out",
                str(tmp_path / "reports"),
            ]
        )
        == 0
    )
    page = Path(capsys.readouterr().out.split("report: ")[1].strip())
    assert page.exists() and {p.name for p in page.parent.glob("*.png")} == {
        "heatmap.png",
        "curve.png",
        "bars.png",
    }
    assert runs[2].split_hash in page.read_text()

    assert (
        main(
            [
                "results",
                "--runs",
                str(store.root),
                "--csv",
                str(tmp_path / "r.csv"),
                "--parquet",
                str(tmp_path / "r.parquet"),
            ]
        )
        == 0
    )
    csv, parquet = pd.read_csv(tmp_path / "r.csv"), pd.read_parquet(tmp_path / "r.parquet")
    assert len(csv) == len(parquet) == len(runs)
    assert sorted(parquet["run_id"]) == sorted(r.run_id for r in runs)
    assert parquet.loc[
        parquet["run_id"] == runs[0].run_id, "avg_acc_sample"
    ].item() == pytest.approx(100 * runs[0].metrics["avg_acc_sample"])

    assert main(["results", "--runs", str(store.root), "--method", "ncm"]) == 0
    out = capsys.readouterr().out
    assert "ncm" in out and "simplecil" not in out


def test_empty_store_is_a_clear_error(tmp_path, capsys):
    assert main(["leaderboard", "--runs", str(tmp_path), "--out", str(tmp_path / "s")]) == 2
    assert "no stored runs" in capsys.readouterr().err
    assert main(["report", "nope", "--runs", str(tmp_path)]) == 2


def test_names_that_look_like_tex_are_drawn_as_typed(tmp_path):
    # With mathtext on, "$\frac{$" would make matplotlib raise while drawing the legend.
    summary = build_site([fake_result("odd$\\frac{$name"), fake_result("ncm")], tmp_path, workers=1)
    assert summary.scenario_pages["emoji-cil"].with_suffix(".png").exists()
