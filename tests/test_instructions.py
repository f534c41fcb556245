"""Lifelong instruction tuning: LM backbone, readers, scenario, learners, metrics, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clbench import metrics
from clbench.backbones.language_models import CausalLM, convert_gguf
from clbench.context import RunContext
from clbench.data import Samples
from clbench.errors import ClbenchError, ConfigError, DataMissingError
from clbench.evaluator import Evaluator
from clbench.features import FeatureCache
from clbench.paths import using_data_root
from clbench.registry import create_method
from clbench.scoring import score_outputs
from tests.instruction_layouts import (
    bigbench_task,
    tiny_lm,
    write_bigbench_sdist,
    write_olora,
    write_superni,
    write_trace,
)

LEARNERS = ("zeroshot", "seqlora", "replay", "olora", "multitask")
FAST = {"train": {"epochs": 1, "batch_size": 4, "lr": 5e-3}}


@pytest.fixture(autouse=True)
def _task_cache(tmp_path, monkeypatch):
    """Tasks read from fixture archives are cached under a temporary folder."""
    import clbench.scenarios.readers.bigbench as bigbench

    monkeypatch.setattr(bigbench, "cache_root", lambda: tmp_path / "cache")


@pytest.fixture
def archive(tmp_path):
    return write_bigbench_sdist(
        tmp_path / "bigbench-1.0.0.tar.gz",
        {
            "evens": bigbench_task("mc", 30, prefix="Answer yes or no."),
            "plus_one": bigbench_task("gen", 30),
            "held": bigbench_task("mc", 20),
        },
    )


def stream(archive, **options):
    from clbench.scenarios.instructions import bigbench_instruct

    sizes = {"train_per_task": 6, "test_per_task": 4, **options}
    return bigbench_instruct(tasks="evens,plus_one", heldout="held", archive=str(archive), **sizes)


# -- scorers on hand cases -------------------------------------------------------------------
def text_samples(answers, choices=None, labels=None):
    n = len(answers)
    return Samples(
        "hand/test",
        [str(i) for i in range(n)],
        labels if labels is not None else [-1] * n,
        prompts=["p"] * n,
        choices=choices,
        answers=answers,
    )


def test_scorers_on_hand_cases():
    mc = text_samples([("b",), ("a",)], choices=[("a", "b"), ("a", "b", "c")], labels=[1, 0])
    assert score_outputs("multiple-choice", [[-2.0, -1.0], [-3.0, -1.0, -5.0]], mc).tolist() == [
        1.0,
        0.0,
    ]
    gen = text_samples([("4",), ("Paris", "paris, France"), ("no",)])
    assert score_outputs("exact-match", ["4.", "The Paris", "yes"], gen).tolist() == [1, 1, 0]
    rouge = score_outputs(
        "rouge-l",
        ["the cat sat", "dog", "x"],
        text_samples([("the cat sat",), ("a cat",), ("the cat sat on it",)]),
    )
    assert rouge[0] == pytest.approx(1.0) and rouge[1] == 0.0 and rouge[2] == 0.0
    half = score_outputs("rouge-l", ["the cat"], text_samples([("the cat sat on",)]))
    assert half[0] == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # P = 1, R = 2/4


# -- the language-model backbone ---------------------------------------------------------
def test_batched_choice_scoring_equals_one_forward_per_choice():
    lm = tiny_lm(max_length=40)
    prompts = ["Q: Is the sky blue? A: ", "Count the apples: one", "x" * 90, "Q: fire?"]
    choices = [("yes", "no"), (" two", " three", " four four"), ("a", "bb"), ("no way",)]
    batched = lm.choice_logprobs(prompts, choices, batch_size=3)
    reference = lm.choice_logprobs_per_choice(prompts, choices)
    assert lm.truncation.prompts_cut > 0  # the 90-character prompt was cut to fit 40 tokens
    for got, want in zip(batched, reference, strict=True):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    # a different batching gives the same numbers
    for a, b in zip(lm.choice_logprobs(prompts, choices, batch_size=1), batched, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_greedy_generation_is_deterministic_and_batch_independent():
    lm = tiny_lm()
    prompts = ["Q: Is the sky blue? A:", "Count", "Definition: answer the question."]
    first = lm.generate(prompts, max_new_tokens=5, batch_size=3)
    assert first == lm.generate(prompts, max_new_tokens=5, batch_size=3)
    assert first == [lm.generate([p], max_new_tokens=5)[0] for p in prompts]


def test_an_answer_longer_than_the_context_is_refused():
    lm = tiny_lm(max_length=8)
    with pytest.raises(ConfigError, match="does not fit the context"):
        lm.prompt_and_answer("Q:", "yes " * 20)


def test_lora_leaves_outputs_unchanged_at_initialisation():
    from peft import LoraConfig, get_peft_model

    lm = tiny_lm()
    ids = torch.tensor([lm.encode("Q: Is the sky blue? A: yes")])
    before = lm.model(input_ids=ids).logits
    peft_model = get_peft_model(
        lm.fresh_copy().model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    assert sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n) > 0
    torch.testing.assert_close(peft_model(input_ids=ids).logits, before)


def test_answer_loss_equals_the_full_vocabulary_loss_on_right_padded_rows(monkeypatch):
    """The answer-positions-only loss of left-padded batches is the model's own loss."""
    from clbench.methods import lm_common

    lm = tiny_lm(max_length=40)
    pairs = [
        ("Q: Is the sky blue? A: ", "yes"),
        ("Count the apples: one", " two three four"),
        ("x" * 90, "bb"),  # cut from the left to fit 40 tokens
        ("Q: fire?", "no way"),
        ("", "yes"),  # nothing predicts the answer's first token: skipped, as transformers does
    ]
    ((ids, mask, positions, labels),) = list(lm_common.lm_batches(lm, pairs, 5, seed=0))
    assert (mask[:, -1] == 1).all() and (labels[:, -1] == lm.tokenizer.eos_token_id).all()
    # the same rows right-padded, the way the model's own labels= loss expects them
    order = torch.argsort(1 - mask, dim=1, stable=True)
    right = [t.gather(1, order) for t in (ids, mask, labels)]
    want = lm.model(input_ids=right[0], attention_mask=right[1], labels=right[2]).loss
    got = lm_common.answer_loss(lm.model, ids, mask, positions, labels)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # a batch whose widest row has an empty prompt: its first answer token is at column 0
    alone = list(lm_common.lm_batches(lm, [("", "yes")], 1, seed=0))[0]
    assert alone[3][0, 0] != lm_common.IGNORE
    own = lm.model(input_ids=alone[0], attention_mask=alone[1], labels=alone[3]).loss
    torch.testing.assert_close(lm_common.answer_loss(lm.model, *alone), own, atol=1e-5, rtol=1e-5)
    # and without logits_to_keep (models that do not take it) the number is the same
    monkeypatch.setattr(lm_common, "takes_logits_to_keep", lambda model: False)
    torch.testing.assert_close(lm_common.answer_loss(lm.model, ids, mask, positions, labels), got)
    # only the answer positions were projected: a model that keeps everything would differ
    kept = []
    original = lm.model.forward

    def spy(*args, **kwargs):
        kept.append(kwargs.get("logits_to_keep"))
        return original(*args, **kwargs)

    monkeypatch.setattr(lm_common, "takes_logits_to_keep", lambda model: True)
    monkeypatch.setattr(lm.model, "forward", spy)
    lm_common.answer_loss(lm.model, ids, mask, positions, labels)
    longest_answer = int((labels != lm_common.IGNORE).sum(1).max())
    assert kept == [longest_answer + 1]


