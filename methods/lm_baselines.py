"""The baselines every continual instruction-tuning paper reports, on a causal LM.

``zeroshot``: the untouched model (the floor every method is read against).
``seqlora``: one LoRA adapter trained task after task, no replay (the lower bound).
``replay``: the same adapter, each task's data mixed with a small buffer of
earlier tasks' training examples (``buffer_per_task`` kept per task, chosen with
the run's seed).
``multitask``: at task t a fresh adapter is trained on the union of the training
data of tasks 0..t (the upper bound; it stores all data, so it is a reference,
not a continual method).
"""

from __future__ import annotations

import numpy as np

from clbench.methods.lm_common import LanguageModelLearner, LoRALearner, answer_pairs
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig


@register_method("zeroshot")
class ZeroShot(LanguageModelLearner):
    """The pretrained language model, never trained: the floor of every text stream."""

    static = True  # tested once per task; the same answers fill every later step

    def learn(self, task: TrainTask) -> None:
        return None  # by definition: nothing is learned


@register_method("seqlora")
class SeqLoRA(LoRALearner):
    """One LoRA adapter (peft) fine-tuned on each task in turn, no replay: the lower bound."""

    def learn(self, task: TrainTask) -> None:
        if self.lm is None:
            self.add_adapter("default")
        self.train_on(answer_pairs(task.train), self.ctx.seed + task.index, f"seqlora {task.name}")


@register_method("replay")
class Replay(LoRALearner):
    """Sequential LoRA with a small replay buffer of earlier tasks' training examples."""

    def __init__(
        self,
        buffer_per_task: int = 8,
        rank: int = 8,
        alpha: float = 16.0,
        target_modules: str = "q_proj,v_proj",
        max_new_tokens: int = 16,
        examples_per_task: int = 2,
        train: TrainConfig | dict | None = None,
    ) -> None:
        super().__init__(rank, alpha, target_modules, max_new_tokens, examples_per_task, train)
        self.buffer_per_task = buffer_per_task
        self.buffer: list[tuple[str, str]] = []

    def learn(self, task: TrainTask) -> None:
        if self.lm is None:
            self.add_adapter("default")
        pairs = answer_pairs(task.train)
        self.train_on(pairs + self.buffer, self.ctx.seed + task.index, f"replay {task.name}")
        rng = np.random.RandomState(self.ctx.seed + task.index)
        keep = rng.permutation(len(pairs))[: self.buffer_per_task]
        self.buffer.extend(pairs[i] for i in sorted(keep))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "buffer": list(self.buffer)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.buffer = list(state["buffer"])


@register_method("multitask")
class MultiTask(LoRALearner):
    """Upper bound: at task t, a fresh LoRA adapter trained on all data of tasks 0..t."""

    def __init__(
        self,
        rank: int = 8,
        alpha: float = 16.0,
        target_modules: str = "q_proj,v_proj",
        max_new_tokens: int = 16,
        examples_per_task: int = 2,
        train: TrainConfig | dict | None = None,
    ) -> None:
        super().__init__(rank, alpha, target_modules, max_new_tokens, examples_per_task, train)
        self.seen: list[tuple[str, str]] = []

    def learn(self, task: TrainTask) -> None:
        self.seen.extend(answer_pairs(task.train))
        if self.lm is None:
            self.add_adapter("default")
        else:  # a fresh adapter: peft's own initialisation (B = 0) of the same adapter
            for module in self.lm.model.modules():
                if hasattr(module, "reset_lora_parameters") and "default" in getattr(
                    module, "lora_A", {}
                ):
                    module.reset_lora_parameters("default", True)
        self.train_on(self.seen, self.ctx.seed + task.index, f"multitask up to {task.name}")

    def state_dict(self) -> dict:
        return {**super().state_dict(), "seen": list(self.seen)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.seen = list(state["seen"])
