"""Run LAMDA-PILOT unmodified on clbench's exported data and backbone (reference venv).

Everything is adapted from outside, before PILOT's own ``trainer.train`` runs:

- dataset ``clbench-folder``: an ``iData`` built like PILOT's own ``iImageNetR``
  (ImageFolder train/ and test/, PILOT's ``build_transform``, ``use_path``),
  registered by wrapping ``utils.data_manager._get_idata``;
- backbone type ``clbench``: the exported clbench network, registered by
  wrapping ``utils.inc_net.get_backbone`` (``out_dim`` set as PILOT's factory
  does for its ViTs);
- device ``[-1]`` (CPU, PILOT's own convention) and the module-level
  ``num_workers`` of the method's file set to 0;
- ``BaseLearner.eval_task`` and ``incremental_train`` wrapped to record what
  they return and how long they take; PILOT computes every accuracy itself.

Usage (from the harness, not by hand):
    python pilot_run.py --pilot /work/refs/LAMDA-PILOT --data ROOT --backbone FILE
        --feature-dim 1280 --config exps/simplecil.json --init-cls 9 --increment 9
        --seed 1993 --out result.json [--set tuned_epoch=1 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from cpu_timing import cpu_seconds  # the sibling module (no clbench import at its top)


def parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pilot", required=True, type=Path)
    p.add_argument("--clbench", required=True, type=Path, help="clbench repo (torchvision shim)")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--backbone", required=True, type=Path)
    p.add_argument("--feature-dim", required=True, type=int)
    p.add_argument("--config", required=True)
    p.add_argument("--init-cls", required=True, type=int)
    p.add_argument("--increment", required=True, type=int)
    p.add_argument("--seed", type=int, default=1993)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--workdir", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--set", dest="sets", action="append", default=[])
    p.add_argument("--vit-state", type=Path, help="SEMA-CL: ViT weights in vit_sema's layout")
    p.add_argument("--vit", type=json.loads, help="SEMA-CL / --adapter-vit: the ViT's shape (JSON)")
    p.add_argument(
        "--adapter-vit",
        type=Path,
        help="aper_adapter / mos: the clbench ViT's weights in the layout of PILOT's "
        "backbone/vit_adapter.py and vit_mos.py (export.sema_layout), built at --vit's shape",
    )
    p.add_argument(
        "--prompt-vit",
        type=Path,
        help="l2p / dualprompt / coda_prompt: the clbench ViT's timm state dict, built as PILOT's "
        "timm-registered prompt ViT (backbone/vit_l2p.py, vit_dualprompt.py, "
        "vit_coda_promtpt.py) at --vit's shape",
    )
    p.add_argument(
        "--projection-seed",
        type=int,
        help="RanPAC: draw W_rand as clbench does (float64 randn from this seed), not from "
        "PILOT's global RNG, so both sides project with the same matrix",
    )
    p.add_argument(
        "--mos-merge-once",
        action="store_true",
        help="diagnostic, not the reference: MOS's adapter merge only after each optimiser "
        "step (the paper's rule), not also inside every forward pass (backbone/vit_mos.py:360-375)",
    )
    a = p.parse_args()

    sys.path.insert(0, str(a.pilot))
    sys.path.append(str(a.clbench))
    # The CPU torch lacks torchvision's native ops; clbench's shim declares them (environment only).
    from clbench._compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import models.base as base
    import numpy as np
    import torch
    import trainer
    import utils.data as pdata
    import utils.data_manager as dm
    import utils.inc_net as inc_net
    from torchvision import datasets
    from utils.toolkit import split_images_labels

    args = json.loads((a.pilot / a.config).read_text())
    num_classes = len([d for d in (a.data / "train").iterdir() if d.is_dir()])

    class ClbenchFolder(pdata.iData):
        """Built exactly like PILOT's iImageNetR, on the exported tree."""

        def __init__(self, run_args):
            super().__init__()
            self.use_path = True
            if a.image_size != 224:
                # PILOT's build_transform fixes 224 px; a smaller run keeps its rule
                # (resize 256/224 * size, bicubic, centre crop, ToTensor, no Normalize).
                from torchvision import transforms as T

                size = a.image_size
                self.train_trsf = [
                    T.RandomResizedCrop(size, scale=(0.05, 1.0), ratio=(3 / 4, 4 / 3)),
                    T.RandomHorizontalFlip(p=0.5),
                    T.ToTensor(),
                ]
                self.test_trsf = [
                    T.Resize(int((256 / 224) * size), interpolation=T.InterpolationMode.BICUBIC),
                    T.CenterCrop(size),
                    T.ToTensor(),
                ]
            elif run_args["model_name"] == "coda_prompt":
                self.train_trsf = pdata.build_transform_coda_prompt(True, run_args)
                self.test_trsf = pdata.build_transform_coda_prompt(False, run_args)
            else:
                self.train_trsf = pdata.build_transform(True, run_args)
                self.test_trsf = pdata.build_transform(False, run_args)
            self.common_trsf = []
            self.class_order = np.arange(num_classes).tolist()

        def download_data(self):
            train = datasets.ImageFolder(str(a.data / "train"))
            test = datasets.ImageFolder(str(a.data / "test"))
            self.train_data, self.train_targets = split_images_labels(train.imgs)
            self.test_data, self.test_targets = split_images_labels(test.imgs)

    own_idata = dm._get_idata
    dm._get_idata = lambda name, run_args=None: (
        ClbenchFolder(run_args) if name == "clbench-folder" else own_idata(name, run_args)
    )
    own_backbone = inc_net.get_backbone

    def get_backbone(run_args, pretrained=False):
        if run_args["backbone_type"] != "clbench":
            return own_backbone(run_args, pretrained)
        return Exported(torch.jit.load(str(a.backbone), map_location="cpu"), a.feature_dim)

    inc_net.get_backbone = get_backbone
    if a.vit_state:
        register_sema(a, inc_net, own_backbone)
    if a.adapter_vit:
        register_adapter_vit(a, inc_net, get_backbone)
    if a.prompt_vit:
        register_prompt_vit(a, inc_net)
    if a.mos_merge_once:
        merge_once()

    class Exported(torch.nn.Module):
        """The traced clbench network with the ``out_dim`` PILOT's nets read."""

        def __init__(self, net, out_dim: int) -> None:
            super().__init__()
            self.net, self.out_dim = net, out_dim

        def forward(self, x):
            return self.net(x)

    records: list[dict] = []
    own_eval, own_train = base.BaseLearner.eval_task, None

    def eval_task(self):
        began = time.perf_counter()
        cnn, nme = own_eval(self)
        records[-1].update(
            cnn=_plain(cnn), nme=_plain(nme), eval_seconds=time.perf_counter() - began
        )
        return cnn, nme

    base.BaseLearner.eval_task = eval_task
    from utils import factory

    learner_module = __import__(f"models.{args['model_name']}", fromlist=["Learner"])
    if hasattr(learner_module, "num_workers"):
        learner_module.num_workers = 0
    own_train = learner_module.Learner.incremental_train

    def incremental_train(self, data_manager):
        began, cpu = time.perf_counter(), cpu_seconds()
        own_train(self, data_manager)
        records.append(
            {
                "task": self._cur_task,
                "known_classes": self._known_classes,
                "total_classes": self._total_classes,
                "learn_seconds": time.perf_counter() - began,
                "learn_cpu_seconds": cpu_seconds() - cpu,
            }
        )

    learner_module.Learner.incremental_train = incremental_train
    if not a.vit_state and hasattr(learner_module.Learner, "_init_train"):
        time_init_train(learner_module.Learner)
    if a.projection_seed is not None:
        share_projection(learner_module.Learner, a.projection_seed)
    assert factory.get_model  # PILOT's own factory picks the (wrapped) Learner

    args.update(
        dataset="clbench-folder",
        # PILOT's factory keys on the type's suffix: "_adapter" (aper_adapter, whose frozen
        # branch is the type without it, i.e. the traced network) and "_mos".
        backbone_type=ADAPTER_TYPES.get(args["model_name"], "clbench")
        if a.adapter_vit
        else PROMPT_TYPES[args["model_name"]]
        if a.prompt_vit
        else "clbench",
        init_cls=a.init_cls,
        increment=a.increment,
        seed=[a.seed],
        device=[-1],
        print_forget=True,
    )
    for item in a.sets:
        key, _, value = item.partition("=")
        args[key] = parse_value(value)
    a.workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(a.workdir)  # PILOT writes logs/ under the working directory
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    # The setting clbench's runner makes: denormals (DINOv2's small layer-scale products)
    # make CPU ViTs several times slower and change no reported digit.
    torch.set_flush_denormal(True)
    began, cpu = time.perf_counter(), cpu_seconds()
    trainer.train(args)
    out = {
        "reference": a.pilot.name,
        "sema": SEMA_LOG,
        "adapter_vit_check": ADAPTER_CHECK,
        "prompt_vit_check": PROMPT_CHECK,
        "sema_vit_check": SEMA_CHECK,
        "ridges": RIDGES,
        "train_phases": TRAIN_PHASES,
        "config": {k: v for k, v in args.items() if k != "device"},
        "tasks": records,
        "wall_seconds": time.perf_counter() - began,
        "cpu_seconds": cpu_seconds() - cpu,
    }
    a.out.write_text(json.dumps(out, indent=1))
    return 0


