"""The README's demo (examples/retrieval.py), examples/visualize.py and examples/evaluate_segmenter.py, run
in-process on a few clips with the shipped checkpoints (the full 500-clip default run is the README's demo, not a
test)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from trajtok_hf.data import SyntheticVideoConfig, write_video_folder

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = ROOT / "checkpoints"


def _load(name):
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def retrieval():
    return _load("retrieval")


def test_default_model_is_the_shipped_checkpoint(retrieval):
    assert Path(retrieval.DEFAULT_MODEL) == CHECKPOINTS / "trajvit2-tiny-shapes"
    assert retrieval.HELD_OUT_SEED not in (0, 1_000_000)  # the training and evaluation seeds of train_trajvit2.py


def test_retrieval_demo_runs_on_a_few_clips(retrieval, tmp_path, capsys):
    metrics = retrieval.main(
        [
            "--num_clips",
            "12",
            "--batch_size",
            "5",
            "--output_dir",
            str(tmp_path),
            "--num_visualize",
            "2",
            "--no_progress",
            "--output",
            str(tmp_path / "m.json"),
        ]
    )
    out = capsys.readouterr().out
    by_objects = json.loads((tmp_path / "m.json").read_text())["fg_ari_by_objects_per_clip"]
    assert sum(v["clips"] for v in by_objects.values()) == 12 and set(by_objects) <= {"1", "2", "3"}
    assert "FG-ARI by objects per clip: " in out
    for key in ("t2v_R@1", "t2v_R@5", "t2v_R@10", "t2v_MedR", "v2t_R@1", "v2t_R@5", "v2t_R@10", "v2t_MedR"):
        assert key in metrics
    assert 0 <= metrics["t2v_R@1"] <= metrics["t2v_R@5"] <= metrics["t2v_R@10"] <= 100
    assert 1 <= metrics["t2v_MedR"] <= 12 and 0 <= metrics["FG-ARI"] <= 1
    assert "text → video" in out and "video → text" in out and "FG-ARI" in out
    assert metrics["tokens_per_clip"] >= 1
    with Image.open(tmp_path / "trajectories.png") as png:
        assert png.width > 100
    with Image.open(tmp_path / "trajectories.gif") as gif:
        assert gif.n_frames == 8


def test_retrieval_demo_in_bfloat16(retrieval, tmp_path):
    """--dtype loads the model as from_pretrained(dtype=...) does; the processor's float32 clips are cast by it."""
    argv = ["--num_clips", "6", "--num_visualize", "0", "--no_progress", "--output_dir", str(tmp_path)]
    metrics = retrieval.main([*argv, "--dtype", "bfloat16", "--output", str(tmp_path / "bf16.json")])
    assert json.loads((tmp_path / "bf16.json").read_text())["dtype"] == "bfloat16"
    assert 0 <= metrics["t2v_R@1"] <= 100 and 0 <= metrics["FG-ARI"] <= 1


def test_retrieval_demo_with_a_video_folder_and_the_vit3d_baseline(retrieval, tmp_path, capsys):
    data = tmp_path / "videos"
    write_video_folder(data, 4, SyntheticVideoConfig(num_frames=8, height=64, width=64), seed=7)
    metrics = retrieval.main(
        [
            "--model",
            str(CHECKPOINTS / "vit3d-tiny-shapes"),
            "--data",
            str(data),
            "--output_dir",
            str(tmp_path / "out"),
            "--no_progress",
        ]
    )
    out = capsys.readouterr().out
    assert "4 videos, 4 captions" in out and "ViT3D" in out
    assert "FG-ARI" not in metrics  # no trajectories, no labels from a folder without masks
    assert not (tmp_path / "out" / "trajectories.png").exists()


def test_retrieval_demo_in_the_held_out_wording(retrieval, tmp_path, capsys):
    argv = ["--num_clips", "4", "--num_visualize", "0", "--no_progress", "--output_dir", str(tmp_path)]
    retrieval.main([*argv, "--caption_wording", "held_out", "--output", str(tmp_path / "held_out.json")])
    assert "held_out caption wording" in capsys.readouterr().out
    split = json.loads((tmp_path / "held_out.json").read_text())["dataset"]["split"]
    assert split == "held-out (seed 2000000, 4 clips, held_out caption wording)"
    facts = ["--caption_facts", "speed", "occlusion", "--shuffle_clauses", "--output", str(tmp_path / "facts.json")]
    retrieval.main([*argv, "--caption_wording", "held_out", *facts])
    split = json.loads((tmp_path / "facts.json").read_text())["dataset"]["split"]
    assert split == (
        "held-out (seed 2000000, 4 clips, held_out caption wording, captions with speed and occlusion, "
        "objects named in a random order)"
    )


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--num_clips", "0"], "num_clips"),
        (["--model", "/nonexistent"], "model"),
        (["--caption_wording", "held_out", "--data", "."], "--caption_wording words the synthetic captions"),
        (["--caption_facts", "speed", "--data", "."], "--caption_facts words the synthetic captions"),
        (["--shuffle_clauses", "--data", "."], "--shuffle_clauses words the synthetic captions"),
        (["--caption_facts", "colour"], "invalid choice"),
    ],
)
def test_retrieval_demo_rejects_bad_arguments(retrieval, argv, match, capsys):
    with pytest.raises(SystemExit):
        retrieval.main(argv)
    assert match in capsys.readouterr().err


