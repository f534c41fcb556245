"""Backbone descriptions (clbench.backbones.descriptor): a warm run builds no network.

The run that builds a backbone stores its description beside the features; a later
run with the same request gets a lazy backbone, built only when a feature is
missing or a method needs the network. Every test uses ``test-counted``
(tests/lazy_backbone_plugin.py), a tiny backbone whose builds are logged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tests.lazy_backbone_plugin as plugin
from clbench.backbones import build_backbone
from clbench.backbones import descriptor as desc
from clbench.backbones.descriptor import (
    BackboneDescriptor,
    DescriptorStore,
    LazyBackbone,
    Request,
    describe,
    open_backbone,
)
from clbench.errors import ClbenchError
from clbench.registry import BACKBONES, Entry
from clbench.runner import DESCRIPTORS, RunSpec, run
from tests.helpers import write_image_folder

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
#: Methods that read only frozen features (with options that keep them so and fast).
FROZEN = {
    "simplecil": {},
    "ncm": {},
    "knn": {},
    "lda": {},
    "ranpac": {"first_session": "frozen", "projection_dim": 64},
    "ear": {"train": {"epochs": 1}, "budget": 1000.0, "widths": [8]},
}
MODEL_LIBRARIES = ("timm", "open_clip", "torchvision", "transformers")


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """Its own feature cache, a build log, tiny weights and a 4-class image folder."""
    monkeypatch.setenv("CLBENCH_FEATURES", str(tmp_path / "features"))
    log = tmp_path / "builds.log"
    monkeypatch.setenv(plugin.BUILD_LOG, str(log))
    weights = plugin.write_weights(tmp_path / "tiny.pth")
    data = write_image_folder(tmp_path / "data", {f"c{i}": 6 for i in range(4)}, size=20)
    return tmp_path, log, weights, data


def spec_for(method: str, weights: Path, data: Path, **changes) -> RunSpec:
    changes.setdefault("method_options", dict(FROZEN.get(method, {})))
    return RunSpec(
        scenario="folder",
        method=method,
        backbone=plugin.NAME,
        weights=str(weights),
        scenario_options={"root": str(data), "increment": 2, "test_fraction": 0.34},
        device="cpu",
        batch_size=8,
        **changes,
    )


#: What differs between any two runs of the same spec (ids, times, memory).
VOLATILE = ("run_id", "manifest", "timings", "peak_memory")


def comparable(result) -> dict:
    data = json.loads(result.to_json())
    return {k: v for k, v in data.items() if k not in VOLATILE}


def test_a_warm_run_imports_no_model_library_and_builds_nothing(setup):
    tmp, log, weights, data = setup
    cold = {m: comparable(run(spec_for(m, weights, data))) for m in FROZEN}
    assert plugin.builds(log) >= 1
    before = plugin.builds(log)
    script = tmp / "warm.py"
    script.write_text(
        "import json, sys\n"
        "import tests.lazy_backbone_plugin\n"
        "from clbench.runner import RunSpec, run\n"
        "out = {}\n"
        "for spec in json.loads(sys.argv[1]):\n"
        "    data = json.loads(run(RunSpec(**spec)).to_json())\n"
        f"    out[spec['method']] = {{k: v for k, v in data.items() if k not in {VOLATILE!r}}}\n"
        f"out['loaded'] = [m for m in {MODEL_LIBRARIES!r} if m in sys.modules]\n"
        "out['registry_loaded'] = 'clbench.backbones.efficientnet' in sys.modules\n"
        "print(json.dumps(out))\n"
    )
    specs = [spec_for(m, weights, data).as_dict() for m in FROZEN]
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(specs)],
        capture_output=True,
        text=True,
        cwd=tmp,
        env={**os.environ, "PYTHONPATH": str(ROOT), "CLBENCH_PROGRESS": "0"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    warm = json.loads(proc.stdout.strip().splitlines()[-1])
    assert warm.pop("loaded") == []
    assert warm.pop("registry_loaded") is False
    assert plugin.builds(log) == before  # the factory never ran in the warm process
    assert warm == cold  # same config, backbone record and matrices
    assert cold["simplecil"]["config"]["backbone"]["cache_id"].startswith(f"{plugin.NAME}@")


def test_a_partly_cached_run_builds_the_network_for_the_missing_features(setup):
    tmp, log, weights, data = setup
    first = run(spec_for("simplecil", weights, data))
    builds = plugin.builds(log)
    write_image_folder(data, {"c0": 8}, seed=5)  # new images in one class: not cached
    second = run(spec_for("simplecil", weights, data))
    assert plugin.builds(log) == builds + 1
    assert second.timings["features_extracted"] > 0
    assert second.config["backbone"] == first.config["backbone"]


@pytest.mark.parametrize("method", ["finetune", "aper"])
def test_methods_that_need_the_network_get_the_real_one(setup, method):
    tmp, log, weights, data = setup
    fast = {"train": {"epochs": 1, "batch_size": 8}}
    if method == "aper":
        fast["peft"] = "ssf"  # the tiny backbone is no ViT
    eager = run(spec_for(method, weights, data, method_options=fast))  # describes it
    builds = plugin.builds(log)
    lazy = run(spec_for(method, weights, data, method_options=fast))
    assert plugin.builds(log) == builds + 1  # built lazily, because the method needs it
    assert comparable(lazy) == comparable(eager)  # and the numbers do not move


def test_building_lazily_leaves_the_run_generators_where_they_were(setup, monkeypatch):
    tmp, log, weights, data = setup
    request = Request(plugin.NAME, str(weights), {})
    store = DescriptorStore(tmp / "d")
    store.save(request, build_backbone(plugin.NAME, str(weights)))
    lazy = open_backbone(plugin.NAME, str(weights), {}, store, CPU)
    assert isinstance(lazy, LazyBackbone) and not lazy.built
    real = plugin.counted_backbone

    def drawing(**kwargs):
        torch.rand(5)  # what timm's random init does before weights are loaded
        np.random.rand(5)
        return real(**kwargs)

    # Swapped in after the description was read (which names `real`): only the build sees it.
    monkeypatch.setitem(BACKBONES._entries, plugin.NAME, Entry(plugin.NAME, drawing, ""))
    torch.manual_seed(3)
    np.random.seed(3)
    lazy.network()
    assert lazy.built
    expected_torch, expected_numpy = torch.rand(3), np.random.rand(3)
    torch.manual_seed(3)
    np.random.seed(3)
    torch.testing.assert_close(torch.rand(3), expected_torch)
    np.testing.assert_array_equal(np.random.rand(3), expected_numpy)


# -- a stale description is never trusted -------------------------------------------------


@pytest.fixture
def stored(setup):
    tmp, log, weights, data = setup
    store = DescriptorStore(tmp / "descriptors")
    request = Request(plugin.NAME, str(weights), {})
    store.save(request, build_backbone(plugin.NAME, str(weights)))
    assert isinstance(store.load(request), BackboneDescriptor)
    return store, request, weights


def test_the_description_is_what_the_built_backbone_says(stored):
    store, request, weights = stored
    backbone = build_backbone(plugin.NAME, str(weights))
    loaded = store.load(request)
    assert loaded == describe(backbone)
    assert loaded.cache_id == backbone.cache_id and loaded.feature_dim == plugin.DIM
    assert loaded.parameter_count == sum(p.numel() for p in backbone.parameters())
    assert loaded.preprocessing == backbone.preprocessing


def test_rewritten_weights_are_not_trusted(stored, setup):
    store, request, weights = stored
    plugin.write_weights(weights, seed=1)
    assert store.load(request) is None
    lazy_or_built = open_backbone(plugin.NAME, str(weights), {}, store, CPU)
    assert not isinstance(lazy_or_built, LazyBackbone)  # built now, described again
    assert store.load(request).weights_id == lazy_or_built.weights_id


def test_missing_weights_are_not_trusted(stored):
    store, request, weights = stored
    weights.unlink()
    assert store.load(request) is None


def test_changed_backbone_code_is_not_trusted(stored, tmp_path, monkeypatch):
    store, request, weights = stored
    copy = tmp_path / "code"
    copy.mkdir()
    for path in desc.CODE_FOLDER.glob("*.py"):
        (copy / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(desc, "CODE_FOLDER", copy)
    store.save(request, build_backbone(plugin.NAME, str(weights)))
    assert store.load(request) is not None
    with open(copy / "efficientnet.py", "a") as handle:
        handle.write("\n# changed\n")
    assert store.load(request) is None


def test_a_changed_factory_module_is_not_trusted(stored, monkeypatch, tmp_path):
    store, request, weights = stored
    module = tmp_path / "factory_copy.py"
    module.write_text(Path(plugin.__file__).read_text())
    record = json.loads(store.path(request).read_text())
    record["factory_file"] = str(module)
    record["code"] = desc.code_digest(str(module))
    store.path(request).write_text(json.dumps(record))
    assert store.load(request) is not None
    module.write_text(module.read_text() + "\n# changed\n")
    assert store.load(request) is None


def test_the_factory_module_is_part_of_the_code_hash():
    plugin_file = str(Path(plugin.__file__).resolve())
    assert desc.code_digest(plugin_file) != desc.code_digest(None)


def test_other_preprocessing_options_are_another_request(stored):
    store, request, weights = stored
    for overrides in ({"crop_pct": 0.5}, {"image_size": 24}, {"normalization": "imagenet"}):
        assert store.load(Request(plugin.NAME, str(weights), overrides)) is None
    built = open_backbone(plugin.NAME, str(weights), {"crop_pct": 0.5}, store, CPU)
    assert not isinstance(built, LazyBackbone) and built.crop_pct == 0.5
    lazy = open_backbone(plugin.NAME, str(weights), {"crop_pct": 0.5}, store, CPU)
    assert isinstance(lazy, LazyBackbone) and lazy.descriptor.preprocessing.crop_pct == 0.5
    assert store.load(request).preprocessing.crop_pct == 1.0  # the first is kept


def test_other_library_versions_are_not_trusted(stored, monkeypatch):
    store, request, _ = stored
    versions = desc.library_versions()
    monkeypatch.setattr(desc, "library_versions", lambda: {**versions, "timm": "0.0.1"})
    assert store.load(request) is None


def test_another_factory_under_the_name_is_not_trusted(stored, monkeypatch):
    store, request, _ = stored

    def impostor(**kwargs):
        return plugin.counted_backbone(**kwargs)

    monkeypatch.setitem(BACKBONES._entries, plugin.NAME, Entry(plugin.NAME, impostor, ""))
    assert store.load(request) is None


def test_a_damaged_record_is_rebuilt(stored):
    store, request, weights = stored
    store.path(request).write_text("{not json")
    assert store.load(request) is None
    store.path(request).write_text(json.dumps({"format": desc.FORMAT}))
    assert store.load(request) is None
    built = open_backbone(plugin.NAME, str(weights), {}, store, CPU)
    assert not isinstance(built, LazyBackbone)
    assert store.load(request) is not None


def test_a_network_that_no_longer_fits_its_description_stops_the_run(stored):
    store, request, weights = stored
    identity = os.stat(weights)
    plugin.write_weights(weights, seed=2)  # same size; the times are put back below
    os.utime(weights, ns=(identity.st_atime_ns, identity.st_mtime_ns))
    lazy = open_backbone(plugin.NAME, str(weights), {}, store, CPU)
    assert isinstance(lazy, LazyBackbone)  # the checks cannot see it: same size and times
    with pytest.raises(ClbenchError, match="differs from the description.*weights_id"):
        lazy.network()
    assert store.load(request) is None  # removed: the next run builds and describes again


def test_backbones_without_local_weights_are_never_described(tmp_path):
    store = DescriptorStore(tmp_path)
    backbone = build_backbone(plugin.NAME, str(plugin.write_weights(tmp_path / "w.pth")))
    backbone.weights_files = None  # what a hub download says
    assert describe(backbone) is None
    store.save(Request(plugin.NAME, None, {}), backbone)
    assert list(tmp_path.glob("*.json")) == []


def test_runs_store_descriptions_in_the_feature_cache(setup):
    tmp, log, weights, data = setup
    run(spec_for("simplecil", weights, data))
    records = list((tmp / "features" / DESCRIPTORS).glob("*.json"))
    assert len(records) == 1
    assert json.loads(records[0].read_text())["backbone"]["name"] == plugin.NAME


@pytest.mark.parametrize(
    ("spec", "options"),
    [("efficientnet-lite0", {"image_size": 32}), ("dinov2-vits14", {"image_size": 56})]
    + [("openclip:tiny", {})],
)
def test_the_offline_backbones_are_described_by_their_weights_files(spec, options, tmp_path):
    backbone = build_backbone(spec, **options)
    if spec == "openclip:tiny":
        assert backbone.weights_files == ()  # seeded random init: no file to watch
    else:
        assert len(backbone.weights_files) == 1 and backbone.weights_files[0].is_file()
    store, request = DescriptorStore(tmp_path), Request(spec, None, dict(options))
    store.save(request, backbone)
    assert store.load(request) == describe(backbone)
    assert store.load(request).cache_id == backbone.cache_id
