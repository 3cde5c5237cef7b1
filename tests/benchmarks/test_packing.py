"""benchmarks/packing.py: padded vs packed encoder on a tiny batch, its JSON and its FLOP accounting."""

from __future__ import annotations

import json
import os
import re

import pytest
import torch
from testers import float_error_bound, load_file_module, transformer_layer_terms

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def bench():
    return load_file_module(os.path.join(ROOT, "benchmarks", "packing.py"))


def test_tiny_run_json_fields(bench, tmp_path, capsys):
    out = tmp_path / "packing.json"
    threads = torch.get_num_threads()
    argv = ["--scales", "tiny", "--tiny_counts", "1", "4", "2", "--tiny_tokens_per_trajectory", "1", "2"]
    argv += ["--dtype", "fp32", "--repeats", "2", "--warmup", "0", "--threads", "1", "--output", str(out)]
    report = bench.main(argv)
    assert torch.get_num_threads() == threads  # restored after the run
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))  # what is returned is what is written
    assert report["benchmark"] == "packing" and report["machine"]["threads"] == 1 and report["wall_s"] > 0
    assert [(m["tokens_per_trajectory"], m["dtype"]) for m in report["measurements"]] == [(1, "fp32"), (2, "fp32")]
    for row in report["measurements"]:
        n = row["tokens_per_trajectory"]
        assert row["counts"] == [n, 4 * n, 2 * n] and row["slots"] == 32 * n and row["batch_size"] == 3
        assert (row["hidden_size"], row["num_hidden_layers"], row["intermediate_size"]) == (128, 4, 512)
        assert row["padded_tokens"] == 3 * (1 + 4 * n) and row["packed_tokens"] == 3 + 7 * n
        modes = row["modes"]
        assert set(modes) == {"off", "on", "auto"}
        assert (modes["off"]["packed"], modes["on"]["packed"], modes["auto"]["packed"]) == (False, True, True)
        assert modes["off"]["tokens"] == row["padded_tokens"] and modes["on"]["tokens"] == row["packed_tokens"]
        for mode, result in modes.items():
            assert len(result["latencies_s"]) == 2 and result["latency_s"] > 0
            # The same float64 ratios redone here: only float64 rounding separates them.
            assert result["speedup"] == pytest.approx(modes["off"]["latency_s"] / result["latency_s"])
            assert result["flop_ratio"] == pytest.approx(modes["off"]["gflops"] / result["gflops"])
            # The tiny preset has no input projection: the counted FLOPs are the cost model's terms exactly.
            layout = "packed" if result["packed"] else "padded"
            assert result["gflops"] == pytest.approx(row["cost_model_gflops"][layout], rel=1e-12), mode
            # Packed vs padded differ in float summation order only. Bound: magnitude √128 (LayerNorm outputs at
            # initialisation, weight 1 and bias 0, are at most √D; the tokens are standard normal), the 4 layers'
            # reductions over the packed sequence and the final LayerNorm, fp32 eps.
            terms = 4 * transformer_layer_terms(row["packed_tokens"], 128, 512, 4) + 128
            assert result["max_abs_diff_vs_off"] <= float_error_bound(128**0.5, terms)
        assert modes["on"]["gflops"] < modes["off"]["gflops"]
    printed = capsys.readouterr().out
    assert "| tiny | 2 | fp32 | 27 / 17 |" in printed and f"wrote {out}" in printed


def test_json_goes_to_stdout_without_output(bench, capsys):
    report = bench.main(
        ["--scales", "tiny", "--tiny_counts", "2", "2", "--tiny_tokens_per_trajectory", "1"]
        + ["--dtype", "bf16", "--repeats", "1", "--warmup", "0", "--threads", "1"]
    )
    (row,) = report["measurements"]
    # Equal counts: no padding, so nothing is packed, whatever the mode.
    assert not any(result["packed"] for result in row["modes"].values())
    assert row["padded_tokens"] == row["packed_tokens"] == 6
    printed = capsys.readouterr().out
    assert json.loads(printed[printed.index("{") :]) == json.loads(json.dumps(report))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--repeats", "0"], "--repeats must be >= 1"),
        (["--warmup", "-1"], "--warmup must be >= 0"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--tiny_tokens_per_trajectory", "0"], "--tiny_tokens_per_trajectory must be >= 1"),
        (["--tiny_counts", "40"], r"--tiny_counts must lie in \[0, 32\]"),
        (["--vitl_counts", "129"], r"--vitl_counts must lie in \[0, 128\]"),
        (["--scales", "huge"], "invalid choice"),
    ],
)
def test_usage_errors(bench, argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert re.search(message, capsys.readouterr().err)
