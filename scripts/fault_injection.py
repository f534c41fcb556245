"""Fault injection: a battery of bad inputs against the installed ``clbench`` command.

Usage: ``.venv/bin/python scripts/fault_injection.py [--only SUBSTRING] [--list]``

Each case prepares a temporary folder, runs the CLI there and judges the outcome.
A bad input is *clean* when the command exits 2 with exactly one
``clbench: error:`` line and no traceback, and nothing that existed before (a
stored record, a marker file's absence) was changed. Cases marked ``ok`` are inputs
that must simply work (exit 0, no traceback): odd file names, broken records that
are skipped with a warning. Runs reuse the real asset and feature caches (so they
are quick) but never the real results folder. Prints tried / clean / defects and
exits 1 when there is a defect.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLBENCH = str(REPO / ".venv" / "bin" / "clbench")
PYTHON = str(REPO / ".venv" / "bin" / "python")
QUICK = ["--set", "scenario.num_tasks=2", "--no-store"]


@dataclass
class Case:
    cause: str
    name: str
    args: list[str]
    setup: Callable[[Path], None] | None = None
    env: dict[str, str] = field(default_factory=dict)
    expect: str = "error"  # "error": clean exit 2; "ok": exit 0; "any": either
    check: Callable[[Path, str], str | None] | None = None  # extra judgement: a defect or None
    shell: str | None = None  # run through a shell (pipes)


# ---------------------------------------------------------------- file makers


def py(code: str, cwd: Path) -> None:
    """Run setup code in the project's Python (torch available)."""
    subprocess.run([PYTHON, "-c", code], cwd=cwd, check=True, capture_output=True)


def weights_file(kind: str) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        path = tmp / ("w.safetensors" if kind == "safetensors" else "w.pth")
        if kind == "wrong-keys":
            py("import torch; torch.save({'foo': torch.zeros(3)}, 'w.pth')", tmp)
        elif kind == "safetensors":
            py(
                "import torch; from safetensors.torch import save_file; save_file({'foo': torch.zeros(3)}, 'w.safetensors')",
                tmp,
            )
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "garbage":
            path.write_bytes(os.urandom(3000))
        elif kind == "directory":
            path.mkdir()
        elif kind == "list":
            py("import torch; torch.save([1, 2, 3], 'w.pth')", tmp)
        elif kind == "truncated":
            py("import torch; torch.save({'a': torch.ones(1000)}, 'w.pth')", tmp)
            path.write_bytes(path.read_bytes()[:300])
        elif kind == "evil":
            py(
                "import torch, os\n"
                "class E:\n    def __reduce__(self): return (os.system, ('touch PWNED',))\n"
                "torch.save({'w': E()}, 'w.pth')",
                tmp,
            )

    return make


def no_marker(tmp: Path, _err: str) -> str | None:
    return "a planted pickle ran code (PWNED exists)" if (tmp / "PWNED").exists() else None


def image_folder(names: list[str], bad: dict[str, bytes] | None = None) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        from PIL import Image

        for c in ("cat", "dog"):
            for i, name in enumerate(names):
                folder = tmp / "data" / c
                folder.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (i * 40, 10 if c == "cat" else 200, 0)).save(
                    folder / os.fsdecode(os.fsencode(name))
                )
        for rel, data in (bad or {}).items():
            (tmp / "data" / rel).write_bytes(data)

    return make


def bomb() -> bytes:
    """A tiny PNG that claims 30000 x 30000 pixels (PIL refuses it as a bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def write(rel: str, content: bytes | str) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return make


def chain(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        for step in steps:
            step(tmp)

    return make


def planted_checkpoint(kind: str) -> Callable[[Path], None]:
    """A file in the checkpoint folder of the exact run the case's --resume asks for."""

    def make(tmp: Path) -> None:
        code = (
            "import os, torch\n"
            "from clbench.cli import build_parser\n"
            "from clbench.cli.run import spec_from_args\n"
            "args = build_parser().parse_args(['run', '--set', 'scenario.num_tasks=2', '--no-store'])\n"
            "folder = os.path.join('ckpt', spec_from_args(args).key()); os.makedirs(folder)\n"
            "path = os.path.join(folder, 'task0.pt')\n"
            "class E:\n    def __reduce__(self): return (os.system, ('touch PWNED',))\n"
            f"kind = {kind!r}\n"
            "if kind == 'evil': torch.save({'step': 0, 'split_hash': 'x', 'learner': E()}, path)\n"
            "elif kind == 'empty': open(path, 'wb').close()\n"
            "elif kind == 'garbage': open(path, 'wb').write(os.urandom(500))\n"
            "elif kind == 'foreign': torch.save({'some': 'thing'}, path)\n"
            "elif kind == 'truncated':\n"
            "    torch.save({'step': 0, 'split_hash': 'x', 'learner': {'a': torch.ones(999)}}, path)\n"
            "    data = open(path, 'rb').read(); open(path, 'wb').write(data[:400])\n"
        )
        py(code, tmp)

    return make