SEMA_LOG: dict = {"z": [], "added": [], "train_phases": []}
#: PILOT learner -> the backbone type registered for it by ``register_adapter_vit``.
ADAPTER_TYPES = {"aper_adapter": "clbench_adapter", "mos": "clbench_mos", "ease": "clbench_ease"}
#: Largest |PILOT adapter ViT (adapters at zero) - traced clbench network| on a probe batch.
ADAPTER_CHECK: dict = {}
RIDGES: list[float] = []
#: SEMA-CL's ViT (adapters at zero) against the traced clbench network.
SEMA_CHECK: dict = {}


def check_embedding(a, record: dict, what: str, features) -> None:
    """The reference's network must compute the traced clbench network's embedding:
    ``features(probe)`` against it on a fixed probe batch, the difference kept in ``record``."""
    import torch

    probe = torch.rand(2, 3, a.image_size, a.image_size, generator=torch.Generator().manual_seed(0))
    traced = torch.jit.load(str(a.backbone), map_location="cpu")
    with torch.no_grad():
        diff = float((features(probe) - traced(probe)).abs().max())
    record["max_abs_diff"] = diff
    assert diff < 1e-3, f"{what} differs from the clbench network by {diff}"


#: PILOT learner -> the timm model name ``register_prompt_vit`` registers for it (PILOT's
#: factory keys on the suffix: ``_l2p``, ``_dualprompt``, ``utils/inc_net.py:97,122``).
PROMPT_TYPES = {
    "l2p": "clbench_vit_l2p",
    "dualprompt": "clbench_vit_dualprompt",
    "coda_prompt": "clbench_vit_coda_prompt",
}
#: The frozen prompt ViT (no prompts) against the traced clbench network, and its position table.
PROMPT_CHECK: dict = {}
TRAIN_PHASES: list[dict] = []


