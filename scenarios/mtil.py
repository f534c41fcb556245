"""Multi-domain streams for vision-language models: MTIL, X-TAIL, and an offline stream.

Each task is one dataset with its own label space; labels are made global by
offsetting each dataset's classes after the previous datasets' (``classes`` of
task t are its dataset's classes), and every task carries its class names, so a
CLIP-style learner builds prompts from them.

* ``mtil`` (ZSCL): Aircraft, Caltech101, CIFAR100, DTD, EuroSAT, Flowers, Food,
  MNIST, OxfordPet, Cars, SUN397; task-incremental (each dataset is tested on
  its own classes) and every dataset is tested after every step, also before it
  is learned (zero-shot), which the MTIL metrics need (Transfer / Average / Last,
  ``clbench.metrics.mtil_metrics``). ``shots=5`` is the few-shot variant.
* ``xtail``: the same without CIFAR100, 16 shots, and no domain id: a test
  image is classified over the classes the learner knows. Under clbench's
  contract a learner knows the names of the tasks it has learned only, so the
  zero-shot cells before a dataset is learned (the reference classifies over
  all datasets' classes from the start) are not tested: Last and the learned
  part of the matrix are comparable, Transfer is not.
* ``mtil-offline``: the same protocol on the offline data: emoji subcategories
  in the Google style, the same in the Twitter style, and Fashion-MNIST (each its
  own label space). With a random-init CLIP it shows the mechanics only.

Shots are drawn per class from the training split with a fixed seed
(``shot_seed``), part of the scenario, independent of the run's seed.
"""

from __future__ import annotations

import numpy as np

from clbench.data import LabelledData, Samples
from clbench.errors import ConfigError
from clbench.registry import register_scenario
from clbench.scenario import Scenario, Task
from clbench.scenarios.emoji import EMOJI_IMAGE_SIZE, read_emoji
from clbench.scenarios.readers.fashion_mnist import read_fashion_mnist
from clbench.scenarios.readers.mtil import MTIL_ORDER, PROMPT_TEMPLATES, XTAIL_ORDER

SHOT_SEED = 1


def per_class(samples: Samples, k: int | None, seed: int) -> Samples:
    """At most ``k`` samples of every class (all when ``k`` is None), drawn with ``seed``, sorted."""
    if k is None:
        return samples
    if k <= 0:
        raise ConfigError(f"shots must be positive, got {k}", "MTIL uses 5, X-TAIL 16")
    rng = np.random.RandomState(seed)
    chosen = []
    for label in np.unique(samples.labels):
        members = np.flatnonzero(samples.labels == label)
        chosen.append(members[rng.permutation(len(members))[:k]])
    return samples.subset(np.sort(np.concatenate(chosen)))


def multi_domain(
    datasets: list[tuple[str, LabelledData]],
    name: str,
    shots: int | None = None,
    test_per_class: int | None = None,
    shot_seed: int = SHOT_SEED,
    task_incremental: bool = True,
    evaluate_unseen: bool = True,
    protocol: dict | None = None,
    templates: dict[str, str] | None = None,
) -> Scenario:
    """One task per dataset, each with its own classes (offset into one global label range);
    ``templates`` gives a dataset's text prompt for its class names (on its Task)."""
    templates = templates or {}
    if not datasets:
        raise ConfigError(f"{name}: a multi-domain stream needs at least one dataset")
    tasks, names, offset = [], [], 0
    for index, (domain, data) in enumerate(datasets):
        n = data.num_classes
        shift = np.arange(n) + offset
        train = per_class(data.train, shots, shot_seed).relabel(shift)
        test = per_class(data.test, test_per_class, shot_seed).relabel(shift)
        classes = np.arange(offset, offset + n)
        tasks.append(
            Task(
                index,
                classes,
                offset + n,
                train,
                test,
                domain,
                class_names=tuple(data.class_names),
                name=domain,
                prompt_template=templates.get(domain),
            )
        )
        names += list(data.class_names)
        offset += n
    if templates:  # recorded where a protocol fixes them (MTIL, X-TAIL)
        protocol = {
            "prompt_templates": {d: templates.get(d) for d, _ in datasets},
            **(protocol or {}),
        }
    return Scenario(
        name=name,
        kind="class-incremental",
        tasks=tasks,
        class_names=names,
        class_order=list(range(offset)),
        protocol={
            "datasets": [d for d, _ in datasets],
            "shots": shots,
            "test_per_class": test_per_class,
            "shot_seed": shot_seed,
            "metrics": "mtil",
            **(protocol or {}),
        },
        task_incremental=task_incremental,
        evaluate_unseen=evaluate_unseen,
    )


def _datasets(names: list[str] | tuple[str, ...], allowed: list[str]) -> list[str]:
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ConfigError(f"unknown MTIL dataset(s) {unknown}", f"choose from {allowed}")
    return list(names)


@register_scenario("mtil")
def mtil(
    shots: int | None = None,
    datasets: tuple[str, ...] | list[str] = tuple(MTIL_ORDER),
    shot_seed: int = SHOT_SEED,
) -> Scenario:
    """MTIL (ZSCL): 11 datasets in sequence, each its own label space, zero-shot before learned; shots=5 for few-shot."""
    names = _datasets(datasets, list(MTIL_ORDER))
    stream = [(n, MTIL_ORDER[n]()) for n in names]
    return multi_domain(
        stream,
        "mtil",
        shots,
        shot_seed=shot_seed,
        protocol={"image_size": 224},
        templates=PROMPT_TEMPLATES,
    )


@register_scenario("xtail")
def xtail(
    shots: int | None = 16,
    datasets: tuple[str, ...] | list[str] = tuple(XTAIL_ORDER),
    shot_seed: int = SHOT_SEED,
) -> Scenario:
    """X-TAIL: 10 datasets (no CIFAR100), 16-shot, classified over all learned classes with no domain id."""
    names = _datasets(datasets, XTAIL_ORDER)
    stream = [(n, MTIL_ORDER[n]()) for n in names]
    return multi_domain(
        stream,
        "xtail",
        shots,
        shot_seed=shot_seed,
        task_incremental=False,
        evaluate_unseen=False,
        protocol={"image_size": 224},
        templates=PROMPT_TEMPLATES,
    )


@register_scenario("mtil-offline")
def mtil_offline(
    shots: int | None = 16, test_per_class: int | None = 20, shot_seed: int = SHOT_SEED
) -> Scenario:
    """MTIL protocol on offline data: emoji (Google), emoji (Twitter), Fashion-MNIST, each its own label space."""
    stream = [
        ("emoji-google", read_emoji("google")),
        ("emoji-twitter", read_emoji("twitter")),
        ("fashion-mnist", read_fashion_mnist()),
    ]
    return multi_domain(
        stream,
        "mtil-offline",
        shots,
        test_per_class,
        shot_seed,
        protocol={"image_size": EMOJI_IMAGE_SIZE},
    )
