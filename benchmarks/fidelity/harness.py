"""A reference implementation and clbench on the identical configuration, side by side.

    .venv/bin/python benchmarks/fidelity/harness.py pilot --ref /work/refs/LAMDA-PILOT \\
        --method simplecil --backbone efficientnet-lite0 --init-cls 9 --increment 9

exports clbench's emoji-cil split as an ImageFolder tree and the backbone's
network (export.py), runs the reference unmodified in its own environment
(pilot_run.py, under ``nice -n 10``), then runs clbench's folder scenario on the
same tree with the reference's data pipeline pinned (PILOT: resize 256
bicubic, centre-crop 224, no normalisation), and prints both sides: per-step
accuracy, Ā, last, forgetting, and the CPU seconds of each. See README.md in
this folder for fetching the references (nothing fetched is committed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from cpu_timing import cpu_seconds  # the sibling module

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
#: PILOT's test pipeline (utils/data.py build_transform): Resize(256, bicubic), CenterCrop(224),
#: ToTensor, no Normalize.
PILOT_PIPELINE = {
    "image_size": 224,
    "crop_pct": 224 / 256,
    "normalization": "none",
    "interpolation": "bicubic",
    "resize_mode": "shorter",
}


def pilot_pipeline(image_size: int) -> dict:
    """PILOT's rule at another size: resize int(256/224 * size), crop size."""
    if image_size == 224:
        return PILOT_PIPELINE
    return {
        **PILOT_PIPELINE,
        "image_size": image_size,
        "crop_pct": image_size / int(256 / 224 * image_size),
    }


#: clbench method -> PILOT config file.
PILOT_CONFIGS = {
    "simplecil": "exps/simplecil.json",
    # clbench's default peft=adapter; --ref-config exps/aper_finetune_inr.json for peft=full.
    "aper": "exps/aper_aperpter_inr.json",
    "mos": "exps/mos_inr.json",
    "ease": "exps/ease_inr.json",
    "ranpac": "exps/ranpac.json",
    "slca": "exps/slca_inr.json",
    "l2p": "exps/l2p_inr.json",
    "dualprompt": "exps/dualprompt_inr.json",
    "coda_prompt": "exps/coda_prompt_inr.json",
}
#: PILOT learners that build their own adapter ViT (``backbone/vit_adapter.py``,
#: ``vit_mos.py``, ``vit_ease.py``): they get the clbench ViT's weights in that layout (``--adapter-vit``).
ADAPTER_VIT_LEARNERS = ("aper_adapter", "mos", "ease")
#: PILOT learners whose ViT is a timm-registered prompt ViT (``backbone/vit_l2p.py``,
#: ``vit_dualprompt.py``, ``vit_coda_promtpt.py``): they get the clbench ViT's own timm state
#: dict (``--prompt-vit``); CODA's blocks have no layer scale, so its copy has it folded.
PROMPT_VIT_LEARNERS = ("l2p", "dualprompt", "coda_prompt")


def reference_learner(ref: Path, config: str) -> str:
    """The ``model_name`` of a PILOT config file (which learner it runs)."""
    return json.loads((ref / config).read_text())["model_name"]


def adapter_vit_args(learner: str, vit: dict | None) -> list[str]:
    """pilot_run.py's arguments for a learner that needs the ViT in PILOT's adapter layout."""
    if learner not in ADAPTER_VIT_LEARNERS:
        return []
    if vit is None:
        raise SystemExit(f"PILOT's {learner} needs a ViT backbone (e.g. --backbone dinov2-vits14)")
    return ["--adapter-vit", vit["file"], "--vit", json.dumps(vit["vit"])]


def prompt_vit_args(learner: str, vit: dict | None) -> list[str]:
    """pilot_run.py's arguments for a learner that builds a timm prompt ViT (L2P, DualPrompt,
    CODA-Prompt)."""
    if learner not in PROMPT_VIT_LEARNERS:
        return []
    if vit is None:
        raise SystemExit(f"PILOT's {learner} needs a ViT backbone (e.g. --backbone dinov2-vits14)")
    return ["--prompt-vit", vit["file"], "--vit", json.dumps(vit["vit"])]


def nice_increment() -> str:
    """What brings the reference to niceness 10 (the harness itself may already run niced)."""
    return str(max(0, 10 - os.nice(0)))


