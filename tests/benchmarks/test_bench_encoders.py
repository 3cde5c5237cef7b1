"""benchmarks/bench_encoders.py: the --quick grid in fp32 and bf16, its JSON, the bf16-vs-fp32 output check,
torch.compile timing, the budget skips and the active-trajectory control."""

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
    """One --quick run in fp32 and bf16 with the output check (tiny scale, T ∈ {1, 8}, batch 1, each measurement in a
    forked process)."""
    out = tmp_path_factory.mktemp("quick") / "encoders.json"
    result = bench.main(
        ["--quick", "--threads", "1", "--dtype", "fp32", "bf16", "--check_outputs", "--output", str(out)]
    )
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
        "bf16_over_fp32",
        "output_check",
    }
    assert result["settings"]["quick"] and result["settings"]["isolation"] == "fork"
    assert result["settings"]["dtypes"] == ["fp32", "bf16"] and "compile_errors" not in result
    assert result["errors"] == [] and result["skipped"] == []
    for dtype in ("fp32", "bf16"):  # both peaks, whatever --dtype
        peak = result["matmul_peak"][dtype]
        assert set(peak["gflops_per_s"]) == {"128", "256"}
        assert peak["best_gflops_per_s"] == max(peak["gflops_per_s"].values()) > 0
    grid = {(m["dtype"], m["model"], m["frames"], m["batch_size"]) for m in result["measurements"]}
    assert grid == {(dtype, model, t, 1) for dtype in ("fp32", "bf16") for model in bench.MODELS for t in (1, 8)}
    assert len(result["measurements"]) == len(grid)
    for m in result["measurements"]:
        assert m["status"] == "ok" and m["reason"] is None
        # Built in the measured dtype (every parameter), fed the float32 video, which the model casts.
        torch_name = {"fp32": "float32", "bf16": "bfloat16"}[m["dtype"]]
        assert m["param_dtypes"] == [torch_name] and m["output_dtype"] == torch_name
        assert "compile" not in m
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


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_quick_token_counts_follow_the_controlled_active_trajectories(quick, dtype):
    result, _ = quick
    rows = {(m["model"], m["frames"]): m for m in result["measurements"] if m["dtype"] == dtype}
    for frames in (1, 8):
        ours = rows[("trajvit2", frames)]
        assert ours["active_trajectories_per_video"] == [24]  # bf16 rounding does not break the control
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


def test_quick_ratios_are_computed_within_a_dtype(quick):
    result, _ = quick
    rows = {(m["dtype"], m["model"], m["frames"]): m for m in result["measurements"]}
    assert [(row["dtype"], row["frames"]) for row in result["ratios"]] == [
        ("fp32", 1),
        ("fp32", 8),
        ("bf16", 1),
        ("bf16", 8),
    ]
    for row in result["ratios"]:
        ours = rows[(row["dtype"], "trajvit2", row["frames"])]
        for other in ("vit3d", "tome"):
            theirs = rows[(row["dtype"], other, row["frames"])]
            ratio = row[f"trajvit2_over_{other}"]
            assert ratio["time"] == pytest.approx(ours["latency_s"] / theirs["latency_s"])
            assert ratio["tokens"] == pytest.approx(ours["tokens_per_clip"] / theirs["tokens_per_clip"])
            assert ratio["memory"] == pytest.approx(ours["peak_extra_mib"] / theirs["peak_extra_mib"])


def test_quick_bf16_over_fp32_compares_each_model_across_dtypes(quick, bench):
    result, _ = quick
    rows = {(m["dtype"], m["model"], m["frames"]): m for m in result["measurements"]}
    assert len(result["bf16_over_fp32"]) == 6  # 3 models × 2 frame counts
    for row in result["bf16_over_fp32"]:
        low, full = rows[("bf16", row["model"], row["frames"])], rows[("fp32", row["model"], row["frames"])]
        assert row["time"] == pytest.approx(low["latency_s"] / full["latency_s"])
        assert row["memory"] == pytest.approx(low["peak_extra_mib"] / full["peak_extra_mib"])
        assert "compiled_time" not in row


