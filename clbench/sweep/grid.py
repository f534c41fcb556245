"""A sweep's grid: the cross product of methods, scenarios, backbones, seeds and
option lists, expanded into ordinary RunSpecs (one per grid point).

What a seed means. In class-incremental scenarios the class order comes from
the scenario's own ``seed`` option (1993 by the PILOT convention) and
``RunSpec.seed`` seeds training only, so a training-free method such as
SimpleCIL has zero spread over run seeds. PILOT and PyCIL use one seed for
both, and so does a sweep by default (``seed_scope="order"``): each seed sets
the run seed *and* ``scenario.seed`` wherever the scenario has that option
(class order, few-shot sessions). ``seed_scope="training"`` varies the run seed
only, as ``clbench run --seed`` does. A grid that sets ``scenario.seed``
itself keeps it fixed in either scope.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clbench.errors import ConfigError
from clbench.runner import RunSpec

FIRST_SEED = 1993
SEED_SCOPES = ("order", "training")
RUN_FIELDS = ("weights", "image_size", "device", "batch_size", "data_root")


@dataclass
class Grid:
    """What to run; ``method_options`` / ``scenario_options`` map an option to a
    value or a list of values (each value one more axis), under ``"*"`` for every
    method (scenario) or under one name for that one only."""

    methods: list[str]
    scenarios: list[str]
    backbones: list[str | None] = field(default_factory=lambda: [None])
    """None: the scenario's default backbone (EfficientNet-Lite0 for the image scenarios)."""
    seeds: list[int] = field(default_factory=lambda: [FIRST_SEED])
    seed_scope: str = "order"
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    scenario_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    method_backbones: dict[str, list[str]] = field(default_factory=dict)
    """Per-method backbones replacing ``backbones`` (e.g. ViT-only methods)."""
    run: dict[str, Any] = field(default_factory=dict)
    """RunSpec fields shared by every point: weights, image_size, device, batch_size,
    data_root (where the data is: not part of a point's identity)."""

    def points(self) -> list[RunSpec]:
        """Every grid point as a RunSpec, in a stable order, duplicates removed."""
        if self.seed_scope not in SEED_SCOPES:
            raise ConfigError(
                f"unknown seed scope {self.seed_scope!r}", f"use one of {', '.join(SEED_SCOPES)}"
            )
        for name, values in (("method", self.methods), ("scenario", self.scenarios)):
            if not values:
                raise ConfigError(
                    f"the grid names no {name}", f"give --{name} a,b or {name}s = [...]"
                )
        unknown = set(self.run) - set(RUN_FIELDS)
        if unknown:
            raise ConfigError(
                f"unknown run settings {sorted(unknown)}", f"use {', '.join(RUN_FIELDS)}"
            )
        specs: dict[str, RunSpec] = {}
        for scenario in self.scenarios:
            scenario_sets = option_product(self.scenario_options, scenario)
            has_seed = "seed" in scenario_parameters(scenario)
            for method in self.methods:
                for backbone in self.method_backbones.get(method, self.backbones):
                    for method_opts in option_product(self.method_options, method):
                        for scenario_opts, seed in itertools.product(scenario_sets, self.seeds):
                            opts = dict(scenario_opts)
                            if self.seed_scope == "order" and has_seed:
                                opts.setdefault("seed", seed)
                            spec = RunSpec(
                                scenario=scenario,
                                method=method,
                                backbone=backbone,
                                seed=seed,
                                method_options=dict(method_opts),
                                scenario_options=opts,
                                **self.run,
                            )
                            specs.setdefault(spec.key(), spec)
        return list(specs.values())


def option_product(options: dict[str, dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The cross product of the option lists that apply to ``name`` (``"*"`` and its own)."""
    merged = {**options.get("*", {}), **options.get(name, {})}
    keys = sorted(merged)
    axes = [v if isinstance(v, list) else [v] for v in (merged[k] for k in keys)]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*axes)]


def scenario_parameters(name: str) -> set[str]:
    from clbench.registry import SCENARIOS

    return set(inspect.signature(SCENARIOS.get(name).factory).parameters)


def parse_seeds(value: int | str | Sequence[int]) -> list[int]:
    """``3`` -> 1993, 1994, 1995 (from the PILOT seed); ``"1,7"`` or ``[1, 7]`` -> as given."""
    if isinstance(value, bool):
        raise ConfigError(f"seeds = {value!r} is not a count or a list of seeds")
    if isinstance(value, int):
        count = value
    elif isinstance(value, str) and value.strip().isdigit() and "," not in value:
        count = int(value)
    else:
        items = value.split(",") if isinstance(value, str) else list(value)
        try:
            seeds = [int(s) for s in items]
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"seeds {value!r} are not integers", "write --seeds 3 or --seeds 1993,42"
            ) from exc
        return list(dict.fromkeys(seeds))
    if count < 1:
        raise ConfigError(f"--seeds {count}: need at least one seed", "write --seeds 3")
    return list(range(FIRST_SEED, FIRST_SEED + count))


def split_names(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [s.strip() for s in items if s.strip()]


def validate(points: Sequence[RunSpec]) -> None:
    """Refuse an unknown method, scenario or option before anything runs: a typo
    in the last point must not surface after an hour of runs."""
    from clbench.registry import SCENARIOS, check_kwargs, create_method

    checked: set[str] = set()
    for spec in points:
        method_id = f"{spec.method}{sorted(spec.method_options.items())}"
        if method_id not in checked:
            create_method(spec.method, **spec.method_options)
            checked.add(method_id)
        options = {k: v for k, v in spec.scenario_options.items() if k != "task_incremental"}
        check_kwargs(SCENARIOS.get(spec.scenario).factory, options, f"scenario {spec.scenario!r}")
