"""One benchmark run from names to a stored RunResult (what ``clbench run`` does)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clbench import metrics
from clbench.backbones.descriptor import DescriptorStore, open_backbone
from clbench.context import RunContext
from clbench.errors import ConfigError
from clbench.evaluator import Evaluation, Evaluator, check_compatible, peak_rss_mb
from clbench.features import FeatureCache
from clbench.manifest import manifest
from clbench.paths import checkpoints_root, features_root, using_data_root
from clbench.registry import METHODS, create_method, create_scenario
from clbench.results import ResultsStore, RunResult, new_run_id
from clbench.runtime import configure_torch
from clbench.scenario import Scenario

DEFAULT_SCENARIO = "emoji-cil"
DEFAULT_METHOD = "simplecil"
DEFAULT_BACKBONE = "efficientnet-lite0"
#: The feature cache's sub-folder of backbone descriptions (clbench.backbones.descriptor).
DESCRIPTORS = "backbones"


@dataclass
class RunSpec:
    """Everything that defines a run; its ``key`` names checkpoints for --resume."""

    scenario: str = DEFAULT_SCENARIO
    method: str = DEFAULT_METHOD
    backbone: str | None = None
    """None: the scenario's default backbone (a language model for text), else efficientnet-lite0."""
    seed: int = 1993
    weights: str | None = None
    image_size: int | None = None
    #: Preprocessing overrides by name (None: the weights' own; see clbench.backbones.preprocessing).
    crop_pct: float | None = None
    normalization: str | None = None
    resize_mode: str | None = None
    interpolation: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    scenario_options: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    batch_size: int = 64
    data_root: str | None = None
    """Where standard datasets are read from; not part of the run's identity (the split hash is)."""

    def key(self) -> str:
        """A stable identity: the same spec gives the same key in any process, so a
        sweep finds a point's stored record by it (``config["spec_key"]``)."""
        identity = {k: v for k, v in self.__dict__.items() if k != "data_root"}
        blob = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def as_dict(self) -> dict[str, Any]:
        """The spec as plain JSON data, as a RunResult stores it."""
        return json.loads(json.dumps(dataclasses.asdict(self), sort_keys=True, default=str))


#: RunSpec fields that are run options (``clbench run`` flags, the config's [run] table).
RUN_OPTIONS = tuple(
    f.name
    for f in dataclasses.fields(RunSpec)
    if f.name not in ("method_options", "scenario_options")
)


def resolve_device(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (or another device torch has), refused
    with one message when torch does not know it or this machine lacks it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    hint = "use --device auto, cpu or cuda[:N]"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError(f"unknown device {name!r}", hint) from exc
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"--device {name}: this machine has no usable CUDA GPU", hint)
        if device.index is not None and device.index >= count:
            raise ConfigError(f"--device {name}: only {count} CUDA device(s) here", hint)
    elif device.type not in ("cpu", "meta") and not _available(device):
        raise ConfigError(f"--device {name}: no {device.type} device on this machine", hint)
    return device


def _available(device: torch.device) -> bool:
    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError):
        return False
    return True


def validate_spec(spec: RunSpec) -> None:
    """The run options' types and ranges (from RunSpec's annotations), the device and
    the cache folders: everything about the run itself that can be refused up front."""
    from clbench.backbones import parse_backbone_spec
    from clbench.validation import validate_options

    validate_options(RunSpec, {name: getattr(spec, name) for name in RUN_OPTIONS}, "run")
    for name in ("method_options", "scenario_options"):
        if not isinstance(getattr(spec, name), dict):
            raise ConfigError(f"run: {name} must be a table of options")
    if spec.backbone is not None:
        parse_backbone_spec(spec.backbone)
    resolve_device(spec.device)
    for folder, variable in (
        (features_root(), "CLBENCH_FEATURES"),
        (checkpoints_root(), "CLBENCH_CHECKPOINTS"),
    ):
        ensure_writable_folder(folder, variable)


def ensure_writable_folder(folder: Path, variable: str) -> None:
    """A cache folder must be creatable and writable (else: one message naming it)."""
    import tempfile

    hint = f"point ${variable} or $CLBENCH_CACHE at a writable folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            f"the cache folder {folder} is not a writable folder: {exc.strerror or exc}", hint
        ) from exc