def broken_records(tmp: Path) -> None:
    """One valid record (so the commands have something to show) and five broken ones."""
    runs = tmp / "runs"
    runs.mkdir(exist_ok=True)
    py(
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from pathlib import Path\n"
        "from clbench.results import ResultsStore\n"
        "from tests.leaderboard_fixtures import fake_result\n"
        "ResultsStore(Path('runs')).write(fake_result())",
        tmp,
    )
    (runs / "list.json").write_text("[]")
    (runs / "null.json").write_text("null")
    (runs / "binary.json").write_bytes(b"\x00\xff\xfe\x89")
    (runs / "folder.json").mkdir()
    (runs / "half.json").write_text('{"run_id": ')


def expected_csv(body: bytes) -> Callable[[Path], None]:
    header = b"scenario,method,backbone,seed,options,metric,value,tolerance\n"
    return write("e.csv", header + body)


def mount_tmpfs(options: str) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        (tmp / "disk").mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(tmp / "disk")], capture_output=True
        )
        if done.returncode != 0:
            raise SkipCase("needs root and a mountable tmpfs")

    return make


class SkipCase(Exception):
    pass


def rescued(tmp: Path, err: str) -> str | None:
    return (
        None
        if "kept in" in err and list((tmp / "cache-rescue").rglob("*.json"))
        else "the finished run was not kept"
    )


# ---------------------------------------------------------------- the battery


