"""Caption tokenizer of the training scripts: a word-level BERT tokenizer over a closed caption vocabulary (such as the
synthetic generator's), built without any download."""

from __future__ import annotations

import re


def synthetic_caption_words() -> list[str]:
    """Every word the synthetic generator's captions can contain (lower-cased, punctuation split off)."""
    from ..data import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, SIZES, TEXTURES

    phrases = [
        *COLOURS,
        *SHAPES,
        *SIZES,
        *TEXTURES,
        *MOTIONS.values(),
        *BACKGROUNDS,
        "a while and , on background drifting left right up down",
    ]
    return sorted({word for phrase in phrases for word in _words(phrase)})


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