def build_scenario(
    name: str, options: dict[str, Any], data_root: str | Path | None = None
) -> Scenario:
    """Create a registered scenario (its datasets read under ``data_root`` when given);
    ``task_incremental`` is an option of every scenario: the test phase is then told the
    task id (for methods that use it) and scores are restricted to the tested task's
    classes; results record it."""
    options = dict(options)
    task_incremental = options.pop("task_incremental", False)
    if not isinstance(task_incremental, bool):
        raise ConfigError(
            f"scenario.task_incremental must be true or false, not {task_incremental!r}",
            "write --set scenario.task_incremental=true",
        )
    with using_data_root(data_root):
        scenario: Scenario = create_scenario(name, **options)
    if task_incremental:
        scenario = dataclasses.replace(
            scenario,
            task_incremental=True,
            protocol={**scenario.protocol, "task_incremental": True},
        )
    return scenario


def preprocessing_overrides(spec: RunSpec, protocol: dict[str, Any]) -> dict[str, Any]:
    """What the run changes in the backbone's preprocessing: the run's own options first,
    then the scenario protocol's (its ``image_size`` and ``preprocessing`` table)."""
    from_protocol = dict(protocol.get("preprocessing") or {})
    from_protocol.setdefault("image_size", protocol.get("image_size"))
    asked = {
        "image_size": spec.image_size,
        "crop_pct": spec.crop_pct,
        "normalization": spec.normalization,
        "resize": spec.resize_mode,
        "interpolation": spec.interpolation,
        "train_crop_scale": None,  # a scenario option only (the folder scenario pins it)
    }
    return {k: v if v is not None else from_protocol.get(k) for k, v in asked.items()}


def prepare(spec: RunSpec, cache: FeatureCache | None = None):
    """Build scenario, backbone, learner and context for ``spec`` (no learning yet).

    Everything that can be refused (options, data, the method/protocol pairing) is
    checked here, before any network is built or trained. A backbone a previous run
    described (stored beside the features) comes lazy: built only when a feature is
    missing or the method needs the network, so a fully cached run builds none.
    """
    configure_torch()
    validate_spec(spec)
    learner = create_method(spec.method, **spec.method_options)  # validates options first
    scenario = build_scenario(spec.scenario, spec.scenario_options, spec.data_root)
    if not any(len(task.test) for task in scenario.tasks):
        raise ConfigError(
            f"scenario {spec.scenario!r} has no test data: nothing could be measured",
            "give it test samples (e.g. scenario.test_fraction > 0)",
        )
    check_compatible(learner, scenario, spec.method)
    backbone_name = spec.backbone or scenario.default_backbone or DEFAULT_BACKBONE
    device = resolve_device(spec.device)
    cache = cache or FeatureCache(features_root())
    backbone = open_backbone(
        backbone_name,
        spec.weights,
        preprocessing_overrides(spec, scenario.protocol),
        DescriptorStore(cache.root / DESCRIPTORS) if cache.root is not None else None,
        device,
    )
    ctx = RunContext(
        backbone=backbone,
        cache=cache,
        device=device,
        seed=spec.seed,
        batch_size=spec.batch_size,
    )
    return scenario, learner, ctx


def run(
    spec: RunSpec,
    store: ResultsStore | None = None,
    resume: bool = False,
    cache: FeatureCache | None = None,
    on_task_end=None,
) -> RunResult:
    """Run ``spec`` end to end and store the result (when ``store`` is given)."""
    began = time.perf_counter()
    if store is not None:
        store.check_writable()  # before the run, not after an hour of it
    scenario, learner, ctx = prepare(spec, cache)
    checkpoint_dir = checkpoints_root() / spec.key()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    evaluation = Evaluator(scenario, learner, ctx, checkpoint_dir, on_task_end).run(resume=resume)
    result = build_result(spec, scenario, learner, ctx, evaluation, time.perf_counter() - began)
    if store is not None:
        store.write(result)
    for old in checkpoint_dir.glob("task*.pt"):
        old.unlink()  # the run finished: its checkpoints are no longer needed
    return result


