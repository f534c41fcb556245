"""Each scorer on hand cases: outputs -> one score in [0, 1] per sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clbench.data import Samples
from clbench.errors import ConfigError
from clbench.scoring import get_scorer, normalize_answer, score_outputs


def text(labels, answers=None, choices=None) -> Samples:
    n = len(labels)
    return Samples(
        "hand/test",
        [str(i) for i in range(n)],
        labels,
        prompts=["q"] * n,
        answers=answers,
        choices=choices,
    )


def test_classification_accuracy_is_argmax_equals_label():
    samples = Samples("hand/test", ["a", "b", "c"], [2, 0, 1])
    scores = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.4, 0.1], [0.9, 0.05, 0.05]])
    assert score_outputs("accuracy", scores, samples).tolist() == [1.0, 1.0, 0.0]


def test_multiple_choice_picks_the_highest_scored_choice_of_each_sample():
    samples = text([1, 0], choices=[("no", "yes"), ("red", "green", "blue")])
    outputs = [[-3.0, -1.0], [-2.0, -0.5, -4.0]]  # log-likelihoods, ragged
    assert score_outputs("multiple-choice", outputs, samples).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="sample 1 has 3 choices"):
        score_outputs("multiple-choice", [[-3.0, -1.0], [-2.0, -0.5]], samples)


def test_exact_match_normalises_case_punctuation_and_articles():
    assert normalize_answer("  The Answer, is: 42! ") == "answer is 42"
    samples = text([-1, -1, -1], answers=[("Paris",), ("a cat", "kitten"), ("4",)])
    outputs = ["paris.", "Kitten", "four"]
    assert score_outputs("exact-match", outputs, samples).tolist() == [1.0, 1.0, 0.0]


def test_rouge_l_takes_the_best_reference():
    samples = text([-1, -1], answers=[("the cat sat on the mat",), ("xyz", "a b c d")])
    scores = score_outputs("rouge-l", ["the cat sat on the mat", "a b"], samples)
    assert scores[0] == pytest.approx(1.0)
    # LCS "a b" of 2 tokens: precision 1, recall 2/4 -> F1 = 2/3, better than "xyz" (0)
    assert scores[1] == pytest.approx(2 / 3)
    assert get_scorer("rouge-l").integer is False and get_scorer("exact-match").integer


def test_unknown_scorer_and_wrong_output_count_are_refused():
    with pytest.raises(ConfigError, match="unknown scorer"):
        get_scorer("bleu")
    with pytest.raises(ValueError, match="2 outputs for 3 samples"):
        score_outputs("exact-match", ["a", "b"], text([-1] * 3, answers=[("a",)] * 3))
    assert np.all(score_outputs("exact-match", [], text([], answers=[])) == np.array([]))