def test_an_unreadable_gguf_gets_one_message(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ClbenchError, match="cannot read the GGUF"):
        convert_gguf(bad, tmp_path / "converted", "fixture")
    assert not (tmp_path / "converted").exists()


def test_an_unknown_hugging_face_model_is_a_config_error(tmp_path, monkeypatch):
    from clbench.registry import create_backbone

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="cannot load the causal LM"):
        create_backbone("hf", model=str(tmp_path / "no-such-model"))


def test_a_local_hugging_face_folder_loads_with_its_revision(tmp_path):
    from clbench.registry import create_backbone

    lm = tiny_lm()
    lm.model.save_pretrained(tmp_path / "tiny")
    lm.tokenizer.save_pretrained(tmp_path / "tiny")
    loaded = create_backbone("hf", model=str(tmp_path / "tiny"))
    assert isinstance(loaded, CausalLM) and loaded.revision.startswith("local:")
    ids = torch.tensor([lm.encode("Q: yes")])
    torch.testing.assert_close(loaded.model(input_ids=ids).logits, lm.model(input_ids=ids).logits)


# -- BIG-bench reader and the scenario ---------------------------------------------------
def test_bigbench_tasks_are_read_from_the_archive_with_their_own_prefix(archive):
    from clbench.scenarios.readers.bigbench import read_bigbench

    evens, plus = read_bigbench(["evens", "plus_one"], archive)
    assert evens.scorer == "multiple-choice" and plus.scorer == "exact-match"
    first = evens.examples[0]
    assert first.prompt == "Answer yes or no.\nQ: Is 0 even?\n  choice: yes\n  choice: no\nA: "
    assert first.choices == ("yes", "no") and first.answers == ("yes",)
    assert plus.examples[3].answers == ("4",) and plus.examples[3].prompt.endswith("\nA: ")


