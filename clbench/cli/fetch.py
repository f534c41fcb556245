"""``clbench fetch``: download a standard benchmark into the data root."""

from __future__ import annotations

import argparse
import importlib
import pkgutil

from rich.console import Console
from rich.table import Table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fetch",
        help="download a standard dataset into the data root",
        description="Download a standard benchmark from its public source (resuming an interrupted "
        "download, verifying its checksum) and unpack it under the data root. Without a name, list "
        "the datasets, where each is looked for, and whether it is present.",
    )
    p.add_argument(
        "dataset", nargs="?", help="dataset name (see `clbench fetch` without arguments)"
    )
    p.add_argument("--data-root", default=None, help="folder for the datasets (also $CLBENCH_DATA)")
    p.set_defaults(func=fetch_command)


def _catalogue() -> dict:
    import clbench.scenarios.readers as readers
    from clbench.scenarios.readers.base import DATASETS

    for module in pkgutil.iter_modules(readers.__path__):
        importlib.import_module(f"{readers.__name__}.{module.name}")
    return DATASETS


def fetch_command(args: argparse.Namespace) -> int:
    from clbench.paths import using_data_root

    with using_data_root(args.data_root):
        return _fetch(args.dataset)


def _fetch(dataset: str | None) -> int:
    from clbench.paths import data_root
    from clbench.scenarios.readers.base import fetch_dataset

    datasets = _catalogue()
    if dataset is None:
        root = data_root()
        table = Table(title=f"datasets (data root {root})", title_justify="left")
        for column in ("name", "dataset", "present", "source"):
            table.add_column(column)
        for name, spec in sorted(datasets.items()):
            present = "yes" if spec.is_present(root) else "no"
            source = f"manual: {spec.page}" if spec.manual else spec.files[0].url
            table.add_row(name, spec.title, present, source)
        Console().print(table)
        return 0
    print(f"{dataset}: {fetch_dataset(dataset)}")
    return 0
