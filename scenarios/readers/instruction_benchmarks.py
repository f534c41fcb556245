"""Readers for users' own copies of the instruction-tuning continual-learning benchmarks.

Each reads the layout its public repository ships, under the data root:

- TRACE (``BeyonderXX/TRACE``): ``TRACE/<Task>/{train,test}.json`` (the
  ``LLM-CL_Benchmark`` folder, renamed or linked as ``TRACE``), each a JSON list
  of ``{"prompt", "answer"}``; 8 tasks, scored as TRACE does (ROUGE-L for
  MeetingBank, exact match elsewhere; clbench has no edit-similarity or SARI
  scorer yet, so Py150 and 20Minuten fall back to ROUGE-L and say so);
- the O-LoRA / ProgPrompt benchmark (``cmnfriend/O-LoRA``):
  ``CL_Benchmark/<family>/<Task>/{train,dev,test}.json``, each a list of
  ``{"sentence", "label"}``, with ``labels.json`` listing the label words; the
  model generates the label, scored by exact match;
- SuperNI task files (``allenai/natural-instructions``) as CITB uses them:
  ``natural-instructions/tasks/<task>.json`` with ``Definition``,
  ``Positive Examples`` and ``Instances``; the prompt is the definition, two
  positive examples and the instance (CITB's ``definition_pos_2``), scored by
  ROUGE-L against the instance's outputs.
"""

from __future__ import annotations

from pathlib import Path

from clbench.errors import ConfigError
from clbench.paths import data_root
from clbench.scenarios.readers.base import DatasetSpec, declare, missing
from clbench.scenarios.readers.text import (
    EXACT_MATCH,
    ROUGE_L,
    TextExample,
    TextTask,
    read_json,
    require,
)

TRACE_TASKS = (
    "C-STANCE",
    "FOMC",
    "MeetingBank",
    "Py150",
    "ScienceQA",
    "NumGLUE-cm",
    "NumGLUE-ds",
    "20Minuten",
)
#: TRACE's own metric per task, and the clbench scorer used for it.
TRACE_SCORERS = {"MeetingBank": ROUGE_L, "Py150": ROUGE_L, "20Minuten": ROUGE_L}

TRACE = declare(
    DatasetSpec(
        name="trace",
        title="TRACE (8 continual instruction-tuning tasks)",
        marker="TRACE/FOMC/train.json",
        page="https://github.com/BeyonderXX/TRACE (LLM-CL_Benchmark; copy it to <data root>/TRACE)",
        note="the data of each task keeps its own licence",
    )
)
OLORA = declare(
    DatasetSpec(
        name="olora-benchmark",
        title="the O-LoRA / ProgPrompt 15-task benchmark",
        marker="CL_Benchmark/TC/agnews/train.json",
        page="https://github.com/cmnfriend/O-LoRA (folder CL_Benchmark)",
    )
)
SUPERNI = declare(
    DatasetSpec(
        name="superni",
        title="Super-NaturalInstructions task files",
        marker="natural-instructions/tasks",
        page="https://github.com/allenai/natural-instructions (clone it under the data root)",
        note="Apache-2.0; 1,600+ task files, about 3 GB",
    )
)

