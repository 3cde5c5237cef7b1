"""The frame-difference input (``TrajTokConfig.frame_difference_input``): a motion cue in the backbone input."""

import pytest
import torch
from testers import tiny_trajtok_config, tiny_trajtok_model, video_batch

from trajtok_hf import TrajTokConfig, TrajTokModel
from trajtok_hf.models.modeling_trajtok import add_frame_differences, camera_translations, shift_frames


def test_add_frame_differences_channels():
    videos = torch.randn(2, 5, 3, 8, 8)
    out = add_frame_differences(videos)
    assert out.shape == (2, 5, 9, 8, 8)
    torch.testing.assert_close(out[:, :, :3], videos, rtol=0, atol=0)
    torch.testing.assert_close(out[:, 1:, 3:6], videos[:, 1:] - videos[:, :-1], rtol=0, atol=0)
    torch.testing.assert_close(out[:, :-1, 6:], videos[:, 1:] - videos[:, :-1], rtol=0, atol=0)
    assert not out[:, 0, 3:6].any() and not out[:, -1, 6:].any()
    assert not add_frame_differences(videos[:, :1])[:, :, 3:].any()  # an image has no motion


@pytest.mark.parametrize(
    ("channels", "flag", "expected"),
    [(3, True, 9), (9, True, 9), (3, False, 3)],
)
def test_config_sets_or_accepts_the_channel_count(channels, flag, expected):
    config = tiny_trajtok_config(frame_difference_input=flag)
    config = TrajTokConfig.from_dict(
        {**config.to_dict(), "backbone_config": {**config.backbone_config.to_dict(), "num_channels": channels}}
    )
    assert config.backbone_config.num_channels == expected


@pytest.mark.parametrize(
    ("channels", "flag", "match"),
    [(9, False, "num_channels must be 3"), (4, True, "num_channels must be 9"), (3, "yes", "must be a bool")],
)
def test_config_rejects_inconsistent_channels(channels, flag, match):
    config = tiny_trajtok_config()
    with pytest.raises(ValueError, match=match):
        TrajTokConfig.from_dict(
            {
                **config.to_dict(),
                "frame_difference_input": flag,
                "backbone_config": {**config.backbone_config.to_dict(), "num_channels": channels},
            }
        )


def test_model_sees_motion_only_with_the_flag():
    torch.manual_seed(0)
    model = TrajTokModel(tiny_trajtok_config(frame_difference_input=True)).eval()
    video = video_batch(batch=1, frames=4)
    shuffled = video[:, [2, 0, 3, 1]]
    with torch.no_grad():
        first = model(pixel_values_videos=video).assignment_logits[:, 0]
        moved = model(pixel_values_videos=shuffled).assignment_logits[:, 1]  # same frame 0, other neighbours
    assert not torch.allclose(first, moved)


def test_widened_model_keeps_outputs_and_round_trips(tmp_path):
    model = tiny_trajtok_model().eval()
    widened = model.with_frame_difference_input()
    assert widened.config.frame_difference_input and widened.config.backbone_config.num_channels == 9
    assert not model.config.frame_difference_input  # the source model is not modified
    video = video_batch(batch=2, frames=4)
    with torch.no_grad():
        before, after = model(pixel_values_videos=video), widened(pixel_values_videos=video)
    torch.testing.assert_close(after.assignment_logits, before.assignment_logits, rtol=0, atol=0)
    torch.testing.assert_close(after.trajectory_tokens, before.trajectory_tokens, rtol=0, atol=0)
    widened.save_pretrained(tmp_path)
    loaded = TrajTokModel.from_pretrained(tmp_path).eval()
    assert loaded.config.frame_difference_input
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values_videos=video).assignment_logits, after.assignment_logits)
    with pytest.raises(ValueError, match="already has frame_difference_input"):
        widened.with_frame_difference_input()


# ---------------------------------------------------------------------------------------------------------------
# frame_difference_alignment="translation": the differences again, with the camera's translation taken out


