"""Video processor of TrajTok: clips -> ``pixel_values_videos`` (B, T, 3, 224, 224).

Which part of the method this is
--------------------------------
The input step of the TrajTok tokenizer (paper Sec. 3), as the official release (hellomuffin/trajtok) preprocesses:
every frame is resized to 224x224 with bicubic interpolation, aspect ratio NOT kept and no crop, then divided by 255
and normalised with the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225). A video is
T x H x W x 3, frames are 224x224, an image is a video with T=1.

How it differs from the official code
-------------------------------------
* Resize. The released eval scripts resize with PIL ``BICUBIC`` on uint8 frames; the official training loader uses
  torchvision's tensor ``Resize(BICUBIC)`` on uint8 (up to 15 grey levels off PIL at edges, i.e. up to ~15/255/0.225 =
  0.26 in normalised units). We use torchvision's tensor bicubic resize with ``antialias=True`` on the uint8 frames (the
  result is rounded back to uint8, as PIL does). Measured here (torchvision 0.29, frames from 100x120 up to 1920x1080,
  noise and hard edges): at most 1 grey level from PIL, i.e. <= 0.018 after normalisation
  (``test_resize_matches_pil_bicubic`` pins this). With ``antialias=False`` (the tensor default of torchvision < 0.17;
  which version trained the release is not known) the gap is the ~15 levels (0.26) above when upsampling and far larger
  when downsampling big frames (aliasing), so the official *training* resize may differ from both PIL and us. Float
  inputs are resized in float (no rounding or clamping of bicubic overshoot): they can be tens of grey levels off PIL
  next to hard edges -- pass uint8 frames for parity with the official preprocessing.
* Frame sampling is ours: ``num_frames`` [16] frames at the centres of ``num_frames`` equal segments of the clip
  (``floor((2i+1) * total / (2 * num_frames))``), or ``fps`` frames per second; a clip shorter than ``num_frames``
  repeats frames uniformly (never zero/fake padding: fake frames could create trajectories). The release's own clip
  sampling is not reproduced here.
* Decoding uses PyAV (RGB24 via FFmpeg's swscale); the official loaders' decoder may convert YUV->RGB slightly
  differently. Rotation side-data of phone videos is not applied.
* Optional, off by default and not in the official code: shortest-edge resize + ``do_center_crop``
  (``size={"shortest_edge": 224}, do_center_crop=True, crop_size={"height": 224, "width": 224}``).

This file imports only numpy, torch, torchvision, transformers, PIL and (lazily) av, so ``save_pretrained`` of a
processor registered with ``register_for_auto_class`` can copy it as remote code.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    ChannelDimension,
    PILImageResampling,
)
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.utils import logging
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata

__all__ = ["TrajTokVideoProcessor", "read_video_pyav", "uniform_frame_indices"]

logger = logging.get_logger(__name__)

# Largest |value| of a float input frame: float frames are 0-255 grey levels (0-1 with do_rescale=False), plus the
# overshoot of an earlier bicubic resize; far larger values are a bug upstream and end as NaN tokens in the model.
MAX_FLOAT_PIXEL_MAGNITUDE = 1e4

# Keys that transformers itself writes into / passes with a saved processor dict; accepted and ignored.
_SERIALIZATION_KEYS = frozenset(
    {"video_processor_type", "image_processor_type", "feature_extractor_type", "processor_class", "auto_map"}
)


# ----------------------------------------------------------------------------------------------------------------------
# Sampling and decoding helpers
# ----------------------------------------------------------------------------------------------------------------------
def _check_num_frames(num_frames: Any) -> None:
    if num_frames is None:
        return
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)):
        raise TypeError(f"`num_frames` must be a positive int or None, got {type(num_frames).__name__} {num_frames!r}")
    if num_frames <= 0:
        raise ValueError(f"`num_frames` must be a positive int (frames to sample per video), got {num_frames}")


def _check_fps(fps: Any) -> None:
    if fps is None:
        return
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        raise TypeError(f"`fps` must be a positive number or None, got {type(fps).__name__} {fps!r}")
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"`fps` must be a positive, finite number of frames per second, got {fps}")


def _plain_sampling_args(kwargs: dict) -> None:
    """numpy scalars -> Python numbers (JSON-serialisable, accepted by transformers' strict kwarg validation)."""
    if isinstance(kwargs.get("num_frames"), np.integer):
        kwargs["num_frames"] = int(kwargs["num_frames"])
    if isinstance(kwargs.get("fps"), (np.integer, np.floating)):
        kwargs["fps"] = float(kwargs["fps"])


def _exclusive_sampling_error(num_frames, fps) -> ValueError:
    return ValueError(
        f"`num_frames` and `fps` are mutually exclusive, got num_frames={num_frames} and fps={fps}: pass only one "
        "(num_frames: a fixed number of frames per video; fps: frames per second of video)"
    )


def uniform_frame_indices(total_num_frames: int, num_frames: int) -> np.ndarray:
    """Indices of `num_frames` frames spread uniformly over a clip of `total_num_frames` frames.

    Frame ``i`` is the one under the centre of the i-th of ``num_frames`` equal segments:
    ``floor((2i + 1) * total / (2 * num_frames))`` (exact integer arithmetic). When the clip is shorter than
    ``num_frames`` the same formula repeats frames uniformly (each frame ``floor`` or ``ceil`` of
    ``num_frames / total`` times, in temporal order); nothing is zero-padded.
    """
    total_num_frames = int(total_num_frames)
    num_frames = int(num_frames)
    if total_num_frames <= 0:
        raise ValueError(f"cannot sample frames from an empty video (total_num_frames={total_num_frames})")
    _check_num_frames(num_frames)
    steps = 2 * np.arange(num_frames, dtype=np.int64) + 1
    return (steps * total_num_frames) // (2 * num_frames)


def _metadata_get(metadata: Any, key: str) -> Any:
    if metadata is None:
        return None
    if isinstance(metadata, dict):
        return metadata.get(key)
    return getattr(metadata, key, None)


def read_video_pyav(
    path: str | os.PathLike, sample_indices_fn=None, argument: str = "videos"
) -> tuple[torch.Tensor, VideoMetadata]:
    """Decode a video file with PyAV into a uint8 RGB tensor (T, 3, H, W) and its `VideoMetadata`.

    Args:
        path: the video file.
        sample_indices_fn: ``fn(metadata=VideoMetadata) -> indices`` choosing which frames to keep (all if None).
            Only the kept frames are converted to RGB; decoding stops after the last one.
        argument: how to name the input in error messages (e.g. ``videos[2]``).

    The header's frame count is used when present; if it is missing, frames are counted by decoding, and if the
    stream turns out shorter than the header said, the frames are re-sampled from the true count.
    """
    import av  # lazy: only needed for file inputs

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"`{argument}`: video file {path!r} does not exist or is not a regular file")

    def _open():
        try:
            container = av.open(path)
        except Exception as err:  # av.error.* (InvalidDataError, ...), OSError
            raise ValueError(f"`{argument}`: could not open video file {path!r} with PyAV: {err}") from err
        if not container.streams.video:
            container.close()
            raise ValueError(f"`{argument}`: video file {path!r} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return container, stream

    def _decode(keep: set[int] | None, stop_at: int | None):
        """Decode frames in order; keep RGB arrays of indices in `keep`; stop after `stop_at`. Returns (dict, count)."""
        frames, count = {}, 0
        container, stream = _open()
        with container:
            try:
                for index, frame in enumerate(container.decode(stream)):
                    count = index + 1
                    if keep is not None and index in keep:
                        frames[index] = frame.to_ndarray(format="rgb24")
                    if stop_at is not None and index >= stop_at:
                        break
            except Exception as err:  # av.error.InvalidDataError etc. (some subclass ValueError): name the file
                raise ValueError(f"`{argument}`: could not decode video file {path!r} with PyAV: {err}") from err
        return frames, count

    container, stream = _open()
    with container:
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        video_fps = float(rate) if rate else None
        total = int(stream.frames or 0)
        height, width = stream.codec_context.height, stream.codec_context.width
    if total <= 0:  # frame count missing from the container: count by decoding
        _, total = _decode(keep=None, stop_at=None)
    if total <= 0:
        raise ValueError(f"`{argument}`: video file {path!r} is empty (0 frames)")

    def _select(total_frames: int):
        metadata = VideoMetadata(
            total_num_frames=total_frames,
            fps=video_fps,
            width=width,
            height=height,
            duration=total_frames / video_fps if video_fps else None,
            video_backend="pyav",
        )
        if sample_indices_fn is None:
            idx = np.arange(total_frames)
        else:
            idx = np.asarray(sample_indices_fn(metadata=metadata), dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError(f"`{argument}`: frame sampling selected no frames from {path!r}")
        if idx.min() < 0 or idx.max() >= total_frames:
            raise ValueError(f"`{argument}`: frame indices out of range [0, {total_frames}) for {path!r}")
        metadata.frames_indices = idx.tolist()
        return idx, metadata

    indices, metadata = _select(total)
    frames, count = _decode(keep=set(indices.tolist()), stop_at=int(indices.max()))
    if count <= int(indices.max()):  # header over-counted the frames: resample from the true count
        if count == 0:
            raise ValueError(f"`{argument}`: video file {path!r} is empty (0 frames could be decoded)")
        indices, metadata = _select(count)
        frames, _ = _decode(keep=set(indices.tolist()), stop_at=int(indices.max()))
    try:
        video = np.stack([frames[int(i)] for i in indices])  # repeated indices reuse the decoded frame
    except ValueError as err:
        raise ValueError(f"`{argument}`: frames of {path!r} change size mid-stream: {err}") from err
    metadata.height, metadata.width = video.shape[1], video.shape[2]
    return torch.from_numpy(video).permute(0, 3, 1, 2).contiguous(), metadata


class _Video:
    """A video after decoding/sampling, before layout and dtype handling: frames first (T, ...).

    `layout` is the known channel layout ("channels_first" for decoded files, None for user arrays, whose layout is
    given by `input_data_format` or inferred). Kept private: it only travels between `_decode_and_sample_videos` and
    `_prepare_input_videos`.
    """

    __slots__ = ("data", "layout", "name")

    def __init__(self, data, layout: str | None, name: str):
        self.data, self.layout, self.name = data, layout, name

    def __len__(self):
        return len(self.data)


def _check_float_pixels(data: torch.Tensor, name: str) -> None:
    """Float frames must be finite and of a sane magnitude (one reduction: NaN/inf propagate into the maximum)."""
    peak = data.abs().amax() if data.numel() else data.new_zeros(())
    if not torch.isfinite(peak):
        raise ValueError(f"`{name}`: pixel values must be finite, got NaN or inf in {_describe(data)}")
    if peak > MAX_FLOAT_PIXEL_MAGNITUDE:
        raise ValueError(
            f"`{name}`: float pixel values are taken as 0-255 grey levels (0-1 with `do_rescale=False`), got values "
            f"up to {peak.item():.3g} in magnitude (at most {MAX_FLOAT_PIXEL_MAGNITUDE:g} is accepted)"
        )


def _is_scaled_video(video: torch.Tensor) -> bool:
    """transformers' ``is_scaled_image`` for a video tensor: float values all within [0, 1]."""
    return video.is_floating_point() and bool(video.min() >= 0) and bool(video.max() <= 1)


def _only_file_references(x: Any) -> bool:
    """A path or URL, or a non-empty (nested) list holding only those."""
    if isinstance(x, (str, os.PathLike)):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(_only_file_references(item) for item in x)


IMAGE_FILE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def is_image_file(x: Any) -> bool:
    """A path to an image file (by its suffix): a frame of a video given as a list of image files."""
    return isinstance(x, (str, os.PathLike)) and os.fspath(x).lower().endswith(IMAGE_FILE_SUFFIXES)


def _is_frame(x: Any) -> bool:
    return (
        isinstance(x, PIL.Image.Image)
        or (isinstance(x, (np.ndarray, torch.Tensor)) and x.ndim == 3)
        or is_image_file(x)
    )


def _is_nested_frame_files(videos) -> bool:
    """[[[frame files of a video], ...], ...]: the nesting transformers' ``make_batched_videos`` keeps for videos
    given as image files, one list per conversation."""
    try:
        return isinstance(videos[0][0], (list, tuple)) and is_image_file(videos[0][0][0])
    except (IndexError, TypeError, KeyError):
        return False


def _open_image(path, name: str) -> PIL.Image.Image:
    try:
        with PIL.Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as error:
        raise ValueError(f"`{name}`: could not read the image file {os.fspath(path)!r} ({error})") from error


def _describe(x: Any) -> str:
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return f"{type(x).__module__.split('.')[0]}.{type(x).__name__} of shape {tuple(x.shape)} and dtype {x.dtype}"
    if isinstance(x, PIL.Image.Image):
        return f"PIL image {x.size[0]}x{x.size[1]} mode {x.mode}"
    return type(x).__name__


_INPUT_HELP = (
    "a video file path, a list of PIL images, image files or (H, W, 3) numpy arrays, a (T, H, W, 3) numpy array or "
    "a (T, 3, H, W) torch tensor, or a list of these (a batch of videos)"
)


# ----------------------------------------------------------------------------------------------------------------------
# The processor
# ----------------------------------------------------------------------------------------------------------------------
class TrajTokVideoProcessor(BaseVideoProcessor):
    r"""
    Turns video clips into the `pixel_values_videos` tensor (batch, frames, 3, 224, 224) that TrajTok models take.

    Per video: decode (file paths, with PyAV) -> sample `num_frames` frames uniformly (or `fps` frames per second)
    -> resize every frame to `size` (224x224, bicubic, antialiased, aspect not kept) -> optional center crop ->
    rescale by 1/255 -> normalise with the ImageNet mean/std. Videos of different lengths in one batch come out with
    the same number of frames (short videos repeat frames uniformly), so `return_tensors="pt"` stacks them.

    Accepted `videos`: a video file path (`str` or `os.PathLike`), a list of PIL images, a list of (H, W, 3) numpy
    arrays, a (T, H, W, 3) numpy array, a (T, 3, H, W) torch tensor (numpy/torch in either channel layout; the layout
    is inferred from where the size-3 axis is, or given by `input_data_format`), a 5-D batch array, or a list of any
    of these = a batch. Frames must have 3 (RGB) channels; PIL images of other modes are converted to RGB. uint8 is
    the intended dtype; other integer dtypes must hold values in [0, 255]; float inputs are taken as 0-255 values
    (as in every transformers processor) unless `do_rescale=False`.

    Args (constructor and call; a call-time value overrides the instance's):
        num_frames (`int`, *optional*, defaults to 16):
            Frames sampled per video when `do_sample_frames`. Mutually exclusive with `fps`.
        fps (`float`, *optional*):
            Sample this many frames per second of video instead (needs the video's frame rate: known for files,
            pass `video_metadata={"fps": ...}` for arrays). Videos of different durations then get different T.
        do_sample_frames (`bool`, *optional*, defaults to `True`):
            If False, every frame is kept.
        size (`dict[str, int]`, *optional*, defaults to `{"height": 224, "width": 224}`):
            Output frame size; `{"shortest_edge": s}` keeps the aspect ratio instead.
        resample (*optional*, defaults to `PILImageResampling.BICUBIC`):
            Interpolation of the resize.
        do_center_crop (`bool`, *optional*, defaults to `False`), crop_size (defaults to 224x224):
            Center crop after the resize (for shortest-edge resize + crop).
        do_rescale (`bool`, defaults to `True`), rescale_factor (defaults to 1/255),
        do_normalize (`bool`, defaults to `True`), image_mean / image_std (ImageNet defaults).
        video_metadata (call only): a dict / `VideoMetadata` (or a list, one per video) giving the `fps` of
            array inputs (only `fps` is read; files get their metadata from the container).
        return_tensors: `"pt"` stacks into a (B, T, 3, H, W) float32 tensor; None returns a list of (T, 3, H, W).
        return_metadata (`bool`, defaults to `False`): also return the `VideoMetadata` (with `frames_indices`).

    Example:
    ```python
    >>> processor = TrajTokVideoProcessor()
    >>> batch = processor(["clip_a.mp4", np.zeros((40, 360, 480, 3), np.uint8)], return_tensors="pt")
    >>> batch["pixel_values_videos"].shape
    torch.Size([2, 16, 3, 224, 224])
    ```
    """

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 224, "width": 224}
    crop_size = {"height": 224, "width": 224}
    default_to_square = True
    do_resize = True
    do_center_crop = False
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = True
    num_frames = 16
    fps = None
    return_metadata = False
    valid_kwargs = VideosKwargs
    model_input_names = ["pixel_values_videos"]

    def __init__(self, **kwargs: Unpack[VideosKwargs]) -> None:
        self._reject_unknown_kwargs(kwargs, "TrajTokVideoProcessor()", allowed_extra=_SERIALIZATION_KEYS)
        _plain_sampling_args(kwargs)
        num_frames, fps = kwargs.get("num_frames"), kwargs.get("fps")
        _check_num_frames(num_frames)
        _check_fps(fps)
        if num_frames is not None and fps is not None:
            raise _exclusive_sampling_error(num_frames, fps)
        super().__init__(**kwargs)
        if fps is not None:
            # `_set_attributes` fills a None num_frames with the class default (16); fps replaces it.
            self.num_frames = None

    # ------------------------------------------------------------------------------------------------------------------
    def _reject_unknown_kwargs(self, kwargs: dict, where: str, allowed_extra=frozenset()) -> None:
        valid = set(self.valid_kwargs.__annotations__) | {"return_tensors"}
        unknown = [k for k in kwargs if k not in valid and k not in allowed_extra]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, sorted(valid), n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise TypeError(f"{where} got unexpected keyword argument(s): {', '.join(hints)}")

    def preprocess(self, videos, **kwargs: Unpack[VideosKwargs]) -> BatchFeature:
        """Preprocess one video or a batch of videos; see the class docstring for inputs and arguments."""
        self._reject_unknown_kwargs(kwargs, "TrajTokVideoProcessor.__call__()")
        for key in ("do_sample_frames", "do_resize", "do_rescale", "do_normalize", "do_center_crop"):
            if kwargs.get(key) is not None and not isinstance(kwargs[key], bool):
                raise TypeError(f"`{key}` must be a bool, got {type(kwargs[key]).__name__} {kwargs[key]!r}")
        # num_frames / fps: a value given at call time replaces the instance's *pair*, so that a call with fps=2
        # on a processor that defaults to num_frames=16 samples by fps (and vice versa). Both given -> error.
        _plain_sampling_args(kwargs)
        num_frames, fps = kwargs.get("num_frames"), kwargs.get("fps")
        _check_num_frames(num_frames)
        _check_fps(fps)
        if num_frames is not None and fps is not None:
            raise _exclusive_sampling_error(num_frames, fps)
        if num_frames is not None:
            kwargs["fps"] = None
        elif fps is not None:
            kwargs["num_frames"] = None
        try:
            return super().preprocess(videos, **kwargs)
        except Exception as err:
            # huggingface_hub's strict-dataclass errors are neither ValueError nor TypeError; re-raise as TypeError
            # (the message names the field).
            if type(err).__name__.startswith("StrictDataclass"):
                raise TypeError(f"invalid argument to TrajTokVideoProcessor: {err}") from err
            raise

    # ------------------------------------------------------------------------------------------------------------------
    def sample_frames(
        self, metadata: VideoMetadata | dict, num_frames: int | None = None, fps: float | None = None, **kwargs
    ) -> np.ndarray:
        """Indices of the frames to keep (see `uniform_frame_indices`; repeats frames of short videos).

        `num_frames` and `fps` are mutually exclusive; when both are None, the instance's values are used, and when
        those are None too, every frame is kept. With `fps`, ``max(1, floor(total / video_fps * fps))`` frames are
        sampled uniformly (more than the clip has if `fps` exceeds its frame rate: frames then repeat).
        """
        if num_frames is not None and fps is not None:
            raise _exclusive_sampling_error(num_frames, fps)
        if num_frames is None and fps is None:
            num_frames, fps = self.num_frames, self.fps
        _check_num_frames(num_frames)
        _check_fps(fps)
        total = _metadata_get(metadata, "total_num_frames")
        if total is None or int(total) <= 0:
            raise ValueError(f"cannot sample frames from an empty video (total_num_frames={total})")
        total = int(total)
        if num_frames is None and fps is not None:
            video_fps = _metadata_get(metadata, "fps")
            if not video_fps or video_fps <= 0:
                raise ValueError(
                    f"`fps`={fps} sampling needs the video's frame rate, which is unknown for this input: pass "
                    "`video_metadata={'fps': <frames per second>}` (one per video) or use `num_frames` instead"
                )
            num_frames = max(1, int(np.floor(total / float(video_fps) * float(fps) + 1e-6)))
        if num_frames is None:
            return np.arange(total)
        return uniform_frame_indices(total, num_frames)

    def check_videos(self, videos) -> None:
        """Raise the ``TypeError``/``ValueError`` (naming ``videos`` or ``videos[i]``) that :meth:`preprocess` would
        raise for a malformed batch structure, an empty video or frames of different sizes, without decoding files
        or resizing. Processors that combine this video processor with a tokenizer call it before transformers'
        own batching of the videos, whose errors do not name the argument. File paths and URLs (also nested lists of
        them: frames given as image files) are left to the loading step, whose errors name the file."""
        if _only_file_references(videos):
            return
        batch, names = self._split_batch(videos)
        for item, name in zip(batch, names, strict=True):
            if isinstance(item, (list, tuple)):
                self._stack_frames(item, name)
            elif isinstance(item, (np.ndarray, torch.Tensor)) and item.shape[0] == 0:
                raise ValueError(f"`{name}` is an empty video (0 frames), got {_describe(item)}")

    # ------------------------------------------------------------------------------------------------------------------
    @staticmethod
    def _split_batch(videos) -> tuple[list, list[str]]:
        """Split the `videos` argument into a list of single videos (and their names for error messages)."""
        if isinstance(videos, (str, os.PathLike)):
            return [videos], ["videos"]
        if isinstance(videos, PIL.Image.Image):
            return [[videos]], ["videos"]
        if isinstance(videos, (np.ndarray, torch.Tensor)):
            if videos.ndim == 4:
                return [videos], ["videos"]
            if videos.ndim == 5:
                if videos.shape[0] == 0:
                    raise ValueError("`videos` is an empty batch (first dimension of the 5-D input is 0)")
                return list(videos), [f"videos[{i}]" for i in range(videos.shape[0])]
            hint = " (for a single frame pass `[frame]` or `frame[None]`)" if videos.ndim == 3 else ""
            raise ValueError(
                f"`videos`: expected a 4-D video (T, H, W, 3) / (T, 3, H, W) or a 5-D batch, got a {videos.ndim}-D "
                f"{_describe(videos)}{hint}"
            )
        if isinstance(videos, (list, tuple)):
            if len(videos) == 0:
                raise ValueError("`videos` is empty: expected " + _INPUT_HELP)
            if _is_nested_frame_files(videos):
                # transformers' chat-template form: per conversation, videos given as lists of frame files.
                videos = [frames for conversation in videos for frames in conversation]
            if all(_is_frame(x) for x in videos):
                return [list(videos)], ["videos"]  # one video given as a list of frames
            batch, names = [], []
            for i, item in enumerate(videos):
                name = f"videos[{i}]"
                if isinstance(item, (str, os.PathLike)):
                    pass
                elif isinstance(item, (np.ndarray, torch.Tensor)):
                    if item.ndim != 4:
                        hint = "; a list mixing frames and videos is ambiguous" if item.ndim == 3 else ""
                        raise ValueError(
                            f"`{name}`: expected a 4-D video (T, H, W, 3) / (T, 3, H, W), got a {item.ndim}-D "
                            f"{_describe(item)}{hint}"
                        )
                elif isinstance(item, (list, tuple)):
                    if len(item) == 0:
                        raise ValueError(f"`{name}` is an empty video (0 frames)")
                    for j, frame in enumerate(item):
                        if not _is_frame(frame):
                            raise TypeError(
                                f"`{name}[{j}]`: expected a frame (PIL image, (H, W, 3) numpy array or (3, H, W) "
                                f"torch tensor), got {_describe(frame)}"
                            )
                elif isinstance(item, PIL.Image.Image):
                    raise TypeError(f"`{name}`: a list mixing frames (PIL images) and videos is ambiguous")
                else:
                    raise TypeError(f"`{name}`: unsupported video type {_describe(item)}; expected " + _INPUT_HELP)
                batch.append(item)
                names.append(name)
            return batch, names
        raise TypeError(f"`videos`: unsupported input type {_describe(videos)}; expected " + _INPUT_HELP)

    @staticmethod
    def _stack_frames(frames: list, name: str):
        """A list of frames -> one (T, ...) numpy array or torch tensor."""
        if len(frames) == 0:
            raise ValueError(f"`{name}` is an empty video (0 frames)")
        if all(isinstance(f, torch.Tensor) for f in frames):
            shapes = {tuple(f.shape) for f in frames}
            if len(shapes) > 1:
                raise ValueError(f"`{name}`: all frames of a video must have the same shape, got {sorted(shapes)}")
            return torch.stack(list(frames))
        arrays = []
        for j, frame in enumerate(frames):
            if is_image_file(frame):
                frame = _open_image(frame, f"{name}[{j}]")
            if isinstance(frame, PIL.Image.Image):
                frame = np.asarray(frame if frame.mode == "RGB" else frame.convert("RGB"))
            elif isinstance(frame, torch.Tensor):
                frame = frame.detach().cpu().numpy()
            arrays.append(frame)
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"`{name}`: all frames of a video must have the same shape, got {sorted(shapes)}")
        return np.stack(arrays)

    @staticmethod
    def _batched_metadata(video_metadata, num_videos: int) -> list:
        if video_metadata is None:
            return [None] * num_videos
        if isinstance(video_metadata, (dict, VideoMetadata)):
            video_metadata = [video_metadata]
        if isinstance(video_metadata, (list, tuple)) and video_metadata and isinstance(video_metadata[0], list):
            video_metadata = [m for sub in video_metadata for m in sub]
        if not isinstance(video_metadata, (list, tuple)) or len(video_metadata) != num_videos:
            got = len(video_metadata) if isinstance(video_metadata, (list, tuple)) else type(video_metadata).__name__
            raise ValueError(f"`video_metadata` must give one entry per video: {num_videos} videos, got {got}")
        return list(video_metadata)

    def _decode_and_sample_videos(self, videos, video_metadata=None, do_sample_frames=None, sample_indices_fn=None):
        """Decode files, turn frame lists into arrays, sample frames. Returns (list of `_Video`, list of metadata)."""
        items, names = self._split_batch(videos)
        user_metadata = self._batched_metadata(video_metadata, len(items))
        sampler = sample_indices_fn if do_sample_frames else None
        if do_sample_frames and sampler is None:
            sampler = self.sample_frames
        out_videos, out_metadata = [], []
        for item, name, user_meta in zip(items, names, user_metadata, strict=True):
            if isinstance(item, (str, os.PathLike)):
                data, metadata = read_video_pyav(item, sample_indices_fn=sampler, argument=name)
                out_videos.append(_Video(data, ChannelDimension.FIRST, name))
                out_metadata.append(metadata)
                continue
            if sampler is not None and isinstance(item, (list, tuple)) and any(map(is_image_file, item)):
                raise ValueError(
                    f"`{name}`: Sampling frames from a list of images is not supported! Set `do_sample_frames=False` "
                    "(frames given as image files are taken as already sampled, as in transformers)"
                )
            data = self._stack_frames(item, name) if isinstance(item, (list, tuple)) else item
            if data.ndim != 4:
                raise ValueError(f"`{name}`: expected a 4-D video (T, H, W, 3) / (T, 3, H, W), got {_describe(data)}")
            if data.shape[0] == 0:
                raise ValueError(f"`{name}` is an empty video (0 frames), got {_describe(data)}")
            total = int(data.shape[0])
            user_fps = _metadata_get(user_meta, "fps")
            metadata = VideoMetadata(
                total_num_frames=total,
                fps=float(user_fps) if user_fps else None,
                duration=total / float(user_fps) if user_fps else None,
                frames_indices=list(range(total)),
            )
            if sampler is not None:
                indices = np.asarray(sampler(metadata=metadata), dtype=np.int64).reshape(-1)
                if indices.size == 0 or indices.min() < 0 or indices.max() >= total:
                    raise ValueError(f"`{name}`: frame sampling returned invalid indices {indices.tolist()}")
                if not np.array_equal(indices, np.arange(total)):
                    data = data[torch.from_numpy(indices)] if isinstance(data, torch.Tensor) else data[indices]
                metadata.frames_indices = indices.tolist()
            out_videos.append(_Video(data, None, name))
            out_metadata.append(metadata)
        return out_videos, out_metadata

    def _prepare_input_videos(self, videos, do_convert_rgb=None, input_data_format=None, device=None):
        """Each video -> a channels-first (T, 3, H, W) torch tensor (uint8 or float32) on `device`."""
        if input_data_format is not None:
            input_data_format = ChannelDimension(input_data_format)
        prepared = []
        for i, video in enumerate(videos):
            if not isinstance(video, _Video):
                video = _Video(video, None, f"videos[{i}]")
            data, name = video.data, video.name
            layout = video.layout or input_data_format
            if layout is None:  # infer: numpy prefers channels-last, torch channels-first
                first, last = data.shape[1] == 3, data.shape[-1] == 3
                if isinstance(data, np.ndarray):
                    layout = ChannelDimension.LAST if last else ChannelDimension.FIRST if first else None
                else:
                    layout = ChannelDimension.FIRST if first else ChannelDimension.LAST if last else None
                if layout is None:
                    raise ValueError(
                        f"`{name}`: expected 3 colour channels (RGB), as (T, H, W, 3) or (T, 3, H, W), got "
                        f"{_describe(data)}; convert grayscale (1 channel) or RGBA (4 channels) videos to RGB first"
                    )
            channels = data.shape[1] if layout == ChannelDimension.FIRST else data.shape[-1]
            if channels != 3:
                raise ValueError(
                    f"`{name}`: expected 3 colour channels (RGB) on the {layout.value} axis, got {channels} in "
                    f"{_describe(data)}"
                )
            if isinstance(data, np.ndarray):
                if data.dtype == np.bool_ or not (
                    np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)
                ):
                    raise TypeError(f"`{name}`: expected uint8 (or float) pixel values, got {_describe(data)}")
                data = torch.from_numpy(np.ascontiguousarray(data))
            data = data.detach()
            if data.dtype == torch.bool or data.is_complex():
                raise TypeError(f"`{name}`: expected uint8 (or float) pixel values, got {_describe(data)}")
            if layout == ChannelDimension.LAST:
                data = data.permute(0, 3, 1, 2)
            if data.dtype.is_floating_point:
                data = data.to(torch.float32)
                _check_float_pixels(data, name)
            elif data.dtype != torch.uint8:
                low, high = int(data.min()), int(data.max())
                if low < 0 or high > 255:
                    raise ValueError(
                        f"`{name}`: integer pixel values must lie in [0, 255], got [{low}, {high}] in {_describe(data)}"
                    )
                data = data.to(torch.uint8)
            if device is not None:
                data = data.to(device)
            prepared.append(data.contiguous())
        return prepared

    def _preprocess(self, videos: list[torch.Tensor], return_tensors=None, **kwargs) -> BatchFeature:
        """Resize / crop / rescale / normalize (transformers' batched implementation), after a shape check."""
        if kwargs.get("do_rescale") and any(_is_scaled_video(video) for video in videos):
            # transformers' image processors warn the same way (image_utils.is_scaled_image).
            logger.warning_once(
                "It looks like you are trying to rescale already rescaled videos (float pixel values within [0, 1]). "
                "If the input videos have pixel values between 0 and 1, set `do_rescale=False` to avoid rescaling "
                "them again."
            )
        if return_tensors is not None and len(videos) > 1:
            frame_counts = sorted({int(v.shape[0]) for v in videos})
            if len(frame_counts) > 1:
                raise ValueError(
                    f"cannot stack videos with different numbers of frames {frame_counts} into one tensor: this "
                    "happens with `fps` sampling or `do_sample_frames=False`; use `num_frames`, or return_tensors=None"
                )
            if not kwargs.get("do_resize") and not kwargs.get("do_center_crop"):
                sizes = sorted({tuple(v.shape[-2:]) for v in videos})
                if len(sizes) > 1:
                    raise ValueError(
                        f"cannot stack videos of different frame sizes {sizes} with `do_resize=False`; resize them "
                        "or use return_tensors=None"
                    )
        return super()._preprocess(videos, return_tensors=return_tensors, **kwargs)

    def _standardize_kwargs(self, **kwargs) -> dict:
        try:
            return super()._standardize_kwargs(**kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"invalid `size` / `crop_size` ({kwargs.get('size')!r} / {kwargs.get('crop_size')!r}): {err}"
            ) from err
