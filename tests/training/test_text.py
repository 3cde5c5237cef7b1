"""The caption tokenizer of the training scripts (trajtok_hf/training/text.py)."""

from __future__ import annotations

from trajtok_hf.data import SyntheticVideoConfig, generate_clip


def test_caption_tokenizer_covers_the_synthetic_vocabulary():
    from trajtok_hf.training import build_caption_tokenizer, synthetic_caption_words

    tokenizer = build_caption_tokenizer(synthetic_caption_words())
    config = SyntheticVideoConfig(num_frames=2, height=64, width=64, max_objects=4, caption_background=True)
    captions = [generate_clip(config, seed=0, index=i)["caption"] for i in range(100)]
    ids = tokenizer(captions)["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)
    assert tokenizer.convert_ids_to_tokens(ids[0])[0] == "[CLS]"
