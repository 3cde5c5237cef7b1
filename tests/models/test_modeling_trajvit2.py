"""TrajViT2 (paper Sec. 4): config, vision tower (padding mask, compaction, release option), CLIP model, losses."""

import copy
import functools
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from testers import (
    TINY_BERT,
    assert_close_within_bound,
    assert_ids_equal_up_to_ties,
    float_error_bound,
    text_batch,
    tiny_trajtok_config,
    tiny_trajvit2_config,
    tiny_trajvit2_model,
    tiny_trajvit2_terms,
    tiny_trajvit2_vision_config,
    tiny_trajvit2_vision_model,
    transformer_layer_terms,
    video_batch,
)
from transformers import AutoConfig, AutoModel, BertConfig, BertModel
from transformers.models.vit.modeling_vit import ViTLayer

from trajtok_hf import (
    TrajTokConfig,
    TrajViT2Config,
    TrajViT2Model,
    TrajViT2Output,
    TrajViT2VisionConfig,
    TrajViT2VisionModel,
)
from trajtok_hf.models.loss_trajtok import trajectory_segmentation_loss

# 32 trajectory slots on an 8×8 (32² input) or 16×16 (64²) grid: some slots stay empty, and videos differ in counts.
SPARSE = {"num_trajectories": 32}

# Error bounds (testers.float_error_bound: magnitude × reduction length × eps). Reduction lengths of the tiny vision
# encoder alone (input projection, 2 layers over `sequence` tokens, final LayerNorm), of the whole towers on 2 frames
# of 32² (testers.tiny_trajvit2_terms), and of the tokenizer's assignment-logit heads (a linear of 32 terms, an L2
# norm and a dot product of 8, the scale).
VIDEO_TERMS, TEXT_TERMS = tiny_trajvit2_terms(size=32, frames=2)
HEAD_TERMS = 32 + 8 + 8 + 1


def _encoder_terms(sequence: int) -> int:
    return 32 + 2 * transformer_layer_terms(sequence, 32, 64, 4) + 32


def _clip_loss_terms(batch: int) -> int:
    """The contrastive loss: a logit's dot product of projection_dim (16) terms, a log-sum-exp over the batch and the
    mean of 2·batch cross-entropies (terms of size <= the logit scale)."""
    return 16 + 3 * batch


# Tiny tensors: intra-op threads cost more in synchronisation than they save (conftest.single_thread).
pytestmark = pytest.mark.usefixtures("single_thread")


# ------------------------------------------------------------------------------------------------------------ config
def test_config_defaults_are_the_release_shapes():
    config = TrajViT2Config()
    vision = config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads, vision.intermediate_size) == (
        512,
        24,
        16,
        2048,
    )
    assert vision.final_layer_norm_eps == 1e-5 and vision.vision_tokenizer == "trajtok"
    assert vision.attend_to_inactive_tokens is False  # paper form; the release's is an option
    assert isinstance(config.trajtok_config, TrajTokConfig) and config.trajtok_config is vision.trajtok_config
    assert isinstance(config.text_config, BertConfig)
    assert config.projection_dim == 256
    assert config.logit_scale_init_value == math.log(1 / 0.07)  # the same Python float
    assert config.segmentation_loss_weight == 1.0 and config.contrastive_loss_weight == 1.0


@pytest.mark.parametrize("vision_tokenizer", ["trajtok", "vit3d"])
def test_config_json_round_trip_with_nested_configs(vision_tokenizer, tmp_path):
    config = tiny_trajvit2_config(vision_tokenizer, vision_overrides={"position_embedding_type": "sinusoidal"})
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is TrajViT2Config and type(loaded.vision_config) is TrajViT2VisionConfig
    assert type(loaded.text_config) is BertConfig
    assert _without_path(loaded.to_dict()) == _without_path(config.to_dict())
    if vision_tokenizer == "trajtok":
        assert isinstance(loaded.trajtok_config, TrajTokConfig)
        assert loaded.trajtok_config.num_trajectories == config.trajtok_config.num_trajectories
    else:
        assert loaded.trajtok_config is None
    # The vision sub-config alone loads from the CLIP model's folder (base_config_key), as CLIPVisionConfig does.
    vision = TrajViT2VisionConfig.from_pretrained(tmp_path)
    assert _without_path(vision.to_dict()) == _without_path(config.vision_config.to_dict())


def _without_path(config_dict):
    return {k: v for k, v in config_dict.items() if k != "_name_or_path"}


def test_config_shortcuts():
    config = TrajViT2Config(vision_tokenizer="vit3d", vision_config={"hidden_size": 64, "num_attention_heads": 4})
    assert config.vision_tokenizer == "vit3d" and config.vision_config.hidden_size == 64
    config = TrajViT2Config(trajtok_config=tiny_trajtok_config(num_trajectories=16).to_dict())
    assert config.trajtok_config.num_trajectories == 16


