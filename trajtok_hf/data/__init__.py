"""Data for trajtok_hf: a procedural video generator with exact trajectory ground truth, local video-folder
datasets, the pseudo-label converter (per-frame instances + trajectory graph → per-pixel ids) and a video-text
collator. Independent of ``trajtok_hf.models``."""

from .collator import VideoTextCollator
from .pseudo_labels import IGNORE_INDEX, downsample_labels, trajectories_to_pixel_labels
from .synthetic import (
    BACKGROUNDS,
    COLOURS,
    MOTIONS,
    SHAPES,
    SIZES,
    TEXTURES,
    SyntheticVideoConfig,
    default_video_codec,
    generate_clip,
    iter_clips,
    make_synthetic_dataset,
    write_mp4,
    write_video_folder,
)
from .video_folder import (
    VideoClipDecoder,
    get_decoder,
    load_masks,
    load_video_text_dataset,
    read_video,
    sample_frame_indices,
)

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "IGNORE_INDEX",
    "MOTIONS",
    "SHAPES",
    "SIZES",
    "TEXTURES",
    "SyntheticVideoConfig",
    "VideoClipDecoder",
    "VideoTextCollator",
    "default_video_codec",
    "downsample_labels",
    "generate_clip",
    "get_decoder",
    "iter_clips",
    "load_masks",
    "load_video_text_dataset",
    "make_synthetic_dataset",
    "read_video",
    "sample_frame_indices",
    "trajectories_to_pixel_labels",
    "write_mp4",
    "write_video_folder",
]
