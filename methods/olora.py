"""O-LoRA (Wang et al., 2023, "Orthogonal Subspace Learning for Language Model Continual Learning").

Each task gets a new LoRA adapter; the adapters of earlier tasks stay in the
forward pass (their updates add up) but are frozen. While task t trains, a
penalty pushes the new adapter's input subspace (the rows of its A matrix)
orthogonal to every earlier adapter's:

    loss = LM loss + lambda_orth * sum_layers sum_{s<t} |A_s A_t^T|_1
                   + lambda_l2 * sum_layers ||A_t||^2 + ||B_t||^2

as in the paper (lambda_1 = 0.5, lambda_2 = 0 in its T5 scripts). The adapters
are peft LoRA adapters, several active at once. The paper's models are T5 and
LLaMA; clbench runs it on whatever causal LM the backbone is.
"""

from __future__ import annotations

import torch

from clbench.methods.lm_common import LoRALearner, answer_pairs
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig


def orthogonality_penalty(new: list[torch.Tensor], old: list[list[torch.Tensor]]) -> torch.Tensor:
    """sum over layers and earlier adapters of |A_old A_new^T|_1 (A: rank x in_features)."""
    total = new[0].new_zeros(())
    for layer, a_new in enumerate(new):
        for adapter in old:
            total = total + (adapter[layer] @ a_new.T).abs().sum()
    return total


@register_method("olora")
class OLoRA(LoRALearner):
    """O-LoRA: a new LoRA per task, kept orthogonal to the earlier tasks' (frozen) adapters."""

    def __init__(
        self,
        lambda_orth: float = 0.5,
        lambda_l2: float = 0.0,
        rank: int = 8,
        alpha: float = 16.0,
        target_modules: str = "q_proj,v_proj",
        max_new_tokens: int = 16,
        examples_per_task: int = 2,
        train: TrainConfig | dict | None = None,
    ) -> None:
        super().__init__(rank, alpha, target_modules, max_new_tokens, examples_per_task, train)
        self.lambda_orth = lambda_orth
        self.lambda_l2 = lambda_l2

    def a_matrices(self, adapter: str) -> list[torch.Tensor]:
        """The A weights of ``adapter`` in a fixed layer order."""
        params = self.lora_parameters(adapter)
        return [params[n] for n in sorted(params) if ".lora_A." in n]

    def learn(self, task: TrainTask) -> None:
        name = f"task{task.index}"
        self.add_adapter(name)
        new = self.a_matrices(name)
        old = [[a.detach() for a in self.a_matrices(n)] for n in self.adapters[:-1]]
        fresh = list(self.lora_parameters(name).values())

        def penalty() -> torch.Tensor:
            loss = self.lambda_orth * orthogonality_penalty(new, old) if old else 0.0
            if self.lambda_l2:
                loss = loss + self.lambda_l2 * sum((p**2).sum() for p in fresh)
            return loss

        extra = penalty if (old or self.lambda_l2) else None
        self.train_on(
            answer_pairs(task.train), self.ctx.seed + task.index, f"olora {task.name}", extra
        )