def test_quick_output_check_compares_bf16_with_fp32(quick):
    result, _ = quick
    rows = {(row["model"], row["assignment"]): row for row in result["output_check"]}
    assert set(rows) == {("trajvit2", "controlled"), ("trajvit2", "free"), ("vit3d", None)}
    for row in rows.values():
        assert row["status"] == "ok" and row["scale"] == "tiny" and row["frames"] == 16 and row["batch_size"] == 1
        assert row["output_dtypes"] == ["float32", "bfloat16"]
        # bf16 really ran (a difference), and close to fp32 (the tiny tower's embeddings agree to a few %).
        assert 0 < row["max_abs_diff"] and 0 < row["mean_abs_diff_rel"] <= row["max_abs_diff_rel"] < 0.25
        assert 0 < row["relative_l2"] < 0.05 and 0.99 < row["cosine"] <= 1.0 + 1e-6
    for assignment in ("controlled", "free"):
        row = rows[("trajvit2", assignment)]
        assert 0.0 <= row["trajectory_id_agreement"] <= 1.0
    # The controlled assignment is the one timed: the same 24 trajectories win in both precisions.
    controlled = rows[("trajvit2", "controlled")]
    assert controlled["trajectory_id_agreement"] == 1.0
    assert controlled["active_trajectories_fp32"] == controlled["active_trajectories_bf16"] == [24]
    assert "trajectory_id_agreement" not in rows[("vit3d", None)]


def test_quick_tokenizer_stages_partition_time_and_flops(quick, bench):
    result, _ = quick
    for m in result["measurements"]:
        peak = result["matmul_peak"][m["dtype"]]["best_gflops_per_s"]  # the peak of the dtype the stage ran in
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


def test_bf16_only_run(bench, tmp_path):
    """--dtype bf16 alone: bf16 rows only, their stages against the bf16 peak, nothing to compare across dtypes."""
    result = bench.main(
        ["--quick", "--threads", "1", "--dtype", "bf16", "--models", "trajvit2", "vit3d", "--frames", "1"]
        + ["--output", str(tmp_path / "bf16.json")]
    )
    assert result["settings"]["dtypes"] == ["bf16"] and result["errors"] == []
    assert {m["dtype"] for m in result["measurements"]} == {"bf16"} and len(result["measurements"]) == 2
    assert all(m["param_dtypes"] == ["bfloat16"] and m["latency_s"] > 0 for m in result["measurements"])
    assert result["matmul_peak"]["bf16"]["best_gflops_per_s"] > 0 and result["matmul_peak"]["fp32"]
    (row,) = result["ratios"]
    assert row["dtype"] == "bf16" and row["trajvit2_over_vit3d"]["time"] > 0
    assert result["bf16_over_fp32"] == [] and "output_check" not in result
    (ours,) = [m for m in result["measurements"] if m["model"] == "trajvit2"]
    peak = result["matmul_peak"]["bf16"]["best_gflops_per_s"]
    stage = ours["tokenizer_stages"]["backbone"]
    assert stage["fraction_of_peak"] == pytest.approx(stage["gflops"] / stage["time_s"] / peak)


def _compile_run(bench, tmp_path, *extra):
    return bench.main(
        ["--quick", "--threads", "1", "--isolation", "none", "--models", "vit3d", "--frames", "1", "--compile"]
        + [*extra, "--output", str(tmp_path / "compile.json")]
    )


def test_a_failed_compilation_is_recorded_not_fatal(bench, tmp_path, monkeypatch):
    def broken_compile(fn, *args, **kwargs):
        def call(*call_args, **call_kwargs):
            raise RuntimeError("inductor exploded")

        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    result = _compile_run(bench, tmp_path)  # returns: no SystemExit
    (m,) = result["measurements"]
    assert m["status"] == "ok" and m["latency_s"] > 0  # the eager measurement stands
    assert m["compile"]["status"] == "error"
    # Both tries are in the error: the whole tower, then the tokenizer and the encoder separately.
    assert "whole vision tower: RuntimeError: inductor exploded" in m["compile"]["error"]
    assert "tokenizer and encoder separately: RuntimeError: inductor exploded" in m["compile"]["error"]
    assert result["compile_errors"] == [
        {
            "scale": "tiny",
            "dtype": "fp32",
            "model": "vit3d",
            "frames": 1,
            "batch_size": 1,
            "error": m["compile"]["error"],
        }
    ]
    assert result["errors"] == []
    assert json.loads((tmp_path / "compile.json").read_text())["compile_errors"] == result["compile_errors"]