def time_init_train(learner) -> None:
    """Seconds per optimiser step of a PILOT ``_init_train(loader, test_loader, opt, sched)``.

    Steps are counted on the optimiser it is given; the time of the test passes it
    runs between epochs (``_compute_accuracy``) is left out, so what remains is
    loading, augmenting and the forward/backward/step of the training batches.
    """
    import torch

    own_init_train, own_accuracy = learner._init_train, learner._compute_accuracy
    state = {"eval": 0.0, "eval_cpu": 0.0}

    def compute_accuracy(self, model, loader):
        began, cpu = time.perf_counter(), time.process_time()
        out = own_accuracy(self, model, loader)
        state["eval"] += time.perf_counter() - began
        state["eval_cpu"] += time.process_time() - cpu
        return out

    def init_train(self, train_loader, test_loader, optimizer, scheduler, *args, **kwargs):
        assert isinstance(optimizer, torch.optim.Optimizer), type(optimizer)
        steps, own_step, had_own = [0], optimizer.step, "step" in vars(optimizer)

        def step(*s_args, **s_kwargs):
            steps[0] += 1
            return own_step(*s_args, **s_kwargs)

        optimizer.step = step
        state["eval"], state["eval_cpu"] = 0.0, 0.0
        began, cpu = time.perf_counter(), time.process_time()
        try:
            return own_init_train(
                self, train_loader, test_loader, optimizer, scheduler, *args, **kwargs
            )
        finally:
            if had_own:
                optimizer.step = own_step
            else:
                del optimizer.step  # back to the class's method
            seconds = time.perf_counter() - began - state["eval"]
            cpu_seconds = time.process_time() - cpu - state["eval_cpu"]
            TRAIN_PHASES.append(
                {
                    "task": self._cur_task,
                    "steps": steps[0],
                    "batch_size": train_loader.batch_size,
                    "seconds_per_step": seconds / max(steps[0], 1),
                    # CPU time (one thread): not inflated when the machine is shared.
                    "cpu_seconds_per_step": cpu_seconds / max(steps[0], 1),
                    "test_pass_seconds": state["eval"],
                }
            )

    learner._init_train = init_train
    learner._compute_accuracy = compute_accuracy


