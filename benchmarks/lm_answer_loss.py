"""LoRA training steps: the model's full-vocabulary loss vs clbench's answer-only loss.

    .venv/bin/python benchmarks/lm_answer_loss.py [--backbone smollm2-135m] [--task physics]
        [--examples 16] [--batch-size 8] [--steps 4]

The same LoRA steps (rank 8 on q_proj/v_proj, AdamW) on a BIG-bench task's
prompts and correct answers, two ways, each in its own process so that its
peak memory is its own:

- full: ``model(labels=...)`` on right-padded rows, as transformers computes a
  causal-LM loss: every position is projected onto the vocabulary;
- answer-only: ``lm_common.answer_loss`` on left-padded rows, projecting only
  the answer positions (``logits_to_keep``): what clbench's learners train with.

Prints seconds per step (wall and CPU), peak RSS, both losses (equal up to float
rounding: the same sums, another order) and the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch
from choice_scoring import timed  # the sibling script: wall and CPU seconds of one call


def right_padded(ids, mask, positions, labels):
    """The same rows with their real tokens first (what ``labels=`` expects)."""
    order = torch.argsort(1 - mask, dim=1, stable=True)
    return [t.gather(1, order) for t in (ids, mask, labels)]


def one_variant(args) -> dict:
    from peft import LoraConfig, get_peft_model

    from clbench.backbones import build_backbone
    from clbench.methods.lm_common import answer_loss, lm_batches
    from clbench.runtime import configure_torch
    from clbench.scenarios.readers.bigbench import read_bigbench

    configure_torch()
    lm = build_backbone(args.backbone)
    (task,) = read_bigbench([args.task])
    pairs = [(e.prompt, e.answers[0]) for e in task.examples[: args.examples]]
    batches = list(lm_batches(lm, pairs, args.batch_size, seed=0))
    model = get_peft_model(lm.model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    torch.manual_seed(0)
    losses = []

    def loss_of(batch):
        if args.variant == "full":
            ids, mask, labels = right_padded(*batch)
            return model(input_ids=ids, attention_mask=mask, labels=labels).loss
        return answer_loss(model, *batch)

    def steps():
        for step in range(args.steps):
            loss = loss_of(batches[step % len(batches)])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    _, wall, cpu = timed(steps)
    return {
        "wall_per_step": wall / args.steps,
        "cpu_per_step": cpu / args.steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_mb": rss_before,
        "first_loss": losses[0],
        "width": int(batches[0][0].shape[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--task", default="physics")
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--variant", choices=("full", "answer-only"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(one_variant(args)))
        return
    rows = {}
    for variant in ("full", "answer-only"):
        command = [sys.executable, __file__, *sys.argv[1:], "--variant", variant]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows[variant] = json.loads(out.strip().splitlines()[-1])
    print(
        f"# {args.backbone}, {args.task}, {args.examples} examples, batch {args.batch_size}, "
        f"{args.steps} LoRA steps, {torch.get_num_threads()} threads; "
        f"first batch {rows['full']['width']} tokens wide"
    )
    print("| loss | s/step (wall) | s/step (CPU) | peak RSS MB | first loss |")
    print("|---|---:|---:|---:|---:|")
    for variant, r in rows.items():
        print(
            f"| {variant} | {r['wall_per_step']:.2f} | {r['cpu_per_step']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | {r['first_loss']:.6f} |"
        )
    full, ours = rows["full"], rows["answer-only"]
    print(
        f"answer-only is {full['wall_per_step'] / ours['wall_per_step']:.2f}x faster per step "
        f"(CPU {full['cpu_per_step'] / ours['cpu_per_step']:.2f}x); peak RSS "
        f"{full['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x lower; first-loss difference "
        f"{abs(full['first_loss'] - ours['first_loss']):.1e}"
    )


if __name__ == "__main__":
    main()
