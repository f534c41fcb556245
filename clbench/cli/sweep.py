"""``clbench sweep``: a grid of runs (methods x scenarios x backbones x seeds x
options) on local worker processes or a Ray cluster, resumable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clbench.errors import ConfigError

EPILOG = """examples:
  clbench sweep --method simplecil,ncm --scenario emoji-cil,emoji-dil --seeds 3
  clbench sweep GRID.toml --workers 2
  clbench sweep --preset offline                    every offline scenario x method x 3 seeds, then the leaderboard
  clbench sweep --preset offline --method simplecil,ncm,knn,lda   the preset, these methods only
  clbench sweep --preset ptm-table --ray auto --data-root ~/data  the anchor table on a Ray cluster
  clbench sweep GRID.toml --dry-run                 list the points and which are stored

Seeds: --seeds 3 means 1993, 1994, 1995. By default a seed sets both the run seed and
the scenario's class order / few-shot draw (scenario.seed), as PILOT and PyCIL do;
--seed-scope training varies the run seed only (as `clbench run --seed`), which leaves a
training-free method such as SimpleCIL with zero spread. A point whose spec is already
stored is skipped (--rerun runs it again); an interrupted sweep continues when started again.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a grid of methods x scenarios x seeds (local processes or Ray), resumable",
        description="Run every point of a grid as an ordinary run that stores its RunResult: "
        "points already stored are skipped, failures are retried, each point has its own log, "
        "and a summary of done, skipped and failed points closes the sweep.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("grid", nargs="?", default=None, metavar="GRID.toml", help="grid file")
    p.add_argument("--preset", choices=("offline", "ptm-table"), default=None, help="a named grid")
    p.add_argument("--method", default=None, help="methods, comma-separated (restricts a preset)")
    p.add_argument(
        "--scenario", default=None, help="scenarios, comma-separated (restricts a preset)"
    )
    p.add_argument("--backbone", default=None, help="backbones, comma-separated")
    p.add_argument("--seeds", default=None, help="a count (3: 1993..1995) or a list 1993,42")
    p.add_argument(
        "--seed-scope",
        choices=("order", "training"),
        default=None,
        help="what a seed varies: class order and training (default), or training only",
    )
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option of every method (scenario.KEY for scenarios); a [list] is one more axis",
    )
    p.add_argument("--image-size", type=int, default=None, help="input resolution of every point")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda[:N]")
    p.add_argument(
        "--workers", type=int, default=None, help="local worker processes (default: cores)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads per worker (default cores/workers)",
    )
    p.add_argument(
        "--ray", default=None, metavar="auto|ADDRESS", help="run the points as Ray tasks"
    )
    p.add_argument(
        "--cpus-per-point", type=float, default=None, help="Ray: CPUs per task (default threads)"
    )
    p.add_argument(
        "--gpus-per-point",
        type=float,
        default=None,
        help="Ray: GPUs per task (default 0; 1 for --preset ptm-table)",
    )
    p.add_argument(
        "--retries", type=int, default=1, help="retries of a point that raised (default 1)"
    )
    p.add_argument("--rerun", action="store_true", help="run points even if already stored")
    p.add_argument("--dry-run", action="store_true", help="list the points; run nothing")
    p.add_argument("--results-dir", default=None, help="results store (default leaderboards/runs)")
    p.add_argument("--logs", default=None, help="per-point logs (default <cache>/sweep-logs)")
    p.add_argument("--data-root", default=None, help="folder of standard datasets ($CLBENCH_DATA)")
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="module imported in every worker first (your own @register_method); repeatable",
    )
    board = p.add_mutually_exclusive_group()
    board.add_argument("--leaderboard", action="store_true", help="build the leaderboard after")
    board.add_argument(
        "--no-leaderboard", action="store_true", help="presets: skip the leaderboard"
    )
    p.add_argument("--site", default="leaderboards/site", help="leaderboard folder")
    p.set_defaults(func=sweep_command)


