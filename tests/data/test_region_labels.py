"""Region pseudo-labels: appearance regions, joined by motion, linked by flow; scored on clips whose truth is known."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("skimage")

from trajtok_hf.data import IGNORE_INDEX, MotionLabelConfig, RegionLabelConfig, region_pseudo_labels  # noqa: E402
from trajtok_hf.data.region_labels import boundary_band, join_moving_regions  # noqa: E402

GREY, RED, BLUE, GREEN = (128, 128, 128), (200, 30, 30), (30, 30, 200), (30, 190, 40)


def _flat_clip(frames=6, size=64, two_tone=False, static_box=True):
    """Grey background; a red square moving right by 3 px a frame (its lower half blue when ``two_tone``); a still
    green box. Truth: 0 background, 1 the square, 2 the box."""
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    truth = np.zeros((frames, size, size), dtype=np.int64)
    for t in range(frames):
        video[t] = GREY
        if static_box:
            video[t, 44:58, 40:58] = GREEN
            truth[t, 44:58, 40:58] = 2
        x0 = 6 + 3 * t
        video[t, 10:30, x0 : x0 + 20] = RED
        if two_tone:
            video[t, 20:30, x0 : x0 + 20] = BLUE
        truth[t, 10:30, x0 : x0 + 20] = 1
    return video, truth


def _purity(labels, truth, object_id):
    """Share of the object's labelled pixels (all frames) inside its most common trajectory, and that trajectory."""
    inside = labels[(truth == object_id) & (labels != IGNORE_INDEX)]
    counts = np.bincount(inside)
    return counts.max() / inside.size, int(counts.argmax())


def test_flat_objects_get_one_trajectory_each_over_the_clip():
    video, truth = _flat_clip()
    labels = region_pseudo_labels(video)["segmentation"]
    shares, ids = zip(*(_purity(labels, truth, k) for k in (0, 1, 2)), strict=True)
    assert shares[0] >= 0.95 and min(shares[1:]) >= 0.99, shares  # the background loses a little to flow smear
    assert len(set(ids)) == 3  # background, moving square and still box: three trajectories
    assert (labels != IGNORE_INDEX).mean() >= 0.75  # only boundary bands are unlabeled


@pytest.mark.parametrize(
    "motion, square_trajectories",
    [
        (MotionLabelConfig(), 1),  # the moving square's two colours are joined by its motion
        (None, 2),  # appearance alone: a red and a blue region
    ],
)
def test_motion_joins_the_parts_of_a_moving_object(motion, square_trajectories):
    video, truth = _flat_clip(two_tone=True)
    labels = region_pseudo_labels(video, RegionLabelConfig(motion=motion))["segmentation"]
    inside = labels[(truth == 1) & (labels != IGNORE_INDEX)]
    ids, counts = np.unique(inside, return_counts=True)
    assert (counts >= 0.1 * inside.size).sum() == square_trajectories


def test_ids_are_ordered_by_area_and_capped():
    video, truth = _flat_clip()
    full = region_pseudo_labels(video)["segmentation"]
    assert _purity(full, truth, 0)[1] == 0  # the background is the largest trajectory
    capped = region_pseudo_labels(video, RegionLabelConfig(max_trajectories=2))["segmentation"]
    assert set(np.unique(capped)) == {IGNORE_INDEX, 0, 1}
    box = truth == 2
    assert (capped[box] == IGNORE_INDEX).all()  # the smallest trajectory (the box) loses its id


def test_release_format_round_trips():
    video, _ = _flat_clip()
    out = region_pseudo_labels(video, RegionLabelConfig(boundary_width=0, max_consistency_error=None))
    graph, instances = out["trajectory_graph"], out["instance_masks"]
    assert graph.shape[1] == video.shape[0] and instances.shape == video.shape[:3]
    # every instance of every frame belongs to exactly one trajectory row
    for t in range(video.shape[0]):
        assert sorted(graph[:, t][graph[:, t] > 0].tolist()) == list(range(1, int(instances[t].max()) + 1))


def test_join_moving_regions_and_boundary_band():
    regions = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 3]])
    moving = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]])
    joined = join_moving_regions(regions, moving, merge_fraction=0.5)
    assert joined[0, 0] == joined[0, 2]  # region 2 is half inside the moving instance: it joins region 1
    assert joined[2, 0] != joined[0, 0]
    np.testing.assert_array_equal(join_moving_regions(regions, np.zeros_like(moving), 0.5), regions)
    band = boundary_band(np.array([[0, 0, 0, 1, 1, 1]] * 2), width=1)
    np.testing.assert_array_equal(band[0], [False, False, True, True, False, False])
    assert boundary_band(np.array([[0, 0, 0, 1, 1, 1]] * 2), width=2)[0].tolist() == [0, 1, 1, 1, 1, 0]


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"scale": -1.0}, "scale"),
        ({"min_region_fraction": 1.5}, "min_region_fraction"),
        ({"merge_fraction": -0.1}, "merge_fraction"),
        ({"boundary_width": 1.5}, "boundary_width"),
        ({"max_consistency_error": 0.0}, "max_consistency_error"),
        ({"max_trajectories": 0}, "max_trajectories"),
    ],
)
def test_bad_config_is_refused(overrides, error):
    with pytest.raises(ValueError, match=error):
        dataclasses.replace(RegionLabelConfig(), **overrides)


def test_bad_inputs_are_refused():
    video, _ = _flat_clip(frames=3)
    with pytest.raises(TypeError, match="motion"):
        RegionLabelConfig(motion={"min_speed": 1.0})
    with pytest.raises(TypeError, match="`scale` must be a number"):
        RegionLabelConfig(scale="large")
    with pytest.raises(TypeError, match="`min_speed` must be a number"):
        MotionLabelConfig(min_speed="fast")
    with pytest.raises(TypeError, match="config"):
        region_pseudo_labels(video, MotionLabelConfig())
    with pytest.raises(ValueError, match="uint8"):
        region_pseudo_labels(video.astype(np.float32))
    with pytest.raises(ValueError, match="flow"):
        region_pseudo_labels(video, flow=np.zeros((3, 8, 8, 2)))


def test_plain_generator_objects_are_one_region_in_each_frame():
    """On the procedural generator, whose truth is known: in every frame, a plain (untextured) object lies almost
    entirely in one trajectory (the errors of these labels are in the linking over time and in textures)."""
    from trajtok_hf.data import SyntheticVideoConfig, generate_clip

    shares = []
    for index in range(4):
        clip = generate_clip(SyntheticVideoConfig(num_frames=4, height=64, width=64), seed=5, index=index)
        labels = region_pseudo_labels(clip["video"])["segmentation"]
        for obj in clip["objects"]:
            if obj["texture"] != "plain":
                continue
            for t in range(4):
                inside = labels[t][(clip["segmentation"][t] == obj["id"]) & (labels[t] != IGNORE_INDEX)]
                if inside.size >= 10:
                    shares.append(np.bincount(inside).max() / inside.size)
    assert len(shares) >= 8 and np.mean(shares) >= 0.9, (len(shares), np.mean(shares))