def cases() -> list[Case]:
    c: list[Case] = []
    # 1. weights that do not fit, or are not weights at all
    for kind in ("wrong-keys", "empty", "garbage", "directory", "list", "truncated", "evil"):
        c.append(
            Case(
                "weights",
                f"timm {kind}",
                ["run", "--backbone", "timm:resnet18", "--weights", "w.pth", *QUICK],
                weights_file(kind),
                check=no_marker,
            )
        )
    c.append(
        Case(
            "weights",
            "timm missing file",
            ["run", "--backbone", "timm:resnet18", "--weights", "nope.pth", *QUICK],
        )
    )
    for kind in ("wrong-keys", "garbage", "evil"):
        c.append(
            Case(
                "weights",
                f"efficientnet {kind}",
                ["run", "--weights", "w.pth", *QUICK],
                weights_file(kind),
                check=no_marker,
            )
        )
    c.append(
        Case(
            "weights",
            "dinov2 wrong keys",
            ["run", "--backbone", "dinov2-vits14", "--weights", "w.safetensors", *QUICK],
            weights_file("safetensors"),
        )
    )
    c.append(
        Case(
            "weights",
            "dinov2 garbage",
            ["run", "--backbone", "dinov2-vits14", "--weights", "w.pth", *QUICK],
            weights_file("garbage"),
        )
    )
    c.append(
        Case(
            "weights",
            "openclip wrong keys",
            ["run", "--backbone", "openclip:ViT-S-32", "--weights", "w.pth", *QUICK],
            weights_file("wrong-keys"),
        )
    )
    # 2. checkpoints on --resume
    for kind in ("evil", "empty", "garbage", "foreign", "truncated"):
        c.append(
            Case(
                "checkpoint",
                kind,
                ["run", *QUICK, "--resume"],
                planted_checkpoint(kind),
                env={"CLBENCH_CHECKPOINTS": "ckpt"},
                check=no_marker,
            )
        )
    # 3. the feature cache with odd names and changed content must simply work
    c.append(
        Case(
            "cache",
            "newline and latin-1 names",
            [
                "run",
                "--scenario",
                "folder",
                "--set",
                "scenario.root=data",
                "--set",
                "scenario.increment=1",
                "--set",
                "scenario.test_fraction=0.5",
                "--image-size",
                "32",
                "--no-store",
            ],
            image_folder(["a\nb.png", "t\tab.png", "\udce9x.png", "plain.png"]),
            env={"CLBENCH_FEATURES": "feats"},
            expect="ok",
        )
    )
    # 4. invalid values
    bad_sets = [
        "scenario.num_tasks=-5",
        "scenario.increment=0",
        "scenario.init_cls=0",
        "scenario.seed=-1",
        "scenario.min_per_class=0",
        "scenario.vendor=3",
        "scenario.allow_proprietary=maybe",
        "scenario.task_incremental=maybe",
        "scenario.num_tasks=abc",
        "scenario.nope=1",
    ]
    for item in bad_sets:
        c.append(Case("values", item, ["run", "--set", item, "--no-store"]))
    for method, item in [
        ("linear", "train.lr=nan"),
        ("linear", "train.lr=-1"),
        ("linear", "train.lr=inf"),
        ("linear", "train.epochs=-1"),
        ("linear", "train.epochs=0"),
        ("linear", "train.batch_size=0"),
        ("linear", "train.momentum=2"),
        ("linear", "train.lrr=0.1"),
        ("linear", "train=3"),
        ("linear", "lr=0.1"),
        ("linear", "train.betas=[0.9]"),
        ("linear", "train.amp=maybe"),
        ("knn", "k=abc"),
        ("knn", "k=0"),
        ("knn", "k=2.5"),
        ("knn", "metric=3"),
        ("lda", "shrinkage=1.5"),
        ("lda", "ridge=-1"),
        ("aper", "bottleneck=0"),
        ("aper", "train.weight_decay=-1"),
    ]:
        c.append(
            Case(
                "values",
                f"{method} {item}",
                ["run", "--method", method, "--set", item, "--no-store"],
            )
        )
    c.append(
        Case(
            "values",
            "folder test_fraction=1.5",
            [
                "run",
                "--scenario",
                "folder",
                "--set",
                "scenario.root=data",
                "--set",
                "scenario.increment=1",
                "--set",
                "scenario.test_fraction=1.5",
                "--no-store",
            ],
            image_folder(["a.png", "b.png"]),
        )
    )
    c.append(
        Case(
            "values",
            "folder shuffle=maybe",
            [
                "run",
                "--scenario",
                "folder",
                "--set",
                "scenario.root=data",
                "--set",
                "scenario.increment=1",
                "--set",
                "scenario.shuffle=maybe",
                "--no-store",
            ],
            image_folder(["a.png", "b.png"]),
        )
    )
    c.append(
        Case(
            "values",
            "emoji-dil vendors=[1]",
            ["run", "--scenario", "emoji-dil", "--set", "scenario.vendors=[1]", "--no-store"],
        )
    )
    for flag in (
        ["--image-size", "0"],
        ["--image-size", "-3"],
        ["--batch-size", "0"],
        ["--seed", "-1"],
        ["--backbone", "timm:"],
        ["--backbone", ":"],
        ["--backbone", "nope"],
    ):
        c.append(Case("values", " ".join(flag), ["run", *flag, "--no-store"]))
    configs = {
        "run-typo": '[run]\nmethd = "knn"\n',
        "seed-true": "[run]\nseed = true\n",
        "batch-string": '[run]\nbatch_size = "64"\n',
        "method-typo": "[method]\nkk = 3\n",
        "scenario-typo": "[scenario]\nnum_taks = 2\n",
        "train-typo": "[method.train]\nlrr = 0.1\n",
        "bad-toml": "[run\n",
        "section-typo": "[runn]\nseed = 1\n",
    }
    for name, text in configs.items():
        c.append(
            Case(
                "config",
                name,
                ["run", "--method", "linear", "--config", "c.toml", "--no-store"],
                write("c.toml", text),
            )
        )
    c.append(
        Case(
            "config",
            "non-utf8",
            ["run", "--config", "c.toml", "--no-store"],
            write("c.toml", b"[run]\nseed = 1 # \xe9\n"),
        )
    )
    c.append(
        Case(
            "config",
            "json list",
            ["run", "--config", "c.json", "--no-store"],
            write("c.json", "[1, 2]"),
        )
    )
    c.append(
        Case(
            "config",
            "run table not a table",
            ["run", "--config", "c.json", "--no-store"],
            write("c.json", '{"run": 3}'),
        )
    )
    # 5. the results folder
    c.append(
        Case(
            "store",
            "results dir is a file",
            ["run", "--results-dir", "f", "--set", "scenario.num_tasks=2"],
            write("f", "x"),
        )
    )
    c.append(
        Case(
            "store",
            "read-only results disk",
            ["run", "--results-dir", "disk/runs", "--set", "scenario.num_tasks=2"],
            mount_tmpfs("ro,size=64k"),
        )
    )
    c.append(
        Case(
            "store",
            "full results disk",
            ["run", "--results-dir", "disk/runs", "--set", "scenario.num_tasks=2"],
            mount_tmpfs("size=4k"),
            env={"CLBENCH_CACHE_RESCUE": "1"},
            check=rescued,
        )
    )
    # 6. the tracebacks of the report
    for device in ("cuda", "cuda:3", "tpu", "nonsense", "mps"):
        c.append(Case("device", device, ["run", "--device", device, *QUICK]))
    c.append(
        Case(
            "image",
            "decompression bomb",
            [
                "run",
                "--scenario",
                "folder",
                "--set",
                "scenario.root=data",
                "--set",
                "scenario.increment=1",
                "--set",
                "scenario.test_fraction=0.5",
                "--image-size",
                "32",
                "--no-store",
            ],
            image_folder(["a.png", "b.png", "c.png"], {"cat/bomb.png": bomb()}),
            env={"CLBENCH_FEATURES": "feats"},
        )
    )
    c.append(
        Case(
            "image",
            "corrupt image",
            [
                "run",
                "--scenario",
                "folder",
                "--set",
                "scenario.root=data",
                "--set",
                "scenario.increment=1",
                "--set",
                "scenario.test_fraction=0.5",
                "--image-size",
                "32",
                "--no-store",
            ],
            image_folder(["a.png", "b.png", "c.png"], {"dog/bad.png": b"\x89PNG broken"}),
            env={"CLBENCH_FEATURES": "feats"},
        )
    )
    c.append(
        Case(
            "cache",
            "CLBENCH_CACHE is a file",
            ["run", *QUICK],
            write("cachefile", "x"),
            env={"CLBENCH_CACHE": "cachefile"},
        )
    )
    c.append(
        Case(
            "cache",
            "CLBENCH_FEATURES is a file",
            ["run", *QUICK],
            write("featfile", "x"),
            env={"CLBENCH_FEATURES": "featfile"},
        )
    )
    c.append(
        Case(
            "cache",
            "CLBENCH_CHECKPOINTS is a file",
            ["run", *QUICK],
            write("ckfile", "x"),
            env={"CLBENCH_CHECKPOINTS": "ckfile"},
        )
    )
    c.append(
        Case(
            "export",
            "--csv into a missing folder",
            ["results", "--runs", "runs", "--csv", "nope/x.csv"],
        )
    )
    c.append(
        Case("export", "--parquet onto a folder", ["results", "--runs", "runs", "--parquet", "."])
    )
    c.append(Case("export", "--csv onto a folder", ["results", "--runs", "runs", "--csv", "."]))
    c.append(
        Case(
            "pipe",
            "run --json | head",
            [],
            shell=f"{CLBENCH} run --json {' '.join(QUICK)} | head -c 20 >/dev/null; exit ${{PIPESTATUS[0]}}",
            expect="any",
        )
    )
    c.append(
        Case(
            "pipe",
            "results --csv - | head",
            [],
            broken_records,
            shell=f"{CLBENCH} results --runs runs --csv - | head -c 1 >/dev/null; exit ${{PIPESTATUS[0]}}",
            expect="any",
        )
    )
    # 7. broken records: skipped with a warning, or refused with --strict
    for command in (
        ["results"],
        ["results", "--csv", "-"],
        ["leaderboard", "--out", "site", "--workers", "1"],
    ):
        c.append(
            Case(
                "records",
                f"{command[0]} skips broken records",
                [*command, "--runs", "runs"],
                broken_records,
                expect="ok",
                check=lambda _t, e: (
                    None if "binary.json" in e else "the broken record was not named"
                ),
            )
        )
        c.append(
            Case(
                "records",
                f"{command[0]} --strict",
                [*command, "--runs", "runs", "--strict"],
                broken_records,
            )
        )
    c.append(
        Case(
            "records",
            "check --strict",
            ["check", "e.csv", "--runs", "runs", "--strict"],
            chain(
                broken_records,
                expected_csv(
                    b"emoji-cil,simplecil,efficientnet-lite0,1993,,last_acc_sample,45.86,0.5\n"
                ),
            ),
        )
    )
    # expected.csv
    for name, body in {
        "multi-line field": b'emoji-cil,knn,efficientnet-lite0,1993,"k=3\nk=4",last_acc_sample,1,0.5\n',
        "non-utf8": b"emoji-cil,knn,efficientnet-lite0,1993,,last_acc_sample,4\xe9,0.5\n",
        "unknown metric": b"emoji-cil,knn,efficientnet-lite0,1993,,accuracy,4,0.5\n",
        "bad option value": b"emoji-cil,knn,efficientnet-lite0,1993,k=abc,last_acc_sample,4,0.5\n",
        "bad scenario option": b"emoji-cil,knn,efficientnet-lite0,1993,scenario.num_tasks=0,last_acc_sample,4,0.5\n",
        "nan value": b"emoji-cil,knn,efficientnet-lite0,1993,,last_acc_sample,nan,0.5\n",
    }.items():
        c.append(Case("expected", name, ["check", "e.csv", "--runs", "runs"], expected_csv(body)))
    c.append(
        Case(
            "expected",
            "update unwritable folder",
            ["check", "ro/e.csv", "--update", "--runs", "runs"],
            chain(
                mount_tmpfs("size=64k"),
                lambda t: (t / "disk" / "e.csv").write_text(
                    "scenario,method,backbone,seed,options,metric,value,tolerance\nemoji-cil,simplecil,efficientnet-lite0,1993,scenario.num_tasks=2,last_acc_sample,,0.5\n"
                ),
                lambda t: subprocess.run(
                    ["mount", "-o", "remount,ro", str(t / "disk")], check=True
                ),
                lambda t: (t / "ro").symlink_to(t / "disk"),
            ),
        )
    )
    c.append(
        Case(
            "expected",
            "update a metric the run lacks",
            ["check", "e.csv", "--update", "--runs", "runs"],
            expected_csv(
                b"emoji-cil,simplecil,efficientnet-lite0,1993,scenario.num_tasks=2,fwt,,0.5\n"
            ),
            check=lambda t, e: (
                None
                if (t / "runs").exists() and list((t / "runs").glob("*.json"))
                else "the finished run was lost"
            ),
        )
    )
    # 8. the small ones
    c.append(
        Case(
            "small",
            "vendors=apple (a word, not letters)",
            ["run", "--scenario", "emoji-dil", "--set", "scenario.vendors=apple", "--no-store"],
            check=lambda _t, e: (
                None if "proprietary" in e else "vendors=apple was not read as one vendor"
            ),
        )
    )
    c.append(
        Case(
            "small",
            "no test data",
            [
                "run",
                "--scenario",
                "folder",
                "--set",
                "scenario.root=data",
                "--set",
                "scenario.increment=1",
                "--set",
                "scenario.test_fraction=0",
                "--image-size",
                "32",
                "--no-store",
            ],
            image_folder(["a.png", "b.png"]),
            env={"CLBENCH_FEATURES": "feats"},
        )
    )
    c.append(
        Case(
            "small",
            "fetch --timeout 0",
            ["fetch", "cifar100", "--timeout", "0", "--data-root", "d"],
        )
    )
    c.append(
        Case(
            "small",
            "fetch --retries -1",
            ["fetch", "cifar100", "--retries", "-1", "--data-root", "d"],
        )
    )
    c.append(Case("small", "fetch unknown", ["fetch", "nope", "--data-root", "d"]))
    c.append(
        Case(
            "small",
            "scenario missing data",
            ["run", "--scenario", "cifar100", "--data-root", "d", "--no-store"],
        )
    )
    c.append(
        Case(
            "small",
            "folder missing root",
            ["run", "--scenario", "folder", "--set", "scenario.root=nowhere", "--no-store"],
        )
    )
    return c


