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
* **Checkpoints**: :class:`CheckpointManager` — ``accelerator.save_state`` into a temporary folder, fsync, atomic
  rename to ``checkpoints/step_NNNNNN``, then an atomic update of the ``checkpoints/latest`` pointer file. ``latest``
  therefore never names a half-written checkpoint; left-over temporary folders are ignored and removed.
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
import math
import os
import re
import shutil
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from .data import IGNORE_INDEX, SyntheticVideoConfig, generate_clip
from .metrics import retrieval_metrics, segmentation_metrics
from .models.modeling_trajtok import TrajTokModel
from .models.modeling_trajvit2 import TrajViT2Model

__all__ = [
    "SEGMENTER_MODULES",
    "TRAJTOK_PRESETS",
    "TRAJVIT2_PRESETS",
    "CheckpointManager",
    "EpochShuffleSampler",
    "SyntheticClipDataset",
    "TrainState",
    "add_training_args",
    "build_caption_tokenizer",
    "build_optimizer",
    "build_scheduler",
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
NO_DECAY_NAME_PARTS = ("latents", "subtoken_offsets", "logit_scale", "cls_token", "class_embedding",
                       "position_embedding", "pos_embed")


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
        raise TypeError(f"learning_rates must be a mapping of parameter-name prefix -> lr, got "
                        f"{type(learning_rates).__name__}")
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
    "tiny": dict(backbone_config=dict(model_type="convnext", depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32]),
                 hidden_size=32, num_trajectories=8, num_attention_heads=4, assignment_hidden_size=16,
                 assignment_embed_dim=8, subtoken_fourier_frequencies=4),
    "small": dict(backbone_config=dict(model_type="convnext", depths=[2, 2, 2, 2], hidden_sizes=[32, 64, 128, 256]),
                  hidden_size=128, num_trajectories=32, num_attention_heads=4, assignment_hidden_size=64,
                  assignment_embed_dim=32, subtoken_fourier_frequencies=8),
    "base": dict(),  # ConvNeXt-T, width 512, K = 128 (TrajTokConfig defaults)
}
"""``TrajTokConfig`` keyword arguments per preset."""

TRAJVIT2_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": dict(vision=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
                 text=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                           max_position_embeddings=64),
                 model=dict(projection_dim=16)),
    "small": dict(vision=dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
                  text=dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512,
                            max_position_embeddings=64),
                  model=dict(projection_dim=64)),
    # The release: encoder width 512, 24 layers, 16 heads; BERT-base through 9 layers; projection 256.
    "base": dict(vision=dict(), text=dict(num_hidden_layers=9), model=dict(projection_dim=256)),
}
"""``TrajViT2VisionConfig`` (``vision``), ``BertConfig`` (``text``) and ``TrajViT2Config`` (``model``) keyword
arguments per preset; the vision tower's tokenizer is ``TRAJTOK_PRESETS`` of the same name."""


def synthetic_caption_words() -> list[str]:
    """Every word the synthetic generator's captions can contain (lower-cased, punctuation split off)."""
    from .data import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, SIZES, TEXTURES

    phrases = [*COLOURS, *SHAPES, *SIZES, *TEXTURES, *MOTIONS.values(), *BACKGROUNDS,
               "a while and , on background drifting left right up down"]
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

    def __init__(self, config: SyntheticVideoConfig, seed: int, num_clips: int, video_processor,
                 fresh_each_epoch: bool = True):
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
# Checkpoints

LATEST_FILE = "latest"
STATE_FILE = "trainer_state.json"
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
# Fault injection for tests: "<stage>:<step>" SIGKILLs this process at that stage of saving that step's checkpoint.
# Stages: "after_save_state" (files written into the temporary folder, nothing committed) and "before_pointer"
# (checkpoint folder renamed into place, `latest` not yet updated).
FAULT_ENV = "TRAJTOK_TEST_KILL_IN_CHECKPOINT"


