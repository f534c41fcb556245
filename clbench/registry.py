"""timm-style registries: ``@register_method("name")`` then ``create_method(name)``."""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from clbench.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    factory: Callable[..., T]
    description: str


class Registry(Generic[T]):
    """A name -> factory map whose entries come from decorated definitions.

    ``package`` names the package whose modules define the entries; it is imported
    on first lookup so that registering needs no central list to edit.
    """

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = package is None

    def register(
        self, name: str, description: str | None = None
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries and self._entries[name].factory is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
            self._entries[name] = Entry(name, factory, doc)
            return factory

        return decorator

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self.package)
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{self.package}."):
            if not module.name.rsplit(".", 1)[-1].startswith("_"):
                importlib.import_module(module.name)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        self._load()
        return [self._entries[n] for n in sorted(self._entries)]

    def registered(self, name: str) -> Entry[T] | None:
        """The entry registered under ``name`` so far, without importing the package."""
        return self._entries.get(name)

    def get(self, name: str) -> Entry[T]:
        self._load()
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}",
                f"{hint}`clbench list` shows every registered {self.kind}",
            )
        return self._entries[name]

    def create(self, name: str, **kwargs: Any) -> T:
        from clbench.validation import validate_options

        factory = self.get(name).factory
        check_kwargs(factory, kwargs, f"{self.kind} {name!r}")
        # Types and ranges from the annotations, before the factory runs anything.
        return factory(**validate_options(factory, kwargs, f"{self.kind} {name!r}"))


def check_kwargs(factory: Callable[..., Any], kwargs: dict[str, Any], what: str) -> None:
    """Reject unknown options with the list of valid ones, before anything runs."""
    params = inspect.signature(factory).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        valid = ", ".join(p for p in params if p != "self") or "none"
        fix = f"valid options: {valid}"
        if "train" in params:
            from clbench.training import TrainConfig

            training = [k for k in unknown if k in TrainConfig.__dataclass_fields__]
            if training:
                fix = f"training options are nested: --set train.{training[0]}=...; {fix}"
        raise ConfigError(f"{what} has no option {', '.join(unknown)}", fix)


METHODS: Registry[Any] = Registry("method", "clbench.methods")
SCENARIOS: Registry[Any] = Registry("scenario", "clbench.scenarios")
BACKBONES: Registry[Any] = Registry("backbone", "clbench.backbones")

register_method = METHODS.register
register_scenario = SCENARIOS.register
register_backbone = BACKBONES.register


def create_method(name: str, **kwargs: Any) -> Any:
    """Build a registered Learner from its constructor hyper-parameters."""
    return METHODS.create(name, **kwargs)


def create_scenario(name: str, **kwargs: Any) -> Any:
    """Build a registered Scenario (reading its data) from its options."""
    return SCENARIOS.create(name, **kwargs)


def create_backbone(name: str, **kwargs: Any) -> Any:
    """Build a registered Backbone with its pretrained weights loaded."""
    return BACKBONES.create(name, **kwargs)