# ---------------------------------------------------------------- running


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def judge(case: Case, tmp: Path, keep: Path, before: dict[str, str]) -> tuple[bool, str]:
    env = {
        **os.environ,
        "CLBENCH_RESULTS": str(keep),
        "CLBENCH_PROGRESS": "0",
        "PYTHONWARNINGS": "ignore",
    }
    env.update({k: str(tmp / v) if k != "CLBENCH_CACHE_RESCUE" else v for k, v in case.env.items()})
    if "CLBENCH_CACHE_RESCUE" in case.env:
        # Rescued records go to the cache: give the case its own, seeded with the real assets.
        cache = tmp / "cache-rescue"
        cache.mkdir()
        real = Path(os.environ.get("CLBENCH_CACHE", Path.home() / ".cache" / "clbench"))
        (cache / "assets").symlink_to(real / "assets")
        env["CLBENCH_CACHE"] = str(cache)
        env.setdefault("CLBENCH_FEATURES", str(real / "features"))
        del env["CLBENCH_CACHE_RESCUE"]
    if case.shell:
        done = subprocess.run(
            ["bash", "-c", case.shell],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=600,
        )
    else:
        done = subprocess.run(
            [CLBENCH, *case.args],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=600,
        )
    err = done.stderr
    problems = []
    if "Traceback" in err:
        problems.append("traceback")
    if case.expect == "error":
        if done.returncode != 2:
            problems.append(f"exit {done.returncode}, not 2")
        if err.count("clbench: error:") != 1:
            problems.append(f"{err.count('clbench: error:')} 'clbench: error:' lines")
    elif case.expect == "any":  # a closed pipe may or may not be hit (pipe buffering)
        if done.returncode not in (0, 2) or err.count("clbench: error:") > 1:
            problems.append(f"exit {done.returncode} with {err.count('clbench: error:')} errors")
    elif done.returncode != 0:
        problems.append(f"exit {done.returncode}, not 0")
    if snapshot(keep) != before:
        problems.append("a pre-existing record changed or vanished")
    if case.check:
        extra = case.check(tmp, err)
        if extra:
            problems.append(extra)
    last = next((line for line in reversed(err.strip().splitlines()) if line.strip()), "")
    return not problems, "; ".join(problems) or last[:150]