def pilot_metrics(records: list[dict]) -> dict:
    """Ā, last and forgetting exactly as PILOT's trainer prints them (its rounded values)."""
    curve = [r["cnn"]["top1"] for r in records]
    rows = [[v for k, v in r["cnn"]["grouped"].items() if "-" in k] for r in records]
    n = len(rows)
    table = np.zeros((n, n))
    for i, row in enumerate(rows):
        table[i, : len(row)] = row
    table = table.T  # PILOT's trainer: rows = groups, columns = steps
    forgetting = float(np.mean((table.max(axis=1) - table[:, -1])[:-1])) if n > 1 else 0.0
    return {
        "curve": curve,
        "avg": float(np.mean(curve)),
        "last": float(curve[-1]),
        "forgetting": forgetting,
    }


def clbench_metrics(result) -> dict:
    correct = np.array(
        [[np.nan if v is None else v for v in row] for row in result.correct_matrix], float
    )
    counts = np.array(result.test_counts, float)
    curve = [
        100 * np.nansum(correct[t, : t + 1]) / counts[: t + 1].sum() for t in range(len(counts))
    ]
    return {
        "curve": curve,
        "avg": 100 * result.metrics["avg_acc_sample"],
        "last": 100 * result.metrics["last_acc_sample"],
        "forgetting": 100 * result.metrics["forgetting_pilot"],
    }


def run_pilot(
    a: argparse.Namespace, data: Path, backbone: dict, out: Path, extra: list[str] = ()
) -> dict:
    cmd = [
        "nice",
        "-n",
        nice_increment(),
        str(a.ref_python),
        str(HERE / "pilot_run.py"),
        "--pilot",
        str(a.ref),
        "--clbench",
        str(REPO),
        "--data",
        str(data),
        "--backbone",
        backbone["file"],
        "--feature-dim",
        str(backbone["feature_dim"]),
        "--config",
        a.ref_config or PILOT_CONFIGS[a.method],
        "--init-cls",
        str(a.init_cls),
        "--increment",
        str(a.increment),
        "--seed",
        str(a.seed),
        "--image-size",
        str(a.image_size),
        "--workdir",
        str(a.work / "pilot-logs"),
        "--out",
        str(out),
        *[f"--set={s}" for s in a.ref_set],
        *(["--projection-seed", str(a.seed)] if a.method == "ranpac" else []),
        *extra,
        *(["--mos-merge-once"] if a.pilot_mos_merge_once else []),
    ]
    before = cpu_seconds(children=True)
    if not (out.exists() and a.reuse):
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
    found = json.loads(out.read_text())
    found["cpu_seconds_total"] = cpu_seconds(children=True) - before
    return found


def folder_spec(
    data: Path,
    method: str,
    backbone: str,
    seed: int,
    init_cls: int,
    increment: int,
    image_size: int,
    method_options: dict,
    shuffle: bool = True,
    train_crop_scale: float | None = None,
):
    """clbench's folder scenario on ``data`` with the reference's test pipeline pinned (and,
    with ``train_crop_scale``, its training crops' smallest area fraction); class order seed
    1993 as PILOT's."""
    from clbench.runner import RunSpec

    return RunSpec(
        scenario="folder",
        method=method,
        backbone=backbone,
        seed=seed,
        method_options=method_options,
        scenario_options={
            "root": str(data),
            "init_cls": init_cls,
            "increment": increment,
            "seed": 1993,
            "shuffle": shuffle,
            **pilot_pipeline(image_size),
            **({"train_crop_scale": train_crop_scale} if train_crop_scale else {}),
        },
        device="cpu",
    )


def run_clbench(a: argparse.Namespace, data: Path, shuffle: bool = True):
    """clbench's folder scenario on ``data`` with the reference's test pipeline pinned (and,
    with ``--train-crop-scale``, its training crops' smallest area fraction)."""
    import torch

    from clbench.options import parse_sets
    from clbench.runner import run

    torch.set_num_threads(a.threads)
    spec = folder_spec(
        data,
        a.method,
        a.backbone,
        a.seed,
        a.init_cls,
        a.increment,
        a.image_size,
        parse_sets(a.clbench_set)[0],
        shuffle=shuffle,
        train_crop_scale=a.train_crop_scale,
    )
    began, cpu = time.perf_counter(), cpu_seconds()
    with timed_fit(a.method) as phases:
        result = run(spec)
    result.extra["train_phases"] = phases
    return result, time.perf_counter() - began, cpu_seconds() - cpu


