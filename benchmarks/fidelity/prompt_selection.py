"""Which E-prompt each test image of a DualPrompt run selects, task by task.

DualPrompt trains E-prompt t on task t but picks an image's E-prompt at test
time by the cosine similarity of its query to the pool's keys. This runs the
method through clbench's evaluator and prints, from the run's
``extra["prompt_selection"]``, after every task and for every seen task's test
set: the accuracy, how many images chose each prompt, and how many chose their
own task's prompt (the selection accuracy the method's forgetting depends on).

    .venv/bin/python benchmarks/fidelity/prompt_selection.py \\
        --root /work/refs/fidelity/prompts/data/emoji-cil-first12 --init-cls 6 --increment 6 \\
        --set train.epochs=10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import folder_spec  # noqa: E402

from clbench.options import parse_sets  # noqa: E402
from clbench.runner import run  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", type=Path, required=True, help="ImageFolder tree (train/, test/)")
    p.add_argument("--init-cls", type=int, required=True)
    p.add_argument("--increment", type=int, required=True)
    p.add_argument("--backbone", default="dinov2-vits14")
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--seed", type=int, default=1993)
    p.add_argument("--set", action="append", default=[], help="DualPrompt option KEY=VALUE")
    a = p.parse_args()
    # PILOT's training crops (area 0.05-1), folder class order
    spec = folder_spec(
        a.root,
        "dualprompt",
        a.backbone,
        a.seed,
        a.init_cls,
        a.increment,
        a.image_size,
        parse_sets(a.set)[0],
        shuffle=False,
        train_crop_scale=0.05,
    )
    result = run(spec)
    for record in result.extra["prompt_selection"]:
        step, task = record["after_task"], record["task"]
        print(
            f"after task {step}, test of task {task}: "
            f"accuracy {100 * result.accuracy_matrix[step][task]:5.2f}, "
            f"own prompt {record['own_prompt']}/{record['samples']}, "
            f"prompts chosen {record['chosen']}"
        )
    for warning in result.extra["warnings"]:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
