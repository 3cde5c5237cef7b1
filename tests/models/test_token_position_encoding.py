"""``TrajTokConfig.token_position_encoding``: trajectory tokens that know where and when their pixels are.

Without it, a token is a weighted mean of its pixels' features: the rotary position embedding of the refinement
Perceiver changes the weights, not the values, so a clip and its time reversal give the same tokens (to float
rounding) whenever the features of a trajectory's pixels are alike — which is why the option exists."""

import pytest
import torch
from testers import float_error_bound, tiny_trajtok_model, tiny_trajtok_terms, video_batch

from trajtok_hf import TrajTokModel


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    base = tiny_trajtok_model()
    with_positions = tiny_trajtok_model(token_position_encoding=True)
    missing, unexpected = with_positions.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and set(missing) == {"position_projection.weight", "position_projection.bias"}
    return base, with_positions


def test_the_projection_starts_at_zero_so_switching_it_on_changes_nothing(models):
    base, with_positions = models
    videos = video_batch(2, 4, 32)
    with torch.no_grad():
        expected, actual = base(videos, tokens_per_trajectory=2), with_positions(videos, tokens_per_trajectory=2)
    assert torch.equal(actual.trajectory_tokens, expected.trajectory_tokens)
    assert base.position_projection is None


def test_time_reversal_changes_the_tokens_only_with_positions(models):
    base, with_positions = models
    # Flat-coloured objects: every pixel of a trajectory has nearly the same features.
    videos = torch.zeros(1, 4, 3, 32, 32)
    for t in range(4):
        videos[0, t, :, 8:16, 4 + 4 * t : 12 + 4 * t] = torch.tensor([2.0, -1.0, 0.5])[:, None, None]
    reverse = videos.flip(1)
    positions = TrajTokModel(with_positions.config).eval()
    positions.load_state_dict(with_positions.state_dict())
    torch.nn.init.normal_(positions.position_projection.weight, std=0.5)
    with torch.no_grad():
        same = base(videos, tokens_per_trajectory=1), base(reverse, tokens_per_trajectory=1)
        moved = positions(videos, tokens_per_trajectory=1), positions(reverse, tokens_per_trajectory=1)
    assert torch.equal(same[0].trajectory_ids.flip(1), same[1].trajectory_ids)
    bound = float_error_bound(4.0, tiny_trajtok_terms(size=32)[1])
    # Without positions the token of each trajectory is the same for a clip and its reversal...
    assert (same[0].trajectory_tokens - same[1].trajectory_tokens).abs().max() <= bound
    # ...with them it is not.
    assert (moved[0].trajectory_tokens - moved[1].trajectory_tokens).abs().max() > 100 * bound


def test_saved_and_loaded_with_its_projection(models, tmp_path):
    trained = TrajTokModel(models[1].config).eval()
    torch.nn.init.normal_(trained.position_projection.weight, std=0.1)
    trained.save_pretrained(tmp_path)
    loaded = TrajTokModel.from_pretrained(tmp_path).eval()
    assert loaded.config.token_position_encoding
    torch.testing.assert_close(loaded.position_projection.weight, trained.position_projection.weight)


def test_the_setting_must_be_a_bool():
    with pytest.raises(ValueError, match="token_position_encoding must be a bool"):
        tiny_trajtok_model(token_position_encoding="yes")
