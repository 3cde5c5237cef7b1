"""Processor of TrajViT2 (paper Sec. 4): [`TrajTokVideoProcessor`] for the clips + a text tokenizer for captions.

``processor(text=captions, videos=clips, return_tensors="pt")`` returns ``input_ids``, ``attention_mask`` (and
``token_type_ids`` for BERT) plus ``pixel_values_videos`` (B, T, 3, 224, 224), ready for [`TrajViT2Model`]. Images go
in as ``images=`` and come out as 1-frame videos. Texts are padded to the longest caption and truncated to the
tokenizer's ``model_max_length`` by default (the release tokenizes with BERT at max length 77: a converted checkpoint's
tokenizer carries ``model_max_length=77``).

Differences from transformers' CLIP-style processors: misspelt keyword arguments raise a ``TypeError`` instead of
being ignored with a warning, and ``paired=True`` checks that there is exactly one caption per video (what the
contrastive loss needs). Without it, any numbers of texts and videos may be processed together (retrieval).

Imports only numpy, torch, PIL and transformers: the file is copied as remote code by ``save_pretrained``.
"""

from __future__ import annotations

import difflib

import numpy as np
import PIL.Image
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessingKwargs, TextKwargs, VideosKwargs

from .processing_utils_trajtok import KeepAutoMapOnSaveMixin

__all__ = ["TrajViT2Processor"]


class TrajViT2ProcessorKwargs(ProcessingKwargs, total=False):
    _defaults = {"text_kwargs": {"padding": True, "truncation": True}}


def _images_as_videos(images):
    """An image or a list/batch of images → a batch of 1-frame videos the video processor accepts."""
    if isinstance(images, PIL.Image.Image):
        return [[images]]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        if images.ndim == 3:  # one (H, W, C) or (C, H, W) image
            return [images[None]]
        if images.ndim == 4:  # a batch of images
            return [images[i : i + 1] for i in range(images.shape[0])]
        raise ValueError(
            f"images must be one image (3-D array) or a batch of images (4-D array), got shape {tuple(images.shape)}"
        )
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("images must not be an empty list")
        videos = []
        for index, image in enumerate(images):
            if isinstance(image, PIL.Image.Image):
                videos.append([image])
            elif isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim == 3:
                videos.append(image[None])
            else:
                raise ValueError(
                    f"images[{index}] must be a PIL image or a 3-D (H, W, C) / (C, H, W) array, got "
                    f"{type(image).__name__}{' of shape ' + str(tuple(image.shape)) if hasattr(image, 'shape') else ''}"
                )
        return videos
    raise TypeError(f"images must be a PIL image, an array or a list of these, got {type(images).__name__}")


class TrajViT2Processor(KeepAutoMapOnSaveMixin):
    r"""
    Wraps a [`TrajTokVideoProcessor`] and a tokenizer into one processor for [`TrajViT2Model`].

    Args:
        video_processor ([`TrajTokVideoProcessor`]): turns clips into `pixel_values_videos`.
        tokenizer ([`PreTrainedTokenizerBase`]): tokenizes captions (BERT's for the release).

    Call arguments:
        text (`str` or `list[str]`, *optional*): caption(s).
        videos (*optional*): one clip or a batch of clips, in any form [`TrajTokVideoProcessor`] accepts.
        images (*optional*): a PIL image / 3-D array, or a list / 4-D batch of them, processed as 1-frame videos.
        paired (`bool`, *optional*): True when `text[i]` is the caption of `videos[i]` (or `images[i]`): raise a
            `ValueError` unless their counts are equal. Unset (None) or False: any numbers of texts and videos.
        return_tensors (`str`, *optional*): `"pt"` for tensors.
        Tokenizer arguments (`padding`, `truncation`, `max_length`, ...) and video-processor arguments
        (`num_frames`, `fps`, `size`, ...) are routed to their component; unknown names raise `TypeError`.

    Example:

    ```python
    >>> processor = AutoProcessor.from_pretrained(path)
    >>> batch = processor(text=["a dog runs"], videos=["dog.mp4"], return_tensors="pt", padding=True)
    >>> sorted(batch.keys())
    ['attention_mask', 'input_ids', 'pixel_values_videos', 'token_type_ids']
    ```
    """

    valid_processor_kwargs = TrajViT2ProcessorKwargs

    def __init__(self, video_processor=None, tokenizer=None, **kwargs):
        super().__init__(video_processor, tokenizer, **kwargs)

    def _reject_unknown_kwargs(self, kwargs: dict) -> None:
        valid = set(TextKwargs.__annotations__) | set(VideosKwargs.__annotations__)
        valid |= set(getattr(getattr(self.video_processor, "valid_kwargs", None), "__annotations__", {}))
        valid |= {"return_tensors", "text_kwargs", "videos_kwargs", "common_kwargs"}
        unknown = [key for key in kwargs if key not in valid]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, sorted(valid), n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s): {', '.join(hints)}")

    @staticmethod
    def _check_text(text) -> int:
        """Validate `text`; return the number of texts."""
        if isinstance(text, str):
            return 1
        if not isinstance(text, (list, tuple)):
            raise TypeError(f"text must be a string or a list of strings, got {type(text).__name__}")
        if len(text) == 0:
            raise ValueError("text must not be an empty list (pass text=None to process videos only)")
        bad = [i for i, t in enumerate(text) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"text must be a list of strings; text[{bad[0]}] is a {type(text[bad[0]]).__name__}")
        return len(text)

    def __call__(self, text=None, videos=None, images=None, paired: bool | None = None, **kwargs) -> BatchFeature:
        if text is None and videos is None and images is None:
            raise ValueError(f"{type(self).__name__} needs at least one of text, videos or images")
        if videos is not None and images is not None:
            raise ValueError("pass either videos or images (images are 1-frame videos), not both")
        if paired is not None and not isinstance(paired, bool):
            raise TypeError(f"paired must be a bool or None, got {type(paired).__name__}")
        num_texts = self._check_text(text) if text is not None else None
        if paired and (text is None or (videos is None and images is None)):
            raise ValueError("paired=True needs both text and videos (or images)")
        self._reject_unknown_kwargs(kwargs)
        merged = self._merge_kwargs(TrajViT2ProcessorKwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs)
        return_tensors = merged["text_kwargs"].get("return_tensors") or merged["videos_kwargs"].get("return_tensors")

        data = {}
        if videos is not None:
            data.update(self.video_processor(videos, **merged["videos_kwargs"]))
        elif images is not None:
            # One frame per image: frame sampling would repeat it num_frames times.
            video_kwargs = {**merged["videos_kwargs"], "do_sample_frames": False, "num_frames": None, "fps": None}
            data.update(self.video_processor(_images_as_videos(images), **video_kwargs))
        if paired:
            num_videos = len(data["pixel_values_videos"])
            if num_videos != num_texts:
                raise ValueError(
                    f"paired=True needs one caption per video: got {num_texts} text(s) and {num_videos} "
                    f"{'video' if videos is not None else 'image'}(s)"
                )
        if text is not None:
            data.update(self.tokenizer(text, **merged["text_kwargs"]))
        if not merged["videos_kwargs"].get("return_metadata"):
            data.pop("video_metadata", None)
        return BatchFeature(data, tensor_type=return_tensors, skip_tensor_conversion=self.skip_tensor_conversion)

    @property
    def model_input_names(self) -> list[str]:
        return list(dict.fromkeys(list(self.tokenizer.model_input_names) + ["pixel_values_videos"]))
