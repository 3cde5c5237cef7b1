"""replace_segmenter / freeze_segmenter: another segmenter under a trained TrajViT2, fixed while the rest trains."""

from __future__ import annotations

import pytest
import torch

from tests.testers import TINY_BACKBONE, text_batch, tiny_trajtok_model, tiny_trajvit2_model, video_batch
from trajtok_hf import TrajViT2Model
from trajtok_hf.training import SEGMENTER_MODULES, freeze_segmenter, replace_segmenter

# Another backbone (wider ConvNeXt stages), camera-aligned frame differences as input, space-time blocks, other
# assignment heads, the clustering update of the queries: all segmenter fields.
OTHER_SEGMENTER = dict(
    backbone_config={**TINY_BACKBONE, "hidden_sizes": [16, 24, 32, 48]},
    frame_difference_input=True,
    frame_difference_alignment="translation",
    query_update_iterations=2,
    pixel_context_layers=1,
    assignment_hidden_size=24,
    matching_tie_break="soft",
)


def _is_segmenter(name: str) -> bool:
    return name.split(".", 1)[0] in SEGMENTER_MODULES


@pytest.fixture
def swapped():
    torch.manual_seed(0)
    model = tiny_trajvit2_model(tokenizer_overrides={"trajectory_motion_encoding": True})
    segmenter = tiny_trajtok_model(**OTHER_SEGMENTER)
    segmenter.config.name_or_path = "runs/other-segmenter/final"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    replace_segmenter(model, segmenter)
    return model, segmenter, before


def test_segmenter_weights_and_config_come_from_the_segmenter_the_rest_stays(swapped):
    model, segmenter, before = swapped
    tokenizer = model.vision_model.tokenizer
    config = tokenizer.config
    assert config.frame_difference_input and config.assignment_hidden_size == 24
    assert config.frame_difference_alignment == "translation" and config.backbone_config.num_channels == 15
    assert config.query_update_iterations == 2 and tokenizer.query_update_gates.shape == (2,)
    assert config.pixel_context_layers == 1 and len(tokenizer.pixel_context) == 1
    assert config.backbone_config.hidden_sizes == [16, 24, 32, 48] and config.matching_tie_break == "soft"
    assert config.trajectory_motion_encoding  # a token-side field keeps the model's value
    assert config.name_or_path == "runs/other-segmenter/final"
    assert model.config.vision_config.trajtok_config is config
    seg_state = segmenter.state_dict()
    for name, value in tokenizer.state_dict().items():
        if _is_segmenter(name):
            torch.testing.assert_close(value, seg_state[name], rtol=0, atol=0, msg=name)
        else:
            torch.testing.assert_close(value, before[f"vision_model.tokenizer.{name}"], rtol=0, atol=0, msg=name)
    for name, value in model.state_dict().items():
        if not name.startswith("vision_model.tokenizer."):
            torch.testing.assert_close(value, before[name], rtol=0, atol=0, msg=name)


def test_swapped_model_matches_the_segmenter_and_round_trips(swapped, tmp_path):
    model, segmenter, _ = swapped
    model.eval()
    video = video_batch(batch=2, frames=4, size=64)
    with torch.no_grad():
        ids = model.vision_model.tokenizer(video).trajectory_ids
        expected = segmenter.eval()(video).trajectory_ids
        torch.testing.assert_close(ids, expected, rtol=0, atol=0)
        embedding = model.get_video_features(pixel_values_videos=video)
    model.save_pretrained(tmp_path)
    reloaded = TrajViT2Model.from_pretrained(tmp_path).eval()
    assert reloaded.config.vision_config.trajtok_config.frame_difference_input
    with torch.no_grad():
        torch.testing.assert_close(reloaded.get_video_features(pixel_values_videos=video), embedding)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"hidden_size": 48}, "hidden_size"),
        ({"num_trajectories": 4}, "num_trajectories"),
        ({"chunk_size": 2}, "chunk_size"),
    ],
)
def test_a_segmenter_that_does_not_fit_is_refused_and_nothing_changes(overrides, field):
    model = tiny_trajvit2_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=f"must be equal: {field}"):
        replace_segmenter(model, tiny_trajtok_model(**overrides))
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_wrong_types_are_refused():
    with pytest.raises(TypeError, match="`model` must be a TrajViT2Model with TrajTok tokens"):
        replace_segmenter(tiny_trajvit2_model("vit3d"), tiny_trajtok_model())
    with pytest.raises(TypeError, match="`segmenter` must be a TrajTokModel"):
        replace_segmenter(tiny_trajvit2_model(), tiny_trajvit2_model())
    with pytest.raises(TypeError, match="not a TrajTok tokenizer"):
        freeze_segmenter(torch.nn.Linear(2, 2))


def test_frozen_segmenter_gets_no_gradient_and_stays_in_eval_mode(swapped):
    model, _, _ = swapped
    tokenizer = model.vision_model.tokenizer
    frozen = set(freeze_segmenter(tokenizer))
    assert {name for name, _ in tokenizer.named_parameters() if _is_segmenter(name)} == frozen
    model.train()  # a training loop's model.train() does not put the segmenter back in training mode
    text = text_batch(batch=2)
    out = model(pixel_values_videos=video_batch(batch=2, frames=4, size=64), **text, return_loss=True)
    out.loss.backward()
    assert not tokenizer.feature_extractor.training and not tokenizer.query_perceiver.training
    assert tokenizer.refinement_perceiver.training
    for name, parameter in tokenizer.named_parameters():
        if name in frozen:
            assert parameter.grad is None and not parameter.requires_grad, name
    trained = [p.grad for n, p in tokenizer.named_parameters() if n.startswith("refinement_perceiver.")]
    assert trained and all(g is not None for g in trained) and any(g.abs().sum() > 0 for g in trained)
