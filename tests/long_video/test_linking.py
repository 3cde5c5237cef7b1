"""TrajectoryLinker on hand-made id maps: each case states which global ids the chunks must get."""

from __future__ import annotations

import pytest
import torch

from trajtok_hf.long_video import LINK_METHODS, TrajectoryLinker, trajectory_presence

H = W = 8


def frame(*boxes, background=0):
    """An (H, W) id map: background id, then (id, top, left, height, width) boxes painted in order."""
    ids = torch.full((H, W), background, dtype=torch.long)
    for k, top, left, height, width in boxes:
        ids[top : top + height, left : left + width] = k
    return ids


def chunk(*frames):
    return torch.stack(frames)


def one_hot(rows: list[int], size: int = 4) -> torch.Tensor:
    return torch.eye(size)[rows]


def test_presence_counts_pixels_per_frame_and_slot():
    ids = chunk(frame((1, 0, 0, 2, 2)), frame((2, 0, 0, 1, 1)))
    counts = trajectory_presence(ids, 3)
    assert counts.tolist() == [[60, 4, 0], [63, 0, 1]]


def test_an_object_keeps_its_id_when_the_segmenter_permutes_the_slots():
    linker = TrajectoryLinker(method="overlap")
    first = linker.link(chunk(frame((1, 2, 2, 3, 3)), frame((1, 2, 3, 3, 3))), frame_start=0, num_slots=4)
    # Next chunk: the object moved one cell and is slot 3 now; the background is slot 2.
    second = linker.link(chunk(frame((3, 2, 4, 3, 3), background=2)), frame_start=2, num_slots=4)
    assert first.global_ids.tolist() == [0, 1, -1, -1]
    assert second.global_ids.tolist() == [-1, -1, 0, 1]
    assert second.new_ids == []
    assert torch.equal(second.trajectory_ids, torch.where(chunk(frame((3, 2, 4, 3, 3))) == 3, 1, 0))


def test_a_new_object_gets_a_new_id_and_spans_are_the_frames_it_is_seen():
    linker = TrajectoryLinker(method="overlap", allow_splits=False)
    linker.link(chunk(frame(), frame()), frame_start=0, num_slots=4)
    links = linker.link(chunk(frame(), frame((1, 0, 0, 2, 2)), frame((1, 0, 1, 2, 2))), frame_start=2, num_slots=4)
    assert links.global_ids.tolist() == [0, 1, -1, -1]
    assert links.new_ids == [1]
    assert links.first_frame.tolist() == [2, 3, -1, -1]
    assert links.last_frame.tolist() == [4, 4, -1, -1]
    assert links.pixel_counts.tolist() == [64 * 3 - 8, 8, 0, 0]


@pytest.mark.parametrize(
    "gap_chunks, max_gap_frames, same_id",
    [(1, 64, True), (3, 64, True), (3, 5, False)],
    ids=["hidden-one-chunk", "hidden-three-chunks", "hidden-longer-than-max-gap"],
)
def test_an_occluded_object_comes_back_with_its_id_within_the_gap(gap_chunks, max_gap_frames, same_id):
    linker = TrajectoryLinker(method="overlap", allow_splits=False, max_gap_frames=max_gap_frames)
    visible = chunk(frame((1, 3, 3, 2, 2)), frame((1, 3, 3, 2, 2)))
    linker.link(visible, 0, num_slots=4)
    for c in range(gap_chunks):
        linker.link(chunk(frame(), frame()), 2 + 2 * c, num_slots=4)
    back = linker.link(visible, 2 + 2 * gap_chunks, num_slots=4)
    assert (back.global_ids[1].item() == 1) is same_id
    if not same_id:
        assert linker.num_tracks == 2  # the forgotten track was dropped: state bounded by the live objects


