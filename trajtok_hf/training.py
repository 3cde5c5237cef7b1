"""Reusable pieces of the training scripts in ``examples/`` (``train_segmenter.py``, ``train_trajvit2.py``).

The scripts keep the training loop in plain sight (nanoGPT style); this module holds what they share:

* **Optimisation** (method spec §9): :func:`build_optimizer` — AdamW (lr 1e-4, wd 0.02, betas (0.9, 0.999)) with
  no weight decay on norms, biases, learned latents/offsets, [CLS]/position embeddings and logit scales;
  :func:`build_scheduler` — linear warm-up then cosine decay to ``min_lr_ratio`` (1 %) of the peak
  (transformers' ``"cosine_with_min_lr"``).
* **Data**: :class:`SyntheticClipDataset` renders clips on the fly (clip ``i`` of epoch ``e`` is a pure function of
  ``(seed, e · num_clips + i)``, so processes and epochs see different clips and a resumed run sees the same ones);
  :class:`EpochShuffleSampler` shuffles a finite dataset with an order that depends only on ``(seed, epoch)``;
  :func:`iterate_batches` walks epochs forever and resumes mid-epoch with ``accelerator.skip_first_batches``.
* **Checkpoints**: :class:`CheckpointManager` — model, optimizer, scheduler and per-process RNG states as safetensors
  + JSON (nothing is ever unpickled on resume) into a temporary folder, fsync, atomic rename to
  ``checkpoints/step_NNNNNN``, then an atomic update of the ``checkpoints/latest`` pointer file. ``latest`` therefore
  never names a half-written checkpoint; left-over temporary folders are ignored and removed. :func:`save_final`
  writes ``final/`` the same way.
* **Evaluation**: :func:`evaluate_segmentation` (ARI / FG-ARI / matched mIoU of the hard ids vs ground truth) and
  :func:`evaluate_retrieval` (R@1/5/10 both directions), gathered over processes, computed with
  :mod:`trajtok_hf.metrics`.
* **Models**: ``TRAJTOK_PRESETS`` / ``TRAJVIT2_PRESETS`` (``--preset tiny|small|base``) and
  :func:`build_caption_tokenizer`, a word-level BERT tokenizer over a closed caption vocabulary (no download).
* **CLI**: :func:`add_training_args` / :func:`check_training_args`, the flags both scripts share.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import random
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from .data import IGNORE_INDEX, SyntheticVideoConfig, generate_clip
from .file_utils import TMP_PREFIX, TRASH_PREFIX, atomic_folder, commit_folder, fresh_folder, fsync_dir
from .metrics import retrieval_metrics, segmentation_metrics
from .models.modeling_trajtok import TrajTokModel
from .models.modeling_trajvit2 import TrajViT2Model

logger = logging.getLogger(__name__)

__all__ = [
    "SEGMENTER_MODULES",
    "TRAJTOK_PRESETS",
    "TRAJVIT2_PRESETS",
    "CheckpointManager",
    "EpochShuffleSampler",
    "SyntheticClipDataset",
    "TrainState",
    "add_output_dir_args",
    "add_training_args",
    "build_caption_tokenizer",
    "build_optimizer",
    "build_scheduler",
    "check_output_dir",
    "check_data_args",
    "check_training_args",
    "default_warmup_steps",
    "evaluate_retrieval",
    "load_segmenter",
    "evaluate_segmentation",
    "iterate_batches",
    "log_jsonl",
    "normalize_video",
    "parameter_groups",
    "synthetic_caption_words",
]

# ---------------------------------------------------------------------------------------------------------------------
# Optimisation (method spec §9: AdamW lr 1e-4, wd 0.02, betas (0.9, 0.999), cosine to 1 % with warm-up, clip 10)

# Parameters whose name contains one of these are never decayed, whatever their shape: learned queries/latents and
# sub-token offsets (TrajTok), [CLS] / position embeddings, and temperatures. Biases and norm weights are caught by
# their module type / dimension.
NO_DECAY_NAME_PARTS = (
    "latents",
    "subtoken_offsets",
    "logit_scale",
    "cls_token",
    "class_embedding",
    "position_embedding",
    "pos_embed",
)


# The TrajTok modules that segmentation pre-training (method spec §8, examples/train_segmenter.py) trains: the
# feature extractor, the query latents and Perceiver, the two assignment heads and the logit scale of Eq. 1. The
# refinement Perceiver, the sub-token offsets and the output projection get no gradient from the segmentation loss,
# so they are still at their initialisation when TrajViT2 training warm-starts from a segmenter.
SEGMENTER_MODULES = ("feature_extractor", "query_latents", "query_perceiver", "query_head", "pixel_head", "logit_scale")


def parameter_groups(
    model: nn.Module, weight_decay: float, learning_rates: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """AdamW parameter groups: ``weight_decay`` on weight matrices / conv kernels, 0 on everything else.

    No decay: parameters of normalisation layers (any module whose class name contains ``"Norm"``), biases and other
    tensors with fewer than 2 dims (ConvNeXt layer scales, logit scales), and names containing one of
    :data:`NO_DECAY_NAME_PARTS` (learned latents, sub-token offsets, [CLS] / position embeddings). Frozen
    parameters are left out.

    ``learning_rates`` maps parameter-name prefixes (module paths such as ``"vision_model.tokenizer.query_perceiver"``,
    matched at a ``.`` boundary) to their own learning rate; those parameters get separate groups with an ``"lr"``
    key, the rest use the optimizer's default. The schedulers of :func:`build_scheduler` scale every group's LR by
    the same factor. A prefix that matches no trainable parameter raises ``ValueError`` (a typo would otherwise
    silently train those weights at the default LR).
    """
    if learning_rates is not None and not isinstance(learning_rates, Mapping):
        raise TypeError(
            f"learning_rates must be a mapping of parameter-name prefix -> lr, got {type(learning_rates).__name__}"
        )
    learning_rates = dict(learning_rates or {})
    for prefix, lr in learning_rates.items():
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"learning_rates keys must be non-empty parameter-name prefixes, got {prefix!r}")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"learning_rates[{prefix!r}] must be a number > 0, got {lr!r}")
    norm_params = {
        id(p) for module in model.modules() if "Norm" in type(module).__name__ for p in module.parameters(recurse=False)
    }
    groups: dict[tuple[bool, float | None], list[nn.Parameter]] = {}
    matched = set()
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = not (param.ndim < 2 or id(param) in norm_params or any(part in name for part in NO_DECAY_NAME_PARTS))
        prefix = next((p for p in learning_rates if name == p or name.startswith(p + ".")), None)
        matched.add(prefix)
        groups.setdefault((decay, None if prefix is None else float(learning_rates[prefix])), []).append(param)
    unmatched = sorted(set(learning_rates) - matched)
    if unmatched:
        raise ValueError(f"learning_rates: no trainable parameter of the model is named like {unmatched}")
    # Default-LR groups first, decayed before not decayed: the layout of the two-group case stays as it was.
    order = sorted(groups, key=lambda key: (key[1] is not None, key[1] or 0.0, not key[0]))
    out = []
    for decay, lr in order:
        group = {"params": groups[(decay, lr)], "weight_decay": weight_decay if decay else 0.0}
        if lr is not None:
            group["lr"] = lr
        out.append(group)
    return out


def build_optimizer(
    model: nn.Module,
    learning_rate: float = 1e-4,
    weight_decay: float = 0.02,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    learning_rates: dict[str, float] | None = None,
) -> torch.optim.AdamW:
    """AdamW of the paper (§9) over :func:`parameter_groups` (``learning_rates``: per-prefix LRs, see there)."""
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    return torch.optim.AdamW(
        parameter_groups(model, weight_decay, learning_rates), lr=learning_rate, betas=tuple(betas), eps=eps
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    num_training_steps: int,
    num_warmup_steps: int = 0,
    min_lr_ratio: float = 0.01,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 over ``num_warmup_steps``, then cosine decay to ``min_lr_ratio`` × peak at
    ``num_training_steps`` (transformers' ``"cosine_with_min_lr"`` schedule with ``min_lr_rate``).

    Step it once per optimizer step (not per micro-batch, not once per process): the scripts do not pass it to
    ``accelerator.prepare``, whose wrapper would step it ``num_processes`` times per optimizer step.
    """
    from transformers import get_scheduler

    if isinstance(num_training_steps, bool) or not isinstance(num_training_steps, int) or num_training_steps < 1:
        raise ValueError(f"num_training_steps must be a positive int, got {num_training_steps!r}")
    if isinstance(num_warmup_steps, bool) or not isinstance(num_warmup_steps, int) or num_warmup_steps < 0:
        raise ValueError(f"num_warmup_steps must be an int >= 0, got {num_warmup_steps!r}")
    if num_warmup_steps >= num_training_steps:
        raise ValueError(
            f"num_warmup_steps ({num_warmup_steps}) must be smaller than num_training_steps ({num_training_steps})"
        )
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio!r}")
    return get_scheduler(
        "cosine_with_min_lr",
        optimizer,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        scheduler_specific_kwargs={"min_lr_rate": min_lr_ratio},
    )


