"""TrajVLM generation paths against greedy decoding of the same model, in the slot form (one <video> per connector
slot, empty slots masked): what transformers' GenerationTesterMixin checks, for a batch of two videos with different
active-trajectory counts."""

import pytest
import torch
from testers import TRAJVLM_REDUCTION_LENGTH, assert_close_within_bound, tiny_trajvlm_model, video_batch
from testers import TRAJVLM_VIDEO_TOKEN_ID as VID

NEW = 6


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = tiny_trajvlm_model(tokenizer_overrides={"num_trajectories": 16})
    for seed in range(20):
        videos = video_batch(2, 8, size=32, seed=seed)
        with torch.no_grad():
            features = model.get_video_features(videos)
        if features.num_video_tokens[0] != features.num_video_tokens[1]:
            break
    slots = features.token_mask.shape[1]
    assert not bool(features.token_mask.all()), "the test needs empty slots"
    ids = torch.tensor([[11, 12] + [VID] * slots + [13, 14], [0, 21] + [VID] * slots + [22, 23]])
    mask = torch.tensor([[1] * ids.shape[1], [0] + [1] * (ids.shape[1] - 1)])  # row 1 left-padded
    inputs = dict(input_ids=ids, pixel_values_videos=videos, attention_mask=mask)
    common = dict(do_sample=False, max_new_tokens=NEW, min_new_tokens=NEW, pad_token_id=0)
    with torch.no_grad():
        greedy = model.generate(**inputs, **common)
    return model, inputs, common, greedy


def _continue(model, inputs, common):
    half = dict(common, max_new_tokens=NEW // 2, min_new_tokens=NEW // 2)
    first = model.generate(**inputs, **half, return_dict_in_generate=True)
    mask = torch.cat([inputs["attention_mask"], torch.ones(2, NEW // 2, dtype=torch.long)], dim=1)
    return model.generate(**{**inputs, "input_ids": first.sequences, "attention_mask": mask}, **half, cache=first.cache)


def _embeds(model, inputs, common):
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    rest = {k: v for k, v in inputs.items() if k != "input_ids"}
    return torch.cat([inputs["input_ids"], model.generate(inputs_embeds=embeds, **rest, **common)], dim=1)


PATHS = {
    "continue_from_returned_cache": _continue,
    "prompt_lookup": lambda m, i, c: m.generate(**i, **c, prompt_lookup_num_tokens=2),
    "assisted_same_model": lambda m, i, c: m.generate(**i, **c, assistant_model=m),
    "num_beams_1": lambda m, i, c: m.generate(**i, **c, num_beams=1),
    "inputs_embeds": _embeds,
    "no_cache": lambda m, i, c: m.generate(**i, **c, use_cache=False),
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_generation_path_equals_greedy(setup, path):
    model, inputs, common, greedy = setup
    if path in ("assisted_same_model", "prompt_lookup"):  # transformers runs these for one prompt at a time
        inputs = {
            "input_ids": inputs["input_ids"][1:, 1:],  # row 1 without its padding
            "attention_mask": inputs["attention_mask"][1:, 1:],
            "pixel_values_videos": inputs["pixel_values_videos"][1:],
        }
        greedy = greedy[1:, 1:]
    with torch.no_grad():
        assert torch.equal(PATHS[path](model, inputs, common), greedy)


def test_dict_outputs_scores_hidden_states_and_beam_search(setup):
    model, inputs, common, greedy = setup
    with torch.no_grad():
        out = model.generate(
            **inputs, **common, return_dict_in_generate=True, output_scores=True, output_hidden_states=True
        )
        beams = model.generate(**inputs, **common, num_beams=2)
    assert torch.equal(out.sequences, greedy) and len(out.scores) == NEW and out.scores[0].shape == (2, 100)
    assert len(out.hidden_states) == NEW and out.hidden_states[0][0].shape[:2] == inputs["input_ids"].shape
    assert beams.shape == greedy.shape


def test_slot_form_equals_compact_form_and_logits_to_keep(setup):
    """The slot form (empty slots masked) computes what the compact form (one <video>, dropped slots) computes."""
    model, inputs, _, _ = setup
    row = {k: v[:1] for k, v in inputs.items()}
    compact = torch.tensor([[11, 12, VID, 13, 14]])
    labels = torch.tensor([[-100, -100, -100, 13, 14]])
    slot_labels = torch.full_like(row["input_ids"], -100)
    slot_labels[0, -2:] = torch.tensor([13, 14])
    with torch.no_grad():
        slot = model(**row, labels=slot_labels)
        dropped = model(input_ids=compact, pixel_values_videos=row["pixel_values_videos"], labels=labels)
        last = model(**row, logits_to_keep=1)
    # Bound: the tiny model's reduction chain (testers.TRAJVLM_REDUCTION_LENGTH); masking empty slots instead of
    # dropping them changes only the lengths of the attention sums. The loss adds the cross-entropy's sums.
    assert_close_within_bound(slot.logits[:, -2:], dropped.logits[:, -2:], TRAJVLM_REDUCTION_LENGTH)
    assert_close_within_bound(slot.loss, dropped.loss, TRAJVLM_REDUCTION_LENGTH + 100)
    # Bound: the same hidden states; only the LM head's sum over the width (32) may be blocked differently.
    assert_close_within_bound(last.logits, slot.logits[:, -1:], reduction_length=32)
