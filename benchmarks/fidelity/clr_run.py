"""CLR: the authors' reprogramming layer and training loop vs clbench's ``clr``, task-incremental.

    .venv/bin/python benchmarks/fidelity/clr_run.py --ref /work/refs/Channel-wise-Lightweight-Reprogramming

The reference (``gyhandy/Channel-wise-Lightweight-Reprogramming``, fetched, never
committed) is imported and run unmodified from outside:

* its model class ``network.model.Res_Ghost`` (model_type ``reduced_v1``, the
  paper's CLR) builds each task's network: freeze, ``train_BN``, a new ``fc``,
  ``add_parameters`` of the BatchNorms, ``add_ghostnet`` (the ``ReGhos_Block``
  depthwise Dirac layers), ``add_parameters`` of those;
* its ``utils.train`` (cross-entropy + 1e-5 x the sum of each trainable
  tensor's norm, one ``scheduler.step()`` per epoch) and ``utils.eval``;
* its ``main.py`` schedule: Adam lr 1e-3, StepLR(epochs // 3, 0.1), batch 32,
  a fresh pretrained network per task. ``main.py`` keeps the epoch that is best on
  its test split; this harness keeps the last epoch on both sides (no selection
  on test).

What is adapted, from outside only: ``torchvision.models.resnet18`` (the
network ``Res_Ghost`` asks for, downloaded from the internet) is answered with
clbench's EfficientNet-Lite0 (``ResNetShaped``: the same network clbench's run
uses, with the ``fc`` the reference assigns, ``Linear(512, n)`` for ResNet-18's
width, built at the network's width instead); the data is the emoji ImageFolder
tree (``export.export_stream``) read through clbench's own Lite0 transforms on
both sides (the reference's ``Resize((224, 224))`` + ImageNet normalisation is
for its torchvision ResNet weights; Lite0's weights were trained on
(x - 0.5) / 0.5); a batch is ``(image, label, task)`` as its datasets give.

Also counted on the reference's own network (torchvision ResNet-18, random
weights: only shapes matter): the reference's trainable parameters per task vs
clbench's ``closed_form_parameters`` and its attached slots.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
from cpu_timing import cpu_seconds  # the sibling module (no clbench import at its top)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def import_reference(ref: Path):
    """The reference's ``network.model``, ``network.ReGhos_Block`` and ``utils`` modules."""
    import clbench.backbones  # noqa: F401  (makes torchvision importable on CPU torch first)

    sys.path.insert(0, str(ref))
    import network.model as ref_model
    import network.ReGhos_Block as ref_block
    import utils as ref_utils

    return ref_model, ref_block, ref_utils


def resnet_shaped(make_backbone):
    """A ``torchvision.models.resnet18`` stand-in: a clbench network whose ``fc`` runs on its embedding."""
    from torch import nn

    class ResNetShaped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = make_backbone()
            self.fc = nn.Identity()

        def __setattr__(self, name, value):
            if name == "fc" and isinstance(value, nn.Linear):
                width = self.body.feature_dim
                if value.in_features != width:  # Res_Ghost's Linear(512, n) is ResNet-18's width
                    value = nn.Linear(width, value.out_features)
            super().__setattr__(name, value)

        def forward(self, x):
            return self.fc(self.body.embed(x))

    def factory(*args, **kwargs):
        return ResNetShaped()

    return factory


class TaskImages:
    """One task's images as the reference's datasets give them: (image, local label, task id)."""

    def __init__(self, root: Path, part: str, classes: list[str], task: int, transform) -> None:
        self.items = [
            (path, local)
            for local, name in enumerate(classes)
            for path in sorted((root / part / name).glob("*.png"))
        ]
        self.task, self.transform = task, transform
        self.num_classes = len(classes)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        from PIL import Image

        path, label = self.items[i]
        with Image.open(path) as img:
            return self.transform(img.convert("RGB")), label, self.task


def reference_parameters(model, ref_block) -> dict[str, int]:
    """Trainable tensors the reference optimises, by kind (its ``reg_params`` minus frozen ones)."""
    from torch import nn

    seen, counts = set(), {"reprogram": 0, "batchnorm": 0, "head": 0}
    kinds = [("reprogram", ref_block.ReGhos_Block), ("batchnorm", nn.modules.batchnorm._BatchNorm)]
    for module in model.modules():
        for kind, cls in kinds:
            if isinstance(module, cls):
                for p in module.parameters():
                    if p.requires_grad and id(p) not in seen:
                        seen.add(id(p))
                        counts[kind] += p.numel()
    head = model.model.fc
    counts["head"] = sum(p.numel() for p in head.parameters())
    listed = sum(p.numel() for p in model.reg_params + model.noreg_params if p.requires_grad)
    if listed != sum(counts.values()):
        raise RuntimeError(f"reference reg_params hold {listed}, counted {counts}")
    return counts


