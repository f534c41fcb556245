"""CODA-Prompt (Smith et al., CVPR 2023): attention-weighted prompt components with orthogonality.

In each block of ``layers`` the prefix is a weighted sum of ``pool_size``
components, sum_m alpha_m P_m, with alpha_m = cos(q * A_m, K_m) for the
image's query q (the frozen ViT's feature), learnable keys K_m and attention
vectors A_m. The pool is split over ``num_tasks`` tasks: a task trains its own
slice of components, initialised orthogonal to the earlier ones by
Gram-Schmidt, while the earlier slices stay fixed. ``ortho_weight`` adds the
orthogonality term mean((X X^T - I)^2) over the active K, A and P. The prefix
of ``length`` tokens is split into key and value halves; the feature is the
class token.

Defaults: PILOT's ImageNet-R configuration (``exps/coda_prompt_inr.json``, the
official repository's ImageNet-R setting): 100 components, length 8, blocks
0-4, ortho weight 0 (orthogonality comes from the initialisation), Adam lr
0.001, batch 128, 50 epochs, 10 tasks, and the authors' schedule
(``quarter-cosine``: per epoch, a quarter cosine period down to 1.6 % of the
rate, ``utils/schedulers.py`` of GT-RIPL/CODA-Prompt, the same in PILOT), not
the per-step half cosine that ``schedule="cosine"`` is.
"""

from __future__ import annotations

from torch import nn

from clbench.backbones import Backbone
from clbench.errors import ConfigError
from clbench.methods.heads import HeadInit
from clbench.methods.peft.prompts import ComponentPool, PrefixAttention, attach_prefix, set_prefixes
from clbench.methods.prompting import PromptLearner, QueryView
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig


@register_method("coda_prompt")
class CODAPrompt(PromptLearner):
    """Prefix prompts composed from task-sliced components by query attention."""

    name = "coda_prompt"

    def __init__(
        self,
        pool_size: int = 100,
        length: int = 8,
        layers: tuple[int, ...] = (0, 1, 2, 3, 4),
        ortho_weight: float = 0.0,
        num_tasks: int = 10,
        head_init: HeadInit = "default",
        query_view: QueryView = "test",
        train: TrainConfig | dict | None = None,
    ) -> None:
        if length < 2 or length % 2 or pool_size < num_tasks or num_tasks < 1:
            raise ConfigError(
                "CODA-Prompt needs an even length >= 2 and pool_size >= num_tasks >= 1, got "
                f"length={length}, pool_size={pool_size}, num_tasks={num_tasks}"
            )
        super().__init__(train, head_init, query_view)
        self.pool_size = pool_size
        self.length = length
        self.layers = tuple(layers)
        self.ortho_weight = ortho_weight
        self.num_tasks = num_tasks
        self.pools: nn.ModuleDict | None = None
        self.attention: dict[int, PrefixAttention] = {}

    @staticmethod
    def default_train() -> TrainConfig:
        return TrainConfig(
            epochs=50,
            lr=0.001,
            optimizer="adam",
            weight_decay=0.0,
            schedule="quarter-cosine",
            batch_size=128,
        )

    def build(self, net: Backbone, query_dim: int) -> list[nn.Parameter]:
        model = net.model
        self.attention = attach_prefix(model, list(self.layers))
        self.pools = nn.ModuleDict(
            {
                str(i): ComponentPool(
                    self.pool_size,
                    self.length,
                    model.embed_dim,
                    query_dim,
                    self.num_tasks,
                    seed=self.ctx.seed + i,
                )
                for i in self.layers
            }
        )
        model.coda_pools = self.pools  # moves to the device with the network
        return list(self.pools.parameters())

    def start_task(self, task: TrainTask) -> None:
        if task.index >= self.num_tasks:
            raise ConfigError(
                f"CODA-Prompt splits its pool over num_tasks={self.num_tasks} tasks; "
                f"task {task.index} is one more",
                f"--set num_tasks={task.index + 1} (the scenario's number of tasks)",
            )
        try:
            for pool in self.pools.values():
                pool.start_task(task.index)
        except ValueError as exc:
            raise ConfigError(str(exc), "--set pool_size=... with fewer components") from exc

    def embed_batch(self, images, queries, task, train):
        prompts = {i: self.pools[str(i)].compose(queries, task, train) for i in self.layers}
        set_prefixes(self.attention, prompts)
        try:
            features = self.net(images)
        finally:
            set_prefixes(self.attention, None)
        if not train or not self.ortho_weight:
            return features, None
        ortho = sum(pool.orthogonality(task) for pool in self.pools.values())
        return features, self.ortho_weight * ortho