# ---------------------------------------------------------------------------------------------------------------------
# Model sizes of the training scripts (--preset). "base" is the paper's; "tiny"/"small" train on a CPU.

TRAJTOK_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        backbone_config=dict(model_type="convnext", depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32]),
        hidden_size=32,
        num_trajectories=8,
        num_attention_heads=4,
        assignment_hidden_size=16,
        assignment_embed_dim=8,
        subtoken_fourier_frequencies=4,
    ),
    "small": dict(
        backbone_config=dict(model_type="convnext", depths=[2, 2, 2, 2], hidden_sizes=[32, 64, 128, 256]),
        hidden_size=128,
        num_trajectories=32,
        num_attention_heads=4,
        assignment_hidden_size=64,
        assignment_embed_dim=32,
        subtoken_fourier_frequencies=8,
    ),
    "base": dict(),  # ConvNeXt-T, width 512, K = 128 (TrajTokConfig defaults)
}
"""``TrajTokConfig`` keyword arguments per preset."""

TRAJVIT2_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": dict(
        vision=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
        text=dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64
        ),
        model=dict(projection_dim=16),
    ),
    "small": dict(
        vision=dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
        text=dict(
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=512,
            max_position_embeddings=64,
        ),
        model=dict(projection_dim=64),
    ),
    # The release: encoder width 512, 24 layers, 16 heads; BERT-base through 9 layers; projection 256.
    "base": dict(vision=dict(), text=dict(num_hidden_layers=9), model=dict(projection_dim=256)),
}
"""``TrajViT2VisionConfig`` (``vision``), ``BertConfig`` (``text``) and ``TrajViT2Config`` (``model``) keyword
arguments per preset; the vision tower's tokenizer is ``TRAJTOK_PRESETS`` of the same name."""


def synthetic_caption_words() -> list[str]:
    """Every word the synthetic generator's captions can contain (lower-cased, punctuation split off)."""
    from .data import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, SIZES, TEXTURES

    phrases = [
        *COLOURS,
        *SHAPES,
        *SIZES,
        *TEXTURES,
        *MOTIONS.values(),
        *BACKGROUNDS,
        "a while and , on background drifting left right up down",
    ]
    return sorted({word for phrase in phrases for word in _words(phrase)})


def _words(text: str) -> list[str]:
    # BERT's basic tokenisation for ASCII text: lower case, split on whitespace and punctuation.
    return re.findall(r"\w+|[^\w\s]", text.lower())


