"""The regression gate: expected numbers from real runs, checked one-sided.

The expected file (``leaderboards/expected.csv``) has one row per checked
number::

    scenario,method,backbone,seed,options,metric,value,tolerance
    emoji-cil,simplecil,efficientnet-lite0,1993,,last_acc_sample,45.86,0.5

``value`` and ``tolerance`` are in percentage points (the stored fraction x
100, as ``clbench results`` shows). ``options`` holds ``--set`` items
separated by spaces (``k=5 scenario.num_tasks=5``); empty means defaults.
The check is one-sided: only a change for the worse by more than the
tolerance fails, i.e. a drop for accuracies and transfer, a rise for
forgetting. A stored run answers a row when its scenario, method, backbone
(without custom weights), seed and full configuration match; the newest such
run counts. Rows without an answer are run now, and their RunResults are
added to the results store as new records: existing records are never touched.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clbench.errors import ConfigError
from clbench.options import parse_sets
from clbench.results import ResultsStore, RunResult

COLUMNS = ("scenario", "method", "backbone", "seed", "options", "metric", "value", "tolerance")
REQUIRED = tuple(c for c in COLUMNS if c != "options")
HIGHER_IS_BETTER = (
    "avg_acc_sample",
    "last_acc_sample",
    "avg_acc_task",
    "last_acc_task",
    "bwt",
    "fwt",
    "op",  # instruction streams (text)
    "fwt_zero_shot",
    "retention",
)
LOWER_IS_BETTER = ("forgetting_pilot", "forgetting_chaudhry", "forgetting_avalanche")
METRICS = HIGHER_IS_BETTER + LOWER_IS_BETTER
#: Decimals of the file's values and of the printed change; the rule compares the rounded change.
DECIMALS = 2
EPSILON = 1e-9  # a rounded change exactly at the tolerance passes, whatever the float error


@dataclass(frozen=True)
class RunKey:
    """What identifies a run for the gate: the rows that share it share a run."""

    scenario: str
    method: str
    backbone: str
    seed: int
    options: str = ""

    def option_dicts(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return parse_sets(self.options.split())

    def describe(self) -> str:
        extra = f" [{self.options}]" if self.options else ""
        return f"{self.method} on {self.scenario} with {self.backbone}, seed {self.seed}{extra}"


@dataclass(frozen=True)
class Expectation:
    key: RunKey
    metric: str
    value: float | None
    tolerance: float
    line: int  # in the expected file, for messages


@dataclass(frozen=True)
class Outcome:
    expectation: Expectation
    measured: float
    run_id: str
    scorer: str = "accuracy"
    """What the run's numbers are: accuracy, or a text scorer (mixed for several)."""

    @property
    def change(self) -> float:
        """measured - expected, signed so that negative is always worse, rounded to the
        0.01 points the file and the table show: the rule judges the printed number, so a
        change printed as -0.50 with tolerance 0.5 is ok, never REGRESSED."""
        sign = -1.0 if self.expectation.metric in LOWER_IS_BETTER else 1.0
        return round(sign * (self.measured - self.expectation.value), DECIMALS)

    @property
    def status(self) -> str:
        if self.change < -self.expectation.tolerance - EPSILON:
            return "REGRESSED"
        if self.change > self.expectation.tolerance + EPSILON:
            return "improved"
        return "ok"


# ---------------------------------------------------------------- the expected file


