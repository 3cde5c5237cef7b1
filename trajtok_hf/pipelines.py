"""Zero-shot video classification as a transformers ``Pipeline`` (CLIP-style, as TrajViT2 is evaluated, paper Sec. 4).

``import trajtok_hf`` registers the task ``"zero-shot-video-classification"`` with ``PIPELINE_REGISTRY``, so

    >>> from transformers import pipeline
    >>> classifier = pipeline("zero-shot-video-classification", model="checkpoints/trajvit2-tiny-shapes")
    >>> classifier("clip.mp4", candidate_labels=["a red circle moves left", "a blue star rotates"])
    [{'score': 0.97, 'label': 'a red circle moves left'}, {'score': 0.03, 'label': 'a blue star rotates'}]

works like transformers' ``zero-shot-image-classification``: each candidate label is put into
``hypothesis_template``, every video is scored against every label by the model's ``logits_per_video`` (the
temperature-scaled cosine of the two embeddings) and the scores are the softmax over the labels, sorted high to low.

transformers has no video counterpart of this task. The default ``hypothesis_template`` is ``"{}"`` (the label as
given) rather than the image pipeline's ``"This is a photo of {}."``: the checkpoints trained here use a closed
caption vocabulary, and a phrase outside it would map to ``[UNK]``; pass a template for a model with an open
vocabulary (e.g. ``"a video of {}."``). Words that the text tokenizer maps to its unknown token (in the labels or the
template) are listed in a logged warning, since every such word reads the same to the model.

``candidate_labels`` given as one string is split on commas (``"cat, dog"`` → ``["cat", "dog"]``, blanks dropped), as
transformers' ``zero-shot-classification`` pipeline parses its labels; pass a list to keep commas inside a label.

Any model whose forward takes ``pixel_values_videos`` / ``input_ids`` / ``attention_mask`` and returns
``logits_per_video`` works (``TrajViT2Model`` with either vision tokenizer); its processor (``AutoProcessor``) takes
``videos=`` and ``text=``. A video is a file path, a ``(T, H, W, 3)`` array / tensor, or a list of PIL frames; a list of
those is a batch and gives one result list per video.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import AutoModel, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import logging

__all__ = ["ZeroShotVideoClassificationPipeline", "register_pipelines"]

logger = logging.get_logger(__name__)

TASK = "zero-shot-video-classification"


def _parse_labels(candidate_labels) -> list[str]:
    """The labels as a non-empty list of strings; one string is split on commas (transformers' zero-shot-classification
    convention: ``"cat, dog"`` → ``["cat", "dog"]``, blank entries dropped)."""
    if candidate_labels is None:
        raise ValueError("candidate_labels is required: a list of label strings (or one comma-separated string)")
    if isinstance(candidate_labels, str):
        candidate_labels = [label.strip() for label in candidate_labels.split(",") if label.strip()]
    if not isinstance(candidate_labels, (list, tuple)) or not candidate_labels:
        raise ValueError(f"candidate_labels must be a non-empty list of strings, got {candidate_labels!r}")
    if not all(isinstance(label, str) for label in candidate_labels):
        raise TypeError("candidate_labels must be a list of strings")
    return list(candidate_labels)


def _unknown_words(tokenizer, texts: list[str]) -> list[str]:
    """The whitespace-separated words of `texts` that `tokenizer` maps (in part) to its unknown token, in order."""
    unk_id = getattr(tokenizer, "unk_token_id", None)
    if unk_id is None:
        return []
    words = list(dict.fromkeys(word for text in texts for word in text.split()))
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    return [word for word, word_ids in zip(words, ids, strict=True) if unk_id in word_ids]


def _is_single_video(value: Any) -> bool:
    """One video (path, 4-D array/tensor, list of PIL frames) rather than a batch of them."""
    if isinstance(value, str):
        return True
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.ndim == 4
    if isinstance(value, (list, tuple)) and value:
        from PIL import Image

        return isinstance(value[0], Image.Image)
    return False


def _check_template(hypothesis_template) -> str:
    if not isinstance(hypothesis_template, str) or hypothesis_template.count("{}") != 1:
        raise ValueError(f"hypothesis_template must be a string with one '{{}}', got {hypothesis_template!r}")
    return hypothesis_template


class ZeroShotVideoClassificationPipeline(Pipeline):
    """Score videos against free-text candidate labels with a video-text dual encoder (see the module docstring).

    Call arguments:
        videos: one video or a list of videos (see the module docstring).
        candidate_labels (`list[str]` or `str`): the labels, at least one; a string is split on commas.
        hypothesis_template (`str`, defaults to `"{}"`): format string with one `{}` for the label.
        tokenizer_kwargs (`dict`, *optional*): passed to the processor's tokenizer (default: `padding=True`).
        top_k (`int`, *optional*): return only the `top_k` best labels (as transformers' zero-shot image
            classification); all of them by default.

    Returns: for one video, a list of `{"score": float, "label": str}` sorted by score (scores are a softmax over
    all the labels, so the full list sums to 1); for a list of videos, one such list per video.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_video_processor = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.processor is None:
            raise ValueError(f"the {TASK} pipeline needs a processor with videos= and text= (AutoProcessor)")

    def __call__(self, videos=None, candidate_labels: list[str] | str | None = None, **kwargs):
        if videos is None:
            videos = kwargs.pop("video", None)
        if videos is None:
            raise ValueError(f"the {TASK} pipeline needs a video (path, (T, H, W, 3) array or list of PIL frames)")
        candidate_labels = _parse_labels(candidate_labels)
        single = _is_single_video(videos)
        if not single and (not isinstance(videos, (list, tuple)) or not videos):
            raise TypeError(f"videos must be a video or a non-empty list of videos, got {type(videos).__name__}")
        self._warn_unknown_words(candidate_labels, kwargs.get("hypothesis_template"))
        if single:
            return super().__call__([videos], candidate_labels=candidate_labels, **kwargs)[0]
        return super().__call__(list(videos), candidate_labels=candidate_labels, **kwargs)

    def _warn_unknown_words(self, candidate_labels: list[str], hypothesis_template) -> None:
        """Log the words of the labels and the template that the text tokenizer reads as its unknown token."""
        template = _check_template(hypothesis_template) if hypothesis_template is not None else "{}"
        tokenizer = getattr(self.processor, "tokenizer", None)
        if tokenizer is None:
            return
        unknown = _unknown_words(tokenizer, [template.format(label) for label in candidate_labels])
        if unknown:
            logger.warning(
                f"words outside the text tokenizer's vocabulary are all read as {tokenizer.unk_token!r}, so the model "
                f"cannot tell them apart: {unknown}"
            )

    def _sanitize_parameters(
        self, candidate_labels=None, hypothesis_template=None, tokenizer_kwargs=None, top_k=None, **kwargs
    ):
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected argument(s): {', '.join(sorted(kwargs))}")
        postprocess = {}
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
            postprocess["top_k"] = top_k
        preprocess = {}
        if candidate_labels is not None:
            preprocess["candidate_labels"] = candidate_labels
        if hypothesis_template is not None:
            preprocess["hypothesis_template"] = _check_template(hypothesis_template)
        if tokenizer_kwargs is not None:
            preprocess["tokenizer_kwargs"] = dict(tokenizer_kwargs)
        return preprocess, {}, postprocess

    def preprocess(self, video, candidate_labels=(), hypothesis_template: str = "{}", tokenizer_kwargs=None):
        text_kwargs = {"padding": True, **(tokenizer_kwargs or {})}
        sequences = [hypothesis_template.format(label) for label in candidate_labels]
        inputs = self.processor(videos=video, text=sequences, return_tensors="pt", **text_kwargs)
        inputs["pixel_values_videos"] = inputs["pixel_values_videos"].to(self.dtype)
        inputs["candidate_labels"] = list(candidate_labels)
        return inputs

    def _forward(self, model_inputs):
        candidate_labels = model_inputs.pop("candidate_labels")
        names = ("pixel_values_videos", "input_ids", "attention_mask", "token_type_ids")
        outputs = self.model(**{k: model_inputs[k] for k in names if k in model_inputs})
        return {"candidate_labels": candidate_labels, "logits": outputs.logits_per_video}

    def postprocess(self, model_outputs, top_k: int | None = None):
        scores = model_outputs["logits"][0].float().softmax(dim=-1).tolist()
        ranked = sorted(zip(scores, model_outputs["candidate_labels"], strict=True), key=lambda pair: -pair[0])
        return [{"score": score, "label": label} for score, label in ranked[:top_k]]


def register_pipelines() -> None:
    """Register ``"zero-shot-video-classification"`` (idempotent; run by ``import trajtok_hf``)."""
    if PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl") is ZeroShotVideoClassificationPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=ZeroShotVideoClassificationPipeline, pt_model=AutoModel, type="multimodal"
    )