def panned_clip(shifts, size=24, seed=0):
    """(1, T, 3, size, size) windows of one random texture; window t + 1 shows window t's content moved by
    ``shifts[t]`` = (dy, dx) (the camera moved by minus that)."""
    texture = torch.rand(3, 4 * size, 4 * size, generator=torch.Generator().manual_seed(seed))
    top = left = 2 * size
    frames = [texture[:, top : top + size, left : left + size]]
    for dy, dx in shifts:
        top, left = top - dy, left - dx
        frames.append(texture[:, top : top + size, left : left + size])
    return torch.stack(frames)[None]


@pytest.mark.parametrize("shifts", [[(0, 0)], [(2, -3)], [(-1, 0), (0, 4), (5, 5)], [(-6, 2), (3, -6)]])
def test_camera_translations_recover_a_pan(shifts):
    video = panned_clip(shifts)
    assert camera_translations(video).tolist() == [[list(shift) for shift in shifts]]
    assert camera_translations(video.to(torch.bfloat16)).tolist() == [[list(shift) for shift in shifts]]


def test_camera_translations_search_only_the_allowed_reach():
    video = panned_clip([(5, 0)])
    assert camera_translations(video).tolist() == [[[5, 0]]]
    assert camera_translations(video, max_shift_fraction=0.1).tolist() != [[[5, 0]]]  # 5 > 0.1 · 24: out of reach
    assert camera_translations(video[:, :1]).shape == (1, 0, 2)  # one frame: no pair


def test_shift_frames_moves_content_and_marks_the_border():
    frames = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(1, 2, 3, 4, 5)
    shifts = torch.tensor([[[1, -2], [0, 0]]])
    moved, valid = shift_frames(frames, shifts)
    torch.testing.assert_close(moved[0, 1], frames[0, 1], rtol=0, atol=0)  # no shift
    torch.testing.assert_close(moved[0, 0, :, 1:, :3], frames[0, 0, :, :3, 2:], rtol=0, atol=0)
    expected = torch.zeros(4, 5)
    expected[1:, :3] = 1
    torch.testing.assert_close(valid[0, 0, 0], expected, rtol=0, atol=0)
    assert valid[0, 1].all() and valid.shape == (1, 2, 1, 4, 5)


def test_aligned_differences_vanish_on_a_pan_and_show_what_moves_against_it():
    shifts = [(1, 2), (1, 2), (0, 2)]
    video = panned_clip(shifts)
    out = add_frame_differences(video, "translation")
    assert out.shape == (1, 4, 15, 24, 24)
    torch.testing.assert_close(out[:, :, :9], add_frame_differences(video), rtol=0, atol=0)
    assert out[:, :, 3:9].abs().mean() > 0.1  # the plain differences light up the whole textured frame
    assert not out[:, :, 9:].any()  # the aligned ones are zero: only the camera moved
    moving = video.clone()
    moving[:, 2, :, 8:14, 8:14] = 1.0  # a patch that does not move with the camera, in frame 2
    out = add_frame_differences(moving, "translation")
    changed = out[0, 2, 9:12].abs().amax(dim=0) > 0  # frame 2 against its aligned previous frame
    assert changed[8:14, 8:14].any() and not changed[:8].any() and not changed[14:].any()


def test_add_frame_differences_rejects_an_unknown_alignment():
    with pytest.raises(ValueError, match="alignment must be one of"):
        add_frame_differences(torch.zeros(1, 2, 3, 8, 8), "affine")


@pytest.mark.parametrize(
    ("channels", "flag", "alignment", "outcome"),
    [
        (3, True, "translation", 15),
        (15, True, "translation", 15),
        (9, True, "translation", "num_channels must be 15"),
        (15, True, "none", "num_channels must be 9"),
        (3, False, "translation", "needs frame_difference_input=True"),
        (3, True, "affine", "frame_difference_alignment must be one of"),
    ],
)
def test_config_frame_difference_alignment(channels, flag, alignment, outcome):
    config = tiny_trajtok_config()
    values = {
        **config.to_dict(),
        "frame_difference_input": flag,
        "frame_difference_alignment": alignment,
        "backbone_config": {**config.backbone_config.to_dict(), "num_channels": channels},
    }
    if isinstance(outcome, str):
        with pytest.raises(ValueError, match=outcome):
            TrajTokConfig.from_dict(values)
    else:
        assert TrajTokConfig.from_dict(values).backbone_config.num_channels == outcome


