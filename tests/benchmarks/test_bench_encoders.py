"""benchmarks/bench_encoders.py: the --quick grid, its JSON, the budget skips and the active-trajectory control."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from testers import load_file_module, tiny_trajtok_model, video_batch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Tolerances: the pytest.approx checks below compare a result's derived fields (means, ratios, sums of stage
# GFLOPs) with the same float64 arithmetic redone here; only float64 rounding separates them.


@pytest.fixture(scope="module")
def bench():
    return load_file_module(os.path.join(ROOT, "benchmarks", "bench_encoders.py"))


@pytest.fixture(scope="module")
def quick(bench, tmp_path_factory):
    """One --quick run (tiny scale, T ∈ {1, 8}, batch 1, each measurement in a forked process)."""
    out = tmp_path_factory.mktemp("quick") / "encoders.json"
    result = bench.main(["--quick", "--threads", "1", "--output", str(out)])
    with open(out) as f:
        assert json.load(f) == json.loads(json.dumps(result))  # what is printed is what is written
    return result, out


def test_quick_json_has_every_measurement_and_field(quick, bench):
    result, out = quick
    assert set(result) >= {
        "settings",
        "matmul_peak",
        "measurements",
        "ratios",
        "skipped",
        "errors",
        "active_trajectories",
        "scales",
    }
    assert result["settings"]["quick"] and result["settings"]["isolation"] == "fork"
    assert result["errors"] == [] and result["skipped"] == []
    assert result["matmul_peak"]["best_gflops_per_s"] == max(result["matmul_peak"]["gflops_per_s"].values()) > 0
    grid = {(m["model"], m["frames"], m["batch_size"]) for m in result["measurements"]}
    assert grid == {(model, t, 1) for model in bench.MODELS for t in (1, 8)}
    for m in result["measurements"]:
        assert m["status"] == "ok" and m["reason"] is None
        assert m["repeats_done"] == 2 and len(m["latency_samples_s"]) == 2
        assert m["latency_s"] == pytest.approx(sum(m["latency_samples_s"]) / 2)  # the median of two runs
        assert m["gflops"] > 0 and m["tokens_per_clip"] > 0
        assert m["peak_memory_mib"] >= m["peak_extra_mib"] >= m["activation_peak_mib"] > 0
    # Plot: written if matplotlib is importable, otherwise skipped with a message (not a dependency).
    try:
        import matplotlib  # noqa: F401

        assert os.path.exists(os.path.splitext(out)[0] + ".png")
    except ImportError:
        assert not os.path.exists(os.path.splitext(out)[0] + ".png")


def test_quick_token_counts_follow_the_controlled_active_trajectories(quick):
    result, _ = quick
    rows = {(m["model"], m["frames"]): m for m in result["measurements"]}
    for frames in (1, 8):
        ours = rows[("trajvit2", frames)]
        # Tiny tokenizer: chunk 16, so one chunk; 24 active trajectories → [CLS] + 24 tokens.
        assert ours["active_trajectories_per_chunk"] == 24 == result["active_trajectories"]["requested_per_chunk"]
        assert ours["tokens_per_clip"] == 25
        vit3d = rows[("vit3d", frames)]
        assert vit3d["tokens_per_clip"] == 1 + math.ceil(frames / 2) * 16  # 64² frames, 16² patches
        tome = rows[("tome", frames)]
        assert tome["tome"]["target_mean_tokens"] == ours["tokens_per_clip"]
        assert tome["tokens_per_clip"] == pytest.approx(sum(tome["tokens_per_layer"]) / len(tome["tokens_per_layer"]))
        assert tome["tokens_per_clip"] == pytest.approx(tome["tome"]["expected_mean_tokens"])
        assert tome["tokens_per_layer"][0] == vit3d["tokens_per_clip"]


def test_quick_ratios_are_computed_from_the_measured_values(quick):
    result, _ = quick
    rows = {(m["model"], m["frames"]): m for m in result["measurements"]}
    assert len(result["ratios"]) == 2
    for row in result["ratios"]:
        ours = rows[("trajvit2", row["frames"])]
        for other in ("vit3d", "tome"):
            theirs = rows[(other, row["frames"])]
            ratio = row[f"trajvit2_over_{other}"]
            assert ratio["time"] == pytest.approx(ours["latency_s"] / theirs["latency_s"])
            assert ratio["tokens"] == pytest.approx(ours["tokens_per_clip"] / theirs["tokens_per_clip"])
            assert ratio["memory"] == pytest.approx(ours["peak_extra_mib"] / theirs["peak_extra_mib"])


def test_quick_tokenizer_stages_partition_time_and_flops(quick, bench):
    result, _ = quick
    peak = result["matmul_peak"]["best_gflops_per_s"]
    for m in result["measurements"]:
        if m["model"] != "trajvit2":
            assert "tokenizer_stages" not in m
            continue
        stages = m["tokenizer_stages"]
        assert set(stages) == {*bench.STAGES, "other", "tokenizer"}
        parts = [*bench.STAGES, "other"]
        assert sum(stages[k]["gflops"] for k in parts) == pytest.approx(stages["tokenizer"]["gflops"])
        assert stages["tokenizer"]["gflops"] == pytest.approx(m["gflops_tokenizer"])
        assert m["gflops_tokenizer"] + m["gflops_encoder"] == pytest.approx(m["gflops"])
        for name in bench.STAGES:
            stage = stages[name]
            assert stage["time_s"] > 0 and stage["gflops"] > 0
            assert stage["gflops_per_s"] == pytest.approx(stage["gflops"] / stage["time_s"])
            assert stage["fraction_of_peak"] == pytest.approx(stage["gflops_per_s"] / peak)


def test_budget_overruns_are_recorded_as_skipped(bench, tmp_path):
    out = tmp_path / "skip.json"
    result = bench.main(
        [
            "--quick",
            "--threads",
            "1",
            "--isolation",
            "none",
            "--models",
            "vit3d",
            "tome",
            "--max_seconds_per_measurement",
            "1e-9",
            "--output",
            str(out),
        ]
    )
    first = [m for m in result["measurements"] if m["frames"] == 1]
    later = [m for m in result["measurements"] if m["frames"] == 8]
    for m in first:
        # Over budget after the FLOP-counting run: no latency, but FLOPs and tokens of that run are kept.
        assert m["status"] == "skipped" and "max_seconds_per_measurement" in m["reason"]
        assert m["latency_s"] is None and m["repeats_done"] == 0 and m["gflops"] > 0 and m["tokens_per_clip"] > 0
    for m in later:
        assert m["status"] == "skipped" and m["reason"].startswith("skipped: not started, T=1 batch=1")
        assert "latency_s" not in m
    assert len(result["skipped"]) == 4
    assert {(s["model"], s["frames"]) for s in result["skipped"]} == {(m, t) for m in ("vit3d", "tome") for t in (1, 8)}
    assert result["ratios"] == []  # no TrajViT2 row measured
    assert json.loads(out.read_text())["skipped"] == result["skipped"]


def test_a_measurement_killed_for_time_is_recorded(bench, tmp_path):
    result = bench.main(
        [
            "--quick",
            "--threads",
            "1",
            "--models",
            "vit3d",
            "--setup_timeout",
            "0",
            "--max_seconds_per_measurement",
            "1e-6",
            "--output",
            str(tmp_path / "killed.json"),
        ]
    )
    first, later = result["measurements"]
    assert first["status"] == "skipped" and "killed" in first["reason"]
    assert later["status"] == "skipped" and "not started" in later["reason"]
    assert result["errors"] == []


def test_compute_ratios_leaves_missing_values_empty(bench):
    measurements = [
        {
            "scale": "s",
            "model": "trajvit2",
            "batch_size": 1,
            "frames": 4,
            "latency_s": 2.0,
            "tokens_per_clip": 25,
            "peak_extra_mib": 100.0,
        },
        {
            "scale": "s",
            "model": "vit3d",
            "batch_size": 1,
            "frames": 4,
            "latency_s": 4.0,
            "tokens_per_clip": 50,
            "peak_extra_mib": 400.0,
        },
        {"scale": "s", "model": "tome", "batch_size": 1, "frames": 4, "status": "skipped", "tokens_per_clip": 40.0},
    ]
    (row,) = bench.compute_ratios(measurements)
    assert row["trajvit2_over_vit3d"] == {"time": 0.5, "tokens": 0.5, "memory": 0.25}
    assert row["trajvit2_over_tome"] == {"time": None, "tokens": 25 / 40.0, "memory": None}


@pytest.mark.parametrize("num_active,frames", [(1, 1), (5, 5), (8, 9)])
def test_active_trajectory_override_is_exact_and_keeps_the_tokenizer_cost(bench, num_active, frames):
    """Exactly N active per chunk (chunk 4: T=5 and T=9 end with a shorter chunk) and identical FLOPs in every stage:
    only which slots win changes, not the work."""
    # As in the benchmark: FlopCounterMode's module tracker fails on parameters that require grad in inference mode.
    model = tiny_trajtok_model().requires_grad_(False)
    video = video_batch(2, frames, size=64, seed=1)
    device = torch.device("cpu")

    def stage_flops():
        counter = bench.flop_counter()
        recorder = bench.StageRecorder(model, device, counter)
        with torch.inference_mode(), counter:
            out = model(video)
        recorder.remove()
        return out, dict(recorder.flops)

    free_out, free_flops = stage_flops()
    override = bench.ActiveTrajectoryOverride(model, num_active, grid=16)
    out, flops = stage_flops()
    override.remove()
    chunks = math.ceil(frames / model.config.chunk_size)
    assert out.num_trajectories.tolist() == [chunks * num_active] * 2
    active = out.trajectory_mask.view(2, chunks, -1)
    assert active[..., :num_active].all() and not active[..., num_active:].any()
    assert flops == free_flops and all(flops[s] > 0 for s in bench.STAGES)
    # Removed: the model is back to its own assignment.
    with torch.inference_mode():
        assert torch.equal(model(video).trajectory_ids, free_out.trajectory_ids)  # the same forward: bit-identical
    assert "_initial_queries" not in model.__dict__


def test_override_and_arguments_reject_bad_values(bench):
    with pytest.raises(ValueError, match="active_trajectories"):
        bench.ActiveTrajectoryOverride(tiny_trajtok_model(), 9, grid=16)  # K = 8
    for argv in (
        ["--quick", "--active_trajectories", "0"],
        ["--quick", "--repeats", "0"],
        ["--quick", "--active_trajectories", "33"],
        ["--quick", "--max_seconds_per_measurement", "0"],
    ):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)


def test_flop_counter_counts_sparse_products_by_stored_elements(bench):
    from trajtok_hf.models.perceiver_trajtok import SegmentWeightedSum

    weights, inputs, segment = torch.rand(100, 8), torch.randn(100, 16), torch.randint(0, 5, (100,))
    with bench.flop_counter() as counter:
        SegmentWeightedSum.apply(weights, inputs, segment, 5)  # a (5·8 × 100) CSR with 800 stored weights
        torch.randn(3, 4) @ torch.randn(4, 5)
    assert counter.get_total_flops() == 2 * 800 * 16 + 2 * 3 * 4 * 5


def test_default_output_is_a_new_file_never_the_committed_results(bench):
    args = bench.parse_args(["--quick"])
    output = Path(args.output)
    assert output.parent.name == "results" and output.name.startswith("encoders_") and output.suffix == ".json"
    assert output.name != "encoders.json" and not output.exists()
    assert args.plot == str(output.with_suffix(".png"))