def test_choices_are_shown_in_bigbench_order_not_the_files(tmp_path):
    """Task files often list the correct choice first; BIG-bench shows them sorted and
    permuted by RandomState(42) (json_task.default_format_fn), and so must clbench,
    or a tuned model learns to pick the first listed choice."""
    from clbench.scenarios.readers.bigbench import read_bigbench

    scores = {"d": 1, "c": 0, "b": 0, "a": 0}  # the correct choice first, as in physics
    task = {"examples": [{"input": f"q{i}", "target_scores": scores} for i in range(3)]}
    archive = write_bigbench_sdist(tmp_path / "bb.tar.gz", {"first": task})
    (parsed,) = read_bigbench(["first"], archive)
    shown = [np.random.RandomState(42).permutation(sorted(scores))]  # BIG-bench's own call
    for example in parsed.examples:
        assert example.choices == tuple(shown[0]) == ("b", "d", "a", "c")
        assert example.prompt.endswith("choice: b\n  choice: d\n  choice: a\n  choice: c\nA: ")
        assert example.answers == ("d",) and example.choices.index("d") == 1


def test_malformed_and_missing_bigbench_tasks_get_one_message(tmp_path):
    from clbench.scenarios.readers.bigbench import read_bigbench

    bad = write_bigbench_sdist(
        tmp_path / "bad.tar.gz", {"broken": b'{"examples": [', "empty": {"examples": []}}
    )
    with pytest.raises(ClbenchError, match="not valid JSON"):
        read_bigbench(["broken"], bad)
    with pytest.raises(ClbenchError, match="has no examples"):
        read_bigbench(["empty"], bad)
    with pytest.raises(ConfigError, match="no BIG-bench JSON task named nope"):
        read_bigbench(["nope"], bad)


