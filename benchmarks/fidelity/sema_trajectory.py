"""SEMA's first-task training: SEMA-CL's own ViT against clbench's network, from one adapter draw.

Runs in clbench's venv with SEMA-CL's source on the path. For each seed it builds clbench's
SEMA network and SEMA-CL's ``backbone/vit_sema.py`` ViT with the same weights
(``export.sema_layout``), checks that their embeddings agree on a probe batch, and trains
the first task with SEMA-CL's functional phase (``models/sema.py`` ``_init_train``:
cross-entropy over the task's logits, SGD momentum 0.9, weight decay 5e-4, cosine over
epochs, adapters + routers + a Kaiming-uniform head with zero bias), its training crops and
one batch order, three times:

- ``clbench``: clbench's network and its adapter draw;
- ``SEMA-CL, same draw``: SEMA-CL's network with clbench's adapter weights copied in (if the
  two networks compute the same thing, this row equals the one above to the digit);
- ``SEMA-CL, own draw``: SEMA-CL's network as it initialises itself.

It prints the loss and test accuracy after each epoch.

    .venv/bin/python benchmarks/fidelity/sema_trajectory.py --ref /work/refs/SEMA-CL \\
        --data /work/refs/fidelity/data/fashion10x30-emoji10 --classes 10 --seeds 1993 1994
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from export import sema_layout  # noqa: E402
from harness import folder_spec  # noqa: E402
from pilot_run import pilot_vit  # noqa: E402

import clbench  # noqa: E402, F401  (its torchvision shim before SEMA-CL imports timm)
from clbench.runner import prepare  # noqa: E402


class Features(torch.nn.Module):
    """clbench's network returning SEMA-CL's output dict."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):
        return {"features": self.net(x)}


def networks(a: argparse.Namespace):
    """clbench's SEMA network (built as its learner does) and SEMA-CL's ViT, same weights."""
    import backbone.vit_sema as vit_sema

    options = {"adapter_scale": 1.0, "dropout": 0.0, "bottleneck": a.bottleneck}
    spec = folder_spec(
        a.data, "sema", a.backbone, 1993, a.classes, a.classes, a.image_size, options
    )
    _, learner, ctx = prepare(spec)
    learner.setup(ctx)
    learner._build()  # the network learn() builds before its first task
    model = ctx.backbone.model
    shape = {
        "patch_size": model.patch_embed.patch_size[0],
        "embed_dim": model.embed_dim,
        "depth": len(model.blocks),
        "num_heads": model.blocks[0].attn.num_heads,
        "img_size": a.image_size,
    }
    ref = pilot_vit(
        vit_sema, shape, 0, a.bottleneck, ffn_adapter_type="adaptmlp", exp_threshold=2,
        adapt_start_layer=shape["depth"] - 3, adapt_end_layer=shape["depth"] - 1, rd_dim=128,
        buffer_size=500,
    )  # fmt: skip
    loaded = ref.load_state_dict(sema_layout(model), strict=False)
    for name, param in ref.named_parameters():  # SEMA-CL's rule: train what the weights lack
        param.requires_grad = name in loaded.missing_keys
    probe = torch.rand(4, 3, a.image_size, a.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = float((learner.net.eval()(probe) - ref.eval()(probe)["features"]).abs().max())
    print(f"embeddings, adapters at zero: max |SEMA-CL - clbench| = {diff:.2e}")
    return learner, ref, shape["embed_dim"]


def copy_adapters(learner, ref) -> None:
    with torch.no_grad():
        for index, mixture in learner.mixtures.items():
            ours = mixture.adapters[0]
            theirs = ref.blocks[index].adapter_module.adapters[0].functional
            for mine, other in ((ours.down, theirs.down_proj), (ours.up, theirs.up_proj)):
                other.weight.copy_(mine.weight)
                other.bias.copy_(mine.bias)


def loaders(a: argparse.Namespace, seed: int):
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets
    from torchvision import transforms as T

    size = a.image_size
    train_t = T.Compose([  # the harness's SEMA-CL dataset (pilot_run.ClbenchFolder)
        T.RandomResizedCrop(size, scale=(0.05, 1.0), ratio=(3 / 4, 4 / 3)),
        T.RandomHorizontalFlip(p=0.5),
        T.ToTensor(),
    ])  # fmt: skip
    test_t = T.Compose([
        T.Resize(int(256 / 224 * size), interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(size),
        T.ToTensor(),
    ])  # fmt: skip

    def first(split: str, transform):
        data = datasets.ImageFolder(str(a.data / split), transform)
        return Subset(data, [i for i, (_, y) in enumerate(data.samples) if y < a.classes])

    train = DataLoader(
        first("train", train_t), batch_size=32, shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    return train, DataLoader(first("test", test_t), batch_size=64)


def train(net, head, a: argparse.Namespace, seed: int) -> list[tuple[float, float]]:
    """SEMA-CL's functional phase on the first task; (mean loss, test accuracy) per epoch."""
    train_loader, test_loader = loaders(a, seed)
    params = [
        p
        for n, p in net.named_parameters()
        # SEMA-CL's optimiser rule ('functional', 'router'); clbench's adapters are the branches'
        if ("functional" in n or "router" in n or ".branch.adapters." in n) and p.requires_grad
    ]
    optimizer = torch.optim.SGD(
        params + list(head.parameters()), lr=a.lr, momentum=0.9, weight_decay=5e-4
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=a.epochs, eta_min=0)
    torch.manual_seed(seed)  # the crops
    curve = []
    for _ in range(a.epochs):
        net.train()
        losses = []
        for images, labels in train_loader:
            loss = F.cross_entropy(head(net(images)["features"])[:, : a.classes], labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        schedule.step()
        net.eval()
        correct = total = 0
        with torch.no_grad():
            for images, labels in test_loader:
                predicted = head(net(images)["features"])[:, : a.classes].argmax(1)
                correct += int((predicted == labels).sum())
                total += len(labels)
        curve.append((sum(losses) / len(losses), 100 * correct / total))
    return curve


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ref", type=Path, required=True, help="SEMA-CL checkout")
    p.add_argument("--data", type=Path, required=True, help="exported ImageFolder tree")
    p.add_argument("--classes", type=int, default=10, help="the first task: classes 0..N-1")
    p.add_argument("--backbone", default="dinov2-vits14:final")
    p.add_argument("--image-size", type=int, default=56)
    p.add_argument("--bottleneck", type=int, default=16)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--seeds", type=int, nargs="+", default=[1993])
    a = p.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, str(a.ref))
    if not torch.cuda.is_available():  # SEMA-CL builds its routers with .cuda()
        torch.nn.Module.cuda = lambda self, device=None: self
    for seed in a.seeds:
        torch.manual_seed(seed)
        learner, ref, width = networks(a)
        head = torch.nn.Linear(width, a.classes)
        torch.nn.init.kaiming_uniform_(head.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(head.bias)
        ref_own = copy.deepcopy(ref)
        copy_adapters(learner, ref)
        runs = {
            "clbench": train(Features(learner.net), copy.deepcopy(head), a, seed),
            "SEMA-CL, same draw": train(ref, copy.deepcopy(head), a, seed),
            "SEMA-CL, own draw": train(ref_own, copy.deepcopy(head), a, seed),
        }
        for name, curve in runs.items():
            epochs = "  ".join(f"{loss:.3f}/{acc:5.2f}" for loss, acc in curve)
            print(f"seed {seed} {name:19s} loss/test acc per epoch: {epochs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