def test_compilation_falls_back_to_tokenizer_and_encoder(bench, tmp_path, monkeypatch):
    """The whole tower does not compile: the tokenizer and the encoder are compiled separately (here an identity
    "compile", so the compiled output equals eager's exactly)."""
    compiled = []

    def partial_compile(fn, *args, **kwargs):
        if isinstance(fn, torch.nn.Module) and hasattr(fn, "vision_model"):

            def call(*call_args, **call_kwargs):
                raise RuntimeError("whole tower unsupported")

            return call
        compiled.append(getattr(fn, "__name__", type(fn).__name__))
        return fn

    monkeypatch.setattr(torch, "compile", partial_compile)
    result = _compile_run(bench, tmp_path)
    (m,) = result["measurements"]
    c = m["compile"]
    assert c["status"] == "ok" and c["compiled"].startswith("tokenizer") and compiled == ["_call_impl", "_encode"]
    assert c["whole_error"] == "RuntimeError: whole tower unsupported"
    assert c["repeats_done"] == 2 and c["latency_s"] == pytest.approx(sum(c["latency_samples_s"]) / 2)
    assert c["speedup"] == pytest.approx(m["latency_s"] / c["latency_s"])
    assert c["latency_ratio_compiled_over_eager"] == pytest.approx(c["latency_s"] / m["latency_s"])
    # Nothing recompiles: one stabilisation call, and the compile time is what the first call took beyond a forward.
    assert c["stable"] and c["stabilise_calls"] == 1 and c["recompiled_frames"] == 0
    assert c["frames_compiled_during_runs"] == 0
    assert c["compile_s"] == pytest.approx(c["first_call_s"] + c["stabilise_s"] - 2 * c["latency_s"])
    assert c["max_abs_diff_vs_eager"] == 0.0 and c["graphs"] == 0 and c["graph_breaks"] == 0
    assert result["compile_errors"] == []


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vit3d", "trajvit2"])
def test_compile_at_the_tiny_scale_reports_a_speedup_or_an_error(bench, tmp_path, model, request):
    """Real inductor compilation of a tower: it gets a compiled latency and speed-up, or its error string, and the run
    carries on. ViT3D compiles in about half a minute on two cores; TrajViT2's many graphs take nearly two minutes,
    so its case runs in a CI step of its own (``--run-inductor``), while the README's test command compiles TrajViT2
    with dynamo's eager backend (``test_torch_compile_reuses_its_graphs_after_the_first_calls``)."""
    if model == "trajvit2" and not request.config.getoption("--run-inductor"):
        pytest.skip("TrajViT2 under inductor: run with --run-inductor (its own CI step)")
    result = bench.main(
        ["--quick", "--threads", "1", "--models", model, "--frames", "1", "--compile"]
        + ["--output", str(tmp_path / "compile.json")]
    )
    assert result["errors"] == [] and len(result["measurements"]) == 1
    for m in result["measurements"]:
        c = m["compile"]
        if c["status"] == "error":
            assert isinstance(c["error"], str) and c["error"]
            assert any(e["model"] == m["model"] for e in result["compile_errors"])
            continue
        assert c["status"] == "ok" and c["compiled"].startswith("vision tower")
        assert c["speedup"] == pytest.approx(m["latency_s"] / c["latency_s"]) and c["speedup"] > 0
        assert c["first_call_s"] > c["latency_s"] > 0 and c["compile_s"] > 0
        assert c["graphs"] >= 1 and c["graphs_after_runs"] >= c["graphs"] and c["graph_breaks"] >= 0
        # Calls went on until one compiled nothing (or dynamo's recompile limit): the timed calls compile nothing.
        assert 1 <= c["stabilise_calls"] <= torch._dynamo.config.recompile_limit + 2
        if c["stable"]:
            assert c["frames_compiled_during_runs"] == 0
        assert c["compile_s"] == pytest.approx(
            c["first_call_s"] + c["stabilise_s"] - (1 + c["stabilise_calls"]) * c["latency_s"]
        )
        assert c["max_abs_diff_vs_eager"] < 1e-3  # fp32: the compiled tower computes the same embedding


def test_compute_ratios_keep_dtypes_apart(bench):
    def row(dtype, model, latency):
        return {"scale": "s", "dtype": dtype, "model": model, "batch_size": 1, "frames": 4, "latency_s": latency}

    measurements = [row("bf16", "trajvit2", 1.0), row("fp32", "trajvit2", 3.0), row("fp32", "vit3d", 6.0)]
    measurements.append(row("bf16", "vit3d", 4.0))
    fp32, bf16 = bench.compute_ratios(measurements)  # fp32 first, whatever the order measured
    assert (fp32["dtype"], fp32["trajvit2_over_vit3d"]["time"]) == ("fp32", 0.5)
    assert (bf16["dtype"], bf16["trajvit2_over_vit3d"]["time"]) == ("bf16", 0.25)
    across = {r["model"]: r for r in bench.compute_dtype_ratios(measurements)}
    assert across["trajvit2"]["time"] == pytest.approx(1 / 3) and across["vit3d"]["time"] == pytest.approx(4 / 6)
    assert across["vit3d"]["memory"] is None


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
        ["--quick", "--dtype", "fp16"],
        ["--quick", "--dtype", "bf16", "bf16"],
        ["--quick", "--check_frames", "0"],
        ["--quick", "--compile_timeout", "0"],
        ["--quick", "--check_outputs", "--models", "tome"],
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
