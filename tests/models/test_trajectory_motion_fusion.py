"""``TrajTokConfig.trajectory_motion_fusion="mlp"``: a token binds its appearance to its trajectory's path."""

import pytest
import torch
from testers import tiny_trajtok_model, video_batch

from trajtok_hf import TrajTokModel
from trajtok_hf.models.modeling_trajtok import TrajTokMotionFusion


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    added = tiny_trajtok_model(trajectory_motion_encoding=True)  # chunks of 4 frames, K = 8
    torch.nn.init.normal_(added.motion_projection.weight, std=0.3)  # as if trained
    fused = added.with_trajectory_motion_fusion("mlp")
    return added.eval(), fused.eval()


def test_the_fusion_starts_at_zero_so_switching_it_on_changes_nothing(models):
    added, fused = models
    assert fused.config.trajectory_motion_fusion == "mlp" and added.config.trajectory_motion_fusion == "add"
    assert not fused.motion_fusion.fc2.weight.any() and not fused.motion_fusion.fc2.bias.any()
    assert fused.motion_fusion.fc1.weight.abs().max() > 0  # only the output layer is zero
    videos = video_batch(2, 6, 32)  # a full chunk and a shorter one
    with torch.no_grad():
        expected, actual = added(videos, tokens_per_trajectory=2), fused(videos, tokens_per_trajectory=2)
    assert torch.equal(actual.trajectory_tokens, expected.trajectory_tokens)
    # a freshly built model starts at zero too
    fresh = tiny_trajtok_model(trajectory_motion_encoding=True, trajectory_motion_fusion="mlp")
    assert not fresh.motion_fusion.fc2.weight.any()


def test_a_trained_fusion_reaches_the_tokens_and_round_trips(models, tmp_path):
    _, fused = models
    trained = TrajTokModel(fused.config).eval()
    trained.load_state_dict(fused.state_dict())
    torch.nn.init.normal_(trained.motion_fusion.fc2.weight, std=0.3)
    videos = video_batch(2, 4, 32)
    with torch.no_grad():
        tokens = trained(videos, tokens_per_trajectory=1).trajectory_tokens
        plain = fused(videos, tokens_per_trajectory=1).trajectory_tokens
    assert (tokens - plain).abs().max() > 1e-3
    trained.save_pretrained(tmp_path)
    loaded = TrajTokModel.from_pretrained(tmp_path).eval()
    assert loaded.config.trajectory_motion_fusion == "mlp"
    with torch.no_grad():
        torch.testing.assert_close(loaded(videos, tokens_per_trajectory=1).trajectory_tokens, tokens, rtol=0, atol=0)
    # back to "add": the MLP is dropped, every other weight kept
    dropped = trained.with_trajectory_motion_fusion("add").eval()
    assert dropped.motion_fusion is None
    with torch.no_grad():
        torch.testing.assert_close(dropped(videos, tokens_per_trajectory=1).trajectory_tokens, plain, rtol=0, atol=0)


def test_exchanging_two_paths_keeps_the_sum_of_added_codes_but_not_of_fused_ones():
    """Why the fusion exists: with ``"add"`` a clip's tokens sum to the same vector when two objects exchange their
    paths (which object moves how is invisible to any sum-like pooling); the fusion's tokens do not."""
    torch.manual_seed(0)
    hidden, path_size = 16, 12
    fusion = TrajTokMotionFusion(hidden, path_size, 1e-5)
    torch.nn.init.normal_(fusion.fc2.weight, std=0.3)
    projection = torch.nn.Linear(path_size, hidden)
    appearance = torch.randn(1, 2, hidden)
    paths = torch.randn(1, 2, path_size)
    exchanged = paths.flip(1)

    def added(p):
        return appearance + projection(p)

    def fused(p):
        return added(p) + fusion(appearance, p)

    with torch.no_grad():
        torch.testing.assert_close(added(paths).sum(1), added(exchanged).sum(1))
        assert (fused(paths).sum(1) - fused(exchanged).sum(1)).abs().max() > 1e-3


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"trajectory_motion_fusion": "mlp"}, "trajectory_motion_fusion='mlp' needs trajectory_motion_encoding=True"),
        (
            {"trajectory_motion_encoding": True, "trajectory_motion_fusion": "concat"},
            "trajectory_motion_fusion must be one of ('add', 'mlp'), got 'concat'",
        ),
    ],
)
def test_the_setting_is_checked(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny_trajtok_model(**overrides)


@pytest.mark.parametrize(
    "overrides, fusion, message",
    [
        ({}, "mlp", "needs a model with trajectory_motion_encoding=True"),
        ({"trajectory_motion_encoding": True}, "gated", "must be one of"),
    ],
)
def test_with_trajectory_motion_fusion_refuses_what_cannot_be_built(overrides, fusion, message):
    with pytest.raises(ValueError, match=message):
        tiny_trajtok_model(**overrides).with_trajectory_motion_fusion(fusion)
