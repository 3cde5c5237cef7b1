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
  result is rounded back to uint8, as PIL does): at most 1 grey level from PIL, i.e. <= 0.018 after normalisation
  (``test_resize_matches_pil_bicubic`` pins this). With ``antialias=False`` (the tensor default of torchvision < 0.17;
  which version trained the release is not known) the gap is the ~15 levels (0.26) above when upsampling and far larger
  when downsampling big frames (aliasing), so the official *training* resize may differ from both PIL and us. Float
  inputs are resized in float (no rounding or clamping of bicubic overshoot): they can be tens of grey levels off PIL
  next to hard edges -- pass uint8 frames for parity with the official preprocessing.
* Frame sampling and decoding are ours (``video_io_trajtok``): ``num_frames`` [16] frames at the centres of
  ``num_frames`` equal segments of the clip, or ``fps`` frames per second; a clip shorter than ``num_frames`` repeats
  frames uniformly (never zero/fake padding: fake frames could create trajectories). Files are decoded with PyAV.
  The release's own clip sampling is not reproduced here.
* Aspect ratio, a setting that is not in the official code: ``resize_mode="squash"`` (default, the release's
  preprocessing above; the converters write it explicitly), ``"pad"`` (resize the longest edge to the target, then
  pad the short side symmetrically with black, i.e. grey level 0 before normalisation) or ``"crop"`` (resize the
  shortest edge to the target, then crop the centre). ``return_geometry=True`` returns one :class:`VideoGeometry`
  per video, and :meth:`TrajTokVideoProcessor.post_process_trajectory_ids` maps the model's trajectory ids back to
  the original frame size: padded margins are dropped, cropped-away margins get the id -1 (not coloured by
  ``trajtok_hf.visualization``).

Extension points are transformers' public ones (``preprocess``, ``fetch_videos``, ``sample_frames``) plus the
``_preprocess`` / ``_validate_preprocess_kwargs`` / ``_standardize_kwargs`` hooks that transformers' own video
processors override. This file imports only numpy, torch, transformers, PIL and its sibling ``video_io_trajtok``, so
``save_pretrained`` of a processor registered with ``register_for_auto_class`` can copy both as remote code.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from functools import partial
from typing import Any

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_utils import BatchFeature
from transformers.image_transforms import get_resize_output_image_size, get_size_with_aspect_ratio
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    ChannelDimension,
    PILImageResampling,
    SizeDict,
)
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.utils import logging
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata

from .video_io_trajtok import check_num_frames, read_video_pyav, uniform_frame_indices

__all__ = [
    "RESIZE_MODES",
    "TrajTokVideoProcessor",
    "TrajTokVideoProcessorKwargs",
    "VideoGeometry",
    "compute_video_geometry",
    "read_video_pyav",
    "uniform_frame_indices",
]

logger = logging.get_logger(__name__)

# Largest |value| of a float input frame: float frames are 0-255 grey levels (0-1 with do_rescale=False), plus the
# overshoot of an earlier bicubic resize; far larger values are a bug upstream and end as NaN tokens in the model.
MAX_FLOAT_PIXEL_MAGNITUDE = 1e4

# Keys that transformers itself writes into / passes with a saved processor dict; accepted and ignored.
_SERIALIZATION_KEYS = frozenset(
    {"video_processor_type", "image_processor_type", "feature_extractor_type", "processor_class", "auto_map"}
)

# How a frame of another aspect ratio reaches the output size: stretched (the release), letterboxed, or cropped.
RESIZE_MODES = ("squash", "pad", "crop")


class TrajTokVideoProcessorKwargs(VideosKwargs, total=False):
    r"""
    resize_mode (`str`, *optional*, defaults to `"squash"`):
        `"squash"` resizes every frame to `size` (aspect ratio not kept, the official preprocessing); `"pad"` resizes
        the longest edge to `size` and pads the rest with black; `"crop"` resizes the shortest edge and crops the
        centre. `"pad"` and `"crop"` need `size` with `height` and `width`.
    return_geometry (`bool`, *optional*, defaults to `False`):
        Also return `video_geometry`: one `VideoGeometry` per video (original size, resized size, placement in the
        output frame), as `post_process_trajectory_ids` takes it.
    """

    resize_mode: str | None
    return_geometry: bool | None


