"""TrajVLM (paper Sec. 5): config, connector, variable-count placeholder expansion, loss, batching, generate with
cache, save/load, frozen segmenter. Every behavioural check runs for both connectors ("trajtok", "patch_pool")."""

import re

import pytest
import torch
from safetensors.torch import load_file, save_file
from testers import (
    TRAJVLM_REDUCTION_LENGTH,
    TRAJVLM_VIDEO_TOKEN_ID,
    assert_close_within_bound,
    tiny_trajvlm_config,
    tiny_trajvlm_model,
    trajvlm_text_batch,
    video_batch,
)
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText

from trajtok_hf import TrajVLMConfig, TrajVLMForConditionalGeneration, TrajVLMModel
from trajtok_hf.models.modeling_trajvlm import UNUSED_TOWER_MODULES, patch_pool

VID = TRAJVLM_VIDEO_TOKEN_ID
CONNECTORS = pytest.mark.parametrize("connector", ["trajtok", "patch_pool"])


def _model(connector, **kwargs):
    torch.manual_seed(0)
    if connector == "patch_pool":
        kwargs.setdefault("patch_pool_temporal_size", 2)
        return tiny_trajvlm_model("patch_pool", **kwargs)
    # 16 trajectory slots on the 8×8 segmenter grid: random videos activate different numbers of them.
    return tiny_trajvlm_model(tokenizer_overrides={"num_trajectories": 16}, **kwargs)


def _videos_with_different_counts(model, frames=6, seed=0):
    """Two videos whose token counts differ (for patch pooling: always equal, so the text lengths differ instead)."""
    for offset in range(20):
        videos = video_batch(2, frames, size=32, seed=seed + offset)
        with torch.no_grad():
            counts = model.get_video_features(videos).num_video_tokens
        if model.config.connector_type == "patch_pool" or counts[0] != counts[1]:
            return videos, counts
    raise AssertionError("no pair of random videos with different active-trajectory counts")


def _left_padded_prompts():
    """Row 0: 6 tokens; row 1: 4 tokens, left-padded (pad id 0); one placeholder each."""
    input_ids = torch.tensor([[11, 12, VID, 13, 14, 15], [0, 0, 21, VID, 22, 23]])
    attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    return input_ids, attention_mask