@contextlib.contextmanager
def timed_fit(method: str):
    """Time every ``clbench.training.fit`` call of the method (its module and the shared
    first-session adaptation), per optimiser step."""
    import importlib

    from clbench.registry import create_method

    # Every module of the method's class hierarchy (L2P's fit call is in methods/prompting.py).
    names = {c.__module__ for c in type(create_method(method)).__mro__} - {"builtins", "abc"}
    names.add("clbench.methods.adaptation")
    modules = [importlib.import_module(n) for n in sorted(names)]
    modules = [m for m in modules if hasattr(m, "fit")]
    phases: list[dict] = []
    if not modules:
        yield phases
        return
    own = modules[0].fit

    def fit(params, batches, step, config, *args, **kwargs):
        steps = [0]

        def counted(batch):
            steps[0] += 1
            return step(batch)

        began, cpu = time.perf_counter(), time.process_time()
        log = own(params, batches, counted, config, *args, **kwargs)
        seconds = time.perf_counter() - began
        phases.append(
            {
                "desc": kwargs.get("desc", ""),
                "steps": steps[0],
                "batch_size": config.batch_size,
                "seconds_per_step": seconds / max(steps[0], 1),
                "cpu_seconds_per_step": (time.process_time() - cpu) / max(steps[0], 1),
            }
        )
        return log

    for module in modules:
        module.fit = fit
    try:
        yield phases
    finally:
        for module in modules:
            module.fit = own


def compare(a: argparse.Namespace) -> dict:
    from export import export_backbone, export_emoji

    if a.subset_classes:
        # The first N emoji-cil classes (all their images): a run small enough for a busy CPU.
        from export import export_stream

        from clbench.scenarios.emoji import read_emoji

        data = a.work / "data" / f"emoji-cil-first{a.subset_classes}"
        meta = export_stream(
            data, [(read_emoji("google", 6, False), list(range(a.subset_classes)), None, None)]
        )
    else:
        data = a.work / "data" / "emoji-cil"
        meta = export_emoji(data)
    backbone = export_backbone(
        a.backbone, a.work / "backbones" / f"{a.backbone}-{a.image_size}.pt", a.image_size
    )
    tag = f"{a.method}-{a.backbone}-{a.image_size}px-{data.name}-b{a.init_cls}inc{a.increment}-s{a.seed}"
    if a.no_shuffle:
        # PILOT's one seed draws the class order too: unshuffled, the seed changes only the
        # training randomness and both sides keep the folder order (00, 01, ...).
        tag += "-unshuffled"
        a.ref_set = [*a.ref_set, "shuffle=false"]
    if a.tag:
        tag += f"-{a.tag}"
    if a.pilot_mos_merge_once:
        tag += "-merge-once"
    config = a.ref_config or PILOT_CONFIGS[a.method]
    vit = None
    if reference_learner(a.ref, config) in ADAPTER_VIT_LEARNERS and a.backbone.startswith("dinov2"):
        from export import export_sema_vit

        # PILOT's ViT layout (split q/k/v, fc1/fc2 in the block, layer scale folded) is
        # SEMA-CL's: the same export serves aper_adapter and mos.
        vit = export_sema_vit(
            a.backbone,
            a.work / "backbones" / f"pilot-vit-{a.backbone}-{a.image_size}.pt",
            a.image_size,
        )
    learner = reference_learner(a.ref, config)
    if learner in PROMPT_VIT_LEARNERS and a.backbone.startswith("dinov2"):
        from export import export_timm_vit

        # vit_l2p.py / vit_dualprompt.py keep timm's key names: the weights go as they are;
        # vit_coda_promtpt.py's blocks have no layer scale: it is folded into the weights.
        folded = learner == "coda_prompt"
        vit = export_timm_vit(
            a.backbone,
            a.work
            / "backbones"
            / f"timm-vit{'-folded' if folded else ''}-{a.backbone}-{a.image_size}.pt",
            a.image_size,
            fold_layer_scale=folded,
        )
    extra = adapter_vit_args(learner, vit) + prompt_vit_args(learner, vit)
    ref = run_pilot(a, data, backbone, a.work / "results" / f"pilot-{tag}.json", extra)
    ref_m = pilot_metrics(ref["tasks"])
    result, wall, cpu = run_clbench(a, data, shuffle=not a.no_shuffle)
    ours = clbench_metrics(result)
    report = {
        "tag": tag,
        "data": meta,
        "backbone": backbone,
        "pipeline": pilot_pipeline(a.image_size),
        "adapter_vit_check": ref.get("adapter_vit_check"),
        "prompt_vit_check": ref.get("prompt_vit_check"),
        "reference": {
            **ref_m,
            "wall_seconds": ref["wall_seconds"],
            "cpu_seconds": ref["cpu_seconds"],
            "ridges": ref.get("ridges", []),
            "train_phases": ref.get("train_phases", []),
        },
        "clbench": {
            **ours,
            **result.extra,
            "wall_seconds": wall,
            "cpu_seconds": cpu,
            "run_id": result.run_id,
        },
        "reference_tasks": ref["tasks"],
        "clbench_preprocessing": result.config["backbone"]["preprocessing"],
        "clbench_class_order": result.class_order,
    }
    if a.train_crop_scale:  # a clbench-side change: the reference's files keep their name
        report["tag"] = f"{tag}-clbench-crop{a.train_crop_scale:g}"
    if a.clbench_tag:
        report["tag"] += f"-clbench-{a.clbench_tag}"
    (a.work / "results" / f"compare-{report['tag']}.json").write_text(json.dumps(report, indent=1))
    print_report(report)
    return report