@pytest.mark.parametrize(
    "config_class, key, hint",
    [
        (TrajViT2Config, "projection_dimm", "did you mean 'projection_dim'"),
        (TrajViT2VisionConfig, "attend_to_inactive_token", "did you mean 'attend_to_inactive_tokens'"),
        # transformers' eager-vs-SDPA tests set this attribute on every config: it must survive save -> reload.
        (TrajViT2VisionConfig, "layer_norm_epsilon", "did you mean 'layer_norm_eps'"),
    ],
)
def test_unknown_config_keys_warn_and_stay_loadable(config_class, key, hint, caplog, tmp_path):
    """transformers' convention: an unknown key is kept (a saved config with extras reloads) and a warning names the
    closest field, so a misspelt hyper-parameter does not leave the default in force without a word."""
    kwargs = {"vision_tokenizer": "vit3d"} if config_class is TrajViT2VisionConfig else {}
    with caplog.at_level("WARNING"):
        config = config_class(**kwargs, **{key: 0.5})
    assert any(key in record.getMessage() and hint in record.getMessage() for record in caplog.records)
    config.save_pretrained(tmp_path)
    assert getattr(config_class.from_pretrained(tmp_path), key) == 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"vision_config": {"vision_tokenizer": "patches"}}, "vision_tokenizer"),
        ({"vision_config": {"hidden_size": 30}}, "divisible"),
        ({"vision_config": {"position_embedding_type": "rope"}}, "position_embedding_type"),
        ({"vision_config": {"hidden_dropout_prob": 1.5}}, "hidden_dropout_prob"),
        ({"vision_config": {"image_size": 100}}, "patch_size"),
        ({"projection_dim": 0}, "projection_dim"),
        ({"segmentation_loss_weight": -1.0}, "segmentation_loss_weight"),
        ({"text_pooling": "max"}, "text_pooling"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrajViT2Config(**kwargs)


def test_auto_classes_build_the_right_models():
    assert type(AutoModel.from_config(tiny_trajvit2_config())) is TrajViT2Model
    assert type(AutoModel.from_config(tiny_trajvit2_vision_config("vit3d"))) is TrajViT2VisionModel


# ------------------------------------------------------------------------------------------------------ vision tower
def test_vision_output_fields_and_compaction():
    model = tiny_trajvit2_vision_model(tokenizer_overrides=SPARSE)
    out = model(video_batch(3, 2, size=32, seed=1))
    counts = out.num_trajectories
    assert len(set(counts.tolist())) > 1 and counts.max() < 32, "test needs videos with different, partial counts"
    length = int(counts.max())
    assert out.last_hidden_state.shape == (3, 1 + length, 32)
    assert out.pooler_output.shape == (3, 32)
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, 0])
    assert out.attention_mask.shape == (3, 1 + length) and out.attention_mask[:, 0].all()
    assert torch.equal(out.attention_mask[:, 1:].sum(1), counts)
    # Each kept position points at an active slot, in the original order; padded positions are zeros.
    for b in range(3):
        kept = out.token_indices[b][out.attention_mask[b, 1:]]
        assert torch.equal(kept, torch.nonzero(out.trajectory_mask[b]).flatten())
        assert (out.last_hidden_state[b][~out.attention_mask[b]] == 0).all()
    assert out.assignment_logits.shape == (3, 2, 8, 8, 32) and out.trajectory_ids.shape == (3, 2, 8, 8)


def test_encoder_is_transformers_vit_layers_with_cls_and_final_norm():
    model = tiny_trajvit2_vision_model()
    vision = model.vision_model
    assert len(vision.layers) == 2 and all(type(layer) is ViTLayer for layer in vision.layers)
    assert vision.cls_token.shape == (1, 1, 32)
    assert vision.post_layernorm.eps == 1e-5
    assert isinstance(vision.input_projection, torch.nn.Identity)  # tokenizer width == encoder width
    assert not any("position" in name for name, _ in vision.named_parameters())  # trajectory tokens are a set


@pytest.mark.parametrize("compact", [True, False])
def test_inactive_tokens_have_no_effect_at_all(compact):
    """Appending inactive slots with garbage values (huge, inf, NaN) changes nothing."""
    model = tiny_trajvit2_vision_model(compact_tokens=compact)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 5, 32, generator=generator)
    mask = torch.tensor([[True, True, False, True, True], [True, False, False, True, False]])
    base = model.vision_model.encode_tokens(tokens, mask)
    garbage = torch.randn(2, 4, 32, generator=generator) * 1e6
    garbage[0, 0, 0], garbage[1, 1, 3] = float("inf"), float("nan")
    tokens_more = torch.cat((tokens, garbage), dim=1)
    tokens_more[~torch.cat((mask, torch.zeros(2, 4, dtype=torch.bool)), 1)] = float("nan")  # inactive old slots too
    mask_more = torch.cat((mask, torch.zeros(2, 4, dtype=torch.bool)), dim=1)
    more = model.vision_model.encode_tokens(tokens_more, mask_more)
    # bound: |hidden| (>= 1), the encoder over <= 10 tokens, fp32 eps; the longer padded sequence blocks differently.
    assert_close_within_bound(more.pooler_output, base.pooler_output, _encoder_terms(10))
    assert torch.isfinite(more.last_hidden_state).all()