def run_case(case: Case) -> tuple[bool | None, str]:
    """(clean?, note) of one case in its own temporary folder; (None, why) if skipped."""
    tmp = Path(tempfile.mkdtemp(prefix="clbench-fault-"))
    keep = tmp / "kept-results"
    keep.mkdir()
    (keep / "existing.json").write_text(json.dumps({"pre": "existing"}))  # must survive
    try:
        if case.setup:
            case.setup(tmp)
        return judge(case, tmp, keep, snapshot(keep))
    except SkipCase as exc:
        return None, str(exc)
    finally:
        if (tmp / "disk").is_mount():
            subprocess.run(["umount", str(tmp / "disk")], check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", action="append", help="run the cases whose 'cause: name' has this (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the cases and stop")
    parser.add_argument("--per-cause", type=int, default=0, help="only the first N cases per cause")
    parser.add_argument("--skip-cause", action="append", default=[], help="leave out a cause")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case's outcome")
    args = parser.parse_args()
    battery = [
        c for c in cases() if not args.only or any(o in f"{c.cause}: {c.name}" for o in args.only)
    ]
    battery = [c for c in battery if c.cause not in args.skip_cause]
    if args.per_cause:  # a quicker pass: the first N variants of every cause
        taken: dict[str, int] = {}
        battery = [
            c
            for c in battery
            if taken.setdefault(c.cause, 0) < args.per_cause
            and not taken.update({c.cause: taken[c.cause] + 1})
        ]
    if args.list:
        for c in battery:
            print(f"{c.cause:12} {c.name}")
        return 0
    tried = clean = skipped = 0
    defects = []
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for case, (ok, note) in zip(battery, pool.map(run_case, battery), strict=True):
            if ok is None:
                skipped += 1
                print(f"skip    {case.cause}: {case.name} ({note})", flush=True)
                continue
            tried += 1
            clean += ok
            if not ok:
                defects.append((case, note))
            if args.verbose or not ok:
                print(
                    f"{'clean ' if ok else 'DEFECT'}  {case.cause}: {case.name}: {note}", flush=True
                )
    print(
        f"tried {tried}, clean {clean}, defects {len(defects)}"
        + (f", skipped {skipped}" if skipped else "")
    )
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main())
