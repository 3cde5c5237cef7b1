"""TrajAdapter (paper Sec. 5): frozen parts, token-grid resizing, hard-mask pooling, baselines, loading, example."""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from testers import (
    TINY_VIDEOMAE,
    assert_close_within_bound,
    float_error_bound,
    tiny_trajadapter_config,
    tiny_trajadapter_model,
    tiny_trajadapter_terms,
    tiny_trajtok_config,
    transformer_layer_terms,
    video_batch,
)
from transformers import AutoConfig, AutoModel, AutoModelForVideoClassification, AutoVideoProcessor

from trajtok_hf import TrajAdapterConfig, TrajAdapterForVideoClassification, TrajTokModel
from trajtok_hf.models.configuration_trajadapter import BACKBONE_TOKEN_GRIDS, backbone_token_grid
from trajtok_hf.models.modeling_trajadapter import (
    TrajAdapterAttentiveProbe,
    backbone_patch_features,
    resize_assignment_logits,
    token_grid_trajectory_ids,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Reduction lengths (testers.float_error_bound): the whole tiny model (testers.tiny_trajadapter_terms), the 2
# refinement Perceiver layers over the 4·4·4 backbone tokens + ≤ 2·8·4 queries, the attentive probe over ≤ 2·8·4 slots.
MODEL_TERMS = tiny_trajadapter_terms()
REFINEMENT_TERMS = 2 * transformer_layer_terms(64 + 64, 32, 128, 4)
PROBE_TERMS = transformer_layer_terms(64, 32, 128, 4)


def _videos(batch=2, frames=8, size=32, seed=0):
    return video_batch(batch, frames, size=size, seed=seed)


# ---------------------------------------------------------------------------------------------------- frozen parts
def test_frozen_parts_get_no_gradient_and_stay_bit_identical():
    model = tiny_trajadapter_model(tokens_per_trajectory=2).train()
    assert not model.backbone.training and not model.segmenter.training  # train() keeps them in eval mode
    frozen = {
        name: p.detach().clone() for name, p in model.named_parameters() if name.startswith(("backbone.", "segmenter."))
    }
    adapter = {name: p.detach().clone() for name, p in model.named_parameters() if name not in frozen}
    assert frozen and adapter and all(not p.requires_grad for m in model.frozen_modules() for p in m.parameters())
    # The optimizer is given *all* parameters (with weight decay): frozen ones must still not move.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    out = model(pixel_values_videos=_videos(), labels=torch.tensor([0, 2]))
    out.loss.backward()
    optimizer.step()
    params = dict(model.named_parameters())
    for name, before in frozen.items():
        assert params[name].grad is None, name
        assert torch.equal(params[name], before), name
    changed = [name for name, before in adapter.items() if not torch.equal(params[name], before)]
    assert set(changed) == set(adapter), set(adapter) - set(changed)
    assert {id(p) for p in model.trainable_parameters()} == {id(params[name]) for name in adapter}


def test_frozen_features_keep_no_graph_and_ignore_train_mode():
    # Dropout inside the backbone would change its features in train mode: it must stay in eval mode.
    model = tiny_trajadapter_model(backbone_overrides={"hidden_dropout_prob": 0.5}).train()
    x = _videos()
    a, b = model.get_frozen_features(x), model.get_frozen_features(x)
    for value in (a.patch_features, a.segmenter_queries):
        assert value.grad_fn is None and not value.requires_grad
    assert torch.equal(a.patch_features, b.patch_features)


def test_loading_keeps_parts_frozen(tmp_path):
    model = tiny_trajadapter_model()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForVideoClassification.from_pretrained(tmp_path)
    assert all(not p.requires_grad for m in loaded.frozen_modules() for p in m.parameters())
    assert all(p.requires_grad for p in loaded.trainable_parameters())
    loaded.train()
    assert loaded.classifier.training and not loaded.backbone.training and not loaded.segmenter.training


# ------------------------------------------------------------------------------------------------- token-grid resize
def test_resize_hand_checked_tubelet_of_two_frames():
    """T=4 frames, tubelets of 2, an 8×8 mask grid → a 2×2×2 token grid.

    Time: token step j is the mean of frames 2j, 2j+1. Space: bilinear 8→2 with align_corners=False samples source
    coordinate (i + 0.5)·4 − 0.5 = 4i + 1.5, i.e. the mean of rows {4i+1, 4i+2} × columns {4l+1, 4l+2}.
    """
    logits = torch.zeros(1, 4, 8, 8, 2)
    logits[0, :, :, :, 0] = torch.arange(4.0).view(4, 1, 1)  # channel 0 = frame index: means 0.5 and 2.5
    rows = torch.arange(8.0).view(8, 1)
    logits[0, :, :, :, 1] = (10 * rows + torch.arange(8.0)).expand(4, 8, 8)  # channel 1 = 10·row + col
    out = resize_assignment_logits(logits, (2, 2, 2), tubelet=2)
    assert out.shape == (1, 2, 2, 2, 2)
    assert out[0, :, :, :, 0].tolist() == [[[0.5, 0.5], [0.5, 0.5]], [[2.5, 2.5], [2.5, 2.5]]]
    # mean over rows {1,2} / {5,6} and columns {1,2} / {5,6} of 10·row + col: 16.5, 56.5 (+ 0 or + 4)
    expected = [[16.5, 20.5], [56.5, 60.5]]
    assert out[0, 0, :, :, 1].tolist() == expected and out[0, 1, :, :, 1].tolist() == expected

    # argmax + chunk offsets: with chunks of 2 frames the second token step lies in chunk 1 → ids + K.
    ids = token_grid_trajectory_ids(logits, (2, 2, 2), tubelet=2, chunk_size=2)
    assert ids.tolist() == [[[[1, 1], [1, 1]], [[3, 3], [3, 3]]]]
    ids = token_grid_trajectory_ids(logits, (2, 2, 2), tubelet=2, chunk_size=4)
    assert ids.tolist() == [[[[1, 1], [1, 1]], [[1, 1], [1, 1]]]]


def test_resize_a_winner_that_is_small_on_the_mask_grid():
    # Trajectory 1 owns only the 2×2 cell block the bilinear sample of token (0, 0) reads: it wins that token only.
    logits = torch.zeros(1, 2, 8, 8, 2)
    logits[..., 0] = 1.0
    logits[0, :, 1:3, 1:3, 1] = 5.0
    ids = token_grid_trajectory_ids(logits, (1, 2, 2), tubelet=2, chunk_size=16)
    assert ids.tolist() == [[[[1, 0], [0, 0]]]]
    with pytest.raises(ValueError, match="frames"):
        resize_assignment_logits(logits, (2, 2, 2), tubelet=2)


def test_model_trajectory_ids_are_the_resized_segmenter_argmax():
    model = tiny_trajadapter_model()
    x = _videos(1)
    out = model(pixel_values_videos=x)
    seg = model.segmenter(x, tokens_per_trajectory=1)
    assert seg.assignment_logits.shape[1:4] == (8, 8, 8)  # 32² → 8×8 mask grid, 8 frames (2 chunks of 4)
    expected = token_grid_trajectory_ids(seg.assignment_logits, (4, 4, 4), tubelet=2, chunk_size=4)
    assert out.trajectory_ids.shape == (1, 4, 4, 4) and torch.equal(out.trajectory_ids, expected)
    K = model.segmenter.config.num_trajectories
    assert out.trajectory_ids[:, :2].max() < K and out.trajectory_ids[:, 2:].min() >= K  # chunk-global ids
    assert out.trajectory_mask.shape == (1, 2 * K)
    assert out.num_trajectories.item() == out.trajectory_ids.unique().numel()
    active = torch.zeros(2 * K, dtype=torch.bool)
    active[out.trajectory_ids.unique()] = True
    assert torch.equal(out.trajectory_mask[0], active)


# ---------------------------------------------------------------------------------------------- backbone token grids
def _tiny_backbone(model_type, layers=1):
    common = dict(hidden_size=32, num_attention_heads=4)
    if model_type == "videomae":
        return AutoConfig.for_model(**{**TINY_VIDEOMAE, "num_frames": 4, "num_hidden_layers": layers})
    if model_type == "vjepa2":
        return AutoConfig.for_model(
            "vjepa2",
            crop_size=32,
            patch_size=8,
            frames_per_clip=4,
            tubelet_size=2,
            num_hidden_layers=layers,
            pred_hidden_size=16,
            pred_num_hidden_layers=1,
            pred_num_attention_heads=4,
            num_pooler_layers=1,
            **common,
        )
    if model_type == "timesformer":
        return AutoConfig.for_model(
            "timesformer",
            image_size=32,
            patch_size=8,
            num_frames=4,
            num_hidden_layers=layers,
            intermediate_size=64,
            **common,
        )
    if model_type == "vivit":
        return AutoConfig.for_model(
            "vivit",
            image_size=32,
            num_frames=4,
            tubelet_size=[2, 8, 8],
            num_hidden_layers=layers,
            intermediate_size=64,
            **common,
        )
    return AutoConfig.for_model(
        "videoprism_vision_model",
        image_size=32,
        num_frames=4,
        tubelet_size=[1, 8, 8],
        num_spatial_layers=layers,
        num_temporal_layers=layers,
        intermediate_size=64,
        **common,
    )


@pytest.mark.parametrize("model_type", sorted(BACKBONE_TOKEN_GRIDS))
def test_token_grid_layout_of_each_backbone(model_type):
    """With zero transformer layers each output token depends only on its own tubelet/patch: perturbing frame 2,
    patch (row 1, col 3) must change exactly the token our grid puts at (frame 2 // tubelet, 1, 3)."""
    config = _tiny_backbone(model_type, layers=0)
    grid = backbone_token_grid(config)
    backbone = AutoModel.from_config(config).eval()
    x = _videos(1, 4, seed=1)
    y = x.clone()
    y[0, 2, :, 8:16, 24:32] += 1.0
    with torch.no_grad():
        a, b = backbone_patch_features(backbone, grid, x), backbone_patch_features(backbone, grid, y)
    assert a.shape == (1, 4 // grid.tubelet, 4, 4, 32)
    # Changed = beyond the float error bound of a token (|value| >= 1, a ≤ 2×3×8×8 patch embedding and a LayerNorm).
    bound = float_error_bound(max(a.abs().max().item(), 1.0), 2 * 3 * 8 * 8 + 32)
    changed = ((a - b).abs().amax(-1) > bound).nonzero().tolist()
    assert changed == [[0, 2 // grid.tubelet, 1, 3]]


@pytest.mark.parametrize("model_type", sorted(BACKBONE_TOKEN_GRIDS))
def test_trajectory_probe_runs_on_each_backbone(model_type):
    config = TrajAdapterConfig(
        backbone_config=_tiny_backbone(model_type),
        trajtok_config=tiny_trajtok_config(),
        num_labels=2,
        num_attention_heads=4,
        subtoken_fourier_frequencies=4,
    )
    model = TrajAdapterForVideoClassification(config).eval()
    out = model(pixel_values_videos=_videos(2, 4), labels=torch.tensor([0, 1]))
    assert out.logits.shape == (2, 2) and torch.isfinite(out.loss)
    assert out.trajectory_ids.shape == (2, 4 // config.token_grid.tubelet, 4, 4)


# ----------------------------------------------------------------------------------------------------------- configs
def test_default_config_and_round_trip(tmp_path):
    config = TrajAdapterConfig(num_labels=400)
    assert config.backbone_config.model_type == "videomae" and config.backbone_hidden_size == 768
    assert config.trajtok_config.model_type == "trajtok" and config.trajtok_config.chunk_size % 2 == 0
    grid = config.token_grid
    assert (grid.tubelet, grid.patch, grid.prefix_tokens, grid.grid(16, 224, 224)) == (2, (16, 16), 0, (8, 14, 14))
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, TrajAdapterConfig) and loaded.num_labels == 400
    drop = lambda d: {k: v for k, v in d.items() if k != "_name_or_path"}  # noqa: E731
    assert drop(loaded.to_dict()) == drop(config.to_dict())
    baseline = TrajAdapterConfig(probe_type="linear")
    assert baseline.trajtok_config is None


# ------------------------------------------------------------------------------------------------------ bad configs
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backbone_config": {"model_type": "vit"}}, "backbone_config.*token grid"),
        ({"backbone_config": {"model_type": "convnext"}}, "backbone_config"),
        ({"backbone_config": {"model_type": "timesformer", "attention_type": "space_only"}}, "space_only"),
        (
            {"backbone_config": {**TINY_VIDEOMAE, "tubelet_size": 4}, "trajtok_config": {"chunk_size": 6}},
            "chunk_size",
        ),
        ({"backbone_config": TINY_VIDEOMAE, "num_attention_heads": 5}, "num_attention_heads"),
        ({"backbone_config": TINY_VIDEOMAE, "probe_type": "mlp"}, "probe_type"),
        ({"backbone_config": TINY_VIDEOMAE, "tokens_per_trajectory": 0}, "tokens_per_trajectory"),
        ({"backbone_config": TINY_VIDEOMAE, "query_init": "latent"}, "query_init"),
    ],
)
def test_bad_configs_raise_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrajAdapterConfig(**kwargs)


def test_backbone_without_token_grid_fails_at_model_construction():
    config = tiny_trajadapter_config()
    config.backbone_config = AutoConfig.for_model("vit", hidden_size=32, num_hidden_layers=1, num_attention_heads=4)
    with pytest.raises(ValueError, match="backbone_config"):
        TrajAdapterForVideoClassification(config)


@pytest.mark.parametrize(
    "extra, match",
    [
        ({"layer_norm_epsilon": 1e-5}, "layer_norm_epsilon"),  # an attribute transformers' common tests set
        ({"tokens_per_trajectroy": 2}, "tokens_per_trajectory"),  # a misspelling: warned, naming the field
        ({"my_note": "kept"}, None),  # unrelated to any field: kept without a word
    ],
)
def test_extra_config_keys_are_kept_and_reload(extra, match, tmp_path, caplog):
    """transformers keeps unknown config keys (save → reload works); ours warn when they look like a field's name."""
    with caplog.at_level("WARNING"):
        config = tiny_trajadapter_config(**extra)
    key, value = next(iter(extra.items()))
    assert getattr(config, key) == value
    assert config.tokens_per_trajectory == 1  # a misspelt key never changes the field it resembles
    if match is not None:
        assert key in caplog.text and match in caplog.text
    model = TrajAdapterForVideoClassification(config)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForVideoClassification.from_pretrained(tmp_path)
    assert getattr(loaded.config, key) == value and loaded.config.tokens_per_trajectory == 1


def _inf_at(video, value):
    video = video.clone()
    video[0, 1, 2, 3, 4] = value
    return video


@pytest.mark.parametrize(
    "probe_type, kwargs, error, match",
    [
        ("trajectory", {"segmenter_pixel_values_videos": _videos(1, 4)}, ValueError, "same videos and frames"),
        ("trajectory", {"labels": torch.tensor([3])}, ValueError, r"labels must be class indices in \[0, 3\)"),
        ("trajectory", {"labels": torch.tensor([-1])}, ValueError, r"labels must be class indices in \[0, 3\)"),
        ("attentive", {"labels": [0]}, TypeError, "labels must be a torch.Tensor"),
        ("attentive", {"labels": torch.tensor(0)}, ValueError, "labels must have the videos' batch size 1"),
        ("linear", {"segmenter_pixel_values_videos": _videos(1)}, ValueError, "no segmenter"),
        (
            "linear",
            {"pixel_values_videos": _inf_at(_videos(1), float("inf"))},
            ValueError,
            "pixel_values_videos.*finite",
        ),
        (
            "linear",
            {"pixel_values_videos": _inf_at(_videos(1), -float("inf"))},
            ValueError,
            "pixel_values_videos.*-inf",
        ),
        ("linear", {"pixel_values_videos": _inf_at(_videos(1), float("nan"))}, ValueError, "pixel_values_videos.*nan"),
        ("linear", {"pixel_values_videos": _inf_at(_videos(1), 1e30)}, ValueError, "pixel_values_videos.*1e\\+30"),
        (
            "trajectory",
            {"segmenter_pixel_values_videos": _inf_at(_videos(1), 1e30)},
            ValueError,
            "segmenter_pixel_values_videos.*finite",
        ),
        (
            "linear",
            {"pixel_values_videos": (_videos(1) * 50).to(torch.uint8)},
            ValueError,
            "pixel_values_videos.*float",
        ),
        ("linear", {"pixel_values_videos": _videos(1).numpy()}, TypeError, "pixel_values_videos.*torch.Tensor"),
        ("linear", {"pixel_values_videos": None}, ValueError, "pixel_values_videos is required"),
        (
            "linear",
            {"pixel_values_videos": None, "frozen_features": {"patch_features": torch.zeros(1, 4, 4, 4, 32)}},
            TypeError,
            "frozen_features must be the TrajAdapterFrozenFeatures",
        ),
        ("linear", {"output_attentions": "yes"}, TypeError, "output_attentions must be a bool"),
        ("linear", {"output_hidden_states": "all"}, TypeError, "output_hidden_states must be a bool, a layer index"),
        ("linear", {"output_hidden_states": [0, True]}, TypeError, "output_hidden_states"),
        ("linear", {"hard_mask_implementation": "sparse"}, ValueError, "hard_mask_implementation"),
    ],
)
def test_bad_inputs(probe_type, kwargs, error, match):
    model = tiny_trajadapter_model(probe_type)
    with pytest.raises(error, match=match):
        model(**{"pixel_values_videos": _videos(1), **kwargs})


def test_inputs_given_twice():
    model = tiny_trajadapter_model()
    with pytest.raises(ValueError, match="either"):
        model(pixel_values_videos=_videos(1), frozen_features=model.get_frozen_features(_videos(1)))


def test_large_but_finite_pixels_run():
    # Raw 0–255 frames normalised without rescaling (values up to ~1100) are wrong but finite: they run.
    model = tiny_trajadapter_model()
    out = model(pixel_values_videos=_videos(1) * 400)
    assert torch.isfinite(out.logits).all()


# --------------------------------------------------------------------------------------- hidden states, attentions
def _two_layer_model(probe_type="trajectory", **kwargs):
    return tiny_trajadapter_model(probe_type, backbone_overrides={"num_hidden_layers": 2}, **kwargs)


def test_hidden_states_are_the_backbones():
    """As transformers' video classifiers: the encoder's (here the frozen backbone's) embeddings + each layer."""
    model = _two_layer_model()
    x = _videos(2)
    out = model(pixel_values_videos=x, output_hidden_states=True)
    with torch.no_grad():
        expected = model.backbone(pixel_values=x, output_hidden_states=True).hidden_states
    assert len(out.hidden_states) == 3 and out.attentions is None
    for mine, theirs in zip(out.hidden_states, expected, strict=True):
        assert mine.shape == (2, 4 * 4 * 4, 32) and torch.equal(mine, theirs)
    assert torch.equal(out.logits, model(pixel_values_videos=x).logits)  # asking for them changes nothing


@pytest.mark.parametrize(
    "selection, present",
    [(True, [0, 1, 2]), ([0, 2], [0, 2]), ([-1], [2]), ([1], [1]), (False, None), (None, None)],
)
@pytest.mark.parametrize("through", ["argument", "config"])
def test_output_hidden_states_selection(selection, present, through):
    """A list of indices keeps those hidden states and leaves None elsewhere (transformers 5's convention)."""
    model = _two_layer_model("linear")
    x = _videos(1)
    if through == "config":
        model.config.output_hidden_states = selection if selection is not None else False
        out = model(pixel_values_videos=x)
    else:
        out = model(pixel_values_videos=x, output_hidden_states=selection)
    if present is None:
        assert out.hidden_states is None
    else:
        assert [i for i, h in enumerate(out.hidden_states) if h is not None] == present


@pytest.mark.parametrize("through", ["argument", "config"])
def test_output_attentions_with_eager_attention(through):
    model = TrajAdapterForVideoClassification._from_config(
        tiny_trajadapter_config("attentive", backbone_overrides={"num_hidden_layers": 2}), attn_implementation="eager"
    ).eval()
    assert model.backbone.config._attn_implementation == "eager"
    if through == "config":
        model.config.output_attentions = True
        out = model(pixel_values_videos=_videos(2))
    else:
        out = model(pixel_values_videos=_videos(2), output_attentions=True)
    assert len(out.attentions) == 2 and out.hidden_states is None
    for attention in out.attentions:
        assert attention.shape == (2, 4, 64, 64)  # (batch, heads, tokens, tokens)
        # bound: softmax rows of 64 terms of size <= 1 sum to 1 within 1 × 64 × fp32 eps.
        assert_close_within_bound(attention.sum(-1), torch.ones(2, 4, 64), 64, magnitude=1.0)


def test_return_dict_false_and_cached_features_keep_the_outputs():
    model = _two_layer_model()
    x = _videos(2)
    out = model(pixel_values_videos=x, output_hidden_states=True)
    as_tuple = model(pixel_values_videos=x, output_hidden_states=True, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(out.to_tuple())
    assert torch.equal(as_tuple[0], out.logits) and len(as_tuple[1]) == 3  # (logits, hidden_states, ...): no loss
    model.config.return_dict = False
    assert isinstance(model(pixel_values_videos=x), tuple)
    model.config.return_dict = True
    frozen = model.get_frozen_features(x, output_hidden_states=True)
    cached = model(frozen_features=frozen, output_hidden_states=True)
    assert all(torch.equal(a, b) for a, b in zip(cached.hidden_states, out.hidden_states, strict=True))


# -------------------------------------------------------------------------------------------------- half precision
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("probe_type", ["trajectory", "attentive", "linear"])
def test_half_precision_runs_from_float32_pixels(probe_type, dtype):
    """A model cast to bf16/fp16 takes the processor's float32 output as is (cast at the top-level forward)."""
    reference = tiny_trajadapter_model(probe_type)
    model = tiny_trajadapter_model(probe_type).to(dtype)
    model.load_state_dict(reference.state_dict())
    x = _videos(2)
    labels = torch.tensor([0, 2])
    try:
        out = model(pixel_values_videos=x, labels=labels)
    except (NotImplementedError, RuntimeError) as error:
        if "not implemented for" in str(error) and dtype == torch.float16:
            pytest.skip(f"float16 is not supported on this device: {error}")
        raise
    assert out.logits.dtype == dtype and torch.isfinite(out.logits).all() and torch.isfinite(out.loss)
    if probe_type == "trajectory":
        return  # hard trajectory ids may flip where two segmenter logits are within the half-precision error
    with torch.no_grad():
        expected = reference(pixel_values_videos=x).logits
    # Error bound: |logit| magnitude × the longest reduction (a 2×8×8×3 = 384-input tubelet patch) × eps of dtype.
    bound = float_error_bound(expected.abs().max().item(), 384, dtype)
    torch.testing.assert_close(out.logits.float(), expected, atol=bound, rtol=0)


# ---------------------------------------------------------------------------------------------- adapter semantics
def test_inactive_tokens_have_no_effect_on_the_probe():
    torch.manual_seed(0)
    probe = TrajAdapterAttentiveProbe(tiny_trajadapter_config()).eval()
    tokens = torch.randn(2, 10, 32)
    mask = torch.tensor([[True] * 3 + [False] * 7, [True, False] * 5])
    garbage = tokens.clone()
    garbage[~mask] = torch.tensor(float("inf"))
    garbage[0, 5] = float("nan")
    out = probe(tokens, mask)
    assert torch.equal(probe(garbage, mask), out)
    # ... and equal to the probe over the active tokens alone.
    for b in range(2):
        # bound: |value| (>= 1), the probe over <= 10 tokens, fp32 eps; the shorter sequence blocks differently.
        assert_close_within_bound(probe(tokens[b : b + 1, mask[b]]), out[b : b + 1], PROBE_TERMS)


def test_only_active_trajectories_reach_the_classifier():
    model = tiny_trajadapter_model(tokens_per_trajectory=2)
    out = model(pixel_values_videos=_videos(2))
    assert not out.trajectory_mask.all()  # some of the 2·8 slots are empty
    assert (out.trajectory_tokens[~out.trajectory_mask] == 0).all()
    expected = torch.stack([model.probe(out.trajectory_tokens[b : b + 1, out.trajectory_mask[b]])[0] for b in range(2)])
    assert_close_within_bound(out.pooled_output, expected, PROBE_TERMS)  # bound: as in the test above


def test_refinement_is_hard_masked_per_trajectory():
    """A trajectory token depends only on the backbone tokens of its own trajectory."""
    model = tiny_trajadapter_model()
    frozen = model.get_frozen_features(_videos(1))
    ids = frozen.trajectory_ids.flatten()
    target = int(ids.mode().values)
    changed = frozen.patch_features.clone().flatten(1, 3)
    changed[0, ids != target] += torch.randn_like(changed[0, ids != target])  # (a constant would vanish in LayerNorm)
    frozen2 = type(frozen)(
        patch_features=changed.view_as(frozen.patch_features),
        trajectory_ids=frozen.trajectory_ids,
        segmenter_queries=frozen.segmenter_queries,
    )
    a, b = model(frozen_features=frozen), model(frozen_features=frozen2)
    # bound: |token| (>= 1), the 2 refinement layers, fp32 eps: the other trajectories' keys are masked out.
    assert_close_within_bound(a.trajectory_tokens[0, target], b.trajectory_tokens[0, target], REFINEMENT_TERMS)
    others = [k for k in ids.unique().tolist() if k != target]
    difference = (a.trajectory_tokens[0, others] - b.trajectory_tokens[0, others]).abs().max()
    assert difference > float_error_bound(max(a.trajectory_tokens.abs().max().item(), 1.0), REFINEMENT_TERMS)


def test_segment_and_dense_hard_mask_agree():
    model = tiny_trajadapter_model(tokens_per_trajectory=4)
    frozen = model.get_frozen_features(_videos(2))
    segment = model(frozen_features=frozen)
    dense = model(frozen_features=frozen, hard_mask_implementation="dense")
    # bound: |value| (>= 1), the refinement (and then the probe and classifier), fp32 eps: two attention kernels.
    assert_close_within_bound(dense.trajectory_tokens, segment.trajectory_tokens, REFINEMENT_TERMS)
    assert_close_within_bound(dense.logits, segment.logits, REFINEMENT_TERMS + PROBE_TERMS + 2 * 32)
    with pytest.raises(ValueError, match="hard_mask_implementation"):
        model(frozen_features=frozen, hard_mask_implementation="sparse")


def test_subtoken_offsets_are_a_fourier_ring():
    model = tiny_trajadapter_model(tokens_per_trajectory=4)
    offsets = model.subtoken_offsets.detach()
    # n points of a ring (norm √F each after the orthonormal projection), scaled by 0.02, pairwise distinct.
    norms = offsets.norm(dim=-1)
    # bound: |offset| <= 0.02·√4, the Fourier features' projection (2·4 terms) and the norm (32 terms), fp32 eps.
    assert_close_within_bound(norms, torch.full((4,), 0.02 * math.sqrt(4)), 2 * 4 + 32, magnitude=0.02 * math.sqrt(4))
    assert torch.cdist(offsets, offsets)[~torch.eye(4, dtype=torch.bool)].min() > 1e-3  # ~0.057 apart on the ring


@pytest.mark.parametrize("query_init", ["segmenter_queries", "mean_pool", "segmenter_queries_plus_mean_pool"])
def test_query_inits(query_init):
    model = tiny_trajadapter_model(query_init=query_init)
    assert (model.query_projection is None) == (query_init == "mean_pool")
    out = model(pixel_values_videos=_videos(1), labels=torch.tensor([1]))
    out.loss.backward()
    assert torch.isfinite(out.logits).all()


def test_cached_frozen_features_and_separate_segmenter_input():
    model = tiny_trajadapter_model(tokens_per_trajectory=2)
    x = _videos(2)
    full = model(pixel_values_videos=x)
    cached = model(frozen_features=model.get_frozen_features(x))
    assert torch.equal(full.logits, cached.logits)
    # The segmenter may take its own (here larger) frames; the grid of the backbone does not change.
    out = model(
        pixel_values_videos=x,
        segmenter_pixel_values_videos=F.interpolate(x.flatten(0, 1), size=64).unflatten(0, (2, 8)),
    )
    assert out.trajectory_ids.shape == full.trajectory_ids.shape


def test_loss_is_cross_entropy():
    model = tiny_trajadapter_model("attentive")
    labels = torch.tensor([2, 0])
    out = model(pixel_values_videos=_videos(), labels=labels)
    assert torch.equal(out.loss, F.cross_entropy(out.logits, labels))  # the same function on the same logits


# --------------------------------------------------------------------------------------------------- baselines, I/O
@pytest.mark.parametrize("probe_type", ["trajectory", "attentive", "linear"])
def test_probe_types_train_save_load_and_batch(probe_type, tmp_path):
    model = tiny_trajadapter_model(probe_type)
    assert (model.segmenter is None) == (probe_type != "trajectory")
    assert (model.probe is None) == (probe_type == "linear")
    x = _videos(3, seed=2)
    model.train()
    out = model(pixel_values_videos=x, labels=torch.tensor([0, 1, 2]))
    out.loss.backward()
    assert all(p.grad is not None for p in model.trainable_parameters())
    model.eval()
    with torch.no_grad():
        logits = model(pixel_values_videos=x).logits
        for i in range(3):
            # bound: |logit| (>= 1), the model's reductions, fp32 eps: batch sizes block differently.
            assert_close_within_bound(model(pixel_values_videos=x[i : i + 1]).logits, logits[i : i + 1], MODEL_TERMS)
        model.save_pretrained(tmp_path)
        loaded = AutoModelForVideoClassification.from_pretrained(tmp_path)
        # Reloaded weights may sit at other alignments (other kernel blocking): the same bound.
        assert_close_within_bound(loaded(pixel_values_videos=x).logits, logits, MODEL_TERMS)
    assert loaded.config.probe_type == probe_type and loaded.config.id2label == model.config.id2label


def test_from_backbone_pretrained(tmp_path):
    backbone = AutoModel.from_config(AutoConfig.for_model(**TINY_VIDEOMAE))
    segmenter = TrajTokModel(tiny_trajtok_config())
    backbone.save_pretrained(tmp_path / "backbone")
    segmenter.save_pretrained(tmp_path / "segmenter")
    model = TrajAdapterForVideoClassification.from_backbone_pretrained(
        tmp_path / "backbone", tmp_path / "segmenter", num_labels=5, num_attention_heads=4, tokens_per_trajectory=2
    )
    assert model.config.num_labels == 5 and model.config.tokens_per_trajectory == 2
    for mine, theirs in ((model.backbone, backbone), (model.segmenter, segmenter)):
        state = theirs.state_dict()
        assert all(torch.equal(v, state[k]) for k, v in mine.state_dict().items())
        assert all(not p.requires_grad for p in mine.parameters())
    with pytest.raises(ValueError, match="segmenter_name_or_path"):
        TrajAdapterForVideoClassification.from_backbone_pretrained(tmp_path / "backbone", num_labels=2)
    linear = TrajAdapterForVideoClassification.from_backbone_pretrained(tmp_path / "backbone", probe_type="linear")
    assert linear.segmenter is None


# ----------------------------------------------------------------------------------------------------------- example
def test_train_adapter_example_runs_and_reloads(tmp_path):
    out_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        os.path.join(REPO, "examples", "train_adapter.py"),
        "--output_dir",
        str(out_dir),
        "--probe",
        "trajectory",
        "--tokens_per_trajectory",
        "2",
        "--num_frames",
        "4",
        "--frame_size",
        "32",
        "--num_train_clips",
        "8",
        "--eval_clips",
        "4",
        "--batch_size",
        "4",
        "--max_steps",
        "3",
        "--logging_steps",
        "1",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3]
    assert 0.0 <= records[-1]["eval/accuracy"] <= 1.0
    model = AutoModelForVideoClassification.from_pretrained(out_dir / "final")
    processor = AutoVideoProcessor.from_pretrained(out_dir / "final")
    assert isinstance(model, TrajAdapterForVideoClassification) and model.config.num_labels == 4
    assert processor.size["height"] == 32
    with torch.no_grad():
        assert model(pixel_values_videos=_videos(1, 4)).logits.shape == (1, 4)


def test_input_embeddings_are_the_backbones():
    model = tiny_trajadapter_model()
    assert model.get_input_embeddings() is model.backbone.embeddings.patch_embeddings