def test_cls_output_is_invariant_to_the_order_of_the_token_set():
    model = tiny_trajvit2_vision_model()
    tokens = torch.randn(1, 6, 32)
    mask = torch.tensor([[True, False, True, True, False, True]])
    perm = torch.tensor([5, 2, 4, 0, 3, 1])
    a = model.vision_model.encode_tokens(tokens, mask).pooler_output
    b = model.vision_model.encode_tokens(tokens[:, perm], mask[:, perm]).pooler_output
    assert_close_within_bound(a, b, _encoder_terms(7))  # bound: |hidden| (>= 1), the encoder over 7 tokens, fp32 eps


def test_compaction_equals_keeping_all_slots_under_the_padding_mask():
    compact = tiny_trajvit2_vision_model(tokenizer_overrides=SPARSE)
    padded = TrajViT2VisionModel(tiny_trajvit2_vision_config(tokenizer_overrides=SPARSE, compact_tokens=False)).eval()
    padded.load_state_dict(compact.state_dict())
    videos = video_batch(3, 2, size=32, seed=1)
    a, b = compact(videos), padded(videos)
    assert a.last_hidden_state.shape[1] < b.last_hidden_state.shape[1] == 1 + 32
    # bound: |hidden| (>= 1), the encoder over 33 tokens, fp32 eps (the tokenizer runs the same operations in both).
    assert_close_within_bound(a.pooler_output, b.pooler_output, _encoder_terms(33))


def test_sdpa_and_eager_attention_agree_under_the_padding_mask():
    model = tiny_trajvit2_vision_model(tokenizer_overrides=SPARSE)
    videos = video_batch(3, 2, size=32, seed=1)
    sdpa = model(videos)
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    eager = model(videos)
    # bound: |hidden| (>= 1), the whole tower (its Perceivers switch kernels too), fp32 eps; hard ids may flip only
    # at a float tie of the assignment logits.
    logit_bound = float_error_bound(max(sdpa.assignment_logits.abs().max().item(), 1.0), VIDEO_TERMS)
    assert_ids_equal_up_to_ties(eager.trajectory_ids, sdpa.trajectory_ids, sdpa.assignment_logits, logit_bound)
    assert_close_within_bound(eager.pooler_output, sdpa.pooler_output, VIDEO_TERMS)


def test_release_option_attends_to_inactive_tokens():
    model = tiny_trajvit2_vision_model(attend_to_inactive_tokens=True)
    tokens = torch.randn(1, 5, 32)
    mask = torch.tensor([[True, True, False, True, False]])
    out = model.vision_model.encode_tokens(tokens, mask)
    assert out.last_hidden_state.shape == (1, 6, 32) and out.attention_mask.all()
    changed = tokens.clone()
    changed[0, 2] = torch.randn(32)  # an inactive slot (a constant shift would vanish in the LayerNorm)
    difference = model.vision_model.encode_tokens(changed, mask).pooler_output - out.pooler_output
    assert difference.abs().max() > float_error_bound(max(out.pooler_output.abs().max().item(), 1.0), _encoder_terms(6))


def test_tokens_per_trajectory_and_token_width_projection():
    model = tiny_trajvit2_vision_model(tokenizer_overrides={"output_size": 24})
    assert isinstance(model.vision_model.input_projection, torch.nn.Linear)
    out = model(video_batch(1, 2, size=32), tokens_per_trajectory=2)
    assert out.trajectory_mask.shape == (1, 2 * 8) and out.pooler_output.shape == (1, 32)
    assert out.attention_mask[0, 1:].sum() == 2 * out.num_trajectories[0]


def test_output_hidden_states_and_tuple_output():
    model = tiny_trajvit2_vision_model()
    out = model(video_batch(1, 2, size=32), output_hidden_states=True)
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == out.last_hidden_state.shape
    as_tuple = model(video_batch(1, 2, size=32), return_dict=False)
    assert torch.equal(as_tuple[0], out.last_hidden_state)  # the same forward again: bit-identical


def test_vision_model_loads_the_vision_tower_of_a_saved_clip_model(tmp_path):
    clip = tiny_trajvit2_model()
    clip.save_pretrained(tmp_path)
    vision = TrajViT2VisionModel.from_pretrained(tmp_path).eval()
    videos = video_batch(2, 2, size=32)
    # bound: |hidden| (>= 1), the vision tower, fp32 eps: reloaded weights may sit at other alignments (other kernels).
    assert_close_within_bound(vision(videos).pooler_output, clip.vision_model(videos).pooler_output, VIDEO_TERMS)


# -------------------------------------------------------------------------------------------------------- CLIP model
def _inputs(batch=2, frames=2, size=32, seed=0):
    return {**text_batch(batch, seed=seed), "pixel_values_videos": video_batch(batch, frames, size=size, seed=seed)}


