"""Reusable pieces of the training scripts in ``examples/`` (``train_segmenter.py``, ``train_trajvit2.py``, ...).

The scripts keep the training loop in plain sight (nanoGPT style); this package holds what they share, one module
per concern:

* :mod:`.optim`: :func:`build_optimizer` — AdamW of the paper (Sec. 4: lr 1e-4, wd 0.02, betas (0.9, 0.999)) with no
  weight decay on norms, biases, learned latents/offsets, [CLS]/position embeddings and logit scales;
  :func:`build_scheduler` — linear warm-up then cosine decay to ``min_lr_ratio`` (1 %) of the peak;
  :func:`default_warmup_steps` — one epoch of warm-up, as the paper.
* :mod:`.data` and :mod:`.loop`: :class:`SyntheticClipDataset` renders clips on the fly; :class:`EpochShuffleSampler`
  shuffles a finite dataset with an order that depends only on ``(seed, epoch)``; :func:`iterate_batches` walks
  epochs forever and resumes mid-epoch, keeping the :class:`TrainState` counters up to date.
* :mod:`.checkpoints`: :class:`CheckpointManager` — model, optimizer, scheduler and per-process RNG states as
  safetensors + JSON (:mod:`.serialization`, :mod:`.state`; nothing is ever unpickled on resume), committed
  atomically; the ``checkpoints/latest`` pointer never names a half-written checkpoint. :mod:`.hooks` holds the
  test-only crash points of the saves.
* :mod:`.sharded`: FSDP2 for ``torchrun`` launches (:func:`shard_model`, :func:`init_distributed`) and
  :class:`ShardedCheckpointManager` — every process writes its shard of the weights and optimizer state as safetensors
  through ``torch.distributed.checkpoint``'s Hugging Face storage, the rest is JSON; resumable with another number of
  processes; :func:`save_consolidated` writes the final ``save_pretrained`` folder.
* :mod:`.outputs`: :func:`save_final` writes ``final/`` the same way; :func:`log_jsonl` appends to ``metrics.jsonl``.
* :mod:`.evaluation`: :func:`evaluate_segmentation` (ARI / FG-ARI / matched mIoU) and :func:`evaluate_retrieval`
  (R@1/5/10 both directions), gathered over processes, computed with :mod:`trajtok_hf.metrics`.
* :mod:`.segmenter_swap`: :func:`replace_segmenter` puts another segmenter under a trained TrajViT2 (keeping its
  token side, encoder and text tower); :func:`freeze_segmenter` keeps a segmenter fixed while the rest trains.
* :mod:`.presets` and :mod:`.text`: ``TRAJTOK_PRESETS`` / ``TRAJVIT2_PRESETS`` (``--preset tiny|small|base``) and
  :func:`build_caption_tokenizer`, a word-level BERT tokenizer over a closed caption vocabulary (no download).

The command-line flags the scripts share live beside them (``examples/training_args.py``, standard library only), so
that a script answers ``--help`` before it imports this package.
"""

from .checkpoints import (
    CHECKPOINT_FORMAT,
    LATEST_FILE,
    MODEL_FILE,
    OPTIMIZER_STEM,
    RNG_STEM,
    SCALER_FILE,
    SCHEDULER_FILE,
    STATE_FILE,
    CheckpointManager,
)
from .data import PAIRED_TRANSFORMS, EpochShuffleSampler, SyntheticClipDataset, normalize_video
from .evaluation import evaluate_retrieval, evaluate_segmentation, load_segmenter, oracle_query_trajectory_ids
from .loop import TrainState, iterate_batches
from .optim import (
    NO_DECAY_NAME_PARTS,
    SEGMENTER_MODULES,
    build_optimizer,
    build_scheduler,
    default_warmup_steps,
    parameter_groups,
)
from .outputs import log_jsonl, save_final
from .presets import TRAJTOK_PRESETS, TRAJVIT2_PRESETS
from .segmenter_swap import SEGMENTER_CONFIG_KEYS, SHARED_CONFIG_KEYS, freeze_segmenter, replace_segmenter
from .sharded import (
    SHARDED_CHECKPOINT_FORMAT,
    DistributedContext,
    ShardedCheckpointManager,
    init_distributed,
    load_model_and_optimizer,
    reduce_replicated_gradients,
    save_consolidated,
    save_model_and_optimizer,
    shard_model,
)
from .text import PACKAGED_TEXT_ENCODERS, build_caption_tokenizer, packaged_text_encoder_path, synthetic_caption_words

__all__ = [
    "CHECKPOINT_FORMAT",
    "LATEST_FILE",
    "MODEL_FILE",
    "PACKAGED_TEXT_ENCODERS",
    "NO_DECAY_NAME_PARTS",
    "OPTIMIZER_STEM",
    "RNG_STEM",
    "SCALER_FILE",
    "SCHEDULER_FILE",
    "SEGMENTER_CONFIG_KEYS",
    "SEGMENTER_MODULES",
    "SHARED_CONFIG_KEYS",
    "STATE_FILE",
    "TRAJTOK_PRESETS",
    "TRAJVIT2_PRESETS",
    "CheckpointManager",
    "DistributedContext",
    "SHARDED_CHECKPOINT_FORMAT",
    "ShardedCheckpointManager",
    "init_distributed",
    "load_model_and_optimizer",
    "reduce_replicated_gradients",
    "save_consolidated",
    "save_model_and_optimizer",
    "shard_model",
    "EpochShuffleSampler",
    "PAIRED_TRANSFORMS",
    "SyntheticClipDataset",
    "TrainState",
    "build_caption_tokenizer",
    "packaged_text_encoder_path",
    "build_optimizer",
    "build_scheduler",
    "default_warmup_steps",
    "evaluate_retrieval",
    "evaluate_segmentation",
    "freeze_segmenter",
    "iterate_batches",
    "load_segmenter",
    "oracle_query_trajectory_ids",
    "log_jsonl",
    "normalize_video",
    "parameter_groups",
    "replace_segmenter",
    "save_final",
    "synthetic_caption_words",
]
