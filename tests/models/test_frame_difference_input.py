"""The frame-difference input (``TrajTokConfig.frame_difference_input``): a motion cue in the backbone input."""

import pytest
import torch
from testers import tiny_trajtok_config, tiny_trajtok_model, video_batch

from trajtok_hf import TrajTokConfig, TrajTokModel
from trajtok_hf.models.modeling_trajtok import add_frame_differences


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