# ----------------------------------------------------------------------------------------------------------------------
# Sampling arguments
# ----------------------------------------------------------------------------------------------------------------------
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


def _check_sampling_args(num_frames, fps) -> None:
    check_num_frames(num_frames)
    _check_fps(fps)
    if num_frames is not None and fps is not None:
        raise ValueError(
            f"`num_frames` and `fps` are mutually exclusive, got num_frames={num_frames} and fps={fps}: pass only one "
            "(num_frames: a fixed number of frames per video; fps: frames per second of video)"
        )


def _metadata_get(metadata: Any, key: str) -> Any:
    if metadata is None:
        return None
    if isinstance(metadata, dict):
        return metadata.get(key)
    return getattr(metadata, key, None)


# ----------------------------------------------------------------------------------------------------------------------
# Geometry: where the original frame lands in the output frame
# ----------------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class VideoGeometry:
    """Where a video's frames land in the processor's output frames.

    The original ``original_size`` (H, W) frame is resized to ``resized_size`` and placed with its top-left corner at
    ``offset`` (top, left) in the ``output_size`` frame: a positive offset is a padded margin, a negative one a
    cropped-away margin. All sizes are in pixels, (height, width).
    """

    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    offset: tuple[int, int]
    output_size: tuple[int, int]

    @property
    def content_box(self) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` (bottom/right exclusive) of the output pixels that show the video."""
        top, left = (max(0, o) for o in self.offset)
        bottom, right = (
            min(out, o + r) for out, o, r in zip(self.output_size, self.offset, self.resized_size, strict=True)
        )
        return top, left, bottom, right

    def grid_indices(self, grid_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """For each original row and column, the row / column of a ``grid_size`` (h, w) grid laid over the output
        frame (the model's mask grid) under its centre, or -1 where the output does not show it (cropped away).

        Row ``r`` maps to ``floor(((r + 1/2) * rh / H + top) * h / H_out)`` (nearest neighbour, exact integers)."""
        return tuple(
            _axis_indices(*axis)
            for axis in zip(
                self.original_size, self.resized_size, self.offset, self.output_size, grid_size, strict=True
            )
        )


def _axis_indices(original: int, resized: int, offset: int, output: int, grid: int) -> np.ndarray:
    centres = 2 * np.arange(original, dtype=np.int64) + 1  # twice the pixel centres
    cells = ((centres * resized + 2 * offset * original) * grid) // (2 * original * output)
    return np.where((cells >= 0) & (cells < grid), cells, -1)


def _centre_offset(resized: int, output: int) -> int:
    """Top (left) of a centred placement: transformers' ``center_crop`` pads ``(output - resized) // 2`` before the
    content and crops ``(resized - output) // 2`` of it away."""
    return (output - resized) // 2 if output > resized else -((resized - output) // 2)


def _fitted_size(original: tuple[int, int], target: tuple[int, int], resize_mode: str) -> tuple[int, int]:
    """Size of the aspect-preserving resize: the limiting edge (longest for "pad", shortest for "crop") takes the
    target exactly, the other is rounded half up (exact integers)."""
    (height, width), (target_h, target_w) = original, target
    height_limits = target_h * width <= target_w * height  # the height reaches its target first
    if height_limits == (resize_mode == "pad"):
        return target_h, max(1, (2 * width * target_h + height) // (2 * height))
    return max(1, (2 * height * target_w + width) // (2 * width)), target_w


def _resized_size(original: tuple[int, int], size: SizeDict) -> tuple[int, int]:
    """The size transformers' ``resize`` gives a frame (the size forms that have a geometry)."""
    if size.height and size.width:
        return size.height, size.width
    if size.shortest_edge and size.longest_edge:
        return tuple(get_size_with_aspect_ratio(original, size.shortest_edge, size.longest_edge))
    if size.shortest_edge:
        frame = np.broadcast_to(np.uint8(0), (3, *original))  # no memory: only its shape is read
        return tuple(
            get_resize_output_image_size(
                frame, size=size.shortest_edge, default_to_square=False, input_data_format=ChannelDimension.FIRST
            )
        )
    raise ValueError(f"`return_geometry` supports `size` with height and width or a shortest edge, got {dict(size)}")


def compute_video_geometry(
    original_size: tuple[int, int],
    resize_mode: str,
    do_resize: bool,
    size: SizeDict,
    do_center_crop: bool = False,
    crop_size: SizeDict | None = None,
) -> VideoGeometry:
    """The :class:`VideoGeometry` of a frame of ``original_size`` under the processor's settings."""
    original_size = tuple(int(s) for s in original_size)
    if not do_resize:
        resized = original_size
    elif resize_mode == "squash":
        resized = _resized_size(original_size, size)
    else:
        resized = _fitted_size(original_size, (size.height, size.width), resize_mode)
    if resize_mode != "squash" and do_resize:
        output = (size.height, size.width)
    elif do_center_crop:
        output = (crop_size.height, crop_size.width)
    else:
        output = resized
    offset = tuple(_centre_offset(r, o) for r, o in zip(resized, output, strict=True))
    return VideoGeometry(original_size, tuple(resized), offset, tuple(output))


def _ids_to_original(trajectory_ids, geometry: VideoGeometry) -> torch.Tensor:
    """(T, h, w) ids on the mask grid -> (T, H, W) ids at the original size; -1 where the output does not show it."""
    ids = torch.as_tensor(trajectory_ids)
    if ids.ndim != 3 or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"`trajectory_ids` of one video must be a (T, h, w) integer tensor, got {_describe(ids)}")
    rows, cols = (torch.from_numpy(i).to(ids.device) for i in geometry.grid_indices(tuple(ids.shape[-2:])))
    mapped = ids.long()[:, rows.clamp(min=0)][:, :, cols.clamp(min=0)]
    unseen = (rows < 0)[:, None] | (cols < 0)[None, :]
    return mapped.masked_fill(unseen, -1)


def _check_resize_settings(resize_mode: Any, do_resize: bool, size: SizeDict | None, do_center_crop: bool) -> None:
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f"`resize_mode` must be one of {RESIZE_MODES}, got {resize_mode!r}")
    if resize_mode == "squash" or not do_resize:
        return
    if size is None or not (size.height and size.width):
        raise ValueError(
            f"`resize_mode`={resize_mode!r} needs `size` with 'height' and 'width' (the output frame), got "
            f"{dict(size) if size is not None else None}"
        )
    if do_center_crop:
        raise ValueError(
            f"`resize_mode`={resize_mode!r} already fits the frame to `size`: set `do_center_crop=False` (center crop "
            "applies to `resize_mode='squash'`)"
        )


# ----------------------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------------------
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


def _infer_layout(data, name: str) -> ChannelDimension:
    """The channel axis of a (T, ...) video: numpy prefers channels-last, torch channels-first."""
    first, last = data.shape[1] == 3, data.shape[-1] == 3
    if isinstance(data, np.ndarray):
        layout = ChannelDimension.LAST if last else ChannelDimension.FIRST if first else None
    else:
        layout = ChannelDimension.FIRST if first else ChannelDimension.LAST if last else None
    if layout is None:
        raise ValueError(
            f"`{name}`: expected 3 colour channels (RGB), as (T, H, W, 3) or (T, 3, H, W), got {_describe(data)}; "
            "convert grayscale (1 channel) or RGBA (4 channels) videos to RGB first"
        )
    return layout


def _check_pixel_dtype(data, name: str) -> None:
    if isinstance(data, np.ndarray):
        numeric = np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)
        bad = data.dtype == np.bool_ or not numeric
    else:
        bad = data.dtype == torch.bool or data.is_complex()
    if bad:
        raise TypeError(f"`{name}`: expected uint8 (or float) pixel values, got {_describe(data)}")


def _as_channels_first(data, layout: ChannelDimension | None, name: str) -> torch.Tensor:
    """A (T, H, W, 3) / (T, 3, H, W) numpy array or torch tensor -> a (T, 3, H, W) uint8 or float32 torch tensor."""
    layout = _infer_layout(data, name) if layout is None else ChannelDimension(layout)
    channels = data.shape[1] if layout == ChannelDimension.FIRST else data.shape[-1]
    if channels != 3:
        raise ValueError(
            f"`{name}`: expected 3 colour channels (RGB) on the {layout.value} axis, got {channels} in "
            f"{_describe(data)}"
        )
    _check_pixel_dtype(data, name)
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(np.ascontiguousarray(data))
    data = data.detach()
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
    return data.contiguous()


def _sample_array(data, metadata: VideoMetadata, sampler, name: str):
    """Keep the frames ``sampler(metadata=...)`` selects from an in-memory (T, ...) video; records them in
    ``metadata.frames_indices``."""
    total = metadata.total_num_frames
    indices = np.asarray(sampler(metadata=metadata), dtype=np.int64).reshape(-1)
    if indices.size == 0 or indices.min() < 0 or indices.max() >= total:
        raise ValueError(f"`{name}`: frame sampling returned invalid indices {indices.tolist()}")
    metadata.frames_indices = indices.tolist()
    if np.array_equal(indices, np.arange(total)):
        return data
    return data[torch.from_numpy(indices)] if isinstance(data, torch.Tensor) else data[indices]


# ----------------------------------------------------------------------------------------------------------------------
# The processor
# ----------------------------------------------------------------------------------------------------------------------
class TrajTokVideoProcessor(BaseVideoProcessor):
    r"""
    Turns video clips into the `pixel_values_videos` tensor (batch, frames, 3, 224, 224) that TrajTok models take.

    Per video: decode (file paths, with PyAV) -> sample `num_frames` frames uniformly (or `fps` frames per second)
    -> resize every frame to `size` (224x224, bicubic, antialiased; `resize_mode` says how the aspect ratio is
    handled) -> optional center crop -> rescale by 1/255 -> normalise with the ImageNet mean/std. Videos of different
    lengths in one batch come out with the same number of frames (short videos repeat frames uniformly), so
    `return_tensors="pt"` stacks them.

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
            Output frame size; `{"shortest_edge": s}` keeps the aspect ratio instead (with `resize_mode="squash"`).
        resize_mode (`str`, *optional*, defaults to `"squash"`):
            `"squash"` (the official preprocessing: aspect ratio not kept), `"pad"` (longest edge to `size`, black
            margins) or `"crop"` (shortest edge to `size`, centre crop); see `TrajTokVideoProcessorKwargs`.
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
        return_geometry (`bool`, defaults to `False`): also return `video_geometry`, one `VideoGeometry` per video,
            for `post_process_trajectory_ids`.

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
    resize_mode = "squash"
    return_metadata = False
    return_geometry = False
    valid_kwargs = TrajTokVideoProcessorKwargs
    model_input_names = ["pixel_values_videos"]

    def __init__(self, **kwargs: Unpack[TrajTokVideoProcessorKwargs]) -> None:
        self._reject_unknown_kwargs(kwargs, "TrajTokVideoProcessor()", allowed_extra=_SERIALIZATION_KEYS)
        _plain_sampling_args(kwargs)
        _check_sampling_args(kwargs.get("num_frames"), kwargs.get("fps"))
        super().__init__(**kwargs)
        if kwargs.get("fps") is not None:
            # `_set_attributes` fills a None num_frames with the class default (16); fps replaces it.
            self.num_frames = None
        _check_resize_settings(self.resize_mode, self.do_resize, self.size, self.do_center_crop)

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

    def preprocess(self, videos, **kwargs: Unpack[TrajTokVideoProcessorKwargs]) -> BatchFeature:
        """Preprocess one video or a batch of videos; see the class docstring for inputs and arguments.

        The inputs are read here (files decoded with :meth:`fetch_videos`, frames sampled with
        :meth:`sample_frames`, every video checked and made a channels-first tensor), then transformers' own
        ``preprocess`` resizes, rescales and normalises them."""
        self._reject_unknown_kwargs(kwargs, "TrajTokVideoProcessor.__call__()")
        for key in ("do_sample_frames", "do_resize", "do_rescale", "do_normalize", "do_center_crop", "return_geometry"):
            if kwargs.get(key) is not None and not isinstance(kwargs[key], bool):
                raise TypeError(f"`{key}` must be a bool, got {type(kwargs[key]).__name__} {kwargs[key]!r}")
        # num_frames / fps: a value given at call time replaces the instance's *pair*, so that a call with fps=2
        # on a processor that defaults to num_frames=16 samples by fps (and vice versa). Both given -> error.
        _plain_sampling_args(kwargs)
        num_frames, fps = kwargs.get("num_frames"), kwargs.get("fps")
        _check_sampling_args(num_frames, fps)
        if num_frames is not None:
            kwargs["fps"] = None
        elif fps is not None:
            kwargs["num_frames"] = None
        do_sample_frames = kwargs.get("do_sample_frames")
        do_sample_frames = self.do_sample_frames if do_sample_frames is None else do_sample_frames
        sampler = partial(self.sample_frames, num_frames=num_frames, fps=fps) if do_sample_frames else None
        videos, metadata = self._load_videos(
            videos, kwargs.pop("video_metadata", None), sampler, kwargs.pop("input_data_format", None)
        )
        kwargs.update(do_sample_frames=False, video_metadata=metadata, input_data_format=ChannelDimension.FIRST)
        try:
            return super().preprocess(videos, **kwargs)
        except Exception as err:
            # huggingface_hub's strict-dataclass errors are neither ValueError nor TypeError; re-raise as TypeError
            # (the message names the field).
            if type(err).__name__.startswith("StrictDataclass"):
                raise TypeError(f"invalid argument to TrajTokVideoProcessor: {err}") from err
            raise

    def fetch_videos(self, video_url_or_urls, sample_indices_fn=None):
        """Decode video files with PyAV (`read_video_pyav` of ``video_io_trajtok``: the frame count of the header,
        truncated files resampled over the frames that decode). Returns ``(frames (T, H, W, 3) uint8,
        VideoMetadata)`` for one path, and a pair of lists for a list of paths, as transformers' ``fetch_videos``."""
        if isinstance(video_url_or_urls, (list, tuple)):
            pairs = [self.fetch_videos(x, sample_indices_fn=sample_indices_fn) for x in video_url_or_urls]
            return [frames for frames, _ in pairs], [metadata for _, metadata in pairs]
        return read_video_pyav(video_url_or_urls, sample_indices_fn=sample_indices_fn)

    # ------------------------------------------------------------------------------------------------------------------
    def sample_frames(
        self, metadata: VideoMetadata | dict, num_frames: int | None = None, fps: float | None = None, **kwargs
    ) -> np.ndarray:
        """Indices of the frames to keep (see `uniform_frame_indices`; repeats frames of short videos).

        `num_frames` and `fps` are mutually exclusive; when both are None, the instance's values are used, and when
        those are None too, every frame is kept. With `fps`, ``max(1, floor(total / video_fps * fps))`` frames are
        sampled uniformly (more than the clip has if `fps` exceeds its frame rate: frames then repeat).
        """
        _check_sampling_args(num_frames, fps)
        if num_frames is None and fps is None:
            num_frames, fps = self.num_frames, self.fps
            _check_sampling_args(num_frames, fps)
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

    def post_process_trajectory_ids(self, trajectory_ids, video_geometry: list[VideoGeometry]) -> list[torch.Tensor]:
        """Map the model's ``trajectory_ids`` (B, T, h, w) (the hard mask on the mask grid, which covers the output
        frame) back to each video's original frame size, nearest neighbour.

        Args:
            trajectory_ids: a (B, T, h, w) integer tensor / array, or a list of (T, h, w) ones.
            video_geometry: the processor's ``video_geometry`` output (``return_geometry=True``), one per video.

        Returns:
            One (T, H, W) int64 tensor per video at its original size. Pixels the model did not see (cropped away by
            `resize_mode="crop"` or a center crop) are -1; padded margins of the output are dropped.
        """
        if len(trajectory_ids) != len(video_geometry):
            raise ValueError(
                f"`trajectory_ids` has {len(trajectory_ids)} videos but `video_geometry` has {len(video_geometry)}"
            )
        return [_ids_to_original(ids, geometry) for ids, geometry in zip(trajectory_ids, video_geometry, strict=True)]

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

    def _load_videos(self, videos, video_metadata, sampler, input_data_format) -> tuple[list[torch.Tensor], list]:
        """Read every video of the batch: a (T, 3, H, W) uint8/float32 tensor and a `VideoMetadata` each."""
        items, names = self._split_batch(videos)
        user_metadata = self._batched_metadata(video_metadata, len(items))
        loaded = [
            self._load_video(item, name, meta, sampler, input_data_format)
            for item, name, meta in zip(items, names, user_metadata, strict=True)
        ]
        return [video for video, _ in loaded], [metadata for _, metadata in loaded]

    def _load_video(self, item, name: str, user_metadata, sampler, input_data_format):
        if isinstance(item, (str, os.PathLike)):
            try:
                frames, metadata = self.fetch_videos(item, sample_indices_fn=sampler)
            except ValueError as err:
                raise ValueError(f"`{name}`: {err}") from err
            return _as_channels_first(frames, ChannelDimension.LAST, name), metadata
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
        total, user_fps = int(data.shape[0]), _metadata_get(user_metadata, "fps")
        metadata = VideoMetadata(
            total_num_frames=total,
            fps=float(user_fps) if user_fps else None,
            duration=total / float(user_fps) if user_fps else None,
            frames_indices=list(range(total)),
        )
        if sampler is not None:
            data = _sample_array(data, metadata, sampler, name)
        return _as_channels_first(data, input_data_format, name), metadata

    def _validate_preprocess_kwargs(self, resize_mode=None, do_resize=None, size=None, do_center_crop=None, **kwargs):
        super()._validate_preprocess_kwargs(do_resize=do_resize, size=size, do_center_crop=do_center_crop, **kwargs)
        _check_resize_settings(resize_mode, do_resize, size, do_center_crop)

    def _preprocess(
        self,
        videos: list[torch.Tensor],
        resize_mode: str = "squash",
        return_geometry: bool = False,
        return_tensors=None,
        **kwargs,
    ) -> BatchFeature:
        """Resize (`resize_mode`) / crop / rescale / normalize with transformers' batched implementation, after a
        check that the batch can be stacked; adds `video_geometry` when asked."""
        self._check_batch(videos, return_tensors, **kwargs)
        if resize_mode == "squash" or not kwargs["do_resize"]:
            output = super()._preprocess(videos, return_tensors=return_tensors, **kwargs)
        else:
            fitted = [self._fit_aspect(video, resize_mode, **kwargs) for video in videos]
            output = BatchFeature(data={"pixel_values_videos": fitted}, tensor_type=return_tensors)
        if return_geometry:
            output["video_geometry"] = [
                compute_video_geometry(
                    video.shape[-2:],
                    resize_mode,
                    kwargs["do_resize"],
                    kwargs["size"],
                    kwargs["do_center_crop"],
                    kwargs["crop_size"],
                )
                for video in videos
            ]
        return output

    def _fit_aspect(self, video: torch.Tensor, resize_mode: str, size: SizeDict, **kwargs) -> torch.Tensor:
        """One video, aspect ratio kept: resize to the fitted size, then transformers' center crop to `size`, which
        crops the overflow ("crop") or pads the margins with 0, i.e. black ("pad"), before rescaling."""
        height, width = _fitted_size(tuple(video.shape[-2:]), (size.height, size.width), resize_mode)
        kwargs.update(do_center_crop=True, crop_size=SizeDict(height=size.height, width=size.width))
        output = super()._preprocess([video], size=SizeDict(height=height, width=width), **kwargs)
        return output["pixel_values_videos"][0]

    def _check_batch(self, videos: list[torch.Tensor], return_tensors, **kwargs) -> None:
        if kwargs.get("do_rescale") and any(_is_scaled_video(video) for video in videos):
            # transformers' image processors warn the same way (image_utils.is_scaled_image).
            logger.warning_once(
                "It looks like you are trying to rescale already rescaled videos (float pixel values within [0, 1]). "
                "If the input videos have pixel values between 0 and 1, set `do_rescale=False` to avoid rescaling "
                "them again."
            )
        if return_tensors is None or len(videos) < 2:
            return
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

    def _standardize_kwargs(self, **kwargs) -> dict:
        try:
            return super()._standardize_kwargs(**kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"invalid `size` / `crop_size` ({kwargs.get('size')!r} / {kwargs.get('crop_size')!r}): {err}"
            ) from err
