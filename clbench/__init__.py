"""clbench: continual-learning benchmarks for pre-trained models."""

from clbench._compat import ensure_torchvision_importable

# Before anything imports torchvision (timm, open_clip and avalanche all do).
ensure_torchvision_importable()

__version__ = "0.1.0"