@pytest.mark.parametrize("vision_tokenizer", ["trajtok", "vit3d"])
def test_clip_outputs_embeddings_and_similarities(vision_tokenizer):
    model = tiny_trajvit2_model(vision_tokenizer)
    out = model(**_inputs(3))
    assert isinstance(out, TrajViT2Output) and out.loss is None
    assert out.video_embeds.shape == out.text_embeds.shape == (3, 16)
    # bound: unit vectors, two L2 norms of 16 terms and a division, fp32 eps.
    assert_close_within_bound(out.video_embeds.norm(dim=-1), torch.ones(3), 2 * 16 + 1, magnitude=1.0)
    assert_close_within_bound(out.text_embeds.norm(dim=-1), torch.ones(3), 2 * 16 + 1, magnitude=1.0)
    assert torch.equal(out.logits_per_text, out.logits_per_video.T)  # one is the other's transpose
    scale = model.logit_scale.exp()
    expected = scale * out.video_embeds @ out.text_embeds.T
    # bound: |logit| <= the scale, a dot product of 16 terms and the scaling, fp32 eps (other operand order).
    assert_close_within_bound(out.logits_per_video, expected, 16 + 1, magnitude=scale.item())
    # The float32 parameter is the init value rounded once.
    init = math.log(1 / 0.07)
    assert model.logit_scale.item() == pytest.approx(init, rel=0, abs=float_error_bound(init, 1))


def test_get_features_return_projected_unnormalised_embeddings():
    model = tiny_trajvit2_model()
    inputs = _inputs(2)
    out = model(**inputs)
    video = model.get_video_features(inputs["pixel_values_videos"]).pooler_output
    text = model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output
    assert video.shape == text.shape == (2, 16)
    # The same towers and projections on the same inputs, then the same normalisation: bit-identical.
    assert torch.equal(F.normalize(video, dim=-1), out.video_embeds)
    assert torch.equal(F.normalize(text, dim=-1), out.text_embeds)
    # Text pooling = the [CLS] hidden state, no pooler (release).
    bert = model.text_model(**text_batch(2, seed=0))
    assert bert.pooler_output is None
    assert torch.equal(model.text_projection(bert.last_hidden_state[:, 0]), text)


def test_images_are_one_frame_videos():
    model = tiny_trajvit2_model()
    images = video_batch(2, 1, size=32)[:, 0]
    a = model.get_image_features(images).pooler_output
    b = model.get_video_features(images.unsqueeze(1)).pooler_output
    assert torch.equal(a, b)  # an image is passed on as a 1-frame video: the same operations
    with pytest.raises(ValueError, match="pixel_values"):
        model.get_image_features(video_batch(1, 1, size=32))


def test_retrieval_with_different_numbers_of_texts_and_videos():
    model = tiny_trajvit2_model()
    out = model(**text_batch(3), pixel_values_videos=video_batch(2, 2, size=32))
    assert out.logits_per_video.shape == (2, 3) and out.logits_per_text.shape == (3, 2)


def test_contrastive_loss_is_symmetric_infonce_and_tuple_output():
    model = tiny_trajvit2_model()
    inputs = _inputs(3)
    out = model(**inputs, return_loss=True)
    labels = torch.arange(3)
    expected = 0.5 * (F.cross_entropy(out.logits_per_video, labels) + F.cross_entropy(out.logits_per_text, labels))
    # bound: |logit| <= the scale, the loss's reductions, fp32 eps (the loss recomputes the logits in another order).
    scale = model.logit_scale.exp().item()
    assert_close_within_bound(out.contrastive_loss, expected, _clip_loss_terms(3), magnitude=scale)
    assert torch.equal(out.loss, out.contrastive_loss)  # weight 1.0
    assert out.segmentation_loss is None
    as_tuple = model(**inputs, return_loss=True, return_dict=False)
    assert torch.equal(as_tuple[0], out.loss)  # the same forward again: bit-identical


