"""Processor of TrajVLM (paper Sec. 5): a [`TrajTokVideoProcessor`] for the clips + a tokenizer with a `<video>`
special token and a chat template.

``processor.apply_chat_template(conversation, add_generation_prompt=True)`` renders ``{"type": "video"}`` content as
ONE ``<video>`` token; ``processor(text=prompts, videos=clips, return_tensors="pt")`` returns ``input_ids``,
``attention_mask`` and ``pixel_values_videos`` (frames at the vision tower's size and normalisation).

Slot form (``video_slot_layout`` set, e.g. ``TrajVLMProcessor(..., video_slot_layout=config.video_slot_layout)``): each
``<video>`` is repeated once per connector *slot* of its video (C chunks × K trajectories × n sub-tokens for TrajTok,
the pooled grid for patch pooling), a count known from the frame count alone. The model scatters the active
trajectories' tokens into their slots and masks the empty ones (paper Sec. 5: the LLM attends only to active
trajectories), so ``input_ids``, logits and KV cache have one length and every ``generate`` path works unchanged.
Without a layout (processors saved before it existed) one ``<video>`` is kept per video and the model expands it
itself (compact form: training and plain greedy/sampled generation).

Padding follows the tokenizer's ``padding_side``; :func:`build_trajvlm_processor`-style setups use ``"left"`` (what
batched ``generate`` needs). Training collators may pad right: the model keeps whichever side the batch uses.

Imports only transformers (and the standard library): the file is copied as remote code by ``save_pretrained``.
"""

from __future__ import annotations

import os

from transformers.processing_utils import ProcessingKwargs

from .configuration_trajtok import rename_deprecated_keys
from .processing_utils_trajtok import KeepAutoMapOnSaveMixin

__all__ = ["TrajVLMProcessor", "DEFAULT_CHAT_TEMPLATE", "num_video_slots"]

# ChatML (Qwen's format). A "video" content block becomes one <video> placeholder, a "text" block its text; a message
# whose content is a plain string is rendered as is. The assistant turn is wrapped in {% generation %} so that
# `return_assistant_tokens_mask=True` can mark the answer tokens for training.
DEFAULT_CHAT_TEMPLATE = (
    "{%- macro render(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- else -%}{%- for block in content -%}"
    "{%- if block['type'] == 'video' -%}{{- '<video>\n' -}}"
    "{%- elif block['type'] == 'text' -%}{{- block['text'] -}}"
    "{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{- render(message['content']) + '<|im_end|>' -}}{% endgeneration %}"
    "{%- else -%}{{- render(message['content']) + '<|im_end|>' -}}{%- endif -%}"
    "{{- '\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"
)


