"""The front page: methods (rows) x scenarios (columns), one table per setting
(task id at test or not, never mixed) and accuracy convention; each cell Ā /
last, mean ± std over seeds and the number of seeds, the best Ā per column
marked, published numbers beside matching protocols."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clbench.leaderboard.published import Published, published_for
from clbench.leaderboard.run_page import slug
from clbench.leaderboard.scenario_page import published_text
from clbench.leaderboard.tables import CONVENTIONS, SETTINGS, mean_spread_text, overview
from clbench.results import RunResult


def _published_cell(
    published: list[Published], scenario_result: RunResult, method: str
) -> dict[str, str] | None:
    protocol = scenario_result.config.get("scenario", {}).get("protocol", {})
    text, source = published_text(
        published_for(published, scenario_result.scenario, protocol), method
    )
    return {"text": text, "source": source} if text else None


def overview_tables(
    frame: pd.DataFrame,
    scenarios: list[str],
    scenario_runs: dict[str, RunResult],
    published: list[Published],
) -> list[dict[str, Any]]:
    """The front page's methods x scenarios tables, one per (setting, convention):
    each cell Ā / last, mean ± std over seeds and the number of seeds, the best Ā
    of each column marked. Published numbers sit beside the sample-weighted
    class-incremental cells only (the convention and setting they were reported in)."""
    long = overview(frame)
    tables = []
    for task_incremental, setting, setting_text in SETTINGS:
        part = long[long["task_incremental"] == task_incremental]
        if part.empty:
            continue
        columns = [s for s in scenarios if s in set(part["scenario"])]
        entry_keys = ["label", "short_label", "method", "method_options", "backbone"]
        entries = part[entry_keys].drop_duplicates().sort_values("label", kind="stable")
        for convention, name, avg, last in CONVENTIONS:
            best = part.groupby("scenario")[f"{avg}_mean"].max().to_dict()
            cells = {(rec["label"], rec["scenario"]): rec for rec in part.to_dict("records")}
            rows = []
            for entry in entries.to_dict("records"):
                row = {**entry, "cells": []}
                for scenario in columns:
                    rec = cells.get((entry["label"], scenario))
                    pub = (
                        _published_cell(published, scenario_runs[scenario], entry["method"])
                        if convention == "sample" and not task_incremental
                        else None
                    )
                    if rec is None:
                        row["cells"].append(
                            {"empty": True, "best": False, "sort": "", "published": pub}
                        )
                        continue
                    mean = rec[f"{avg}_mean"]
                    row["cells"].append(
                        {
                            "empty": False,
                            "avg": mean_spread_text(mean, rec[f"{avg}_std"], 2),
                            "last": mean_spread_text(rec[f"{last}_mean"], rec[f"{last}_std"], 2),
                            "seeds": rec["seeds"],
                            "sort": "" if mean != mean else f"{mean:.6g}",
                            "best": mean == mean and mean >= best.get(scenario, np.inf),
                            "published": pub,
                        }
                    )
                rows.append(row)
            tables.append(
                {
                    "setting": setting,
                    "setting_text": setting_text,
                    "convention": convention,
                    "convention_text": name,
                    "scenarios": [
                        {
                            "name": s,
                            "href": f"scenarios/{slug(s)}.html",
                            "kind": scenario_runs[s].scenario_kind,
                            "scorer": "+".join(sorted(set(part[part["scenario"] == s]["scorer"]))),
                        }
                        for s in columns
                    ],
                    "rows": rows,
                    "has_published": any(c["published"] for r in rows for c in r["cells"]),
                }
            )
    return tables


def index_row(scenario: str, board: pd.DataFrame, runs: int) -> dict[str, Any]:
    best = board.iloc[0]
    return {
        "name": scenario,
        "href": f"scenarios/{slug(scenario)}.html",
        "runs": runs,
        "entries": len(board),
        "best": best["short_label"],
        "best_backbone": best["backbone"],
        "best_avg": mean_spread_text(best["avg_acc_sample_mean"], best["avg_acc_sample_std"], 2),
    }
