"""Converters from the official TrajTok release, checked against a small official-format fixture: weights, inputs and
reference outputs of the official classes of hellomuffin/trajtok @658a6ed (CPU, fp32, random init), read from
``FIXTURE`` beside the repository; the tests that need it skip without it."""

import argparse
import copy
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from testers import (
    assert_ids_equal_up_to_ties,
    float_error_bound,
    text_batch,
    tiny_trajvit2_model,
    transformer_layer_terms,
    video_batch,
)

from trajtok_hf import TrajTokModel
from trajtok_hf.convert import (
    OfficialCheckpointError,
    convert_official_segmenter,
    convert_official_trajtok_tokenizer,
    load_converted_tokenizer,
    load_official_state_dict,
    official_tokenizer_outputs,
)
from trajtok_hf.convert.convert_official_segmenter import main as segmenter_main
from trajtok_hf.convert.official_checkpoint import RELEASE_CLIP_FRAMES, load_reference

FIXTURE = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "official_small"
needs_fixture = pytest.mark.skipif(
    not (FIXTURE / "reference.safetensors").is_file(),
    reason=f"official-format fixture not found at {FIXTURE} (CI clones shared/ beside the repository)",
)
TOKENIZER_PREFIX = "vision_encoder.traj_tokenizer."


def _fixture_file(name):
    if not (FIXTURE / name).is_file():
        pytest.skip(f"official-format fixture not found at {FIXTURE} (CI clones shared/ beside the repository)")
    return load_file(str(FIXTURE / name))


@pytest.fixture(scope="module")
def reference():
    return _fixture_file("reference.safetensors")


@pytest.fixture(scope="module")
def segmenter_sd():
    return _fixture_file("segmenter.safetensors")


@pytest.fixture(scope="module")
def trajvit2_sd():
    return _fixture_file("trajvit2.safetensors")


@pytest.fixture(scope="module")
def segmenter_model(segmenter_sd):
    model, _ = convert_official_segmenter(dict(segmenter_sd))
    return model


def _max_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


# Reduction lengths (testers.float_error_bound) of the fixture's config: ConvNeXt dims 16-128, one block per
# stage (a 4×4×3 stem, per stage a 7×7 depthwise window and linears of d and 4·d terms, 2×2 downsampling convs), 1×1
# projections of ≤ 128 terms, the shared LayerNorm (64), the sum of 4 maps and a bilinear upsampling to 56²;
# Perceiver layers of width 64 (8 heads, feed-forward 256) over 2·56² pixels + 16 latents; assignment heads (64 → 16
# → 8, an L2 norm and a dot product of 8, the scale); the ViT (2 layers, 16 heads, 17 tokens) and the BERT (2 layers,
# 4 heads, 77 tokens) of width 64 and intermediate 256, their final LayerNorm, projection to 32 and L2 normalisation.
_STAGES = (16, 32, 64, 128)
_BACKBONE = 4 * 4 * 3 + sum(49 + 5 * d for d in _STAGES) + 4 * sum(_STAGES[:-1]) + 128 + 64 + 4 + 4
_PERCEIVER = 2 * transformer_layer_terms(2 * 56 * 56 + 16, 64, 256, 8)
_QUERIES = _BACKBONE + _PERCEIVER
_LOGITS = _QUERIES + 64 + 16 + 8 + 8 + 1
_TOKENS = _LOGITS + _PERCEIVER + 64
_HEAD = 64 + 64 + 32
_VISION = _TOKENS + 2 * transformer_layer_terms(17, 64, 256, 16) + _HEAD
_TEXT = 2 * transformer_layer_terms(77, 64, 256, 4) + _HEAD
PARITY_TERMS = {
    "segmenter_patch_features": _BACKBONE,
    "segmenter_queries": _QUERIES,
    "segmenter_logits": _LOGITS,
    "trajvit2_queries": _QUERIES,
    "trajvit2_logits": _LOGITS,
    "traj_tokens": _TOKENS,
    "vision_last_hidden_state": _VISION - 64 - 32,
    "vision_embeds": _VISION,
    "text_last_hidden_state": _TEXT - 64 - 32,
    "text_embeds": _TEXT,
    "logits_per_video": max(_VISION, _TEXT) + 32 + 1,
}


