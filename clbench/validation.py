"""Every option's type and range, checked once from its annotation before anything runs.

A registered method's or scenario's options are its factory's parameters; their
annotations say the type (``int``, ``float | None``, ``tuple[str, ...]``, a
``Literal``, a dataclass such as ``TrainConfig``, whose fields are checked one
by one). Where the type alone does not say the range, :data:`RANGES` declares it
by option name, once for every method and scenario (``epochs >= 1``, ``lr`` finite
and > 0, fractions in [0, 1]); a parameter may instead carry its own
``Annotated[int, Range(...)]``. Floats must be finite everywhere.

Values are returned converted where that is unambiguous: an integral float for an
``int`` (TOML ``5.0``), a list for a tuple, and one word for a list of words
(``vendors=apple`` means ``("apple",)``; commas separate several).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from clbench.errors import ConfigError

__all__ = ["RANGES", "Range", "check_value", "option_types", "validate_options"]


@dataclass(frozen=True)
class Range:
    """Bounds of a number: ``low <= x`` (``low < x`` when ``open_low``), ``x <= high``."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False

    def check(self, value: float) -> str | None:
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        if self.high is not None and value > self.high:
            return f"<= {self.high:g}"
        return None

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"<= {self.high:g}")
        return " and ".join(parts)


AT_LEAST_1 = Range(1)
AT_LEAST_0 = Range(0)
POSITIVE = Range(0, open_low=True)
FRACTION = Range(0, 1)
#: numpy's RandomState takes seeds in [0, 2**32).
SEED = Range(0, 2**32 - 1)

#: Ranges by option name, for every method, scenario, TrainConfig field and run option.
RANGES: dict[str, Range] = {
    **dict.fromkeys(
        (
            "k",
            "num_tasks",
            "init_cls",
            "increment",
            "base",
            "ways",
            "shots",
            "sessions",
            "min_per_class",
            "train_per_class",
            "test_per_class",
            "samples_per_class",
            "batch_size",
            "detect_batch_size",
            "bottleneck",
            "num_prompts",
            "buffer_size",
            "descriptor_dim",
            "image_size",
            "epochs",
            "descriptor_epochs",
            "max_refine_iterations",
        ),
        AT_LEAST_1,
    ),
    **dict.fromkeys(("warmup_epochs", "align_epochs", "expand_layers", "milestones"), AT_LEAST_0),
    **dict.fromkeys(
        ("lr", "align_lr", "descriptor_lr", "head_lr_scale", "gamma", "temperature", "grad_clip"),
        POSITIVE,
    ),
    **dict.fromkeys(
        (
            "weight_decay",
            "align_weight_decay",
            "ridge",
            "covariance_eps",
            "adapter_scale",
            "contrastive_weight",
            "expansion_threshold",
        ),
        AT_LEAST_0,
    ),
    **dict.fromkeys(
        ("test_fraction", "shrinkage", "dropout", "momentum", "adapter_momentum", "betas"),
        FRACTION,
    ),
    "seed": SEED,
}


class _Invalid(Exception):
    """A value that does not fit (message says what was expected)."""