@pytest.mark.parametrize(
    "descriptor_rows, expected",
    [
        # The piece looks like the background: a split, it keeps the background's id.
        ([0, 1, 0, 3], [0, 1, 0, -1]),
        # It looks different: an object that appeared in front of the background gets a new id.
        ([0, 1, 2, 3], [0, 1, 2, -1]),
    ],
    ids=["split-of-the-background", "new-object-inside-the-background"],
)
def test_splits_need_a_similar_appearance(descriptor_rows, expected):
    linker = TrajectoryLinker(method="overlap_appearance", allow_splits=True)
    linker.link(chunk(frame((1, 0, 0, 2, 2))), 0, descriptors=one_hot([0, 1, 2, 3]))
    links = linker.link(chunk(frame((1, 0, 0, 2, 2), (2, 5, 5, 2, 3))), 1, descriptors=one_hot(descriptor_rows))
    assert links.global_ids.tolist() == expected


def test_overlap_splits_without_descriptors_keep_the_tracks_id():
    # Without descriptors a piece of the background and an object appearing in front of it look the same to the
    # masks: method="overlap" keeps the track's id for both (allow_splits=False gives both new ids).
    linker = TrajectoryLinker(method="overlap", allow_splits=True)
    linker.link(chunk(frame((1, 0, 0, 2, 2))), 0, num_slots=4)
    links = linker.link(chunk(frame((1, 0, 0, 2, 2), (2, 5, 5, 2, 3))), 1, num_slots=4)
    assert links.global_ids.tolist() == [0, 1, 0, -1]
    assert TrajectoryLinker(method="overlap", allow_splits=False).link(
        chunk(frame((1, 0, 0, 2, 2))), 0, num_slots=4
    ).global_ids.tolist() == [0, 1, -1, -1]


def test_appearance_links_an_object_that_reappears_elsewhere():
    linker = TrajectoryLinker(method="overlap_appearance", max_distance=None)
    linker.link(chunk(frame((1, 0, 0, 2, 2))), 0, descriptors=one_hot([0, 1, 2, 3]))
    linker.link(chunk(frame()), 1, descriptors=one_hot([0, 1, 2, 3]))  # the object is gone
    # It comes back on the other side of the frame: no overlap, the same look.
    links = linker.link(chunk(frame((3, 6, 6, 2, 2))), 2, descriptors=one_hot([0, 2, 2, 1]))
    assert links.global_ids.tolist() == [0, -1, -1, 1]
    only_overlap = TrajectoryLinker(method="overlap", allow_splits=False)
    only_overlap.link(chunk(frame((1, 0, 0, 2, 2))), 0, num_slots=4)
    assert only_overlap.link(chunk(frame((3, 6, 6, 2, 2))), 1, num_slots=4).global_ids[3].item() == 2


def test_appearance_only_follows_descriptors_not_positions():
    linker = TrajectoryLinker(method="appearance")
    linker.link(chunk(frame((1, 0, 0, 3, 3), (2, 5, 5, 3, 3))), 0, descriptors=one_hot([0, 1, 2, 3]))
    # The two objects swap places; their descriptors follow them.
    links = linker.link(chunk(frame((1, 5, 5, 3, 3), (2, 0, 0, 3, 3))), 1, descriptors=one_hot([0, 2, 1, 3]))
    assert links.global_ids.tolist() == [0, 2, 1, -1]


def test_state_is_reset_for_a_new_video():
    linker = TrajectoryLinker(method="overlap")
    linker.link(chunk(frame((1, 0, 0, 2, 2))), 0, num_slots=4)
    linker.reset()
    assert linker.num_tracks == 0
    assert linker.link(chunk(frame()), 0, num_slots=4).new_ids == [0]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda lk: lk.link(torch.zeros(2, 4), 0), ValueError, "trajectory_ids"),
        (lambda lk: lk.link(torch.zeros(1, 4, 4), 0), TypeError, "integer"),
        (lambda lk: lk.link(torch.zeros(1, 4, 4, dtype=torch.long), -1), ValueError, "frame_start"),
        (lambda lk: lk.link(torch.full((1, 4, 4), 5), 0, num_slots=4), ValueError, r"\[0, 4\)"),
        (
            lambda lk: lk.link(torch.zeros(1, 4, 4, dtype=torch.long), 0, torch.zeros(3, 2), 4),
            ValueError,
            "descriptors",
        ),
    ],
)
def test_bad_inputs_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call(TrajectoryLinker(method="overlap"))