# ------------------------------------------------------------------------------------------------------------- config
def test_default_config_is_the_paper_setup_and_builds_offline():
    config = TrajVLMConfig()
    assert config.vision_config.model_type == "siglip_vision_model" and config.patch_grid == 27
    assert config.text_config.model_type == "qwen3" and config.text_config.hidden_size == 2560
    assert config.trajtok_config.chunk_size == config.chunk_size == 16
    assert config.segmenter_image_size == 224 and config.freeze_segmenter and config.tie_word_embeddings
    assert TrajVLMConfig(connector_type="patch_pool").trajtok_config is None
    round_trip = TrajVLMConfig.from_dict(config.to_dict())
    assert round_trip.trajtok_config.num_trajectories == 128 and round_trip.vision_config.image_size == 378


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(connector_type="pooling"), "connector_type"),
        (dict(chunk_size=8), "chunk_size"),
        (dict(connector_num_attention_heads=5), "connector_num_attention_heads"),
        (dict(video_token_id=100), "vocab_size"),
        (dict(tokens_per_trajectory=3), "tokens_per_trajectory"),
        (dict(vision_feature_select_strategy="cls"), "vision_feature_select_strategy"),
        (dict(vision_image_std=[0.5, 0.5]), "vision_image_std"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_trajvlm_config(**kwargs)


def test_auto_classes():
    config = tiny_trajvlm_config()
    assert isinstance(AutoConfig.for_model("trajvlm"), TrajVLMConfig)
    assert type(AutoModelForImageTextToText.from_config(config)) is TrajVLMForConditionalGeneration
    assert type(AutoModel.from_config(config)) is TrajVLMModel


# ---------------------------------------------------------------------------------------------------------- connector
def test_patch_pool_averages_windows_and_partial_windows():
    x = torch.randn(2, 3, 5, 5, 4)
    pooled = patch_pool(x, spatial=2, temporal=2)
    assert pooled.shape == (2, 2 * 3 * 3, 4)
    # Bound: a mean of 2·2·2 = 8 terms, summed in another order.
    assert_close_within_bound(pooled[:, 0], x[:, 0:2, 0:2, 0:2].mean(dim=(1, 2, 3)), reduction_length=8)
    assert torch.equal(pooled[:, -1], x[:, 2, 4, 4])  # last partial window, one position: that value


@torch.no_grad()
def test_video_features_are_the_active_trajectories_of_independent_chunks():
    model = _model("trajtok")
    videos = video_batch(2, 6, size=32, seed=3)  # chunks of 4 frames: one full chunk + a last chunk of 2
    out = model.get_video_features(videos)
    num_traj = model.config.trajtok_config.num_trajectories
    assert out.token_mask.shape == (2, 2 * num_traj) and out.trajectory_ids.shape == (2, 6, 4, 4)
    # A trajectory is active iff it owns a tower patch after the resize; ids are global (chunk·K + k).
    for b in range(2):
        owned = torch.zeros(2 * num_traj, dtype=torch.bool)
        owned[out.trajectory_ids[b].unique()] = True
        assert torch.equal(owned, out.token_mask[b])
        assert out.trajectory_ids[b, :4].max() < num_traj <= out.trajectory_ids[b, 4:].min()
    assert out.num_video_tokens.tolist() == out.token_mask.sum(1).tolist()
    assert [len(t) for t in out.pooler_output] == out.num_video_tokens.tolist()
    assert out.video_embeds.shape == (int(out.num_video_tokens.sum()), model.config.text_config.hidden_size)
    # Chunks are tokenized independently: the second chunk alone gives that chunk's tokens.
    first = model.get_video_features(videos[:, :4])
    second = model.get_video_features(videos[:, 4:])
    for b in range(2):
        expected = torch.cat([first.pooler_output[b], second.pooler_output[b]])
        # Bound: the tiny model's reduction chain (testers.TRAJVLM_REDUCTION_LENGTH), batched differently.
        assert_close_within_bound(out.pooler_output[b], expected, TRAJVLM_REDUCTION_LENGTH)


@torch.no_grad()
def test_tokens_per_trajectory_multiplies_the_count():
    one = _model("trajtok")
    two = _model("trajtok", tokens_per_trajectory=2)
    two.model.segmenter.load_state_dict(one.model.segmenter.state_dict())
    two.model.vision_tower.load_state_dict(one.model.vision_tower.state_dict())
    videos = video_batch(2, 4, size=32, seed=1)
    counts_one = one.get_video_features(videos).num_video_tokens
    assert torch.equal(two.get_video_features(videos).num_video_tokens, 2 * counts_one)
    offsets = two.model.connector.subtoken_offsets
    assert offsets.shape == (2, 32) and 0 < offsets.abs().max() < 0.1 and not torch.equal(offsets[0], offsets[1])


# ---------------------------------------------------------------------------------------------------------- expansion
@CONNECTORS
@torch.no_grad()
def test_expansion_loss_and_labels(connector):
    model = _model(connector)
    videos, counts = _videos_with_different_counts(model)
    input_ids, attention_mask = _left_padded_prompts()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=videos, labels=labels)
    assert torch.isfinite(out.loss)
    lengths = attention_mask.sum(1) - 1 + counts  # placeholder replaced by its video's tokens
    assert out.logits.shape[1] == int(lengths.max())
    assert out.expanded_attention_mask.sum(1).tolist() == lengths.tolist()
    assert out.video_token_mask.sum(1).tolist() == counts.tolist()
    # -100 over video tokens and padding; the text labels in order everywhere else.
    assert (out.expanded_labels[out.video_token_mask] == -100).all()
    assert (out.expanded_labels[out.expanded_attention_mask == 0] == -100).all()
    for row in range(2):
        text = out.expanded_attention_mask[row].bool() & ~out.video_token_mask[row]
        assert torch.equal(out.expanded_labels[row, text], labels[row][(labels[row] != -100) & (input_ids[row] != VID)])
    # Left padding is kept (generation needs it); positions count real tokens only.
    assert out.expanded_attention_mask[:, -1].all()
    for row in range(2):
        mask = out.expanded_attention_mask[row].bool()
        assert torch.equal(out.expanded_position_ids[row, mask], torch.arange(int(mask.sum())))
    # The loss is the mean next-token cross-entropy over the expanded labels.
    shift_logits, shift_labels = out.logits[:, :-1], out.expanded_labels[:, 1:]
    keep = shift_labels != -100
    expected = torch.nn.functional.cross_entropy(shift_logits[keep], shift_labels[keep])
    # Bound: the same logits; the log-sum-exp over the vocabulary and the mean over the targets are summed anew.
    assert_close_within_bound(out.loss, expected, reduction_length=100 + int(keep.sum()))


