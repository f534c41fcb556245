"""The feature cache shared by several processes at once (sweep workers): each
image embedded once, every process served the same features, no torn file."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np
import torch

from clbench.features import FeatureCache
from tests.helpers import array_data
from tests.test_features import CountingEncoder, to_tensor

PROCESSES = 3


def _embed(root: str, start, results) -> None:
    data = array_data(6, 10, 2)
    encoder = CountingEncoder()
    cache = FeatureCache(Path(root))
    start.wait()  # every process asks for the same images at the same moment
    features = cache.get(encoder, "enc", data.train, to_tensor, torch.device("cpu"), batch_size=4)
    results.put((cache.stats.extracted, encoder.seen, features.numpy().tobytes()))


def test_concurrent_processes_embed_each_image_once(tmp_path):
    ctx = mp.get_context("spawn")
    start, results = ctx.Barrier(PROCESSES), ctx.Queue()
    workers = [
        ctx.Process(target=_embed, args=(str(tmp_path), start, results)) for _ in range(PROCESSES)
    ]
    for process in workers:
        process.start()
    answers = [results.get(timeout=180) for _ in workers]
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    images = len(array_data(6, 10, 2).train)
    assert sum(extracted for extracted, _, _ in answers) == images  # one process embedded them
    assert sum(seen for _, seen, _ in answers) == images
    assert len({blob for _, _, blob in answers}) == 1  # and everyone got the same features
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    shards = sorted(folder.glob("*.keys.json"))
    assert len(shards) == 1
    matrix = folder / shards[0].name.replace(".keys.json", ".npy")
    assert np.load(matrix).shape[0] == images
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    # A later process reads everything from disk.
    fresh = FeatureCache(tmp_path)
    encoder = CountingEncoder()
    fresh.get(encoder, "enc", array_data(6, 10, 2).train, to_tensor, torch.device("cpu"))
    assert encoder.seen == 0 and fresh.stats.hits == images
