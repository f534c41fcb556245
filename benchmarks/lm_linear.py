"""Language-model linear layers: torch's own product vs the calibrated one (kernels/linear.py).

    .venv/bin/python benchmarks/lm_linear.py [--task physics] [--examples 32]
        [--backbone smollm2-135m] [--batch-size 8] [--train-steps 4]

Loads the backbone once and times, side by side, with its linear layers as plain
``nn.Linear`` (torch's ``addmm``) and as ``CalibratedLinear`` (the library
``products.matmul_nt`` measured fastest per shape): batched choice scoring of a
BIG-bench task's first examples, and LoRA training steps (forward + backward,
rank 8 on q_proj/v_proj) on the same prompts with their correct answers. Prints
wall and CPU seconds, the ratio, and the largest difference in choice scores.
"""

from __future__ import annotations

import argparse

import torch
from choice_scoring import timed  # the sibling script: wall and CPU seconds of one call
from torch import nn


def set_linear_class(model: nn.Module, cls: type) -> None:
    from clbench.kernels.linear import CalibratedLinear

    for module in model.modules():
        if type(module) in (nn.Linear, CalibratedLinear):
            module.__class__ = cls


def train_steps(lm, pairs, steps: int, batch_size: int) -> float:
    from peft import LoraConfig, get_peft_model

    from clbench.methods.lm_common import answer_loss, lm_batches

    model = get_peft_model(
        lm.fresh_copy().model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"])
    )
    model.train()
    batches = list(lm_batches(lm, pairs, batch_size, seed=0))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss = None
    for step in range(steps):
        loss = answer_loss(model, *batches[step % len(batches)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def main() -> None:
    from clbench.backbones import build_backbone
    from clbench.kernels.linear import CalibratedLinear
    from clbench.runtime import configure_torch
    from clbench.scenarios.readers.bigbench import read_bigbench

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="physics")
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=4)
    args = parser.parse_args()
    configure_torch()
    lm = build_backbone(args.backbone)
    (task,) = read_bigbench([args.task])
    examples = task.examples[: args.examples]
    prompts, choices = [e.prompt for e in examples], [e.choices for e in examples]
    pairs = [(e.prompt, e.answers[0]) for e in examples]
    rows, scores = {}, {}
    for label, cls in (("torch nn.Linear", nn.Linear), ("calibrated", CalibratedLinear)):
        set_linear_class(lm.model, cls)
        lm.choice_logprobs(prompts[:2], choices[:2], args.batch_size)  # warm-up
        scores[label], wall_s, cpu_s = timed(
            lambda: lm.choice_logprobs(prompts, choices, args.batch_size)
        )
        _, wall_t, cpu_t = timed(lambda: train_steps(lm, pairs, args.train_steps, args.batch_size))
        rows[label] = (wall_s, cpu_s, wall_t, cpu_t)
    diff = max(
        float((a - b).abs().max())
        for a, b in zip(scores["torch nn.Linear"], scores["calibrated"], strict=True)
    )
    print(
        f"{'linear layers':18s} {'scoring wall s':>15s} {'CPU s':>7s} {'train wall s':>13s} {'CPU s':>7s}"
    )
    for label, (ws, cs, wt, ct) in rows.items():
        print(f"{label:18s} {ws:15.2f} {cs:7.2f} {wt:13.2f} {ct:7.2f}")
    base, fast = rows["torch nn.Linear"], rows["calibrated"]
    print(
        f"{'ratio (torch/cal.)':18s} {base[0] / fast[0]:14.2f}x {base[1] / fast[1]:6.2f}x "
        f"{base[2] / fast[2]:12.2f}x {base[3] / fast[3]:6.2f}x"
    )
    print(
        f"{args.task}: {len(examples)} examples, {args.train_steps} LoRA steps of batch "
        f"{args.batch_size}; torch threads {torch.get_num_threads()}; "
        f"max |score difference| {diff:.2e}"
    )


if __name__ == "__main__":
    main()
