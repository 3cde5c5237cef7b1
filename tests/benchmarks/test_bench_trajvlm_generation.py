"""benchmarks/bench_trajvlm_generation.py: cost of TrajVLM's compact and slot forms, and each generation path."""

from __future__ import annotations

import json
import os

import pytest
from testers import load_file_module

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--configs", "tiny", "--batches", "1", "--repeats", "1", "--new_tokens", "2", "--frames", "4"]


@pytest.fixture(scope="module")
def bench():
    return load_file_module(os.path.join(ROOT, "benchmarks", "bench_trajvlm_generation.py"))


def test_tiny_run_measures_both_forms_and_every_slot_form_path_is_greedy(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "RESULTS_DIR", tmp_path)
    record = bench.main(TINY)
    (written,) = tmp_path.glob("trajvlm_generation_*.json")  # a new file when no --output is given
    assert json.loads(written.read_text())["cost"] == record["cost"]
    assert set(record["paths"]["tiny"]["slot"].values()) == {"ok"}
    assert record["paths"]["tiny"]["compact"]["num_beams_1"] == "ok"
    compact, slot = sorted(record["cost"], key=lambda r: r["form"])
    assert compact["slots"] == slot["slots"] == 16 and compact["active_max"] == slot["active_max"]
    prompt = 6  # 2 text tokens, the placeholder(s), 4 text tokens
    assert slot["llm_length"] == prompt + slot["slots"] and compact["llm_length"] == prompt + compact["active_max"]
    text = bench.CONFIGS["tiny"]
    per_token = 2 * text["text_layers"] * 2 * text["head_dim"] * 4  # keys + values, 2 KV heads, fp32
    assert [r["kv_bytes"] for r in (compact, slot)] == [per_token * r["llm_length"] for r in (compact, slot)]
    assert slot["prefill_ms"] > 0 and slot["generate_ms"] > 0
    assert "| tiny, 1 | slot |" in capsys.readouterr().out
    with pytest.raises(FileExistsError):  # never overwrites a result without --output
        monkeypatch.setattr(bench.time, "strftime", lambda _fmt: written.stem.removeprefix("trajvlm_generation_"))
        bench.main(TINY)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--repeats", "0"], "--repeats must be >= 1"),
        (["--batches", "0"], "--batches must be >= 1"),
        (["--new_tokens", "1"], "--new_tokens must be >= 2"),
        (["--configs", "huge"], "invalid choice"),
    ],
)
def test_rejects_bad_arguments(bench, argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.main(argv)
    assert message in capsys.readouterr().err