def _hints(obj: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations (``from __future__`` makes them strings); one that cannot be
    resolved (a TYPE_CHECKING-only import) is left unchecked."""
    target = obj.__init__ if inspect.isclass(obj) and not dataclasses.is_dataclass(obj) else obj
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:
        module = inspect.getmodule(target)
        namespace = dict(vars(module)) if module else {}
        out = {}
        for name, annotation in getattr(target, "__annotations__", {}).items():
            try:
                out[name] = (
                    eval(annotation, namespace) if isinstance(annotation, str) else annotation
                )
            except Exception:
                out[name] = Any
        return out


def option_types(factory: Callable[..., Any]) -> dict[str, Any]:
    """Option name -> annotation of a registered factory (a function or a class)."""
    if dataclasses.is_dataclass(factory):
        hints = _hints(factory)
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(factory)}
    target = factory.__init__ if inspect.isclass(factory) else factory
    hints = _hints(factory)
    return {
        name: hints.get(name, Any)
        for name, p in inspect.signature(target).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _name(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_name(a) for a in typing.get_args(annotation))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "none"
    if origin in (tuple, list):
        return "a list"
    if isinstance(annotation, type):
        return {
            "int": "an integer",
            "float": "a number",
            "str": "text",
            "bool": "true or false",
        }.get(annotation.__name__, annotation.__name__)
    return str(annotation)


def _coerce(value: Any, annotation: Any, name: str, where: str) -> Any:
    """``value`` converted to ``annotation``, or :class:`_Invalid`."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *extras = typing.get_args(annotation)
        value = _coerce(value, base, name, where)
        for extra in extras:
            if isinstance(extra, Range):
                _check_range(value, extra)
        return value
    if origin in (Union, types.UnionType):
        arms = typing.get_args(annotation)
        if value is None:
            if type(None) in arms:
                return None
            raise _Invalid(_name(annotation))
        # A table for a dataclass-typed option (``train``) is checked against the
        # dataclass even when the annotation also admits a plain dict.
        for arm in arms:
            if dataclasses.is_dataclass(arm) and isinstance(value, Mapping):
                return _coerce(value, arm, name, where)
        for arm in arms:
            if arm is type(None):
                continue
            try:
                return _coerce(value, arm, name, where)
            except _Invalid:
                continue
        raise _Invalid(_name(annotation))
    if origin is Literal:
        if value in typing.get_args(annotation):
            return value
        raise _Invalid(_name(annotation))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid("true or false")
    if annotation is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Invalid("an integer")
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _Invalid("a finite number")
            return float(value)
        raise _Invalid("a number")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _Invalid("text")
    if annotation is Path:
        if isinstance(value, str | Path):
            return Path(value)
        raise _Invalid("a path")
    if origin in (tuple, list):
        args = typing.get_args(annotation)
        if isinstance(value, str):
            if args and args[0] is str:
                value = [v.strip() for v in value.split(",") if v.strip()]
            else:
                raise _Invalid("a list, e.g. [1, 2]")
        if not isinstance(value, list | tuple):
            raise _Invalid("a list")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Invalid(f"a list of {len(args)} values")
            items = [_coerce(v, a, name, where) for v, a in zip(value, args, strict=True)]
        else:
            item = args[0] if args else Any
            items = [_coerce(v, item, name, where) for v in value]
        for item in items:
            _named_range(item, name)
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, Mapping):
            raise _Invalid(f"a table of {annotation.__name__} fields (e.g. {name}.FIELD=...)")
        return validate_options(annotation, dict(value), where, nested=name)
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        if isinstance(value, Mapping):
            return value
        raise _Invalid("a table")
    if isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        raise _Invalid(_name(annotation))
    return value


def _check_range(value: Any, bounds: Range) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        problem = bounds.check(value)
        if problem:
            raise _Invalid(f"a number {bounds.describe()}")


def _named_range(value: Any, name: str) -> None:
    bounds = RANGES.get(name)
    if bounds is not None:
        _check_range(value, bounds)


def check_value(
    value: Any, annotation: Any, name: str, where: str, shown: str | None = None
) -> Any:
    """One option's value, converted, or a :class:`ConfigError` naming the option
    (``shown``: its name as the user writes it, e.g. ``train.lr``)."""
    shown = shown or name
    try:
        converted = _coerce(value, annotation, name, where)
        _named_range(converted, name)
    except _Invalid as exc:
        raise ConfigError(
            f"{where}: option {shown} must be {exc}, not {value!r}",
            f"set {shown} to {exc}",
        ) from None
    return converted


def validate_options(
    factory: Callable[..., Any], options: dict[str, Any], where: str, nested: str | None = None
) -> Any:
    """``options`` checked against ``factory``'s annotated parameters: unknown names and
    bad values are refused with the valid names. Returns the converted options (for a
    dataclass ``factory``, the dataclass's fields as a dict)."""
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where} options must be a table, not {options!r}")
    types_ = option_types(factory)
    target = factory.__init__ if inspect.isclass(factory) else factory
    open_ended = not dataclasses.is_dataclass(factory) and any(
        p.kind is p.VAR_KEYWORD for p in inspect.signature(target).parameters.values()
    )
    unknown = sorted(set(options) - set(types_))
    if unknown and not open_ended:
        prefix = f"{nested}." if nested else ""
        raise ConfigError(
            f"{where} has no option {', '.join(prefix + u for u in unknown)}",
            f"valid options: {', '.join(prefix + t for t in types_) or 'none'}",
        )
    out = {}
    for key, value in options.items():
        shown = f"{nested}.{key}" if nested else key
        out[key] = check_value(value, types_.get(key, Any), key, where, shown)
    return out
