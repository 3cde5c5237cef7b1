"""Data for trajtok_hf: a procedural video generator and a real-photo composite generator, both with exact
trajectory ground truth; local video-folder datasets; the pseudo-label converter (per-frame instances + trajectory
graph → per-pixel ids), motion pseudo-labels for unlabeled footage (optical flow → trajectories) and a video-text
collator. Independent of ``trajtok_hf.models``."""

from .collator import VideoTextCollator
from .motion_labels import MotionLabelConfig, dense_flow, motion_pseudo_labels
from .photo_composites import (
    SIZE_CLASSES,
    SPRITE_SHAPES,
    PhotoCompositeConfig,
    generate_composite,
    iter_composites,
    labels_on_grid,
    write_composite_folder,
)
from .photo_sources import FOOTAGE, HELD_OUT_PHOTOS, TRAIN_PHOTOS, footage_available, load_photo
from .procedural_textures import PROCEDURAL_KINDS, procedural_texture
from .pseudo_labels import IGNORE_INDEX, downsample_labels, trajectories_to_pixel_labels
from .synthetic import (
    BACKGROUNDS,
    COLOURS,
    DIRECTION_FLIPS,
    MOTIONS,
    SHAPES,
    SIZES,
    TEXTURES,
    TIME_REVERSALS,
    SyntheticVideoConfig,
    caption_from_objects,
    default_video_codec,
    generate_clip,
    iter_clips,
    make_synthetic_dataset,
    write_clip_folder,
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
    "DIRECTION_FLIPS",
    "FOOTAGE",
    "HELD_OUT_PHOTOS",
    "IGNORE_INDEX",
    "MOTIONS",
    "MotionLabelConfig",
    "PROCEDURAL_KINDS",
    "SHAPES",
    "SIZES",
    "SIZE_CLASSES",
    "SPRITE_SHAPES",
    "TEXTURES",
    "TIME_REVERSALS",
    "TRAIN_PHOTOS",
    "PhotoCompositeConfig",
    "SyntheticVideoConfig",
    "VideoClipDecoder",
    "VideoTextCollator",
    "caption_from_objects",
    "default_video_codec",
    "dense_flow",
    "downsample_labels",
    "footage_available",
    "generate_clip",
    "generate_composite",
    "get_decoder",
    "iter_clips",
    "iter_composites",
    "labels_on_grid",
    "load_masks",
    "load_photo",
    "load_video_text_dataset",
    "make_synthetic_dataset",
    "motion_pseudo_labels",
    "procedural_texture",
    "read_video",
    "sample_frame_indices",
    "trajectories_to_pixel_labels",
    "write_clip_folder",
    "write_composite_folder",
    "write_mp4",
    "write_video_folder",
]