@torch.no_grad()
def test_expansion_matches_a_row_by_row_reference():
    model = _model("trajtok")
    base = model.model
    input_ids = torch.tensor([[11, VID, 12, VID, 13], [21, 22, 23, 24, VID]])  # 3 videos, row 0 holds two
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    position_ids = torch.tensor([[0, 1, 2, 3, 4], [10, 11, 12, 13, 14]])  # custom positions are shifted, not reset
    labels = input_ids.clone()
    counts = torch.tensor([3, 0, 2])
    video_embeds = torch.randn(int(counts.sum()), 32)
    embeds = base.get_input_embeddings()(input_ids)
    got = base._expand(input_ids == VID, embeds, video_embeds, counts, attention_mask, position_ids, labels)
    videos = list(torch.split(video_embeds, counts.tolist()))
    rows = []
    video_index = 0
    for row in range(2):
        parts, positions, targets = [], [], []
        for col in range(input_ids.shape[1]):
            start = position_ids[row, col] + (sum(len(p) for p in parts) - col)
            if input_ids[row, col] == VID:
                parts.append(videos[video_index])
                positions += [int(start) + j for j in range(len(videos[video_index]))]
                targets += [-100] * len(videos[video_index])
                video_index += 1
            else:
                parts.append(embeds[row, col : col + 1])
                positions.append(int(start))
                targets.append(int(labels[row, col]))
        rows.append((torch.cat(parts), positions, targets))
    width = max(len(r[1]) for r in rows)
    for row, (emb, positions, targets) in enumerate(rows):
        pad = width - len(positions)  # unpadded input → left padding
        assert torch.equal(got["inputs_embeds"][row, pad:], emb)  # a scatter: copies, no arithmetic
        assert got["position_ids"][row, pad:].tolist() == positions
        assert got["labels"][row, pad:].tolist() == targets
        assert got["attention_mask"][row].tolist() == [0] * pad + [1] * len(positions)


@CONNECTORS
@pytest.mark.parametrize("padding_side", ["left", "right"])
@torch.no_grad()
def test_batch_with_different_counts_equals_each_alone(connector, padding_side):
    model = _model(connector)
    videos, counts = _videos_with_different_counts(model)
    input_ids, attention_mask = _left_padded_prompts()
    if padding_side == "right":
        input_ids = torch.tensor([[11, 12, VID, 13, 14, 15], [21, VID, 22, 23, 0, 0]])
        attention_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    batch = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=videos, labels=labels)
    if padding_side == "right":
        assert (batch.expanded_attention_mask[:, 0] == 1).all()  # right-padded input stays right-padded
    for row in range(2):
        real = attention_mask[row].bool()
        alone = model(input_ids=input_ids[row : row + 1, real], pixel_values_videos=videos[row : row + 1])
        text = batch.expanded_attention_mask[row].bool()
        # Bound: the tiny model's reduction chain; batching and padding change only the summation order.
        assert_close_within_bound(batch.logits[row, text], alone.logits[0], TRAJVLM_REDUCTION_LENGTH)
        assert torch.equal(batch.video_token_mask[row, text], alone.video_token_mask[0])


