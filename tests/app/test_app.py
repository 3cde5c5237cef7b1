"""app.py's functions, without a server: trajectories and token counts of a clip, zero-shot labels, text → clip
retrieval over the gallery, and the messages the page shows for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trajtok_hf.data import SyntheticVideoConfig, generate_clip, write_mp4
from trajtok_hf.models.video_io_trajtok import read_video_pyav

ROOT = Path(__file__).resolve().parents[2]
TWO_OBJECTS = "clip4.mp4"  # "a small red star leaves to the right while a small green circle enters from the bottom"


def clip_named(app, name):
    (clip,) = [clip for clip in app.example_clips() if clip.name == name]
    return clip


def test_examples_are_generated_clips_with_one_label_captions(app):
    clips = app.example_clips()
    generated = [clip for clip in clips if clip.caption is not None]
    assert len(generated) == app.NUM_GENERATED
    assert all("," not in clip.caption for clip in generated)  # each caption is one label of a comma-separated list
    assert len({clip.caption for clip in generated}) == len(generated)
    frames, _ = app.read_clip(generated[0].path)
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8


def test_segment_clip_draws_trajectories_and_counts_tokens_per_chunk(app, tmp_path):
    clip = clip_named(app, TWO_OBJECTS)
    overlay = tmp_path / "overlay.mp4"
    picture, counts = app.segment_clip(clip.path, overlay_video=overlay)
    assert isinstance(picture, Image.Image) and picture.width > picture.height > 100
    # 8 frames are one chunk of 16; the background and the two shapes are at least 2 trajectories, never all 32.
    assert len(counts) == 1 and all(isinstance(count, int) for count in counts)
    assert 2 <= counts[0] < 32
    frames, _ = read_video_pyav(overlay)
    assert frames.shape[0] == 8 and frames.shape[2] == 2 * frames.shape[1]  # the frame beside its overlay

    # 24 frames: two chunks, the second one shorter.
    longer = generate_clip(SyntheticVideoConfig(num_frames=24, height=64, width=64), seed=5, index=0)
    write_mp4(tmp_path / "long.mp4", longer["video"])
    _, counts = app.segment_clip(tmp_path / "long.mp4", num_frames=24)
    assert len(counts) == 2 and all(1 <= count < 32 for count in counts)


def test_zero_shot_ranks_the_true_caption_first(app):
    clip = clip_named(app, TWO_OBJECTS)
    wrong = "a large pink ring appears"
    for labels in (f"{wrong}, {clip.caption}", [clip.caption, wrong]):
        results = app.zero_shot(clip.path, labels)
        assert [result["label"] for result in results] == [clip.caption, wrong]
        assert results[0]["score"] > 0.9 and sum(result["score"] for result in results) == pytest.approx(1.0)
    assert app.parse_labels(" a, b ,, a ") == ["a", "b"]


def test_retrieval_ranks_the_gallery_with_each_clip_first_for_its_own_caption(app):
    gallery = app.build_gallery()
    assert app.build_gallery() == gallery  # embedded once
    assert all(clip.embedding is not None and clip.thumbnail for clip in gallery)
    firsts = 0
    for clip in gallery:
        if clip.caption is None:
            continue
        ranked = app.retrieve(clip.caption)
        assert sorted(r["name"] for r in ranked) == sorted(c.name for c in gallery)
        assert [r["rank"] for r in ranked] == list(range(1, len(gallery) + 1))
        scores = [r["score"] for r in ranked]
        assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
        firsts += ranked[0]["name"] == clip.name
    assert app.retrieve(clip_named(app, TWO_OBJECTS).caption)[0]["name"] == TWO_OBJECTS
    assert firsts >= app.NUM_GENERATED - 2  # the shipped model is good, not perfect, on its own captions


def test_bad_input_gives_a_message_not_a_traceback(app, tmp_path):
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    clip = clip_named(app, TWO_OBJECTS)
    for path, message in ((None, "No video"), ("", "No video"), (tmp_path / "gone.mp4", "not found")):
        with pytest.raises(app.AppError, match=message):
            app.segment_clip(path)
    with pytest.raises(app.AppError, match="Could not read 'notes.mp4' as a video"):
        app.zero_shot(not_a_video, "a label")
    with pytest.raises(app.AppError, match="No labels"):
        app.zero_shot(clip.path, " , ")
    with pytest.raises(app.AppError, match="No description"):
        app.retrieve("   ")

    picture, video, scores, summary = app.run_clip(not_a_video, "a label")
    assert (picture, video, scores) == (None, None, None)
    assert summary.startswith("⚠️ Could not read") and "Traceback" not in summary
    picture, video, scores, summary = app.run_clip(clip.path, "")  # no labels: the trajectories, and a note
    assert picture is not None and scores is None
    assert "Tokens per chunk" in summary and "No labels" in summary
    assert app.run_retrieval("") == (
        [],
        "⚠️ No description: type what the clip shows, e.g. “a large pink ring appears”.",
    )


def test_page_handlers_fill_every_output(app):
    clip = clip_named(app, TWO_OBJECTS)
    picture, video, scores, summary = app.run_clip(clip.path, f"a large pink ring appears, {clip.caption}, a dog runs")
    assert isinstance(picture, Image.Image) and video.endswith(".mp4")
    assert max(scores, key=scores.get) == clip.caption
    assert f"**Top label:** {clip.caption}" in summary
    assert "Words the model does not know: dog, runs." in summary
    items, ranking = app.run_retrieval(clip.caption)
    assert len(items) == len(app.build_gallery()) and items[0][1].startswith(f"1. {TWO_OBJECTS}")
    assert ranking.splitlines()[2].startswith(f"| 1 | {TWO_OBJECTS} |")


def test_build_demo(app):
    gr = pytest.importorskip("gradio")
    demo = app.build_demo()
    assert isinstance(demo, gr.Blocks)
    ids = {block.elem_id for block in demo.blocks.values()}
    assert {"video", "labels", "run", "summary", "scores", "trajectories", "query", "search", "ranking"} <= ids


HELP = """
import runpy, sys
sys.argv = ["app.py", "--help"]
try:
    runpy.run_path("app.py", run_name="__main__")
except SystemExit as exit:
    assert exit.code == 0, exit.code
assert "torch" not in sys.modules and "gradio" not in sys.modules, "--help imported torch or gradio"
"""


def test_help_answers_before_the_heavy_imports():
    done = subprocess.run([sys.executable, "-c", HELP], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "--port" in done.stdout and "--host" in done.stdout
    done = subprocess.run([sys.executable, "app.py", "--port", "0"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "--port must be in 1..65535" in done.stderr


def test_model_flag_names_a_trajvit2_folder(app, tmp_path):
    assert app.parse_args([]).model == app.MODEL
    minilm = ROOT / "checkpoints" / "trajvit2-minilm-shapes"
    assert app.parse_args(["--model", str(minilm)]).model == minilm
    done = subprocess.run(
        [sys.executable, "app.py", "--model", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "no config.json there" in done.stderr