def run_reference(a: argparse.Namespace, data: Path, tasks: list[list[str]], seed: int) -> dict:
    import torch
    from torch import optim
    from torch.utils.data import DataLoader

    from clbench.backbones import build_backbone

    ref_model, ref_block, ref_utils = import_reference(a.ref)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    template = build_backbone("efficientnet-lite0", image_size=a.image_size)
    ref_model.models.resnet18 = resnet_shaped(template.fresh_copy)
    device = torch.device("cpu")
    lamda, gamma, step_size = 1e-5, 0.1, a.epochs // 3  # main.py: lamda, gamma, epochs // 3
    train_tf, test_tf = template.transform(train=True), template.transform(train=False)
    models, tests, steps, seconds, params, logs = [], [], 0, 0.0, [], []
    step_cpu = 0.0
    began, cpu = time.perf_counter(), cpu_seconds()
    for t, classes in enumerate(tasks):
        train_set = TaskImages(data, "train", classes, t, train_tf)
        tests.append(DataLoader(TaskImages(data, "test", classes, t, test_tf), batch_size=64))
        loader = DataLoader(train_set, batch_size=a.batch_size, shuffle=True)
        model = ref_model.Res_Ghost(len(classes), model_type="reduced_v1").to(device)
        params.append(reference_parameters(model, ref_block))
        optimizer = optim.Adam(model.reg_params + model.noreg_params, lr=1e-3)
        scheduler = optim.lr_scheduler.StepLR(optimizer, step_size, gamma)
        for epoch in range(1, a.epochs + 1):
            model.train()
            lr = optimizer.param_groups[0]["lr"]
            start, start_cpu = time.perf_counter(), time.process_time()
            loss, acc = ref_utils.train(
                device, loader, model, optimizer, scheduler=scheduler, reg="l2", lamda=lamda
            )
            seconds += time.perf_counter() - start
            step_cpu += time.process_time() - start_cpu
            steps += len(loader)
            logs.append({"task": t, "epoch": epoch, "lr": lr, "loss": loss, "train_acc": acc})
        model.eval()
        models.append(model)
    matrix = []
    with torch.no_grad():
        for i in range(len(tasks)):  # the models never change after training: rows repeat
            matrix.append(
                [100 * float(ref_utils.eval(models[j], tests[j], device)) for j in range(i + 1)]
            )
    return {
        "seed": seed,
        "matrix": matrix,
        "parameters_per_task": params,
        "seconds_per_step": seconds / steps,
        "cpu_seconds_per_step": step_cpu / steps,
        "steps": steps,
        "train_log": logs,
        "wall_seconds": time.perf_counter() - began,
        "cpu_seconds": cpu_seconds() - cpu,
    }


def run_clbench(a: argparse.Namespace, data: Path, tasks: list[list[str]], seed: int) -> dict:
    from cpu_timing import fit_cpu_seconds
    from harness import timed_fit

    from clbench.options import parse_sets
    from clbench.runner import RunSpec, run

    spec = RunSpec(
        scenario="folder",
        method="clr",
        backbone="efficientnet-lite0",
        seed=seed,
        image_size=a.image_size,
        method_options=parse_sets([f"train.epochs={a.epochs}", f"train.batch_size={a.batch_size}"])[
            0
        ],
        scenario_options={
            "root": str(data),
            "init_cls": a.increment,
            "increment": a.increment,
            "shuffle": False,
            "task_incremental": True,
        },
        device="cpu",
    )
    began, cpu = time.perf_counter(), cpu_seconds()
    with timed_fit("clr") as phases, fit_cpu_seconds("clr") as fit_cpu:
        result = run(spec)
    counts = np.array(result.test_counts, float)
    matrix = [
        [100 * result.correct_matrix[i][j] / counts[j] for j in range(i + 1)]
        for i in range(len(counts))
    ]
    steps = sum(p["steps"] for p in phases)
    return {
        "seed": seed,
        "matrix": matrix,
        "parameters_per_task": [
            {k: r[k] for k in ("reprogram", "batchnorm", "head")}
            for r in result.extra["parameters_per_task"]
        ],
        "train_log": [r["train_log"] for r in result.extra["parameters_per_task"]],
        "seconds_per_step": sum(p["seconds_per_step"] * p["steps"] for p in phases) / steps,
        "cpu_seconds_per_step": sum(fit_cpu) / steps,
        "steps": steps,
        "wall_seconds": time.perf_counter() - began,
        "cpu_seconds": cpu_seconds() - cpu,
        "run_id": result.run_id,
    }


