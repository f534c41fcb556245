"""Sweep grids: the cross product, what a seed varies, presets, GRID.toml, and
bad input refused before anything runs (no runs here)."""

from __future__ import annotations

import pytest

from clbench.cli import main
from clbench.errors import ConfigError
from clbench.sweep.grid import Grid, parse_seeds, validate
from clbench.sweep.gridfile import read_grid
from clbench.sweep.presets import (
    OFFLINE_SCENARIOS,
    PTM_SCENARIOS,
    VIT_METHODS,
    preset_grids,
    supports,
)


def test_cross_product_of_methods_scenarios_backbones_seeds_and_option_lists():
    grid = Grid(
        methods=["knn", "ncm"],
        scenarios=["emoji-cil", "emoji-dil"],
        backbones=["efficientnet-lite0", "dinov2-vits14"],
        seeds=[1993, 1994],
        method_options={"knn": {"k": [1, 5]}},
    )
    points = grid.points()
    # knn: 2 k values; ncm: 1 -> 3 method configs x 2 scenarios x 2 backbones x 2 seeds
    assert len(points) == 3 * 2 * 2 * 2
    assert len({p.key() for p in points}) == len(points)
    assert {p.method_options.get("k") for p in points if p.method == "knn"} == {1, 5}
    assert all(p.method_options == {} for p in points if p.method == "ncm")


def test_a_seed_sets_the_class_order_too_unless_the_scope_is_training():
    order = Grid(methods=["simplecil"], scenarios=["emoji-cil", "emoji-dil"], seeds=[1993, 7])
    by = {(p.scenario, p.seed): p.scenario_options for p in order.points()}
    assert by[("emoji-cil", 7)] == {"seed": 7} and by[("emoji-cil", 1993)] == {"seed": 1993}
    assert by[("emoji-dil", 7)] == {}  # no seed option: only training varies
    training = Grid(
        methods=["simplecil"], scenarios=["emoji-cil"], seeds=[1993, 7], seed_scope="training"
    )
    assert [p.scenario_options for p in training.points()] == [{}, {}]
    fixed = Grid(
        methods=["simplecil"],
        scenarios=["emoji-cil"],
        seeds=[7],
        scenario_options={"*": {"seed": 1993}},
    )
    assert fixed.points()[0].scenario_options == {"seed": 1993}  # the grid's own order wins


def test_seeds_parse_as_a_count_from_1993_or_a_list():
    assert parse_seeds(3) == [1993, 1994, 1995]
    assert parse_seeds("2") == [1993, 1994]
    assert parse_seeds("1,7,1") == [1, 7]
    for bad in (0, "x,y", True):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_offline_preset_every_offline_scenario_x_method_x_three_seeds():
    from clbench.registry import METHODS

    points = [p for g in preset_grids("offline") for p in g.points()]
    assert {p.scenario for p in points} == set(OFFLINE_SCENARIOS)
    expected = [
        (m, s)
        for s, protocol in OFFLINE_SCENARIOS.items()
        for m in METHODS.names()
        if supports(m, protocol)
    ]
    assert {(p.method, p.scenario) for p in points} == set(expected)
    assert len(points) == len(expected) * 3
    assert {m for m, s in expected if s == "emoji-cil"} >= {"simplecil", "lda", "sema"}
    assert {p.backbone for p in points if p.method in VIT_METHODS} == {"dinov2-vits14"}
    assert {p.backbone for p in points if p.method not in VIT_METHODS} == {"efficientnet-lite0"}
    assert {p.seed for p in points} == {1993, 1994, 1995}


def test_ptm_table_preset_is_the_anchor_table():
    points = [p for g in preset_grids("ptm-table") for p in g.points()]
    assert {p.scenario for p in points} == set(PTM_SCENARIOS)
    assert {p.method for p in points} == {"simplecil", "aper", "mos"}
    assert {p.backbone for p in points} == {"timm:vit_base_patch16_224.augreg_in21k"}
    assert len(points) == 7 * 3 * 3


def test_grid_file(tmp_path):
    path = tmp_path / "GRID.toml"
    path.write_text(
        'methods = ["knn", "simplecil"]\nscenarios = ["emoji-cil"]\nseeds = 2\n'
        "[run]\nimage_size = 32\n[method.knn]\nk = [1, 3]\n[scenario]\nnum_tasks = [3, 5]\n"
    )
    points = read_grid(path).points()
    assert len(points) == (2 + 1) * 2 * 2
    assert {p.image_size for p in points} == {32}
    assert {p.scenario_options["num_tasks"] for p in points} == {3, 5}
    path.write_text('methods = ["knn"]\nscenarios = ["emoji-cil"]\nmethod_list = 1\n')
    with pytest.raises(ConfigError, match="unknown keys"):
        read_grid(path)


def test_bad_points_are_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="unknown method"):
        validate(Grid(methods=["simplecl"], scenarios=["emoji-cil"]).points())
    with pytest.raises(ConfigError, match="has no option"):
        validate(
            Grid(
                methods=["knn"], scenarios=["emoji-cil"], scenario_options={"*": {"tasks": 3}}
            ).points()
        )


def test_cli_errors_exit_2_and_dry_run_lists_points(tmp_path, capsys):
    assert main(["sweep", "--method", "knn"]) == 2
    assert "needs a grid" in capsys.readouterr().err
    assert main(["sweep", "--method", "nope", "--scenario", "emoji-cil"]) == 2
    code = main(
        [
            "sweep",
            "--method",
            "knn,ncm",
            "--scenario",
            "emoji-cil",
            "--seeds",
            "2",
            "--dry-run",
            "--results-dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("to run") == 4 and "4 points, 0 stored" in out


def test_a_preset_restricted_to_some_methods(tmp_path, capsys):
    code = main(
        ["sweep", "--preset", "offline", "--method", "simplecil,lda", "--dry-run"]
        + ["--results-dir", str(tmp_path)]
    )
    assert code == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("to run")]
    assert len(lines) == 2 * len(OFFLINE_SCENARIOS) * 3
    assert all(" simplecil on " in line or " lda on " in line for line in lines)
    assert main(["sweep", "--preset", "offline", "--method", "sema2", "--dry-run"]) == 2