def read_expected(path: Path, allow_empty_values: bool = False) -> list[Expectation]:
    """Parse and validate the expected file; every problem names its line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"expected-numbers file not found: {path}",
            "create it with a header row "
            f"{','.join(COLUMNS)} and fill values with `clbench check --update`",
        )
    try:
        # utf-8-sig: a file saved by a spreadsheet starts with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#x})",
            "save the file as UTF-8",
        ) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    # Blank lines and # comments are allowed; keep each row's line number for messages.
    lines = [
        (n, line)
        for n, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for number, line in lines:
        if line.count('"') % 2:  # a quoted field that goes on to the next line
            raise ConfigError(
                f"{path}:{number}: a quoted field spans several lines",
                "put every row on one line (no line breaks inside fields)",
            )
    reader = csv.DictReader(line for _, line in lines)
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError(
            f"{path} lacks the columns {', '.join(missing)}",
            f"its first row must name the columns {','.join(COLUMNS)} (options may be omitted)",
        )
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise ConfigError(f"{path}:{reader.line_num}: not valid CSV: {exc}") from exc
    if not rows:
        raise ConfigError(f"{path} has no rows to check", "add one row per (run, metric) to check")
    expectations, seen = [], set()
    for (number, _), row in zip(lines[1:], rows, strict=True):
        expectation = _parse_row(path, number, row, allow_empty_values)
        ident = (expectation.key, expectation.metric)
        if ident in seen:
            raise ConfigError(
                f"{path}:{number}: {expectation.metric} of {expectation.key.describe()} is listed twice"
            )
        seen.add(ident)
        expectations.append(expectation)
    return expectations


def _parse_row(
    path: Path, number: int, row: dict[str, str | None], allow_empty: bool
) -> Expectation:
    where = f"{path}:{number}"
    hint = f"each row holds the header's fields: {','.join(COLUMNS)}"
    if None in row:
        raise ConfigError(f"{where}: the row has more fields than the header", hint)
    if any(row.get(c) is None for c in REQUIRED):
        raise ConfigError(f"{where}: the row has fewer fields than the header", hint)
    cells = {k: (v or "").strip() for k, v in row.items()}
    for column in ("scenario", "method", "backbone", "metric"):
        if not cells[column]:
            raise ConfigError(f"{where}: the {column} column is empty")
    if cells["metric"] not in METRICS:
        raise ConfigError(
            f"{where}: unknown metric {cells['metric']!r}", f"use one of {', '.join(METRICS)}"
        )
    seed = _number(where, "seed", cells["seed"], int)
    tolerance = _number(where, "tolerance", cells["tolerance"], float)
    if tolerance < 0:
        raise ConfigError(
            f"{where}: tolerance {tolerance} is negative", "a tolerance is a number of points >= 0"
        )
    value = None
    if cells["value"] or not allow_empty:
        if not cells["value"]:
            raise ConfigError(
                f"{where}: no expected value for {cells['metric']}",
                "fill it from a real run with `clbench check --update`",
            )
        value = _number(where, "value", cells["value"], float)
    key = RunKey(
        cells["scenario"],
        cells["method"],
        cells["backbone"],
        seed,
        " ".join(cells.get("options", "").split()),
    )
    return Expectation(key, cells["metric"], value, tolerance, number)


def _number(where: str, column: str, text: str, kind: type) -> Any:
    try:
        value = kind(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {column} is {text!r}, not a number") from exc
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{where}: {column} is {text!r}, not a finite number")
    return value


def check_rewritable(path: Path) -> None:
    """``check --update`` rewrites the file at the end: fail before the runs if it cannot."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=path.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(
            f"cannot rewrite {path}: its folder is not writable ({exc.strerror or exc})",
            "run --update on a writable copy of the file",
        ) from exc


def updated_values(
    expectations: Sequence[Expectation], runs: dict[RunKey, RunResult]
) -> tuple[dict[tuple[RunKey, str], float | None], list[Expectation]]:
    """New values from the runs, and the rows whose run does not define the metric
    (they keep their old value)."""
    new: dict[tuple[RunKey, str], float | None] = {}
    undefined = []
    for e in expectations:
        value = runs[e.key].metrics.get(e.metric)
        if value is None:
            undefined.append(e)
            new[(e.key, e.metric)] = e.value
        else:
            new[(e.key, e.metric)] = 100.0 * value
    return new, undefined


def write_expected(
    path: Path,
    expectations: Sequence[Expectation],
    values: dict[tuple[RunKey, str], float | None],
) -> None:
    """Rewrite the file with new values (same rows, order and tolerances), atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(COLUMNS)
            for e in expectations:
                value = values[(e.key, e.metric)]
                shown = "" if value is None else f"{value:.{DECIMALS}f}"
                writer.writerow(
                    [
                        e.key.scenario,
                        e.key.method,
                        e.key.backbone,
                        e.key.seed,
                        e.key.options,
                        e.metric,
                        shown,
                        f"{e.tolerance:g}",
                    ]
                )
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# ---------------------------------------------------------------- matching runs


def _plain(value: Any) -> Any:
    """The JSON form of a value, as a stored record holds it (tuples -> lists)."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def expected_method_config(key: RunKey) -> dict[str, Any]:
    """Every hyper-parameter the method has with the row's options (defaults included)."""
    from clbench.registry import create_method

    method_options, _ = key.option_dicts()
    return _plain(create_method(key.method, **method_options).hyperparameters())