def test_the_stream_has_a_fixed_disjoint_split_and_heldout_tasks(archive):
    scenario = stream(archive)
    assert [t.name for t in scenario.tasks] == ["evens", "plus_one"]
    assert [t.name for t in scenario.heldout] == ["held"]
    assert scenario.setting == "instruction" and scenario.default_backbone == "smollm2-135m"
    for task in [*scenario.tasks, *scenario.heldout]:
        assert not set(task.train.keys) & set(task.test.keys)
        assert len(task.train) == 6 and len(task.test) == 4
    # a smaller run tests on a prefix of the same test pool
    from clbench.scenarios.instructions import bigbench_instruct

    smaller = bigbench_instruct(
        tasks="evens", heldout="", train_per_task=3, test_per_task=2, archive=str(archive)
    )
    assert list(smaller.tasks[0].test.keys) == list(scenario.tasks[0].test.keys[:2])
    assert scenario.split_hash == stream(archive).split_hash
    mc = scenario.tasks[0].test
    assert all(mc.choices[i][mc.labels[i]] == mc.answers[i][0] for i in range(len(mc)))


def test_a_validation_run_trains_on_the_same_examples_and_never_reads_the_test_set(
    archive, tmp_path
):
    from clbench.scenarios.instructions import trace
    from clbench.scenarios.readers.instruction_benchmarks import TRACE_TASKS

    test_run, val_run = stream(archive), stream(archive, evaluate_on="validation")
    assert val_run.protocol["evaluate_on"] == "validation"
    assert test_run.protocol["evaluate_on"] == "test"
    pairs = zip(
        [*test_run.tasks, *test_run.heldout], [*val_run.tasks, *val_run.heldout], strict=True
    )
    for t, v in pairs:
        assert list(v.train.keys) == list(t.train.keys)
        assert len(v.test) == 4 and v.test.source.endswith("/validation")
        assert not set(v.test.keys) & (set(t.test.keys) | set(t.train.keys))
    assert val_run.split_hash != test_run.split_hash
    # 6 + 10 do not fit a training pool of 15: refused, with the fix
    with pytest.raises(ConfigError, match="exceed its training pool of 15"):
        stream(archive, evaluate_on="validation", test_per_task=10)
    with pytest.raises(ConfigError, match="is not one of test, validation"):
        stream(archive, evaluate_on="dev")
    # sources with their own train/test files carve validation from their train file
    write_trace(tmp_path, TRACE_TASKS, n=6)
    with using_data_root(tmp_path):
        own_test = trace(train_per_task=3, test_per_task=2)
        own_val = trace(train_per_task=3, test_per_task=2, evaluate_on="validation")
    for t, v in zip(own_test.tasks, own_val.tasks, strict=True):
        assert list(v.train.keys) == list(t.train.keys)
        assert not set(v.test.keys) & set(t.train.keys)
        assert set(v.test.keys) != set(t.test.keys)


def test_a_task_both_trained_and_held_out_is_refused(archive):
    from clbench.scenarios.instructions import bigbench_instruct

    with pytest.raises(ConfigError, match="both trained on and held out"):
        bigbench_instruct(tasks="evens", heldout="evens", archive=str(archive))


# -- readers of users' benchmarks ----------------------------------------------------------
def test_trace_reader_reads_its_layout_and_says_what_is_missing(tmp_path):
    from clbench.scenarios.instructions import trace
    from clbench.scenarios.readers.instruction_benchmarks import TRACE_TASKS

    with using_data_root(tmp_path), pytest.raises(DataMissingError, match="TRACE"):
        trace()
    write_trace(tmp_path, TRACE_TASKS)
    with using_data_root(tmp_path):
        scenario = trace(train_per_task=3, test_per_task=2)
    assert [t.name for t in scenario.tasks] == list(TRACE_TASKS)
    assert scenario.tasks[2].scorer == "rouge-l" and scenario.tasks[1].scorer == "exact-match"
    assert len(scenario.tasks[0].train) == 3 and scenario.tasks[0].test.answers[0][0] in {
        "a0",
        "a1",
    }


