"""A backbone's image preprocessing: what its weights were pretrained with.

Every backbone takes its preprocessing from its weights' pretraining
configuration (timm's ``pretrained_cfg``, DINOv2's evaluation transform, ...),
and a run changes it only where the user asks by name: ``--image-size`` keeps
the crop fraction, ``--crop-pct``, ``--normalization``, ``--resize-mode`` and
``--interpolation`` change one thing each. The result records the whole
preprocessing and which parts were overridden, so a number always says how
its images were fed.

The evaluation transform is timm's: resize to ``floor(image_size / crop_pct)``
(the shorter side, or both sides with ``resize="squash"``), centre-crop
``image_size``, scale to [0, 1], normalise.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from clbench.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Named normalisations; ``pretrained`` (the default) keeps the weights' own.
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # (x - 0.5) / 0.5, TF-trained nets
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # [0, 1] pixels, as PILOT feeds its ViTs
}
RESIZE_MODES = ("shorter", "squash")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
#: The override names a run accepts (CLI option ``--crop-pct`` is ``crop_pct``, ...).
OVERRIDES = (
    "image_size",
    "crop_pct",
    "normalization",
    "resize",
    "interpolation",
    "train_crop_scale",
)


@dataclass(frozen=True)
class Preprocessing:
    """Resize, centre crop and normalisation of a backbone's input images.

    ``source`` says where the values come from (e.g. the timm config of the
    weights); ``overrides`` lists what a run changed by name, in order.
    """

    image_size: int
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: str = "shorter"
    #: Training augmentation: RandomResizedCrop's smallest area fraction (largest 1).
    #: clbench's light 0.6; PILOT's and SEMA-CL's reference pipelines use 0.05.
    train_crop_scale: float = 0.6
    source: str = ""
    overrides: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        validate(self)

    @property
    def resize_size(self) -> int:
        """The size images are resized to before the centre crop (timm's rule)."""
        return int(math.floor(self.image_size / self.crop_pct))

    @property
    def normalization(self) -> str:
        """The name of the mean/std pair, or ``"custom"``."""
        for name, (mean, std) in NORMALIZATIONS.items():
            if _close(mean, self.mean) and _close(std, self.std):
                return name
        return "custom"

    @property
    def transform_id(self) -> str:
        """Everything that decides the test-time pixels (part of the feature-cache key)."""
        norm = self.normalization
        if norm == "custom":
            norm = (
                "m"
                + ",".join(f"{v:g}" for v in self.mean)
                + "s"
                + ",".join(f"{v:g}" for v in self.std)
            )
        squash = "-squash" if self.resize == "squash" else ""
        return f"eval-{self.image_size}-crop{self.crop_pct:g}{squash}-{self.interpolation}-{norm}"

    def to_dict(self) -> dict[str, Any]:
        """The record stored in ``RunResult.config.backbone.preprocessing``."""
        return {
            "image_size": self.image_size,
            "resize_size": self.resize_size,
            "crop_pct": self.crop_pct,
            "resize": self.resize,
            "interpolation": self.interpolation,
            "train_crop_scale": self.train_crop_scale,
            "normalization": self.normalization,
            "mean": list(self.mean),
            "std": list(self.std),
            "source": self.source,
            "overrides": list(self.overrides),
        }

    def override(self, **changes: Any) -> Preprocessing:
        """A copy with the named parts changed (``None`` values are ignored), validated.

        ``normalization`` takes a name of ``NORMALIZATIONS``, ``"pretrained"``
        (no change), or explicit ``"m1,m2,m3/s1,s2,s3"``.
        """
        unknown = sorted(set(changes) - set(OVERRIDES))
        if unknown:
            raise ConfigError(
                f"unknown preprocessing option(s) {unknown}", f"use one of {list(OVERRIDES)}"
            )
        fields: dict[str, Any] = {}
        named = list(self.overrides)
        for name, value in changes.items():
            if value is None or (name == "normalization" and value == "pretrained"):
                continue
            if name == "normalization":
                mean, std = parse_normalization(value)
                if _close(mean, self.mean) and _close(std, self.std):
                    continue
                fields["mean"], fields["std"] = mean, std
            else:
                if name == "image_size":
                    value = _integer(value, "image size")
                elif name == "crop_pct":
                    value = _number(value, "crop fraction")
                elif name == "train_crop_scale":
                    value = _number(value, "training crop scale")
                if value == getattr(self, name):
                    continue  # asking for what the weights already use changes nothing
                fields[name] = value
            if name not in named:
                named.append(name)
        if not fields:
            return self
        return dataclasses.replace(self, **fields, overrides=tuple(named))

    def transform(self, train: bool = False):
        """PIL image -> normalised tensor; ``train`` adds the usual light augmentation."""
        from torchvision import transforms as T

        mode = getattr(T.InterpolationMode, self.interpolation.upper())
        normalize = [T.ToTensor(), T.Normalize(self.mean, self.std)]
        size = self.image_size
        if train:
            augment = T.Compose(
                [
                    T.RandomResizedCrop(
                        size, scale=(self.train_crop_scale, 1.0), interpolation=mode
                    ),
                    T.RandomHorizontalFlip(),
                    *normalize,
                ]
            )
            augment.decode_size = size  # what a loader may reduce large images to (3x margin)
            return augment
        scale = self.resize_size
        resize = T.Resize((scale, scale) if self.resize == "squash" else scale, interpolation=mode)
        evaluate = T.Compose([resize, T.CenterCrop(size), *normalize])
        evaluate.decode_size = scale
        return evaluate


def parse_normalization(value: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A named normalisation or ``"m1,m2,m3/s1,s2,s3"`` -> (mean, std)."""
    if isinstance(value, str) and value in NORMALIZATIONS:
        return NORMALIZATIONS[value]
    hint = (
        f"use one of {['pretrained', *NORMALIZATIONS]} or MEAN/STD such as 0.5,0.5,0.5/0.5,0.5,0.5"
    )
    if not isinstance(value, str) or value.count("/") != 1:
        raise ConfigError(f"unknown normalization {value!r}", hint)
    try:
        mean, std = (tuple(float(v) for v in part.split(",")) for part in value.split("/"))
    except ValueError:
        raise ConfigError(f"normalization {value!r} is not numbers", hint) from None
    return mean, std


def validate(pre: Preprocessing) -> None:
    """One clear ConfigError for a value no transform can use."""
    if not isinstance(pre.image_size, int) or pre.image_size < 1:
        raise ConfigError(
            f"image size must be a positive integer, not {pre.image_size!r}",
            "use e.g. --image-size 224",
        )
    if not 0.0 < pre.crop_pct <= 1.0:
        raise ConfigError(
            f"crop fraction must be in (0, 1], not {pre.crop_pct!r}",
            "use e.g. --crop-pct 0.875 (resize to size/0.875, centre-crop size) or 1.0 (no crop)",
        )
    if not 0.0 < pre.train_crop_scale <= 1.0:
        raise ConfigError(
            f"training crop scale must be in (0, 1], not {pre.train_crop_scale!r}",
            "use e.g. train_crop_scale=0.6 (random crops of 60-100% of the image area)",
        )
    if pre.resize not in RESIZE_MODES:
        raise ConfigError(
            f"unknown resize mode {pre.resize!r}",
            f"use one of {list(RESIZE_MODES)} (shorter side, or both sides ignoring aspect)",
        )
    if pre.interpolation not in INTERPOLATIONS:
        raise ConfigError(
            f"unknown interpolation {pre.interpolation!r}", f"use one of {list(INTERPOLATIONS)}"
        )
    if len(pre.mean) != 3 or len(pre.std) != 3:
        raise ConfigError(
            f"normalization needs 3 means and 3 stds, got {len(pre.mean)} and {len(pre.std)}",
            "write MEAN/STD as r,g,b/r,g,b, e.g. 0.5,0.5,0.5/0.5,0.5,0.5",
        )
    if any(not math.isfinite(v) for v in pre.mean) or any(
        not (math.isfinite(v) and v > 0) for v in pre.std
    ):
        raise ConfigError(
            f"normalization mean {pre.mean} / std {pre.std} must be finite with std > 0",
            "write e.g. --normalization 0.5,0.5,0.5/0.5,0.5,0.5",
        )


def from_timm_config(cfg: dict[str, Any], image_size: int | None, source: str) -> Preprocessing:
    """The preprocessing of a timm ``pretrained_cfg``; ``image_size`` keeps its crop fraction."""
    crop_mode = cfg.get("crop_mode", "center")
    pre = Preprocessing(
        image_size=int(cfg.get("input_size", (3, 224, 224))[-1]),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        interpolation=cfg.get("interpolation", "bicubic"),
        mean=cfg.get("mean", IMAGENET_MEAN),
        std=cfg.get("std", IMAGENET_STD),
        # timm's "border" mode has no counterpart; its centre crop is "shorter".
        resize="squash" if crop_mode == "squash" else "shorter",
        source=source,
    )
    return pre.override(image_size=image_size)


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))


def _number(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, not {value!r}", "e.g. 0.875") from None


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{what} must be an integer, not {value!r}", "e.g. 224")
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{what} must be an integer, not {value!r}", "e.g. 224") from None