# --------------------------------------------------------------------------------------------------------- generation
@CONNECTORS
@torch.no_grad()
def test_greedy_generate_with_cache_equals_manual_loop_without_cache(connector):
    model = _model(connector)
    videos, _ = _videos_with_different_counts(model)
    input_ids, attention_mask = _left_padded_prompts()
    steps = 6
    generated = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        pixel_values_videos=videos,
        max_new_tokens=steps,
        min_new_tokens=steps,
        do_sample=False,
        pad_token_id=0,
    )
    ids, mask = input_ids, attention_mask
    for _ in range(steps):
        logits = model(input_ids=ids, attention_mask=mask, pixel_values_videos=videos, use_cache=False).logits
        logits[:, -1, 4] = -float("inf")  # min_new_tokens: the eos id cannot be chosen
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    assert torch.equal(generated, ids)
    no_cache = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        pixel_values_videos=videos,
        max_new_tokens=steps,
        min_new_tokens=steps,
        do_sample=False,
        pad_token_id=0,
        use_cache=False,
    )
    assert torch.equal(no_cache, ids)


@torch.no_grad()
def test_video_tokens_are_computed_once_during_generate():
    model = _model("trajtok")
    calls = []
    original = model.model.get_video_features
    model.model.get_video_features = lambda *a, **k: calls.append(1) or original(*a, **k)
    videos = video_batch(1, 4, size=32, seed=2)
    prompt = trajvlm_text_batch(1, seed=3)
    out = model.generate(
        **prompt, pixel_values_videos=videos, max_new_tokens=5, min_new_tokens=5, do_sample=False, pad_token_id=0
    )
    assert out.shape == (1, prompt["input_ids"].shape[1] + 5) and len(calls) == 1


@torch.no_grad()
def test_beam_search_and_several_return_sequences_run():
    model = _model("trajtok")
    videos, _ = _videos_with_different_counts(model)
    input_ids, attention_mask = _left_padded_prompts()
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        pixel_values_videos=videos,
        max_new_tokens=3,
        num_beams=2,
        num_return_sequences=2,
        do_sample=False,
        pad_token_id=0,
    )
    assert out.shape[0] == 4 and torch.equal(out[::2, :6], input_ids)


# ------------------------------------------------------------------------------------------- save/load and training
@CONNECTORS
@torch.no_grad()
def test_save_load_identical_with_variable_counts(connector, tmp_path):
    model = _model(connector, tokens_per_trajectory=2) if connector == "trajtok" else _model(connector)
    videos, _ = _videos_with_different_counts(model)
    input_ids, attention_mask = _left_padded_prompts()
    expected = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=videos).logits
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(loaded) is TrajVLMForConditionalGeneration
    got = loaded(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=videos).logits
    # Bound: identical weights; only a kernel choice for the freshly allocated tensors may reorder the sums.
    assert_close_within_bound(got, expected, TRAJVLM_REDUCTION_LENGTH)
    if connector == "trajtok":
        assert not any(p.requires_grad for p in loaded.model.segmenter.parameters())


def test_gradients_reach_tower_connector_projector_and_llm_but_not_the_frozen_segmenter():
    model = _model("trajtok").train()
    assert not model.model.segmenter.training  # a frozen segmenter always runs in eval mode
    videos, _ = _videos_with_different_counts(model)
    input_ids, attention_mask = _left_padded_prompts()
    out = model(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=videos, labels=input_ids)
    out.loss.backward()
    for name in ("vision_tower", "connector", "multi_modal_projector", "language_model"):
        grads = [p.grad for p in getattr(model.model, name).parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    assert all(p.grad is None for p in model.model.segmenter.parameters())

    trainable = _model("trajtok", freeze_segmenter=False).train()
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=videos, labels=input_ids)
    trainable(**inputs).loss.backward()
    assert trainable.model.segmenter.query_latents.grad is not None


