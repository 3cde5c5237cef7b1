"""Processor of TrajVLM (method spec §11): a [`TrajTokVideoProcessor`] for the clips + a tokenizer with a `<video>`
special token and a chat template.

``processor.apply_chat_template(conversation, add_generation_prompt=True)`` renders ``{"type": "video"}`` content as
ONE ``<video>`` token; ``processor(text=prompts, videos=clips, return_tensors="pt")`` returns ``input_ids``,
``attention_mask`` and ``pixel_values_videos`` (frames at the vision tower's size and normalisation). Unlike
LLaVA-OneVision, the placeholder is **not** repeated here: how many tokens a video becomes depends on how many
trajectories the segmenter finds, so [`TrajVLMForConditionalGeneration`] expands it itself.

Padding follows the tokenizer's ``padding_side``; :func:`build_trajvlm_processor`-style setups use ``"left"`` (what
batched ``generate`` needs). Training collators may pad right: the model keeps whichever side the batch uses.

Imports only transformers (and the standard library): the file is copied as remote code by ``save_pretrained``.
"""

from __future__ import annotations

import os

from transformers.processing_utils import ProcessingKwargs, ProcessorMixin

__all__ = ["TrajVLMProcessor", "DEFAULT_CHAT_TEMPLATE"]

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


class TrajVLMProcessor(ProcessorMixin):
    r"""
    Wraps a [`TrajTokVideoProcessor`] (configured with the vision tower's size and normalisation) and a tokenizer that
    has a `<video>` special token.

    Args:
        video_processor ([`TrajTokVideoProcessor`]): turns clips into `pixel_values_videos` (videos, T, 3, H, W).
        tokenizer ([`PreTrainedTokenizerBase`]): the LLM's tokenizer; must contain `video_token` as one token.
        chat_template (`str`, *optional*): Jinja template; defaults to the tokenizer's, else [`DEFAULT_CHAT_TEMPLATE`]
            (ChatML, a `{"type": "video"}` block → one `<video>`).
        video_token (`str`, *optional*, defaults to `"<video>"`): the placeholder.

    Call: `processor(text=..., videos=..., return_tensors="pt")`. The total number of `<video>` tokens in `text` must
    equal the number of videos (they fill the placeholders in order); a prompt may hold several. Empty prompts and
    videos without a placeholder raise a `ValueError`.
    """

    valid_processor_kwargs = TrajVLMProcessorKwargs

    def __init__(self, video_processor=None, tokenizer=None, chat_template=None, video_token="<video>", **kwargs):
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

    def __call__(self, images=None, text=None, videos=None, audio=None, **kwargs):
        videos = _flatten_conversation_videos(videos)
        return super().__call__(images=images, text=text, videos=videos, audio=audio, **kwargs)

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        if images is not None:
            raise ValueError("TrajVLMProcessor takes videos (an image is a 1-frame video), not images")
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
        super().validate_inputs(images=images, text=text, videos=videos, audio=audio, **kwargs)

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs) -> str:
        # ONE placeholder per video: the model replaces it with the video's (variable number of) tokens.
        return self.video_token

    @property
    def model_input_names(self) -> list[str]:
        return list(dict.fromkeys(list(self.tokenizer.model_input_names) + ["pixel_values_videos"]))
