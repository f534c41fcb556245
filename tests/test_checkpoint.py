"""Checkpoints load without unpickling arbitrary objects; bad ones are one message."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from clbench.checkpoint import admitted, load_checkpoint, save_checkpoint
from clbench.errors import ClbenchError
from clbench.runner import RunSpec


class _Planted:
    """Unpickling this runs ``os.system`` (or any callable) - what an attacker plants."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def _state(learner) -> dict:
    return {"step": 0, "split_hash": "h", "learner": learner, "result": None, "rng": None}


@pytest.mark.parametrize(
    "payload",
    [
        lambda m: _Planted(os.system, f"touch {m}"),
        lambda m: _Planted(Path.touch, Path(m)),
        lambda m: _Planted(eval, f"open({str(m)!r}, 'w')"),
    ],
    ids=["os.system", "Path.touch", "eval"],
)
def test_malicious_checkpoint_runs_nothing(payload, tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "task0.pt"
    torch.save(_state({"w": payload(marker)}), path)  # plain torch.save: any pickle
    with pytest.raises(ClbenchError, match="does not unpickle"):
        load_checkpoint(path)
    assert not marker.exists()


def test_malicious_checkpoint_on_resume_runs_nothing(tmp_path, monkeypatch):
    """The real --resume path: a planted file in the run's checkpoint folder."""
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    spec = RunSpec(scenario="folder", scenario_options={"root": str(tmp_path / "none")})
    folder = tmp_path / "cache" / "checkpoints" / spec.key()
    folder.mkdir(parents=True)
    marker = tmp_path / "marker"
    torch.save(_state(_Planted(os.system, f"touch {marker}")), folder / "task0.pt")
    from clbench.evaluator import Evaluator
    from clbench.registry import create_method

    evaluator = Evaluator.__new__(Evaluator)
    evaluator.checkpoint_dir = folder
    evaluator.learner = create_method("simplecil")
    with pytest.raises(ClbenchError, match="task0.pt"):
        evaluator._restore(None)
    assert not marker.exists()


def _truncated(path: Path) -> None:
    save_checkpoint(_state({"w": torch.ones(100)}), path)
    path.write_bytes(path.read_bytes()[:200])


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(b"\x00\x01 random bytes"),
        _truncated,
        lambda p: torch.save({"some": "other file"}, p),
        lambda p: torch.save([1, 2, 3], p),
        lambda p: p.write_bytes(pickle.dumps({"step": 0})),
        lambda p: zipfile.ZipFile(p, "w").close(),
    ],
    ids=[
        "empty",
        "garbage",
        "truncated",
        "foreign-dict",
        "foreign-list",
        "raw-pickle",
        "empty-zip",
    ],
)
def test_unreadable_checkpoint_is_one_message(make, tmp_path):
    path = tmp_path / "task0.pt"
    make(path)
    with pytest.raises(ClbenchError, match="task0.pt") as info:
        load_checkpoint(path)
    assert "fix:" in str(info.value)


def test_learner_state_round_trips(tmp_path):
    """Network modules, numpy values, paths and generators come back equal."""
    from clbench.data import FileLoader, Samples

    samples = Samples("s", np.array(["a", "b"]), np.array([0, 1]), FileLoader(Path("/data")))
    head = torch.nn.Linear(3, 2)
    learner = {
        "head": head,
        "samples": [samples],
        "array": np.arange(6.0).reshape(2, 3),
        "scalar": np.int64(7),
        "dtype": np.dtype("float32"),
        "generator": torch.Generator().manual_seed(5),
    }
    path = tmp_path / "task0.pt"
    save_checkpoint(_state(learner), path)
    back = load_checkpoint(path)["learner"]
    assert torch.equal(back["head"].weight, head.weight)
    assert list(back["samples"][0].keys) == ["a", "b"]
    assert back["samples"][0].loader == FileLoader(Path("/data"))
    assert np.array_equal(back["array"], learner["array"])
    assert back["scalar"] == 7 and back["dtype"] == np.float32
    assert torch.equal(
        torch.rand(3, generator=back["generator"]), torch.rand(3, generator=learner["generator"])
    )


@pytest.mark.parametrize(
    "name,ok",
    [
        ("torch.nn.modules.linear.Linear", True),
        ("timm.layers.mlp.Mlp", True),
        ("clbench.data.Samples", True),
        ("collections.OrderedDict", True),
        ("clbench.methods.mos.ClassGaussians", True),  # marked with checkpoint_state
        ("os.system", False),
        ("builtins.eval", False),
        ("torch.load", False),  # a function of a trusted package is still refused
        ("torch.serialization.load", False),
        ("clbench.results.ResultsStore", False),  # not a module nor a dataclass
        ("subprocess.Popen", False),
    ],
)
def test_admission_policy(name, ok):
    assert (admitted(name) is not None) == ok
