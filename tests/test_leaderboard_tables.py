"""Short labels, the front page's methods x scenarios table, Pareto fronts,
per-task forgetting, run pages (class names, scorer, examples) and the chart data."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from clbench import metrics
from clbench.leaderboard.scenario_page import json_script
from clbench.leaderboard.site import build_site
from clbench.leaderboard.tables import (
    flatten,
    method_defaults,
    overview,
    pareto_front,
    runs_frame,
    scenario_board,
    scorer_of,
    short_label,
    unique_labels,
)
from tests.leaderboard_fixtures import fake_result, method_config

HOSTILE = '<script>console.error("label")</script>'


def with_options(method: str, **options):
    """A run of ``method`` whose stored configuration is the defaults plus ``options``."""
    result = fake_result(method)
    result.config["method"] = {**method_config(method), **options}
    return result


def test_defaults_come_from_the_registered_constructor():
    defaults = method_defaults("aper")
    assert defaults["peft"] == "adapter" and defaults["train.epochs"] == 20
    # Training defaults are the method's for the run's other options.
    assert defaults["train.lr"] == 0.01
    assert method_defaults("aper", {"peft": "full"})["train.lr"] == 0.001
    assert method_defaults("no-such-method") == {}


def test_a_label_names_only_the_options_that_differ_from_the_defaults():
    from clbench.registry import create_method

    stored = json.loads(
        json.dumps(create_method("aper", peft="full", train={"epochs": 5}).hyperparameters())
    )
    # lr 0.001 is APER's default for peft=full: not named.
    assert stored["train"]["lr"] == 0.001
    assert short_label("aper", stored) == "aper peft=full train.epochs=5"
    plain = json.loads(json.dumps(create_method("aper").hyperparameters()))
    assert short_label("aper", plain) == "aper"
    # An unregistered method has no defaults: every option is named.
    assert short_label("mystery", {"k": 3}) == "mystery k=3"


def test_records_with_flat_training_options_get_short_labels_too():
    """Before TrainConfig, records stored training options flat (lr None meant the default)."""
    old = {
        "peft": "full",
        "epochs": 5,
        "lr": None,
        "batch_size": 32,
        "weight_decay": 0.0005,
        "optimizer": "sgd",
        "bottleneck": 16,
        "adapter_scale": 0.1,
        "num_prompts": 5,
    }
    assert short_label("aper", old) == "aper peft=full epochs=5"


def test_nested_training_options_are_compared_key_by_key(monkeypatch):
    from clbench.leaderboard import tables

    nested = json.dumps({"train": {"lr": 0.01, "epochs": 5}, "peft": "adapter"})
    monkeypatch.setattr(tables, "_defaults_json", lambda method, options="{}": nested)
    assert flatten({"train": {"lr": 0.1, "opt": {"m": 0.9}}}) == {
        "train.lr": 0.1,
        "train.opt.m": 0.9,
    }
    label = short_label("x", {"train": {"lr": 0.1, "epochs": 5}, "peft": "adapter"})
    assert label == "x train.lr=0.1"


def test_unique_labels_add_the_backbone_then_a_number_only_on_clashes():
    entries = [("a", "o1", "vit"), ("a", "o1", "effnet"), ("b", "o", "vit"), ("c", "o1", "vit")]
    assert unique_labels(entries) == ["a [vit]", "a [effnet]", "b", "c"]
    same = [("a", "o1", "vit"), ("a", "o2", "vit")]
    assert unique_labels(same) == ["a [vit] #1", "a [vit] #2"]


def test_board_labels_and_the_full_options_stay_apart():
    runs = [with_options("aper", peft="ssf"), with_options("aper")]
    board = scenario_board(runs_frame(runs), "emoji-cil")
    assert set(board["label"]) == {"aper peft=ssf", "aper"}
    assert all("bottleneck=16" in options for options in board["method_options"])


def test_scorer_is_read_defensively():
    result = fake_result("ncm")
    assert scorer_of(result) == "accuracy"
    result.scorers = ["exact-match", "exact-match", "rouge-l"]
    assert scorer_of(result) == "exact-match+rouge-l"


def test_overview_has_one_row_per_entry_and_keeps_settings_apart():
    runs = [
        fake_result("ncm", seed=1, level=0.7),
        fake_result("ncm", seed=2, level=0.6),
        fake_result("simplecil", level=0.5),
        fake_result("ncm", scenario="imagenet-r", level=0.4),
    ]
    til = fake_result("ncm", level=0.9)
    til.task_incremental = True
    table = overview(runs_frame([*runs, til]))
    cil = table[~table["task_incremental"]]
    assert len(cil) == 3  # ncm x 2 scenarios, simplecil x 1
    ncm = cil[(cil["method"] == "ncm") & (cil["scenario"] == "emoji-cil")].iloc[0]
    assert ncm["seeds"] == 2
    seeds = [100 * r.metrics["avg_acc_sample"] for r in runs[:2]]
    assert ncm["avg_acc_sample_mean"] == pytest.approx(np.mean(seeds))
    assert ncm["avg_acc_sample_std"] == pytest.approx(np.std(seeds, ddof=1))
    # The task-incremental run is its own entry, never averaged with the others.
    ti = table[table["task_incremental"]]
    assert len(ti) == 1 and ti.iloc[0]["seeds"] == 1
    assert ti.iloc[0]["avg_acc_sample_mean"] == pytest.approx(100 * til.metrics["avg_acc_sample"])


def test_pareto_front():
    costs = [1, 2, 3, 4, float("nan"), 2]
    scores = [10, 30, 20, 40, 99, 30]
    # 3 is beaten by 2 (cheaper, more accurate); the NaN cost is never on the front;
    # of two equal points the first is kept.
    assert pareto_front(costs, scores) == [0, 1, 3]
    assert pareto_front([], []) == []


def test_task_forgetting_matches_the_mean_forgetting():
    acc = np.array([[0.9, np.nan, np.nan], [0.7, 0.8, np.nan], [0.6, 0.5, 0.9]])
    per_task = metrics.task_forgetting(acc)
    assert per_task == pytest.approx([0.3, 0.3])
    assert metrics.forgetting(acc) == pytest.approx(per_task.mean())
    assert metrics.task_forgetting(acc, "avalanche") == pytest.approx([0.3, 0.3])


def test_json_for_script_blocks_cannot_close_them():
    text = str(json_script({"name": "</script><script>alert(1)</script>&"}))
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"name": "</script><script>alert(1)</script>&"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    named = fake_result("ncm", level=0.7)
    named.class_names = [f"class {i}" for i in range(len(named.class_order))]
    named.extra["examples"] = [
        {"task": 0, "prompt": "2+2=", "output": "4", "reference": "4"},
        {"task": 0, "prompt": "<b>bold?</b>", "output": "no", "reference": "yes"},
    ]
    named.scorers = ["exact-match"] * 4
    hostile = fake_result(HOSTILE, level=0.3)
    runs = [
        named,
        fake_result("ncm", seed=2, level=0.66),
        fake_result("simplecil", level=0.6),
        hostile,
        fake_result(
            "simplecil",
            scenario="imagenet-r",
            level=0.5,
            protocol={"init_cls": 20, "increment": 20},
        ),
    ]
    return build_site(runs, tmp_path_factory.mktemp("site"), workers=1), named, hostile


def test_front_page_is_methods_by_scenarios_with_the_best_marked(site):
    summary, _, _ = site
    html = summary.index.read_text()
    table = re.search(
        r'<table class="overview sortable" id="overview-class-incremental-sample">(.*?)</table>',
        html,
        re.S,
    ).group(1)
    header = re.search(r"<thead>(.*?)</thead>", table, re.S).group(1)
    assert header.count("<th") == 2 + 2  # method, backbone, emoji-cil, imagenet-r
    body = re.search(r"<tbody>(.*?)</tbody>", table, re.S).group(1)
    assert body.count("<tr") == 3  # ncm, simplecil, the hostile name
    assert body.count('class="num best"') == 2  # one per column
    ncm = next(row for row in body.split("<tr")[1:] if "<summary>ncm</summary>" in row)
    assert "(n=2)" in ncm and "±" in ncm and "best" in ncm
    # Published numbers beside the matching protocol only, labelled, sample-weighted only.
    assert "published 61.26 / 54.55 (ViT-B/16-IN21K)" in body
    task_table = html.split('id="overview-class-incremental-task"')[1].split("</table>")[0]
    assert "published" not in task_table
    assert 'value="task"' in html and "Mammoth" in html


def test_run_page_shows_class_names_scorer_and_examples(site):
    summary, named, _ = site
    html = summary.run_pages[named.run_id].read_text()
    assert "<code>0</code> class 0, <code>1</code> class 1" in html
    assert "<th>scorer</th><td>exact-match</td>" in html
    assert "2+2=" in html and "&lt;b&gt;bold?&lt;/b&gt;" in html
    assert "&#34;examples&#34;" not in html  # shown as a table, not again in the method logs
    other = next(p for rid, p in summary.run_pages.items() if rid != named.run_id)
    assert "stores no class names" in other.read_text()


def test_scenario_page_has_chart_data_fallbacks_and_short_labels(site):
    summary, _, hostile = site
    page = summary.scenario_pages["emoji-cil"]
    html = page.read_text()
    specs = [
        json.loads(m)
        for m in re.findall(
            r'<script type="application/json" class="spec">(.*?)</script>', html, re.S
        )
    ]
    assert [s["data"][0]["type"] for s in specs] == ["scatter", "scatter", "scatter", "heatmap"]
    names = [trace["name"] for trace in specs[0]["data"]]
    assert "ncm" in names and '&lt;script&gt;console.error("label")&lt;/script&gt;' in names
    assert specs[1]["data"][1]["name"] == "Pareto front"
    for png in re.findall(r'class="fallback" src="([^"]+)"', html):
        assert (page.parent / png).read_bytes()[:4] == b"\x89PNG"
    assert (summary.out / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    assert HOSTILE not in html and hostile.method not in html


def test_a_missing_plotly_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    from clbench.errors import ClbenchError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "plotly" else real(name, *a)
    )
    with pytest.raises(ClbenchError, match="plotly package is not installed"):
        build_site([fake_result("ncm")], tmp_path / "site", workers=1)


def test_run_page_shows_the_methods_warnings_escaped(tmp_path):
    from clbench.leaderboard.run_page import write_report

    quiet = fake_result(method="dualprompt")
    warned = fake_result(method="dualprompt", seed=1994)
    warned.extra = {"warnings": ["dualprompt: 83 of 83 <untrained> prompts"]}
    assert 'class="warning"' not in write_report(quiet, tmp_path / "quiet").read_text()
    html = write_report(warned, tmp_path / "warned").read_text()
    assert '<p class="warning">warning: dualprompt: 83 of 83 &lt;untrained&gt; prompts</p>' in html