def _parity_bound(reference, name):
    """Our float32 output against the official classes' (other kernels, other operation order): the float error
    bound with the reference's magnitude (at least 1) and the reduction length up to that output."""
    return float_error_bound(max(reference[name].abs().max().item(), 1.0), PARITY_TERMS[name])


def _assert_parity(actual, reference, name):
    assert _max_diff(actual, reference[name]) <= _parity_bound(reference, name), name


def _assert_ids_parity(ids, reference, name):
    """Hard ids equal the official ones except where the two best official logits are a float tie."""
    logits_name = name.replace("_ids", "_logits")
    bound = _parity_bound(reference, logits_name)
    assert_ids_equal_up_to_ties(ids, reference[name], reference[logits_name], bound)


# ------------------------------------------------------------------------------------------------------- parity
def test_segmenter_parity(segmenter_model, reference):
    out = official_tokenizer_outputs(segmenter_model, reference["pixel_values"])
    _assert_parity(out["patch_features"], reference, "segmenter_patch_features")
    _assert_parity(out["queries"], reference, "segmenter_queries")
    _assert_parity(out["logits"], reference, "segmenter_logits")
    _assert_ids_parity(out["ids"], reference, "segmenter_ids")
    # The active set is the set of argmax ids (6 and 5 of 16 in the fixture).
    assert [len(set(ids.tolist())) for ids in reference["segmenter_ids"]] == [6, 5]
    for b in range(2):
        assert set(out["active_mask"][b].nonzero().flatten().tolist()) == set(out["ids"][b].tolist())