def grid_points(args: argparse.Namespace) -> list:
    """The RunSpecs the arguments ask for."""
    from clbench.options import parse_sets
    from clbench.sweep.grid import Grid, parse_seeds, split_names
    from clbench.sweep.gridfile import read_grid
    from clbench.sweep.presets import preset_grids

    methods, scenarios = split_names(args.method), split_names(args.scenario)
    if args.preset and args.grid:
        raise ConfigError("give a grid file or a preset, not both", "drop GRID.toml or --preset")
    if args.preset:
        seeds = parse_seeds(args.seeds) if args.seeds else None
        grids = preset_grids(args.preset, 3 if seeds is None else len(seeds))
        for kind, asked, having in (
            ("method", methods, {m for g in grids for m in g.methods}),
            ("scenario", scenarios, {s for g in grids for s in g.scenarios}),
        ):
            if set(asked) - having:
                raise ConfigError(
                    f"preset {args.preset} has no {kind} {', '.join(sorted(set(asked) - having))}",
                    f"its {kind}s: {', '.join(sorted(having))}",
                )
        grids = [restrict(g, methods, scenarios) for g in grids]
        grids = [g for g in grids if g.methods and g.scenarios]
        if not grids:
            raise ConfigError(
                f"--method/--scenario leave nothing of preset {args.preset}",
                "`clbench sweep --preset NAME --dry-run` lists its points",
            )
        if seeds is not None:
            for g in grids:
                g.seeds = seeds
    elif args.grid:
        grids = [read_grid(args.grid)]
        if methods:
            grids[0].methods = methods
        if scenarios:
            grids[0].scenarios = scenarios
        if args.seeds:
            grids[0].seeds = parse_seeds(args.seeds)
    else:
        if not methods or not scenarios:
            raise ConfigError(
                "a sweep needs a grid: GRID.toml, --preset, or --method and --scenario",
                "e.g. clbench sweep --method simplecil,ncm --scenario emoji-cil --seeds 3",
            )
        grids = [Grid(methods=methods, scenarios=scenarios, seeds=parse_seeds(args.seeds or 1))]
    method_sets, scenario_sets = parse_sets(args.sets)
    for g in grids:
        if args.backbone:
            g.backbones, g.method_backbones = split_names(args.backbone), {}
        if args.seed_scope:
            g.seed_scope = args.seed_scope
        g.method_options.setdefault("*", {}).update(method_sets)
        g.scenario_options.setdefault("*", {}).update(scenario_sets)
        for name in ("image_size", "device", "data_root"):
            if getattr(args, name) is not None:
                g.run[name] = getattr(args, name)
    points: dict[str, object] = {}
    for g in grids:
        for spec in g.points():
            points.setdefault(spec.key(), spec)
    return list(points.values())


def restrict(grid, methods: list[str], scenarios: list[str]):
    """A preset's grid limited to the methods / scenarios named (when any)."""
    if methods:
        grid.methods = [m for m in grid.methods if m in methods]
    if scenarios:
        grid.scenarios = [s for s in grid.scenarios if s in scenarios]
    return grid


def sweep_command(args: argparse.Namespace) -> int:
    from clbench.paths import cache_root, results_root
    from clbench.results import ResultsStore
    from clbench.sweep import run_sweep, stored_keys
    from clbench.sweep.execute import describe

    points = grid_points(args)
    store = ResultsStore(Path(args.results_dir) if args.results_dir else results_root())
    if args.dry_run:
        stored = stored_keys(store)
        for spec in points:
            state = "stored" if spec.key() in stored and not args.rerun else "to run"
            print(f"{state:7} {spec.key()}  {describe(spec)}")
        print(f"{len(points)} points, {sum(s.key() in stored for s in points)} stored")
        return 0
    gpus = args.gpus_per_point
    if gpus is None:
        gpus = 1.0 if args.preset == "ptm-table" else 0.0
    bar = ProgressLine(len(points))
    summary = run_sweep(
        points,
        store,
        Path(args.logs) if args.logs else cache_root() / "sweep-logs",
        workers=args.workers,
        threads=args.threads,
        ray_address=args.ray,
        cpus_per_point=args.cpus_per_point,
        gpus_per_point=gpus,
        retries=args.retries,
        rerun=args.rerun,
        plugins=args.plugin,
        on_outcome=bar.update,
    )
    bar.close()
    print_summary(summary, store)
    if summary.interrupted:
        print("clbench sweep: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    if (args.preset and not args.no_leaderboard) or args.leaderboard:
        build_leaderboard(store, Path(args.site), args.workers)
    return 1 if summary.by_status("failed") else 0


class ProgressLine:
    """One bar over the grid with an ETA on a terminal; one line per point otherwise."""

    def __init__(self, total: int) -> None:
        from clbench.progress import enabled

        self.bar = None
        if enabled():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=0, desc="sweep", unit="run", file=sys.stderr, dynamic_ncols=True)

    def update(self, outcome, finished: int, total: int) -> None:
        line = f"[{finished}/{total}] {outcome.status} {outcome.label} ({outcome.seconds:.1f} s)"
        if outcome.reason:
            line += f": {outcome.reason}"
        if self.bar is None:
            print(line, file=sys.stderr, flush=True)
            return
        self.bar.total = total
        self.bar.update(1)
        if outcome.status == "failed":
            self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def print_summary(summary, store) -> None:
    done, skipped, failed = (summary.by_status(s) for s in ("done", "skipped", "failed"))
    cpu = "" if summary.cpu_seconds is None else f", {summary.cpu_seconds:.1f} CPU s"
    print(
        f"sweep: {len(done)} done, {len(skipped)} skipped (already stored), {len(failed)} failed; "
        f"{summary.wall_seconds:.1f} s wall{cpu}"
    )
    retried = [o for o in done if o.attempts > 1]
    if retried:
        print(f"  {len(retried)} succeeded after a retry")
    for o in failed:
        print(f"  FAILED {o.label} after {o.attempts} attempt(s): {o.reason}")
    print(f"results: {store.root}")
    print(f"logs: {summary.log_dir}")


def build_leaderboard(store, site: Path, workers: int | None) -> None:
    from clbench.leaderboard.site import build_site

    results = store.all()
    if not results:
        print("leaderboard: no stored runs yet")
        return
    built = build_site(results, site, reuse=True, workers=workers)
    print(
        f"leaderboard: {len(results)} runs, {len(built.scenario_pages)} scenarios -> {built.index.resolve()}"
    )
