"""The space-time mixing blocks of the dense features (``TrajTokConfig.pixel_context_layers``)."""

import pytest
import torch
from testers import tiny_trajtok_config, tiny_trajtok_model, video_batch

from trajtok_hf import TrajTokConfig, TrajTokModel


def pixel_features(model: TrajTokModel, video: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values_videos=video, output_pixel_features=True).pixel_features


def with_unit_layer_scale(model: TrajTokModel) -> TrajTokModel:
    with torch.no_grad():
        for block in model.pixel_context:
            block.layer_scale.fill_(1.0)
    return model


@pytest.mark.parametrize(("layers", "mixes_time"), [(0, False), (1, True), (2, True)])
def test_a_frame_sees_its_neighbours_only_through_the_blocks(layers, mixes_time):
    torch.manual_seed(0)
    model = tiny_trajtok_model(pixel_context_layers=layers, chunk_size=4)
    if layers:
        with_unit_layer_scale(model)
    video = video_batch(batch=1, frames=4)
    changed = video.clone()
    changed[:, 1] = torch.randn_like(changed[:, 1])
    before, after = pixel_features(model, video), pixel_features(model, changed)
    assert not torch.allclose(before[:, 1], after[:, 1])
    assert torch.allclose(before[:, 0], after[:, 0]) != mixes_time
    assert torch.equal(before[:, 3], after[:, 3]) if layers < 2 else not torch.allclose(before[:, 3], after[:, 3])


def test_chunks_stay_independent():
    torch.manual_seed(0)
    model = with_unit_layer_scale(tiny_trajtok_model(pixel_context_layers=2, chunk_size=2))
    video = video_batch(batch=1, frames=4)
    changed = video.clone()
    changed[:, 2:] = torch.randn_like(changed[:, 2:])
    before, after = pixel_features(model, video), pixel_features(model, changed)
    torch.testing.assert_close(before[:, :2], after[:, :2], rtol=0, atol=0)
    assert not torch.allclose(before[:, 2:], after[:, 2:])


def test_added_blocks_start_near_the_identity_and_train():
    torch.manual_seed(0)
    plain = tiny_trajtok_model()
    assert plain.pixel_context is None and not any(k.startswith("pixel_context") for k in plain.state_dict())
    mixed = plain.with_pixel_context_layers(2)
    video = video_batch(batch=2, frames=4)
    before, after = pixel_features(plain, video), pixel_features(mixed, video)
    assert 0 < (after - before).abs().max() < 1e-4 * before.abs().max()
    mixed.train()
    output = mixed(pixel_values_videos=video, output_trajectory_tokens=False)
    output.assignment_logits.log_softmax(-1).amax(-1).sum().backward()
    for block in mixed.pixel_context:
        for name, parameter in block.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_with_pixel_context_layers_keeps_or_drops_blocks_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = with_unit_layer_scale(tiny_trajtok_model(pixel_context_layers=2))
    fewer = model.with_pixel_context_layers(1)
    assert len(fewer.pixel_context) == 1 and model.config.pixel_context_layers == 2
    for name, value in fewer.state_dict().items():
        torch.testing.assert_close(value, model.state_dict()[name], rtol=0, atol=0)
    video = video_batch(batch=1, frames=4)
    model.save_pretrained(tmp_path)
    loaded = TrajTokModel.from_pretrained(tmp_path).eval()
    assert loaded.config.pixel_context_layers == 2
    torch.testing.assert_close(pixel_features(loaded, video), pixel_features(model, video))
    reference = TrajTokModel(tiny_trajtok_config()).eval()
    reference.load_state_dict(model.with_pixel_context_layers(0).state_dict(), strict=True)


@pytest.mark.parametrize("value", [-1, 2.0, False, None])
def test_bad_layer_counts_are_refused(value):
    with pytest.raises(ValueError, match="pixel_context_layers must be an int >= 0"):
        TrajTokConfig.from_dict({**tiny_trajtok_config().to_dict(), "pixel_context_layers": value})
    with pytest.raises(ValueError, match="pixel_context_layers must be an int >= 0"):
        tiny_trajtok_model().with_pixel_context_layers(value)