def build_result(
    spec: RunSpec,
    scenario: Scenario,
    learner,
    ctx: RunContext,
    evaluation: Evaluation,
    wall_seconds: float,
) -> RunResult:
    # Not-evaluated cells count as 0 in the step sums, exactly as the counts did before.
    score_sums = np.nan_to_num(evaluation.scores, nan=0.0)
    acc = metrics.accuracy_matrix(score_sums, evaluation.counts)
    acc[np.isnan(evaluation.scores)] = float("nan")
    summary = metrics.summarize(
        score_sums, evaluation.counts, scenario.evaluate_unseen, few_shot=scenario.few_shot
    )
    extra = dict(learner.extra_results())
    if evaluation.initial is not None:
        summary.update(text_stream_summary(scenario, evaluation, acc))
        extra["before_learning"] = {
            "tasks": [t.name for t in [*scenario.tasks, *scenario.heldout]],
            "score_sums": [float(v) for v in evaluation.initial],
            "eval_seconds": evaluation.eval_seconds_before,
        }
    if scenario.heldout:
        extra["heldout"] = {
            "tasks": [t.name for t in scenario.heldout],
            "scorers": [t.scorer for t in scenario.heldout],
            "test_counts": [len(t.test) for t in scenario.heldout],
            "score_sums": evaluation.heldout.tolist(),
        }
    # Read from the description: a run that needed no network does not build one here.
    backbone = ctx.backbone_info
    truncation = getattr(backbone, "truncation", None)
    if truncation is not None:  # language models: the rule and how often it applied
        extra["truncation"] = {
            "rule": backbone.truncation_rule,
            "max_length": backbone.max_length,
            **dataclasses.asdict(truncation),
        }
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if ctx.device.type == "cuda" else None
    return RunResult(
        run_id=new_run_id(scenario.name, spec.method, spec.seed),
        scenario=scenario.name,
        scenario_kind=scenario.kind,
        method=spec.method,
        backbone=backbone.name,
        seed=spec.seed,
        config={
            "method": {"name": spec.method, **learner.hyperparameters()},
            "method_description": METHODS.get(spec.method).description,
            "scenario": {
                "name": spec.scenario,
                **spec.scenario_options,
                "protocol": scenario.protocol,
            },
            "backbone": {
                "spec": spec.backbone or backbone.name,
                "weights": spec.weights,
                "weights_id": backbone.weights_id,
                "image_size": backbone.image_size,
                "cache_id": backbone.cache_id,
                # Image backbones only: a language model's input handling is its tokenizer.
                "preprocessing": (
                    backbone.preprocessing.to_dict() if hasattr(backbone, "preprocessing") else None
                ),
            },
            "batch_size": spec.batch_size,
            "device": str(ctx.device),
            "resumed_from_task": evaluation.resumed_from,
            # What was asked for, verbatim, and its key: a sweep skips a point whose
            # key a stored record already carries.
            "spec": spec.as_dict(),
            "spec_key": spec.key(),
            "accuracy_convention": "sample-weighted (PILOT) in *_sample, task-averaged (Mammoth) in *_task",
            "protocol": scenario.setting,
        },
        manifest=manifest(ctx.device),
        split_hash=scenario.split_hash,
        class_order=scenario.class_order,
        task_classes=[[int(c) for c in t.classes] for t in scenario.tasks],
        correct_matrix=evaluation.scores_or_none(),
        scorers=scenario.scorers,
        class_names=list(scenario.class_names),
        test_counts=[int(c) for c in evaluation.counts],
        accuracy_matrix=[[float(v) for v in row] for row in acc],
        metrics=summary,
        timings={
            "learn_seconds": evaluation.learn_seconds,
            "eval_seconds": evaluation.eval_seconds,
            "feature_extraction_seconds": ctx.cache.stats.extract_seconds,
            "features_extracted": ctx.cache.stats.extracted,
            "features_from_cache": ctx.cache.stats.hits,
            "total_seconds": wall_seconds,
        },
        peak_memory={"cpu_rss_mb": peak_rss_mb(), "gpu_allocated_mb": gpu_peak},
        trainable_parameters=evaluation.trainable_parameters,
        task_incremental=scenario.task_incremental,
        evaluate_unseen=scenario.evaluate_unseen,
        extra=extra,
    )


def text_stream_summary(scenario: Scenario, evaluation: Evaluation, acc) -> dict:
    """OP, BWT, zero-shot FWT, forgetting and held-out retention of an instruction stream."""
    counts = np.array([len(t.test) for t in [*scenario.tasks, *scenario.heldout]], dtype=float)
    initial = evaluation.initial / np.maximum(counts, 1)
    heldout = None
    if evaluation.heldout is not None:
        heldout = evaluation.heldout / np.maximum(counts[scenario.num_tasks :], 1)
    return metrics.instruction_metrics(acc, initial, heldout)


def default_store() -> ResultsStore:
    from clbench.paths import results_root

    return ResultsStore(Path(results_root()))
