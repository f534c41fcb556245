"""The one training loop every method calls.

Methods describe *what* to optimise (parameters, a loss on a batch); this
module owns *how*: optimiser and schedule from config, epochs, gradient
clipping, mixed precision on GPU, progress, per-epoch loss/accuracy logs, and
CPU determinism (batches are shuffled by a generator seeded from the run).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from clbench.data import Samples
from clbench.errors import ConfigError
from clbench.features import ImageDataset
from clbench.progress import progress

SCHEDULES = ("cosine", "quarter-cosine", "multistep", "constant")


@dataclass
class TrainConfig:
    epochs: int = 10
    lr: float = 0.01
    optimizer: str = "sgd"  # sgd | adam | adamw
    momentum: float = 0.9
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"  # cosine | quarter-cosine | multistep | constant
    """``cosine``: half a cosine period from 1 to 0 over the optimiser steps.
    ``quarter-cosine``: CODA-Prompt's schedule (its ``utils/schedulers.py``, copied by
    PILOT): constant within an epoch, epoch ``e`` of ``E`` at cos(99 pi e / (200 (E - 1))),
    i.e. a quarter period from 1 down to cos(99 pi / 200) = 0.0157 at the last epoch."""
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0
    batch_size: int = 32
    max_steps: int | None = None
    """Train for this many optimiser steps instead of ``epochs`` (cycling over the
    batches; the schedule spans these steps). CoDyRA counts iterations, not epochs."""
    warmup_steps: int = 0
    """Warm-up in steps, added to ``warmup_epochs``; for step-counted training."""
    grad_clip: float | None = None
    amp: bool = True  # used only on CUDA

    def __post_init__(self) -> None:
        # Refused when the config is made, not when the first schedule is built mid-run.
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"unknown schedule {self.schedule!r}", f"use one of {', '.join(SCHEDULES)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_train(
    defaults: TrainConfig, overrides: TrainConfig | Mapping[str, Any] | None
) -> TrainConfig:
    """A method's training configuration: its ``defaults`` with the user's ``overrides``.

    ``overrides`` is what the constructor argument ``train`` received: a whole
    TrainConfig, or a mapping of some fields (``--set train.lr=0.01`` gives
    ``{"lr": 0.01}``). Unknown fields are refused with the list of valid ones.
    """
    if overrides is None:
        return defaults
    if isinstance(overrides, TrainConfig):
        return overrides
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"train must be a table of training options, not {overrides!r}",
            "write e.g. --set train.lr=0.01 --set train.epochs=5",
        )
    valid = {f.name: f for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ConfigError(
            f"train has no option {', '.join(unknown)}", f"valid options: {', '.join(valid)}"
        )
    # JSON and TOML give lists where the config holds tuples (betas, milestones).
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return replace(defaults, **values)


@dataclass
class EpochLog:
    epoch: int
    loss: float
    accuracy: float | None
    # The configured rate of the epoch's last optimiser step (the one it trained at, not the
    # next step's); a group with lr_scale s ran at s x lr.
    lr: float


@dataclass
class TrainLog:
    epochs: list[EpochLog] = field(default_factory=list)

    def to_dict(self) -> list[dict[str, Any]]:
        """Plain per-epoch records (for ``Learner.extra_results`` and the RunResult)."""
        return [asdict(e) for e in self.epochs]


def param_groups(params: Iterable[Any]) -> list[dict[str, Any]]:
    """Trainable parameters as optimiser groups.

    ``params`` holds parameters, or dicts ``{"params": [...], "lr_scale": s}`` for
    groups whose learning rate is ``s`` times the configured one (MOS trains its
    head at a tenth of the adapters' rate). Frozen parameters are dropped.
    """
    items = list(params)
    groups = items if items and isinstance(items[0], dict) else [{"params": items}]
    trainable = [
        {"params": [p for p in g["params"] if p.requires_grad], "lr_scale": g.get("lr_scale", 1.0)}
        for g in groups
    ]
    return [g for g in trainable if g["params"]]


def make_optimizer(params: Iterable[Any], cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = [{"params": g["params"], "lr": cfg.lr * g["lr_scale"]} for g in param_groups(params)]
    if not groups:
        raise ConfigError("nothing to train: no parameter requires a gradient")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    raise ConfigError(f"unknown optimizer {cfg.optimizer!r}", "use sgd, adam or adamw")


def total_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimiser steps ``fit`` takes: ``max_steps`` when set, else whole epochs."""
    return cfg.max_steps if cfg.max_steps else cfg.epochs * steps_per_epoch


def make_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = max(total_steps(cfg, steps_per_epoch), 1)
    warmup = cfg.warmup_epochs * steps_per_epoch + cfg.warmup_steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "cosine":
            progress_ = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1 + math.cos(math.pi * progress_))
        if cfg.schedule == "quarter-cosine":
            epochs = math.ceil((total - warmup) / steps_per_epoch)
            # min(): the factor LambdaLR sets after the last step (never trained at) stays in range.
            epoch = min((step - warmup) // steps_per_epoch, epochs - 1)
            return math.cos(99 * math.pi * epoch / (200 * (epochs - 1))) if epochs > 1 else 1.0
        if cfg.schedule == "multistep":
            epoch = step // steps_per_epoch
            return cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
        if cfg.schedule == "constant":
            return 1.0
        raise ConfigError(
            f"unknown schedule {cfg.schedule!r}", f"use one of {', '.join(SCHEDULES)}"
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(
    params: Iterable[Any],
    batches: DataLoader,
    step: Callable[[Any], tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]],
    cfg: TrainConfig,
    device: torch.device,
    desc: str = "train",
    after_step: Callable[[], None] | None = None,
    modules: Iterable[torch.nn.Module] = (),
    eval_modules: Iterable[torch.nn.Module] = (),
) -> TrainLog:
    """Optimise ``params`` (parameters, or groups as in ``param_groups``) for ``cfg.epochs``
    (or ``cfg.max_steps`` optimiser steps).

    ``step(batch)`` returns ``(loss, logits, targets)``; logits/targets may be None
    when accuracy is meaningless. ``after_step`` runs after every optimiser step
    (e.g. MOS's EMA merge). ``modules`` are put in train mode for the loop and
    restored afterwards; ``eval_modules`` (inside them) stay in eval mode, e.g. the
    BatchNorm layers of a frozen body whose running statistics must not move.
    The log holds each epoch's mean loss, accuracy and the rate of its last step.
    """
    params = list(params)
    optimizer = make_optimizer(params, cfg)
    schedule = make_schedule(optimizer, cfg, len(batches))
    # bfloat16 autocast on GPU: same exponent range as fp32, so no loss scaling needed.
    use_amp = cfg.amp and device.type == "cuda"
    modules, eval_modules = list(modules), list(eval_modules)
    modes = [(m, m.training) for m in modules + eval_modules]
    for m in modules:
        m.train()
    for m in eval_modules:
        m.eval()
    log = TrainLog()
    if cfg.max_steps is not None and cfg.max_steps <= 0:
        raise ConfigError(f"max_steps must be positive, got {cfg.max_steps}")
    steps_left = total_steps(cfg, len(batches))
    epochs = math.ceil(steps_left / max(len(batches), 1))
    try:
        for epoch in progress(range(epochs), desc=desc, total=epochs):
            total_loss, seen, correct, scored = 0.0, 0, 0, 0
            for batch in batches:
                if steps_left == 0:
                    break  # max_steps reached inside the last pass
                steps_left -= 1
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    loss, logits, targets = step(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(
                        [p for g in param_groups(params) for p in g["params"]], cfg.grad_clip
                    )
                optimizer.step()
                schedule.step()
                if after_step is not None:
                    after_step()
                n = len(targets) if targets is not None else 1
                total_loss += float(loss.detach()) * n
                seen += n
                if logits is not None and targets is not None:
                    correct += int((logits.detach().argmax(1) == targets).sum())
                    scored += len(targets)
            log.epochs.append(
                EpochLog(
                    epoch,
                    total_loss / max(seen, 1),
                    correct / scored if scored else None,  # None: the step gave no logits
                    # the first group may be scaled (SLCA's backbone at 1/100): log the base rate;
                    # last_epoch counts steps taken, so the step just taken is last_epoch - 1
                    cfg.lr * schedule.lr_lambdas[0](schedule.last_epoch - 1),
                )
            )
    finally:
        for m, mode in modes:
            m.train(mode)
    return log


def tensor_batches(
    *tensors: torch.Tensor, batch_size: int, seed: int, shuffle: bool = True
) -> DataLoader:
    """Shuffled mini-batches over in-memory tensors, reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        TensorDataset(*tensors), batch_size=batch_size, shuffle=shuffle, generator=generator
    )


def image_batches(
    samples: Samples,
    transform,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    drop_last: bool = False,
) -> DataLoader:
    """Mini-batches ``(images, labels)`` of ``samples`` through ``transform``, reproducible from ``seed``.

    The order comes from a generator seeded with ``seed``; random augmentations draw
    from torch's global generator, which the Evaluator seeds, so a CPU run repeats
    bit for bit. Loading runs in the main process (no workers) for the same reason.
    """
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        ImageDataset(samples, transform),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        drop_last=drop_last,
    )


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move an image batch to ``device``; channels-last on CUDA, where convolutions prefer it."""
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def classification_step(
    model: torch.nn.Module,
    device: torch.device,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
):
    """The usual ``step`` for ``fit``: logits of an image batch and cross-entropy (or ``loss_fn``)."""
    loss_fn = loss_fn or torch.nn.functional.cross_entropy

    def step(batch):
        images, labels = batch
        labels = labels.to(device)
        logits = model(to_device(images, device))
        return loss_fn(logits.float(), labels), logits, labels

    return step