def test_loss_decreases_when_overfitting_four_pairs():
    # At BERT's init (std 0.02) the [CLS] states of a tiny random BERT are nearly identical for all captions
    # (cos 0.98-1.0), and InfoNCE then first collapses the videos too (loss -> ln 4) before the pairs separate;
    # a wider text init without dropout makes the captions distinct from step 0, so 30 steps show real fitting.
    torch.manual_seed(0)
    text = {"initializer_range": 0.2, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    model = TrajViT2Model(tiny_trajvit2_config(text_overrides=text)).train()
    inputs = _inputs(4, frames=2, size=32, seed=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss = model(**inputs, return_loss=True, tokens_per_trajectory=1).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert max(losses[-5:]) < 0.1 * losses[0] and max(losses[-5:]) < 0.5 * math.log(4), losses


def _grad_norm(module):
    grads = [p.grad.norm() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(grads).sum()) if grads else 0.0


def test_contrastive_gradients_reach_the_refinement_path_and_the_text_tower():
    model = tiny_trajvit2_model().train()
    model(**_inputs(3), return_loss=True, tokens_per_trajectory=1).loss.backward()
    tokenizer = model.vision_model.tokenizer
    for name, module in [
        ("refinement_perceiver", tokenizer.refinement_perceiver),
        ("output_projection", tokenizer.output_projection),
        ("backbone (through the refinement keys/values)", tokenizer.feature_extractor),
        ("vision encoder", model.vision_model.layers),
        ("text embeddings", model.text_model.embeddings),
        ("text encoder", model.text_model.encoder),
        ("projections", model.text_projection),
    ]:
        assert _grad_norm(module) > 0, name
    assert model.logit_scale.grad is not None and model.logit_scale.grad != 0


def _labels(batch, frames, grid, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (batch, frames, grid, grid), generator=generator)
    labels[:, :, :2] = -100
    return labels


def test_segmentation_loss_is_added_with_its_weight():
    model = tiny_trajvit2_model(segmentation_loss_weight=0.5, contrastive_loss_weight=2.0)
    inputs = _inputs(2)
    labels = _labels(2, 2, 8)
    out = model(**inputs, segmentation_labels=labels)  # labels imply return_loss
    expected_seg = trajectory_segmentation_loss(out.vision_model_output.assignment_logits, labels)
    assert torch.equal(out.segmentation_loss, expected_seg)  # the same function on the same logits
    assert torch.equal(out.loss, 2.0 * out.contrastive_loss + 0.5 * out.segmentation_loss)  # the same formula


def test_segmentation_loss_does_not_reach_the_query_perceivers_input_features():
    """Stop-gradient (paper Sec. 3): the gradient of the segmentation loss w.r.t. the features F equals the gradient
    through the pixel head alone (queries held fixed), i.e. nothing flows back through the query Perceiver's input."""

    def gradients(detach_features):
        torch.manual_seed(0)
        model = tiny_trajvit2_model(tokenizer_overrides={"detach_features": detach_features}).train()
        tokenizer = model.vision_model.tokenizer
        captured = {}
        tokenizer.feature_extractor.register_forward_hook(lambda m, i, o: captured.setdefault("features", o))
        tokenizer.query_perceiver.register_forward_hook(lambda m, i, o: captured.setdefault("queries", o))
        out = model(**_inputs(2), segmentation_labels=_labels(2, 2, 8), tokens_per_trajectory=1)
        features = captured["features"]
        total = torch.autograd.grad(out.segmentation_loss, features, retain_graph=True)[0]
        # The same loss with the queries cut from the graph: only the pixel-head path remains.
        flat = features.reshape(2, -1, features.shape[-1])
        scale = (F.softplus(tokenizer.logit_scale) + 1.0).clamp(max=tokenizer.config.logit_scale_max)
        q = F.normalize(tokenizer.query_head(captured["queries"].detach()), dim=-1)
        p = F.normalize(tokenizer.pixel_head(flat), dim=-1)
        logits = (torch.einsum("bpe,bke->bpk", p, q) * scale).reshape(out.vision_model_output.assignment_logits.shape)
        # bound: |logit| (>= 1), the heads' reductions (HEAD_TERMS), fp32 eps: the heads rewritten here.
        assert_close_within_bound(logits, out.vision_model_output.assignment_logits, HEAD_TERMS)
        pixel_path = torch.autograd.grad(trajectory_segmentation_loss(logits, _labels(2, 2, 8)), features)[0]
        query_params = [p for p in tokenizer.query_perceiver.parameters()]
        query_grads = torch.autograd.grad(out.segmentation_loss, query_params, allow_unused=True)
        return total, pixel_path, query_grads

    def bound(gradient):
        # |gradient| <= its max, the backward of the loss (32 slots, 2 × the 256 labelled pixels) and of the heads.
        return float_error_bound(gradient.abs().max().item(), 32 + 2 * 256 + HEAD_TERMS)

    total, pixel_path, query_grads = gradients(detach_features=True)
    torch.testing.assert_close(total, pixel_path, atol=bound(pixel_path), rtol=0)
    assert any(g is not None and g.abs().sum() > 0 for g in query_grads), "the queries themselves must still learn"
    # Control: without the stop-gradient the query path does reach the features.
    total, pixel_path, _ = gradients(detach_features=False)
    assert (total - pixel_path).abs().max() > bound(pixel_path)


def test_segmentation_label_errors():
    model = tiny_trajvit2_model()
    inputs = _inputs(2)
    with pytest.raises(ValueError, match=r"segmentation_labels must have shape \(B, T, h, w\) = \(2, 2, 8, 8\)"):
        model(**inputs, segmentation_labels=_labels(2, 2, 7))
    with pytest.raises(ValueError, match="integer"):
        model(**inputs, segmentation_labels=_labels(2, 2, 8).float())
    with pytest.raises(ValueError, match=r"\(2, 2, h, w\)"):
        model(**inputs, segmentation_labels=_labels(1, 2, 8))
    with pytest.raises(ValueError, match="return_loss=False"):
        model(**inputs, segmentation_labels=_labels(2, 2, 8), return_loss=False)
    with pytest.raises(ValueError, match="vision_tokenizer"):
        tiny_trajvit2_model("vit3d")(**inputs, segmentation_labels=_labels(2, 2, 8))


def test_bad_text_inputs():
    model = tiny_trajvit2_model()
    videos = video_batch(1, 2, size=32)
    with pytest.raises(ValueError, match="input_ids"):
        model(input_ids=torch.ones(5, dtype=torch.long), pixel_values_videos=videos)
    with pytest.raises(ValueError, match="attention_mask"):
        model(input_ids=torch.ones(1, 5, dtype=torch.long), attention_mask=torch.ones(1, 4), pixel_values_videos=videos)


# --------------------------------------------------------------------------------------------------- text tower
def test_from_text_pretrained_and_loading_into_text_model(tmp_path):
    torch.manual_seed(1)
    bert = BertModel(BertConfig(**TINY_BERT)).eval()  # with a pooler: dropped, text pooling is the [CLS] state
    bert.save_pretrained(tmp_path / "bert")
    model = TrajViT2Model.from_text_pretrained(
        tmp_path / "bert", config=tiny_trajvit2_config(), text_model_kwargs={}
    ).eval()
    assert model.text_model.pooler is None
    assert torch.equal(model.text_model.embeddings.word_embeddings.weight, bert.embeddings.word_embeddings.weight)
    inputs = text_batch(2)
    # bound: |hidden| (>= 1), the text tower, fp32 eps: loaded weights may sit at other alignments (other kernels).
    expected = bert(**inputs).last_hidden_state
    assert_close_within_bound(model.text_model(**inputs).last_hidden_state, expected, TEXT_TERMS)
    # The other way: load the weights into .text_model of an existing model.
    other = tiny_trajvit2_model()
    result = other.text_model.load_state_dict(bert.state_dict(), strict=False)
    assert not result.missing_keys and all(k.startswith("pooler.") for k in result.unexpected_keys)
    assert_close_within_bound(other.text_model(**inputs).last_hidden_state, expected, TEXT_TERMS)


@pytest.mark.parametrize("pooling", ["pooler", "mean"])
def test_other_text_poolings(pooling):
    model = tiny_trajvit2_model(text_pooling=pooling)
    assert (model.text_model.pooler is not None) == (pooling == "pooler")
    inputs = text_batch(2)
    text = model.get_text_features(**inputs).pooler_output
    hidden = model.text_model(**inputs)
    if pooling == "mean":
        weights = inputs["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden.last_hidden_state * weights).sum(1) / weights.sum(1)
    else:
        pooled = hidden.pooler_output
    # bound: |value| (>= 1), the text tower and the pooling over 7 tokens, fp32 eps (the mean written here).
    assert_close_within_bound(text, model.text_projection(pooled), TEXT_TERMS + 7)


def test_activation_checkpointing_gives_the_same_gradients():
    model = tiny_trajvit2_model().train()
    inputs = _inputs(2)

    def encoder_grad():
        torch.manual_seed(0)  # same dropout masks (checkpointing replays the RNG state when it recomputes)
        model.zero_grad()
        model(**inputs, return_loss=True, tokens_per_trajectory=1).loss.backward()
        return model.vision_model.layers[0].mlp.fc1.weight.grad.clone()

    plain = encoder_grad()
    model.activation_checkpointing_enable()
    assert (
        model.vision_model.layers[0].gradient_checkpointing and model.text_model.encoder.layer[0].gradient_checkpointing
    )
    assert torch.equal(encoder_grad(), plain)  # the recomputed forward runs the same operations: bit-identical


# ------------------------------------------------------------------------------- output flags (CLIP/SigLIP style)
def _vision_output(kind, model, inputs, **flags):
    """The vision tower's output of a TrajViT2VisionModel or a TrajViT2Model (its vision_model_output)."""
    if kind == "vision":
        return model(inputs["pixel_values_videos"], **flags)
    return model(**inputs, **flags).vision_model_output


def _flag_model(kind, tokenizer, attn_implementation="eager"):
    build = tiny_trajvit2_vision_model if kind == "vision" else tiny_trajvit2_model
    model = build(tokenizer, tokenizer_overrides=SPARSE) if tokenizer == "trajtok" else build(tokenizer)
    if attn_implementation != model.config._attn_implementation:
        model.set_attn_implementation(attn_implementation)
    return model


@functools.cache
def _shared_flag_model(kind, tokenizer, attn_implementation="eager"):
    """One model per kind for the tests that only read it (building them dominates these tests' time)."""
    return _flag_model(kind, tokenizer, attn_implementation)


FLAG_MODELS = [("vision", "trajtok"), ("vision", "vit3d"), ("clip", "trajtok"), ("clip", "vit3d")]


@pytest.mark.parametrize("kind, tokenizer", FLAG_MODELS)
@pytest.mark.parametrize("from_config", [False, True], ids=["argument", "config"])
@torch.no_grad()
def test_output_attentions(kind, tokenizer, from_config):
    """One (B, heads, S, S) map per encoder layer (S = the encoder's sequence, [CLS] included); rows are
    distributions, and keys that are padding (inactive trajectory slots) get weight exactly 0."""
    model = _flag_model(kind, tokenizer) if from_config else _shared_flag_model(kind, tokenizer)
    inputs = _inputs(3, size=32, seed=1)
    if from_config:
        model.config.output_attentions = True
        out = _vision_output(kind, model, inputs)
    else:
        out = _vision_output(kind, model, inputs, output_attentions=True)
    seq = out.last_hidden_state.shape[1]
    assert len(out.attentions) == 2 and all(a.shape == (3, 4, seq, seq) for a in out.attentions)
    for attention in out.attentions:
        # bound: softmax rows of seq terms of size <= 1 sum to 1 within 1 × seq × fp32 eps.
        assert_close_within_bound(attention.sum(-1), torch.ones(3, 4, seq), seq, magnitude=1.0)
        assert (attention.transpose(1, 3)[~out.attention_mask] == 0).all()
    if tokenizer == "trajtok":
        assert not out.attention_mask.all(), "test needs padded positions"
    if kind == "clip":
        assert len(model(**inputs, output_attentions=True).text_model_output.attentions) == 2


@pytest.mark.parametrize("kind, tokenizer", FLAG_MODELS)
@torch.no_grad()
def test_output_attentions_under_sdpa_warn_and_return_none(kind, tokenizer, caplog):
    """transformers' convention: SDPA computes no attention weights; a warning says so and the tuple is empty."""
    model = _shared_flag_model(kind, tokenizer, attn_implementation="sdpa")
    logging.Logger.warning_once.cache_clear()  # transformers' warning_once: each message is logged once per process
    with caplog.at_level("WARNING"):
        out = _vision_output(kind, model, _inputs(2, size=32), output_attentions=True)
    assert out.attentions == ()
    assert any("attn_implementation='eager'" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind, tokenizer", FLAG_MODELS)
@pytest.mark.parametrize(
    "selection, kept",
    [(True, (0, 1, 2)), ([0, -1], (0, 2)), (-2, (1,)), ([1, 7], (1,)), (False, None)],
)
@torch.no_grad()
def test_output_hidden_states_all_or_selected_layers(kind, tokenizer, selection, kept):
    """transformers' convention: num_hidden_layers + 1 entries (the encoder input, then each layer's output before the
    final LayerNorm); with indices, only those are kept and the others are None (negative indices count from the
    end, out-of-range ones select nothing)."""
    model = _shared_flag_model(kind, tokenizer)
    inputs = _inputs(2, size=32, seed=1)
    out = _vision_output(kind, model, inputs, output_hidden_states=selection)
    if kept is None:
        assert out.hidden_states is None
        return
    assert len(out.hidden_states) == 3
    assert [i for i, h in enumerate(out.hidden_states) if h is not None] == list(kept)
    reference = _vision_output(kind, model, inputs, output_hidden_states=True).hidden_states
    for index in kept:
        torch.testing.assert_close(out.hidden_states[index], reference[index], atol=0, rtol=0)
    last = model.vision_model.post_layernorm(reference[-1]).masked_fill(~out.attention_mask.unsqueeze(-1), 0.0)
    torch.testing.assert_close(last, out.last_hidden_state, atol=0, rtol=0)
    if kind == "clip" and selection is True:
        assert len(model(**inputs, output_hidden_states=True).text_model_output.hidden_states) == 3


@pytest.mark.parametrize("selection", ["all", 1.5, [0, "1"], [True]])
def test_output_hidden_states_of_the_wrong_type(selection):
    with pytest.raises(TypeError, match="output_hidden_states must be a bool, an int or a list of ints"):
        tiny_trajvit2_vision_model("vit3d")(video_batch(1, 2, size=32), output_hidden_states=selection)


def _features(model, method, inputs, **kwargs):
    if method == "text":
        return model.get_text_features(inputs["input_ids"], inputs["attention_mask"], **kwargs)
    if method == "video":
        return model.get_video_features(inputs["pixel_values_videos"], **kwargs)
    return model.get_image_features(inputs["pixel_values_videos"][:, 0], **kwargs)


@pytest.mark.parametrize("method", ["text", "video", "image"])
@pytest.mark.parametrize("tokenizer", ["trajtok", "vit3d"])
@torch.no_grad()
def test_get_features_honour_return_dict_and_output_flags(method, tokenizer):
    """As CLIP/SigLIP's get_*_features: an output object (a tuple with return_dict=False, or when the config says
    so) whose pooler_output is the projected embedding; output_attentions / output_hidden_states reach the tower."""
    model = tiny_trajvit2_model(tokenizer)
    model.set_attn_implementation("eager")
    inputs = _inputs(2)
    out = _features(model, method, inputs, output_attentions=True, output_hidden_states=True)
    assert out.pooler_output.shape == (2, 16)
    assert len(out.attentions) == 2 and len(out.hidden_states) == 3
    plain = _features(model, method, inputs)
    assert plain.attentions is None and plain.hidden_states is None
    as_tuple = _features(model, method, inputs, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], plain.last_hidden_state, atol=0, rtol=0)
    torch.testing.assert_close(as_tuple[1], plain.pooler_output, atol=0, rtol=0)
    model.config.return_dict = False
    assert isinstance(_features(model, method, inputs), tuple)


# ---------------------------------------------------------------------------------------- bad values, entry points
@pytest.mark.parametrize("method", ["video", "image"])
@pytest.mark.parametrize("tokenizer", ["trajtok", "vit3d"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 1e30])
def test_get_video_and_image_features_reject_non_normalised_pixels(method, tokenizer, value):
    """±inf, NaN and magnitudes no normalised frame reaches (1e30 overflows the LayerNorms to NaN) are named at the
    public boundary for both tokenizers, before any layer runs."""
    model = tiny_trajvit2_model(tokenizer)
    videos = video_batch(1, 1, size=32)
    videos[0, 0, 1, 2, 3] = value
    name = "pixel_values_videos" if method == "video" else "pixel_values"
    with pytest.raises(ValueError, match=rf"{name} must hold finite frames normalised by the video processor"):
        _features(model, method, {"pixel_values_videos": videos})


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e30])
def test_vit3d_vision_model_rejects_non_normalised_pixels(value):
    videos = video_batch(1, 2, size=32)
    videos[0, 1, 0, 5, 5] = value
    with pytest.raises(ValueError, match="pixel_values_videos must hold finite frames"):
        tiny_trajvit2_vision_model("vit3d")(videos)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"input_ids": (2, 100)}, r"input_ids must be in \[0, 100\)"),
        ({"input_ids": (2, -5)}, r"input_ids must be in \[0, 100\)"),
        ({"attention_mask": torch.zeros(2, 7, dtype=torch.long)}, r"masks every token of text\(s\) \[0, 1\]"),
        ({"position_ids": torch.full((2, 7), 64)}, r"position_ids must be in \[0, 64\)"),
    ],
)
def test_get_text_features_rejects_bad_text(changes, match):
    inputs = text_batch(2)
    for name, change in changes.items():
        if isinstance(change, torch.Tensor):
            inputs[name] = change
        else:
            inputs[name][1, change[0]] = change[1]
    with pytest.raises(ValueError, match=match):
        tiny_trajvit2_model().get_text_features(**inputs)


