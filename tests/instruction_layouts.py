"""Tiny fixtures for the text side: a random Llama with a small BPE tokenizer, and
instruction benchmarks written in their real layouts (BIG-bench sdist, TRACE,
O-LoRA's CL_Benchmark, SuperNI task files)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import torch

CORPUS = [
    "Q: Is the sky blue? A: yes",
    "Q: Is fire cold? A: no",
    "Count the apples: one two three. A: 3",
    "Determine whether the following statement is plausible. plausible implausible",
    "Definition: answer the question. Input: Output: Positive Example",
    "What is the topic of the following paragraph? Choose one from the option. Answer:",
] * 4


def tiny_tokenizer():
    """A byte-level BPE tokenizer trained in memory (no download), with eos and pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>")


def tiny_lm(max_length: int = 128, seed: int = 0):
    """A 2-layer randomly initialised Llama as a CausalLM backbone (CI-fast)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from clbench.backbones.language_models import CausalLM

    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    return CausalLM(
        model, tokenizer, name="tiny-llama", weights_id=f"random{seed}", revision="random",
        max_length=max_length,
    )  # fmt: skip


# -- BIG-bench -----------------------------------------------------------------------------
def bigbench_task(kind: str, n: int, prefix: str = "") -> dict:
    if kind == "mc":
        examples = [
            {"input": f"Is {i} even?", "target_scores": {"yes": int(i % 2 == 0), "no": int(i % 2)}}
            for i in range(n)
        ]
    else:
        examples = [{"input": f"What is {i} plus 1?", "target": str(i + 1)} for i in range(n)]
    task = {"name": kind, "description": "fixture", "keywords": [], "examples": examples}
    if prefix:
        task["task_prefix"] = prefix
    return task


def write_bigbench_sdist(path: Path, tasks: dict[str, dict | bytes]) -> Path:
    """A tar.gz laid out like bigbench-1.0.0.tar.gz with the given top-level task.json files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, task in tasks.items():
            data = task if isinstance(task, bytes) else json.dumps(task).encode()
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{name}/task.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# -- TRACE, O-LoRA, SuperNI ------------------------------------------------------------------
def write_trace(root: Path, tasks: tuple[str, ...], n: int = 4) -> None:
    for task in tasks:
        for split in ("train", "test"):
            rows = [
                {"prompt": f"{task} {split} question {i}\nAnswer:", "answer": f"a{i % 2}"}
                for i in range(n)
            ]
            folder = root / "TRACE" / task
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{split}.json").write_text(json.dumps(rows))


def write_olora(root: Path, tasks: dict[str, str], n: int = 4) -> None:
    """``tasks``: name -> folder under CL_Benchmark (e.g. "TC/agnews")."""
    for folder in tasks.values():
        base = root / "CL_Benchmark" / folder
        base.mkdir(parents=True, exist_ok=True)
        labels = ["World", "Sports"]
        (base / "labels.json").write_text(json.dumps(labels))
        for split in ("train", "dev", "test"):
            rows = [{"sentence": f"text {i}", "label": labels[i % 2]} for i in range(n)]
            (base / f"{split}.json").write_text(json.dumps(rows))


def write_superni(root: Path, names: list[str], n: int = 4) -> None:
    folder = root / "natural-instructions" / "tasks"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        task = {
            "Contributors": ["x"],
            "Source": ["fixture"],
            "Categories": ["Dialogue Generation"],
            "Definition": ["Reply to the greeting."],
            "Positive Examples": [
                {"input": "hello", "output": "hi", "explanation": "a reply"},
                {"input": "good morning", "output": "morning", "explanation": "a reply"},
                {"input": "unused", "output": "unused", "explanation": "a third one"},
            ],
            "Negative Examples": [],
            "Instances": [
                {"id": f"{name}-{i}", "input": f"greeting {i}", "output": [f"reply {i}"]}
                for i in range(n)
            ],
            "Instance License": ["Apache 2.0"],
        }
        (folder / f"{name}.json").write_text(json.dumps(task))
