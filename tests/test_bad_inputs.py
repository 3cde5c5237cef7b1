"""Bad input, table-driven, through every model and every processor: a TypeError/ValueError that names the argument.

The per-model files test their own arguments (token ids, labels, options); this file runs one table of malformed
videos through the public boundary of every model in ``MODEL_CASES`` and every processor class, so that a new model
or processor gets the same checks for free.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from testers import MODEL_CASES, TRAJVLM_VIDEO_TOKEN_ID

from trajtok_hf import TrajTokVideoProcessor, TrajViT2Processor, TrajVLMProcessor
from trajtok_hf.data.video_qa import build_qa_tokenizer
from trajtok_hf.models.modeling_utils_trajtok import MAX_ABS_PIXEL_VALUE, check_video_pixels

# name -> (change of a valid (B, T, 3, H, W) float batch, expected error, message pattern)
BAD_PIXELS = {
    "numpy": (lambda v: v.numpy(), TypeError, "torch.Tensor"),
    "list": (lambda v: v.tolist(), TypeError, "torch.Tensor"),
    "integer": (lambda v: v.long(), ValueError, "float tensor"),
    "bool": (lambda v: v > 0, ValueError, "float tensor"),
    "complex": (lambda v: v.to(torch.complex64), ValueError, "float tensor"),
    "4-d": (lambda v: v[:, 0], ValueError, "1-frame video"),
    "6-d": (lambda v: v[None], ValueError, "must have shape"),
    "no videos": (lambda v: v[:0], ValueError, "at least one video and one frame"),
    "no frames": (lambda v: v[:, :0], ValueError, "at least one video and one frame"),
    "1 channel": (lambda v: v[:, :, :1], ValueError, "channels in dim 2"),
    "zero width": (lambda v: v[..., :0], ValueError, "positive height and width"),
    "nan": (lambda v: v.clone().index_fill_(0, torch.tensor([0]), float("nan")), ValueError, "finite"),
    "+inf": (lambda v: torch.where(v > 0, float("inf"), v), ValueError, "finite"),
    "-inf": (lambda v: torch.where(v > 0, float("-inf"), v), ValueError, "finite"),
    "1e30": (lambda v: v * 1e30, ValueError, "finite"),
    "just beyond the limit": (lambda v: torch.full_like(v, -MAX_ABS_PIXEL_VALUE * 1.5), ValueError, "finite"),
}


@pytest.mark.parametrize("bad", list(BAD_PIXELS), ids=list(BAD_PIXELS))
@pytest.mark.parametrize("case", MODEL_CASES, ids=[case.name for case in MODEL_CASES])
@torch.no_grad()
def test_bad_videos_name_the_argument_in_every_model(case, bad):
    change, error, match = BAD_PIXELS[bad]
    model = case.build()
    inputs = case.inputs(1)
    inputs["pixel_values_videos"] = change(inputs["pixel_values_videos"])
    with pytest.raises(error, match=match) as raised:
        model(**inputs)
    assert "pixel_values_videos" in str(raised.value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_pixel_check_accepts_processor_output_in_every_float_dtype(dtype):
    video = torch.linspace(-MAX_ABS_PIXEL_VALUE, MAX_ABS_PIXEL_VALUE, 2 * 2 * 3 * 4 * 4).reshape(2, 2, 3, 4, 4)
    check_video_pixels(video.to(dtype))  # the limit itself is representable in every float dtype: no error


# ----------------------------------------------------------------------------------------------------- processors
def _video_processor():
    return TrajTokVideoProcessor(num_frames=2, size={"height": 32, "width": 32})


PROCESSORS = {
    "video processor": lambda videos: _video_processor()(videos, return_tensors="pt"),
    "trajvit2": lambda videos: TrajViT2Processor(
        video_processor=_video_processor(), tokenizer=build_qa_tokenizer(padding_side="right")
    )(text=["a red star"], videos=videos, return_tensors="pt"),
    "trajvlm": lambda videos: TrajVLMProcessor(video_processor=_video_processor(), tokenizer=build_qa_tokenizer())(
        text=["<video> what moves?"], videos=videos, return_tensors="pt"
    ),
}

_FRAMES = np.random.default_rng(0).integers(0, 256, (3, 24, 20, 3), dtype=np.uint8)
# name -> (videos argument, expected error, message pattern); every message names `videos`.
BAD_VIDEOS = {
    "an int": (5, (TypeError, ValueError), "unsupported input type|Invalid video input"),
    "missing file": ("/nonexistent/clip.mp4", ValueError, "does not exist"),
    "empty list": ([], ValueError, "empty"),
    "no frames": (_FRAMES[:0], ValueError, "0 frames"),
    "rgba": (np.concatenate([_FRAMES, _FRAMES[..., :1]], axis=-1), ValueError, "3 colour channels"),
    "grayscale": (_FRAMES[..., 0], ValueError, "4-D video"),
    "bool pixels": (_FRAMES > 100, TypeError, "uint8"),
    "integers above 255": (_FRAMES.astype(np.int64) + 300, ValueError, r"\[0, 255\]"),
    "negative integers": (-_FRAMES.astype(np.int64) - 1, ValueError, r"\[0, 255\]"),
    "nan floats": (np.full(_FRAMES.shape, np.nan, dtype=np.float32), ValueError, "finite"),
    "frames of two sizes": ([Image.fromarray(_FRAMES[0]), Image.fromarray(_FRAMES[1][:10])], ValueError, "same shape"),
}


@pytest.mark.parametrize("bad", list(BAD_VIDEOS), ids=list(BAD_VIDEOS))
@pytest.mark.parametrize("processor", list(PROCESSORS), ids=list(PROCESSORS))
def test_bad_videos_name_the_argument_in_every_processor(processor, bad):
    videos, error, match = BAD_VIDEOS[bad]
    with pytest.raises(error, match=match) as raised:
        PROCESSORS[processor](videos)
    assert "videos" in str(raised.value)


@pytest.mark.parametrize(
    "processor, match",
    [("video processor", "unsupported input type NoneType"), ("trajvlm", "<video> tokens in the text but no videos")],
)
def test_missing_videos_are_named(processor, match):
    # TrajViT2Processor takes text alone (text embeddings), so None is no error there.
    with pytest.raises((TypeError, ValueError), match=match):
        PROCESSORS[processor](None)


def test_placeholder_id_of_the_processor_table_matches_the_models():
    # The TrajVLM row above relies on build_qa_tokenizer's <video> id being the tiny TrajVLM config's video_token_id.
    assert build_qa_tokenizer().convert_tokens_to_ids("<video>") == TRAJVLM_VIDEO_TOKEN_ID
