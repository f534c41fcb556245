"""L2P (Wang et al., CVPR 2022): learning to prompt from a pool selected by key-query matching.

A pool of ``pool_size`` prompts of ``length`` tokens, each with a learnable
key; an image's query (the frozen ViT's feature) selects the ``top_k`` prompts
with the most cosine-similar keys, whose tokens are prepended to the patch
tokens (prompt tuning at the input). The feature is the mean of the prompt
tokens' outputs after the final norm (L2P's ``head_type="prompt"``). The loss
subtracts ``pull_weight`` x the summed similarity of the chosen keys, which
draws the keys towards the queries that pick them.

Defaults: PILOT's ImageNet-R configuration (``exps/l2p_inr.json``): pool 10,
length 5, top-5, Adam lr 0.001875, batch 32, 10 epochs, constant rate, pull
weight 0.1. Not reproduced: ``batchwise_prompt`` (every image of a batch gets
the batch's most frequent prompts), which makes a test prediction depend on the
other images of its batch; here each image uses its own selection.
"""

from __future__ import annotations

from torch import nn

from clbench.backbones import Backbone
from clbench.errors import ConfigError
from clbench.methods.heads import HeadInit
from clbench.methods.peft.prompts import InputPrompts, PromptPool, attach_input_prompts
from clbench.methods.prompting import PromptLearner, QueryView
from clbench.registry import register_method
from clbench.training import TrainConfig


@register_method("l2p")
class L2P(PromptLearner):
    """Prompt pool with key-query selection, prompts prepended to the input tokens."""

    name = "l2p"

    def __init__(
        self,
        pool_size: int = 10,
        length: int = 5,
        top_k: int = 5,
        pull_weight: float = 0.1,
        head_init: HeadInit = "default",
        query_view: QueryView = "test",
        train: TrainConfig | dict | None = None,
    ) -> None:
        if not 0 < top_k <= pool_size or length <= 0:
            raise ConfigError(
                f"L2P needs 0 < top_k <= pool_size and length > 0, got top_k={top_k}, "
                f"pool_size={pool_size}, length={length}"
            )
        super().__init__(train, head_init, query_view)
        self.pool_size = pool_size
        self.length = length
        self.top_k = top_k
        self.pull_weight = pull_weight
        self.pool: PromptPool | None = None
        self.inputs: InputPrompts | None = None

    @staticmethod
    def default_train() -> TrainConfig:
        return TrainConfig(
            epochs=10,
            lr=0.001875,
            optimizer="adam",
            weight_decay=0.0,
            schedule="constant",
            batch_size=32,
        )

    def build(self, net: Backbone, query_dim: int) -> list[nn.Parameter]:
        model = net.model
        self.inputs = attach_input_prompts(model)
        self.pool = PromptPool(self.pool_size, (self.length, model.embed_dim), query_dim)
        model.l2p_pool = self.pool  # moves to the device with the network
        return list(self.pool.parameters())

    def embed_batch(self, images, queries, task, train):
        prompts, indices, pull = self.pool.select(queries, self.top_k)
        self.last_selection = indices
        self.inputs.tokens = prompts.flatten(1, 2)  # (B, top_k * length, D)
        try:
            model = self.net.model
            model.forward_features(images)
            features = model.fc_norm(model.norm(self.inputs.outputs).mean(dim=1))
        finally:
            self.inputs.tokens = None
        return features, (-self.pull_weight * pull if train else None)