def test_olora_reader_builds_the_standard_orders(tmp_path):
    from clbench.scenarios.instructions import olora_benchmark
    from clbench.scenarios.readers.instruction_benchmarks import OLORA_ORDERS, OLORA_TASKS

    with using_data_root(tmp_path), pytest.raises(DataMissingError, match="O-LoRA"):
        olora_benchmark()
    write_olora(tmp_path, OLORA_TASKS)
    with using_data_root(tmp_path):
        first = olora_benchmark("order1", train_per_task=2, test_per_task=2)
        long = olora_benchmark("order4", train_per_task=2, test_per_task=2)
        with pytest.raises(ConfigError, match="unknown O-LoRA task"):
            olora_benchmark("order9")
    assert [t.name for t in first.tasks] == ["dbpedia", "amazon", "yahoo", "agnews"]
    assert len(long.tasks) == 15 and set(OLORA_ORDERS["order4"]) == set(OLORA_TASKS)
    prompt = first.tasks[3].test.prompts[0]
    assert prompt.startswith("What is the topic") and "Option: World, Sports" in prompt
    assert first.tasks[0].scorer == "exact-match"


def test_superni_reader_uses_definition_and_two_positive_examples(tmp_path):
    from clbench.scenarios.instructions import superni

    names = ["task1_greeting", "task2_greeting"]
    write_superni(tmp_path, names)
    order = tmp_path / "order1.txt"
    order.write_text("\n".join(reversed(names)) + "\n")
    with using_data_root(tmp_path):
        scenario = superni(tasks=str(order), train_per_task=2, test_per_task=2)
        with pytest.raises(DataMissingError, match="task9_missing"):
            superni(tasks="task9_missing")
    assert [t.name for t in scenario.tasks] == list(reversed(names))
    prompt = scenario.tasks[0].test.prompts[0]
    assert prompt.startswith("Definition: Reply to the greeting.")
    assert "Positive Example 2-" in prompt and "Positive Example 3-" not in prompt
    assert scenario.tasks[0].scorer == "rouge-l"


def test_a_malformed_benchmark_file_names_the_file(tmp_path):
    from clbench.scenarios.instructions import trace
    from clbench.scenarios.readers.instruction_benchmarks import TRACE_TASKS

    write_trace(tmp_path, TRACE_TASKS)
    (tmp_path / "TRACE" / "FOMC" / "test.json").write_text('[{"prompt": "x"}]')
    with using_data_root(tmp_path), pytest.raises(ClbenchError, match="FOMC/test.json record 0"):
        trace()


# -- metrics ----------------------------------------------------------------------------
def test_instruction_metrics_on_a_hand_matrix():
    acc = np.array([[0.8, 0.3], [0.6, 0.9]])
    initial = np.array([0.5, 0.2, 0.4, 0.6])  # two stream tasks, two held-out
    heldout = np.array([[0.4, 0.5], [0.3, 0.4]])
    out = metrics.instruction_metrics(acc, initial, heldout)
    assert out["op"] == pytest.approx(0.75)
    assert out["bwt"] == pytest.approx(-0.2)
    assert out["fwt_zero_shot"] == pytest.approx(0.3 - 0.2)
    assert out["forgetting_avalanche"] == pytest.approx(0.2)
    assert out["retention"] == pytest.approx(0.35 - 0.5)
    assert out["zero_shot_mean"] == pytest.approx(0.35)


# -- every learner on the whole stream ----------------------------------------------------
def run_stream(archive, method, tmp_path, checkpoint_dir=None, resume=False):
    scenario = stream(archive)
    options = {} if method == "zeroshot" else dict(FAST)
    learner = create_method(method, **options)
    ctx = RunContext(backbone=tiny_lm(), cache=FeatureCache(tmp_path / "f"), batch_size=4)
    evaluation = Evaluator(scenario, learner, ctx, checkpoint_dir).run(resume=resume)
    return scenario, learner, evaluation


