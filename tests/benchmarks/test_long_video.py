"""benchmarks/long_video.py on a few short generated videos: every part runs and reports what it measured."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from testers import load_file_module

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def bench():
    return load_file_module(os.path.join(ROOT, "benchmarks", "long_video.py"))


def test_identity_and_tokens_parts(bench, tmp_path):
    output = tmp_path / "long.json"
    args = ["--parts", "identity", "tokens", "--scenarios", "static", "busy", "--num_videos", "1"]
    args += ["--num_frames", "48", "--num_composites", "1", "--output", str(output)]
    results = bench.main(args)
    assert results == json.loads(output.read_text())
    identity = results["identity"]
    assert set(identity) == {"static", "busy", "real_pixel_composites", "generated_overall"}
    options = identity["busy"]["options"]
    assert {"none", "overlap", "overlap_appearance", "oracle"} <= set(options)
    # Without linking every chunk's trajectories are new objects: more ids than with any linker.
    assert options["none"]["pred_tracks"] > options["overlap_appearance"]["pred_tracks"]
    assert 0.0 <= options["oracle"]["IDF1"] <= 1.0
    tokens = results["tokens"]["scenarios"]["static"]
    assert tokens["tokens_per_minute"]["trajtok_merged"] <= tokens["tokens_per_minute"]["trajtok_per_chunk"]
    assert tokens["tokens_per_minute"]["vit3d"] == (64 // 16) ** 2 / 2 * 8.0 * 60


def test_memory_part_runs_the_streaming_script(bench):
    args = bench.parse_args(["--parts", "memory", "--memory_frames", "8", "24"])
    memory = bench.memory_part(args)
    assert set(memory["runs"]) == {"8", "24"}
    assert memory["runs"]["24"]["tokens"]["chunks"] >= memory["runs"]["8"]["tokens"]["chunks"]
    assert memory["peak_ratio_long_over_short"] > 0


def test_the_oracle_maps_each_trajectory_to_its_majority_id(bench):
    chunks = [
        {"start": 0, "ids": torch.tensor([[[0, 0], [1, 1]]])},
        {"start": 1, "ids": torch.tensor([[[1, 1], [0, 0]]])},
    ]
    labels = np.array([[[5, 5], [0, 0]], [[5, 5], [0, 0]]])
    assert bench.oracle_map(chunks, labels, 2).tolist() == labels.tolist()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num_videos", "0"], "--num_videos"),
        (["--memory_frames", "64", "8"], "--memory_frames"),
        (["--model", "/nonexistent"], "config.json"),
    ],
)
def test_usage_errors(bench, argv, message, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err
