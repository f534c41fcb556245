"""Decoding for the feature path: large images reduced while decoding, worker processes
that give the same features as the main process, and the thread split around them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clbench.backbones.preprocessing import Preprocessing
from clbench.data import REDUCE_GAP, FileLoader, Samples, reduce_at_decode
from clbench.errors import ConfigError
from clbench.features import decode_workers, embed_samples


def picture(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A smooth gradient with some structure (so a wrong resample shows)."""
    x = np.linspace(0, 1, width)[None, :]
    y = np.linspace(0, 1, height)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, (x * y) ** 0.5], axis=-1)
    img = Image.fromarray((rgb * 255).astype(np.uint8), "RGB")
    return img.convert(mode) if mode != "RGB" else img


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_large_images_are_reduced_to_at_least_the_gap_times_the_target(tmp_path, ext):
    picture(2400, 1800).save(tmp_path / f"big.{ext}")
    loader = FileLoader(tmp_path)
    full = loader(f"big.{ext}")
    reduced = loader(f"big.{ext}", min_side=128)
    assert full.size == (2400, 1800)
    assert min(reduced.size) >= REDUCE_GAP * 128
    assert min(reduced.size) < 2 * REDUCE_GAP * 128 * 2  # reduced by a real factor
    assert reduced.mode == "RGB"
    t = Preprocessing(112, 0.875).transform()
    # What the network sees: the same pixels to well under one grey level on average.
    diff = (t(full) - t(reduced)).abs().mean().item()
    assert diff < 0.01, diff


def test_small_images_and_no_target_are_left_alone(tmp_path):
    picture(300, 200).save(tmp_path / "small.png")
    loader = FileLoader(tmp_path)
    assert loader("small.png", min_side=128).size == (300, 200)
    picture(3000, 3000).save(tmp_path / "big.png")
    assert loader("big.png").size == (3000, 3000)


def test_transparency_is_composited_before_the_reduction(tmp_path):
    rgba = Image.new("RGBA", (2000, 2000), (255, 0, 0, 0))  # fully transparent red
    rgba.save(tmp_path / "clear.png")
    out = reduce_at_decode(Image.open(tmp_path / "clear.png"), 100)
    assert min(out.size) >= REDUCE_GAP * 100
    assert np.asarray(out).min() == 255  # white, not black or red


def test_the_transform_says_what_to_decode_to():
    pre = Preprocessing(112, 0.875)
    assert pre.transform(train=False).decode_size == pre.resize_size == 128
    assert pre.transform(train=True).decode_size == 112


class _MeanColour(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))


def folder(tmp_path, n=40):
    keys = []
    for i in range(n):
        side = 200 + 300 * (i % 4)
        picture(side, side + 40 * (i % 3)).save(tmp_path / f"{i}.{'jpg' if i % 2 else 'png'}")
        keys.append(f"{i}.{'jpg' if i % 2 else 'png'}")
    return Samples("decode-test", keys, np.zeros(n, dtype=int), FileLoader(tmp_path))


def test_worker_processes_give_the_main_process_features(tmp_path, monkeypatch):
    samples = folder(tmp_path)
    transform = Preprocessing(32, 0.875).transform()
    model = _MeanColour()
    threads = torch.get_num_threads()
    monkeypatch.setenv("CLBENCH_DECODE_WORKERS", "0")
    inline = embed_samples(model, samples, transform, torch.device("cpu"), batch_size=8)
    monkeypatch.setenv("CLBENCH_DECODE_WORKERS", "2")
    pooled = embed_samples(model, samples, transform, torch.device("cpu"), batch_size=8)
    assert inline.shape == (40, 3)
    assert torch.equal(inline, pooled)
    assert torch.get_num_threads() == threads  # the split is undone afterwards


def test_worker_rule_and_a_bad_setting(tmp_path, monkeypatch):
    samples = folder(tmp_path, n=8)
    monkeypatch.delenv("CLBENCH_DECODE_WORKERS", raising=False)
    assert decode_workers(samples, batch_size=64) == 0  # under two batches: inline
    assert decode_workers(samples, batch_size=2) >= 1
    arrays = Samples("a", ["a/0"], np.zeros(1, dtype=int), loader=lambda key: picture(8, 8))
    assert decode_workers(arrays, batch_size=1) == 0  # no files to decode
    monkeypatch.setenv("CLBENCH_DECODE_WORKERS", "many")
    with pytest.raises(ConfigError, match="CLBENCH_DECODE_WORKERS='many'"):
        decode_workers(samples, batch_size=2)