def build_caption_tokenizer(texts, model_max_length: int = 64):
    """A word-level ``BertTokenizer`` whose vocabulary is the 5 BERT special tokens + every word of ``texts`` (no
    download needed; saved with the processor). For captions of a small closed vocabulary such as the synthetic
    ones; real captions should use a pretrained tokenizer (``--tokenizer PATH``)."""
    from transformers import BertTokenizer

    words = sorted({word for text in texts for word in _words(text)})
    vocab = {token: i for i, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    return BertTokenizer(vocab=vocab, model_max_length=model_max_length)


# ---------------------------------------------------------------------------------------------------------------------
# Data


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
    """

    def __init__(
        self, config: SyntheticVideoConfig, seed: int, num_clips: int, video_processor, fresh_each_epoch: bool = True
    ):
        if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
            raise ValueError(f"num_clips must be a positive int, got {num_clips!r}")
        self.config = config
        self.seed = int(seed)
        self.num_clips = num_clips
        self.video_processor = video_processor
        self.fresh_each_epoch = fresh_each_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        if self.fresh_each_epoch:
            self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"index {index} out of range for {self.num_clips} clips")
        clip = generate_clip(self.config, self.seed, self.epoch * self.num_clips + int(index))
        return {
            "pixel_values_videos": normalize_video(clip["video"], self.video_processor),
            "segmentation_labels": torch.from_numpy(clip["segmentation_labels"]),
            "caption": clip["caption"],
        }


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


@dataclasses.dataclass
class TrainState:
    """Progress counters saved with every checkpoint (``trainer_state.json``).

    ``step``: optimizer steps done; ``epoch``: current epoch; ``batch_in_epoch``: micro-batches of the current epoch
    this process has consumed (the resume point for ``skip_first_batches``)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0


def iterate_batches(accelerator, dataloader, state: TrainState) -> Iterator[Any]:
    """Yield the batches of a prepared ``dataloader`` forever, epoch after epoch, from ``state.epoch`` /
    ``state.batch_in_epoch`` on, keeping both counters up to date (so a checkpoint records the data position).

    ``dataloader.set_epoch`` (accelerate) forwards the epoch to the sampler or dataset (:class:`EpochShuffleSampler`,
    :class:`SyntheticClipDataset`); on resume the first epoch skips the batches already consumed, so the resumed
    run sees exactly the batches the uninterrupted run would have seen. A batch whose clips all failed to decode
    (``None`` from :class:`~trajtok_hf.data.VideoTextCollator`) is skipped in one process and an error with several.
    """
    while True:
        dataloader.set_epoch(state.epoch)
        loader = dataloader
        if state.batch_in_epoch:
            loader = accelerator.skip_first_batches(dataloader, state.batch_in_epoch)
        for batch in loader:
            state.batch_in_epoch += 1
            if batch is None:  # every clip of the batch failed to decode (VideoTextCollator returns None)
                if accelerator.num_processes > 1:  # skipping would leave this process out of step with the others
                    raise RuntimeError(
                        f"every clip of batch {state.batch_in_epoch} of epoch {state.epoch} failed to decode on "
                        f"process {accelerator.process_index}; fix or drop the broken videos (see the warnings)"
                    )
                continue
            yield batch
        if state.batch_in_epoch == 0:
            raise RuntimeError("the training dataloader yields no batches (dataset smaller than one global batch?)")
        state.epoch += 1
        state.batch_in_epoch = 0


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints: safetensors + JSON only (nothing in a checkpoint folder is ever unpickled), committed atomically

LATEST_FILE = "latest"
STATE_FILE = "trainer_state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_STEM = "optimizer"  # optimizer.safetensors (state tensors) + optimizer.json (param_groups, scalars)
SCHEDULER_FILE = "scheduler.json"
SCALER_FILE = "scaler.json"
RNG_STEM = "rng_state_{}"  # per process: rng_state_N.safetensors (torch generators) + rng_state_N.json (random, numpy)
CHECKPOINT_FORMAT = "trajtok_hf-safetensors-json-1"
# Test-only hook: when set, called as ``fault_hook(stage, step)`` at the crash points of a save (``step`` is None
# for the final save), so a test can kill the process there. Stages: "before_commit" (every file written into the
# temporary folder, nothing committed), "before_pointer" (checkpoint folder renamed into place, `latest` not yet
# updated) and "final_before_commit" (final/ written into its temporary folder, not yet renamed).
fault_hook: Callable[[str, int | None], None] | None = None
# Tags of the JSON encoding of state dicts (a tag object has exactly one key).
_TENSOR, _TUPLE, _INT_KEYS = "__tensor__", "__tuple__", "__int_keys__"
_TAGS = (_TENSOR, _TUPLE, _INT_KEYS)


def _maybe_fault(stage: str, step: int | None = None) -> None:
    if fault_hook is not None:
        fault_hook(stage, step)


def _listing(path: Path) -> list[str]:
    """Relative paths of every file under ``path``, sorted."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if not p.is_dir())


def _to_json(value: Any, tensors: dict[str, torch.Tensor] | None, name: str) -> Any:
    """``value`` (a state dict) → JSON-able data; tensors go into ``tensors`` (``None``: tensors are an error) and are
    replaced by ``{"__tensor__": name}``. Tuples and int-keyed dicts are tagged so that they come back as they were."""
    if isinstance(value, torch.Tensor):
        if tensors is None or name in tensors:
            raise TypeError(f"{name}: cannot store this tensor in a JSON-only state")
        tensors[name] = value.detach().cpu().contiguous()
        return {_TENSOR: name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [_to_json(v, tensors, f"{name}.{i}") for i, v in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value) and not (len(value) == 1 and next(iter(value)) in _TAGS):
            return {k: _to_json(v, tensors, f"{name}.{k}") for k, v in value.items()}
        if all(isinstance(k, int) and not isinstance(k, bool) for k in value):
            return {_INT_KEYS: {str(k): _to_json(v, tensors, f"{name}.{k}") for k, v in value.items()}}
    raise TypeError(
        f"{name}: cannot store a {type(value).__name__} in a checkpoint (tensors, numbers, strings, "
        "lists, tuples and dicts with str or int keys only)"
    )


def _from_json(value: Any, tensors: Mapping[str, torch.Tensor], used: set[str]) -> Any:
    """Inverse of :func:`_to_json`; ``used`` collects the tensor names referenced. Raises ``ValueError``."""
    if isinstance(value, list):
        return [_from_json(v, tensors, used) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in _TAGS:
        ((tag, inner),) = value.items()
        if tag == _TENSOR:
            if not isinstance(inner, str) or inner not in tensors:
                raise ValueError(f"refers to tensor {inner!r}, which its .safetensors file does not hold")
            used.add(inner)
            return tensors[inner]
        if tag == _TUPLE and isinstance(inner, list):
            return tuple(_from_json(v, tensors, used) for v in inner)
        if tag == _INT_KEYS and isinstance(inner, dict) and all(re.fullmatch(r"-?\d+", k) for k in inner):
            return {int(k): _from_json(v, tensors, used) for k, v in inner.items()}
        raise ValueError(f"malformed {tag!r} entry")
    return {k: _from_json(v, tensors, used) for k, v in value.items()}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=True) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a valid JSON file ({error}); the checkpoint is damaged") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({error}); the checkpoint is damaged") from None


def _save_state(folder: Path, stem: str, state: Any) -> None:
    """``state`` → ``{stem}.safetensors`` (its tensors) + ``{stem}.json`` (everything else, tensors referenced)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    data = _to_json(state, tensors, stem)
    save_file(tensors, str(folder / f"{stem}.safetensors"))
    _write_json(folder / f"{stem}.json", data)


def _load_state(folder: Path, stem: str) -> Any:
    """Inverse of :func:`_save_state`; ``ValueError`` naming the file for anything malformed."""
    tensors = _read_tensors(folder / f"{stem}.safetensors")
    path, used = folder / f"{stem}.json", set()
    try:
        state = _from_json(_read_json(path), tensors, used)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    unused = sorted(set(tensors) - used)
    if unused:
        raise ValueError(f"{folder / f'{stem}.safetensors'}: holds tensors {unused[:5]} that {path.name} never uses")
    return state


def _unique_storage(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop later names of a tensor already present under another name (tied weights): safetensors stores each
    storage once. :func:`_load_model` restores them through the model's own sharing."""
    seen, out = set(), {}
    for name, tensor in state_dict.items():
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()))
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        out[name] = tensor.detach().cpu().contiguous()
    return out