def resnet18_counts(a: argparse.Namespace) -> dict:
    """Per-task trainable parameters on the reference's own network (ResNet-18), both sides."""
    import torch
    from torchvision.models import resnet18

    from clbench.methods.peft.reprogram import (
        add_task,
        attach_reprogramming,
        closed_form_parameters,
        slot_parameters,
    )

    ref_model, ref_block, _ = import_reference(a.ref)
    ref_model.models.resnet18 = lambda *args, **kwargs: resnet18(weights=None)
    ref = reference_parameters(ref_model.Res_Ghost(10, model_type="reduced_v1"), ref_block)
    net = resnet18(weights=None)
    net.fc = torch.nn.Identity()
    closed = closed_form_parameters(net)
    attach_reprogramming(net)
    add_task(net)
    return {
        "reference": ref,
        "clbench_closed_form": closed,
        "clbench_slots": slot_parameters(net, 0),
        "clbench_head": 512 * 10 + 10,
        "backbone": sum(p.numel() for p in resnet18(weights=None).parameters()),
    }


def summary(matrices: list[list[list[float]]]) -> dict:
    """Mean and std over seeds of Ā (mean of the rows' means), last row mean, and each final cell."""
    avg = [np.mean([np.mean(row) for row in m]) for m in matrices]
    last = [np.mean(m[-1]) for m in matrices]
    final = np.array([m[-1] for m in matrices])
    return {
        "avg": (float(np.mean(avg)), float(np.std(avg))),
        "last": (float(np.mean(last)), float(np.std(last))),
        "per_task_last_mean": final.mean(0).tolist(),
        "per_task_last_std": final.std(0).tolist(),
        "per_seed_last": last,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ref", type=Path, required=True, help="the fetched CLR checkout")
    p.add_argument("--classes", type=int, default=30, help="the first N emoji-cil classes")
    p.add_argument("--increment", type=int, default=6, help="classes per task")
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seeds", type=int, nargs="+", default=[1993, 1994, 1995])
    p.add_argument("--side", choices=["both", "reference", "clbench"], default="both")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default="", help="suffix of the result files (a fresh run)")
    p.add_argument("--work", type=Path, default=Path("/work/refs/fidelity-authors"))
    a = p.parse_args()
    if not (a.ref / "network" / "ReGhos_Block.py").is_file():
        sys.exit(f"{a.ref} is not a CLR checkout; see benchmarks/fidelity/README.md")
    import torch

    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    os.environ.setdefault("CLBENCH_RESULTS", str(a.work / "runs"))
    sys.path.insert(0, str(HERE))
    from export import export_stream

    from clbench.scenarios.emoji import read_emoji

    data = a.work / "data" / f"emoji-cil-first{a.classes}"
    export_stream(data, [(read_emoji("google", 6, False), list(range(a.classes)), None, None)])
    names = sorted(d.name for d in (data / "train").iterdir())
    tasks = [names[i : i + a.increment] for i in range(0, len(names), a.increment)]
    out = a.work / "results"
    out.mkdir(parents=True, exist_ok=True)
    tag = (
        f"clr-lite0-{a.image_size}px-first{a.classes}-inc{a.increment}-e{a.epochs}-b{a.batch_size}"
    )
    if a.tag:
        tag += f"-{a.tag}"
    report: dict = {"tag": tag, "tasks": tasks, "resnet18": resnet18_counts(a)}
    for side, runner in (("reference", run_reference), ("clbench", run_clbench)):
        if a.side not in ("both", side):
            continue
        runs = []
        for seed in a.seeds:
            path = out / f"{tag}-{side}-s{seed}.json"
            if path.exists():
                found = json.loads(path.read_text())
            else:
                found = runner(a, data, tasks, seed)
                path.write_text(json.dumps(found, indent=1))
            runs.append(found)
            print(
                f"{side} seed {seed}: last row {np.round(found['matrix'][-1], 2).tolist()}  "
                f"{found['seconds_per_step']:.3f} s/step over {found['steps']} steps, "
                f"CPU {found['cpu_seconds']:.0f} s"
            )
        report[side] = {"runs": runs, **summary([r["matrix"] for r in runs])}
    (out / f"compare-{tag}.json").write_text(json.dumps(report, indent=1))
    print_report(report)
    return 0


def print_report(r: dict) -> None:
    print(f"\n{r['tag']}")
    for side in ("reference", "clbench"):
        if side not in r:
            continue
        s = r[side]
        print(
            f"{side:>9}: A-bar {s['avg'][0]:.2f} +- {s['avg'][1]:.2f}, last {s['last'][0]:.2f} +- "
            f"{s['last'][1]:.2f}; per task {np.round(s['per_task_last_mean'], 2).tolist()} "
            f"(std {np.round(s['per_task_last_std'], 2).tolist()}); "
            f"{np.mean([x['seconds_per_step'] for x in s['runs']]):.3f} s/step"
        )
        print(f"           parameters per task: {s['runs'][0]['parameters_per_task']}")
    print(f"ResNet-18 per task: {r['resnet18']}")


if __name__ == "__main__":
    raise SystemExit(main())