def print_report(r: dict) -> None:
    ref, ours = r["reference"], r["clbench"]
    print(f"\n{r['tag']}: {r['data']['train']} train / {r['data']['test']} test images")
    print(f"{'step':>4} {'PILOT':>8} {'clbench':>8} {'diff':>7}")
    for t, (x, y) in enumerate(zip(ref["curve"], ours["curve"], strict=True)):
        print(f"{t:>4} {x:8.2f} {y:8.2f} {y - x:+7.2f}")
    for key in ("avg", "last", "forgetting"):
        print(
            f"{key:>10}: PILOT {ref[key]:6.2f}  clbench {ours[key]:6.2f}  diff {ours[key] - ref[key]:+.2f}"
        )
    if ref.get("ridges") or ours.get("ridge_selection"):
        chosen = [s["ridge"] for s in ours.get("ridge_selection", [])]
        print(f"lambda per task: PILOT {ref.get('ridges')}  clbench {chosen}")
    for side, phases in (("PILOT", ref.get("train_phases")), ("clbench", ours.get("train_phases"))):
        for ph in phases or []:
            cpu = ph.get("cpu_seconds_per_step")
            print(
                f"{side} training: {ph['steps']} steps of batch {ph['batch_size']}, "
                f"{ph['seconds_per_step']:.3f} s/step"
                + (f" ({cpu:.3f} CPU s/step)" if cpu is not None else "")
            )
    print(
        f"CPU seconds: PILOT {ref['cpu_seconds']:.0f} (wall {ref['wall_seconds']:.0f}), "
        f"clbench {ours['cpu_seconds']:.0f} (wall {ours['wall_seconds']:.0f})"
    )


