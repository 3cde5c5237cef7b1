"""Training data pieces: procedural clips rendered on the fly, a resumable epoch shuffle, and the processor's
normalisation applied in torch.

* :class:`SyntheticClipDataset`: clip ``i`` of epoch ``e`` is a pure function of ``(seed, e · num_clips + i)``, so
  processes and epochs see different clips and a resumed run sees the same ones. Its source is the shapes generator
  (:class:`~trajtok_hf.data.SyntheticVideoConfig`), the photo composites
  (:class:`~trajtok_hf.data.PhotoCompositeConfig`), windows of real footage with pseudo-labels
  (:class:`~trajtok_hf.data.FootageClipConfig`), or a weighted mixture of several configs.
* :class:`EpochShuffleSampler`: shuffles a finite dataset with an order that depends only on ``(seed, epoch)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..data import (
    CLIP_TRANSFORMS,
    FootageClipConfig,
    PhotoCompositeConfig,
    SyntheticVideoConfig,
    fact_negative_caption,
    generate_clip,
    generate_composite,
    generate_footage_clip,
    generate_swapped_clip,
    paraphrase_clip,
    shape_negative_caption,
    swap_motions_caption,
    transform_clip,
)

ClipConfig = SyntheticVideoConfig | PhotoCompositeConfig | FootageClipConfig
CLIP_CONFIGS = (SyntheticVideoConfig, PhotoCompositeConfig, FootageClipConfig)
CLIP_CONFIG_NAMES = tuple(c.__name__ for c in CLIP_CONFIGS)


PAIRED_TRANSFORMS: tuple[str, ...] = (*CLIP_TRANSFORMS, "swap_objects")
"""Names that :class:`SyntheticClipDataset`'s ``paired_transforms`` accepts: the transforms of
:func:`~trajtok_hf.data.transform_clip` and ``"swap_objects"`` (:func:`~trajtok_hf.data.generate_swapped_clip`)."""


def render_clip(config: ClipConfig, seed: int, index: int) -> dict[str, Any]:
    """Clip ``index`` of ``seed`` from the generator that ``config`` configures (``video``, ``segmentation``,
    ``segmentation_labels``, ``caption`` and ``objects`` from each)."""
    if isinstance(config, PhotoCompositeConfig):
        return generate_composite(config, seed, index)
    if isinstance(config, SyntheticVideoConfig):
        return generate_clip(config, seed, index)
    if isinstance(config, FootageClipConfig):
        return generate_footage_clip(config, seed, index)
    raise TypeError(f"config must be one of {CLIP_CONFIG_NAMES}, got {type(config).__name__}")


def normalize_video(video: np.ndarray | torch.Tensor, video_processor) -> torch.Tensor:
    """One uint8 clip ``(T, H, W, 3)`` → float ``(T, 3, H, W)`` as ``video_processor`` would produce it.

    When the frames already have the processor's ``size`` (the synthetic clips are rendered at the model's size),
    the resize is skipped and only ``(x / 255 − mean) / std`` is applied in torch (about 100× faster than the full
    processor call and equal to it up to float rounding); otherwise the processor runs in full.
    """
    size = getattr(video_processor, "size", None) or {}
    frames = torch.as_tensor(video)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"video must be (T, H, W, 3) uint8, got shape {tuple(frames.shape)}")
    same_size = (size.get("height"), size.get("width")) == tuple(frames.shape[1:3])
    plain = (
        same_size
        and not getattr(video_processor, "do_center_crop", False)
        and getattr(video_processor, "do_rescale", True)
        and getattr(video_processor, "do_normalize", True)
        and frames.dtype == torch.uint8
    )
    if not plain:
        out = video_processor(videos=[np.asarray(video)], return_tensors="pt", do_sample_frames=False)
        return out["pixel_values_videos"][0]
    mean = torch.tensor(video_processor.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(video_processor.image_std, dtype=torch.float32).view(1, 3, 1, 1)
    x = frames.permute(0, 3, 1, 2).float() * float(video_processor.rescale_factor)
    return (x - mean) / std


class SyntheticClipDataset(Dataset):
    """Procedural clips rendered on the fly (map-style, no disk): item ``i`` of epoch ``e`` is
    ``generate_clip(config, seed, e · num_clips + i)``.

    Each item: ``pixel_values_videos`` float ``(T, 3, H, W)`` (normalised like ``video_processor``),
    ``segmentation_labels`` long ``(T, H/4, W/4)``, ``caption`` str. ``accelerate.prepare`` shards the indices over
    processes, so every process sees different clips; :meth:`set_epoch` moves to fresh clips each epoch (accelerate's
    ``DataLoader`` calls it at every pass). Two datasets with different ``seed`` never share a clip (held-out sets);
    an evaluation set passes ``fresh_each_epoch=False`` so that every evaluation sees the same clips.

    ``paired_transforms`` (procedural clips only; names of :data:`PAIRED_TRANSFORMS`): items come in pairs, item
    ``2j`` a clip and item ``2j + 1`` the same clip played backwards or mirrored
    (:func:`~trajtok_hf.data.transform_clip`) or, for ``"swap_objects"``, rendered again with the paths of its first
    two objects exchanged (:func:`~trajtok_hf.data.generate_swapped_clip`; a clip that has no such copy, e.g. one
    with a single object, is played backwards instead), with the caption of what it shows; the transform cycles
    through the given names with ``j`` (a name given twice comes twice as often). With an even batch size and a
    sequential sampler, a pair shares a batch: the contrastive loss then has to tell a clip from its time reversal,
    its mirror image or the clip with its motions bound to the other objects.

    ``swap_negatives`` (procedural clips only): every item also has ``negative_caption``, its caption with the motions
    of its first two objects exchanged (:func:`~trajtok_hf.data.swap_motions_caption`), or ``None`` when its first two
    objects move alike or it has one object: a caption that only the binding of motions to objects tells apart.

    ``shape_negatives`` (procedural clips only): every item also has ``shape_negative_caption``, its caption with one
    object's shape replaced by another of the config's shapes (:func:`~trajtok_hf.data.shape_negative_caption`;
    object and shape drawn from (``seed``, clip index)): a caption that only the shape tells apart.

    ``paraphrases`` (procedural clips only): every item also has ``paraphrase_caption``, its caption in another
    training wording (:func:`~trajtok_hf.data.paraphrase_clip`; wordings drawn from (``seed``, clip index, transform)),
    and, with ``swap_negatives``, ``paraphrase_negative_caption``: that paraphrase with the motions of the first two
    objects exchanged (or ``None``, as ``negative_caption``). The targets of a caption-to-paraphrase loss that asks the
    text tower for the facts, whatever the wording.

    ``fact_negatives`` (procedural clips only): every item also has ``fact_negative_caption``, its caption with its
    speed words flipped or its "in front of" reversed (:func:`~trajtok_hf.data.fact_negative_caption`; drawn from
    (``seed``, clip index)), or ``None`` when its caption states neither (configs with ``caption_speed`` /
    ``caption_occlusion``).
    """

    def __init__(
        self,
        config: ClipConfig | Sequence[ClipConfig],
        seed: int,
        num_clips: int,
        video_processor,
        fresh_each_epoch: bool = True,
        weights: Sequence[float] | None = None,
        paired_transforms: Sequence[str] = (),
        swap_negatives: bool = False,
        shape_negatives: bool = False,
        paraphrases: bool = False,
        fact_negatives: bool = False,
    ):
        if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
            raise ValueError(f"num_clips must be a positive int, got {num_clips!r}")
        configs = tuple(config) if isinstance(config, (list, tuple)) else (config,)
        if not configs or not all(isinstance(c, CLIP_CONFIGS) for c in configs):
            raise TypeError(f"config must be one of {CLIP_CONFIG_NAMES} or a non-empty sequence of them")
        if weights is None:
            weights = [1.0] * len(configs)
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (len(configs),) or not np.all(weights >= 0) or weights.sum() <= 0:
            raise ValueError(f"weights must be {len(configs)} non-negative numbers with a positive sum, got {weights}")
        self.config = configs[0] if len(configs) == 1 else configs
        self.configs = configs
        self.cumulative_weights = np.cumsum(weights / weights.sum())
        self.seed = int(seed)
        self.num_clips = num_clips
        self.video_processor = video_processor
        self.fresh_each_epoch = fresh_each_epoch
        self.epoch = 0
        if isinstance(paired_transforms, str):
            raise TypeError(f"paired_transforms must be a sequence of names, got the string {paired_transforms!r}")
        self.paired_transforms = tuple(paired_transforms)
        unknown = [name for name in self.paired_transforms if name not in PAIRED_TRANSFORMS]
        if unknown:
            raise ValueError(f"paired_transforms has unknown names {unknown}; allowed: {list(PAIRED_TRANSFORMS)}")
        procedural = all(isinstance(c, SyntheticVideoConfig) for c in configs)
        for name, value, knows in (
            ("swap_negatives", swap_negatives, "motions"),
            ("shape_negatives", shape_negatives, "shapes"),
            ("paraphrases", paraphrases, "facts"),
            ("fact_negatives", fact_negatives, "speeds and occlusions"),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
            if value and not procedural:
                raise ValueError(
                    f"{name} needs procedural clips (SyntheticVideoConfig): their captions know the {knows}"
                )
        self.swap_negatives = swap_negatives
        self.shape_negatives = shape_negatives
        self.paraphrases = paraphrases
        self.fact_negatives = fact_negatives
        if self.paired_transforms and not procedural:
            raise ValueError(
                "paired_transforms needs procedural clips (SyntheticVideoConfig): their captions know the motions"
            )
        self._last_clip: tuple[int, dict] | None = None  # the pair's first item renders the clip, the second reuses it

    def set_epoch(self, epoch: int) -> None:
        if self.fresh_each_epoch:
            self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"index {index} out of range for {self.num_clips} clips")
        pair, second = divmod(int(index), 2) if self.paired_transforms else (int(index), 0)
        clip_index = self.epoch * self.num_clips + pair
        config = self.configs[self._source(clip_index)]
        if self._last_clip is not None and self._last_clip[0] == clip_index:
            clip = self._last_clip[1]
        else:
            clip = render_clip(config, self.seed, clip_index)
            self._last_clip = (clip_index, clip)
        if second:
            transform = self.paired_transforms[pair % len(self.paired_transforms)]
            swapped = None
            if transform == "swap_objects":
                swapped = generate_swapped_clip(config, self.seed, clip_index)
            if swapped is not None:
                clip = swapped
            else:
                clip = transform_clip(
                    clip, "reverse" if transform == "swap_objects" else transform, config.caption_background
                )
        item = {
            "pixel_values_videos": normalize_video(clip["video"], self.video_processor),
            "segmentation_labels": torch.from_numpy(clip["segmentation_labels"]),
            "caption": clip["caption"],
        }
        if self.swap_negatives:
            item["negative_caption"] = swap_motions_caption(clip, config.caption_background)
        if self.shape_negatives:
            rng = np.random.default_rng([self.seed, clip_index, 3])  # the same object and shape for a pair's copy
            item["shape_negative_caption"] = shape_negative_caption(clip, rng, config.caption_background, config.shapes)
        if self.fact_negatives:
            rng = np.random.default_rng([self.seed, clip_index, 6])  # the same change for a pair's copy
            item["fact_negative_caption"] = fact_negative_caption(clip, rng, config.caption_background)
        if self.paraphrases:
            rng = np.random.default_rng([self.seed, clip_index, 5, second])
            paraphrase = paraphrase_clip(clip, rng, config.caption_background)
            item["paraphrase_caption"] = paraphrase["caption"]
            if self.swap_negatives:
                item["paraphrase_negative_caption"] = swap_motions_caption(paraphrase, config.caption_background)
        return item

    def _source(self, clip_index: int) -> int:
        """Which config renders clip ``clip_index``: a draw from ``weights`` that depends only on (seed, index)."""
        if len(self.configs) == 1:
            return 0
        draw = np.random.default_rng([self.seed, clip_index, len(self.configs)]).random()
        return min(int(np.searchsorted(self.cumulative_weights, draw, side="right")), len(self.configs) - 1)


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of ``range(num_items)`` that depends only on ``(seed, epoch)`` (not on any global RNG),
    so an interrupted run and its resumption see the same order. ``shuffle=False`` yields ``0 .. num_items − 1``."""

    def __init__(self, num_items: int, seed: int = 0, shuffle: bool = True):
        if isinstance(num_items, bool) or not isinstance(num_items, int) or num_items < 1:
            raise ValueError(f"num_items must be a positive int, got {num_items!r}")
        self.num_items = num_items
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_items

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.num_items))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_items, generator=generator).tolist())
