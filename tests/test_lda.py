"""The LDA head from running statistics: exact against the batch solution, close to Avalanche's SLDA."""

from __future__ import annotations

import pytest
import torch

from clbench.errors import ConfigError
from clbench.methods.lda import LDALearner

D, CLASSES = 12, 6


def blobs(n_per_class: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(CLASSES, D, generator=g)
    mixing = torch.randn(D, D, generator=g) / D**0.5 + torch.eye(D)  # correlated features
    labels = torch.arange(CLASSES).repeat_interleave(n_per_class)
    features = centres[labels] + torch.randn(len(labels), D, generator=g) @ mixing
    return features, labels


def absorb_in_tasks(learner: LDALearner, features, labels, splits=((0, 1), (2, 3, 4), (5,))):
    for classes in splits:
        mask = torch.isin(labels, torch.tensor(classes))
        learner.absorb(features[mask], labels[mask], max(classes) + 1)
    return learner


def batch_lda(features, labels, ridge: float):
    """The FSA reference head from all features at once: total covariance + ridge I."""
    x = features.double()
    means = torch.stack([x[labels == c].mean(0) for c in range(CLASSES)])
    sigma = torch.cov(x.T) + ridge * torch.eye(D, dtype=torch.float64)
    weight = torch.linalg.solve(sigma, means.T).T
    return weight, -0.5 * (weight * means).sum(1)


def test_incremental_head_equals_batch_head():
    features, labels = blobs()
    learner = absorb_in_tasks(LDALearner(covariance="total", ridge=1.0), features, labels)
    scores = learner.score(features)
    weight, bias = batch_lda(features, labels, ridge=1.0)
    torch.testing.assert_close(learner._head.weight, weight, rtol=0, atol=1e-5)
    torch.testing.assert_close(learner._head.bias, bias, rtol=0, atol=1e-5)
    expected = features.double() @ weight.T + bias
    torch.testing.assert_close(scores.double(), expected, rtol=1e-5, atol=1e-4)
    assert (scores.argmax(1) == labels).float().mean() > 0.9
    assert not any(
        isinstance(v, torch.Tensor) and v.shape[0] == len(features) for v in vars(learner).values()
    )


def test_within_class_covariance_and_shrinkage():
    features, labels = blobs(seed=1)
    learner = absorb_in_tasks(
        LDALearner(covariance="within", ridge=0.0, shrinkage=0.1), features, labels
    )
    learner.score(features[:1])
    x = features.double()
    centred = x - torch.stack([x[labels == c].mean(0) for c in range(CLASSES)])[labels]
    sigma = 0.9 * centred.T @ centred / len(x) + 0.1 * torch.eye(D, dtype=torch.float64)
    means = torch.stack([x[labels == c].mean(0) for c in range(CLASSES)])
    torch.testing.assert_close(
        learner._head.weight, torch.linalg.solve(sigma, means.T).T, rtol=0, atol=1e-5
    )


def test_agrees_with_avalanche_streaming_lda():
    """Avalanche's SLDA streams a within-class covariance (approximate for each class's first
    sample) and shrinks it by 1e-4; ours is exact with the same settings, so the decisions agree."""
    from clbench._compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    from avalanche.training import StreamingLDA
    from avalanche.training.plugins import EvaluationPlugin

    features, labels = blobs(n_per_class=60, seed=2)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    train, test = order[:240], order[240:]
    slda = StreamingLDA(
        slda_model=torch.nn.Identity(),
        criterion=torch.nn.CrossEntropyLoss(),
        input_size=D,
        num_classes=CLASSES,
        shrinkage_param=1e-4,
        evaluator=EvaluationPlugin(),
    )
    for i in train:
        slda.fit(features[i : i + 1], labels[i : i + 1])
    theirs = slda.predict(features[test])
    ours = LDALearner(covariance="within", ridge=0.0, shrinkage=1e-4)
    ours.absorb(features[train], labels[train], CLASSES)
    mine = ours.score(features[test])
    torch.testing.assert_close(ours.stats.means.float(), slda.muK, rtol=0, atol=1e-4)
    agreement = (mine.argmax(1) == theirs.argmax(1)).float().mean()
    assert agreement >= 0.97, agreement
    accuracy = (mine.argmax(1) == labels[test]).float().mean()
    assert abs(accuracy - (theirs.argmax(1) == labels[test]).float().mean()) <= 0.03


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="covariance"):
        LDALearner(covariance="diagonal")
    features, labels = blobs(n_per_class=1)  # 6 samples in 12 dimensions: singular without ridge
    learner = LDALearner(ridge=0.0)
    learner.absorb(features, labels, CLASSES)
    with pytest.raises(ConfigError, match="positive definite"):
        learner.score(features)
    with pytest.raises(ConfigError, match="shrinkage"):
        LDALearner(shrinkage=2.0)