def compare_sema(a: argparse.Namespace) -> dict:
    """SEMA's expansion decisions, SEMA-CL vs clbench, on emoji then Fashion-MNIST (unshuffled)."""
    from export import export_backbone, export_sema_vit, export_stream

    from clbench.scenarios.emoji import read_emoji
    from clbench.scenarios.readers.fashion_mnist import read_fashion_mnist

    emoji = (read_emoji("google", 6, False), list(range(a.emoji_classes)), None, None)
    fashion = (read_fashion_mnist(), list(range(10)), a.fashion_per_class, a.fashion_per_class)
    emoji_name, fashion_name = f"emoji{a.emoji_classes}", f"fashion10x{a.fashion_per_class}"
    if a.fashion_first:  # grey clothing first: the descriptors then meet colour images
        parts, name, sizes = [fashion, emoji], f"{fashion_name}-{emoji_name}", (10, a.emoji_classes)
    else:
        parts, name, sizes = [emoji, fashion], f"{emoji_name}-{fashion_name}", (a.emoji_classes, 10)
    data = a.work / "data" / name
    meta = export_stream(data, parts)
    vit = export_sema_vit(
        "dinov2-vits14:final",
        a.work / "backbones" / f"sema-dinov2-final-{a.image_size}.pt",
        a.image_size,
    )
    # The traced network SEMA-CL's ViT is checked against before it trains (pilot_run.py).
    traced = export_backbone(
        "dinov2-vits14:final",
        a.work / "backbones" / f"dinov2-final-{a.image_size}.pt",
        a.image_size,
    )
    rd_epochs = a.rd_epochs or a.epochs
    tag = f"sema-dinov2-final-{a.image_size}px-e{a.epochs}rd{rd_epochs}-{data.name}-s{a.seed}"
    if a.threshold != 2:
        tag += f"-z{a.threshold:g}"
    out = a.work / "results" / f"semacl-{tag}.json"
    cmd = [
        "nice", "-n", nice_increment(), str(a.ref_python), str(HERE / "pilot_run.py"),
        "--pilot", str(a.ref), "--clbench", str(REPO), "--data", str(data),
        "--backbone", traced["file"], "--feature-dim", str(vit["feature_dim"]),
        "--config", "exps/sema_inr_10task.json", "--init-cls", str(sizes[0]), "--increment", str(sizes[1]),
        "--seed", str(a.seed), "--image-size", str(a.image_size),
        "--workdir", str(a.work / "sema-logs"), "--out", str(out),
        "--vit-state", vit["file"], "--vit", json.dumps(vit["vit"]),
        "--set", "shuffle=false", "--set", f"func_epoch={a.epochs}", "--set", f"rd_epoch={rd_epochs}", "--set", f"exp_threshold={a.threshold:g}",
    ]  # fmt: skip
    before = cpu_seconds(children=True)
    if not (out.exists() and a.reuse):
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
    ref = json.loads(out.read_text())
    ref_cpu = cpu_seconds(children=True) - before
    a.method, a.backbone, (a.init_cls, a.increment) = "sema", "dinov2-vits14:final", sizes
    a.clbench_set = [
        f"train.epochs={a.epochs}", f"descriptor_epochs={rd_epochs}", "adapter_scale=1", "dropout=0",
        "descriptor_dim=128", "train.batch_size=32", "detect_batch_size=128", "buffer_size=500",
        f"expansion_threshold={a.threshold:g}", "expand_layers=3", "train.lr=0.005", "descriptor_lr=0.01",
    ]  # fmt: skip
    with recorded_buffers():
        result, wall, cpu = run_clbench(a, data, shuffle=False)
    report = {
        "tag": tag,
        "data": meta,
        "reference": {
            **pilot_metrics(ref["tasks"]),
            "z": ref["sema"]["z"],
            "added": ref["sema"]["added"],
            "train_phases": ref["sema"]["train_phases"],
            "vit_check": ref.get("sema_vit_check", {}),
            "cpu_seconds": ref["cpu_seconds"],
            "cpu_seconds_total": ref_cpu,
        },
        "clbench": {
            **clbench_metrics(result),
            **result.extra,
            "cpu_seconds": cpu,
            "wall_seconds": wall,
            "timings": result.timings,
        },
    }
    (a.work / "results" / f"compare-{tag}.json").write_text(json.dumps(report, indent=1))
    print_sema(report)
    return report


@contextlib.contextmanager
def recorded_buffers():
    """Add each descriptor buffer's length, mean and std to every clbench SEMA scan decision."""
    from clbench.registry import create_method

    cls = type(create_method("sema"))
    own = cls._scan

    def scan(self, task, expanded):
        buffers = {
            str(i): [
                {"n": len(b), "mean": float(b.values.mean()), "std": float(b.values.std())}
                for b in m.buffers
            ]
            for i, m in self.mixtures.items()
            if m.expandable and i not in expanded
        }
        found = own(self, task, expanded)
        self.decisions[-1]["buffers"] = buffers
        return found

    cls._scan = scan
    try:
        yield
    finally:
        cls._scan = own


def sema_rows(r: dict) -> list[dict]:
    """One row per (side, task, scan, block): the block's score, its buffers, the decision."""
    rows = []
    for e in r["reference"]["z"]:
        added = any(
            x["task"] == e["task"] and x.get("scan") == e.get("scan") and x["layer"] == e["layer"]
            for x in r["reference"]["added"]
        )
        rows.append(
            {"side": "SEMA-CL", "task": e["task"], "scan": e.get("scan"), "layer": e["layer"],
             "z": e["min"], "batch": e["batch"], "buffers": e.get("buffers", []), "expands": added}
        )  # fmt: skip
    for d in r["clbench"].get("expansion_decisions", []):
        for layer, z in d["highest_z"].items():
            rows.append(
                {"side": "clbench", "task": d["task"], "scan": d["scan"], "layer": int(layer),
                 "z": z, "batch": None, "buffers": d.get("buffers", {}).get(layer, []),
                 "expands": d["expanded_layer"] == int(layer)}
            )  # fmt: skip
    return rows


