"""What makes RanPAC, EASE, SLCA, L2P, DualPrompt and CODA-Prompt themselves, and a tiny run of each."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clbench.errors import ConfigError
from clbench.kernels import class_stats
from clbench.methods.coda_prompt import CODAPrompt
from clbench.methods.dualprompt import DualPrompt
from clbench.methods.ease import EASE, complement_prototypes, ease_scores
from clbench.methods.l2p import L2P
from clbench.methods.peft.prompts import (
    ComponentPool,
    PrefixAttention,
    PromptPool,
    orthogonality_penalty,
)
from clbench.methods.ranpac import (
    RanPAC,
    random_features,
    ridge_solve,
    score_head,
    select_ridge,
    select_ridge_on_task,
)
from clbench.methods.slca import SLCA
from clbench.training import make_optimizer
from tests.synthetic_vit import synthetic_task, tiny_context

DEPTH = 5  # DualPrompt's E-prompts and CODA's prefixes go up to block 4


# -- RanPAC -----------------------------------------------------------------------------------
def test_ranpac_incremental_gram_equals_batch_gram():
    torch.manual_seed(0)
    learner = RanPAC(first_session="frozen", projection_dim=40, ridges=(0.1, 1.0, 10.0))
    learner.ctx = tiny_context()
    f1, f2 = torch.randn(30, 8), torch.randn(24, 8) + 0.5
    y1, y2 = torch.randint(0, 3, (30,)), torch.randint(3, 5, (24,))
    learner.absorb(f1, y1, 3)
    learner.absorb(f2, y2, 5)
    h = random_features(torch.cat([f1, f2]), learner.projection)
    y = torch.cat([y1, y2])
    assert torch.allclose(learner.stats.outer, h.T @ h, rtol=1e-10, atol=1e-8)
    one_hot = F.one_hot(y, 5).double()
    assert torch.allclose(learner.stats.sums, one_hot.T @ h, rtol=1e-10, atol=1e-8)
    # The head is the ridge solution of the batch statistics with the selected ridge.
    ridge = learner.selected[-1]["ridge"]
    expected = torch.linalg.solve(h.T @ h + ridge * torch.eye(40, dtype=h.dtype), h.T @ one_hot)
    assert torch.allclose(learner.head.double(), expected.T, rtol=1e-4, atol=1e-5)
    assert learner.score(f1[:4]).shape == (4, 5)


def test_ranpac_ridge_is_the_held_out_minimiser():
    torch.manual_seed(1)
    h = torch.relu(torch.randn(60, 12, dtype=torch.float64))
    y = torch.randint(0, 4, (60,))
    fit, held = slice(0, 45), slice(45, 60)
    stats = class_stats(h[fit], y[fit], 4, outer=True)
    ridges = (1e-3, 1e-1, 1.0, 10.0, 1e3)
    best, errors = select_ridge(stats, h[held], y[held], ridges)
    target = F.one_hot(y[held], 4).double()
    brute = [float(((h[held] @ ridge_solve(stats, r).T - target) ** 2).mean()) for r in ridges]
    assert errors == pytest.approx(brute, rel=1e-8)
    assert best == ridges[min(range(len(brute)), key=brute.__getitem__)]
    assert len(set(round(e, 12) for e in errors)) > 1  # the candidates really differ


def test_ranpac_task_ridge_is_the_primal_minimiser_from_the_dual():
    # The dual (n x n kernel) errors equal the primal heads fitted on the task's rows alone.
    torch.manual_seed(2)
    h = torch.relu(torch.randn(50, 80, dtype=torch.float64))  # n < M: the dual path
    y = torch.randint(0, 5, (50,))
    fit, held = slice(0, 38), slice(38, 50)
    ridges = (1e-2, 1.0, 10.0, 1e2, 1e4)
    best, errors = select_ridge_on_task(h[fit], y[fit], h[held], y[held], 5, ridges)
    stats = class_stats(h[fit], y[fit], 5, outer=True)
    target = F.one_hot(y[held], 5).double()
    brute = [float(((h[held] @ ridge_solve(stats, r).T - target) ** 2).mean()) for r in ridges]
    assert errors == pytest.approx(brute, rel=1e-6)
    assert best == ridges[min(range(len(brute)), key=brute.__getitem__)]
    assert len(set(round(e, 12) for e in errors)) > 1


@pytest.mark.parametrize("projection_dim", [64, 8])  # dual (n <= M) and primal (n > M) paths
def test_ranpac_ridge_fit_rules_use_what_they_say(projection_dim):
    torch.manual_seed(4)
    f1, f2 = torch.randn(40, 6), torch.randn(30, 6) + 0.3
    y1, y2 = torch.randint(0, 3, (40,)), torch.randint(3, 6, (30,))
    learners = {}
    for rule in ("task", "seen"):
        learner = RanPAC(first_session="frozen", projection_dim=projection_dim, ridge_fit=rule)
        learner.ctx = tiny_context()
        learner.absorb(f1, y1, 3)
        learner.absorb(f2, y2, 6)
        learners[rule] = learner
        assert learner.hyperparameters()["ridge_fit"] == rule
    assert RanPAC().hyperparameters()["ridge_fit"] == "task"  # the authors' rule
    # Same split in both (seeded by the task index); the candidates' errors differ by rule.
    h2 = random_features(f2, learners["task"].projection)
    order = torch.randperm(30, generator=torch.Generator().manual_seed(1))
    held, rows = order[:6], order[6:]
    earlier = class_stats(random_features(f1, learners["task"].projection), y1, 6, outer=True)
    ridges = learners["task"].ridges
    for rule, stats in (("task", None), ("seen", earlier)):
        fitted = class_stats(h2[rows], y2[rows], 6, outer=True, stats=stats)
        expected = select_ridge(fitted, h2[held], y2[held], ridges)[1]
        got = learners[rule].selected[-1]["errors"]
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-12)
    assert learners["task"].selected[-1]["errors"] != pytest.approx(
        learners["seen"].selected[-1]["errors"], rel=1e-3
    )


def test_ranpac_rejects_bad_options():
    with pytest.raises(ConfigError):
        RanPAC(holdout=1.5)
    with pytest.raises(ConfigError):
        RanPAC(first_session="lora")
    with pytest.raises(ConfigError, match="head_scoring"):
        RanPAC(head_scoring="l2")
    with pytest.raises(ConfigError, match="ridge_fit"):
        RanPAC(ridge_fit="pilot")


def test_ranpac_head_scoring_rules():
    # Class 1's row is long: the plain product picks it, the cosine rule the aligned class 0.
    head = torch.tensor([[1.0, 0.0], [3.0, 3.0]])
    h = torch.tensor([[1.0, 0.2]])
    product = score_head(h, head, "product")
    cosine = score_head(h, head, "cosine")
    assert torch.allclose(product, h @ head.T)
    expected = F.normalize(h, dim=1) @ F.normalize(head, dim=1).T
    assert torch.allclose(cosine, expected)
    assert int(product.argmax()) == 1 and int(cosine.argmax()) == 0


def test_ranpac_head_scoring_is_used_and_recorded():
    torch.manual_seed(3)
    f, y = torch.randn(40, 8), torch.randint(0, 4, (40,))
    learners = {}
    for rule in ("product", "cosine"):
        learner = RanPAC(first_session="frozen", projection_dim=32, head_scoring=rule)
        learner.ctx = tiny_context()
        learner.absorb(f, y, 4)
        learners[rule] = learner
        assert learner.hyperparameters()["head_scoring"] == rule
    assert RanPAC().hyperparameters()["head_scoring"] == "product"  # the authors' rule
    product, cosine = learners["product"], learners["cosine"]
    assert torch.equal(product.head, cosine.head)  # the rule changes scoring only
    h = random_features(f, product.projection).float()
    assert torch.allclose(product.score(f), h @ product.head.T)
    assert torch.allclose(cosine.score(f), score_head(h, cosine.head, "cosine"))
    assert not torch.allclose(product.score(f), cosine.score(f))


# -- EASE -------------------------------------------------------------------------------------
def test_ease_complement_follows_the_formula():
    torch.manual_seed(2)
    class_task = torch.tensor([0, 0, 1, 1, 1, 2])
    protos = torch.randn(6, 3, 7)
    out = complement_prototypes(protos, class_task)
    for c in range(6):
        s = int(class_task[c])
        for k in range(3):
            if k <= s:  # real prototypes are untouched
                assert torch.equal(out[c, k], protos[c, k])
                continue
            donors = [j for j in range(6) if class_task[j] >= k]
            sims = torch.tensor(
                [F.cosine_similarity(protos[c, s], protos[j, s], dim=0) for j in donors]
            )
            weights = sims.softmax(dim=0)
            expected = sum(w * protos[j, k] for w, j in zip(weights, donors, strict=True))
            assert torch.allclose(out[c, k], expected, atol=1e-6)


def test_ease_scores_weight_the_own_subspace():
    torch.manual_seed(3)
    class_task = torch.tensor([0, 1, 2])
    protos, feats = torch.randn(3, 3, 5), torch.randn(4, 3, 5)
    alpha = 0.1
    scores = ease_scores(feats, protos, class_task, alpha)
    for c in range(3):
        expected = sum(
            (1.0 if k == c else alpha / 2)
            * F.cosine_similarity(feats[:, k], protos[c, k][None], dim=1)
            for k in range(3)
        )
        assert torch.allclose(scores[:, c], expected, atol=1e-5)


# -- SLCA -------------------------------------------------------------------------------------
def test_slca_backbone_learns_slowly():
    ctx = tiny_context()
    learner = SLCA(backbone_lr_scale=0.01, train={"lr": 0.02})
    learner.setup(ctx)
    learner.backbone = ctx.new_backbone()
    learner.head = torch.nn.Linear(learner.backbone.feature_dim, 3)
    optimizer = make_optimizer(learner.parameter_groups(), learner.train)
    rates = [g["lr"] for g in optimizer.param_groups]
    assert rates == pytest.approx([0.02 * 0.01, 0.02])
    backbone_ids = {id(p) for p in learner.backbone.parameters()}
    assert {id(p) for p in optimizer.param_groups[0]["params"]} == backbone_ids
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == {
        id(p) for p in learner.head.parameters()
    }


# -- prompts ----------------------------------------------------------------------------------
def test_prompt_pool_selects_by_key_similarity():
    torch.manual_seed(4)
    pool = PromptPool(size=6, shape=(2, 4), key_dim=8)
    queries = torch.stack([pool.keys[4] * 3.0, pool.keys[1] + 1e-3 * torch.randn(8)]).detach()
    prompts, indices, pull = pool.select(queries, top_k=2)
    sims = F.normalize(queries, dim=1) @ F.normalize(pool.keys, dim=1).T
    assert indices[:, 0].tolist() == [4, 1]  # its own key is each query's nearest
    assert torch.equal(indices, sims.topk(2, dim=1).indices)
    assert torch.equal(prompts, pool.prompts[indices])
    assert pull.item() == pytest.approx(sims.gather(1, indices).sum(1).mean().item(), rel=1e-6)
    forced = torch.tensor([[0], [5]])
    _, chosen, _ = pool.select(queries, top_k=1, forced=forced)
    assert torch.equal(chosen, forced)
    pull.backward()  # the pull draws the chosen keys only
    assert pool.keys.grad[indices.flatten()].abs().sum() > 0
    others = [i for i in range(6) if i not in indices.flatten().tolist()]
    assert pool.keys.grad[others].abs().sum() == 0


def test_prefix_attention_is_attention_over_prefix_and_tokens():
    from timm.models.vision_transformer import Attention

    torch.manual_seed(5)
    attn = Attention(12, num_heads=2, qkv_bias=True).eval()
    layer = PrefixAttention(attn)
    x = torch.randn(2, 5, 12)
    assert torch.allclose(layer(x), attn(x))
    pk, pv = torch.randn(2, 3, 12), torch.randn(2, 3, 12)
    layer.prefix = (pk, pv)
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    k, v = torch.cat([pk, k], 1), torch.cat([pv, v], 1)

    def heads(t):
        return t.reshape(2, -1, 2, 6).transpose(1, 2)

    weights = (heads(q) @ heads(k).transpose(-1, -2) / 6**0.5).softmax(-1)
    expected = attn.proj((weights @ heads(v)).transpose(1, 2).reshape(2, 5, 12))
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_coda_components_start_orthogonal_and_old_ones_stay_fixed():
    pool = ComponentPool(size=6, length=2, dim=5, key_dim=8, tasks=3, seed=0)
    pool.start_task(0)
    pool.start_task(1)
    keys, attention, prompts = pool.active(1, train=False)
    for rows in (keys, attention, prompts):
        assert orthogonality_penalty(rows).item() < 1e-10  # Gram-Schmidt: orthonormal rows
    assert pool.orthogonality(1).item() < 1e-10
    with torch.no_grad():
        pool.keys[0] *= 2.0  # a row of norm 2: (4 - 1)^2 on the diagonal, over 4 x 4 entries
    assert orthogonality_penalty(pool.active(1, train=False)[0]).item() == pytest.approx(9 / 16)
    queries = torch.randn(3, 8)
    pool.compose(queries, task=1, train=True).sum().backward()
    assert pool.prompts.grad[:2].abs().sum() == 0  # task 0's slice is fixed while task 1 trains
    assert pool.prompts.grad[2:4].abs().sum() > 0
    assert pool.prompts.grad[4:].abs().sum() == 0  # task 2's slice is not used yet
    # alpha_m = cos(q * A_m, K_m)
    k, a, p = pool.active(1, train=False)
    alpha = F.cosine_similarity(queries[:, None] * a[None], k[None], dim=2)
    assert torch.allclose(pool.compose(queries, 1, False), torch.einsum("bm,mld->bld", alpha, p))


def test_coda_trains_on_its_authors_schedule_unless_told_otherwise():
    # GT-RIPL/CODA-Prompt (and PILOT) step a quarter cosine per epoch, not a per-step half cosine.
    assert CODAPrompt().train.schedule == "quarter-cosine"
    assert CODAPrompt(train={"schedule": "cosine"}).train.schedule == "cosine"


@pytest.mark.parametrize("view", ["test", "train"])
def test_prompt_queries_come_from_the_view_asked_for(view):
    learner = CODAPrompt(pool_size=4, num_tasks=2, train=FAST, query_view=view)
    ctx = tiny_context(DEPTH)
    learner.setup(ctx)
    task = synthetic_task(0, [0, 1], 2, per_class=4)[0]
    seen = []
    own = learner.embed_batch

    def embed_batch(images, queries, task_index, train):
        if train:
            with torch.no_grad():
                seen.append((ctx.backbone.embed(images), queries.clone()))
        return own(images, queries, task_index, train)

    learner.embed_batch = embed_batch
    learner.learn(task)
    # The augmented view needs no cached training queries: none were extracted or read.
    assert (ctx.cache.stats.extracted + ctx.cache.stats.hits == 0) == (view == "train")
    cached = ctx.frozen_features(task.train)
    for of_images, queries in seen:
        # "train": the frozen network on the augmented batch itself (PILOT's query);
        # "test": cached test-view features, which no augmented batch reproduces.
        on_batch = torch.allclose(queries, of_images, atol=1e-5)
        assert on_batch == (view == "train")
        assert any(torch.allclose(q, c, atol=1e-5) for q in queries[:1] for c in cached) == (
            view == "test"
        )


def test_prompt_methods_keep_their_training_logs():
    learner = CODAPrompt(pool_size=4, num_tasks=2, train={"epochs": 3, "batch_size": 8})
    learner.setup(tiny_context(DEPTH))
    for i in range(2):
        learner.learn(synthetic_task(i, [2 * i, 2 * i + 1], 2 * i + 2, per_class=4)[0])
    logs = learner.extra_results()["train_logs"]
    assert [len(task) for task in logs] == [3, 3]  # per task, one record per epoch
    assert all(e["loss"] > 0 and 0 <= e["accuracy"] <= 1 for task in logs for e in task)
    # The rate each epoch trained at, on the quarter cosine: 1, cos(99 pi / 400), then 1.6 %.
    second, last = math.cos(99 * math.pi / 400), math.cos(99 * math.pi / 200)
    assert [e["lr"] for e in logs[0]] == pytest.approx([0.001, 0.001 * second, 0.001 * last])


def test_coda_refuses_more_tasks_than_its_split():
    learner = CODAPrompt(pool_size=4, num_tasks=2, train={"epochs": 1, "batch_size": 8})
    learner.setup(tiny_context(DEPTH))
    tasks = [synthetic_task(i, [2 * i, 2 * i + 1], 2 * i + 2, per_class=4)[0] for i in range(3)]
    learner.learn(tasks[0])
    learner.learn(tasks[1])
    with pytest.raises(ConfigError, match="num_tasks"):
        learner.learn(tasks[2])


def test_ease_trains_with_the_head_it_is_given():
    from clbench.methods.heads import CosineHead

    with pytest.raises(ConfigError, match="unknown head"):
        EASE(head="mlp")
    for kind, cls in (("linear", torch.nn.Linear), ("cosine", CosineHead)):
        learner = EASE(bottleneck=4, head=kind, train=FAST)
        learner.setup(tiny_context(DEPTH))
        learner.learn(synthetic_task(0, [0, 1, 2], 3, per_class=4)[0])
        head = learner.new_head(3)
        assert type(head) is cls and head.weight.shape == (3, learner.net.feature_dim)


# -- tiny runs --------------------------------------------------------------------------------
FAST = {"epochs": 1, "batch_size": 8}
TINY = {
    "ranpac": lambda: RanPAC(projection_dim=64, bottleneck=4, train=FAST),
    "ease": lambda: EASE(bottleneck=4, train=FAST),
    "slca": lambda: SLCA(align_epochs=1, samples_per_class=8, train=FAST),
    "l2p": lambda: L2P(pool_size=4, top_k=2, length=2, train=FAST),
    "dualprompt": lambda: DualPrompt(pool_size=3, train=FAST),
    "coda_prompt": lambda: CODAPrompt(pool_size=6, num_tasks=2, train=FAST),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_method_learns_two_tiny_tasks(name):
    torch.manual_seed(0)
    learner = TINY[name]()
    learner.setup(tiny_context(DEPTH))
    first, test0 = synthetic_task(0, [0, 1, 2], 3, per_class=6)
    second, test1 = synthetic_task(1, [3, 4], 5, per_class=6, seed=1)
    learner.learn(first)
    assert learner.predict(test0).shape == (len(test0.keys), 3)
    learner.learn(second)
    scores = learner.predict(test1)
    assert scores.shape == (len(test1.keys), 5)
    assert torch.isfinite(scores).all()
    assert learner.trainable_parameters() > 0


def test_prompt_methods_select_prompts_from_the_query():
    learner = DualPrompt(pool_size=3, train={"epochs": 1, "batch_size": 8})
    learner.setup(tiny_context(DEPTH))
    first, test0 = synthetic_task(0, [0, 1], 2, per_class=4)
    learner.learn(first)
    learner.predict(test0)
    queries = learner.ctx.frozen_features(test0)
    sims = F.normalize(queries, dim=1) @ F.normalize(learner.pool.keys.detach().cpu(), dim=1).T
    # The last batch's selection at test time is the nearest key of each query.
    tail = learner.last_selection.cpu()
    assert torch.equal(tail, sims.argmax(dim=1)[-len(tail) :])


def test_prompt_methods_refuse_bad_options_clearly():
    with pytest.raises(ConfigError):
        L2P(pool_size=4, top_k=5)
    with pytest.raises(ConfigError):
        DualPrompt(g_layers=(0, 1), e_layers=(1, 2))
    with pytest.raises(ConfigError):
        CODAPrompt(length=3)
    learner = DualPrompt(e_layers=(2, 3, 9), train={"epochs": 1, "batch_size": 8})
    learner.setup(tiny_context(DEPTH))
    with pytest.raises(ConfigError, match="block 9"):
        learner.learn(synthetic_task(0, [0, 1], 2, per_class=2)[0])


def test_dualprompt_new_e_prompt_starts_from_the_previous_one():
    # PILOT's shared_prompt_pool (exps/dualprompt_inr.json): task t's E-prompt is task t-1's
    # copied at the start of task t; its key keeps its own initialisation.
    for carry in (True, False):
        torch.manual_seed(0)
        learner = DualPrompt(pool_size=3, carry_prompt=carry, train=FAST)
        learner.setup(tiny_context(DEPTH))
        learner.learn(synthetic_task(0, [0, 1], 2, per_class=4)[0])
        trained = learner.pool.prompts[0].detach().clone()
        fresh_key = learner.pool.keys[1].detach().clone()
        seen = {}
        own = learner.start_task

        def start_task(task, own=own, seen=seen, pool=learner.pool):
            own(task)
            seen["prompt"] = pool.prompts[1].detach().clone()
            seen["key"] = pool.keys[1].detach().clone()

        learner.start_task = start_task
        learner.learn(synthetic_task(1, [2, 3], 4, per_class=4, seed=1)[0])
        assert torch.equal(seen["prompt"], trained) is carry
        assert torch.equal(seen["key"], fresh_key)