#: Task folder of each O-LoRA task under CL_Benchmark, and the instruction O-LoRA gives its family.
OLORA_TASKS = {
    "dbpedia": "TC/dbpedia",
    "amazon": "SC/amazon",
    "yahoo": "TC/yahoo",
    "agnews": "TC/agnews",
    "yelp": "SC/yelp",
    "mnli": "NLI/MNLI",
    "cb": "NLI/CB",
    "rte": "NLI/RTE",
    "wic": "WiC/WiC",
    "copa": "COPA/COPA",
    "qqp": "QQP/QQP",
    "boolq": "BoolQA/BoolQA",
    "imdb": "SC/IMDB",
    "sst-2": "SC/SST-2",
    "multirc": "MultiRC/MultiRC",
}
OLORA_INSTRUCTIONS = {
    "TC": "What is the topic of the following paragraph? Choose one from the option.",
    "SC": "What is the sentiment of the following paragraph? Choose one from the option.",
    "NLI": 'What is the logical relationship between the "sentence 1" and the "sentence 2"? '
    "Choose one from the option.",
    "QQP": 'Whether the "first sentence" and the "second sentence" have the same meaning? '
    "Choose one from the option.",
    "BoolQA": "According to the following passage, is the question true or false? "
    "Choose one from the option.",
    "MultiRC": "According to the following passage and question, is the candidate answer true "
    "or false? Choose one from the option.",
    "WiC": "Given a word and two sentences, whether the word is used with the same sense in "
    "both sentence? Choose one from the option.",
    "COPA": "",  # COPA's sentences carry their own question
}
#: The standard orders: 1-3 of the 4-task stream (O-LoRA's scripts/order_N.sh; yelp is
#: folded into amazon there), 4-6 of the 15-task stream (O-LoRA paper, Table 7).
OLORA_ORDERS = {
    "order1": ("dbpedia", "amazon", "yahoo", "agnews"),
    "order2": ("dbpedia", "amazon", "agnews", "yahoo"),
    "order3": ("yahoo", "amazon", "agnews", "dbpedia"),
    "order4": (
        "mnli", "cb", "wic", "copa", "qqp", "boolq", "rte", "imdb",
        "yelp", "amazon", "sst-2", "dbpedia", "agnews", "multirc", "yahoo",
    ),
    "order5": (
        "multirc", "boolq", "wic", "mnli", "cb", "copa", "qqp", "rte",
        "imdb", "sst-2", "dbpedia", "agnews", "yelp", "amazon", "yahoo",
    ),
    "order6": (
        "yelp", "amazon", "mnli", "cb", "copa", "qqp", "rte", "imdb",
        "sst-2", "dbpedia", "agnews", "yahoo", "multirc", "boolq", "wic",
    ),
}  # fmt: skip


def _root(spec: DatasetSpec) -> Path:
    root = data_root()
    if not spec.is_present(root):
        raise missing(spec, root)
    return root


# -- TRACE ---------------------------------------------------------------------------------
def _trace_split(path: Path, task: str) -> list[TextExample]:
    records = read_json(path, f"TRACE {task} file")
    if not isinstance(records, list):
        raise ConfigError(f"TRACE file {path} must hold a JSON list", "use TRACE's layout")
    out = []
    for i, r in enumerate(records):
        require(r, ("prompt", "answer"), f"{path} record {i}")
        out.append(TextExample(str(r["prompt"]), (str(r["answer"]),), None, f"{path.stem}/{i}"))
    return out


def read_trace(tasks: tuple[str, ...] = TRACE_TASKS) -> list[TextTask]:
    root = _root(TRACE)
    out = []
    for task in tasks:
        folder = root / "TRACE" / task
        if not (folder / "train.json").exists() or not (folder / "test.json").exists():
            raise missing(TRACE, root, [folder / "train.json", folder / "test.json"])
        out.append(
            TextTask(
                name=task,
                scorer=TRACE_SCORERS.get(task, EXACT_MATCH),
                examples=_trace_split(folder / "test.json", task),
                train=_trace_split(folder / "train.json", task),
                source="trace",
            )
        )
    return out


# -- O-LoRA / ProgPrompt ------------------------------------------------------------------
def _olora_split(path: Path, instruction: str, labels: list[str]) -> list[TextExample]:
    records = read_json(path, "O-LoRA benchmark file")
    if not isinstance(records, list):
        raise ConfigError(f"{path} must hold a JSON list", "use O-LoRA's CL_Benchmark layout")
    options = f"\nOption: {', '.join(labels)}" if labels else ""
    out = []
    for i, r in enumerate(records):
        require(r, ("sentence", "label"), f"{path} record {i}")
        head = f"{instruction}\n" if instruction else ""
        prompt = f"{head}{r['sentence']}{options}\nAnswer:"
        out.append(TextExample(prompt, (str(r["label"]),), None, f"{path.stem}/{i}"))
    return out


