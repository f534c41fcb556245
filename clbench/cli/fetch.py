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
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds a silent connection is waited for before a retry (default 30)",
    )
    p.add_argument(
        "--retries", type=int, default=None, help="retries after a failed transfer (default 3)"
    )
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
        return _fetch(args.dataset, args.timeout, args.retries)


def _fetch(dataset: str | None, timeout_arg: float | None, retries_arg: int | None) -> int:
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
    from clbench import download
    from clbench.errors import ConfigError

    timeout = download.TIMEOUT if timeout_arg is None else timeout_arg
    retries = download.RETRIES if retries_arg is None else retries_arg
    if not (timeout > 0 and timeout != float("inf")) or retries < 0:
        raise ConfigError(
            f"--timeout must be > 0 seconds and --retries >= 0 (got {timeout:g}, {retries})",
            "e.g. --timeout 20 --retries 2",
        )
    print(f"{dataset}: {fetch_dataset(dataset, timeout=timeout, retries=retries)}")
    return 0