@pytest.mark.parametrize("start", ["rgb", "frame_differences"])
def test_widening_to_aligned_differences_keeps_outputs_and_round_trips(tmp_path, start):
    torch.manual_seed(0)
    model = TrajTokModel(tiny_trajtok_config(frame_difference_input=start == "frame_differences")).eval()
    widened = model.with_frame_difference_input("translation")
    assert widened.config.frame_difference_alignment == "translation"
    assert widened.config.backbone_config.num_channels == 15 and model.config.frame_difference_alignment == "none"
    video = video_batch(batch=2, frames=4)
    with torch.no_grad():
        before, after = model(pixel_values_videos=video), widened(pixel_values_videos=video)
    torch.testing.assert_close(after.assignment_logits, before.assignment_logits, rtol=0, atol=0)
    widened.save_pretrained(tmp_path)
    loaded = TrajTokModel.from_pretrained(tmp_path).eval()
    assert loaded.config.frame_difference_alignment == "translation"
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values_videos=video).assignment_logits, after.assignment_logits)
    for alignment, match in (("translation", "already has"), ("none", "already has"), ("affine", "must be one of")):
        with pytest.raises(ValueError, match=match):
            widened.with_frame_difference_input(alignment)


def test_aligned_model_sees_the_camera_aligned_differences():
    """A stem that reads only the aligned channels sees a pure pan of a still scene as a scene that does not move
    (all-zero input, as for a clip of one repeated frame); one that reads only the plain differences sees the pan."""
    torch.manual_seed(0)
    model = TrajTokModel(
        tiny_trajtok_config(frame_difference_input=True, frame_difference_alignment="translation")
    ).eval()
    stem = next(p for n, p in model.named_parameters() if p.ndim == 4 and p.shape[1] == 15)
    weights = stem.detach().clone()
    panned = panned_clip([(1, 1), (2, 0), (0, -2)], size=32)
    still = panned_clip([(0, 0)] * 3, size=32, seed=1)
    for reads, same in ((slice(9, 15), True), (slice(3, 9), False)):
        with torch.no_grad():
            stem.zero_()
            stem[:, reads] = weights[:, reads]
            a = model(pixel_values_videos=panned).assignment_logits
            b = model(pixel_values_videos=still).assignment_logits
        assert torch.equal(a, b) == same, reads  # aligned: all-zero input for both clips; plain: the pan shows


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: camera_translations(torch.zeros(2, 3, 8, 8)), "videos must be a floating tensor of shape"),
        (lambda: camera_translations(torch.zeros(1, 2, 3, 8, 8, dtype=torch.long)), "videos must be a floating"),
        (lambda: camera_translations(torch.zeros(1, 2, 3, 8, 8), max_shift_fraction=0.0), "max_shift_fraction"),
        (lambda: camera_translations(torch.zeros(1, 2, 3, 8, 8), max_shift_fraction=0.6), "max_shift_fraction"),
        (lambda: camera_translations(torch.zeros(1, 2, 3, 8, 8), max_shift_fraction="1"), "max_shift_fraction"),
        (lambda: shift_frames(torch.zeros(1, 2, 3, 8, 8), torch.zeros(1, 2, 3, dtype=torch.long)), "shifts must be"),
        (lambda: shift_frames(torch.zeros(1, 2, 3, 8, 8), torch.zeros(1, 2, 2)), "shifts must be an integer"),
        (lambda: shift_frames([[0.0]], torch.zeros(1, 2, 2, dtype=torch.long)), "frames must be a floating tensor"),
        (lambda: add_frame_differences(torch.zeros(2, 3, 8, 8), "translation"), "videos must be a floating tensor"),
    ],
)
def test_alignment_functions_reject_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
