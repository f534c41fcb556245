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
import resource
import sys
import time
from pathlib import Path


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
    assert factory.get_model  # PILOT's own factory picks the (wrapped) Learner

    args.update(
        dataset="clbench-folder",
        backbone_type="clbench",
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
    began, cpu = time.perf_counter(), cpu_seconds()
    trainer.train(args)
    out = {
        "reference": "LAMDA-PILOT",
        "config": {k: v for k, v in args.items() if k != "device"},
        "tasks": records,
        "wall_seconds": time.perf_counter() - began,
        "cpu_seconds": cpu_seconds() - cpu,
    }
    a.out.write_text(json.dumps(out, indent=1))
    return 0


def _plain(value):
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


if __name__ == "__main__":
    raise SystemExit(main())