def share_projection(learner, seed: int) -> None:
    """PILOT's RanPAC with clbench's W_rand (the same draw) and its chosen lambdas recorded."""
    import torch

    own_setup, own_ridge = learner.setup_RP, learner.optimise_ridge_parameter

    def setup_rp(self):
        own_setup(self)
        generator = torch.Generator().manual_seed(seed)
        shape = tuple(self.W_rand.shape)
        w = torch.randn(*shape, generator=generator, dtype=torch.float64).float()
        self.W_rand = self._network.W_rand = w.to(self._device)

    def optimise_ridge_parameter(self, features, y):
        ridge = own_ridge(self, features, y)
        RIDGES.append(float(ridge))
        return ridge

    learner.setup_RP = setup_rp
    learner.optimise_ridge_parameter = optimise_ridge_parameter


def pilot_vit(module, vit: dict, num_classes: int, ffn_num, **tuning):
    """PILOT's adapter ViT class ``module.VisionTransformer`` at the shape ``vit`` describes,
    with PILOT's tuning config for parallel LoRA-initialised adapters (plus ``tuning``)."""
    from functools import partial

    import torch

    try:
        from easydict import EasyDict
    except ImportError:  # clbench's venv (sema_trajectory.py): the references read only attributes

        class EasyDict(dict):
            def __getattr__(self, name):
                try:
                    return self[name]
                except KeyError as exc:
                    raise AttributeError(name) from exc

    width = vit["embed_dim"]
    config = EasyDict(
        ffn_adapt=True,
        ffn_option="parallel",
        ffn_adapter_layernorm_option="none",
        ffn_adapter_init_option="lora",
        ffn_adapter_scalar="0.1",
        ffn_num=ffn_num,
        d_model=width,
        vpt_on=False,
        vpt_num=0,
        **tuning,
    )
    return module.VisionTransformer(
        patch_size=vit["patch_size"],
        embed_dim=width,
        depth=vit["depth"],
        num_heads=vit["num_heads"],
        img_size=vit["img_size"],
        mlp_ratio=4,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_classes=num_classes,
        global_pool=False,
        drop_path_rate=0.0,
        tuning_config=config,
    )


def nn_at_width(width: int):
    """``torch.nn`` whose ``Linear`` reads a hard-coded 768 input width as ``width``.

    Given to a reference module in place of its ``nn`` so that its ViT-B/16-only line
    (``nn.Linear(768, classes)``) builds the head of the ViT actually run; every other
    name is torch's own.
    """
    import types

    import torch

    def linear(in_features, out_features, *args, **kwargs):
        return torch.nn.Linear(
            width if in_features == 768 else in_features, out_features, *args, **kwargs
        )

    shim = types.SimpleNamespace(
        **{k: getattr(torch.nn, k) for k in dir(torch.nn) if not k.startswith("_")}
    )
    shim.Linear = linear
    return shim


def torch_with_copied_grad_zeros():
    """``torch``, except that ``zeros(..., requires_grad=True)`` returns a non-leaf copy.

    For a reference line written for CUDA, ``torch.zeros(..., requires_grad=True).to(device)``,
    followed by an in-place ``+=``: on CUDA ``.to`` makes the copy, on the CPU it returns the
    leaf and the ``+=`` fails. The copy has the same values and gradient path.
    """
    import types

    import torch

    def zeros(*args, requires_grad: bool = False, **kwargs):
        out = torch.zeros(*args, **kwargs)
        return out.requires_grad_(True).clone() if requires_grad else out

    class Torch(types.ModuleType):
        def __getattr__(self, name):
            return getattr(torch, name)

    shim = Torch("torch")
    shim.zeros = zeros
    return shim


