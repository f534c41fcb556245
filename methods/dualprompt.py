"""DualPrompt (Wang et al., ECCV 2022): a shared G-prompt and task-specific E-prompts, by prefix tuning.

The G(eneral)-prompt, shared by all tasks, is a prefix of ``g_length`` key and
``g_length`` value tokens in the attention of blocks ``g_layers``. The
E(xpert)-prompts form a pool with one prompt per task (prefixes in blocks
``e_layers``) and learnable keys: while learning task t the E-prompt t is used
(PILOT's ``use_prompt_mask``) and its key is pulled towards the queries; at test
time the image's query (the frozen ViT's feature) picks the E-prompt with the
most cosine-similar key. The feature is the class token.

Defaults: PILOT's ImageNet-R configuration (``exps/dualprompt_inr.json``):
G-prompt length 5 in blocks 0-1, E-prompt pool 10, length 5 in blocks 2-4,
top-1, Adam lr 0.001, batch 24, 10 epochs, constant rate, pull weight 0.1,
and its ``shared_prompt_pool``: each new task's E-prompt starts as a copy of the
previous task's (``carry_prompt``; PILOT's ``_init_prompt``, models/dualprompt.py:128-145;
the keys are not copied, its ``shared_prompt_key`` is false).
Not reproduced: ``batchwise_prompt`` (at test time every image of a batch gets
the batch's most frequent E-prompt, so a prediction depends on the other images
of its batch); here each image uses its own selection.
"""

from __future__ import annotations

import torch
from torch import nn

from clbench.backbones import Backbone
from clbench.errors import ConfigError
from clbench.methods.heads import HeadInit
from clbench.methods.peft.prompts import PrefixAttention, PromptPool, attach_prefix, set_prefixes
from clbench.methods.prompting import PromptLearner, QueryView
from clbench.registry import register_method
from clbench.scenario import TrainTask
from clbench.training import TrainConfig


@register_method("dualprompt")
class DualPrompt(PromptLearner):
    """Shared G-prompt prefixes plus an E-prompt per task chosen by key-query similarity."""

    name = "dualprompt"
    task_prompts = True

    def __init__(
        self,
        g_length: int = 5,
        g_layers: tuple[int, ...] = (0, 1),
        e_length: int = 5,
        e_layers: tuple[int, ...] = (2, 3, 4),
        pool_size: int = 10,
        pull_weight: float = 0.1,
        carry_prompt: bool = True,
        head_init: HeadInit = "default",
        query_view: QueryView = "test",
        train: TrainConfig | dict | None = None,
    ) -> None:
        if set(g_layers) & set(e_layers):
            raise ConfigError(
                f"g_layers {list(g_layers)} and e_layers {list(e_layers)} overlap",
                "give the G- and E-prompts different blocks",
            )
        super().__init__(train, head_init, query_view)
        self.g_length = g_length
        self.g_layers = tuple(g_layers)
        self.e_length = e_length
        self.e_layers = tuple(e_layers)
        self.pool_size = pool_size
        self.pull_weight = pull_weight
        self.carry_prompt = carry_prompt
        self.g_prompts: nn.Parameter | None = None
        self.pool: PromptPool | None = None
        self.layers: dict[int, PrefixAttention] = {}

    @staticmethod
    def default_train() -> TrainConfig:
        return TrainConfig(
            epochs=10,
            lr=0.001,
            optimizer="adam",
            weight_decay=0.0,
            schedule="constant",
            batch_size=24,
        )

    def build(self, net: Backbone, query_dim: int) -> list[nn.Parameter]:
        model = net.model
        self.layers = attach_prefix(model, list(self.g_layers) + list(self.e_layers))
        dim = model.embed_dim
        self.g_prompts = nn.Parameter(
            torch.empty(len(self.g_layers), 2 * self.g_length, dim).uniform_(-1, 1)
        )
        self.pool = PromptPool(
            self.pool_size, (len(self.e_layers), 2 * self.e_length, dim), query_dim
        )
        # Registered on the network so that it moves to the device with it.
        model.dualprompt_g = nn.ParameterList([self.g_prompts])
        model.dualprompt_e = self.pool
        return [self.g_prompts, *self.pool.parameters()]

    def start_task(self, task: TrainTask) -> None:
        if task.index >= self.pool_size:
            raise ConfigError(
                f"DualPrompt has {self.pool_size} E-prompts, one per task; task {task.index} "
                "needs one more",
                f"--set pool_size={task.index + 1} (or more)",
            )
        if self.carry_prompt and task.index > 0:
            with torch.no_grad():
                self.pool.prompts[task.index] = self.pool.prompts[task.index - 1]

    def embed_batch(self, images, queries, task, train):
        forced = None
        if train:
            forced = torch.full((len(queries), 1), task, dtype=torch.long, device=queries.device)
        chosen, indices, pull = self.pool.select(queries, 1, forced)
        self.last_selection = indices[:, 0]
        expert = chosen[:, 0]  # (B, e_layers, 2 e_length, D)
        batch = len(queries)
        prompts = {i: self.g_prompts[j].expand(batch, -1, -1) for j, i in enumerate(self.g_layers)}
        prompts.update({i: expert[:, j] for j, i in enumerate(self.e_layers)})
        set_prefixes(self.layers, prompts)
        try:
            features = self.net(images)
        finally:
            set_prefixes(self.layers, None)
        return features, (-self.pull_weight * pull if train else None)