def test_text_length_limit_follows_the_position_table():
    """A text as long as the table runs; one token more is named (BERT would fail deep in its embeddings)."""
    model = tiny_trajvit2_model()
    assert model.get_text_features(**text_batch(1, length=64)).pooler_output.shape == (1, 16)
    with pytest.raises(ValueError, match="input_ids has 65 tokens per text but the text model's position table holds"):
        model.get_text_features(**text_batch(1, length=65))


# ----------------------------------------------------------------------------------------------- half precision
def _processor_pixels(frames=2, size=32, batch=2):
    """The fp32 `pixel_values_videos` of the video processor for random uint8 clips."""
    from trajtok_hf import TrajTokVideoProcessor

    generator = torch.Generator().manual_seed(0)
    shape = (frames, size, size, 3)
    clips = [torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8) for _ in range(batch)]
    processor = TrajTokVideoProcessor(num_frames=frames, size={"height": size, "width": size})
    pixels = processor(videos=[c.numpy() for c in clips], return_tensors="pt")["pixel_values_videos"]
    assert pixels.dtype == torch.float32
    return pixels


def _half_supported(dtype) -> bool:
    try:
        torch.nn.functional.layer_norm(torch.ones(2, 4, dtype=dtype), (4,))
        torch.nn.functional.conv3d(torch.ones(1, 1, 2, 2, 2, dtype=dtype), torch.ones(1, 1, 1, 1, 1, dtype=dtype))
        return True
    except RuntimeError:
        return False


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind, tokenizer", FLAG_MODELS)
@torch.no_grad()
def test_half_precision_runs_straight_from_the_processor(kind, tokenizer, dtype):
    """A bf16/fp16 model takes the processor's fp32 pixels (cast at the top-level forward, as transformers' models
    do) and gives what the fp32 model gives, within the rounding error of the half dtype."""
    if not _half_supported(dtype):
        pytest.skip(f"this CPU build of torch has no {dtype} kernels for LayerNorm / Conv3d")
    pixels = _processor_pixels()
    fp32 = _shared_flag_model(kind, tokenizer, attn_implementation="sdpa")
    half = copy.deepcopy(fp32).to(dtype)
    if kind == "vision":
        expected, out = fp32(pixels), half(pixels)
        expected_embeds, embeds = F.normalize(expected.pooler_output, dim=-1), F.normalize(out.pooler_output, dim=-1)
        vision, reference = out, expected
    else:
        inputs = {**text_batch(2), "pixel_values_videos": pixels}
        expected, out = fp32(**inputs), half(**inputs)
        expected_embeds, embeds = expected.video_embeds, out.video_embeds
        vision, reference = out.vision_model_output, expected.vision_model_output
        assert out.text_embeds.dtype == dtype
        torch.testing.assert_close(out.text_embeds.float(), expected.text_embeds, atol=_half_bound(dtype), rtol=0)
        assert half(**inputs, return_loss=True).loss.isfinite()
    assert embeds.dtype == dtype and torch.isfinite(embeds).all()
    if tokenizer == "trajtok" and not torch.equal(vision.trajectory_ids, reference.trajectory_ids):
        # Hard ids may flip only at a near-tie of the logits (scale × cosines of normalised heads: the same
        # one-reduction bound as the embeddings); a flip gives a different token set, nothing more to compare.
        logits = reference.assignment_logits
        bound = float_error_bound(logits.abs().max().item(), 32, dtype)
        assert_ids_equal_up_to_ties(vision.trajectory_ids, reference.trajectory_ids, logits, bound)
        return
    torch.testing.assert_close(embeds.float(), expected_embeds, atol=_half_bound(dtype), rtol=0)


def _half_bound(dtype) -> float:
    # Unit-norm embeddings (magnitude 1) whose last reduction is the width-32 encoder/projection; each LayerNorm
    # renormalises what earlier layers rounded, so one width-32 reduction bounds the error: 1 × 32 × eps(dtype).
    return float_error_bound(1.0, 32, dtype)
