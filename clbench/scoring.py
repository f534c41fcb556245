"""Task scorers: a learner's outputs on a test set -> one score in [0, 1] per sample.

Each task names its scorer. The evaluator sums the per-sample scores into row t
of the score-sum matrix; for ``accuracy`` (and ``multiple-choice``) the sums are
integer correct counts, as every metric convention expects. Scorers read the
truth from the full ``Samples``; the learner only ever saw ``samples.inputs()``.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch

from clbench.data import OutputKind, Samples
from clbench.errors import ConfigError


@dataclass(frozen=True)
class Scorer:
    name: str
    output: OutputKind
    """What the learner must return for a task with this scorer."""
    integer: bool
    """Whether per-sample scores are 0/1 (the score sums are then correct counts)."""
    score: Callable[[Any, Samples], np.ndarray]
    description: str


def _argmax_rows(outputs: Any) -> np.ndarray:
    """Row-wise argmax of a score tensor, or of one score sequence per sample."""
    if isinstance(outputs, torch.Tensor):
        return outputs.argmax(dim=1).cpu().numpy()
    return np.array([int(np.argmax(np.asarray(row, dtype=float))) for row in outputs], dtype=int)


def classification_accuracy(outputs: torch.Tensor, samples: Samples) -> np.ndarray:
    """1 where the highest-scored class is the label."""
    return (_argmax_rows(outputs) == samples.labels).astype(float)


def multiple_choice_accuracy(outputs: Sequence[Sequence[float]], samples: Samples) -> np.ndarray:
    """1 where the highest-scored answer choice is the correct one (``labels``)."""
    if samples.choices is not None:
        widths = [len(c) for c in samples.choices]
        got = [len(row) for row in outputs]
        if got != widths:
            bad = next(i for i, (a, b) in enumerate(zip(got, widths, strict=True)) if a != b)
            raise ValueError(
                f"sample {bad} has {widths[bad]} choices but the learner scored {got[bad]}"
            )
    return (_argmax_rows(outputs) == samples.labels).astype(float)


def normalize_answer(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _references(samples: Samples) -> np.ndarray:
    if samples.answers is None:
        raise ValueError("this scorer needs reference answers, and the samples have none")
    return samples.answers


def exact_match(outputs: Sequence[str], samples: Samples) -> np.ndarray:
    """1 where the generated text equals any reference after normalisation."""
    return np.array(
        [
            float(any(normalize_answer(out) == normalize_answer(ref) for ref in refs))
            for out, refs in zip(outputs, _references(samples), strict=True)
        ]
    )


@cache
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(outputs: Sequence[str], samples: Samples) -> np.ndarray:
    """ROUGE-L F-measure against the best-matching reference (``rouge-score`` package)."""
    scorer = _rouge()
    return np.array(
        [
            max(scorer.score(ref, out)["rougeL"].fmeasure for ref in refs)
            for out, refs in zip(outputs, _references(samples), strict=True)
        ]
    )


SCORERS: dict[str, Scorer] = {
    s.name: s
    for s in (
        Scorer(
            "accuracy",
            "class-scores",
            True,
            classification_accuracy,
            "argmax of the class scores equals the label",
        ),
        Scorer(
            "multiple-choice",
            "choice-scores",
            True,
            multiple_choice_accuracy,
            "the highest-scored answer choice is the correct one",
        ),
        Scorer(
            "exact-match",
            "text",
            True,
            exact_match,
            "generated text equals a reference (normalised)",
        ),
        Scorer("rouge-l", "text", False, rouge_l, "ROUGE-L F1 against the best reference"),
    )
}


def get_scorer(name: str) -> Scorer:
    if name not in SCORERS:
        raise ConfigError(f"unknown scorer {name!r}", f"use one of {', '.join(SCORERS)}")
    return SCORERS[name]


def score_outputs(name: str, outputs: Any, samples: Samples) -> np.ndarray:
    """Per-sample scores in [0, 1]; checks there is one output per sample."""
    if len(outputs) != len(samples):
        raise ValueError(f"{len(outputs)} outputs for {len(samples)} samples")
    scores = get_scorer(name).score(outputs, samples)
    if scores.shape != (len(samples),) or not np.all((scores >= 0) & (scores <= 1)):
        raise ValueError(f"scorer {name!r} produced scores outside [0, 1]")
    return scores