def matches(result: RunResult, key: RunKey, method_config: dict[str, Any]) -> bool:
    """Whether a stored run is the run this key asks for."""
    if (result.scenario, result.method, result.seed) != (key.scenario, key.method, key.seed):
        return False
    backbone = result.config.get("backbone", {})
    if (
        key.backbone not in (result.backbone, backbone.get("spec"))
        or backbone.get("weights") is not None
    ):
        return False
    stored_method = {k: v for k, v in result.config.get("method", {}).items() if k != "name"}
    if _plain(stored_method) != method_config:
        return False
    scenario = result.config.get("scenario", {})
    _, scenario_options = key.option_dicts()
    stored_scenario = {k: v for k, v in scenario.items() if k not in ("name", "protocol")}
    if _plain(stored_scenario) != _plain(scenario_options):
        return False
    # A run whose preprocessing was changed by name (--crop-pct, ...) is another run, and so
    # is one recorded before preprocessing came from the weights (no record: other numbers).
    pre = backbone.get("preprocessing")
    by_protocol = {"image_size", *((scenario.get("protocol") or {}).get("preprocessing") or {})}
    if pre is None or set(pre.get("overrides", ())) - by_protocol:
        return False
    # A run at another input size (--image-size) is another run.
    protocol_size = (scenario.get("protocol") or {}).get("image_size")
    return protocol_size is None or backbone.get("image_size") in (None, protocol_size)


def newest_match(
    results: Iterable[RunResult], key: RunKey, method_config: dict[str, Any]
) -> RunResult | None:
    found = [r for r in results if matches(r, key, method_config)]
    return (
        max(found, key=lambda r: (r.manifest.get("created_at") or "", r.run_id)) if found else None
    )


def spec_for(key: RunKey):
    from clbench.runner import RunSpec

    method_options, scenario_options = key.option_dicts()
    return RunSpec(
        scenario=key.scenario,
        method=key.method,
        backbone=key.backbone,
        seed=key.seed,
        method_options=method_options,
        scenario_options=scenario_options,
    )


def gather_runs(
    expectations: Sequence[Expectation],
    store: ResultsStore,
    rerun: bool = False,
    runner: Callable | None = None,
    say: Callable[[str], None] = print,
    strict: bool = False,
) -> dict[RunKey, RunResult]:
    """One RunResult per key: the newest stored match, else (or with ``rerun``)
    a new run, stored in ``store`` as a new record."""
    keys = list(dict.fromkeys(e.key for e in expectations))
    # Every row's method and options are validated before anything runs, so a
    # typo in the last row does not surface after an hour of runs.
    configs = {key: expected_method_config(key) for key in keys}
    stored = [] if rerun else store.all(strict)
    out: dict[RunKey, RunResult] = {}
    for key in keys:
        found = None if rerun else newest_match(stored, key, configs[key])
        if found is None:
            if runner is None:
                from clbench.runner import run as runner
            say(f"running {key.describe()}")
            found = runner(spec_for(key), store=store)
        else:
            say(f"stored run {found.run_id} answers {key.describe()}")
        out[key] = found
    return out


def evaluate(expectations: Sequence[Expectation], runs: dict[RunKey, RunResult]) -> list[Outcome]:
    outcomes = []
    for e in expectations:
        result = runs[e.key]
        value = result.metrics.get(e.metric)
        if value is None:
            raise ConfigError(
                f"line {e.line}: run {result.run_id} has no {e.metric}",
                "check only metrics the scenario defines (fwt needs unseen-task evaluation)",
            )
        outcomes.append(Outcome(e, 100.0 * value, result.run_id, result.scorer))
    return outcomes
