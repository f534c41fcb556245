"""``clbench list``: what is registered, with one-line descriptions."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clbench.registry import BACKBONES, METHODS, SCENARIOS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list",
        help="list scenarios, methods and backbones",
        description="List every registered scenario, method and backbone.",
    )
    p.add_argument(
        "kind", nargs="?", choices=["scenarios", "methods", "backbones"], help="only this kind"
    )
    p.set_defaults(func=list_command)


def list_command(args: argparse.Namespace) -> int:
    console = Console()
    for kind, registry in (
        ("scenarios", SCENARIOS),
        ("methods", METHODS),
        ("backbones", BACKBONES),
    ):
        if args.kind and args.kind != kind:
            continue
        methods = kind == "methods"
        table = Table(title=kind, show_header=methods, title_justify="left")
        table.add_column("name", style="bold")
        if methods:  # what each method serves, as the run checks before starting
            table.add_column("inputs")
            table.add_column("protocols")
        table.add_column("description")
        for entry in registry.entries():
            if methods:
                learner = entry.factory
                serves = sorted(learner.protocols) + (
                    ["(needs task id)"] if learner.needs_task_id else []
                )
                table.add_row(
                    entry.name,
                    "/".join(sorted(learner.modalities)),
                    ", ".join(s.replace("-incremental", "-IL") for s in serves),
                    escape(entry.description),
                )
            else:
                table.add_row(entry.name, escape(entry.description))
        console.print(table)
    return 0
