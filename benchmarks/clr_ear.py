"""CLR and EAR beside SimpleCIL, LDA and finetune on the offline scenarios (the table in reports/clr_ear.md).

    OMP_NUM_THREADS=2 nice python benchmarks/clr_ear.py --out reports/clr_ear_runs.json \
        [--only emoji-cil emoji-dil] [--methods clr ear] [--epochs 1]
    python benchmarks/clr_ear.py --out reports/clr_ear_runs.json --table

Scenarios: emoji-cil in 3 tasks, task-incremental (``scenario.task_incremental``)
and class-incremental; emoji-dil (Google then Twitter); Fashion-MNIST B0 Inc2
with ``--fashion-per-class`` train and test images per class. Backbone
EfficientNet-Lite0 at ``--image-size``. Each run appends one JSON row to
``--out`` (Ā, last, PILOT forgetting, wall and CPU seconds, trained parameters,
CLR's per-task extra parameters and task-inference accuracy, EAR's decisions,
OOD AUROC and routing accuracy), so an interrupted sweep resumes where it
stopped; ``--table`` prints the markdown tables from the rows. ``--tau`` also
measures Kendall's tau between EAR's zero-shot proxy and each candidate
adaptor's accuracy after training on the first task of emoji-cil.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from clbench.evaluator import cpu_seconds
from clbench.kernels import class_stats, prototype_predict
from clbench.learner import seed_everything
from clbench.methods.zeronas import Candidate, kendall_tau
from clbench.runner import RunSpec, prepare, run

METHODS = ("simplecil", "lda", "finetune", "clr", "ear")


def scenarios(args) -> dict[str, tuple[str, dict]]:
    per_class = {
        "train_per_class": args.fashion_per_class,
        "test_per_class": args.fashion_per_class,
    }
    return {
        "emoji-cil (task-inc.)": (
            "emoji-cil",
            {"num_tasks": args.emoji_tasks, "task_incremental": True},
        ),
        "emoji-cil": ("emoji-cil", {"num_tasks": args.emoji_tasks}),
        "emoji-dil": ("emoji-dil", {}),
        "fashion-mnist": ("fashion-mnist", per_class),
    }


def method_options(method: str, args) -> dict:
    if method == "finetune":  # Adam 1e-3 as CLR, so the two differ in what they train
        return {"train": {"epochs": args.epochs, "optimizer": "adam", "lr": 1e-3}}
    if method == "clr":
        return {"train": {"epochs": args.epochs}}
    if method == "ear":
        return {"train": {"epochs": args.ear_epochs}}
    return {}


def method_summary(method: str, extra: dict, backbone_params: int | None) -> dict:
    if method == "clr":
        records = extra["parameters_per_task"]
        inferred = extra["task_inference_log"]
        return {
            "extra_per_task": [r["reprogram"] + r["batchnorm"] for r in records],
            "closed_form": records[0]["closed_form"],
            "fraction_of_backbone": records[0]["fraction_reprogram_batchnorm"],
            "backbone": records[0]["backbone"],
            "task_inference_accuracy": weighted(inferred, "task_inference_accuracy"),
        }
    if method == "ear":
        decisions = extra["ood_decisions"]
        return {
            "decisions": [d["decision"] for d in decisions],
            "ood_auroc": [d.get("ood_auroc") for d in decisions],
            "adaptors": [s["chosen"] for s in extra["adaptor_search"]],
            "parameters_added": [d["parameters_added"] for d in decisions],
            "routing_accuracy": weighted(extra["routing"], "routing_accuracy"),
            "routing_last_step": weighted(
                [r for r in extra["routing"] if r["step"] == len(decisions) - 1],
                "routing_accuracy",
            ),
        }
    return {}


def weighted(records: list[dict], key: str) -> float | None:
    if not records:
        return None
    n = sum(r["samples"] for r in records)
    return sum(r[key] * r["samples"] for r in records) / n


def sweep(args) -> None:
    out = Path(args.out)
    done = {(r["scenario"], r["method"]) for r in load(out)}
    for label, (name, options) in scenarios(args).items():
        if args.only and label not in args.only:
            continue
        for method in args.methods:
            if (label, method) in done:
                continue
            spec = RunSpec(
                scenario=name,
                method=method,
                backbone="efficientnet-lite0",
                image_size=args.image_size,
                method_options=method_options(method, args),
                scenario_options=options,
            )
            wall, cpu = time.perf_counter(), cpu_seconds()
            result = run(spec)
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            m = result.metrics
            row = {
                "scenario": label,
                "method": method,
                "avg": m["avg_acc_sample"],
                "last": m["last_acc_sample"],
                "forgetting": m["forgetting_pilot"],
                "wall_s": wall,
                "cpu_s": cpu,
                "tasks": len(result.accuracy_matrix),
                "trained_parameters": result.trainable_parameters,
                "summary": method_summary(method, result.extra, None),
            }
            print(json.dumps(row), flush=True)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")


def load(path: Path) -> list[dict]:
    """The stored rows, the first one of each (scenario, method) where a run was repeated."""
    if not path.exists():
        return []
    rows: dict[tuple[str, str], dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows.setdefault((row["scenario"], row["method"]), row)
    return list(rows.values())


def proxy_tau(args) -> dict:
    """Kendall's tau of NASWOT against each candidate's accuracy after training on task 0."""
    spec = RunSpec(
        scenario="emoji-cil",
        method="ear",
        backbone="efficientnet-lite0",
        image_size=args.image_size,
        method_options=method_options("ear", args),
        scenario_options={"num_tasks": args.emoji_tasks},
    )
    scenario, learner, ctx = prepare(spec, None)
    seed_everything(ctx.seed)
    learner.setup(ctx)
    task = scenario.tasks[0]
    train = ctx.frozen_features(task.train).float()
    test = ctx.frozen_features(task.test).float()
    ranked, budget = learner.search(train, 0)
    rows = []
    for row in ranked:
        adaptor = Candidate(tuple(row["widths"])).build(train.shape[1], row["seed"])
        learner.train_adaptor(adaptor, train, task.train.labels, 0)
        with torch.no_grad():
            stats = class_stats(
                adaptor(train), torch.from_numpy(task.train.labels), task.seen_classes
            )
            predicted = prototype_predict(adaptor(test), stats.means.float(), "cosine")
        accuracy = float((predicted.numpy() == task.test.labels).mean())
        rows.append({**row, "accuracy": accuracy})
    fits = [r for r in rows if r["within_budget"]]
    return {
        "budget": budget,
        "candidates": rows,
        "tau_all": kendall_tau([r["proxy"] for r in rows], [r["accuracy"] for r in rows]),
        "tau_within_budget": kendall_tau([r["proxy"] for r in fits], [r["accuracy"] for r in fits]),
        "chosen": ranked[0]["name"],
        "best_trained": max(fits, key=lambda r: r["accuracy"])["name"],
    }


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| scenario | method | Ā | last | forgetting | wall s | CPU s | trained params (after last task) | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["summary"]
        note = ""
        if r["method"] == "clr":
            note = (
                f"extra/task {s['extra_per_task'][0]:,} ({100 * s['fraction_of_backbone']:.2f}% of "
                f"{s['backbone']:,}); closed form {sum(s['closed_form'].values()):,}; "
                f"task inference {pct(s['task_inference_accuracy'])}"
            )
        if r["method"] == "ear":
            aurocs = ", ".join("–" if a is None else f"{a:.2f}" for a in s["ood_auroc"])
            note = (
                f"{'/'.join(s['decisions'])}; adaptors {', '.join(s['adaptors'])}; OOD AUROC {aurocs}; "
                f"routing {pct(s['routing_accuracy'])} (last step {pct(s['routing_last_step'])})"
            )
        lines.append(
            f"| {r['scenario']} | {r['method']} | {pct(r['avg'])} | {pct(r['last'])} | "
            f"{pct(r['forgetting'])} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
            f"{r['trained_parameters'][-1]:,} | {note} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="reports/clr_ear_runs.json")
    parser.add_argument("--image-size", type=int, default=56)
    parser.add_argument("--epochs", type=int, default=3, help="CLR and finetune epochs per task")
    parser.add_argument(
        "--ear-epochs", type=int, default=30, help="EAR adaptor epochs (on features)"
    )
    parser.add_argument("--emoji-tasks", type=int, default=3)
    parser.add_argument("--fashion-per-class", type=int, default=50)
    parser.add_argument("--only", nargs="*", default=None, help="scenario labels to run")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--tau", action="store_true")
    args = parser.parse_args()
    if args.table:
        print(table(load(Path(args.out))))
        return
    if args.tau:
        print(json.dumps(proxy_tau(args), indent=1, default=float))
        return
    sweep(args)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
