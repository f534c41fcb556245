"""Which E-prompt each test image of a DualPrompt run selects, task by task.

DualPrompt trains E-prompt t on task t but picks an image's E-prompt at test
time by the cosine similarity of its query to the pool's keys. This prints, after
every task and for every seen task's test set: the accuracy, how many images
chose each prompt, and how many chose their own task's prompt (the selection
accuracy the method's forgetting depends on).

    .venv/bin/python benchmarks/fidelity/prompt_selection.py \\
        --root /work/refs/fidelity/prompts/data/emoji-cil-first12 --init-cls 6 --increment 6 \\
        --set train.epochs=10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import folder_spec  # noqa: E402

from clbench.learner import seed_everything  # noqa: E402
from clbench.options import parse_sets  # noqa: E402
from clbench.runner import prepare  # noqa: E402


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
    scenario, learner, ctx = prepare(spec)
    learner.setup(ctx)
    seed_everything(a.seed)  # as the evaluator does before the first task
    for step, task in enumerate(scenario.tasks):
        learner.learn(task.train_view())
        for seen in scenario.tasks[: step + 1]:
            inputs = seen.test.inputs()
            queries = ctx.frozen_features(inputs).to(learner.pool.keys.device)
            with torch.no_grad():  # the pool's own test-time choice
                chosen = learner.pool.select(queries, 1)[1][:, 0].cpu()
            predicted = learner.predict(inputs).argmax(1).numpy()
            accuracy = 100 * (predicted == np.asarray(seen.test.labels)).mean()
            own = int((chosen == seen.index).sum())
            counts = np.bincount(chosen.numpy(), minlength=learner.pool_size).tolist()
            print(
                f"after task {step}, test of task {seen.index}: accuracy {accuracy:5.2f}, "
                f"own prompt {own}/{len(chosen)}, prompts chosen {counts}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
