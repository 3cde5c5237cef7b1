"""Batch collation for video-text(-segmentation) training.

:class:`VideoTextCollator` turns a list of dataset items (from :func:`make_synthetic_dataset`,
:func:`load_video_text_dataset`, or plain dicts) into model inputs:

* ``pixel_values_videos`` ``(B, T, 3, H, W)`` float — stacked from the items' ``pixel_values_videos``, or
  produced from raw clips by a ``video_processor``; without one, raw clips are stacked as ``videos``
  uint8 ``(B, T, H, W, 3)`` (channels last, exactly as decoded) for the caller to normalise.
* ``input_ids`` / ``attention_mask`` ``(B, L)`` — captions tokenized and padded by ``tokenizer``; without a
  tokenizer the strings are returned as ``captions``.
* ``segmentation_labels`` ``(B, T, h, w)`` long — when any item has labels; items without get ``-100``.
* ``negative_input_ids`` / ``negative_attention_mask`` ``(N, L')`` and ``negative_index`` ``(N,)`` long — when items
  carry a ``negative_caption`` (a hard negative caption of their own video, e.g. ``SyntheticClipDataset``'s
  ``swap_negatives``) and there is a tokenizer: the N items whose negative is not ``None``, tokenized, and their
  positions in the batch.
* ``shape_negative_input_ids`` / ``shape_negative_attention_mask`` / ``shape_negative_index`` — the same for a
  second hard negative per item, ``shape_negative_caption`` (``SyntheticClipDataset``'s ``shape_negatives``).
* ``paraphrase_*`` and ``paraphrase_negative_*`` — the same for ``paraphrase_caption`` (the caption in another
  wording) and ``paraphrase_negative_caption`` (``SyntheticClipDataset``'s ``paraphrases``), and ``fact_negative_*``
  for ``fact_negative_caption`` (``SyntheticClipDataset``'s ``fact_negatives``).

Items whose video failed to decode (``decode_error`` set, or no video at all) are dropped and counted in
``num_dropped``, so one corrupt file never stops an epoch. If every item of a batch failed, the collator
returns ``None``; loops should ``continue`` on it.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .pseudo_labels import IGNORE_INDEX

_VIDEO_KEYS = ("pixel_values_videos", "video", "videos")
_CAPTION_SELECTIONS = ("first", "random")
# Extra captions an item may carry for a loss (key → batch prefix); each is tokenized apart, with its batch rows.
CAPTION_EXTRAS = (
    ("negative_caption", "negative"),
    ("shape_negative_caption", "shape_negative"),
    ("paraphrase_caption", "paraphrase"),
    ("paraphrase_negative_caption", "paraphrase_negative"),
    ("fact_negative_caption", "fact_negative"),
)


def _to_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(np.asarray(value))
    except Exception as err:
        raise TypeError(f"`{name}` of a batch item is not array-like ({type(value).__name__}): {err}") from err


def _stack(values: list[torch.Tensor], name: str) -> torch.Tensor:
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) > 1:
        raise ValueError(
            f"cannot stack `{name}` of different shapes {sorted(shapes)}; resize clips to one size (e.g. pass a "
            "video processor) before collating"
        )
    return torch.stack(values)


class VideoTextCollator:
    """Collate video-text items into a batch (see the module docstring for the keys it returns).

    Args:
        tokenizer: a ``transformers`` tokenizer (``PreTrainedTokenizerBase``) or ``None``.
        max_length: captions are truncated to this many tokens (``None``: no truncation).
        padding: passed to the tokenizer (``True``/``"longest"``, ``"max_length"``, ``False``).
        video_processor: optional callable turning a list of raw uint8 ``(T, H, W, 3)`` clips into a mapping with
            ``pixel_values_videos`` (a transformers video processor, called as
            ``video_processor(videos=clips, return_tensors="pt")``).
        caption_selection: for items with several captions (``captions`` list), use the ``"first"`` or a
            ``"random"`` one (seeded by ``seed``).
        return_captions: also return the caption strings as ``captions``; default: only when there is no
            tokenizer.
        warn_on_drop: warn when items are dropped.

    Attributes:
        num_dropped: items dropped so far by this collator instance (per process).
    """

    def __init__(
        self,
        tokenizer: Any = None,
        max_length: int | None = 64,
        padding: bool | str = True,
        *,
        video_processor: Callable[..., Mapping[str, Any]] | None = None,
        caption_selection: str = "first",
        seed: int | None = None,
        return_captions: bool | None = None,
        warn_on_drop: bool = True,
    ):
        if tokenizer is not None and not callable(tokenizer):
            raise TypeError(f"`tokenizer` must be a callable tokenizer, got {type(tokenizer).__name__}")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ValueError(f"`max_length` must be a positive int or None, got {max_length!r}")
        if video_processor is not None and not callable(video_processor):
            raise TypeError(f"`video_processor` must be callable, got {type(video_processor).__name__}")
        if caption_selection not in _CAPTION_SELECTIONS:
            raise ValueError(f"`caption_selection` must be one of {_CAPTION_SELECTIONS}, got {caption_selection!r}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.padding = padding
        self.video_processor = video_processor
        self.caption_selection = caption_selection
        self.return_captions = tokenizer is None if return_captions is None else return_captions
        self.warn_on_drop = warn_on_drop
        self.num_dropped = 0
        self._rng = random.Random(seed)

    @staticmethod
    def _failed(item: Mapping[str, Any]) -> bool:
        if item.get("decode_error"):
            return True
        present = [k for k in _VIDEO_KEYS if k in item]
        return bool(present) and all(item[k] is None for k in present)

    def _caption(self, item: Mapping[str, Any]) -> str | None:
        captions = item.get("captions")
        if captions is not None and not isinstance(captions, str) and len(captions) > 0:
            captions = list(captions)
            return captions[0] if self.caption_selection == "first" else self._rng.choice(captions)
        caption = item.get("caption", captions if isinstance(captions, str) else None)
        if caption is not None and not isinstance(caption, str):
            raise TypeError(f"`caption` of a batch item must be a string, got {type(caption).__name__}")
        return caption

    def _tokenize(self, texts: list[str]) -> Mapping[str, torch.Tensor]:
        return self.tokenizer(
            texts,
            padding=self.padding,
            truncation=self.max_length is not None,
            max_length=self.max_length,
            return_tensors="pt",
        )

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
        if isinstance(features, Mapping) or not isinstance(features, Sequence):
            raise TypeError(f"`features` must be a list of per-item mappings, got {type(features).__name__}")
        for item in features:
            if not isinstance(item, Mapping):
                raise TypeError(f"`features` items must be mappings, got {type(item).__name__}")
        kept = [item for item in features if not self._failed(item)]
        dropped = len(features) - len(kept)
        if dropped:
            self.num_dropped += dropped
            if self.warn_on_drop:
                warnings.warn(
                    f"dropped {dropped} of {len(features)} batch items whose video failed to decode "
                    f"({self.num_dropped} dropped so far)",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if not kept:
            return None

        batch: dict[str, Any] = {}
        if all("pixel_values_videos" in item for item in kept):
            videos = [_to_tensor(item["pixel_values_videos"], "pixel_values_videos") for item in kept]
            if videos[0].ndim != 4 or videos[0].shape[1] not in (1, 3):
                raise ValueError(f"`pixel_values_videos` items must be (T, 3, H, W), got {tuple(videos[0].shape)}")
            batch["pixel_values_videos"] = _stack(videos, "pixel_values_videos")
        else:
            key = next((k for k in ("video", "videos") if all(k in item for item in kept)), None)
            if key is not None:
                clips = [item[key] for item in kept]
                if self.video_processor is not None:
                    clips = [c.numpy() if isinstance(c, torch.Tensor) else np.asarray(c) for c in clips]
                    processed = self.video_processor(videos=clips, return_tensors="pt")
                    if "pixel_values_videos" not in processed:
                        raise ValueError("`video_processor` output has no 'pixel_values_videos'")
                    batch["pixel_values_videos"] = processed["pixel_values_videos"]
                else:
                    tensors = [_to_tensor(c, key) for c in clips]
                    if tensors[0].ndim != 4 or tensors[0].shape[-1] != 3:
                        raise ValueError(f"raw `{key}` items must be uint8 (T, H, W, 3), got {tuple(tensors[0].shape)}")
                    batch["videos"] = _stack(tensors, key)

        captions = [self._caption(item) for item in kept]
        if any(c is not None for c in captions):
            if any(c is None for c in captions):
                raise ValueError("some batch items have a caption and some do not; cannot build text inputs")
            if self.tokenizer is not None:
                encoded = self._tokenize(captions)
                batch["input_ids"] = encoded["input_ids"]
                batch["attention_mask"] = encoded["attention_mask"]
            if self.return_captions:
                batch["captions"] = captions
            for key, prefix in CAPTION_EXTRAS:
                negatives = [(i, item.get(key)) for i, item in enumerate(kept)]
                negatives = [(i, caption) for i, caption in negatives if caption is not None]
                if negatives and self.tokenizer is not None:
                    if not all(isinstance(caption, str) for _, caption in negatives):
                        raise TypeError(f"`{key}` of a batch item must be a string or None")
                    encoded = self._tokenize([caption for _, caption in negatives])
                    batch[f"{prefix}_input_ids"] = encoded["input_ids"]
                    batch[f"{prefix}_attention_mask"] = encoded["attention_mask"]
                    batch[f"{prefix}_index"] = torch.tensor([i for i, _ in negatives], dtype=torch.long)

        labelled = [item.get("segmentation_labels") for item in kept]
        if any(labels is not None for labels in labelled):
            tensors = [
                None if labels is None else _to_tensor(labels, "segmentation_labels").long() for labels in labelled
            ]
            reference = next(t for t in tensors if t is not None)
            if reference.ndim != 3:
                raise ValueError(f"`segmentation_labels` items must be (T, h, w), got {tuple(reference.shape)}")
            # An item without labels contributes only ignored pixels rather than forcing the whole batch unlabeled.
            tensors = [torch.full_like(reference, IGNORE_INDEX) if t is None else t for t in tensors]
            batch["segmentation_labels"] = _stack(tensors, "segmentation_labels")
        return batch