def register_sema(a, inc_net, own_backbone) -> None:
    """SEMA-CL on a ViT-S: the adaptations it needs from outside, each for one hard-coded line.

    - ``backbone/sema_block.py`` builds routers with ``.cuda()``: on a CPU-only
      torch ``Module.cuda`` becomes the identity (device CPU, nothing else).
    - ``utils/inc_net.py`` only builds ViT-B/16 (``d_model=768``): backbone type
      ``clbench`` builds SEMA's own ``VisionTransformer`` with the exported
      shape and the same tuning config (``d_model`` = the ViT's width), loads
      the exported weights and freezes what they cover, as SEMA's loader does.
    - ``models/sema.py`` creates its head as ``nn.Linear(768, nb_classes)``: the
      module's ``nn`` is given a ``Linear`` that reads 768 as the ViT's width.
    The wrappers below only record z-scores, expansions and phase timings.
    """
    import backbone.sema_block as sema_block
    import backbone.vit_sema as vit_sema
    import models.sema as sema
    import torch

    if not torch.cuda.is_available():
        torch.nn.Module.cuda = lambda self, device=None: self
    width = a.vit["embed_dim"]

    def get_backbone(run_args, pretrained=False):
        if run_args["backbone_type"] != "clbench":
            return own_backbone(run_args, pretrained)
        model = pilot_vit(
            vit_sema,
            a.vit,
            0,
            run_args["ffn_num"],
            ffn_adapter_type=run_args["ffn_adapter_type"],
            exp_threshold=run_args["exp_threshold"],
            adapt_start_layer=run_args["adapt_start_layer"],
            adapt_end_layer=run_args["adapt_end_layer"],
            rd_dim=run_args["rd_dim"],
            buffer_size=run_args["buffer_size"],
        )
        msg = model.load_state_dict(torch.load(a.vit_state), strict=False)
        assert not msg.unexpected_keys, msg.unexpected_keys
        assert all("adapter" in k for k in msg.missing_keys), msg.missing_keys
        for name, param in model.named_parameters():
            param.requires_grad = name in msg.missing_keys
        model.out_dim = width
        if not SEMA_CHECK:  # adapters at zero: SEMA-CL's ViT is then the pretrained network
            check_embedding(a, SEMA_CHECK, "SEMA-CL's ViT", lambda x: model.eval()(x)["features"])
        return model.eval()

    inc_net.get_backbone = get_backbone

    sema.nn = nn_at_width(width)

    state = {"task": -1, "scan": -1}
    own_forward = sema_block.SEMAModules.forward

    def forward(self, x):
        watching = (
            self.detecting_outlier
            and not self.added_for_task
            and self.adapt_start_layer <= self.layer_id <= self.adapt_end_layer
        )
        if watching:
            with torch.no_grad():
                z = [
                    float(ad.get_z_score_deviation(ad.rd.compute_reconstruction_loss(x)).mean())
                    for ad in self.adapters
                ]
            SEMA_LOG["z"].append(
                {
                    "task": state["task"],
                    "scan": state["scan"],
                    "layer": self.layer_id,
                    "z": z,
                    "min": min(z),
                    "batch": len(x),
                    # What each z was measured against: the adapter's loss buffer.
                    "buffers": [buffer_stats(ad.rd_loss_record) for ad in self.adapters],
                }
            )
        out = own_forward(self, x)
        if watching and out.get("added"):
            SEMA_LOG["added"].append(
                {"task": state["task"], "scan": state["scan"], "layer": self.layer_id, "z": min(z)}
            )
        return out

    sema_block.SEMAModules.forward = forward
    own_incremental, own_init_train = sema.Learner.incremental_train, sema.Learner._init_train
    own_accuracy = sema.Learner._compute_accuracy
    own_detect = sema.Learner._detect_outlier

    def incremental_train(self, data_manager):
        state["task"], state["scan"] = self._cur_task + 1, -1
        return own_incremental(self, data_manager)

    def detect_outlier(self, detect_loader, train_loader, test_loader, added):
        state["scan"] += 1  # one pass over the detection loader (it recurses after an expansion)
        return own_detect(self, detect_loader, train_loader, test_loader, added)

    def compute_accuracy(self, model, loader):
        began = time.perf_counter()
        out = own_accuracy(self, model, loader)
        state["eval"] = state.get("eval", 0.0) + time.perf_counter() - began
        return out

    def init_train(
        self, total_epoch, train_loader, test_loader, optimizer, scheduler, phase="func"
    ):
        state["eval"], began = 0.0, time.perf_counter()
        own_init_train(self, total_epoch, train_loader, test_loader, optimizer, scheduler, phase)
        train_seconds = time.perf_counter() - began - state["eval"]
        steps = total_epoch * len(train_loader)
        SEMA_LOG["train_phases"].append(
            {
                "task": state["task"],
                "phase": phase,
                "steps": steps,
                "batch_size": train_loader.batch_size,
                "seconds_per_step": train_seconds / max(steps, 1),
            }
        )

    sema.Learner.incremental_train = incremental_train
    sema.Learner._init_train = init_train
    sema.Learner._compute_accuracy = compute_accuracy
    sema.Learner._detect_outlier = detect_outlier


