"""``clbench run``: one method on one scenario, stored as a RunResult."""

from __future__ import annotations

import argparse
import sys

from clbench.cli._tables import print_run_summary
from clbench.errors import ConfigError
from clbench.options import merge_options, parse_sets, read_config
from clbench.results import ResultsStore
from clbench.runner import (
    DEFAULT_BACKBONE,
    DEFAULT_METHOD,
    DEFAULT_SCENARIO,
    RUN_OPTIONS,
    RunSpec,
    run,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a method on a scenario and store the result",
        description="Run one continual-learning method on one scenario: learn task after task, "
        "test on every seen task after each, print the accuracy matrix and a summary, and store "
        "the RunResult JSON under the results folder.",
    )
    p.add_argument(
        "--scenario",
        default=None,
        help=f"registered scenario (default {DEFAULT_SCENARIO}; see `clbench list`)",
    )
    p.add_argument("--method", default=None, help=f"registered method (default {DEFAULT_METHOD})")
    p.add_argument(
        "--backbone",
        default=None,
        help=f"registered backbone, or timm:MODEL / openclip:MODEL (default {DEFAULT_BACKBONE})",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="local weights file for the backbone (or a hub tag where supported)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="input resolution (default: the scenario's, else the backbone's); keeps the crop fraction",
    )
    p.add_argument(
        "--crop-pct",
        type=float,
        default=None,
        help="centre-crop fraction: resize to size/CROP, crop size (default: the weights' own)",
    )
    p.add_argument(
        "--normalization",
        default=None,
        help="pretrained (default), imagenet, inception, clip, none, or MEAN/STD as r,g,b/r,g,b",
    )
    p.add_argument(
        "--resize-mode",
        default=None,
        help="shorter (resize the shorter side, default) or squash (both sides, aspect ignored)",
    )
    p.add_argument(
        "--interpolation",
        default=None,
        help="bicubic, bilinear or nearest (default: the weights' own)",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed of the run (default 1993)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method option (e.g. --set k=5); scenario.KEY=VALUE sets a scenario option; repeatable",
    )
    p.add_argument(
        "--config", default=None, help="TOML/JSON file with [run], [method], [scenario] tables"
    )
    p.add_argument(
        "--data-root", default=None, help="folder holding standard datasets (also $CLBENCH_DATA)"
    )
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda[:N]")
    p.add_argument(
        "--batch-size", type=int, default=None, help="feature-extraction batch size (default 64)"
    )
    p.add_argument(
        "--results-dir",
        default=None,
        help="where RunResults are stored (default leaderboards/runs or $CLBENCH_RESULTS)",
    )
    p.add_argument("--no-store", action="store_true", help="do not store the result")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted identical run from its last finished task",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the RunResult as JSON on stdout instead of tables",
    )
    p.set_defaults(func=run_command)


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    config = read_config(args.config) if args.config else {}
    run_cfg = config.get("run", {})
    for section in ("run", "method", "scenario"):
        if not isinstance(config.get(section, {}), dict):
            raise ConfigError(f"config file {args.config}: [{section}] must be a table of options")
    unknown = sorted(set(run_cfg) - set(RUN_OPTIONS))
    if unknown:
        raise ConfigError(
            f"config file {args.config}: [run] has no option {', '.join(unknown)}",
            f"valid [run] options: {', '.join(RUN_OPTIONS)}",
        )
    method_opts, scenario_opts = parse_sets(args.sets)
    method_opts = merge_options(config.get("method", {}), method_opts)
    scenario_opts = merge_options(config.get("scenario", {}), scenario_opts)

    def pick(name: str, default):
        value = getattr(args, name)
        return value if value is not None else run_cfg.get(name, default)

    return RunSpec(
        scenario=pick("scenario", DEFAULT_SCENARIO),
        method=pick("method", DEFAULT_METHOD),
        backbone=pick("backbone", None),
        seed=pick("seed", 1993),
        weights=pick("weights", None),
        image_size=pick("image_size", None),
        crop_pct=pick("crop_pct", None),
        normalization=pick("normalization", None),
        resize_mode=pick("resize_mode", None),
        interpolation=pick("interpolation", None),
        method_options=method_opts,
        scenario_options=scenario_opts,
        device=pick("device", "auto"),
        batch_size=pick("batch_size", 64),
        data_root=pick("data_root", None),
    )


def run_command(args: argparse.Namespace) -> int:
    from clbench.paths import results_root

    spec = spec_from_args(args)
    store = None if args.no_store else ResultsStore(args.results_dir or results_root())
    if not args.json:
        print(
            f"clbench: {spec.method} on {spec.scenario} with "
            f"{spec.backbone or 'its default backbone'} (seed {spec.seed})",
            file=sys.stderr,
        )
    result = run(spec, store=store, resume=args.resume)
    for warning in result.extra.get("warnings", []):  # the method's doubts about its own run
        print(f"clbench: warning: {warning}", file=sys.stderr)
    if args.json:
        print(result.to_json())
    else:
        print_run_summary(result, None if store is None else store.path(result.run_id))
    return 0
