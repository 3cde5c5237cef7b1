"""Long procedural videos: exact identities over hundreds of frames, scenario events, block rendering, mp4 export."""

import time

import av
import numpy as np
import pytest

from trajtok_hf.data import COLOURS, downsample_labels
from trajtok_hf.data.long_videos import (
    EVENT_KINDS,
    LONG_VIDEO_MOTIONS,
    LONG_VIDEO_SCENARIOS,
    LongVideoConfig,
    generate_long_video,
    iter_long_video,
    write_long_video,
)
from trajtok_hf.data.synthetic import shade


@pytest.fixture(scope="module")
def videos():
    """The default 256-frame video of every scenario for seed 0 (generated once for the module)."""
    return {
        scenario: generate_long_video(LongVideoConfig(scenario=scenario), seed=0) for scenario in LONG_VIDEO_SCENARIOS
    }


def _visible_frames(segmentation, num_ids):
    """(T, num_ids + 1) bool: which ids have at least one pixel in each frame."""
    T = segmentation.shape[0]
    codes = segmentation.reshape(T, -1) + (np.arange(T) * (num_ids + 1))[:, None]
    return np.bincount(codes.ravel(), minlength=T * (num_ids + 1)).reshape(T, num_ids + 1) > 0


@pytest.mark.parametrize("scenario", LONG_VIDEO_SCENARIOS)
def test_arrays_ids_and_object_records(videos, scenario):
    video = videos[scenario]
    T, H, W = 256, 64, 64
    assert video["video"].shape == (T, H, W, 3) and video["video"].dtype == np.uint8
    assert video["segmentation"].shape == (T, H, W) and video["segmentation"].dtype == np.int64
    assert video["segmentation_labels"].shape == (T, H // 4, W // 4)
    np.testing.assert_array_equal(video["segmentation_labels"], downsample_labels(video["segmentation"], 4))
    assert video["scenario"] == scenario and video["seed"] == 0
    objects = video["objects"]
    # Ids 1..M, numbered in order of first appearance, each with its exact first and last visible frame.
    assert [o["id"] for o in objects] == list(range(1, len(objects) + 1))
    assert [o["first_frame"] for o in objects] == sorted(o["first_frame"] for o in objects)
    assert set(np.unique(video["segmentation"])) == set(range(len(objects) + 1))
    seen = _visible_frames(video["segmentation"], len(objects))
    for obj in objects:
        frames = np.flatnonzero(seen[:, obj["id"]])
        assert (frames[0], frames[-1]) == (obj["first_frame"], obj["last_frame"]), obj
        assert obj["motion"] in LONG_VIDEO_MOTIONS and obj["colour"] in COLOURS
    for event in video["events"]:
        assert event["kind"] in EVENT_KINDS and 1 <= event["id"] <= len(objects)
        assert 0 <= event["start"] <= event["end"] < T


@pytest.mark.parametrize("scenario", LONG_VIDEO_SCENARIOS)
def test_deterministic_by_config_and_seed(videos, scenario):
    cfg = LongVideoConfig(scenario=scenario)
    again = generate_long_video(cfg, seed=0)
    other = generate_long_video(cfg, seed=1)
    for key in ("video", "segmentation", "segmentation_labels"):
        np.testing.assert_array_equal(again[key], videos[scenario][key])
    assert again["objects"] == videos[scenario]["objects"] and again["events"] == videos[scenario]["events"]
    assert not np.array_equal(other["video"], again["video"])


def test_segmentation_is_the_painted_pixels():
    # Textured objects too: their pixels are either the colour or its shade.
    two_tone = 0
    for scenario in LONG_VIDEO_SCENARIOS:
        video = generate_long_video(LongVideoConfig(scenario=scenario, num_frames=96, texture_probability=0.5), 2)
        frames, seg = video["video"], video["segmentation"]
        seen = _visible_frames(seg, len(video["objects"]))
        for obj in video["objects"]:
            pixels = frames[seg == obj["id"]]
            rgb, dark = np.array(COLOURS[obj["colour"]], np.uint8), np.array(shade(obj["colour"]), np.uint8)
            is_rgb, is_dark = (pixels == rgb).all(-1), (pixels == dark).all(-1)
            if obj["texture"] == "plain":
                assert is_rgb.all(), obj
            else:
                assert (is_rgb | is_dark).all(), obj
                two_tone += is_rgb.any() and is_dark.any()
            # No other pixel of the frames where it is visible has its exact colour (backgrounds are grey-ish and
            # objects visible together have distinct colours).
            during = seen[:, obj["id"]]
            elsewhere = frames[during][seg[during] != obj["id"]]
            assert not (elsewhere == rgb).all(-1).any(), obj
    assert two_tone > 3


@pytest.mark.parametrize("scenario", LONG_VIDEO_SCENARIOS)
def test_objects_visible_together_have_distinct_colours(videos, scenario):
    video = videos[scenario]
    colour_of = np.array([""] + [o["colour"] for o in video["objects"]], dtype=object)
    seen = _visible_frames(video["segmentation"], len(video["objects"]))
    seen[:, 0] = False
    for frame in seen:
        colours = colour_of[frame]
        assert len(set(colours)) == len(colours)


@pytest.mark.parametrize("scenario", ["panning", "busy"])
def test_ids_are_never_reused(videos, scenario):
    # More objects than colours over the video, so colours come back while ids keep growing; every break in an
    # object's visibility is a recorded occlusion (an id never stands for a new object after a gap).
    video = videos[scenario]
    assert len(video["objects"]) > len(COLOURS)
    seen = _visible_frames(video["segmentation"], len(video["objects"]))
    occluded = {(e["id"], e["start"], e["end"]) for e in video["events"] if e["kind"] == "occluded"}
    gaps = set()
    for obj in video["objects"]:
        frames = np.flatnonzero(seen[:, obj["id"]])
        for i in np.flatnonzero(np.diff(frames) > 1):
            gaps.add((obj["id"], int(frames[i] + 1), int(frames[i + 1] - 1)))
    assert gaps == occluded


def test_static_scene_never_changes(videos):
    video = videos["static"]
    assert video["events"] == [] and video["background"]["pan"] == "none"
    assert all(o["first_frame"] == 0 and o["last_frame"] == 255 and o["motion"] == "static" for o in video["objects"])
    assert 2 <= len(video["objects"]) <= 4
    assert (video["segmentation"] == video["segmentation"][0]).all()
    assert (video["video"] == video["video"][0]).all()


def _as_left_pan(array, pan):
    """Transpose / flip ``(T, H, W, ...)`` so that content drifting ``pan`` drifts left."""
    if pan in ("up", "down"):
        array = np.swapaxes(array, 1, 2)
    return array[:, :, ::-1] if pan in ("right", "down") else array


@pytest.mark.parametrize("seed", [0, 1])
def test_panning_slides_background_and_scene_objects_together(seed):
    video = generate_long_video(LongVideoConfig(scenario="panning", num_frames=96), seed)
    pan, speed = video["background"]["pan"], video["background"]["speed"]
    assert pan in ("left", "right", "up", "down") and speed > 0
    frames, seg = _as_left_pan(video["video"], pan), _as_left_pan(video["segmentation"], pan)
    movers = [o["id"] for o in video["objects"] if o["motion"] == "passes_in_front"]
    steps = np.round(speed * np.arange(96)).astype(int)
    a, b = 10, 70
    shift = steps[b] - steps[a]
    assert shift > 15
    # What was at column x + shift in frame a is at column x in frame b, objects and background alike (except
    # where an object passing in front, which moves on its own, covers either frame).
    before, after = seg[a][:, shift:], seg[b][:, : seg.shape[2] - shift]
    steady = ~np.isin(before, movers) & ~np.isin(after, movers)
    assert steady.mean() > 0.5
    np.testing.assert_array_equal(before[steady], after[steady])
    np.testing.assert_array_equal(frames[a][:, shift:][steady], frames[b][:, : seg.shape[2] - shift][steady])
    assert (before[steady] > 0).sum() > 50  # scene objects are part of what moved with the background
    kinds = {e["kind"] for e in video["events"]}
    assert {"enter", "exit"} <= kinds


def test_busy_scene_events(videos):
    video = videos["busy"]
    events, objects = video["events"], video["objects"]
    kinds = {e["kind"] for e in events}
    assert set(EVENT_KINDS) <= kinds
    assert max(o["last_frame"] - o["first_frame"] + 1 for o in objects) >= 100  # lifetimes span many chunks
    assert {"bounce", "passes_in_front"} <= {o["motion"] for o in objects}
    by_id = {o["id"]: o for o in objects}
    for event in events:
        obj = by_id[event["id"]]
        if event["kind"] in ("enter", "appear"):
            assert event["start"] == obj["first_frame"]
        if event["kind"] in ("exit", "disappear"):
            assert event["end"] == obj["last_frame"]
    # An entering object is cut by the border in its first frame; an appearing one is not (or was hidden).
    seg = video["segmentation"]
    for event in events:
        if event["kind"] == "enter":
            mask = seg[event["start"]] == event["id"]
            assert mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any(), event


@pytest.mark.parametrize("chunk_size", [16, 8])
def test_planted_occlusions_span_chunk_boundaries(chunk_size):
    cfg = LongVideoConfig(scenario="busy", chunk_size=chunk_size, num_frames=128)
    video = generate_long_video(cfg, seed=3)
    seg = video["segmentation"]
    by_id = {o["id"]: o for o in video["objects"]}
    planted = [e for e in video["events"] if e["kind"] == "occluded" and e["by"] is not None]
    assert planted
    for event in planted:
        oid, first, last = event["id"], event["start"], event["end"]
        assert event["across_chunk_boundary"]
        assert any(first <= k * chunk_size <= last for k in range(1, 128 // chunk_size))
        assert not (seg[first : last + 1] == oid).any()
        assert (seg[first - 1] == oid).any() and (seg[last + 1] == oid).any()
        occluder = by_id[event["by"]]
        assert occluder["motion"] == "passes_in_front" and occluder["passes_in_front_of"] == oid
        assert occluder["radius"] > by_id[oid]["radius"] and occluder["z"] > by_id[oid]["z"]
        assert (seg[first : last + 1] == event["by"]).any(axis=(1, 2)).all()  # the occluder is there, in front


def test_no_occlusions_are_planted_when_disabled():
    video = generate_long_video(LongVideoConfig(scenario="busy", num_frames=128, occlusion_probability=0.0), 0)
    assert all(o["motion"] != "passes_in_front" for o in video["objects"])
    assert all(e.get("by") is None for e in video["events"])


@pytest.mark.parametrize("scenario", ["panning", "busy"])
def test_blocks_concatenate_to_the_whole_video(videos, scenario):
    blocks = list(iter_long_video(LongVideoConfig(scenario=scenario), seed=0, block_frames=100))
    assert [b["start"] for b in blocks] == [0, 100, 200]
    assert [b["video"].shape[0] for b in blocks] == [100, 100, 56]
    for key in ("video", "segmentation", "segmentation_labels"):
        np.testing.assert_array_equal(np.concatenate([b[key] for b in blocks]), videos[scenario][key])
    for key in ("objects", "events", "background", "scenario", "seed"):
        assert all(b[key] == videos[scenario][key] for b in blocks)


def test_write_long_video_block_by_block(tmp_path):
    cfg = LongVideoConfig(scenario="busy", num_frames=40, height=32, width=48)
    path = tmp_path / "long.mp4"
    metadata = write_long_video(path, cfg, seed=1, block_frames=16, fps=10)
    reference = generate_long_video(cfg, seed=1)
    assert metadata["objects"] == reference["objects"] and metadata["events"] == reference["events"]
    assert (metadata["num_frames"], metadata["height"], metadata["width"], metadata["fps"]) == (40, 32, 48, 10)
    assert "video" not in metadata and "segmentation" not in metadata
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 40 and frames[0].shape == (32, 48, 3)
    error = np.abs(np.stack(frames).astype(np.int16) - reference["video"].astype(np.int16)).mean()
    assert error < 12  # lossy, but the same frames


def test_generation_is_fast():
    cfg = LongVideoConfig(scenario="busy")
    start = time.perf_counter()
    generate_long_video(cfg, seed=5)
    assert time.perf_counter() - start < 3.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scenario": "crowded"}, "`scenario` must be one of"),
        ({"num_frames": 0}, "`num_frames` must be a positive int"),
        ({"chunk_size": 2.0}, "`chunk_size` must be a positive int"),
        ({"height": 62}, "must be divisible by `mask_stride`"),
        ({"objects_on_screen": 10}, "`objects_on_screen` .* exceeds"),
        ({"min_lifetime": 50, "max_lifetime": 40}, "`min_lifetime`"),
        ({"occlusion_frames": (1, 4)}, "`occlusion_frames`"),
        ({"occlusion_frames": (5, 4)}, "`occlusion_frames`"),
        ({"occlusion_probability": 1.5}, "`occlusion_probability` must be in"),
        ({"pop_probability": -0.1}, "`pop_probability` must be in"),
        ({"max_speed": 0}, "`max_speed` must be a positive number"),
        ({"scenario": "static", "pan_speed": 0.01}, "`pan_speed` must be 0 for scenario 'static'"),
        ({"scenario": "panning", "pan_speed": 0.0}, "`pan_speed` must be positive"),
        ({"shapes": ("blob",)}, "`shapes` has unknown entries"),
        ({"colours": ()}, "`colours` must not be empty"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LongVideoConfig(**kwargs)


def test_bad_call_arguments():
    with pytest.raises(TypeError, match="`config` must be a LongVideoConfig"):
        generate_long_video({"scenario": "busy"})
    with pytest.raises(ValueError, match="`seed` must be a non-negative int"):
        generate_long_video(LongVideoConfig(num_frames=8), seed=-1)
    with pytest.raises(ValueError, match="`block_frames` must be a positive int"):
        next(iter_long_video(LongVideoConfig(num_frames=8), block_frames=0))
    resolved = LongVideoConfig(scenario="panning").resolved()
    assert resolved.pan_speed == 0.01 and resolved.objects_on_screen == 4 and resolved.occlusion_probability == 0.2