def register_adapter_vit(a, inc_net, previous) -> None:
    """PILOT's aper_adapter, mos and ease on a ViT-S: its own adapter ViTs at the exported shape.

    ``utils/inc_net.py`` builds them only as ViT-B/16 (``d_model=768``, timm ViT-B
    weights); backbone types ``clbench_adapter`` / ``clbench_mos`` / ``clbench_ease``
    build PILOT's ``backbone/vit_adapter.py`` / ``vit_mos.py`` / ``vit_ease.py``
    ``VisionTransformer`` with the same tuning config as PILOT's factory (``d_model`` =
    the ViT's width) and the exported weights, and freeze as PILOT's loaders do (aper,
    ease: all but the keys the weights lack, i.e. the adapters; mos: all but
    ``adapter``/``head``). clbench's default DINOv2
    feature has no final norm (block 11's class token): the ViT's ``norm`` becomes the
    identity when the weights carry none. MOS's head starts as PILOT's does (its loader
    copies a fresh timm ViT's head: truncated normal, std 0.02, zero bias), and
    ``MOSNet`` hard-codes ``backbone.out_dim = 768`` (``utils/inc_net.py:1182``): it is
    set to the width after construction; likewise the ``out_dim=768`` default of EASE's
    ``EaseCosineLinear.forward_reweight``. Before training, the adapter ViT (adapters
    at zero) is checked against the traced clbench network, so both sides start from
    the same function.
    """

    import backbone.vit_adapter as vit_adapter
    import backbone.vit_ease as vit_ease
    import backbone.vit_mos as vit_mos
    import torch

    width = a.vit["embed_dim"]
    state = torch.load(a.adapter_vit)

    def build(module, run_args, num_classes: int, extra: dict):
        model = pilot_vit(module, a.vit, num_classes, run_args["ffn_num"], **extra)
        if "norm.weight" not in state:
            model.norm = torch.nn.Identity()
        msg = model.load_state_dict(state, strict=False)
        assert not msg.unexpected_keys, msg.unexpected_keys
        new = [k for k in msg.missing_keys if "adapt" not in k]  # adaptmlp, cur_adapter
        assert all(k.startswith("head.") for k in new), msg.missing_keys
        model.out_dim = width
        return model, msg

    def check(model, probe_forward) -> None:
        if not ADAPTER_CHECK:
            check_embedding(
                a, ADAPTER_CHECK, "PILOT's adapter ViT", lambda x: probe_forward(model.eval(), x)
            )

    def get_backbone(run_args, pretrained=False):
        kind = run_args["backbone_type"]
        if kind in ("clbench_adapter", "clbench_ease"):
            if kind == "clbench_adapter":
                model, msg = build(vit_adapter, run_args, 0, {})
            else:
                model, msg = build(vit_ease, run_args, 0, {"_device": run_args["device"][0]})
            for name, param in model.named_parameters():
                param.requires_grad = name in msg.missing_keys
            check(model, lambda m, x: m(x))
            return model.eval()
        if kind == "clbench_mos":
            extra = {
                "_device": run_args["device"][0],
                "adapter_momentum": run_args["adapter_momentum"],
            }
            model, _ = build(vit_mos, run_args, run_args["nb_classes"], extra)
            with torch.no_grad():
                torch.nn.init.trunc_normal_(model.head.weight, std=0.02)
                torch.nn.init.zeros_(model.head.bias)
            for name, param in model.named_parameters():
                param.requires_grad = "head" in name or "adapter" in name
            check(model, lambda m, x: m(x)["features"])
            return model
        return previous(run_args, pretrained)

    inc_net.get_backbone = get_backbone
    own_mosnet_init = inc_net.MOSNet.__init__

    def mosnet_init(self, run_args, pretrained):
        own_mosnet_init(self, run_args, pretrained)
        self.backbone.out_dim = width

    inc_net.MOSNet.__init__ = mosnet_init

    # EaseNet.forward (utils/inc_net.py:1035) calls forward_reweight without out_dim, whose
    # default is 768 (backbone/linears.py:138): the subspace width is the ViT's.
    import backbone.linears as linears

    own_reweight = linears.EaseCosineLinear.forward_reweight

    def forward_reweight(self, x, cur_task, *args, out_dim=768, **kwargs):
        return own_reweight(
            self, x, cur_task, *args, out_dim=width if out_dim == 768 else out_dim, **kwargs
        )

    linears.EaseCosineLinear.forward_reweight = forward_reweight