@pytest.mark.parametrize("method", LEARNERS)
def test_every_learner_runs_the_whole_stream(method, archive, tmp_path):
    scenario, learner, evaluation = run_stream(archive, method, tmp_path)
    assert evaluation.scores.shape == (2, 2) and np.isfinite(evaluation.scores).all()
    assert evaluation.initial.shape == (3,) and evaluation.heldout.shape == (2, 1)
    if method == "zeroshot":
        # nothing is learned: every row equals the zero-shot scores
        assert (evaluation.scores == evaluation.initial[:2]).all()
        assert evaluation.trainable_parameters == [0, 0]
    else:
        assert evaluation.trainable_parameters[-1] > 0
        assert all(len(log) == 1 for log in learner.logs)
    examples = learner.extra_results()["examples"]
    assert {e["task"] for e in examples} == {"evens", "plus_one", "held"}
    assert set(examples[0]) == {"task", "prompt", "output", "reference"}
    _, _, again = run_stream(archive, method, tmp_path)
    np.testing.assert_array_equal(evaluation.scores, again.scores)  # same seed, same matrix


def test_zeroshot_is_tested_once_per_task_and_reused(archive, tmp_path, monkeypatch):
    """A static learner's answers cannot change: each test set is scored once (before
    learning), and every later step reuses them, on_tested included."""
    from clbench.methods.lm_baselines import ZeroShot

    calls, tested = [], []
    predict, on_tested = ZeroShot.predict, ZeroShot.on_tested
    monkeypatch.setattr(
        ZeroShot,
        "predict",
        lambda self, inputs, task_id=None: calls.append(1) or predict(self, inputs),
    )
    monkeypatch.setattr(
        ZeroShot,
        "on_tested",
        lambda self, step, index, samples, outputs: (
            tested.append((step, index)) or on_tested(self, step, index, samples, outputs)
        ),
    )
    _, _, evaluation = run_stream(archive, "zeroshot", tmp_path)
    assert len(calls) == 3  # two stream tasks and one held-out task, once each
    assert len(tested) == 3 + 2 * 3  # before learning, then every task after each step
    assert (evaluation.scores == evaluation.initial[:2]).all()
    assert (evaluation.heldout == evaluation.initial[2:]).all()


def test_olora_adds_one_frozen_adapter_per_task(archive, tmp_path):
    _, learner, evaluation = run_stream(archive, "olora", tmp_path)
    assert learner.adapters == ["task0", "task1"]
    per_adapter = sum(p.numel() for p in learner.lora_parameters("task0").values())
    assert evaluation.trainable_parameters == [per_adapter, 2 * per_adapter]
    assert not any(p.requires_grad for p in learner.lora_parameters("task0").values())


def test_olora_penalty_is_zero_for_orthogonal_subspaces():
    from clbench.methods.olora import orthogonality_penalty

    eye = torch.eye(4)
    assert orthogonality_penalty([eye[:2]], [[eye[2:]]]) == 0
    assert orthogonality_penalty([eye[:2]], [[eye[1:3]]]) == 1


def test_lora_learners_resume_to_the_same_numbers(archive, tmp_path):
    _, _, whole = run_stream(archive, "replay", tmp_path)
    ckpt = tmp_path / "ckpt"

    class Interrupted(Exception):
        pass

    def stop_after_first(step, _result):
        if step == 0:
            raise Interrupted

    learner = create_method("replay", **FAST)
    ctx = RunContext(backbone=tiny_lm(), cache=FeatureCache(tmp_path / "f"), batch_size=4)
    with pytest.raises(Interrupted):  # the run stops after task 0, its checkpoint written
        Evaluator(stream(archive), learner, ctx, ckpt, stop_after_first).run()
    saved = torch.load(next(ckpt.glob("task*.pt")), weights_only=False)
    assert "lora" in saved["learner"] and not any(
        "base_layer" in k for k in saved["learner"]["lora"]
    )
    _, _, resumed = run_stream(archive, "replay", tmp_path, ckpt, resume=True)
    assert resumed.resumed_from == 1
    np.testing.assert_allclose(resumed.scores, whole.scores)


def test_image_methods_are_refused_on_text_streams(archive):
    from clbench.evaluator import check_compatible

    with pytest.raises(ConfigError, match="text inputs"):
        check_compatible(create_method("simplecil"), stream(archive), "simplecil")