def print_sema(r: dict) -> None:
    ref, ours = r["reference"], r["clbench"]
    print(f"\n{r['tag']}: {r['data']['train']} train / {r['data']['test']} test images")
    if ref.get("vit_check"):
        print(
            f"SEMA-CL's ViT vs clbench's network: max |diff| {ref['vit_check']['max_abs_diff']:.2e}"
        )
    print("batch-mean |z| (min over the block's adapters) per task, scan and block;")
    print("buffers: n / mean / std of each adapter's loss buffer the z is measured against")
    for row in sema_rows(r):
        buffers = ", ".join(f"{b['n']}/{b['mean']:.4g}/{b['std']:.3g}" for b in row["buffers"])
        print(
            f"  {row['side']:>7} task {row['task']} scan {row['scan']} block {row['layer']:>2}: "
            f"z {row['z']:7.3f}  [{buffers}]{'  -> EXPANDS' if row['expands'] else ''}"
        )
    print(f"expansions: SEMA-CL {ref['added']}; clbench {ours.get('expansions')}")
    for key in ("avg", "last", "forgetting"):
        print(f"{key:>10}: SEMA-CL {ref[key]:6.2f}  clbench {ours[key]:6.2f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("reference", choices=["pilot", "sema"])
    p.add_argument("--ref", type=Path, required=True, help="the fetched reference checkout")
    p.add_argument("--ref-python", type=Path, default=Path("/work/refs/venv/bin/python"))
    p.add_argument("--method", default="simplecil", choices=sorted(PILOT_CONFIGS))
    p.add_argument("--epochs", type=int, default=2, help="sema: func_epoch (and rd_epoch)")
    p.add_argument("--threshold", type=float, default=2.0, help="sema: expansion threshold")
    p.add_argument("--rd-epochs", type=int, default=0, help="sema: rd_epoch if not --epochs")
    p.add_argument("--fashion-per-class", type=int, default=10)
    p.add_argument("--emoji-classes", type=int, default=10)
    p.add_argument(
        "--fashion-first", action="store_true", help="sema: Fashion-MNIST's task first, then emoji"
    )
    p.add_argument("--subset-classes", type=int, default=0, help="pilot: first N emoji-cil classes")
    p.add_argument(
        "--reuse", action="store_true", help="reuse a finished reference run (rerun clbench only)"
    )
    p.add_argument("--backbone", default="efficientnet-lite0")
    p.add_argument("--init-cls", type=int, default=9)
    p.add_argument("--increment", type=int, default=9)
    p.add_argument("--seed", type=int, default=1993)
    p.add_argument(
        "--no-shuffle",
        action="store_true",
        help="pilot: keep the folder's class order on both sides (then --seed varies training only)",
    )
    p.add_argument(
        "--image-size", type=int, default=224, help="PILOT fixes 224; smaller keeps its rule"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("/work/refs/fidelity"))
    p.add_argument("--tag", default="", help="suffix of the result files' names")
    p.add_argument(
        "--clbench-tag",
        default="",
        help="suffix of the comparison file only (a clbench variant against the same --reuse run)",
    )
    p.add_argument(
        "--train-crop-scale",
        type=float,
        default=None,
        help="clbench: smallest training-crop area fraction (PILOT's and SEMA-CL's: 0.05)",
    )
    p.add_argument(
        "--ref-config", default="", help="the reference's config file (default: per --method)"
    )
    p.add_argument(
        "--pilot-mos-merge-once",
        action="store_true",
        help="diagnostic PILOT MOS variant (pilot_run.py --mos-merge-once); tagged -merge-once",
    )
    p.add_argument("--ref-set", action="append", default=[], help="reference config KEY=VALUE")
    p.add_argument("--clbench-set", action="append", default=[], help="clbench method KEY=VALUE")
    a = p.parse_args()
    if not (a.ref / "trainer.py").is_file():
        sys.exit(f"{a.ref} is not a PILOT-style checkout; see benchmarks/fidelity/README.md")
    (a.work / "results").mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(HERE))
    compare_sema(a) if a.reference == "sema" else compare(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
