"""The fidelity harness's own computations: PILOT's metrics, the SEMA weight layout, and
exports that parallel runs can share."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from clbench import metrics

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "fidelity"))

from export import (  # noqa: E402
    folded_layer_scale,
    sema_layout,
    tree_once,
    written_atomically,
)
from harness import pilot_metrics, pilot_pipeline  # noqa: E402


def test_pilot_metrics_match_clbench_conventions():
    # Correct counts after each step (rows) per task (columns), 3 tasks of 10/20/30 samples.
    correct = np.array([[8, -1, -1], [6, 18, -1], [5, 15, 27]])
    counts = np.array([10, 20, 30])
    records = []
    for t in range(3):
        seen = counts[: t + 1]
        total = 100 * correct[t, : t + 1].sum() / seen.sum()
        grouped = {
            f"{10 * i:02d}-{10 * i + 9:02d}": 100 * correct[t, i] / counts[i] for i in range(t + 1)
        }
        records.append({"cnn": {"top1": round(total, 2), "grouped": {"total": total, **grouped}}})
    ref = pilot_metrics(records)
    summary = metrics.summarize(correct.clip(min=0), counts)
    assert abs(ref["avg"] - 100 * summary["avg_acc_sample"]) < 0.01
    assert abs(ref["last"] - 100 * summary["last_acc_sample"]) < 0.01
    assert abs(ref["forgetting"] - 100 * summary["forgetting_pilot"]) < 1e-6


def test_pilot_pipeline_keeps_its_resize_rule():
    assert pilot_pipeline(224)["crop_pct"] == 0.875
    small = pilot_pipeline(112)
    assert small["image_size"] == 112 and 112 / small["crop_pct"] == 128
    assert small["normalization"] == "none"


def test_sema_layout_folds_layer_scale_exactly():
    import timm

    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_small_patch14_dinov2", pretrained=False, img_size=28, depth=1, init_values=0.3
    ).eval()
    block = vit.blocks[0]
    with torch.no_grad():
        block.ls1.gamma.uniform_(0.1, 1.0)
        block.ls2.gamma.uniform_(0.1, 1.0)
    state = sema_layout(vit)
    assert not any(".ls" in k or "qkv" in k for k in state)
    x = torch.randn(2, 5, vit.embed_dim)

    def reference_block(h):  # SEMA-CL's block arithmetic, adapters aside
        b, n, d = h.shape
        heads = block.attn.num_heads
        y = torch.nn.functional.layer_norm(
            h, (d,), state["blocks.0.norm1.weight"], state["blocks.0.norm1.bias"], 1e-6
        )

        def proj(name):
            out = y @ state[f"blocks.0.attn.{name}.weight"].T + state[f"blocks.0.attn.{name}.bias"]
            return out.view(b, n, heads, d // heads).transpose(1, 2)

        attn = torch.softmax(
            proj("q_proj") @ proj("k_proj").transpose(-2, -1) * (d // heads) ** -0.5, -1
        )
        out = (attn @ proj("v_proj")).transpose(1, 2).reshape(b, n, d)
        h = h + out @ state["blocks.0.attn.proj.weight"].T + state["blocks.0.attn.proj.bias"]
        y = torch.nn.functional.layer_norm(
            h, (d,), state["blocks.0.norm2.weight"], state["blocks.0.norm2.bias"], 1e-6
        )
        y = torch.nn.functional.gelu(
            y @ state["blocks.0.fc1.weight"].T + state["blocks.0.fc1.bias"]
        )
        return h + y @ state["blocks.0.fc2.weight"].T + state["blocks.0.fc2.bias"]

    with torch.no_grad():
        torch.testing.assert_close(reference_block(x), block(x), atol=1e-5, rtol=1e-5)


def test_sema_rows_pair_each_score_with_its_decision():
    from harness import sema_rows

    report = {
        "reference": {
            "z": [
                {"task": 1, "scan": 0, "layer": 9, "min": 1.2, "batch": 100, "buffers": []},
                {"task": 1, "scan": 1, "layer": 10, "min": 0.5, "batch": 100, "buffers": []},
            ],
            "added": [{"task": 1, "scan": 0, "layer": 9, "z": 1.2}],
        },
        "clbench": {
            "expansion_decisions": [
                {"task": 1, "scan": 0, "expanded_layer": 10, "highest_z": {"9": 0.9, "10": 1.1}},
                {"task": 1, "scan": 1, "expanded_layer": None, "highest_z": {"9": 0.8}},
            ]
        },
    }
    rows = sema_rows(report)
    expands = {(r["side"], r["scan"], r["layer"]): r["expands"] for r in rows}
    assert expands == {
        ("SEMA-CL", 0, 9): True,
        ("SEMA-CL", 1, 10): False,
        ("clbench", 0, 9): False,
        ("clbench", 0, 10): True,
        ("clbench", 1, 9): False,
    }
    assert [r["z"] for r in rows if r["side"] == "clbench"] == [0.9, 1.1, 0.8]


def test_pilot_step_timing_counts_steps_and_leaves_out_test_passes():
    import time

    import pilot_run

    class Learner:  # the shape of a PILOT learner's first-session training
        _cur_task = 0

        def _compute_accuracy(self, model, loader):
            end = time.perf_counter() + 0.05  # busy: the test pass costs CPU time too
            while time.perf_counter() < end:
                pass
            return 0.0

        def _init_train(self, train_loader, test_loader, optimizer, scheduler):
            for _ in range(2):
                for _ in train_loader:
                    optimizer.step()
                self._compute_accuracy(None, test_loader)

    pilot_run.TRAIN_PHASES.clear()
    pilot_run.time_init_train(Learner)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    loader = torch.utils.data.DataLoader(list(range(6)), batch_size=2)
    Learner()._init_train(loader, None, optimizer, None)
    (phase,) = pilot_run.TRAIN_PHASES
    assert phase["steps"] == 6 and phase["batch_size"] == 2
    assert phase["test_pass_seconds"] >= 0.1
    assert phase["seconds_per_step"] < 0.05  # the two 0.05 s test passes are not in it
    assert 0 <= phase["cpu_seconds_per_step"] < 0.005  # nor their CPU time (0.1 s / 6 steps)
    assert "step" not in vars(optimizer)  # the optimiser is left as it was


def test_timed_fit_covers_the_shared_first_session_adaptation():
    import importlib

    from harness import timed_fit

    adaptation = importlib.import_module("clbench.methods.adaptation")
    own = adaptation.fit
    with timed_fit("aper") as phases:
        assert adaptation.fit is not own
    assert adaptation.fit is own and phases == []


def test_adapter_vit_learners_get_the_exported_vit(tmp_path):
    import json

    from harness import PILOT_CONFIGS, adapter_vit_args, reference_learner

    (tmp_path / "exps").mkdir()
    (tmp_path / "exps" / "a.json").write_text(json.dumps({"model_name": "aper_adapter"}))
    assert reference_learner(tmp_path, "exps/a.json") == "aper_adapter"
    vit = {"file": "/x/vit.pt", "vit": {"embed_dim": 384, "depth": 11}}
    args = adapter_vit_args("mos", vit)
    assert args[:2] == ["--adapter-vit", "/x/vit.pt"] and json.loads(args[3]) == vit["vit"]
    assert adapter_vit_args("simplecil", None) == []
    with pytest.raises(SystemExit, match="needs a ViT"):
        adapter_vit_args("aper_adapter", None)
    # clbench's default peft (adapter) is compared with PILOT's adapter learner by default.
    assert PILOT_CONFIGS["aper"] == "exps/aper_aperpter_inr.json"
    assert PILOT_CONFIGS["mos"] == "exps/mos_inr.json"
    assert adapter_vit_args("ease", vit)[0] == "--adapter-vit"


def test_truncated_vit_layout_has_no_final_norm():
    # clbench's default DINOv2 feature drops the final norm; pilot_run.register_adapter_vit
    # replaces PILOT's ViT norm by the identity exactly when the exported weights lack it.
    import timm

    from clbench.backbones.dinov2 import truncate_blocks

    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=28, depth=2)
    assert "norm.weight" in sema_layout(vit)
    state = sema_layout(truncate_blocks(vit, 1))
    assert "norm.weight" not in state and not any(k.startswith("blocks.1.") for k in state)


def test_seed_table_gives_means_sds_and_the_within_sd_verdict():
    from summarize import seed_table, step_times

    def report(ref, ours, seconds):
        side = lambda c, s: {  # noqa: E731
            "curve": c,
            "avg": float(np.mean(c)),
            "last": c[-1],
            "forgetting": 1.0,
            "train_phases": [{"steps": 2, "seconds_per_step": s, "cpu_seconds_per_step": s / 2}],
        }
        return {"reference": side(ref, seconds), "clbench": side(ours, seconds / 2)}

    reports = [
        report([30.0, 20.0], [33.0, 21.0], 1.0),
        report([34.0, 22.0], [35.0, 23.0], 3.0),
    ]
    for r in reports:
        r["clbench"]["forgetting"] = 3.0  # 2 points above a reference with sd 0
    rows = {r["metric"]: r for r in seed_table(reports)}
    step0 = rows["step 0"]
    assert step0["reference"] == [30.0, 34.0] and step0["clbench"] == [33.0, 35.0]
    assert step0["reference_mean"] == 32.0 and abs(step0["reference_sd"] - 8**0.5) < 1e-12
    assert step0["difference"] == 2.0 and step0["within_sd"]
    assert rows["last"]["difference"] == 1.0 and rows["last"]["within_sd"]  # sd 1.41
    assert rows["forgetting"]["difference"] == 2.0 and not rows["forgetting"]["within_sd"]
    times = step_times([report([1.0], [1.0], 1.0), report([1.0], [1.0], 3.0)])
    assert times["reference"] == {"steps": 4, "wall": 2.0, "cpu": 1.0}
    assert times["clbench"]["wall"] == 1.0


def test_folded_layer_scale_gives_a_vit_without_it_the_same_function():
    import timm

    torch.manual_seed(0)
    scaled = timm.create_model(
        "vit_small_patch14_dinov2", pretrained=False, img_size=28, depth=2, init_values=0.3
    ).eval()
    with torch.no_grad():
        for block in scaled.blocks:
            block.ls1.gamma.uniform_(0.1, 1.0)
            block.ls2.gamma.uniform_(0.1, 1.0)
    plain = copy.deepcopy(scaled)
    for block in plain.blocks:  # the blocks of a ViT without layer scale (CODA's, SEMA-CL's)
        block.ls1 = block.ls2 = torch.nn.Identity()
    state = folded_layer_scale(scaled.state_dict())
    assert not any(".ls" in k for k in state)
    plain.load_state_dict(state)  # strict: every key of a ViT without layer scale, no other
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(plain(x), scaled(x), atol=1e-5)
        assert not torch.allclose(
            plain.blocks[0].attn.proj.weight, scaled.blocks[0].attn.proj.weight
        )


def test_an_export_that_fails_midway_leaves_the_previous_file_whole(tmp_path):
    path = tmp_path / "backbones" / "net.pt"
    with written_atomically(path) as temporary:
        torch.save({"w": torch.ones(3)}, temporary)
    with pytest.raises(RuntimeError), written_atomically(path) as temporary:
        temporary.write_bytes(b"half a file")
        raise RuntimeError("the trace check failed")
    assert torch.equal(torch.load(path)["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["net.pt"]  # no temporary left behind


def test_a_tree_appears_whole_or_not_at_all(tmp_path):
    root = tmp_path / "data" / "emoji"
    seen_during_write = []

    def write(tree: Path) -> dict:
        (tree / "train" / "00").mkdir(parents=True)
        (tree / "train" / "00" / "00000.png").write_bytes(b"png")
        seen_during_write.append(root.exists())
        return {"classes": ["a"], "train": 1}

    assert tree_once(root, write) == {"classes": ["a"], "train": 1}
    assert seen_during_write == [False]  # a parallel reader saw no tree while it was written
    assert (root / "train" / "00" / "00000.png").read_bytes() == b"png"
    assert tree_once(root, lambda tree: pytest.fail("written twice")) == {
        "classes": ["a"],
        "train": 1,
    }
    assert sorted(p.name for p in root.parent.iterdir()) == ["emoji"]


def test_a_run_that_loses_the_race_reads_the_winners_tree(tmp_path):
    root = tmp_path / "emoji"

    def write(tree: Path) -> dict:
        (tree / "mine").mkdir(parents=True)
        # Another run finishes its rename while this one is still writing.
        root.mkdir()
        (root / "clbench-export.json").write_text('{"winner": true}')
        return {"winner": False}

    assert tree_once(root, write) == {"winner": True}
    assert not (root / "mine").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emoji"]


def test_a_stale_tree_without_metadata_is_an_error_not_a_silent_mix(tmp_path):
    root = tmp_path / "emoji"
    (root / "train").mkdir(parents=True)  # left by an export interrupted before this fix
    with pytest.raises(OSError):
        tree_once(root, lambda tree: (tree.mkdir(), {})[1])


def test_the_cpu_shim_for_a_cuda_only_line_keeps_its_values_and_gradients():
    from pilot_run import torch_with_copied_grad_zeros

    shim = torch_with_copied_grad_zeros()
    # PILOT's vit_coda_promtpt.py:337-343, which fails on a CPU with torch itself.
    with pytest.raises(RuntimeError, match="leaf Variable"):
        total = torch.zeros((1,), requires_grad=True).to(device="cpu")
        total += torch.ones(1)
    weight = torch.ones(1, requires_grad=True)
    total = shim.zeros((1,), requires_grad=True).to(device="cpu")
    total += 3 * weight
    total.sum().backward()
    assert total.item() == 3.0 and weight.grad.item() == 3.0
    assert not shim.zeros(2).requires_grad and shim.cat is torch.cat  # the rest is torch's


def test_a_hard_coded_vit_b_width_reads_as_the_vit_run():
    from pilot_run import nn_at_width

    nn = nn_at_width(384)
    assert nn.Linear(768, 10).in_features == 384  # utils/inc_net.py:621, models/sema.py:35
    assert nn.Linear(64, 10).in_features == 64
    assert nn.LayerNorm is torch.nn.LayerNorm
