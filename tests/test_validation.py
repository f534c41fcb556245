"""Every registered option is checked from its annotation before anything runs.

The bad values are generated from each method's and scenario's signature (and the
fields of dataclass-typed options such as ``train: TrainConfig``), so a new method
or option is covered without editing this file.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from typing import Any, Union

import pytest

from clbench.errors import ConfigError
from clbench.registry import METHODS, SCENARIOS
from clbench.runner import RunSpec, validate_spec
from clbench.training import TrainConfig
from clbench.validation import RANGES, Range, option_types, validate_options


def _arms(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _range_violations(name: str, numeric: type) -> list[Any]:
    bounds: Range | None = RANGES.get(name)
    if bounds is None:
        return []
    out = []
    if bounds.low is not None:
        out.append(bounds.low if bounds.open_low else bounds.low - 1)
    if bounds.high is not None:
        out.append(bounds.high + (1 if numeric is int else 0.5))
    return [numeric(v) if numeric is int else float(v) for v in out]


def bad_values(name: str, annotation: Any) -> list[tuple[str, Any]]:
    """(option as written, bad value) pairs that the annotation and range refuse."""
    arms = _arms(annotation)
    out: list[tuple[str, Any]] = []
    for arm in arms:
        if dataclasses.is_dataclass(arm):  # a nested table: each field's bad values
            hints = typing.get_type_hints(arm)
            nested = [(name, "not-a-table"), (name, {"no_such_field": 1})]
            for f in dataclasses.fields(arm):
                nested += [
                    (f"{name}.{f.name}", {f.name: value})
                    for _, value in bad_values(f.name, hints[f.name])
                ]
            return nested
    origins = {typing.get_origin(a) or a for a in arms}
    if typing.Literal in origins:  # a choice of words: one outside it, and a non-word
        out += [(name, "no-such-choice"), (name, 3)]
    elif int in origins and float not in origins:
        out += [(name, "abc"), (name, True), (name, 1.5)]
        out += [(name, v) for v in _range_violations(name, int)]
    elif float in origins:
        out += [(name, "abc"), (name, math.nan), (name, math.inf), (name, False)]
        out += [(name, v) for v in _range_violations(name, float)]
    elif bool in origins:
        out += [(name, "maybe"), (name, 1)]
    elif str in origins:
        out += [(name, 3), (name, True)]
    if origins & {tuple, list}:
        items = {typing.get_args(a)[0] for a in arms if typing.get_args(a)}
        out += [(name, {"a": 1})]
        if int in items:
            out += [(name, ["x"]), (name, [1.5])]
    return out


def _options(registry) -> list[tuple[str, Any, str, Any]]:
    cases = []
    for entry in registry.entries():
        for name, annotation in option_types(entry.factory).items():
            for shown, value in bad_values(name, annotation):
                key = shown.split(".")[0]
                cases.append((entry.name, entry.factory, shown, {key: value}))
    return cases


CASES = _options(METHODS) + _options(SCENARIOS)


def test_the_table_covers_every_registered_option():
    covered = {(where, shown.split(".")[0]) for where, _, shown, _ in CASES}
    for registry in (METHODS, SCENARIOS):
        # clbench's own entries (a test may register a throwaway method, e.g. the sweep's)
        for entry in (e for e in registry.entries() if e.factory.__module__.startswith("clbench.")):
            for name in option_types(entry.factory):
                assert (entry.name, name) in covered, f"{entry.name}.{name} has no bad value"
    assert any(shown == "train.lr" for _, _, shown, _ in CASES)


@pytest.mark.parametrize(
    "where,factory,shown,options",
    CASES,
    ids=[f"{w}-{s}-{o!r}"[:80] for w, _, s, o in CASES],
)
def test_bad_value_is_refused_naming_the_option(where, factory, shown, options):
    with pytest.raises(ConfigError) as info:
        validate_options(factory, options, where)
    assert shown in str(info.value) or "no option" in str(info.value)


@pytest.mark.parametrize("entry", METHODS.entries() + SCENARIOS.entries(), ids=lambda e: e.name)
def test_every_default_passes(entry):
    target = entry.factory.__init__ if inspect.isclass(entry.factory) else entry.factory
    defaults = {
        name: p.default
        for name, p in inspect.signature(target).parameters.items()
        if name != "self" and p.default is not inspect.Parameter.empty
    }
    assert validate_options(entry.factory, defaults, entry.name).keys() == defaults.keys()
    if "train" in defaults:  # the training defaults a method applies pass too
        train = entry.factory().train
        validate_options(TrainConfig, dataclasses.asdict(train), entry.name)


@pytest.mark.parametrize(
    "options,expected",
    [
        ({"vendors": "apple"}, ("apple",)),
        ({"vendors": "google, twitter"}, ("google", "twitter")),
        ({"min_per_class": 6.0}, 6),
    ],
)
def test_unambiguous_values_are_converted(options, expected):
    out = validate_options(SCENARIOS.get("emoji-dil").factory, options, "emoji-dil")
    assert next(iter(out.values())) == expected


def test_nested_train_table_is_checked_field_by_field():
    factory = METHODS.get("linear").factory
    out = validate_options(factory, {"train": {"lr": 1, "betas": [0.9, 0.99]}}, "linear")
    assert out["train"] == {"lr": 1.0, "betas": (0.9, 0.99)}
    with pytest.raises(ConfigError, match=r"train\.epochs must be"):
        validate_options(factory, {"train": {"epochs": -1}}, "linear")
    with pytest.raises(ConfigError, match=r"no option train\.lrr"):
        validate_options(factory, {"train": {"lrr": 0.1}}, "linear")


def test_method_creation_refuses_before_constructing():
    from clbench.registry import create_method

    with pytest.raises(ConfigError, match="option k must be an integer, not 'abc'"):
        create_method("knn", k="abc")


@pytest.mark.parametrize(
    "field,value",
    [
        ("seed", True),
        ("seed", -1),
        ("seed", 2**40),
        ("image_size", 0),
        ("batch_size", 0),
        ("batch_size", "64"),
        ("device", "tpu"),
        ("device", "cuda:7"),
        ("backbone", "timm:"),
        ("method", 3),
    ],
)
def test_run_options_are_checked(field, value):
    import torch

    if value == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    with pytest.raises(ConfigError):
        validate_spec(dataclasses.replace(RunSpec(), **{field: value}))
