"""Domain-incremental scenarios: one fixed label set, a stream of domains.

Every task carries the full label set (``classes`` lists all of them, since
every class recurs), trains on one domain and, where the protocol has
per-domain test sets, tests on that domain. ``evaluate_unseen`` is set so each
domain is tested before it is learned too: the step accuracy covers the union
of seen domains and forward transfer is defined.
"""

from __future__ import annotations

import numpy as np

from clbench.data import LabelledData, Samples
from clbench.errors import ConfigError
from clbench.registry import register_scenario
from clbench.scenario import Scenario, Task
from clbench.scenarios.emoji import EMOJI_IMAGE_SIZE, FREE_VENDORS, read_emoji, shared_classes
from clbench.scenarios.readers.core50 import TEST_SESSIONS, TRAIN_SESSIONS, read_core50
from clbench.scenarios.readers.domainnet import DOMAINS, read_domainnet


def domain_incremental(
    domains: list[tuple[str, LabelledData]],
    name: str,
    protocol: dict | None = None,
    evaluate_unseen: bool = True,
) -> Scenario:
    """One task per ``(domain, data)`` in stream order; all share one label set."""
    if not domains:
        raise ConfigError(f"{name}: a domain-incremental stream needs at least one domain")
    class_names = domains[0][1].class_names
    for domain, data in domains:
        if data.class_names != class_names:
            raise ConfigError(
                f"{name}: domain {domain!r} has another label set than {domains[0][0]!r}",
                "read every domain with the same class list",
            )
    classes = np.arange(len(class_names))
    tasks = [
        Task(i, classes, len(class_names), data.train, data.test, domain)
        for i, (domain, data) in enumerate(domains)
    ]
    return Scenario(
        name=name,
        kind="domain-incremental",
        tasks=tasks,
        class_names=list(class_names),
        class_order=list(range(len(class_names))),
        protocol={"domains": [d for d, _ in domains], **(protocol or {})},
        evaluate_unseen=evaluate_unseen,
    )


def _empty_like(samples: Samples) -> Samples:
    return samples.subset(np.zeros(len(samples), dtype=bool))


@register_scenario("emoji-dil")
def emoji_dil(
    vendors: tuple[str, ...] | list[str] = FREE_VENDORS,
    min_per_class: int = 6,
    allow_proprietary: bool = False,
) -> Scenario:
    """Emoji subcategories, domain-incremental over vendor styles (Google then Twitter), held-out emoji as test (offline)."""
    vendors = tuple(vendors)
    shared = shared_classes(vendors, min_per_class, allow_proprietary)
    stream = [(v, read_emoji(v, min_per_class, allow_proprietary, classes=shared)) for v in vendors]
    return domain_incremental(
        stream,
        "emoji-dil",
        protocol={
            "image_size": EMOJI_IMAGE_SIZE,
            "vendors": list(vendors),
            "test": "the same half of each subcategory's emoji held out in every vendor",
        },
    )


@register_scenario("domainnet")
def domainnet(domains: tuple[str, ...] | list[str] = DOMAINS) -> Scenario:
    """DomainNet, 345 classes, domain-incremental real > quickdraw > painting > sketch > infograph > clipart; test on each domain's list."""
    data = read_domainnet(tuple(domains))
    return domain_incremental(
        [(d, data[d]) for d in domains],
        "domainnet",
        protocol={"image_size": 224, "test": "union of the per-domain test lists"},
    )


@register_scenario("core50")
def core50(
    train_sessions: tuple[int, ...] | list[int] = TRAIN_SESSIONS,
    test_sessions: tuple[int, ...] | list[int] = TEST_SESSIONS,
) -> Scenario:
    """CORe50, 50 objects, domain-incremental over sessions 1,2,4,5,6,8,9,11; test on held-out sessions 3,7,10."""
    data = read_core50(tuple(train_sessions), tuple(test_sessions))
    stream = []
    for i, session in enumerate(train_sessions):
        train = data.train.subset(data.train.domains == f"s{session}")
        # One shared held-out test set: it belongs to the first task, so each step's
        # accuracy over the seen tasks is the accuracy on exactly that set.
        test = data.test if i == 0 else _empty_like(data.test)
        stream.append((f"s{session}", LabelledData(data.name, data.class_names, train, test)))
    return domain_incremental(
        stream,
        "core50",
        evaluate_unseen=False,
        protocol={
            "image_size": 224,
            "test_sessions": list(test_sessions),
            "test": "held-out sessions, attached to task 0; later tasks have no test data of their own",
        },
    )
