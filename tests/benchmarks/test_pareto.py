"""benchmarks/pareto.py: the quality–compute frontier of TrajViT2 against ViT3D with ToMe, RLT and pooling."""

from __future__ import annotations

import json
import os

import pytest
import torch
from testers import load_file_module, save_tiny_trajvit2_folder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def pareto():
    return load_file_module(os.path.join(ROOT, "benchmarks", "pareto.py"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pareto")
    for name, tokenizer in (("traj", "trajtok"), ("vit3d", "vit3d")):
        save_tiny_trajvit2_folder(root / name, num_frames=4, size=64, vision_tokenizer=tokenizer)
    return root


def test_end_to_end_on_tiny_models(pareto, folders, tmp_path):
    output = tmp_path / "pareto.json"
    record = pareto.main(
        [
            "--trajvit2",
            f"A={folders / 'traj'}",
            "--vit3d",
            str(folders / "vit3d"),
            "--tome_tokens",
            "20",
            "--rlt_tokens",
            "12",
            "--pool_kernels",
            "1,2,2",
            "2,4,4",
            "--num_clips",
            "12",
            "--probe_clips",
            "8",
            "--flop_clips",
            "2",
            "--calibration_clips",
            "4",
            "--batch_size",
            "5",
            "--output",
            str(output),
        ]
    )
    assert json.loads(output.read_text()) == json.loads(json.dumps(record))
    assert (tmp_path / "pareto.png").stat().st_size > 0
    points = {(p["family"], p["budget"]): p for p in record["points"]}
    assert [p["family"] for p in record["points"]] == ["trajvit2", "vit3d", "tome", "rlt", "pool", "pool"]
    # 4 frames of 64², 2×16×16 tubelets: a (2, 4, 4) grid of 32 tokens; pooling (1,2,2) → 8, (2,4,4) → 1.
    assert points["vit3d", "all tubelets"]["tokens_per_clip"] == 32
    assert points["pool", "1×2×2"]["tokens_per_clip"] == 8 and points["pool", "2×4×4"]["tokens_per_clip"] == 1
    flops = {key: p["gflops_per_clip"] for key, p in points.items()}
    assert flops["pool", "2×4×4"] < flops["pool", "1×2×2"] < flops["vit3d", "all tubelets"]
    tome = next(p for p in record["points"] if p["family"] == "tome")
    # 2 layers: at most halving once, so the mean over the layers is (32 + 16) / 2 = 24 tokens at the lowest.
    assert tome["tokens_per_clip"] == 24 and tome["gflops_per_clip"] < flops["vit3d", "all tubelets"]
    rlt = next(p for p in record["points"] if p["family"] == "rlt")
    assert 16 <= rlt["tokens_per_clip"] <= 32  # the first tubelet (16 patches) is always kept
    for p in record["points"]:
        assert 0 <= p["t2v_R@1"] <= p["t2v_R@5"] <= p["t2v_R@10"] <= 100
        assert set(p["probes"]) == set(p["probe_pairs"]) == {"direction", "time_reversal", "object_swap"}
        assert isinstance(p["on_frontier"], bool)
    assert record["points"][0]["peer_best_at_budget"] is None or record["points"][0]["peer_best_at_budget"] >= 0
    assert "| model | budget |" in record["table"]


def _point(family, gflops, r1):
    return {"family": family, "gflops_per_clip": gflops, "t2v_R@1": r1}


@pytest.mark.parametrize(
    "points, frontier, peer_best",
    [
        # The cheapest point is always on it; a point that costs more and retrieves no better is not.
        ([_point("vit3d", 1, 30), _point("trajvit2", 2, 25)], [True, False], 30),
        ([_point("vit3d", 1, 30), _point("trajvit2", 2, 35)], [True, True], 30),
        ([_point("pool", 1, 10), _point("trajvit2", 0.5, 20), _point("vit3d", 3, 40)], [False, True, True], None),
        # Equal cost and quality: neither dominates the other.
        ([_point("tome", 1, 30), _point("trajvit2", 1, 30)], [True, True], 30),
        ([_point("rlt", 1, 30), _point("trajvit2", 1, 29)], [True, False], 30),
    ],
)
def test_mark_frontier(pareto, points, frontier, peer_best):
    pareto.mark_frontier(points)
    assert [p["on_frontier"] for p in points] == frontier
    assert next(p for p in points if p["family"] == "trajvit2")["peer_best_at_budget"] == peer_best


def test_rlt_thresholds_keep_the_target_count_on_the_calibration_clips(pareto, folders):
    from transformers import AutoModel, AutoProcessor

    from trajtok_hf.baselines import run_length_keep_mask
    from trajtok_hf.data import generate_clip

    processor = AutoProcessor.from_pretrained(folders / "vit3d")
    config = AutoModel.from_pretrained(folders / "vit3d").config.vision_config
    clips = [generate_clip(pareto.clip_config(processor), 0, i)["video"] for i in range(6)]
    targets = [30.0, 24.0, 18.0, 16.0]
    thresholds = pareto.calibrate_rlt(processor, config, clips, targets)
    assert thresholds == sorted(thresholds)
    pixels = processor(videos=clips, return_tensors="pt")["pixel_values_videos"]
    for target, threshold in zip(targets, thresholds, strict=True):
        kept = run_length_keep_mask(pixels, config.tubelet_size, config.patch_size, threshold).sum(1).float().mean()
        # Ties at the threshold (e.g. exactly static patches) may keep fewer; never more than the target.
        assert kept <= target + 1e-6 and (kept >= target - 1 or threshold == 0.0), (target, float(kept))
    assert torch.isfinite(torch.tensor(thresholds)).all()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--pool_kernels", "2,2"], "a pooling kernel is kt,kh,kw"),
        (["--trajvit2", "nofolder"], "expected NAME=FOLDER"),
        (["--trajvit2", "A=/nonexistent"], "no config.json there"),
        (["--num_clips", "4", "--probe_clips", "5"], "--probe_clips must lie in"),
        (["--num_clips", "4", "--probe_clips", "4", "--flop_clips", "5"], "--flop_clips must be <="),
        (["--tome_tokens", "0"], "must be > 0"),
    ],
)
def test_bad_arguments(pareto, argv, message, capsys):
    with pytest.raises(SystemExit):
        pareto.parse_args(argv)
    assert message in capsys.readouterr().err