def _load_model(model: nn.Module, path: Path) -> None:
    """Load ``path`` into ``model`` after checking it has exactly the model's tensors (names, shapes, dtypes)."""
    tensors = _read_tensors(path)
    expected = model.state_dict()
    aliases: dict[tuple, list[str]] = {}
    for name, tensor in expected.items():
        aliases.setdefault((tensor.data_ptr(), tuple(tensor.shape)) if tensor.numel() else (name,), []).append(name)
    missing = [names[0] for names in aliases.values() if not any(n in tensors for n in names)]
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{k}: {tuple(v.shape)} {v.dtype} (model: {tuple(expected[k].shape)} {expected[k].dtype})"
        for k, v in tensors.items()
        if k in expected and (v.shape != expected[k].shape or v.dtype != expected[k].dtype)
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path} does not fit the model being trained: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, mismatched {mismatched[:5]}"
        )
    model.load_state_dict(tensors, strict=False)


def _device_rng_states(device_type: str) -> list[torch.Tensor]:
    if device_type == "cpu":
        return []
    module = torch.get_device_module(device_type)
    return list(module.get_rng_state_all()) if hasattr(module, "get_rng_state_all") else [module.get_rng_state()]


def _rng_state(accelerator) -> dict[str, Any]:
    device_type = accelerator.device.type
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "device": {"type": device_type, "states": _device_rng_states(device_type)},
        "python": random.getstate(),
        "numpy": (numpy_state[0], numpy_state[1].tolist(), *(_plain(v) for v in numpy_state[2:])),
        "accelerator_step": int(accelerator.step),
    }


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _set_rng_state(accelerator, state: Any) -> None:
    """Restore what :func:`_rng_state` saved; ``ValueError``/``TypeError`` from the setters on malformed values."""
    if not isinstance(state, dict) or set(state) != {"torch", "device", "python", "numpy", "accelerator_step"}:
        raise ValueError("expected the keys torch, device, python, numpy, accelerator_step")
    torch.set_rng_state(state["torch"])
    device = state["device"]
    if device["type"] == accelerator.device.type != "cpu":  # states of another device type do not apply
        module = torch.get_device_module(device["type"])
        if hasattr(module, "set_rng_state_all"):
            module.set_rng_state_all(device["states"])
        else:
            module.set_rng_state(device["states"][0])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    step = state["accelerator_step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"accelerator_step must be an int >= 0, got {step!r}")
    accelerator.step = step


def _load_into(folder: Path, files: str, what: str, restore) -> None:
    """Run ``restore()`` (which reads ``files`` of ``folder``), turning any error of a malformed value into a
    ``ValueError`` that names the file(s)."""
    where = " / ".join(str(folder / name) for name in files.split(" "))
    try:
        restore()
    except ValueError as error:
        message = str(error)  # already names its file when it comes from a reader
        raise ValueError(message if str(folder) in message else f"{where}: {message}") from None
    except (TypeError, KeyError, IndexError, OverflowError, RuntimeError) as error:
        raise ValueError(f"{where}: not a valid {what} for this run ({type(error).__name__}: {error})") from None


class CheckpointManager:
    """Atomic training checkpoints under ``checkpoint_dir``, written with safetensors and JSON only::

        checkpoint_dir/
          step_000100/       model.safetensors (the unwrapped model's keys) + the config / processor artifacts
                             optimizer.safetensors + optimizer.json (state tensors; param_groups and scalars)
                             scheduler.json, scaler.json (fp16 only)
                             rng_state_N.safetensors + rng_state_N.json (one pair per process: torch CPU / device
                             generators; python ``random``, numpy, accelerate's step counter)
                             trainer_state.json (TrainState + the list of files; written last)
          step_000200/
          latest             one line: "step_000200"

    Nothing in a checkpoint folder is ever unpickled: :meth:`load` reads only the files above, and refuses (with a
    ``ValueError`` naming the file) a folder holding any file the save did not write (e.g. accelerate's
    ``random_states_0.pkl`` / ``custom_checkpoint_0.pkl`` / ``optimizer.bin``) or a file that is malformed.

    Saving (all processes call :meth:`save`): the files are written into ``.tmp-step_NNNNNN``; then the main process
    adds ``trainer_state.json``, fsyncs, renames the folder to ``step_NNNNNN`` (atomic), and replaces ``latest``
    (write ``latest.tmp`` + fsync + ``os.replace``, atomic). A crash at any point leaves ``latest`` naming the previous
    complete checkpoint; temporary folders of crashed saves are removed by the next manager (and never read).
    ``total_limit`` keeps only the newest checkpoints (never removing the one ``latest`` names).
    """

    def __init__(self, checkpoint_dir: str | os.PathLike, total_limit: int | None = None, is_main_process: bool = True):
        if total_limit is not None and (
            isinstance(total_limit, bool) or not isinstance(total_limit, int) or total_limit < 1
        ):
            raise ValueError(f"total_limit must be None or a positive int, got {total_limit!r}")
        self.dir = Path(checkpoint_dir)
        self.total_limit = total_limit
        self.is_main_process = is_main_process
        if is_main_process and self.dir.is_dir():
            self.remove_stale()

    @staticmethod
    def name_for(step: int) -> str:
        return f"step_{step:06d}"

    def remove_stale(self) -> None:
        """Delete temporary folders left by crashed saves (they are never referenced by ``latest``)."""
        for entry in self.dir.iterdir():
            if entry.is_dir() and entry.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                shutil.rmtree(entry, ignore_errors=True)
        (self.dir / f"{LATEST_FILE}.tmp").unlink(missing_ok=True)

    @staticmethod
    def is_complete(path: str | os.PathLike) -> bool:
        return (Path(path) / STATE_FILE).is_file()

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.dir.is_dir():
            return []
        found = [p for p in self.dir.glob("step_*") if p.is_dir() and self.is_complete(p)]
        return sorted(found, key=lambda p: int(p.name.split("_")[1]))

    def latest(self) -> Path | None:
        """The checkpoint ``latest`` names; None when there is none yet."""
        pointer = self.dir / LATEST_FILE
        if not pointer.is_file():
            # No pointer (e.g. deleted by hand): fall back to the newest complete checkpoint, if any.
            found = self.checkpoints()
            return found[-1] if found else None
        name = pointer.read_text().strip()
        path = self.dir / name
        if not name or os.sep in name or not self.is_complete(path):
            raise RuntimeError(
                f"{pointer} names {name!r}, which is not a complete checkpoint in {self.dir}; pass "
                "--resume_from_checkpoint PATH explicitly or delete the pointer file"
            )
        return path

    def resolve(self, spec: str | os.PathLike | None) -> Path | None:
        """``None``/``""`` → None (start fresh); ``"latest"`` → :meth:`latest` (None when there is no checkpoint
        yet: the run starts from scratch, so the same command both starts and resumes a job); a path → that
        checkpoint (``ValueError`` when it is not a complete checkpoint)."""
        if spec is None or str(spec) == "":
            return None
        if str(spec) == "latest":
            return self.latest()
        path = Path(spec)
        if not path.is_dir():
            raise ValueError(f"--resume_from_checkpoint {spec}: no such checkpoint folder")
        if not self.is_complete(path):
            raise ValueError(f"--resume_from_checkpoint {spec}: not a complete checkpoint (no {STATE_FILE})")
        return path

    def save(
        self,
        accelerator,
        state: TrainState,
        model: nn.Module,
        optimizer,
        scheduler=None,
        artifacts=(),
        extra: dict | None = None,
    ) -> Path:
        """Save ``model`` (prepared or not), ``optimizer``, ``scheduler``, the RNG states of every process and
        ``state`` as checkpoint ``step_{state.step}``; call on every process.

        ``artifacts``: objects with ``save_pretrained`` (the model's config, the processor) written into the folder
        too, so that a checkpoint loads with ``AutoModel.from_pretrained`` / ``AutoProcessor.from_pretrained`` (its
        ``model.safetensors`` has the keys of the unwrapped model)."""
        from safetensors.torch import save_file

        name = self.name_for(state.step)
        final, tmp = self.dir / name, self.dir / f"{TMP_PREFIX}{name}"
        if accelerator.is_main_process:
            fresh_folder(tmp)
        accelerator.wait_for_everyone()
        model_state = accelerator.get_state_dict(model)  # a collective under FSDP / DeepSpeed: every process calls it
        if accelerator.is_main_process:
            save_file(_unique_storage(model_state), str(tmp / MODEL_FILE), metadata={"format": "pt"})
            _save_state(tmp, OPTIMIZER_STEM, optimizer.state_dict())
            if scheduler is not None:
                _write_json(tmp / SCHEDULER_FILE, _to_json(scheduler.state_dict(), None, "scheduler"))
            if accelerator.scaler is not None:
                _write_json(tmp / SCALER_FILE, _to_json(accelerator.scaler.state_dict(), None, "scaler"))
        _save_state(tmp, RNG_STEM.format(accelerator.process_index), _rng_state(accelerator))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            for artifact in artifacts:
                artifact.save_pretrained(tmp)
            _maybe_fault("before_commit", state.step)
            payload = {
                **dataclasses.asdict(state),
                **(extra or {}),
                "format": CHECKPOINT_FORMAT,
                "files": _listing(tmp),
            }
            _write_json(tmp / STATE_FILE, payload)
            commit_folder(tmp, final)
            _maybe_fault("before_pointer", state.step)
            pointer_tmp = self.dir / f"{LATEST_FILE}.tmp"
            with open(pointer_tmp, "w") as handle:
                handle.write(name + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(pointer_tmp, self.dir / LATEST_FILE)  # atomic pointer update
            fsync_dir(self.dir)
            self._prune(keep=final)
        accelerator.wait_for_everyone()
        return final

    def _prune(self, keep: Path) -> None:
        if self.total_limit is None:
            return
        found = [p for p in self.checkpoints() if p != keep]
        for path in found[: max(0, len(found) + 1 - self.total_limit)]:
            shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def load(accelerator, path: str | os.PathLike, model: nn.Module, optimizer, scheduler=None) -> TrainState:
        """Restore what :meth:`save` wrote into ``model``, ``optimizer``, ``scheduler``, this process's RNG states and
        accelerate's step counter, and return the counters; call on every process.

        Reads only safetensors and JSON. ``ValueError`` naming the file when the folder holds a file the save did
        not write (a pickle planted there is never opened), when a file is missing, malformed, or does not fit
        ``model`` / ``optimizer`` / ``scheduler``."""
        path = Path(path)
        payload = _read_json(path / STATE_FILE)
        state = _check_manifest(path, payload)
        unwrapped = accelerator.unwrap_model(model)
        _load_into(path, MODEL_FILE, "model state", lambda: _load_model(unwrapped, path / MODEL_FILE))
        _load_into(
            path,
            f"{OPTIMIZER_STEM}.json {OPTIMIZER_STEM}.safetensors",
            "optimizer state",
            lambda: optimizer.load_state_dict(_check_optimizer_state(_load_state(path, OPTIMIZER_STEM), optimizer)),
        )
        if scheduler is not None:
            _load_into(
                path,
                SCHEDULER_FILE,
                "scheduler state",
                lambda: scheduler.load_state_dict(
                    _matching_keys(_read_state_json(path / SCHEDULER_FILE), scheduler.state_dict())
                ),
            )
        scaler = accelerator.scaler
        if scaler is not None:
            _load_into(
                path,
                SCALER_FILE,
                "gradient scaler state",
                lambda: scaler.load_state_dict(
                    _matching_keys(_read_state_json(path / SCALER_FILE), scaler.state_dict())
                ),
            )
        rng = RNG_STEM.format(accelerator.process_index)
        if (path / f"{rng}.json").is_file():
            _load_into(
                path,
                f"{rng}.json {rng}.safetensors",
                "RNG state",
                lambda: _set_rng_state(accelerator, _load_state(path, rng)),
            )
        else:  # resumed with more processes than saved it: exact resume is impossible anyway
            logger.warning(
                "%s has no %s.json: process %d starts with fresh random states", path, rng, accelerator.process_index
            )
        return state


def _check_manifest(path: Path, payload: Any) -> TrainState:
    """The counters of ``trainer_state.json``, after checking that the folder holds exactly the files it lists."""
    state_file = path / STATE_FILE
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{state_file}: not a checkpoint of format {CHECKPOINT_FORMAT!r} (an older checkpoint written with "
            "accelerate's pickle-based save_state cannot be resumed without unpickling; start from its "
            f"{MODEL_FILE} instead, e.g. with --model / --segmenter)"
        )
    listed = payload.get("files")
    if not isinstance(listed, list) or not all(isinstance(name, str) for name in listed):
        raise ValueError(f"{state_file}: 'files' must be the list of the checkpoint's files")
    unexpected = sorted(set(_listing(path)) - set(listed) - {STATE_FILE})
    if unexpected:
        raise ValueError(
            f"{path / unexpected[0]}: unexpected file in the checkpoint (not written by its save; never "
            f"opened). Remove it to resume from {path}"
        )
    required = {MODEL_FILE, f"{OPTIMIZER_STEM}.json", f"{OPTIMIZER_STEM}.safetensors"}
    missing = sorted(name for name in required | set(listed) if not (path / name).is_file())
    if missing:
        raise ValueError(f"{path / missing[0]}: missing from the checkpoint")
    counters = {}
    for field in dataclasses.fields(TrainState):
        value = payload.get(field.name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{state_file}: {field.name!r} must be an int >= 0, got {value!r}")
        counters[field.name] = value
    return TrainState(**counters)


def _read_state_json(path: Path) -> Any:
    try:
        return _from_json(_read_json(path), {}, set())
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _matching_keys(saved: Any, current: Mapping[str, Any], what: str = "state") -> dict[str, Any]:
    """``saved`` when it is a dict with exactly the keys of ``current`` (the live object's own state dict) and values
    of the same kinds (numbers, strings, lists, ...; ``None`` matches anything)."""
    if not isinstance(saved, dict) or set(saved) != set(current):
        keys = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(f"{what}: expected the keys {sorted(current)}, got {keys}")
    for key, value in saved.items():
        if not (value is None or current[key] is None or _kind(value) == _kind(current[key])):
            raise ValueError(f"{what}[{key!r}] must be a {_kind(current[key])}, got {value!r}")
    return saved


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, (int, float)) else type(value).__name__


def _check_optimizer_state(saved: Any, optimizer) -> dict[str, Any]:
    """``saved`` when it has the layout of ``optimizer.state_dict()``: the same groups with the same parameter
    ids, state only for those ids, each state tensor either a scalar or shaped like its parameter."""
    current = optimizer.state_dict()
    if not isinstance(saved, dict) or set(saved) != {"state", "param_groups"}:
        raise ValueError("expected a dict with the keys 'state' and 'param_groups'")
    groups = saved["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(current["param_groups"]):
        raise ValueError(f"expected {len(current['param_groups'])} parameter groups")
    ids = [group["params"] for group in current["param_groups"]]
    if [g.get("params") if isinstance(g, dict) else None for g in groups] != ids:
        raise ValueError("the parameter groups hold other parameters than this run's optimizer")
    for i, (group, live) in enumerate(zip(groups, current["param_groups"])):
        _matching_keys(group, live, f"param_groups[{i}]")
    params = {i: p for group, live in zip(ids, optimizer.param_groups) for i, p in zip(group, live["params"])}
    state = saved["state"]
    if not isinstance(state, dict) or not set(state) <= set(params):
        raise ValueError("'state' must map this optimizer's parameter ids to their state")
    for index, entry in state.items():
        if not isinstance(entry, dict):
            raise ValueError(f"state of parameter {index} must be a dict")
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != params[index].shape:
                raise ValueError(
                    f"state[{index}][{key!r}] has shape {tuple(value.shape)}, the parameter "
                    f"{tuple(params[index].shape)}"
                )
    return saved


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation


def load_segmenter(path: str | os.PathLike):
    """``(TrajTokModel, its video processor)`` from a ``save_pretrained`` folder of a TrajTok segmenter, or the TrajTok
    tokenizer inside a TrajViT2 folder (the segmenter after joint training). Raises ``ValueError`` for any other
    model, including a TrajViT2 whose vision tokenizer is ViT3D (no trajectories)."""
    from transformers import AutoModel, AutoVideoProcessor

    model = AutoModel.from_pretrained(path)
    if isinstance(model, TrajViT2Model):
        if model.config.vision_tokenizer != "trajtok":
            raise ValueError(f"{path} is a TrajViT2 with ViT3D space-time patches: it has no TrajTok segmenter")
        model = model.vision_model.tokenizer
    elif not isinstance(model, TrajTokModel):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a TrajTokModel or a TrajViT2Model")
    # A TrajViT2 folder's processor_config.json nests the video processor; AutoVideoProcessor reads it from there.
    return model, AutoVideoProcessor.from_pretrained(path)


@torch.no_grad()
def evaluate_segmentation(model, dataloader, accelerator, background_id: int | None = 0) -> dict[str, float]:
    """ARI, FG-ARI, matched mIoU and FG-mIoU (fractions) of the model's hard trajectory ids against the ground-truth
    ``segmentation_labels`` over a prepared eval dataloader, gathered over processes (every process returns the
    same numbers). ``model`` is a TrajTok model, or any model whose output has ``trajectory_ids``."""
    was_training = model.training
    model.eval()
    predictions, references = [], []
    for batch in dataloader:
        if batch is None:
            continue
        # A bare tokenizer can skip its refinement Perceiver: the ids come from the assignment alone.
        kwargs = {"output_trajectory_tokens": False} if isinstance(model, TrajTokModel) else {}
        ids = model(pixel_values_videos=batch["pixel_values_videos"], **kwargs).trajectory_ids
        ids, labels = accelerator.gather_for_metrics((ids.contiguous(), batch["segmentation_labels"].contiguous()))
        predictions.extend(ids.cpu())
        references.extend(labels.cpu())
    model.train(was_training)
    metrics = segmentation_metrics(predictions, references, background_id=background_id, ignore_index=IGNORE_INDEX)
    return {key: metrics[key] for key in ("ARI", "FG-ARI", "mIoU", "FG-mIoU")}


@torch.no_grad()
def evaluate_retrieval(model, dataloader, accelerator) -> dict[str, float]:
    """Text→video and video→text R@1/5/10 (percent) and median rank over a prepared eval dataloader (one caption
    per video), embeddings gathered over processes. ``model`` has ``get_video_features`` / ``get_text_features``
    (returning the projected embedding or an output whose ``pooler_output`` is)."""
    was_training = model.training
    model.eval()
    videos, texts = [], []
    for batch in dataloader:
        if batch is None:
            continue
        video = _embedding(model.get_video_features(pixel_values_videos=batch["pixel_values_videos"]))
        text = _embedding(model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))
        video, text = accelerator.gather_for_metrics((video.float().contiguous(), text.float().contiguous()))
        videos.append(video.cpu())
        texts.append(text.cpu())
    model.train(was_training)
    videos = nn.functional.normalize(torch.cat(videos), dim=-1)
    texts = nn.functional.normalize(torch.cat(texts), dim=-1)
    metrics = retrieval_metrics(texts @ videos.T, layout="text_video")
    return {k: v for k, v in metrics.items() if "MeanR" not in k}


def _embedding(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"expected a tensor or an output with `pooler_output`, got {type(output).__name__}")
    return pooled


# ---------------------------------------------------------------------------------------------------------------------
# Command line shared by the training scripts


def add_training_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Optimisation, schedule, checkpointing, evaluation and logging flags (defaults: method spec §9)."""
    g = parser.add_argument_group("training")
    add_output_dir_args(g, "checkpoints/, metrics.jsonl and final/ go here")
    g.add_argument("--per_device_train_batch_size", type=int, default=4)
    g.add_argument("--per_device_eval_batch_size", type=int, default=8)
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--max_steps", type=int, default=1000, help="optimizer steps of the whole run")
    g.add_argument(
        "--max_steps_this_run",
        type=int,
        default=None,
        help="stop (after a checkpoint) once this many steps were done in this invocation",
    )
    g.add_argument("--learning_rate", type=float, default=1e-4)
    g.add_argument("--weight_decay", type=float, default=0.02)
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.999)
    g.add_argument(
        "--warmup_steps",
        type=int,
        default=None,
        help="linear warm-up steps (default: one epoch of --data DIR, as the paper; 5%% of --max_steps "
        "for synthetic data)",
    )
    g.add_argument("--min_lr_ratio", type=float, default=0.01, help="final LR of the cosine, as a fraction of the peak")
    g.add_argument("--max_grad_norm", type=float, default=10.0)
    g.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default="no")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes per training process")
    g.add_argument("--checkpointing_steps", type=int, default=500)
    g.add_argument("--checkpoints_total_limit", type=int, default=3)
    g.add_argument(
        "--resume_from_checkpoint",
        default=None,
        help="'latest' (resume from output_dir/checkpoints/latest; start from scratch if there is none "
        "yet) or the path of a checkpoint folder",
    )
    g.add_argument(
        "--eval_steps", type=int, default=200, help="evaluate every N steps and at the end (0: only at the end)"
    )
    g.add_argument("--eval_clips", type=int, default=32, help="size of the held-out evaluation set")
    g.add_argument("--logging_steps", type=int, default=20)
    return parser


def add_output_dir_args(parser, help: str) -> None:
    """``--output_dir`` (required) and ``--overwrite_output_dir``, checked by :func:`check_output_dir`."""
    parser.add_argument("--output_dir", required=True, help=help)
    parser.add_argument(
        "--overwrite_output_dir",
        action="store_true",
        help="write into a non-empty --output_dir (its files may be replaced)",
    )


def check_output_dir(parser: argparse.ArgumentParser, args: argparse.Namespace, resume: str | None = None) -> None:
    """``parser.error`` unless ``--output_dir`` is missing or empty, ``--overwrite_output_dir`` is given, or the run
    resumes from that folder (``resume`` is ``'latest'`` or a checkpoint path inside it)."""
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        parser.error(f"--output_dir {output_dir} exists and is not a folder")
    if args.overwrite_output_dir or not output_dir.is_dir() or not any(output_dir.iterdir()):
        return
    if resume == "latest" or (resume and output_dir.resolve() in Path(resume).resolve().parents):
        return
    parser.error(
        f"--output_dir {output_dir} is not empty: pass --overwrite_output_dir to write into it, or "
        "--resume_from_checkpoint latest (or a checkpoint inside it) to resume"
    )


VIDEO_FOLDER_METADATA = ("metadata.jsonl", "metadata.csv")


def check_data_args(parser: argparse.ArgumentParser, args: argparse.Namespace, flags=("data", "eval_data")) -> None:
    """``parser.error`` naming the flag unless each of ``flags`` is None, ``'synthetic'`` or a video folder with a
    ``metadata.jsonl`` / ``metadata.csv`` (what :func:`trajtok_hf.data.load_video_text_dataset` reads)."""
    for flag in flags:
        value = getattr(args, flag)
        if value in (None, "synthetic"):
            continue
        if not os.path.isdir(value):
            parser.error(f"--{flag} {value}: not a folder (use 'synthetic' or a video folder with metadata.jsonl)")
        if not any(os.path.isfile(os.path.join(value, name)) for name in VIDEO_FOLDER_METADATA):
            parser.error(f"--{flag} {value}: no metadata.jsonl or metadata.csv there (a video folder lists its clips)")


def check_training_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``parser.error`` (usage + message, exit status 2) on values that cannot work."""
    positive = (
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "max_steps",
        "checkpointing_steps",
        "logging_steps",
        "eval_clips",
    )
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("max_steps_this_run", "checkpoints_total_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("eval_steps", "num_workers"):
        if getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.warmup_steps is not None and not 0 <= args.warmup_steps < args.max_steps:
        parser.error(f"--warmup_steps must lie in [0, --max_steps), got {args.warmup_steps}")
    if not args.learning_rate > 0:
        parser.error(f"--learning_rate must be > 0, got {args.learning_rate}")
    if not args.weight_decay >= 0:
        parser.error(f"--weight_decay must be >= 0, got {args.weight_decay}")
    if not 0.0 <= args.min_lr_ratio <= 1.0:
        parser.error(f"--min_lr_ratio must lie in [0, 1], got {args.min_lr_ratio}")
    if not args.max_grad_norm > 0:
        parser.error(f"--max_grad_norm must be > 0, got {args.max_grad_norm}")
    for name in ("adam_beta1", "adam_beta2"):
        if not 0.0 <= getattr(args, name) < 1.0:
            parser.error(f"--{name} must lie in [0, 1), got {getattr(args, name)}")
    spec = args.resume_from_checkpoint
    if spec not in (None, "", "latest"):
        if not os.path.isdir(spec):
            parser.error(f"--resume_from_checkpoint {spec}: no such checkpoint folder (or use 'latest')")
        if not CheckpointManager.is_complete(spec):
            parser.error(f"--resume_from_checkpoint {spec}: not a complete checkpoint (no {STATE_FILE})")
    check_output_dir(parser, args, resume=spec)


def default_warmup_steps(args: argparse.Namespace, steps_per_epoch: int | None) -> int:
    """``--warmup_steps``, or one epoch (paper) when the epoch is known, else 5 % of ``--max_steps``; always
    below ``--max_steps``."""
    if args.warmup_steps is not None:
        return args.warmup_steps
    guess = steps_per_epoch if steps_per_epoch else math.ceil(0.05 * args.max_steps)
    return int(min(guess, args.max_steps - 1))


def log_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one JSON line (main process only; the caller checks)."""
    with open(path, "a") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")


def save_final(accelerator, model, processor, output_dir: str | os.PathLike) -> str:
    """End of training: ``save_pretrained`` of the unwrapped model and its processor into ``output_dir/final``
    (main process), after every process has finished; returns that folder.

    Atomic like a checkpoint: written into ``output_dir/.tmp-final``, fsynced, then renamed, so that a kill during the
    save leaves the previous ``final`` (or none), never a half-written folder that looks complete."""
    accelerator.wait_for_everyone()
    final_dir = Path(output_dir) / "final"
    if accelerator.is_main_process:
        with atomic_folder(final_dir) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp)
            processor.save_pretrained(tmp)
            _maybe_fault("final_before_commit")
        accelerator.print(f"saved model + processor to {final_dir}")
    accelerator.wait_for_everyone()
    return str(final_dir)
