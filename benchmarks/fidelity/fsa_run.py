"""FSA: the authors' trainer (``aresPanos/fsa``) vs clbench's ``fsa`` / ``lda``, class-incremental.

    .venv/bin/python benchmarks/fidelity/fsa_run.py --ref /work/refs/fsa --mode lda
    .venv/bin/python benchmarks/fidelity/fsa_run.py --ref /work/refs/fsa --mode full --epochs 5

The reference (fetched, never committed) is imported and its ``CIL_Trainer``
run unmodified: ``train_eval`` -> ``train_learner`` (Adam lr 5e-3, MultiStepLR
[50, 100, 150] gamma 0.7, dropout 0.5 before the temporary linear head, body in
train mode) on session 0, then per session ``test_cl``: features of every seen
training image (test transform), ``utils.compute_lda_head`` (total covariance,
``torch.cov`` with N - 1, + identity, Cholesky) and ``test_acc``.

What is adapted, from outside only (the registration a new dataset and
backbone need in that code base, plus two things it cannot run without):

* dataset ``emoji``: ``set_up_datasets`` (base_class / way / sessions /
  num_classes), ``get_cl_dataloader`` (sessions of the exported emoji
  ImageFolder tree as PIL images, the protocol of its dataset classes:
  ``(train_x, train_y, test_x, test_y)`` per session, test over all seen
  classes) and ``get_tranforms`` (clbench's EfficientNet-Lite0 train and test
  transforms, used on both sides);
* backbone: ``efficientnet()`` (EfficientNet-B0, downloaded) answers with
  clbench's EfficientNet-Lite0 network (``forward(x, film_params=None)`` -> its
  pooled embedding, ``output_size`` its width);
* CPU: ``Tensor.cuda`` is the identity (the trainer calls ``.cuda()`` on every
  batch); the TensorFlow dataset imports of ``dataloader/data_utils.py`` are
  stubbed (only its TF readers use them) and so is ``loguru``;
* ``trainer.film_params = None`` before ``train_eval``: without ``--use_film``
  the trainer never sets it but ``test_acc`` reads it (``methods/cil_trainer.py:267``),
  so full-body FSA stops with AttributeError at its first evaluation.

Recorded per session: the reference's own figure (mean over test batches of
each batch's accuracy, ``utils.Averager``), the sample accuracy, and the
sample accuracy over the seen classes only (its LDA head has a zero column
for every class not seen yet, ``utils.py:115``, which scores 0 and wins
whenever every seen class scores below 0).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
from cpu_timing import cpu_seconds  # the sibling module (no clbench import at its top)

HERE = Path(__file__).resolve().parent


def stub(name: str) -> types.ModuleType:
    """An empty module with a spec (torch's import machinery looks modules up by spec)."""
    import importlib.machinery

    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    return module


def stub_modules() -> None:
    """Modules the reference imports but this comparison never uses (TF readers, its logger)."""
    silence = stub("silence_tensorflow")
    silence.silence_tensorflow = lambda *a, **k: None
    sys.modules.setdefault("silence_tensorflow", silence)
    for name in ("tensorflow", "tensorflow_datasets"):
        sys.modules.setdefault(name, stub(name))
    try:
        import loguru  # noqa: F401
    except ImportError:
        loguru, inner = stub("loguru"), stub("loguru._logger")
        inner.Logger = object
        loguru.logger = Log()
        loguru._logger = inner
        sys.modules["loguru"], sys.modules["loguru._logger"] = loguru, inner


class Log:
    """What the trainer logs (``lggr.info``), kept in memory."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message) -> None:
        self.lines.append(str(message))

    def add(self, *args, **kwargs) -> None:
        pass


def import_reference(ref: Path):
    import torch

    import clbench.backbones  # noqa: F401  (makes torchvision importable on CPU torch first)

    stub_modules()
    for name in ("methods", "utils", "dataloader", "cnn"):
        if name in sys.modules:
            del sys.modules[name]
    sys.path.insert(0, str(ref / "src"))
    import dataloader.data_utils as data_utils
    import methods.cil_trainer as cil
    import train_eval
    import utils as ref_utils

    import methods.base as base

    torch.Tensor.cuda = lambda self, *a, **k: self  # CPU: the trainer moves every batch
    return types.SimpleNamespace(
        cil=cil, base=base, data_utils=data_utils, train_eval=train_eval, utils=ref_utils
    )


class EmojiSessions:
    """The exported ImageFolder tree as the reference's dataset classes give it, session by session."""

    def __init__(self, root: Path, base_class: int, way: int) -> None:
        from PIL import Image

        names = sorted(d.name for d in (root / "train").iterdir())
        self.parts = {}
        for part in ("train", "test"):
            images, labels = [], []
            for label, name in enumerate(names):
                for path in sorted((root / part / name).glob("*.png")):
                    with Image.open(path) as img:
                        images.append(img.convert("RGB"))
                    labels.append(label)
            self.parts[part] = (images, np.array(labels, dtype=np.int64))
        self.base_class, self.way, self.num_classes = base_class, way, len(names)
        self.sessions = 1 + (self.num_classes - base_class) // way
        self.session = 0

    def __iter__(self):
        return self

    def take(self, part: str, low: int, high: int):
        images, labels = self.parts[part]
        keep = np.flatnonzero((labels >= low) & (labels < high))
        return [images[i] for i in keep], labels[keep]

    def __next__(self):
        if self.session == self.sessions:
            raise StopIteration
        high = self.base_class + self.session * self.way
        low = 0 if self.session == 0 else high - self.way
        self.session += 1
        return (*self.take("train", low, high), *self.take("test", 0, high))

    def reset_session(self) -> None:
        self.session = 0


def lite0_feature_extractor(template):
    """``efficientnet()``'s stand-in: clbench's Lite0 network, pooled embedding, ``output_size``."""
    from torch import nn

    class Lite0(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = template.fresh_copy()

        @property
        def output_size(self) -> int:
            return self.net.feature_dim

        def forward(self, x, film_params=None):
            return self.net.embed(x)

    return lambda *a, **k: Lite0()


def film_lite0_extractor(template, ref_film):
    """``film_efficientnet()``'s stand-in: clbench's Lite0 with the reference's ``film(x, gamma, beta)``
    where its ``FilmEfficientNet`` puts it (after the stem BatchNorm, each block's depthwise
    BatchNorm and the head BatchNorm, before their activation), through forward pre-hooks
    on those BatchNorms' activations; ``get_adaptation_config`` lists their widths."""
    from torch import nn

    class FilmLite0(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = template.fresh_copy()
            model = self.net.model
            depthwise = [
                block.bn2 if hasattr(block, "conv_pw") else block.bn1  # InvertedResidual / DS
                for stage in model.blocks
                for block in stage
            ]
            self.norms = [model.bn1, *depthwise, model.bn2]
            self.current = None
            for i, norm in enumerate(self.norms):
                norm.act.register_forward_pre_hook(self._hook(i))

        def _hook(self, i):
            def apply(module, inputs):
                p = self.current[i][0]
                return (ref_film(inputs[0], p["gamma"], p["beta"]),)

            return apply

        @property
        def output_size(self) -> int:
            return self.net.feature_dim

        def get_adaptation_config(self):
            return {
                "num_maps_per_layer": [[n.num_features] for n in self.norms],
                "num_blocks_per_layer": [1] * len(self.norms),
            }

        def forward(self, x, film_params=None):
            self.current = film_params
            return self.net.embed(x)

    return lambda *a, **k: FilmLite0()


def register(ref, a: argparse.Namespace, data: Path, template) -> EmojiSessions:
    sessions = EmojiSessions(data, a.base_class, a.way)
    own_setup = ref.data_utils.set_up_datasets

    def set_up_datasets(args):
        if args.dataset != "emoji":
            return own_setup(args)
        args.base_class, args.way = sessions.base_class, sessions.way
        args.num_classes, args.sessions = sessions.num_classes, sessions.sessions
        args.Dataset = None
        return args

    def get_cl_dataloader(args):
        sessions.reset_session()
        return sessions

    def get_tranforms(args):
        return template.transform(train=True), template.transform(train=False)

    for module in (ref.cil, ref.base, ref.data_utils):
        module.set_up_datasets = set_up_datasets
    ref.cil.get_cl_dataloader = get_cl_dataloader
    ref.cil.get_tranforms = get_tranforms
    ref.cil.efficientnet = lite0_feature_extractor(template)
    import cnn.efficientnet as ref_net
    import cnn.features as ref_features

    ref_features.film_efficientnet = film_lite0_extractor(template, ref_net.film)
    return sessions


def record_evaluations(ref) -> list[dict]:
    """Wrap ``test_acc`` (and its ``count_acc``) to keep every session's logits and labels."""
    records: list[dict] = []
    state = {"batches": None}
    own_test_acc, own_count_acc = ref.cil.CIL_Trainer.test_acc, ref.cil.count_acc

    def count_acc(logits, labels):
        if state["batches"] is not None:
            state["batches"].append((logits.detach().clone(), labels.detach().clone()))
        return own_count_acc(logits, labels)

    def test_acc(self, loader, coeff, bias):
        state["batches"] = []
        loss, acc = own_test_acc(self, loader, coeff, bias)
        batches, state["batches"] = state["batches"], None
        import torch

        logits = torch.cat([b[0] for b in batches])
        labels = torch.cat([b[1] for b in batches])
        seen = int((coeff.abs().sum(0) > 0).sum())  # unseen classes' columns are exactly zero
        records.append(
            {
                "reported": 100 * acc,
                "sample": 100 * float((logits.argmax(1) == labels).float().mean()),
                "seen_only": 100 * float((logits[:, :seen].argmax(1) == labels).float().mean()),
                "seen_classes": seen,
                "test_images": len(labels),
                "unseen_wins": int((logits.argmax(1) >= seen).sum()),
            }
        )
        return loss, acc

    ref.cil.count_acc = count_acc
    ref.cil.CIL_Trainer.test_acc = test_acc
    return records


def run_reference(a: argparse.Namespace, data: Path, seed: int, epochs: int) -> dict:
    import torch

    from clbench.backbones import build_backbone

    ref = import_reference(a.ref)
    template = build_backbone("efficientnet-lite0", image_size=a.image_size)
    register(ref, a, data, template)
    records = record_evaluations(ref)
    args = ref.train_eval.get_command_line_parser().parse_args(
        ["--results_dir", str(a.work / "fsa-ref"), "--datasets_path", str(data),
         "--epochs_base", str(epochs), "--batch_size", str(a.batch_size),
         "--test_batch_size", "128", "--num_workers", "0", "--seed", str(seed)]
        + (["--use_film"] if a.mode == "film" else [])
    )  # fmt: skip
    args.dataset = "emoji"
    args.dir_save = ref.utils.get_dir_save(args)
    args.device = torch.device("cpu")
    log = Log()
    trainer = ref.cil.CIL_Trainer(args, log)
    if a.ref_dropout is not None:  # an ablation of the reference, not its configuration
        trainer.drop_out = torch.nn.Dropout(p=a.ref_dropout)
    if a.mode != "film":
        trainer.film_params = (
            None  # read by test_acc, set only with --use_film (cil_trainer.py:267)
        )
    steps, seconds, step_cpu = [0], [0.0], [0.0]
    own_base_train = trainer.base_train

    def base_train(loader, optimizer):
        began, began_cpu = time.perf_counter(), time.process_time()
        out = own_base_train(loader, optimizer)
        seconds[0] += time.perf_counter() - began
        step_cpu[0] += time.process_time() - began_cpu
        steps[0] += len(loader)
        return out

    trainer.base_train = base_train
    saved = {}
    own_train_learner = trainer.train_learner

    def train_learner(loader):
        out = own_train_learner(loader)
        saved["state"] = copy.deepcopy(trainer.feature_extractor.state_dict())
        return out

    trainer.train_learner = train_learner
    began, cpu = time.perf_counter(), cpu_seconds()
    trainer.train_eval()
    wall, cpu = time.perf_counter() - began, cpu_seconds() - cpu
    as_run = list(records)
    # The same evaluation again from the adapted weights, the body in eval mode (the
    # trainer leaves it in train mode after base_train: BatchNorm then normalises each
    # feature batch by its own statistics and moves its running averages).
    records.clear()
    if a.mode == "full":  # FiLM mode keeps the body in eval mode throughout
        trainer.feature_extractor.load_state_dict(saved["state"])
        trainer.feature_extractor.eval()
        trainer.train_learner = lambda loader: 0.0
        torch.manual_seed(seed)
        trainer.train_eval_org()
    return {
        "seed": seed,
        "epochs": epochs,
        "sessions": as_run,
        "sessions_body_eval": list(records),
        "seconds_per_step": seconds[0] / max(steps[0], 1),
        "cpu_seconds_per_step": step_cpu[0] / max(steps[0], 1),
        "steps": steps[0],
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "log": log.lines[-40:],
    }


def run_clbench(a: argparse.Namespace, data: Path, seed: int, epochs: int) -> dict:
    from cpu_timing import fit_cpu_seconds
    from harness import timed_fit

    from clbench.runner import RunSpec, run

    method = "lda" if epochs == 0 else "fsa"
    options = {} if epochs == 0 else {
        "adapt": "film" if a.mode == "film" else "full",
        # the reference's schedule as it runs: its milestones are fixed epochs, and the
        # weight decay it parses is never given to Adam (cil_trainer.py:35)
        "train": {"epochs": epochs, "batch_size": a.batch_size, "milestones": [50, 100, 150],
                  "weight_decay": 0.0, "lr": 5e-3},
    }  # fmt: skip
    from clbench.options import parse_sets

    for key, value in parse_sets(a.clbench_set)[0].items():
        options[key] = {**options.get(key, {}), **value} if isinstance(value, dict) else value
    spec = RunSpec(
        scenario="folder",
        method=method,
        backbone="efficientnet-lite0",
        seed=seed,
        image_size=a.image_size,
        method_options=options,
        scenario_options={
            "root": str(data),
            "init_cls": a.base_class,
            "increment": a.way,
            "shuffle": False,
        },
        device="cpu",
    )
    began, cpu = time.perf_counter(), cpu_seconds()
    with timed_fit(method) as phases, fit_cpu_seconds(method) as fit_cpu:
        result = run(spec)
    counts = np.array(result.test_counts, float)
    curve = [
        100
        * np.nansum([v for v in result.correct_matrix[t][: t + 1] if v is not None])
        / counts[: t + 1].sum()
        for t in range(len(counts))
    ]
    steps = sum(p["steps"] for p in phases)
    return {
        "seed": seed,
        "epochs": epochs,
        "curve": curve,
        "seconds_per_step": (
            sum(p["seconds_per_step"] * p["steps"] for p in phases) / steps if steps else None
        ),
        "cpu_seconds_per_step": sum(fit_cpu) / steps if steps else None,
        "steps": steps,
        "wall_seconds": time.perf_counter() - began,
        "cpu_seconds": cpu_seconds() - cpu,
        "run_id": result.run_id,
    }


def film_counts(a: argparse.Namespace) -> dict:
    """FiLM parameters on EfficientNet-B0 (random weights): the reference's adapter vs clbench's."""
    ref = import_reference(a.ref)  # first: it makes torchvision (hence timm) importable
    import cnn.efficientnet as ref_net
    import cnn.features as ref_features
    import timm

    from clbench.methods.peft import attach_film

    net = ref_net.FilmEfficientNet.from_name("efficientnet-b0", num_classes=0)
    adapter = ref_features.create_film_adapter(net)
    ours = timm.create_model("efficientnet_b0", pretrained=False)
    films = attach_film(ours)
    del ref
    return {
        "reference": sum(p.numel() for p in adapter.parameters()),
        "reference_layers": len(adapter.layers),
        "clbench": sum(p.numel() for f in films for p in f.parameters()),
        "clbench_layers": len(films),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ref", type=Path, required=True, help="the fetched aresPanos/fsa checkout")
    p.add_argument("--mode", choices=["lda", "full", "film", "film-counts"], default="lda")
    p.add_argument("--classes", type=int, default=30, help="the first N emoji-cil classes")
    p.add_argument("--base-class", type=int, default=10)
    p.add_argument("--way", type=int, default=10)
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seeds", type=int, nargs="+", default=[1993, 1994, 1995])
    p.add_argument("--side", choices=["both", "reference", "clbench"], default="both")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default="", help="suffix of the result files (a fresh run)")
    p.add_argument(
        "--ref-dropout",
        type=float,
        default=None,
        help="ablation: the reference's dropout before its temporary head (its code: 0.5)",
    )
    p.add_argument(
        "--clbench-set", action="append", default=[], help="clbench method KEY=VALUE (ablations)"
    )
    p.add_argument("--work", type=Path, default=Path("/work/refs/fidelity-authors"))
    a = p.parse_args()
    if not (a.ref / "src" / "methods" / "cil_trainer.py").is_file():
        sys.exit(f"{a.ref} is not an aresPanos/fsa checkout; see benchmarks/fidelity/README.md")
    import torch

    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    os.environ.setdefault("CLBENCH_RESULTS", str(a.work / "runs"))
    sys.path.insert(0, str(HERE))
    if a.mode == "film-counts":
        print(json.dumps(film_counts(a), indent=1))
        return 0
    from export import export_stream

    from clbench.scenarios.emoji import read_emoji

    data = a.work / "data" / f"emoji-cil-first{a.classes}"
    export_stream(data, [(read_emoji("google", 6, False), list(range(a.classes)), None, None)])
    epochs = 0 if a.mode == "lda" else a.epochs
    seeds = a.seeds[:1] if epochs == 0 else a.seeds
    out = a.work / "results"
    out.mkdir(parents=True, exist_ok=True)
    tag = (
        f"fsa-{a.mode}-lite0-{a.image_size}px-first{a.classes}-b{a.base_class}inc{a.way}-e{epochs}"
    )
    if a.ref_dropout is not None:
        tag += f"-refdrop{a.ref_dropout:g}"
    if a.tag:
        tag += f"-{a.tag}"
    if a.clbench_set:
        tag += "-" + "-".join(s.replace("=", "") for s in a.clbench_set)
    report: dict = {"tag": tag}
    for side, runner in (("reference", run_reference), ("clbench", run_clbench)):
        if a.side not in ("both", side):
            continue
        runs = []
        for seed in seeds:
            path = out / f"{tag}-{side}-s{seed}.json"
            if path.exists():
                found = json.loads(path.read_text())
            else:
                found = runner(a, data, seed, epochs)
                path.write_text(json.dumps(found, indent=1))
            runs.append(found)
        report[side] = runs
    (out / f"compare-{tag}.json").write_text(json.dumps(report, indent=1))
    print_report(report)
    return 0


def print_report(r: dict) -> None:
    print(f"\n{r['tag']}")
    for run in r.get("reference", []):
        for key in ("sessions", "sessions_body_eval"):
            rows = run[key]
            if not rows:
                continue
            print(
                f"reference s{run['seed']} {key:>18}: reported {[round(x['reported'], 2) for x in rows]}"
                f" sample {[round(x['sample'], 2) for x in rows]}"
                f" seen-only {[round(x['seen_only'], 2) for x in rows]}"
                f" unseen wins {[x['unseen_wins'] for x in rows]}"
            )
        if run["steps"]:
            print(f"  {run['seconds_per_step']:.3f} s/step over {run['steps']} steps")
    for run in r.get("clbench", []):
        print(f"  clbench s{run['seed']}: {[round(x, 2) for x in run['curve']]}", end="")
        print(f"  {run['seconds_per_step']:.3f} s/step" if run["steps"] else "")


if __name__ == "__main__":
    raise SystemExit(main())