def read_olora(order: str = "order1") -> list[TextTask]:
    """The tasks of one standard order (``order1``..``order6``) or a comma list of names."""
    names = OLORA_ORDERS.get(order) or tuple(n.strip() for n in order.split(",") if n.strip())
    unknown = [n for n in names if n not in OLORA_TASKS]
    if unknown:
        raise ConfigError(
            f"unknown O-LoRA task or order {', '.join(unknown)}",
            f"use {', '.join(OLORA_ORDERS)} or task names from {', '.join(OLORA_TASKS)}",
        )
    root = _root(OLORA)
    out = []
    for name in names:
        folder = root / "CL_Benchmark" / OLORA_TASKS[name]
        family = OLORA_TASKS[name].split("/")[0]
        test = folder / "test.json" if (folder / "test.json").exists() else folder / "dev.json"
        if not (folder / "train.json").exists() or not test.exists():
            raise missing(OLORA, root, [folder / "train.json", folder / "test.json"])
        labels_file = folder / "labels.json"
        labels = read_json(labels_file, "label list") if labels_file.exists() else []
        instruction = OLORA_INSTRUCTIONS[family]
        out.append(
            TextTask(
                name=name,
                scorer=EXACT_MATCH,
                examples=_olora_split(test, instruction, labels),
                train=_olora_split(folder / "train.json", instruction, labels),
                instruction=instruction,
                source="olora-benchmark",
                info={"labels": labels, "test_file": test.name},
            )
        )
    return out


# -- SuperNI (CITB) ------------------------------------------------------------------------
def superni_prompt(task: dict, instance_input: str, positives: int = 2) -> str:
    """CITB's ``definition_pos_2`` encoding: definition, positive examples, the instance."""
    definition = (
        task["Definition"][0] if isinstance(task["Definition"], list) else task["Definition"]
    )
    parts = [f"Definition: {definition.strip()}"]
    for k, ex in enumerate(task.get("Positive Examples", [])[:positives], 1):
        parts.append(
            f"Positive Example {k}-\nInput: {ex['input'].strip()}\nOutput: {ex['output'].strip()}"
        )
    parts.append(f"Now complete the following example-\nInput: {instance_input.strip()}\nOutput:")
    return "\n\n".join(parts)


def read_superni_task(path: Path) -> TextTask:
    task = read_json(path, "SuperNI task file")
    require(task, ("Definition", "Instances"), str(path))
    examples = []
    for i, inst in enumerate(task["Instances"]):
        require(inst, ("input", "output"), f"{path} instance {i}")
        outputs = inst["output"] if isinstance(inst["output"], list) else [inst["output"]]
        examples.append(
            TextExample(
                superni_prompt(task, str(inst["input"])),
                tuple(str(o) for o in outputs),
                None,
                str(inst.get("id", i)),
            )
        )
    return TextTask(
        name=path.stem,
        scorer=ROUGE_L,
        examples=examples,
        instruction=superni_prompt(task, "").rsplit("\n\nNow complete", 1)[0],
        source="superni",
        info={"categories": task.get("Categories")},
    )


def read_superni(tasks: str) -> list[TextTask]:
    """Tasks named by a comma list or by a CITB task-order file (one task name a line)."""
    root = _root(SUPERNI)
    order = Path(tasks).expanduser()
    if order.is_file():
        names = [line.strip() for line in order.read_text().splitlines() if line.strip()]
    else:
        names = [n.strip() for n in tasks.split(",") if n.strip()]
    if not names:
        raise ConfigError(
            "no SuperNI tasks given", "pass scenario.tasks=task1_...,task2_... or a CITB order file"
        )
    out = []
    for name in names:
        path = root / "natural-instructions" / "tasks" / f"{name}.json"
        if not path.exists():
            raise missing(SUPERNI, root, [path])
        out.append(read_superni_task(path))
    return out
