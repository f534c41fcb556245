"""What the language-model learners share: predicting, LoRA adapters, the LM loss.

Every learner here serves instruction streams (``Scenario.setting ==
"instruction"``): multiple-choice tasks are answered by the log-likelihood of
each choice (``CausalLM.choice_logprobs``), generative ones by greedy
generation, cut at the first line break. LoRA comes from Hugging Face ``peft``
(``LoraConfig`` on the attention projections): it initialises B = 0, so a
fresh adapter leaves the model's outputs unchanged, and several adapters can
be active at once (O-LoRA). clbench's own ``methods/peft/lora.py`` targets timm
ViT blocks and is not used for transformers LMs.

Training goes through ``clbench.training.fit``: the loss is the token
cross-entropy of the answer (and an end-of-sequence token) given the prompt,
computed from the answer positions' logits only (``answer_loss``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from clbench.backbones.language_models import takes_logits_to_keep
from clbench.data import Inputs, Samples
from clbench.learner import Learner
from clbench.training import TrainConfig, fit, resolve_train, tensor_batches

IGNORE = -100  # the label transformers' loss skips


def answer_pairs(samples: Samples) -> list[tuple[str, str]]:
    """(prompt, reference answer) of every training sample (for multiple choice, the correct choice)."""
    return [(str(p), str(a[0])) for p, a in zip(samples.prompts, samples.answers, strict=True)]


def lm_batches(lm, pairs: list[tuple[str, str]], batch_size: int, seed: int):
    """Left-padded (ids, mask, positions, labels) batches; labels are -100 outside the answer.

    Left padding ends every answer at the last position, so the loss needs the
    vocabulary projection of the last few positions only (``answer_loss``).
    Positions count real tokens only, so padding never shifts them.
    """
    rows = []
    for prompt, answer in pairs:
        p, a = lm.prompt_and_answer(prompt, answer)
        a = [*a, lm.tokenizer.eos_token_id]
        if len(p) + len(a) > lm.max_length:
            p = p[len(p) + len(a) - lm.max_length :]  # the same left cut, for the EOS token
        rows.append((p + a, [IGNORE] * len(p) + a))
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), lm.tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, width - len(x) :], labels[i, width - len(y) :], mask[i, width - len(x) :] = (
            torch.tensor(x),
            torch.tensor(y),
            1,
        )
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return tensor_batches(ids, mask, positions, labels, batch_size=batch_size, seed=seed)


def answer_loss(model: torch.nn.Module, ids, mask, positions, labels) -> torch.Tensor:
    """Mean token cross-entropy of the answers, projecting only the answer positions.

    Equal to the model's own ``labels=`` loss, which projects every position onto
    the vocabulary: most of a training step's memory and, for a large vocabulary
    (Gemma 3: 262k x 640), most of its time. Needs left-padded batches (``lm_batches``).
    """
    answer_cols = (labels != IGNORE).any(0).nonzero()
    # an answer token at column 0 (an empty prompt) has no position predicting it, as in
    # the shifted loss of transformers: the first predicted column is at least 1
    first = max(1, int(answer_cols[0])) if len(answer_cols) else labels.shape[1] - 1
    keep = labels.shape[1] - first + 1  # position t predicts token t + 1
    kwargs = {"logits_to_keep": keep} if takes_logits_to_keep(model) else {}
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, **kwargs).logits
    logits = logits[:, -keep:-1].float()
    targets = labels[:, first:]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
    )


def lm_step(model: torch.nn.Module, device: torch.device, extra_loss=None):
    """The ``step`` for ``fit``: the answers' cross-entropy (+ ``extra_loss()``)."""

    def step(batch):
        loss = answer_loss(model, *(t.to(device) for t in batch))
        if extra_loss is not None:
            loss = loss + extra_loss()
        return loss, None, None

    return step


@torch.no_grad()
def lm_outputs(lm, inputs: Inputs, batch_size: int = 8, max_new_tokens: int = 16) -> list:
    """What a scorer reads: each choice's log-likelihood, or the greedy answer's first line."""
    lm.eval()
    prompts = [str(p) for p in inputs.prompts]
    if inputs.output == "choice-scores":
        scores = lm.choice_logprobs(prompts, [tuple(c) for c in inputs.choices], batch_size)
        return [s.tolist() for s in scores]
    texts = lm.generate(prompts, max_new_tokens, batch_size)
    return [t.strip().split("\n")[0].strip() for t in texts]