@torch.no_grad()
def test_text_only_prompt_and_placeholder_checks():
    model = _model("trajtok")
    text = torch.tensor([[11, 12, 13]])
    assert model(input_ids=text).logits.shape == (1, 3, 100)
    videos = video_batch(1, 4, size=32)
    with pytest.raises(ValueError, match="padding"):
        model(
            input_ids=torch.tensor([[VID, 11, 12]]),
            attention_mask=torch.tensor([[0, 1, 1]]),
            pixel_values_videos=videos,
        )
    with pytest.raises(ValueError, match="labels"):
        model(input_ids=torch.tensor([[VID, 11, 12]]), labels=torch.tensor([[1, 2]]), pixel_values_videos=videos)
    with pytest.raises(ValueError, match="1 video"):
        model(input_ids=torch.tensor([[VID, 11, VID]]), pixel_values_videos=videos)


# ------------------------------------------------------------------------------------ conformance and bad input
_IDS = torch.tensor([[7, VID, 9]])
BAD_INPUTS = [
    (dict(input_ids=torch.tensor([[7, VID, 100]])), ValueError, "input_ids must lie in"),
    (dict(input_ids=torch.tensor([[-1, VID, 9]])), ValueError, "input_ids must lie in"),
    (dict(input_ids=_IDS.float()), TypeError, "input_ids must be an integer"),
    (dict(input_ids=_IDS, attention_mask=torch.zeros(1, 3, dtype=torch.long)), ValueError, "all zeros"),
    (dict(input_ids=_IDS, attention_mask=torch.tensor([[1, 2, 1]])), ValueError, "attention_mask must hold"),
    (dict(input_ids=_IDS, pixel_values_videos=torch.full((1, 4, 3, 32, 32), float("nan"))), ValueError, "finite"),
    (dict(input_ids=_IDS, pixel_values_videos=torch.full((1, 4, 3, 32, 32), float("inf"))), ValueError, "finite"),
    (dict(input_ids=_IDS, pixel_values_videos=torch.full((1, 4, 3, 32, 32), 1e30)), ValueError, "finite"),
    (
        dict(input_ids=_IDS, pixel_values_videos=torch.zeros(1, 4, 3, 32, 32, dtype=torch.long)),
        ValueError,
        "float tensor",
    ),
    (dict(input_ids=_IDS, labels=torch.tensor([[1, 2]])), ValueError, "labels must have the shape"),
    (
        dict(input_ids=_IDS, labels=torch.tensor([[7, -100, 100]])),
        ValueError,
        r"labels must be token ids in \[0, 100\)",
    ),
    (dict(input_ids=_IDS, labels=torch.tensor([[7, -100, -5]])), ValueError, r"got values in \[-5, 7\]"),
    (dict(input_ids=_IDS, labels=_IDS.float()), TypeError, "labels must be an integer"),
    (
        dict(inputs_embeds=torch.zeros(1, 3, 32), labels=torch.tensor([[1, 2]])),
        ValueError,
        "labels must have the shape",
    ),
]


@pytest.mark.parametrize("kwargs, error, match", BAD_INPUTS)
def test_bad_inputs_raise_named_errors(kwargs, error, match):
    model = _model("trajtok")
    kwargs = {"pixel_values_videos": video_batch(1, 4, size=32), **kwargs}
    with pytest.raises(error, match=match):
        model(**kwargs)


def test_return_dict_false_tie_word_embeddings_and_video_features_options():
    model = _model("trajtok")
    inputs = {**trajvlm_text_batch(1), "pixel_values_videos": video_batch(1, 4, size=32)}
    with torch.no_grad():
        as_tuple = model.model(**inputs, return_dict=False)
        features = model.get_video_features(
            inputs["pixel_values_videos"], output_hidden_states=True, output_attentions=True
        )
        features_tuple = model.get_video_features(inputs["pixel_values_videos"], return_dict=False)
    assert isinstance(as_tuple, tuple) and isinstance(features_tuple, tuple)
    # Hidden states: embeddings + 2 layers. Attentions are accepted (transformers records them with eager attention
    # only).
    assert len(features.hidden_states) == 3 and isinstance(features.attentions, tuple)
    assert (
        tiny_trajvlm_config(tie_word_embeddings=False, text_overrides={"tie_word_embeddings": True}).tie_word_embeddings
        is False
    )
    assert tiny_trajvlm_config(text_overrides={"tie_word_embeddings": True}).tie_word_embeddings is True