def num_video_slots(num_frames: int, chunk_size: int, slot_group_frames: int, slots_per_group: int) -> int:
    """Connector slots of a ``num_frames``-frame video: chunks of ``chunk_size`` frames (a last shorter chunk kept),
    each giving ``ceil(frames / slot_group_frames) * slots_per_group`` slots (TrajTok: one group of K·n slots per chunk;
    patch pooling: a pooled grid per group of ``patch_pool_temporal_size`` frames)."""
    full, remainder = divmod(num_frames, chunk_size)
    per_chunk = -(-chunk_size // slot_group_frames) * slots_per_group
    return full * per_chunk + (-(-remainder // slot_group_frames) * slots_per_group if remainder else 0)


def _check_slot_layout(layout) -> dict | None:
    keys = ("chunk_size", "slot_group_frames", "slots_per_group")
    if layout is None:
        return None
    if isinstance(layout, dict):  # layouts saved with the deprecated key name load with a FutureWarning
        layout = rename_deprecated_keys(layout, {"clip_length": "chunk_size"}, "video_slot_layout")
    if (
        not isinstance(layout, dict)
        or set(layout) != set(keys)
        or not all(isinstance(layout[k], int) and not isinstance(layout[k], bool) and layout[k] > 0 for k in keys)
    ):
        raise ValueError(
            f"video_slot_layout must be None or a dict of positive ints {keys} (TrajVLMConfig."
            f"video_slot_layout), got {layout!r}"
        )
    return dict(layout)


def _is_whole_video(item) -> bool:
    """A path, or a 4-D (T, H, W, C) / (T, C, H, W) array: one video on its own."""
    if isinstance(item, (str, os.PathLike)):
        return True
    return getattr(item, "ndim", None) == 4


def _flatten_conversation_videos(videos):
    """`apply_chat_template` passes videos per conversation ([[clip], [clip, clip]]); the video processor takes a flat
    batch. Lists of whole videos are flattened one level; a list of frames (one video) is left alone."""
    if not isinstance(videos, (list, tuple)) or not videos:
        return videos
    if all(isinstance(v, (list, tuple)) and all(_is_whole_video(x) for x in v) for v in videos):
        return [x for v in videos for x in v]
    return videos


class TrajVLMProcessorKwargs(ProcessingKwargs, total=False):
    _defaults = {"text_kwargs": {"padding": True}}


class TrajVLMProcessor(KeepAutoMapOnSaveMixin):
    r"""
    Wraps a [`TrajTokVideoProcessor`] (configured with the vision tower's size and normalisation) and a tokenizer that
    has a `<video>` special token.

    Args:
        video_processor ([`TrajTokVideoProcessor`]): turns clips into `pixel_values_videos` (videos, T, 3, H, W).
        tokenizer ([`PreTrainedTokenizerBase`]): the LLM's tokenizer; must contain `video_token` as one token.
        chat_template (`str`, *optional*): Jinja template; defaults to the tokenizer's, else [`DEFAULT_CHAT_TEMPLATE`]
            (ChatML, a `{"type": "video"}` block → one `<video>`).
        video_token (`str`, *optional*, defaults to `"<video>"`): the placeholder.
        video_slot_layout (`dict`, *optional*): `TrajVLMConfig.video_slot_layout` of the model. Set: each `<video>`
            becomes one placeholder per connector slot (slot form, every generation path works). None: one
            placeholder per video, expanded by the model (compact form).

    Call: `processor(text=..., videos=..., return_tensors="pt")`. The total number of `<video>` tokens in `text` must
    equal the number of videos (they fill the placeholders in order); a prompt may hold several. Empty prompts and
    videos without a placeholder raise a `ValueError`.
    """

    valid_processor_kwargs = TrajVLMProcessorKwargs

    def __init__(
        self,
        video_processor=None,
        tokenizer=None,
        chat_template=None,
        video_token="<video>",
        video_slot_layout=None,
        **kwargs,
    ):
        self.video_slot_layout = _check_slot_layout(video_slot_layout)
        if tokenizer is None:
            raise ValueError("TrajVLMProcessor needs a tokenizer")
        self.video_token = getattr(tokenizer, "video_token", None) or video_token
        token_id = tokenizer.convert_tokens_to_ids(self.video_token)
        single_token = tokenizer.tokenize(self.video_token) == [self.video_token]
        if token_id is None or token_id == tokenizer.unk_token_id or not single_token:
            raise ValueError(
                f"the tokenizer has no {self.video_token!r} token: add it first, e.g. "
                f"tokenizer.add_special_tokens({{'additional_special_tokens': [{self.video_token!r}]}}) (and resize "
                "the LLM's embeddings), then set config.video_token_id to its id"
            )
        self.video_token_id = token_id
        if chat_template is None:
            chat_template = getattr(tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE
        super().__init__(video_processor, tokenizer, chat_template=chat_template, **kwargs)

    def __call__(self, text=None, videos=None, **kwargs):
        """`text` (a prompt or a list) with `<video>` placeholders and `videos` (one per placeholder, in order); an
        image is a 1-frame video (`images` are refused with a ValueError)."""
        if text is not None and not (
            isinstance(text, str) or (isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text))
        ):
            got = type(text).__name__
            if isinstance(text, (list, tuple)):
                got = f"a list of {sorted({type(t).__name__ for t in text})}"
            raise TypeError(
                f"text must be a string or a list of strings (prompts with <video> placeholders), got {got}"
            )
        videos = _flatten_conversation_videos(videos)
        return super().__call__(text=text, videos=videos, **kwargs)

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        if images is not None:
            raise ValueError("TrajVLMProcessor takes videos (an image is a 1-frame video), not images")
        if audio is not None:
            raise ValueError("TrajVLMProcessor takes no audio: pass text and videos")
        if text is not None:
            texts = [text] if isinstance(text, str) else text
            if isinstance(texts, (list, tuple)):
                if len(texts) == 0:
                    raise ValueError("text must not be an empty list")
                empty = [i for i, t in enumerate(texts) if isinstance(t, str) and not t.strip()]
                if empty:
                    raise ValueError(f"empty prompt: text[{empty[0]}] is empty")
        elif videos is not None:
            raise ValueError("videos need a prompt: pass text with one <video> token per video")
        if videos is not None:
            self.video_processor.check_videos(videos)
        super().validate_inputs(images=images, text=text, videos=videos, audio=audio, **kwargs)

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs) -> str:
        if self.video_slot_layout is None:
            return self.video_token  # compact form: the model expands it
        frames = video_inputs["pixel_values_videos"][video_idx].shape[0]
        return self.video_token * num_video_slots(frames, **self.video_slot_layout)

    @property
    def model_input_names(self) -> list[str]:
        return list(dict.fromkeys(list(self.tokenizer.model_input_names) + ["pixel_values_videos"]))
