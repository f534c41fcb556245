"""Embedding a folder of large images: the floor, clbench cold and warm, the old path.

    .venv/bin/python benchmarks/large_images.py                 # 160 images, sizes up to 4,000 px
    .venv/bin/python benchmarks/large_images.py --images 400 --splits

Builds an ImageFolder of upscaled emoji (Lite0's offline emoji, Google's set),
PNG and JPEG, shorter sides from 300 to 4,000 px, once under --root, then prints
side by side, for the default backbone at the emoji protocol size:

- floor: one forward pass over the same images already decoded and transformed
  (tensors in memory): what no loader can beat;
- old: decoding in the main process at full resolution (clbench before issue 20);
- cold: clbench's path (``embed_samples``: decode workers, reduction at decode);
- warm: ``clbench run --scenario folder`` as a new process with every feature cached
  (the backbone is not built, only described: clbench.backbones.descriptor), beside
  ``python -c "import torch"`` as a new process, the part of it left to torch;
- with --splits, cold under each (decode workers x forward threads) split.

Each line gives wall seconds, CPU seconds of this process and its children, the
ratio to the floor, and the peak RSS (this process and, separately, workers).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from clbench.backbones import build_backbone
from clbench.data import FileLoader, Samples
from clbench.features import embed_samples
from clbench.scenarios.emoji import read_emoji

SIDES = (300, 800, 1500, 2500, 4000)


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def build_folder(root: Path, images: int) -> list[tuple[str, int]]:
    """Upscaled emoji, sizes cycling through SIDES, odd ones JPEG; kept between runs."""
    data = read_emoji("google")
    samples = data.train
    items = []
    for i in range(images):
        label = int(samples.labels[i % len(samples)])
        side = SIDES[i % len(SIDES)]
        ext = "jpg" if i % 2 else "png"
        key = f"c{label:03d}/img{i:05d}.{ext}"
        path = root / key
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            img = samples.loader(samples.keys[i % len(samples)]).resize(
                (side, int(side * (1.0 + 0.25 * (i % 3)))), Image.BICUBIC
            )
            img.save(path, quality=92) if ext == "jpg" else img.save(path)
        items.append((key, label))
    return items


class _FullDecode(FileLoader):
    """The old loader: every image decoded at full resolution."""

    reduces_at_decode = False


def timed(label: str, floor: float | None, fn) -> tuple[float, float]:
    """Print and return (wall s, CPU s) of ``fn()``."""
    cpu, start = cpu_seconds(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    ratio = "" if floor is None else f"{wall / floor:5.2f}x floor"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"| {label} | {wall:7.2f} | {cpu:7.2f} | {ratio} | {rss:.0f} | {kids:.0f} |",
        flush=True,
    )
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "clbench-large")
    parser.add_argument("--splits", action="store_true", help="also time workers x threads splits")
    args = parser.parse_args()
    items = build_folder(args.root, args.images)
    keys, labels = [k for k, _ in items], [label for _, label in items]
    sizes = [os.path.getsize(args.root / k) for k in keys]
    print(
        f"# {len(keys)} images, {sum(sizes) / 2**20:.0f} MB on disk, shorter sides "
        f"{min(SIDES)}-{max(SIDES)} px; {os.cpu_count()} cores, torch {torch.get_num_threads()} "
        f"threads\n"
    )
    backbone = build_backbone("efficientnet-lite0", image_size=args.image_size).eval()
    transform = backbone.transform(train=False)
    samples = Samples("large", keys, labels, FileLoader(args.root))
    old = Samples("large", keys, labels, _FullDecode(args.root))
    device = torch.device("cpu")
    decoded = torch.stack([transform(samples.loader(k)) for k in keys])
    print("| path | wall s | CPU s | vs floor | peak RSS MB (main) | peak RSS MB (workers) |")
    print("|---|---:|---:|---:|---:|---:|")

    def floor_pass():
        with torch.inference_mode():
            for start in range(0, len(decoded), 64):
                backbone(decoded[start : start + 64].contiguous(memory_format=torch.channels_last))

    floor_pass()  # warm-up: first calls allocate
    floor, floor_cpu = timed("floor (pre-decoded tensors)", None, floor_pass)
    # What decoding alone costs: when it exceeds the forward's CPU, no overlap reaches the
    # floor, and (decode CPU + forward CPU) / cores is the bound a loader can approach.
    _, decode_cpu = timed(
        "decode + transform only (reduced at decode, main process)",
        floor,
        lambda: [transform(samples.loader(k)) for k in keys],
    )
    cores = os.cpu_count() or 1
    bound = max(floor, (decode_cpu + floor_cpu) / cores)
    print(
        f"| bound on {cores} cores: max(floor, (decode + forward CPU) / cores) | {bound:7.2f} "
        f"| | {bound / floor:5.2f}x floor | | |"
    )
    os.environ["CLBENCH_DECODE_WORKERS"] = "0"
    timed(
        "old: main-process decode, full resolution",
        floor,
        lambda: embed_samples(backbone, old, transform, device),
    )
    del os.environ["CLBENCH_DECODE_WORKERS"]
    timed(
        "clbench cold (default split)",
        floor,
        lambda: embed_samples(backbone, samples, transform, device),
    )
    if args.splits:
        for workers in range(0, cores + 1):
            os.environ["CLBENCH_DECODE_WORKERS"] = str(workers)
            timed(
                f"cold, {workers} workers x {max(1, cores - workers) if workers else torch.get_num_threads()} threads",
                floor,
                lambda: embed_samples(backbone, samples, transform, device),
            )
        del os.environ["CLBENCH_DECODE_WORKERS"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "CLBENCH_FEATURES": f"{tmp}/features",
            "CLBENCH_RESULTS": f"{tmp}/runs",
        }
        command = [
            str(Path(sys.executable).with_name("clbench")), "run", "--scenario", "folder",
            "--set", f"scenario.root={args.root}", "--set", f"scenario.image_size={args.image_size}",
        ]  # fmt: skip
        subprocess.run(command, env=env, check=True, capture_output=True)  # fills the cache
        timed(
            "clbench warm (`clbench run`, a new process)",
            floor,
            lambda: subprocess.run(command, env=env, check=True, capture_output=True),
        )
        timed(
            "`python -c 'import torch'` (a new process)",
            floor,
            lambda: subprocess.run([sys.executable, "-c", "import torch"], check=True),
        )


if __name__ == "__main__":
    main()