# -- the CLI ------------------------------------------------------------------------------
def test_clbench_run_on_a_text_stream_prints_the_summary(archive, tmp_path, monkeypatch, capsys):
    from clbench.cli import main
    from clbench.registry import BACKBONES, Entry

    BACKBONES.names()  # load the registry before replacing one entry
    tiny = Entry("smollm2-135m", lambda max_length=512: tiny_lm(), "tiny stand-in")
    monkeypatch.setitem(BACKBONES._entries, "smollm2-135m", tiny)
    monkeypatch.setenv("COLUMNS", "200")  # rich would wrap the summary lines otherwise
    code = main(
        [
            "run", "--scenario", "bigbench-instruct", "--method", "seqlora",
            "--set", f"scenario.archive={archive}", "--set", "scenario.tasks=evens,plus_one",
            "--set", "scenario.heldout=held", "--set", "scenario.train_per_task=4",
            "--set", "scenario.test_per_task=2", "--set", "train.epochs=1",
            "--results-dir", str(tmp_path / "runs"),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "general-ability retention" in out and "OP " in out
    stored = json.loads(next((tmp_path / "runs").rglob("*.json")).read_text())
    assert stored["scorers"] == ["multiple-choice", "exact-match"]
    assert stored["backbone"] == "tiny-llama"
    assert "retention" in stored["metrics"] and stored["extra"]["heldout"]["tasks"] == ["held"]
    assert stored["extra"]["truncation"]["rule"].startswith("prompt cut from the left")


def test_clbench_run_with_an_unknown_model_exits_2(archive, capsys, monkeypatch):
    from clbench.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(
        [
            "run", "--scenario", "bigbench-instruct", "--method", "zeroshot",
            "--backbone", "hf:/no/such/folder", "--set", f"scenario.archive={archive}",
            "--set", "scenario.tasks=evens", "--set", "scenario.heldout=", "--no-store",
        ]
    )  # fmt: skip
    assert code == 2
    assert "cannot load the causal LM" in capsys.readouterr().err


# -- the real SmolLM2 -------------------------------------------------------------------
@pytest.mark.integration
def test_seqlora_on_the_real_smollm2_and_bigbench(tmp_path):
    from clbench.runner import RunSpec, run
    from clbench.scenarios.readers.bigbench import BIGBENCH

    if not (BIGBENCH.folder / ".complete").exists():
        pytest.skip("run `clbench setup` first (fetches bigbench and SmolLM2)")
    spec = RunSpec(
        scenario="bigbench-instruct",
        method="seqlora",
        backbone=None,
        method_options={"train": {"epochs": 2, "batch_size": 4}},
        scenario_options={
            "tasks": "metaphor_boolean,object_counting",
            "heldout": "physics",
            "train_per_task": 8,
            "test_per_task": 8,
        },
    )
    result = run(spec)
    assert result.backbone == "smollm2-135m"
    assert result.scorers == ["multiple-choice", "exact-match"]
    # rank 8 on q_proj (576 -> 576) and v_proj (576 -> 192, 3 KV heads) in 30 layers
    assert result.trainable_parameters == [30 * 8 * ((576 + 576) + (576 + 192))] * 2
    for log in result.extra["train_logs"]:  # the adapter learns: the answer loss falls
        assert log[-1]["loss"] < log[0]["loss"] and log[0]["accuracy"] is None
    before, held = result.extra["before_learning"], result.extra["heldout"]
    assert before["tasks"] == ["metaphor_boolean", "object_counting", "physics"]
    assert len(held["score_sums"]) == 2 and held["test_counts"] == [8]
    retention = (held["score_sums"][-1][0] - before["score_sums"][-1]) / 8
    assert result.metrics["retention"] == pytest.approx(retention)
    for example in result.extra["examples"]:
        if example["task"] == "metaphor_boolean":  # a choice of its own prompt
            assert f"choice: {example['output']}" in example["prompt"]
