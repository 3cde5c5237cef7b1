"""Motion pseudo-labels: flow → moving instances → trajectories, scored on generated clips whose truth is known."""

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("skimage")

from trajtok_hf.data import IGNORE_INDEX, PhotoCompositeConfig, generate_composite  # noqa: E402
from trajtok_hf.data.motion_labels import MotionLabelConfig, camera_residual, motion_pseudo_labels  # noqa: E402
from trajtok_hf.data.pseudo_labels import trajectories_to_pixel_labels  # noqa: E402
from trajtok_hf.metrics.segmentation import adjusted_rand_index  # noqa: E402


def _textured_background(height, width, seed=0):
    rng = np.random.default_rng(seed)
    import cv2

    noise = cv2.resize(rng.random((height // 4, width // 4)).astype(np.float32), (width, height))
    return (np.stack([noise, noise[::-1], noise[:, ::-1]], axis=-1) * 200 + 20).astype(np.uint8)


def _square_clip(pan=(2, 0), frames=6, size=64):
    """A bright textured square moving right by 3 px a frame over a textured background panning by ``pan``."""
    big = _textured_background(size + 40, size + 40)
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    truth = np.zeros((frames, size, size), dtype=np.int64)
    square = (_textured_background(16, 16, seed=1) // 2 + 120).astype(np.uint8)
    for t in range(frames):
        ox, oy = pan[0] * t, pan[1] * t
        video[t] = big[oy : oy + size, ox : ox + size]
        x0 = 8 + 3 * t
        video[t, 24:40, x0 : x0 + 16] = square
        truth[t, 24:40, x0 : x0 + 16] = 1
    return video, truth


def test_a_still_clip_has_no_trajectories():
    video = np.repeat(_textured_background(48, 64)[None], 5, axis=0)
    out = motion_pseudo_labels(video)
    assert out["trajectory_graph"].shape == (0, 5)
    assert (out["segmentation"] == 0).all()


@pytest.mark.parametrize("pan", [(0, 0), (2, 0), (1, 2)])
def test_a_moving_square_is_one_trajectory_under_camera_pan(pan):
    video, truth = _square_clip(pan)
    seg = motion_pseudo_labels(video)["segmentation"]
    labelled = seg != IGNORE_INDEX
    inside = seg[(truth == 1) & labelled]
    ids, counts = np.unique(inside[inside > 0], return_counts=True)
    assert ids.size >= 1 and counts.max() >= 0.8 * inside.size  # one trajectory holds the square in every frame
    assert (seg[(truth == 0) & labelled] == 0).mean() >= 0.93  # the panning background stays background (0.95-0.97)


def test_camera_residual_removes_a_pure_pan():
    flow = np.zeros((40, 50, 2), dtype=np.float32)
    flow[..., 0], flow[..., 1] = 2.5, -1.0
    np.testing.assert_allclose(camera_residual(flow), 0.0, atol=1e-3)


def test_labels_on_generated_clips():
    """Sprites moving at 2–4 % of the frame per frame over panning photos: how good the labels are, measured
    (here: FG-ARI ≈ 0.54, background kept ≈ 0.94, sprite pixels found ≈ 0.85, 4 % of pixels unlabeled)."""
    config = PhotoCompositeConfig(num_frames=8, height=96, width=96, max_objects=3, speed=(0.02, 0.04), occlusion=False)
    aris, background, found = [], [], []
    for index in range(10):
        clip = generate_composite(config, 5, index)
        seg, truth = motion_pseudo_labels(clip["video"])["segmentation"], clip["segmentation"]
        labelled = seg != IGNORE_INDEX
        foreground = (truth > 0) & labelled
        aris.append(adjusted_rand_index(seg[foreground], truth[foreground]))
        background.append((seg[(truth == 0) & labelled] == 0).mean())
        found.append((seg[foreground] > 0).mean())
    assert np.mean(aris) > 0.35 and np.mean(background) > 0.85 and np.mean(found) > 0.7


def test_release_format_round_trip_and_given_flow():
    video, _ = _square_clip()
    out = motion_pseudo_labels(video)
    again = np.asarray(trajectories_to_pixel_labels(out["instance_masks"], out["trajectory_graph"], ignore_index=-1))
    labelled = out["segmentation"] != IGNORE_INDEX
    np.testing.assert_array_equal(out["segmentation"][labelled], again[labelled] + 1)
    still = motion_pseudo_labels(video, flow=np.zeros((*video.shape[:3], 2), dtype=np.float32))
    assert (still["segmentation"] == 0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(min_speed=-1.0), "min_speed"),
        (dict(min_area=0), "min_area"),
        (dict(min_link_overlap=1.5), "min_link_overlap"),
        (dict(boundary_width=-1), "boundary_width"),
        (dict(grid_step=True), "grid_step"),
        (dict(max_consistency_error=0.0), "max_consistency_error"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MotionLabelConfig(**kwargs)


@pytest.mark.parametrize(
    "video, flow, match",
    [
        (np.zeros((4, 32, 32), dtype=np.uint8), None, "video"),
        (np.zeros((4, 32, 32, 3), dtype=np.float32), None, "video"),
        (np.zeros((4, 32, 32, 3), dtype=np.uint8), np.zeros((4, 32, 32)), "flow"),
    ],
)
def test_bad_inputs(video, flow, match):
    with pytest.raises(ValueError, match=match):
        motion_pseudo_labels(video, flow=flow)


def test_link_instances_keeps_a_split_trajectory_with_the_lowest_id():
    from trajtok_hf.data.motion_labels import link_instances

    instances = np.zeros((3, 4, 6), dtype=np.int64)
    instances[0, :, :4] = 1  # one instance
    instances[1, :2, :4], instances[1, 2:, :4] = 1, 2  # splits in two (both continue it: the lower id keeps it)
    instances[1, :, 5] = 3  # a new instance where nothing was
    instances[2, :, :4] = 1  # the halves merge again: a tie of the two, the first trajectory continues
    graph = link_instances(instances, np.zeros((3, 4, 6, 2), dtype=np.float32), min_overlap=0.3)
    np.testing.assert_array_equal(graph, [[1, 1, 1], [0, 2, 0], [0, 3, 0]])
    assert link_instances(np.zeros((2, 3, 3), dtype=np.int64), np.zeros((2, 3, 3, 2)), 0.3).shape == (0, 2)