def test_chunks_must_come_in_order_on_one_grid_and_appearance_needs_descriptors():
    linker = TrajectoryLinker(method="overlap")
    linker.link(torch.zeros(2, 4, 4, dtype=torch.long), 0, num_slots=2)
    with pytest.raises(ValueError, match="frame_start"):
        linker.link(torch.zeros(2, 4, 4, dtype=torch.long), 1, num_slots=2)
    with pytest.raises(ValueError, match="mask grid"):
        linker.link(torch.zeros(2, 5, 5, dtype=torch.long), 2, num_slots=2)
    with pytest.raises(ValueError, match="descriptors"):
        TrajectoryLinker(method="appearance").link(torch.zeros(2, 4, 4, dtype=torch.long), 0, num_slots=2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="nearest"), "method"),
        (dict(min_iou=1.5), "min_iou"),
        (dict(split_coverage=-0.1), "split_coverage"),
        (dict(min_similarity=2), "min_similarity"),
        (dict(max_gap_frames=-1), "max_gap_frames"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrajectoryLinker(**kwargs)


def test_every_method_is_listed():
    assert set(LINK_METHODS) == {"overlap", "appearance", "overlap_appearance"}


def test_appearance_links_only_near_the_predicted_position():
    def run(max_distance):
        linker = TrajectoryLinker(max_distance=max_distance)
        linker.link(chunk(frame((1, 0, 0, 2, 2))), 0, descriptors=one_hot([0, 1, 2, 3]))
        linker.link(chunk(frame()), 1, descriptors=one_hot([0, 1, 2, 3]))
        return linker.link(chunk(frame((3, 6, 6, 2, 2))), 2, descriptors=one_hot([0, 2, 2, 1])).global_ids[3].item()

    # Centre to centre the object moved 6·√2 cells, 0.75 of the 8 × 8 grid's diagonal.
    assert run(None) == 1  # the same look anywhere: the same object
    assert run(0.8) == 1
    assert run(0.5) == 2  # too far from where it was: a new object


def test_overlap_links_need_a_minimally_similar_look():
    # An object vanishes and, in the next chunk, another one appears on the same spot.
    def run(min_overlap_similarity):
        linker = TrajectoryLinker(min_overlap_similarity=min_overlap_similarity)
        linker.link(chunk(frame((1, 2, 2, 3, 3))), 0, descriptors=one_hot([0, 1, 2, 3]))
        return linker.link(chunk(frame((2, 2, 2, 3, 3))), 1, descriptors=one_hot([0, 3, 2, 3])).global_ids[2].item()

    assert run(-1.0) == 1  # overlap alone: the newcomer inherits the vanished object's id
    assert run(0.5) == 2  # it looks different: a new id


@pytest.mark.parametrize("motion_compensation, same_id", [(True, True), (False, False)])
def test_motion_compensation_follows_an_object_across_a_gap(motion_compensation, same_id):
    # A 2 × 2 object moving one cell per frame to the right, hidden for two frames between chunks.
    moving = [frame((1, 3, c, 2, 2)) for c in range(7)]
    linker = TrajectoryLinker(method="overlap", motion_compensation=motion_compensation)
    linker.link(chunk(*moving[:3]), 0, num_slots=4)
    links = linker.link(chunk(frame(), frame(), moving[5], moving[6]), 3, num_slots=4)
    assert (links.global_ids[1].item() == 1) is same_id
