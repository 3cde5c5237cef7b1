"""The model sizes of the training scripts (trajtok_hf/training/presets.py, ``--preset``)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_presets_give_valid_configs(preset):
    from transformers import BertConfig

    from trajtok_hf import TrajTokConfig, TrajViT2Config
    from trajtok_hf.training import TRAJTOK_PRESETS, TRAJVIT2_PRESETS

    tokenizer = TrajTokConfig(**TRAJTOK_PRESETS[preset])
    spec = TRAJVIT2_PRESETS[preset]
    for vision_tokenizer in ("trajtok", "vit3d"):
        vision = dict(spec["vision"], vision_tokenizer=vision_tokenizer)
        if vision_tokenizer == "trajtok":
            vision["trajtok_config"] = tokenizer
        config = TrajViT2Config(
            vision_config=vision, text_config=BertConfig(vocab_size=60, **spec["text"]).to_dict(), **spec["model"]
        )
        assert config.vision_tokenizer == vision_tokenizer
