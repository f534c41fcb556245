"""The shared training loop: schedules, logs, eval-mode modules, seeded image batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from clbench._compat import ensure_torchvision_importable
from clbench.data import Samples
from clbench.errors import ConfigError
from clbench.training import (
    TrainConfig,
    classification_step,
    fit,
    image_batches,
    make_optimizer,
    make_schedule,
    tensor_batches,
)


def toy_problem(n: int = 64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] > 0).long()
    return x, y


def train_once(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Linear(5, 2)
    x, y = toy_problem()
    log = fit(
        model.parameters(),
        tensor_batches(x, y, batch_size=16, seed=seed),
        classification_step(model, torch.device("cpu")),
        TrainConfig(epochs=5, lr=0.5, grad_clip=1.0),
        torch.device("cpu"),
        modules=[model],
    )
    return model, log


def test_fit_learns_logs_and_repeats_bit_for_bit():
    model, log = train_once()
    assert [e.epoch for e in log.epochs] == list(range(5))
    assert log.epochs[-1].loss < log.epochs[0].loss and log.epochs[-1].accuracy > 0.9
    assert log.to_dict()[0].keys() == {"epoch", "loss", "accuracy", "lr"}
    again, log2 = train_once()
    assert torch.equal(model.weight, again.weight) and log.to_dict() == log2.to_dict()


def test_a_step_without_logits_logs_no_accuracy():
    """Language-model steps return only a loss: their log must not claim 0% accuracy."""
    model = nn.Linear(5, 2)
    x, y = toy_problem(32)

    def loss_only(batch):
        inputs, targets = batch
        return nn.functional.cross_entropy(model(inputs), targets), None, None

    log = fit(
        model.parameters(),
        tensor_batches(x, y, batch_size=16, seed=0),
        loss_only,
        TrainConfig(epochs=2, lr=0.1),
        torch.device("cpu"),
    )
    assert [e.accuracy for e in log.epochs] == [None, None]
    assert all(e.loss > 0 for e in log.epochs)


def test_log_reports_the_configured_rate_when_the_first_group_is_scaled():
    # SLCA lists its backbone first at 1/100 of the rate: the log must show the head's rate.
    body, head = nn.Linear(5, 5), nn.Linear(5, 2)
    x, y = toy_problem(32)
    log = fit(
        [
            {"params": list(body.parameters()), "lr_scale": 0.01},
            {"params": list(head.parameters())},
        ],
        tensor_batches(x, y, batch_size=16, seed=0),
        classification_step(nn.Sequential(body, head), torch.device("cpu")),
        TrainConfig(epochs=2, lr=0.1, schedule="cosine"),
        torch.device("cpu"),
    )
    unscaled = fit(
        head.parameters(),
        tensor_batches(x, y, batch_size=16, seed=0),
        classification_step(head, torch.device("cpu")),
        TrainConfig(epochs=2, lr=0.1, schedule="cosine"),
        torch.device("cpu"),
    )
    assert [e.lr for e in log.epochs] == pytest.approx([e.lr for e in unscaled.epochs])
    assert log.epochs[0].lr > 0.01  # not the body's 0.001-scale rate


def rates(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    p = [nn.Parameter(torch.zeros(1))]
    opt = make_optimizer(p, cfg)
    sched = make_schedule(opt, cfg, steps_per_epoch=steps_per_epoch)
    out = []
    for _ in range(cfg.epochs * steps_per_epoch):
        out.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    return out


def test_schedules():
    p = [nn.Parameter(torch.zeros(1))]
    cfg = TrainConfig(epochs=4, lr=1.0, schedule="multistep", milestones=(1, 3), gamma=0.5)
    assert rates(cfg, steps_per_epoch=2) == [1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]
    with pytest.raises(ConfigError, match="nothing to train"):
        make_optimizer([nn.Parameter(torch.zeros(1), requires_grad=False)], cfg)
    with pytest.raises(ConfigError, match="optimizer"):
        make_optimizer(p, TrainConfig(optimizer="lbfgs"))


def test_quarter_cosine_is_coda_prompts_per_epoch_schedule():
    lrs = rates(TrainConfig(epochs=4, lr=2.0, schedule="quarter-cosine"), steps_per_epoch=3)
    # CODA-Prompt's CosineSchedule: constant within an epoch, epoch e at cos(99 pi e / (200 (E-1))).
    expected = [2.0 * math.cos(99 * math.pi * e / 600) for e in range(4) for _ in range(3)]
    assert lrs == pytest.approx(expected)
    assert lrs[-1] == pytest.approx(2.0 * 0.015707, rel=1e-3)  # not 0: the last epoch still trains
    # It is not the per-step half cosine that "cosine" is.
    assert rates(TrainConfig(epochs=4, lr=2.0, schedule="cosine"), 3)[1] != pytest.approx(lrs[1])
    # The rate logged at the last epoch's end is that epoch's, not a negative cosine beyond it.
    p = [nn.Parameter(torch.zeros(1))]
    cfg = TrainConfig(epochs=4, lr=2.0, schedule="quarter-cosine")
    opt = make_optimizer(p, cfg)
    sched = make_schedule(opt, cfg, steps_per_epoch=3)
    for _ in range(12):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(lrs[-1])
    # One epoch: CODA's formula divides by zero; the one epoch runs at the full rate.
    assert rates(TrainConfig(epochs=1, lr=2.0, schedule="quarter-cosine"), 3) == [2.0] * 3


@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(epochs=4, lr=1.0, schedule="multistep", milestones=(1, 3), gamma=0.5),
        TrainConfig(epochs=4, lr=2.0, schedule="quarter-cosine"),
        TrainConfig(epochs=4, lr=2.0, schedule="cosine", warmup_epochs=1),
    ],
    ids=["multistep", "quarter-cosine", "cosine-warmup"],
)
def test_each_epoch_logs_the_rate_its_last_step_trained_at(cfg):
    # Per-epoch schedules change the rate between epochs: the log must not show the next one's.
    model = nn.Linear(5, 2)
    x, y = toy_problem(48)  # 3 batches of 16 per epoch
    log = fit(
        model.parameters(),
        tensor_batches(x, y, batch_size=16, seed=0),
        classification_step(model, torch.device("cpu")),
        cfg,
        torch.device("cpu"),
    )
    used = rates(cfg, steps_per_epoch=3)
    assert [e.lr for e in log.epochs] == pytest.approx([used[3 * e + 2] for e in range(4)])


def test_quarter_cosine_starts_after_the_warmup():
    cfg = TrainConfig(epochs=3, lr=1.0, schedule="quarter-cosine", warmup_epochs=1)
    lrs = rates(cfg, steps_per_epoch=2)
    assert lrs[:2] == pytest.approx([0.5, 1.0])  # linear warm-up over the first epoch
    # The two epochs after it are the quarter cosine of a 2-epoch run: 1, then cos(99 pi / 200).
    last = math.cos(99 * math.pi / 200)
    assert lrs[2:] == pytest.approx([1.0, 1.0, last, last])


def test_eval_modules_stay_in_eval_mode():
    bn = nn.BatchNorm1d(5)
    model = nn.Sequential(bn, nn.Linear(5, 2)).eval()
    x, y = toy_problem()
    fit(
        model.parameters(),
        tensor_batches(x, y, batch_size=16, seed=0),
        classification_step(model, torch.device("cpu")),
        TrainConfig(epochs=1),
        torch.device("cpu"),
        modules=[model],
        eval_modules=[bn],
    )
    assert torch.equal(bn.running_mean, torch.zeros(5))  # statistics did not move
    assert not model.training and not bn.training  # modes restored


def test_image_batches_are_seeded():
    images = np.random.RandomState(0).randint(0, 255, (10, 8, 8, 3), dtype=np.uint8)

    def loader(key: str) -> Image.Image:
        return Image.fromarray(images[int(key)])

    samples = Samples("toy", [str(i) for i in range(10)], list(range(10)), loader)
    ensure_torchvision_importable()
    from torchvision import transforms as T

    def order(seed):
        return torch.cat([y for _, y in image_batches(samples, T.ToTensor(), 4, seed)]).tolist()

    assert order(3) == order(3) and sorted(order(3)) == list(range(10)) and order(3) != order(4)
    x, _ = next(iter(image_batches(samples, T.ToTensor(), 4, 0, shuffle=False)))
    assert x.shape == (4, 3, 8, 8)
