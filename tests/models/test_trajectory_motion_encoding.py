"""``TrajTokConfig.trajectory_motion_encoding``: every token gets its trajectory's path through the chunk."""

import pytest
import torch
from testers import tiny_trajtok_model, video_batch

from trajtok_hf import TrajTokModel


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    base = tiny_trajtok_model()  # chunks of 4 frames, K = 8
    with_paths = tiny_trajtok_model(trajectory_motion_encoding=True)
    missing, unexpected = with_paths.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and set(missing) == {"motion_projection.weight", "motion_projection.bias"}
    return base, with_paths


def test_the_projection_starts_at_zero_so_switching_it_on_changes_nothing(models):
    base, with_paths = models
    videos = video_batch(2, 6, 32)  # a full chunk and a shorter one
    with torch.no_grad():
        expected, actual = base(videos, tokens_per_trajectory=2), with_paths(videos, tokens_per_trajectory=2)
    assert torch.equal(actual.trajectory_tokens, expected.trajectory_tokens)


def test_paths_are_presence_and_centroids_per_frame(models):
    _, with_paths = models
    # One clip, 2 frames of 2 × 2 cells (raster order, frame slowest); trajectory 3 holds one cell per frame.
    ids = torch.zeros(1, 8, dtype=torch.long)
    ids[0, 1], ids[0, 7] = 3, 3  # frame 0: row 0, column 1; frame 1: row 1, column 1
    path = with_paths._trajectory_paths(ids, (2, 2, 2), torch.float32).view(1, 8, 4, 3)
    assert path.shape == (1, 8, 4, 3)  # padded to the 4-frame chunk
    torch.testing.assert_close(path[0, 3], torch.tensor([[1.0, -1.0, 1.0], [1.0, 1.0, 1.0], [0, 0, 0], [0, 0, 0]]))
    third = 1.0 / 3.0
    torch.testing.assert_close(path[0, 0, :2], torch.tensor([[1.0, third, -third], [1.0, -third, -third]]))
    assert not path[0, 1:3].any()  # slots without pixels


def test_time_reversal_changes_the_tokens(models):
    _, with_paths = models
    videos = torch.zeros(1, 4, 3, 32, 32)
    for t in range(4):
        videos[0, t, :, 8:16, 4 + 4 * t : 12 + 4 * t] = torch.tensor([2.0, -1.0, 0.5])[:, None, None]
    trained = TrajTokModel(with_paths.config).eval()
    trained.load_state_dict(with_paths.state_dict())
    torch.nn.init.normal_(trained.motion_projection.weight, std=0.5)
    with torch.no_grad():
        forward, backward = trained(videos, tokens_per_trajectory=1), trained(videos.flip(1), tokens_per_trajectory=1)
    assert torch.equal(forward.trajectory_ids.flip(1), backward.trajectory_ids)
    assert (forward.trajectory_tokens - backward.trajectory_tokens).abs().max() > 1e-2


def test_chunks_longer_than_the_projection_are_refused(models):
    _, with_paths = models
    with pytest.raises(ValueError, match="chunks of at most 4 frames"):
        with_paths._trajectory_paths(torch.zeros(1, 5 * 4, dtype=torch.long), (5, 2, 2), torch.float32)


def test_the_setting_must_be_a_bool():
    with pytest.raises(ValueError, match="trajectory_motion_encoding must be a bool"):
        tiny_trajtok_model(trajectory_motion_encoding=1)


def test_a_non_zero_init_std_draws_the_weight_and_keeps_the_bias_at_zero():
    torch.manual_seed(0)
    model = tiny_trajtok_model(trajectory_motion_encoding=True, trajectory_motion_init_std=0.1)
    weight = model.motion_projection.weight
    assert weight.abs().max() > 0 and not model.motion_projection.bias.any()
    assert 0.05 < weight.std().item() < 0.2  # a normal draw of std 0.1 over hidden × 3 · chunk entries
    videos = video_batch(2, 4, 32)
    with torch.no_grad():
        drawn = model(videos).trajectory_tokens
        model.motion_projection.weight.zero_()
        zeroed = model(videos).trajectory_tokens
    assert (drawn - zeroed).abs().max() > 1e-3  # the paths reach the tokens from the first step


@pytest.mark.parametrize("value", [-0.1, float("inf"), float("nan"), True, "0.1"])
def test_the_init_std_must_be_a_finite_float_at_least_zero(value):
    with pytest.raises(ValueError, match="trajectory_motion_init_std must be a finite float >= 0"):
        tiny_trajtok_model(trajectory_motion_encoding=True, trajectory_motion_init_std=value)