def _maybe_fault(stage: str, step: int) -> None:
    spec = os.environ.get(FAULT_ENV)
    if spec and spec == f"{stage}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_tree(path: Path) -> None:
    """Flush every file under ``path`` and the folders themselves to disk (so a rename commits complete data)."""
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(root))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointManager:
    """Atomic training checkpoints under ``checkpoint_dir``::

        checkpoint_dir/
          step_000100/       accelerator.save_state (model, optimizer, RNG states, registered objects)
                             + trainer_state.json (TrainState; written last)
          step_000200/
          latest             one line: "step_000200"

    Saving (all processes call :meth:`save`): ``save_state`` writes into ``.tmp-step_NNNNNN``; then the main process
    adds ``trainer_state.json``, fsyncs, renames the folder to ``step_NNNNNN`` (atomic), and replaces ``latest``
    (write ``latest.tmp`` + fsync + ``os.replace``, atomic). A crash at any point leaves ``latest`` naming the previous
    complete checkpoint; temporary folders of crashed saves are removed by the next manager (and never read).
    ``total_limit`` keeps only the newest checkpoints (never removing the one ``latest`` names).
    """

    def __init__(self, checkpoint_dir: str | os.PathLike, total_limit: int | None = None, is_main_process: bool = True):
        if total_limit is not None and (isinstance(total_limit, bool) or not isinstance(total_limit, int)
                                        or total_limit < 1):
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
            if entry.is_dir() and entry.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
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

    def save(self, accelerator, state: TrainState, artifacts=(), extra: dict | None = None) -> Path:
        """Save the accelerator state + ``state`` as checkpoint ``step_{state.step}``; call on every process.

        ``artifacts``: objects with ``save_pretrained`` (the model's config, the processor) written into the folder
        too, so that a checkpoint loads with ``AutoModel.from_pretrained`` / ``AutoProcessor.from_pretrained`` (its
        ``model.safetensors`` has the keys of the unwrapped model)."""
        name = self.name_for(state.step)
        final, tmp = self.dir / name, self.dir / f"{_TMP_PREFIX}{name}"
        if accelerator.is_main_process:
            self.dir.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))  # every process writes its RNG state file into the same folder
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _maybe_fault("after_save_state", state.step)
            for artifact in artifacts:
                artifact.save_pretrained(tmp)
            payload = {**dataclasses.asdict(state), **(extra or {})}
            (tmp / STATE_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
            _fsync_tree(tmp)
            trash = None
            if final.exists():  # a checkpoint of this step from an earlier (crashed) attempt
                trash = self.dir / f"{_TRASH_PREFIX}{name}"
                shutil.rmtree(trash, ignore_errors=True)
                os.replace(final, trash)
            os.replace(tmp, final)  # atomic: the folder appears complete or not at all
            _fsync_dir(self.dir)
            _maybe_fault("before_pointer", state.step)
            pointer_tmp = self.dir / f"{LATEST_FILE}.tmp"
            with open(pointer_tmp, "w") as handle:
                handle.write(name + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(pointer_tmp, self.dir / LATEST_FILE)  # atomic pointer update
            _fsync_dir(self.dir)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
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
    def load(accelerator, path: str | os.PathLike) -> TrainState:
        """Restore the accelerator state (model, optimizer, registered scheduler, RNG states) and the counters."""
        path = Path(path)
        accelerator.load_state(str(path))
        payload = json.loads((path / STATE_FILE).read_text())
        fields = {f.name for f in dataclasses.fields(TrainState)}
        return TrainState(**{k: int(v) for k, v in payload.items() if k in fields})


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
    g.add_argument("--output_dir", required=True, help="checkpoints/, metrics.jsonl and final/ go here")
    g.add_argument("--per_device_train_batch_size", type=int, default=4)
    g.add_argument("--per_device_eval_batch_size", type=int, default=8)
    g.add_argument("--gradient_accumulation_steps", type=int, default=1)
    g.add_argument("--max_steps", type=int, default=1000, help="optimizer steps of the whole run")
    g.add_argument("--max_steps_this_run", type=int, default=None,
                   help="stop (after a checkpoint) once this many steps were done in this invocation")
    g.add_argument("--learning_rate", type=float, default=1e-4)
    g.add_argument("--weight_decay", type=float, default=0.02)
    g.add_argument("--adam_beta1", type=float, default=0.9)
    g.add_argument("--adam_beta2", type=float, default=0.999)
    g.add_argument("--warmup_steps", type=int, default=None,
                   help="linear warm-up steps (default: one epoch of --data DIR, as the paper; 5%% of --max_steps "
                        "for synthetic data)")
    g.add_argument("--min_lr_ratio", type=float, default=0.01, help="final LR of the cosine, as a fraction of the peak")
    g.add_argument("--max_grad_norm", type=float, default=10.0)
    g.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default="no")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--num_workers", type=int, default=0, help="DataLoader worker processes per training process")
    g.add_argument("--checkpointing_steps", type=int, default=500)
    g.add_argument("--checkpoints_total_limit", type=int, default=3)
    g.add_argument("--resume_from_checkpoint", default=None,
                   help="'latest' (resume from output_dir/checkpoints/latest; start from scratch if there is none "
                        "yet) or the path of a checkpoint folder")
    g.add_argument("--eval_steps", type=int, default=200,
                   help="evaluate every N steps and at the end (0: only at the end)")
    g.add_argument("--eval_clips", type=int, default=32, help="size of the held-out evaluation set")
    g.add_argument("--logging_steps", type=int, default=20)
    return parser


def check_training_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``parser.error`` (usage + message, exit status 2) on values that cannot work."""
    positive = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                "max_steps", "checkpointing_steps", "logging_steps", "eval_clips")
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
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        parser.error(f"--output_dir {args.output_dir} exists and is not a folder")


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
    (main process), after every process has finished; returns that folder."""
    accelerator.wait_for_everyone()
    final_dir = os.path.join(output_dir, "final")
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(final_dir)
        processor.save_pretrained(final_dir)
        accelerator.print(f"saved model + processor to {final_dir}")
    return final_dir