def test_shift_labels_give_the_labels_loss():
    model = _model("trajtok")
    inputs = {**trajvlm_text_batch(1), "pixel_values_videos": video_batch(1, 4, size=32)}
    labels = inputs["input_ids"].clone()
    shift = torch.nn.functional.pad(labels, (0, 1), value=-100)[:, 1:]
    with torch.no_grad():
        slots = model.get_video_features(inputs["pixel_values_videos"]).token_mask.shape[1]
        ids = torch.cat([labels[:, :2], torch.full((1, slots), VID), labels[:, 3:]], dim=1)
        slot_labels = ids.masked_fill(ids == VID, -100)
        shift_slot = torch.nn.functional.pad(slot_labels, (0, 1), value=-100)[:, 1:]
        a = model(input_ids=ids, pixel_values_videos=inputs["pixel_values_videos"], labels=slot_labels).loss
        b = model(input_ids=ids, pixel_values_videos=inputs["pixel_values_videos"], shift_labels=shift_slot).loss
        with pytest.raises(ValueError, match="shift_labels"):
            model(**inputs, shift_labels=shift)
    # Bound: same logits and targets; only the cross-entropy's sums (vocabulary 100, <= 40 targets) are redone.
    assert_close_within_bound(a, b, reduction_length=100 + ids.shape[1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_runs_from_fp32_pixels(dtype):
    model = _model("trajtok").to(dtype)
    inputs = {**trajvlm_text_batch(1), "pixel_values_videos": video_batch(1, 4, size=32)}
    try:
        with torch.no_grad():
            out = model(**inputs)
    except RuntimeError as error:  # an op without a kernel for this dtype on this CPU
        pytest.skip(f"{dtype} not supported on this CPU: {error}")
    assert out.logits.dtype == dtype and bool(torch.isfinite(out.logits).all())


# ------------------------------------------------------------------------------------- transformers conventions
def _plan_key_matches(key: str, module_names: set[str]) -> bool:
    """A tensor-parallel plan key ("layers.*.mlp.up_proj": `*` = a layer index) names at least one module."""
    pattern = re.compile(re.escape(key).replace(r"\*", r"\d+"))
    return any(pattern.fullmatch(name) for name in module_names)


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("model_class", [TrajVLMModel, TrajVLMForConditionalGeneration])
def test_tensor_parallel_plan_names_modules_and_shards_the_tied_head_with_the_embedding(model_class, tie):
    model = model_class(tiny_trajvlm_config(tie_word_embeddings=tie))
    names = {name for name, _ in model.named_modules()}
    plan = model.tp_plan
    assert plan and [key for key in plan if not _plan_key_matches(key, names)] == []
    embedding = {module: name for name, module in model.named_modules()}[model.get_input_embeddings()]
    assert embedding in plan
    if model_class is TrajVLMForConditionalGeneration:
        # A tied head IS the embedding's weight: both sharded (as LLaVA / Qwen3ForCausalLM), vocab-parallel logits
        # gathered.
        assert plan["lm_head"] == "colwise_gather_output"
        assert (model.lm_head.weight is model.get_input_embeddings().weight) == tie


@pytest.mark.parametrize(
    "connector, kwargs",
    [
        ("trajtok", {}),
        ("trajtok", {"tokens_per_trajectory": 2}),
        ("trajtok", {"vision_overrides": {"vision_use_head": True}}),  # SigLIP's pooling head: dropped too
        ("patch_pool", {}),
    ],
)
def test_every_trainable_parameter_gets_a_gradient(connector, kwargs):
    model = _model(connector, **kwargs).train()
    tower = model.model.vision_tower
    assert isinstance(tower.post_layernorm, torch.nn.Identity)
    assert all(isinstance(getattr(tower, name, None), (torch.nn.Identity, type(None))) for name in UNUSED_TOWER_MODULES)
    videos, _ = _videos_with_different_counts(model)
    input_ids, attention_mask = _left_padded_prompts()
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values_videos=videos, labels=input_ids)
    model(**inputs).loss.backward()
    without = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert without == []


def test_checkpoints_with_the_unused_tower_norm_load_without_warnings(tmp_path, caplog):
    """Folders saved while the tower kept its post-LayerNorm (which never reached the features) still load."""
    model = _model("trajtok")
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    width = model.config.vision_config.hidden_size
    weights["model.vision_tower.post_layernorm.weight"] = torch.ones(width)
    weights["model.vision_tower.post_layernorm.bias"] = torch.zeros(width)
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level("WARNING"):
        loaded, info = TrajVLMForConditionalGeneration.from_pretrained(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == set() or info["unexpected_keys"] == []
    assert not info["missing_keys"] and "post_layernorm" not in caplog.text
    inputs = {**trajvlm_text_batch(1), "pixel_values_videos": video_batch(1, 4, size=32)}
    with torch.no_grad():
        # Bound: identical weights; only kernel choices for the reloaded tensors may reorder the sums.
        assert_close_within_bound(loaded.eval()(**inputs).logits, model(**inputs).logits, TRAJVLM_REDUCTION_LENGTH)


@pytest.mark.parametrize("how", ["from_config_kwarg", "per_sub_config_dict"])
def test_attention_implementation_reaches_the_connector(how):
    config = tiny_trajvlm_config()
    if how == "from_config_kwarg":
        model = AutoModelForImageTextToText.from_config(config, attn_implementation="eager")
    else:
        config._attn_implementation = {"": "eager", **{key: "eager" for key in config.sub_configs}}
        model = TrajVLMForConditionalGeneration(config)
    attentions = [m for m in model.model.connector.modules() if type(m).__name__.endswith("Attention")]
    assert attentions and all(m.config._attn_implementation == "eager" for m in attentions)
    assert all(m.config is model.config for m in attentions)  # live: set_attn_implementation reaches them too


@pytest.mark.parametrize("via", ["argument", "config"])
@torch.no_grad()
def test_video_features_hidden_states_and_attentions_by_argument_or_config(via):
    config = tiny_trajvlm_config(text_overrides={})
    if via == "config":
        config.output_hidden_states = config.output_attentions = True
    model = AutoModelForImageTextToText.from_config(config, attn_implementation="eager").eval()
    options = {"output_hidden_states": True, "output_attentions": True} if via == "argument" else {}
    out = model.get_video_features(video_batch(1, 4, size=32), **options)
    layers = config.vision_config.num_hidden_layers
    assert len(out.hidden_states) == layers + 1 and len(out.attentions) == layers
    assert out.attentions[0].shape == (4, config.vision_config.num_attention_heads, 16, 16)  # 4 frames, 4×4 patches


@CONNECTORS
@torch.no_grad()
def test_inputs_embeds_equal_input_ids_in_the_compact_form(connector):
    """One <video> per video, given as embeddings: found as the <video> embedding and expanded as from ids."""
    model = _model(connector)
    videos, _ = _videos_with_different_counts(model)
    input_ids, attention_mask = _left_padded_prompts()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    inputs = dict(attention_mask=attention_mask, pixel_values_videos=videos, labels=labels)
    from_ids = model(input_ids=input_ids, **inputs)
    from_embeds = model(inputs_embeds=model.get_input_embeddings()(input_ids), **inputs)
    # The same embeddings through the same expansion and LLM: identical (no arithmetic differs).
    assert torch.equal(from_embeds.logits, from_ids.logits) and torch.equal(from_embeds.loss, from_ids.loss)
    assert torch.equal(from_embeds.expanded_attention_mask, from_ids.expanded_attention_mask)