class LanguageModelLearner(Learner):
    """Predicts with ``self.lm`` (the run's LM unless a subclass trains a copy)."""

    protocols = frozenset({"instruction"})
    modalities = frozenset({"text"})

    def __init__(self, max_new_tokens: int = 16, examples_per_task: int = 2) -> None:
        self.max_new_tokens = max_new_tokens
        self.examples_per_task = examples_per_task
        self.examples: dict[int, list[dict[str, str]]] = {}
        self.lm = None

    def current_lm(self):
        return self.lm if self.lm is not None else self.ctx.backbone

    def predict(self, inputs: Inputs, task_id: int | None = None) -> Any:
        # ctx.batch_size is sized for image features; 8 sequences keep an LM batch small
        return lm_outputs(
            self.current_lm(), inputs, min(self.ctx.batch_size, 8), self.max_new_tokens
        )

    def on_tested(self, step: int, task_index: int, samples: Samples, outputs: Any) -> None:
        """Keep a few prompts with the model's answer and the reference (the latest step's)."""
        shown = []
        for i in range(min(self.examples_per_task, len(samples))):
            if samples.choices is not None:
                output = str(samples.choices[i][int(np.argmax(outputs[i]))])
            else:
                output = str(outputs[i])
            shown.append(
                {
                    "task": samples.source.split("/")[-2],
                    "prompt": str(samples.prompts[i]),
                    "output": output,
                    "reference": str(samples.answers[i][0]),
                }
            )
        self.examples[task_index] = shown

    def extra_results(self) -> dict[str, Any]:
        return {"examples": [e for i in sorted(self.examples) for e in self.examples[i]]}

    def state_dict(self) -> dict[str, Any]:
        return {"examples": self.examples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.examples = state["examples"]


class LoRALearner(LanguageModelLearner):
    """A trainable copy of the LM with ``peft`` LoRA adapters on the attention projections."""

    def __init__(
        self,
        rank: int = 8,
        alpha: float = 16.0,
        target_modules: str = "q_proj,v_proj",
        max_new_tokens: int = 16,
        examples_per_task: int = 2,
        train: TrainConfig | dict | None = None,
    ) -> None:
        super().__init__(max_new_tokens, examples_per_task)
        self.rank = rank
        self.alpha = alpha
        self.target_modules = target_modules
        self.train = resolve_train(self.default_train(), train)
        self.adapters: list[str] = []
        self.logs: list[list[dict]] = []

    @staticmethod
    def default_train() -> TrainConfig:
        return TrainConfig(
            epochs=2, lr=5e-4, optimizer="adamw", schedule="constant", batch_size=8, grad_clip=1.0
        )

    def lora_config(self):
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=0.0,
            target_modules=[m.strip() for m in self.target_modules.split(",") if m.strip()],
            bias="none",
        )

    def add_adapter(self, name: str) -> None:
        """Add a fresh LoRA adapter (B = 0) and make it the one that trains."""
        from peft import get_peft_model

        if self.lm is None:
            self.lm = self.ctx.new_backbone()
            self.lm.model = get_peft_model(self.lm.model, self.lora_config(), adapter_name=name)
        else:
            self.lm.model.add_adapter(name, self.lora_config())
        self.adapters.append(name)
        self.activate(self.adapters, trainable=[name])

    def activate(self, active: list[str], trainable: list[str]) -> None:
        """Sum the ``active`` adapters in the forward; only ``trainable`` ones get gradients."""
        self.lm.model.base_model.set_adapter(active)
        for pname, p in self.lm.model.named_parameters():
            p.requires_grad_(any(f".{t}." in pname for t in trainable) and "lora_" in pname)

    def lora_parameters(self, adapter: str | None = None) -> dict[str, torch.nn.Parameter]:
        return {
            n: p
            for n, p in self.lm.model.named_parameters()
            if "lora_" in n and (adapter is None or f".{adapter}." in n)
        }

    def train_on(self, pairs: list[tuple[str, str]], seed: int, desc: str, extra_loss=None) -> None:
        lm, device = self.lm, self.ctx.device
        batches = lm_batches(lm, pairs, self.train.batch_size, seed)
        params = [p for p in lm.model.parameters() if p.requires_grad]
        log = fit(
            params,
            batches,
            lm_step(lm.model, device, extra_loss),
            self.train,
            device,
            desc=desc,
            modules=[lm.model],
        )
        lm.model.eval()
        self.logs.append(log.to_dict())

    def trainable_parameters(self) -> int:
        return 0 if self.lm is None else sum(p.numel() for p in self.lora_parameters().values())

    def extra_results(self) -> dict[str, Any]:
        return {**super().extra_results(), "train_logs": self.logs}

    # Checkpoints hold the adapters only, not the frozen LM (hundreds of MB).
    def state_dict(self) -> dict[str, Any]:
        weights = (
            {}
            if self.lm is None
            else {n: p.detach().cpu() for n, p in self.lora_parameters().items()}
        )
        return {
            **super().state_dict(),
            "adapters": list(self.adapters),
            "lora": weights,
            "logs": self.logs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for name in state["adapters"]:
            self.add_adapter(name)
        with torch.no_grad():
            params = self.lora_parameters()
            for n, value in state["lora"].items():
                params[n].copy_(value)
        self.logs = state["logs"]