def register_prompt_vit(a, inc_net) -> None:
    """PILOT's L2P, DualPrompt and CODA-Prompt on the clbench ViT: its own prompt ViT classes at
    the ViT-S shape.

    PILOT builds both networks of ``PromptVitNet`` (the prompted one and the frozen
    ``original_backbone`` that gives the query, ``utils/inc_net.py:586-613``) with
    ``timm.create_model(args["backbone_type"], ...)``; its ViT-B/16 entries load timm's
    ImageNet weights. Here two timm models are registered, ``clbench_vit_l2p`` and
    ``clbench_vit_dualprompt``: the ``VisionTransformer`` of ``backbone/vit_l2p.py`` /
    ``vit_dualprompt.py`` with every keyword PILOT's factory passes, at the exported
    shape (patch 14, width 384, clbench's depth, 6 heads; DINOv2's layer scale as the
    class's own ``init_values`` layer scale, overwritten by the weights; its final norm
    the identity when the weights have none: clbench's default DINOv2 feature is block
    11's class token without it), loaded through the module's own ``checkpoint_filter_fn``
    (PILOT's pretrained filter; it widens the position table for L2P's prompt tokens
    with copies of the class token's entry). The head keeps the class's own
    initialisation (truncated normal, std 0.02, zero bias), as a pretrained timm ViT
    with another class count gets it. The first frozen network built (no prompts) is
    checked against the traced clbench network on a probe batch.

    CODA-Prompt: ``clbench_vit_coda_prompt`` builds ``backbone/vit_coda_promtpt.py``'s
    ``VisionTransformer`` (whose blocks have no layer scale: the export folds DINOv2's
    into ``attn.proj`` / ``mlp.fc2``) and is checked the same way, on its class token.
    ``CodaPromptVitNet`` hard-codes 768 twice (``utils/inc_net.py:621-622``: its head
    ``nn.Linear(768, ...)`` and ``CodaPrompt(768, ...)`` with ``key_dim=768``): while it
    is constructed, ``inc_net``'s ``nn`` reads 768 as the ViT's width and ``CodaPrompt``
    gets the width as both its embedding and key size. And on a CPU its forward fails
    as written: ``prompt_loss = torch.zeros((1,), requires_grad=True).to(device=x.device)``
    (``vit_coda_promtpt.py:337``) is a copy on CUDA but the leaf itself on the CPU, where
    ``prompt_loss += loss`` (line 343) is then an in-place operation on a leaf that
    requires grad. The module's ``torch`` is given a ``zeros`` that returns such a tensor
    as a copy, what ``.to("cuda")`` gives. Nothing else of it changes.
    """
    import backbone.vit_coda_promtpt as vit_coda
    import backbone.vit_dualprompt as vit_dualprompt
    import backbone.vit_l2p as vit_l2p
    import torch
    from timm.models.registry import register_model

    shape, state = a.vit, torch.load(a.prompt_vit)

    def at_shape(module, **kwargs):
        """The module's ViT at the exported shape, its final norm gone when the weights lack it."""
        model = module.VisionTransformer(
            img_size=shape["img_size"],
            patch_size=shape["patch_size"],
            embed_dim=shape["embed_dim"],
            depth=shape["depth"],
            num_heads=shape["num_heads"],
            mlp_ratio=4,
            qkv_bias=True,
            **kwargs,
        )
        if "norm.weight" not in state:
            model.norm = torch.nn.Identity()
        return model

    def build(module, kwargs: dict):
        kwargs.pop("pretrained_cfg", None)
        model = at_shape(module, init_values=1.0 if shape.get("layer_scale") else None, **kwargs)
        msg = model.load_state_dict(module.checkpoint_filter_fn(dict(state), model), strict=False)
        assert not msg.unexpected_keys, msg.unexpected_keys
        own = ("head.", "prompt.", "g_prompt", "e_prompt")
        assert all(k.startswith(own) for k in msg.missing_keys), msg.missing_keys
        if "max_abs_diff" not in PROMPT_CHECK and not kwargs.get("prompt_pool"):
            check(model)
        elif "positions" not in PROMPT_CHECK and kwargs.get("prompt_pool"):
            table, own_table = model.pos_embed.detach(), state["pos_embed"]
            extra = table.shape[1] - own_table.shape[1]
            PROMPT_CHECK["positions"] = {
                "prompt_tokens": extra,
                "grid_max_abs_diff": float((table[:, 1 + extra :] - own_table[:, 1:]).abs().max()),
                "prompt_rows_are_class_row": bool(
                    (table[:, : 1 + extra] == own_table[:, :1]).all()
                ),
                "class_row_norm": float(own_table[0, 0].norm()),
            }
        return model

    def check(model) -> None:
        check_embedding(
            a, PROMPT_CHECK, "PILOT's prompt ViT", lambda x: model.eval()(x)["pre_logits"]
        )

    def clbench_vit_l2p(pretrained=False, **kwargs):
        return build(vit_l2p, kwargs)

    def clbench_vit_dualprompt(pretrained=False, **kwargs):
        return build(vit_dualprompt, kwargs)

    def clbench_vit_coda_prompt(pretrained=False, **kwargs):
        model = at_shape(vit_coda)
        assert not shape.get("layer_scale"), "CODA's blocks have none: export it folded"
        msg = model.load_state_dict(vit_coda.checkpoint_filter_fn(dict(state), model), strict=False)
        assert not msg.unexpected_keys, msg.unexpected_keys
        assert all(k.startswith("head.") for k in msg.missing_keys), msg.missing_keys
        if "max_abs_diff" not in PROMPT_CHECK:
            check_embedding(a, PROMPT_CHECK, "PILOT's CODA ViT", lambda x: model.eval()(x)[0][:, 0])
        return model

    register_model(clbench_vit_l2p)
    register_model(clbench_vit_dualprompt)
    register_model(clbench_vit_coda_prompt)
    vit_coda.torch = torch_with_copied_grad_zeros()

    width = shape["embed_dim"]
    own_coda_init, own_coda_prompt = inc_net.CodaPromptVitNet.__init__, inc_net.CodaPrompt

    def coda_prompt_at_width(emb_d, n_tasks, prompt_param, key_dim=768):
        return own_coda_prompt(
            width if emb_d == 768 else emb_d,
            n_tasks,
            prompt_param,
            key_dim=width if key_dim == 768 else key_dim,
        )

    def coda_init(self, run_args, pretrained):
        own_nn = inc_net.nn
        inc_net.nn, inc_net.CodaPrompt = nn_at_width(width), coda_prompt_at_width
        try:
            own_coda_init(self, run_args, pretrained)
        finally:
            inc_net.nn, inc_net.CodaPrompt = own_nn, own_coda_prompt

    inc_net.CodaPromptVitNet.__init__ = coda_init