def test_visualize_script(tmp_path, capsys):
    visualize = _load("visualize")
    paths = visualize.main(["--num_clips", "2", "--output_dir", str(tmp_path)])
    assert [p.name for p in paths] == ["trajectories.png", "trajectories.gif"]
    assert all(p.is_file() for p in paths)
    assert "active trajectories per chunk" in capsys.readouterr().out


def test_evaluate_segmenter_on_a_few_clips(tmp_path, capsys):
    evaluate = _load("evaluate_segmenter")
    assert evaluate.HELD_OUT_SEED not in (0, 1_000_000)
    assert Path(evaluate.DEFAULT_MODEL) == CHECKPOINTS / "trajtok-small-shapes"
    shipped = evaluate.main(["--num_clips", "4", "--no_progress"])  # the shipped segmenter, a TrajTokModel folder
    assert 0 <= shipped["FG-ARI"] <= 1 and "trajtok-small-shapes (TrajTokModel" in capsys.readouterr().out
    out_json = tmp_path / "seg.json"
    metrics = evaluate.main(
        [
            "--model",
            str(CHECKPOINTS / "trajvit2-tiny-shapes"),
            "--num_clips",
            "6",
            "--batch_size",
            "4",
            "--no_progress",
            "--output",
            str(out_json),
        ]
    )
    out = capsys.readouterr().out
    assert "FG-ARI by objects per clip" in out and "objects merged with another object" in out
    saved = json.loads(out_json.read_text())
    assert saved["metrics"]["FG-ARI"] == metrics["FG-ARI"] and 0 <= metrics["FG-ARI"] <= 1
    assert sum(v["clips"] for v in saved["fg_ari_by_objects_per_clip"].values()) == 6
    textures = saved["objects"]["missed_by_texture"]
    assert sum(v["objects"] for v in textures.values()) == saved["objects"]["objects"] >= 6
    assert all(0 <= v["with_missed_cell"] <= v["objects"] for v in textures.values())


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--model", str(CHECKPOINTS / "vit3d-tiny-shapes")], "ViT3D"),
        (["--num_clips", "0"], "num_clips"),
        (["--seed", "-1"], "seed"),
    ],
)
def test_evaluate_segmenter_rejects_bad_arguments(argv, match, capsys):
    evaluate = _load("evaluate_segmenter")
    with pytest.raises(SystemExit) as caught:
        evaluate.main(argv)
    assert match in capsys.readouterr().err + str(caught.value)


def test_retrieval_data_without_metadata_is_a_parser_error(retrieval, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        retrieval.parse_args(["--data", str(tmp_path)])
    assert info.value.code == 2 and "--data" in capsys.readouterr().err


def test_tokenize_video_uses_the_models_own_processor(capsys):
    # The shipped segmenter's processor makes 64² frames; a default processor would make 224² ones.
    _load("tokenize_video").main(["--model", str(CHECKPOINTS / "trajtok-small-shapes"), "--num_frames", "4"])
    assert "video: (1, 4, 3, 64, 64)" in capsys.readouterr().out


def test_tokenize_video_streams_a_whole_file_with_global_ids(tmp_path, capsys):
    from trajtok_hf.data import generate_clip
    from trajtok_hf.data.synthetic import write_mp4
    from trajtok_hf.models.video_io_trajtok import read_video_pyav

    clip = generate_clip(SyntheticVideoConfig(num_frames=40, height=64, width=64), seed=5)
    video = tmp_path / "clip.mp4"
    write_mp4(video, clip["video"], fps=10)
    output, overlay = tmp_path / "out" / "tokens.json", tmp_path / "ids.mp4"
    args = ["--stream", "--video", str(video), "--output", str(output), "--overlay", str(overlay), "--no_progress"]
    report = _load("tokenize_video").main(args)  # the shipped segmenter by default
    assert report == json.loads(output.read_text())
    assert report["num_frames"] == 40 and report["chunk_size"] == 16
    assert [c["frames"] for c in report["chunks"]] == [[0, 16], [16, 32], [32, 40]]
    assert report["tokens"]["chunks"] == sum(c["num_tokens"] for c in report["chunks"])
    all_ids = {i for c in report["chunks"] for i in c["global_ids"]}
    assert all_ids == {t["global_id"] for t in report["merged_trajectories"]} == set(range(report["num_global_ids"]))
    assert report["tokens"]["merged"] == len(report["merged_trajectories"]) * report["tokens_per_trajectory"]
    assert report["memory_mib"]["peak_rss"] >= report["memory_mib"]["rss_after_loading"] > 0
    assert read_video_pyav(overlay)[0].shape == (40, 320, 640, 3)  # frame | overlay, longest side 320
    assert "40 frames in 3 chunks" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stream"], "--stream needs --video"),
        (["--output", "x.json"], "--output applies to --stream"),
        (["--stream", "--video", __file__, "--overlay", "x.gif"], "an .mp4 path"),
        (["--stream", "--video", __file__, "--fps", "0"], "--fps must be > 0"),
    ],
)
def test_tokenize_video_stream_usage_errors(args, message, capsys):
    with pytest.raises(SystemExit):
        _load("tokenize_video").parse_args(args)
    assert message in capsys.readouterr().err