def test_segmenter_release_options_and_fresh_refinement(segmenter_model, segmenter_sd):
    config = segmenter_model.config
    assert config.backbone_config.model_type == "dinov3_convnext"
    assert list(config.backbone_config.hidden_sizes) == [16, 32, 64, 128]
    assert list(config.backbone_config.depths) == [1, 1, 1, 1]
    assert (config.hidden_size, config.num_trajectories, config.num_attention_heads) == (64, 16, 8)
    assert (config.query_perceiver_depth, config.perceiver_ff_mult) == (2, 4)
    assert (config.assignment_hidden_size, config.assignment_embed_dim) == (16, 8)
    assert config.shared_stage_layernorm and config.backbone_final_layernorm
    assert config.rope_fraction == 0.5 and config.latent_norm_placement == "every_layer"
    assert config.query_init == "latent" and config.refinement_visible_last_pixels == 2
    assert config.tokens_per_trajectory_choices == [1]
    assert segmenter_model.subtoken_offsets is None
    # The 1×1 convs became Linear weights.
    torch.testing.assert_close(
        segmenter_model.feature_extractor.projections[3].weight,
        segmenter_sd["vision_encoder.patch_encoder.proj.3.weight"][:, :, 0, 0],
        rtol=0,
        atol=0,
    )
    # No refinement part in the segmenter file: freshly initialised, reproducibly (seeded), without touching the
    # caller's RNG.
    state = torch.random.get_rng_state()
    again, _ = convert_official_segmenter(dict(segmenter_sd))
    other_seed, _ = convert_official_segmenter(dict(segmenter_sd), seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(again.refinement_latents, segmenter_model.refinement_latents)
    assert not torch.equal(other_seed.refinement_latents, segmenter_model.refinement_latents)
    assert torch.equal(other_seed.query_latents, segmenter_model.query_latents)


@pytest.fixture(scope="module")
def trajvit2_tokenizer(trajvit2_sd):
    converted = convert_official_trajtok_tokenizer(dict(trajvit2_sd), TOKENIZER_PREFIX)
    return converted, load_converted_tokenizer(converted)


def test_trajvit2_tokenizer_parity(trajvit2_tokenizer, reference):
    converted, model = trajvit2_tokenizer
    assert converted.has_refinement and converted.fresh_keys == ()
    assert set(converted.state_dict) == set(model.state_dict())
    out = official_tokenizer_outputs(model, reference["pixel_values"])
    _assert_parity(out["queries"], reference, "trajvit2_queries")
    # Scale-20 logits: their bound has magnitude 20 (SDPA rounds differently from the official einsum/softmax).
    _assert_parity(out["logits"], reference, "trajvit2_logits")
    _assert_ids_parity(out["ids"], reference, "trajvit2_ids")
    # All K·n = 16 slots, inactive ones included (the official SegmentTokenizer returns them all).
    assert out["tokens"].shape == reference["traj_tokens"].shape == (2, 16, 64)
    _assert_parity(out["tokens"], reference, "traj_tokens")
    # The active set is the set of argmax ids (4 and 4 of 16 in the fixture).
    assert torch.equal(out["active_mask"], torch.zeros_like(out["active_mask"]).scatter(1, out["ids"], True))
    assert reference["active_mask"].sum(1).tolist() == [4, 4]


def test_trajvit2_tokenizer_parity_eager_attention(trajvit2_tokenizer, reference):
    """Parity holds with written-out (eager) attention too, the official Perceiver's form."""
    converted, _ = trajvit2_tokenizer
    model = load_converted_tokenizer(converted)
    model.set_attn_implementation("eager")
    out = official_tokenizer_outputs(model, reference["pixel_values"])
    _assert_parity(out["queries"], reference, "trajvit2_queries")
    _assert_parity(out["logits"], reference, "trajvit2_logits")
    _assert_ids_parity(out["ids"], reference, "trajvit2_ids")
    _assert_parity(out["tokens"], reference, "traj_tokens")


def test_tokenizer_consumes_every_key_under_its_prefix(trajvit2_tokenizer, trajvit2_sd):
    converted, _ = trajvit2_tokenizer
    under = {k for k in trajvit2_sd if k.startswith(TOKENIZER_PREFIX)}
    assert converted.consumed_keys == under
    documented = ("rotary_emb.freqs", "norms.3.weight", "norms.3.bias")
    assert set(converted.dropped_keys) == {k for k in under if k.endswith(documented)}


# -------------------------------------------------------------------------------------------- loud failures
def test_unknown_key_fails_and_is_listed(segmenter_sd):
    for key in ("vision_encoder.trajectory_perceiver.extra_scale", "some_other_head.weight"):
        sd = dict(segmenter_sd)
        sd[key] = torch.zeros(3)
        with pytest.raises(OfficialCheckpointError, match="neither mapped nor documented") as info:
            convert_official_segmenter(sd)
        assert key in str(info.value)


def test_missing_key_fails_and_is_listed(segmenter_sd, trajvit2_sd):
    sd = dict(segmenter_sd)
    del sd["vision_encoder.patch_decoder_low_res.2.bias"]
    with pytest.raises(OfficialCheckpointError, match="missing") as info:
        convert_official_segmenter(sd)
    assert "pixel_head.2.bias" in str(info.value)
    assert "vision_encoder.patch_decoder_low_res.2.bias" in str(info.value)

    sd = dict(trajvit2_sd)
    for key in ("traj_feature_updater.layers.1.0.to_kv.weight", "output_projector.bias"):
        del sd[TOKENIZER_PREFIX + key]
    with pytest.raises(OfficialCheckpointError, match="missing") as info:
        convert_official_trajtok_tokenizer(sd, TOKENIZER_PREFIX)
    for key in ("traj_feature_updater.layers.1.0.to_kv.weight", "output_projector.bias"):
        assert TOKENIZER_PREFIX + key in str(info.value)


def test_shape_mismatch_and_inconsistent_duplicates_fail(segmenter_sd):
    sd = dict(segmenter_sd)
    sd["vision_encoder.trajectory_perceiver.layers.1.0.to_out.weight"] = torch.zeros(64, 32)
    with pytest.raises(OfficialCheckpointError, match="shape mismatch"):
        convert_official_segmenter(sd)
    sd = dict(segmenter_sd)
    sd["vision_encoder.patch_encoder.backbone.norms.3.weight"] = (
        sd["vision_encoder.patch_encoder.backbone.norm.weight"] + 1
    )
    with pytest.raises(OfficialCheckpointError, match="norms.3.weight differs"):
        convert_official_segmenter(sd)
    sd = dict(segmenter_sd)
    sd["vision_encoder.trajectory_perceiver.layers.0.0.rotary_emb.freqs"] = torch.tensor([1.0, 0.1])
    with pytest.raises(OfficialCheckpointError, match="rotary_emb.freqs"):
        convert_official_segmenter(sd)


def test_trajvit2_file_is_refused_by_the_segmenter_converter(trajvit2_sd):
    with pytest.raises(OfficialCheckpointError, match="TrajViT2"):
        convert_official_segmenter({k: v for k, v in trajvit2_sd.items() if k.startswith("vision_encoder.")})


def test_release_segmenter_file_drops_the_documented_unused_keys(segmenter_sd, segmenter_model, reference):
    """A real segmenter model.pth also holds the high-res head and SegmentWrapper's text/projection keys."""
    sd = dict(segmenter_sd)
    extra = {
        "vision_encoder.patch_decoder_high_res.conv_up.0.weight": torch.zeros(64, 32, 2, 2),
        "vision_encoder.patch_decoder_high_res.conv_up.1.weight": torch.zeros(32),
        "vision_encoder.traj_seg_head_high_res.0.bias": torch.zeros(8),
        "text_encoder.embeddings.word_embeddings.weight": torch.zeros(10, 4),
        "text_encoder.encoder.layer.0.crossattention.self.key.weight": torch.zeros(4, 4),
        "vision_proj.weight": torch.zeros(2, 64),
        "text_proj.bias": torch.zeros(2),
        "itm_head.weight": torch.zeros(2, 4),
        "temp": torch.tensor(0.07),
    }
    sd.update(extra)
    model, _ = convert_official_segmenter(sd)
    out = official_tokenizer_outputs(model, reference["pixel_values"])
    expected = official_tokenizer_outputs(segmenter_model, reference["pixel_values"])
    assert torch.equal(out["logits"], expected["logits"])


# ----------------------------------------------------------------------------------------------- file formats
def test_pth_pickle_loads_with_weights_only(tmp_path, segmenter_sd, segmenter_model, reference):
    path = tmp_path / "model.pth"
    meta = {"epoch": 3, "global_step": 1000, "source_path": "/ckpt/filteredmixdata_all/ckpt_03.pth"}
    torch.save({"model": dict(segmenter_sd), "meta": meta}, path)
    assert load_official_state_dict(path).keys() == segmenter_sd.keys()
    model, _ = convert_official_segmenter(path)
    expected = official_tokenizer_outputs(segmenter_model, reference["pixel_values"])
    assert torch.equal(official_tokenizer_outputs(model, reference["pixel_values"])["logits"], expected["logits"])
    # A bare state dict works too.
    torch.save(dict(segmenter_sd), tmp_path / "bare.pth")
    assert load_official_state_dict(tmp_path / "bare.pth").keys() == segmenter_sd.keys()


def test_unsafe_pickle_gets_a_clear_error(tmp_path, segmenter_sd):
    path = tmp_path / "model.pth"
    torch.save({"model": dict(segmenter_sd), "meta": {"args": argparse.Namespace(lr=1e-4)}}, path)
    with pytest.raises(OfficialCheckpointError) as info:
        load_official_state_dict(path)
    message = str(info.value)
    assert "weights_only set to False" in message and "{'model': state_dict}" in message and "safetensors" in message


def test_not_a_state_dict_fails(tmp_path):
    torch.save({"model": {"a": torch.zeros(1), "b": "text"}}, tmp_path / "x.pth")
    with pytest.raises(OfficialCheckpointError, match="not tensors"):
        load_official_state_dict(tmp_path / "x.pth")


def _write_truncated_pth(path):
    torch.save({"model": {"w": torch.zeros(64)}}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _write_truncated_safetensors(path):
    save_file({"w": torch.zeros(64)}, str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size - 16])


NOT_A_CHECKPOINT = {
    "text file": ("model.pth", lambda p: p.write_text("hello world\n"), "first bytes are b'hello world"),
    "text that starts like a pickle": ("model.pth", lambda p: p.write_text("cos\nsystem\n"), "first bytes"),
    "empty file": ("model.pth", lambda p: p.write_bytes(b""), "it is empty"),
    "truncated torch file": ("model.pth", _write_truncated_pth, "damaged or truncated torch file"),
    "truncated safetensors": ("model.safetensors", _write_truncated_safetensors, "damaged or truncated safetensors"),
    "text named .safetensors": ("model.safetensors", lambda p: p.write_text("{}"), "first bytes"),
    "directory": ("folder", lambda p: p.mkdir(), "is a folder"),
}


@pytest.mark.parametrize("loader", [load_official_state_dict, load_reference], ids=["checkpoint", "reference"])
@pytest.mark.parametrize("name, write, match", NOT_A_CHECKPOINT.values(), ids=NOT_A_CHECKPOINT.keys())
def test_not_a_checkpoint_file_gets_a_value_error_naming_it(tmp_path, loader, name, write, match):
    path = tmp_path / name
    write(path)
    with pytest.raises(ValueError, match=match) as info:
        loader(path)
    assert isinstance(info.value, OfficialCheckpointError) and str(path) in str(info.value)
    assert "safetensors" in str(info.value) and "unsafe" not in str(info.value).lower()


@pytest.mark.parametrize("main", ["segmenter", "trajvit2"])
def test_command_line_names_a_bad_checkpoint_file(tmp_path, main):
    from trajtok_hf.convert import convert_official_trajvit2

    entry = segmenter_main if main == "segmenter" else convert_official_trajvit2.main
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(SystemExit, match="notes.txt: not an official checkpoint"):
        entry(["--checkpoint", str(tmp_path / "notes.txt"), "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------- saved folder
def test_converted_folder_reloads_with_automodel(tmp_path, segmenter_sd, reference):
    from transformers import AutoModel

    out_dir = tmp_path / "converted"
    model, diffs = convert_official_segmenter(dict(segmenter_sd), out_dir, verify_with=reference)
    assert set(diffs) == {"segmenter_patch_features", "segmenter_queries", "segmenter_logits", "segmenter_ids"}
    assert diffs["segmenter_ids"] == 0  # the converter's own check: exact ids, or it raises
    assert all(diffs[name] <= _parity_bound(reference, name) for name in diffs if name != "segmenter_ids"), diffs
    files = set(os.listdir(out_dir))
    assert {"config.json", "model.safetensors"} <= files
    loaded = AutoModel.from_pretrained(out_dir).eval()
    assert isinstance(loaded, TrajTokModel)
    video = reference["pixel_values"]
    with torch.no_grad():
        a, b = model(video, output_pixel_features=True), loaded(video, output_pixel_features=True)
    for name in ("trajectory_tokens", "assignment_logits", "trajectory_queries", "pixel_features"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert torch.equal(a.trajectory_ids, b.trajectory_ids) and torch.equal(a.trajectory_mask, b.trajectory_mask)

    try:
        from trajtok_hf.models.video_processing_trajtok import TrajTokVideoProcessor  # noqa: F401
    except ImportError:
        return
    from transformers import AutoVideoProcessor

    processor = AutoVideoProcessor.from_pretrained(out_dir)
    assert processor.size["height"] == processor.size["width"] == 224
    assert not processor.do_center_crop and int(processor.resample) == 3  # bicubic
    assert list(processor.image_mean) == [0.485, 0.456, 0.406]  # transformers' ImageNet constants, saved as JSON
    assert list(processor.image_std) == [0.229, 0.224, 0.225]
    assert processor.num_frames == RELEASE_CLIP_FRAMES == loaded.config.chunk_size  # a sampled clip is one chunk
    frames = [clip.numpy() for clip in reference["frames_uint8"]]
    pixel_values = processor(frames, do_sample_frames=False, return_tensors="pt")["pixel_values_videos"]
    # Official preprocessing = PIL bicubic on uint8; the processor is within ~1 grey level of it (1/255/0.224 = 0.0175:
    # a resize difference, not float order).
    assert _max_diff(pixel_values, reference["pixel_values"]) <= 0.02


def test_outputs_are_checked_before_anything_is_written(tmp_path, segmenter_sd, reference):
    bad = dict(reference)
    bad["segmenter_queries"] = reference["segmenter_queries"] + 1e-3
    out_dir = tmp_path / "converted"
    with pytest.raises(OfficialCheckpointError, match="segmenter_queries"):
        convert_official_segmenter(dict(segmenter_sd), out_dir, verify_with=bad)
    assert not out_dir.exists()


@needs_fixture
def test_command_line(tmp_path, capsys):
    out_dir = tmp_path / "cli"
    segmenter_main(
        [
            "--checkpoint",
            str(FIXTURE / "segmenter.safetensors"),
            "--output_dir",
            str(out_dir),
            "--verify_with",
            str(FIXTURE / "reference.safetensors"),
        ]
    )
    printed = capsys.readouterr().out
    assert "segmenter_logits" in printed and "freshly initialised" in printed
    assert (out_dir / "model.safetensors").is_file()


# ------------------------------------------------------------------------------------------------- full TrajViT2
def _trajvit2_module():
    try:
        from trajtok_hf.convert import convert_official_trajvit2
    except ImportError as err:  # the TrajViT2 model is not part of this checkout
        pytest.skip(f"TrajViT2 model not available: {err}")
    return convert_official_trajvit2


@pytest.fixture(scope="module")
def trajvit2_converted(trajvit2_sd):
    module = _trajvit2_module()
    model, _ = module.convert_official_trajvit2(dict(trajvit2_sd), text_num_attention_heads=4)
    return model


def _trajvit2_outputs(model, reference):
    return _trajvit2_module().trajvit2_outputs(
        model, reference["pixel_values"], reference["input_ids"], reference["attention_mask"]
    )


def test_trajvit2_full_parity(trajvit2_converted, reference):
    out = _trajvit2_outputs(trajvit2_converted, reference)
    for name in (
        "vision_last_hidden_state",
        "vision_embeds",
        "text_last_hidden_state",
        "text_embeds",
        "logits_per_video",
    ):
        assert out[name].shape == reference[name].shape, name
        _assert_parity(out[name], reference, name)
    _assert_parity(out["traj_tokens"], reference, "traj_tokens")
    _assert_ids_parity(out["trajvit2_ids"], reference, "trajvit2_ids")
    assert torch.equal(out["active_mask"], torch.zeros_like(out["active_mask"]).scatter(1, out["trajvit2_ids"], True))


def test_trajvit2_release_options(trajvit2_converted, trajvit2_sd, reference):
    config = trajvit2_converted.config
    vision, text = config.vision_config, config.text_config
    assert vision.attend_to_inactive_tokens
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads, vision.intermediate_size) == (
        64,
        2,
        16,
        256,
    )
    assert (vision.layer_norm_eps, vision.final_layer_norm_eps) == (1e-12, 1e-5)
    assert text.model_type == "bert" and text.num_hidden_layers == 2  # = fusion_layer; layer 2 (fusion) dropped
    assert (text.hidden_size, text.vocab_size, config.projection_dim, config.text_pooling) == (64, 1000, 32, "cls")
    # ln(1/0.0537) rounded to float32 (exp turns its |ln s|·eps error into a relative one), then exp's own rounding.
    scale = 1 / 0.0537
    assert float(trajvit2_converted.logit_scale.detach().exp()) == pytest.approx(
        scale, rel=0, abs=float_error_bound(scale * (math.log(scale) + 1), 1)
    )
    assert config.trajtok_config.query_init == "latent"
    # Honouring the padding mask (the paper's form) changes the video embedding (by ~0.15 on the fixture).
    paper_config = copy.deepcopy(config)
    paper_config.vision_config.attend_to_inactive_tokens = False
    model = _trajvit2_module().load_converted_trajvit2(paper_config, trajvit2_converted.state_dict())
    out = _trajvit2_outputs(model, reference)
    assert _max_diff(out["vision_embeds"], reference["vision_embeds"]) > 0.05  # a behaviour (0.15 on the fixture)


def test_trajvit2_every_key_mapped_or_documented(trajvit2_sd):
    module = _trajvit2_module()
    _, converted, dropped = module.convert_official_trajvit2_state_dict(dict(trajvit2_sd), text_num_attention_heads=4)
    assert len(trajvit2_sd) == 265 and len(converted) + len(dropped) == 265
    assert "text_encoder.embeddings.position_ids" in dropped and "itm_head.weight" in dropped
    assert all(k in dropped for k in trajvit2_sd if k.startswith("text_encoder.encoder.layer.2."))
    assert all(k in dropped for k in trajvit2_sd if ".vit.embeddings." in k or ".vit.pooler." in k)
    assert not any(k.startswith("vision_model.input_projection") for k in converted)  # same width: Identity


def test_trajvit2_unknown_and_missing_keys_fail(trajvit2_sd):
    module = _trajvit2_module()
    sd = dict(trajvit2_sd)
    sd["text_encoder.encoder.layer.0.attention.self.rel_pos.weight"] = torch.zeros(2)
    sd["vision_encoder.vision_encoder.extra_token"] = torch.zeros(1, 1, 64)
    with pytest.raises(OfficialCheckpointError, match="neither mapped nor documented") as info:
        module.convert_official_trajvit2_state_dict(sd, text_num_attention_heads=4)
    assert "text_encoder.encoder.layer.0.attention.self.rel_pos.weight" in str(info.value)
    assert "vision_encoder.vision_encoder.extra_token" in str(info.value)
    sd = dict(trajvit2_sd)
    del sd["vision_encoder.vision_encoder.vit.encoder.layer.1.attention.output.dense.bias"]
    del sd["text_proj.bias"]
    with pytest.raises(OfficialCheckpointError, match="missing") as info:
        module.convert_official_trajvit2_state_dict(sd, text_num_attention_heads=4)
    assert "vision_encoder.vision_encoder.vit.encoder.layer.1.attention.output.dense.bias" in str(info.value)
    assert "text_proj.bias" in str(info.value)


def test_trajvit2_folder_reloads_with_automodel(tmp_path, trajvit2_sd, reference):
    from transformers import AutoModel

    module = _trajvit2_module()
    out_dir = tmp_path / "trajvit2"
    model, diffs = module.convert_official_trajvit2(
        dict(trajvit2_sd), out_dir, verify_with=reference, text_num_attention_heads=4
    )
    assert len(diffs) == 10 and diffs["trajvit2_ids"] == 0 and diffs["active_mask"] == 0
    loaded = AutoModel.from_pretrained(out_dir).eval()
    assert type(loaded) is type(model)
    a, b = _trajvit2_outputs(model, reference), _trajvit2_outputs(loaded, reference)
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ------------------------------------------------------------------------------------------ where converters write
@pytest.mark.parametrize(
    "existing, refused",
    [
        (None, False),
        ({}, False),
        ({"config.json": "{}", "model.safetensors": "old"}, False),  # a previous conversion: replaced whole
        ({"notes.txt": "mine"}, True),  # someone's files: never deleted
    ],
    ids=["absent", "empty", "model folder", "other files"],
)
def test_converted_model_folder_is_atomic_and_never_deletes_other_files(tmp_path, existing, refused):
    from trajtok_hf.convert.official_checkpoint import OfficialCheckpointError, converted_model_folder

    target = tmp_path / "out"
    if existing is not None:
        target.mkdir()
        for name, text in existing.items():
            (target / name).write_text(text)
    before = {p.name: p.read_text() for p in target.iterdir()} if target.exists() else None
    if refused:
        with pytest.raises(OfficialCheckpointError, match="not a model folder"):
            with converted_model_folder(target):
                pass
        assert {p.name: p.read_text() for p in target.iterdir()} == before
        return
    with pytest.raises(RuntimeError):  # a conversion that fails half-way commits nothing
        with converted_model_folder(target) as folder:
            (folder / "config.json").write_text("half")
            raise RuntimeError("killed")
    assert ({p.name: p.read_text() for p in target.iterdir()} if target.exists() else None) == before
    with converted_model_folder(target) as folder:
        (folder / "config.json").write_text("new")
    assert {p.name: p.read_text() for p in target.iterdir()} == {"config.json": "new"}


# ------------------------------------------------------------------------------------------------ release chunks
def test_release_clip_is_one_chunk_of_8_frames(segmenter_model, trajvit2_tokenizer, trajvit2_converted):
    assert RELEASE_CLIP_FRAMES == 8  # video_input.num_frames of the release's configs
    for config in (segmenter_model.config, trajvit2_tokenizer[1].config, trajvit2_converted.config.trajtok_config):
        assert config.chunk_size == RELEASE_CLIP_FRAMES


@pytest.mark.parametrize("frames", [8, 12, 16, 20])
def test_longer_clips_are_tokenized_in_chunks_of_8_frames(segmenter_model, frames):
    """A clip of T frames = ⌈T/8⌉ chunks, each tokenized on its own with its own K slots (ids c·K + k)."""
    video = video_batch(batch=1, frames=frames, size=64, seed=frames)
    num_traj, num_chunks = segmenter_model.config.num_trajectories, -(-frames // RELEASE_CLIP_FRAMES)
    with torch.no_grad():
        out = segmenter_model(video, tokens_per_trajectory=1)
        singles = [segmenter_model(video[:, c * 8 : (c + 1) * 8], tokens_per_trajectory=1) for c in range(num_chunks)]
    assert out.trajectory_mask.shape == (1, num_chunks * num_traj)
    chunk_of_frame = torch.arange(frames) // RELEASE_CLIP_FRAMES
    assert torch.equal(
        out.trajectory_ids // num_traj, chunk_of_frame.view(1, frames, 1, 1).expand_as(out.trajectory_ids)
    )
    for c, single in enumerate(singles):
        frames_of_chunk = slice(c * 8, (c + 1) * 8)
        # bound: the same chunk in a batch of another size (other kernels' blocking), up to the logits.
        bound = float_error_bound(max(single.assignment_logits.abs().max().item(), 1.0), _LOGITS)
        torch.testing.assert_close(
            out.assignment_logits[:, frames_of_chunk], single.assignment_logits, atol=bound, rtol=0
        )
        assert_ids_equal_up_to_ties(
            out.trajectory_ids[:, frames_of_chunk] - c * num_traj,
            single.trajectory_ids,
            single.assignment_logits,
            bound,
        )


# ----------------------------------------------------------------------- contrastive gradient into the grouping
GROUPING = ("query_perceiver", "query_latents", "query_head", "pixel_head", "logit_scale")


def _grouping_gradients(model, **inputs):
    """Gradient of the contrastive loss w.r.t. the grouping part of the tokenizer ({name: [grad or None]}) and the
    total |gradient| into the backbone features."""
    tokenizer = model.vision_model.tokenizer
    parts = {name: getattr(tokenizer, name) for name in GROUPING}
    groups = {name: [p] if isinstance(p, torch.nn.Parameter) else list(p.parameters()) for name, p in parts.items()}
    features = list(tokenizer.feature_extractor.parameters())
    flat = [p for params in groups.values() for p in params] + features
    out = model(**inputs, return_loss=True)
    grads = iter(torch.autograd.grad(out.contrastive_loss, flat, allow_unused=True))
    found = {name: [next(grads) for _ in params] for name, params in groups.items()}
    feature_grad = sum(g.abs().sum().item() for g in grads if g is not None)
    return found, feature_grad


@pytest.mark.parametrize(
    "query_init, reaches_grouping",
    [("latent", False), ("latent_plus_soft_pool", True), ("soft_pool", True)],
)
def test_contrastive_gradient_into_the_grouping(query_init, reaches_grouping):
    """With query_init="latent" (the release) the tokens see the grouping only through the hard mask: the contrastive
    gradient into the query Perceiver, query latents, both assignment heads and the logit scale is exactly zero
    (not in the graph); the soft-pool variants (Eq. 2) pass it. The features train either way."""
    torch.manual_seed(0)
    model = tiny_trajvit2_model(tokenizer_overrides={"query_init": query_init})
    found, feature_grad = _grouping_gradients(
        model, **text_batch(2), pixel_values_videos=video_batch(2, 2, size=32), tokens_per_trajectory=1
    )
    for name, grads in found.items():
        if reaches_grouping:
            assert any(g is not None and g.abs().sum() > 0 for g in grads), name
        else:
            assert all(g is None for g in grads), name
    assert feature_grad > 0


def test_converted_release_passes_no_contrastive_gradient_into_the_grouping(trajvit2_converted, reference):
    found, feature_grad = _grouping_gradients(
        trajvit2_converted,
        input_ids=reference["input_ids"][:2],  # one caption per video (the fixture has 3 captions, 2 videos)
        attention_mask=reference["attention_mask"][:2],
        pixel_values_videos=reference["pixel_values"],
    )
    assert all(g is None for grads in found.values() for g in grads)
    assert feature_grad > 0
