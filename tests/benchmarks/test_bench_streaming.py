"""benchmarks/bench_streaming.py: interleaved A/B of the streamed and one-shot Perceiver paths."""

from __future__ import annotations

import json
import os

import pytest
from testers import float_error_bound, load_file_module, tiny_trajtok_terms

from trajtok_hf import TrajTokConfig
from trajtok_hf.models import attention_trajtok, perceiver_trajtok

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def bench():
    return load_file_module(os.path.join(ROOT, "benchmarks", "bench_streaming.py"))


def test_quick_run_times_both_paths_and_checks_they_agree(bench, tmp_path, capsys):
    out = tmp_path / "streaming.json"
    results = bench.main(["--quick", "--rounds", "2", "--output", str(out)])
    assert attention_trajtok.STREAM_BLOCK_PIXELS == 4096  # restored after the run
    (result,) = results
    assert result["frames"] == 8 and result["block_rows"] == 256 and result["pixels"] == 8 * 16 * 16
    # Error bounds: the quick tokenizer is tiny_trajtok_config's at 64² with its 8 frames in one chunk; its logits are
    # at most the scale cap (20) in size, its tokens O(1) (LayerNorm'ed latents through a 0.02-std projection).
    logit_terms, token_terms = tiny_trajtok_terms(64, chunk_frames=8)
    logit_bound = float_error_bound(TrajTokConfig().logit_scale_max, logit_terms)
    assert result["max_abs_diff_tokens"] <= float_error_bound(1.0, token_terms)
    assert result["max_abs_diff_logits"] <= logit_bound
    # Hard ids may differ only where the two best logits are a float tie.
    gap = result["max_top2_gap_where_ids_differ"]
    assert gap is None or gap <= 2 * logit_bound
    for path in ("one_shot", "streamed"):
        assert len(result[path]["latencies_s"]) == 2 and result[path]["latency_s"] > 0
        assert {"feature_extractor_s", "query_perceiver_s", "refinement_perceiver_s"} <= set(result[path])
    # The same float64 ratio redone here: only float64 rounding separates them.
    assert result["speedup"] == pytest.approx(result["one_shot"]["latency_s"] / result["streamed"]["latency_s"])
    assert json.loads(out.read_text())["results"][0]["frames"] == 8
    assert "| 8 |" in capsys.readouterr().out


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_compare_the_written_out_blocks_with_the_cpu_flash_kernel(bench, dtype, monkeypatch):
    """``--compare streamed_written_out streamed``: both paths stream; the baseline attends to each block with
    written-out scores (the CPU flash kernel switched off, then restored), the candidate through the kernel."""
    kernels = []
    original = attention_trajtok.attention_with_log_sum_exp
    monkeypatch.setattr(
        attention_trajtok,
        "attention_with_log_sum_exp",
        lambda *a: kernels.append(attention_trajtok._CPU_FLASH_ATTENTION is not None) or original(*a),
    )
    flash = attention_trajtok._CPU_FLASH_ATTENTION
    (result,) = bench.main(
        ["--quick", "--rounds", "1", "--dtype", dtype, "--compare", "streamed_written_out", "streamed"]
    )
    assert attention_trajtok._CPU_FLASH_ATTENTION is flash and attention_trajtok.STREAM_BLOCK_PIXELS == 4096
    assert (result["baseline"], result["candidate"], result["dtype"]) == ("streamed_written_out", "streamed", dtype)
    assert result["speedup"] == pytest.approx(
        result["streamed_written_out"]["latency_s"] / result["streamed"]["latency_s"]
    )
    assert False in kernels and (flash is None or True in kernels)
    # Both paths agree within the float rounding of the dtype (bfloat16: 8 significant bits) on O(1) tokens.
    assert result["max_abs_diff_tokens"] <= (0.1 if dtype == "bf16" else 1e-4)


def test_streamed_path_really_streams(bench, monkeypatch):
    calls = []
    original = perceiver_trajtok.streamed_context_attention
    monkeypatch.setattr(
        perceiver_trajtok,
        "streamed_context_attention",
        lambda *a, **k: calls.append(attention_trajtok.STREAM_BLOCK_PIXELS) or original(*a, **k),
    )
    bench.run(8, rounds=1, quick=True, block_rows=256)
    assert calls and set(calls) == {256}  # only the streamed path streams, with the asked block size


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--quick", "--rounds", "0"], "--rounds and --frames must be >= 1"),
        (["--quick", "--block_rows", "100000"], "nothing would stream"),
        (["--quick", "--threads", "0"], "--threads must be >= 1"),
        (["--quick", "--block_rows", "0"], "--block_rows must be >= 1"),
        (["--quick", "--compare", "streamed", "streamed"], "--compare needs two different paths"),
    ],
)
def test_rejects_bad_arguments(bench, argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err
