"""DomainNet (345 classes, six domains) from the cleaned per-domain lists:
``domainnet/<domain>_{train,test}.txt`` with ``<domain>/<class>/<file> <label>`` lines,
images under ``domainnet/<domain>/``."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from clbench.data import LabelledData
from clbench.download import RemoteFile
from clbench.errors import ClbenchError
from clbench.paths import data_root
from clbench.scenarios.readers.base import DatasetSpec, declare, missing, samples

#: The protocol's domain order (S-Prompts, RanPAC).
DOMAINS = ("real", "quickdraw", "painting", "sketch", "infograph", "clipart")
BASE = "http://csr.bu.edu/ftp/visda/2019/multi-source"
#: Clipart and painting images come from the cleaned "groundtruth" release.
_IMAGES = {
    d: f"{BASE}/groundtruth/{d}.zip" if d in ("clipart", "painting") else f"{BASE}/{d}.zip"
    for d in DOMAINS
}

DOMAINNET = declare(
    DatasetSpec(
        "domainnet",
        "DomainNet",
        "domainnet/real_train.txt",
        files=tuple(
            [RemoteFile(_IMAGES[d], f"{d}.zip", into="domainnet") for d in DOMAINS]
            + [
                RemoteFile(
                    f"{BASE}/domainnet/txt/{d}_{part}.txt",
                    f"{d}_{part}.txt",
                    extract=False,
                    into="domainnet",
                )
                for d in DOMAINS
                for part in ("train", "test")
            ]
        ),
        note="about 19 GB; no published checksums, so files are checked by length only",
    )
)


def _read_list(root: Path, domain: str, part: str) -> tuple[list[str], list[int], dict[int, str]]:
    path = root / "domainnet" / f"{domain}_{part}.txt"
    if not path.exists():
        raise missing(DOMAINNET, root, [path])
    keys, labels, names = [], [], {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rel, label = line.rsplit(" ", 1)
        keys.append(f"domainnet/{rel}")
        labels.append(int(label))
        names.setdefault(int(label), rel.split("/")[1])
    return keys, labels, names


@cache
def _read(root: Path, domains: tuple[str, ...]) -> dict[str, LabelledData]:
    out: dict[str, tuple] = {}
    class_names: dict[int, str] = {}
    for domain in domains:
        parts = {}
        for part in ("train", "test"):
            keys, labels, names = _read_list(root, domain, part)
            class_names.update(names)
            parts[part] = samples(
                f"domainnet/{domain}/{part}", root, keys, labels, [domain] * len(keys)
            )
        out[domain] = (parts["train"], parts["test"])
    if sorted(class_names) != list(range(len(class_names))):
        raise ClbenchError(
            "the DomainNet lists do not cover labels 0..N-1", "re-fetch the txt lists"
        )
    ordered = [class_names[i] for i in range(len(class_names))]
    return {
        d: LabelledData(f"domainnet-{d}", ordered, *out[d], info={"domain": d}) for d in domains
    }


def read_domainnet(domains: tuple[str, ...] = DOMAINS) -> dict[str, LabelledData]:
    """One LabelledData per domain over the shared 345-class label set."""
    unknown = set(domains) - set(DOMAINS)
    if unknown:
        raise ClbenchError(
            f"unknown DomainNet domains {sorted(unknown)}", f"choose from {', '.join(DOMAINS)}"
        )
    root = data_root()
    if not (root / DOMAINNET.marker).exists():
        raise missing(DOMAINNET, root)
    return _read(root, tuple(domains))