def merge_once() -> None:
    """A diagnostic variant of PILOT's MOS, to measure what its in-forward merging does.

    ``VisionTransformer.forward_features`` (``backbone/vit_mos.py:360-375``) calls
    ``reweight_adapter`` inside its loop over blocks, and ``reweight_adapter`` (lines
    328-345) assigns ``.data`` in place: every forward pass, training or test, pulls the
    adapter it uses (the stored ones of earlier tasks included) ``depth`` times towards
    the mean of the earlier snapshots. Here ``forward_features`` sees an identity
    ``reweight_adapter``; ``adapter_merge`` (after each optimiser step, line 303) keeps
    PILOT's. Used only with ``--mos-merge-once``, in results tagged as such.
    """
    import backbone.vit_mos as vit_mos

    own = vit_mos.VisionTransformer.forward_features

    def forward_features(self, x, adapter_id, train):
        self.reweight_adapter = lambda adapter, idx: adapter  # shadows the method
        try:
            return own(self, x, adapter_id, train)
        finally:
            del self.reweight_adapter

    vit_mos.VisionTransformer.forward_features = forward_features


def buffer_stats(record) -> dict:
    """Length, mean and (unbiased) std of a SEMA-CL ``Records`` loss buffer."""
    return {"n": int(record.length), "mean": float(record.mean), "std": float(record.stddev)}


def _plain(value):
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


if __name__ == "__main__":
    raise SystemExit(main())
