"""benchmarks/compare_encoders.py: the before/after table of two bench_encoders.py result files."""

from __future__ import annotations

import json
import os

import pytest
from testers import load_file_module

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def compare():
    return load_file_module(os.path.join(ROOT, "benchmarks", "compare_encoders.py"))


def _result(latencies, stage_ms=None):
    measurements = []
    for (model, frames), latency in latencies.items():
        m = {"scale": "release", "batch_size": 1, "frames": frames, "model": model, "latency_s": latency}
        if model == "trajvit2" and stage_ms:
            m["tokenizer_stages"] = {k: {"time_s": v / 1000} for k, v in stage_ms.items()}
        measurements.append(m)
    return {"measurements": measurements}


def test_before_after_table(compare, tmp_path, capsys):
    before = _result(
        {("trajvit2", 8): 2.0, ("vit3d", 8): 1.0, ("tome", 8): 0.5, ("trajvit2", 16): 4.0},
        {"backbone": 700, "refinement": 600},
    )
    after = _result(
        {("trajvit2", 8): 1.0, ("vit3d", 8): 1.0, ("tome", 8): 0.5, ("trajvit2", 64): 9.0},
        {"backbone": 500, "refinement": 300},
    )
    paths = []
    for name, result in (("before", before), ("after", after)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(result))
    table = compare.main([str(p) for p in paths])
    assert table in capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| release")]
    assert len(rows) == 2  # only T = 8 is in both files: one latency row and one stage row
    assert "| release | 1 | 8 | 2.00 → 1.00 | 2.00× | 2.00 → 1.00 | 4.00 → 2.00 |" in rows[0]
    assert "700 → 500 ms" in rows[1] and "600 → 300 ms" in rows[1] and "— → — ms" in rows[1]


def test_rejects_unrelated_or_unreadable_files(compare, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(_result({("trajvit2", 8): 1.0})))
    (tmp_path / "b.json").write_text(json.dumps(_result({("trajvit2", 16): 1.0})))
    (tmp_path / "c.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="share no TrajViT2 measurement"):
        compare.main([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    with pytest.raises(SystemExit, match="not a bench_encoders.py result"):
        compare.main([str(tmp_path / "a.json"), str(tmp_path / "c.json")])
    with pytest.raises(SystemExit, match="cannot read"):
        compare.main([str(tmp_path / "a.json"), str(tmp_path / "missing.json")])


def test_shared_peers_fill_a_trajvit2_only_before_run(compare, tmp_path):
    before = _result({("trajvit2", 8): 3.0, ("trajvit2", 16): 6.0})
    after = _result({("trajvit2", 8): 1.5, ("vit3d", 8): 2.0, ("tome", 8): 0.5, ("trajvit2", 16): 4.0})
    paths = [tmp_path / "before.json", tmp_path / "after.json"]
    for path, result in zip(paths, (before, after), strict=True):
        path.write_text(json.dumps(result))
    plain = compare.main([str(p) for p in paths]).splitlines()
    assert "| release | 1 | 8 | 3.00 → 1.50 | 2.00× | — → 0.75 | — → 3.00 |" in plain
    shared = compare.main(["--shared_peers", *map(str, paths)]).splitlines()
    assert "| release | 1 | 8 | 3.00 → 1.50 | 2.00× | 1.50† → 0.75 | 6.00† → 3.00 |" in shared
    assert "| release | 1 | 16 | 6.00 → 4.00 | 1.50× | — → — | — → — |" in shared  # no peer in either file


def test_dtype_selects_the_measurements_of_one_precision(compare, tmp_path):
    """A file with fp32 and bf16 rows of the same (scale, batch, T, model): each dtype is compared on its own; rows
    without a dtype (older files) are fp32."""
    before = _result({("trajvit2", 8): 2.0, ("vit3d", 8): 1.0})  # no dtype field: fp32
    after = _result({("trajvit2", 8): 1.0, ("vit3d", 8): 2.0})
    for m in after["measurements"]:
        m["dtype"] = "fp32"
    after["measurements"] += [
        {"scale": "release", "batch_size": 1, "frames": 8, "model": "trajvit2", "latency_s": 0.5, "dtype": "bf16"},
        {"scale": "release", "batch_size": 1, "frames": 8, "model": "vit3d", "latency_s": 0.25, "dtype": "bf16"},
    ]
    paths = [tmp_path / "before.json", tmp_path / "after.json"]
    for path, result in zip(paths, (before, after), strict=True):
        path.write_text(json.dumps(result))
    fp32 = compare.main([str(p) for p in paths]).splitlines()
    assert "| release | 1 | 8 | 2.00 → 1.00 | 2.00× | 2.00 → 0.50 | — → — |" in fp32  # the bf16 rows did not win
    assert compare.main(["--dtype", "fp32", *map(str, paths)]).splitlines() == fp32
    with pytest.raises(SystemExit, match="compared --dtype"):
        compare.main(["--dtype", "bf16", *map(str, paths)])  # the before file has no bf16 measurement
    bf16 = compare.main(["--dtype", "bf16", str(paths[1]), str(paths[1])]).splitlines()
    assert "| release | 1 | 8 | 0.50 → 0.50 | 1.00× | 2.00 → 2.00 | — → — |" in bf16
