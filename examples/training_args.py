"""Command-line flags the example scripts share, and their checks (``parser.error``: usage + message, exit status 2).

Standard library only, like the ``utils_*.py`` modules beside transformers' own examples: a script imports it by name
(``python examples/x.py`` and ``accelerate launch examples/x.py`` put this folder on ``sys.path``) and parses its
arguments before it imports torch, transformers or trajtok_hf, so that ``--help`` and usage errors answer at once.

Defaults are the paper's optimisation settings (Sec. 4). A non-empty ``--output_dir`` is refused unless
``--overwrite_output_dir`` is given or the run resumes from a checkpoint inside it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Names the package defines too; spelled out here so that parsing needs no import of it (tests check they match).
STATE_FILE = "trainer_state.json"
"""``trajtok_hf.training.STATE_FILE``: the file a complete checkpoint folder holds (written last)."""
PRESET_NAMES = ("tiny", "small", "base")
"""The keys of ``trajtok_hf.training.TRAJTOK_PRESETS`` and ``TRAJVIT2_PRESETS`` (``--preset``)."""
VIDEO_FOLDER_METADATA = ("metadata.jsonl", "metadata.csv")
"""What ``trajtok_hf.data.load_video_text_dataset`` reads in a video folder."""
PACKAGED_TEXT_ENCODER_NAMES = ("minilm",)
"""The keys of ``trajtok_hf.training.PACKAGED_TEXT_ENCODERS`` (``--text_model NAME``)."""
TRAJECTORY_MOTION_FUSIONS = ("add", "mlp")
"""``trajtok_hf.models.configuration_trajtok.TRAJECTORY_MOTION_FUSIONS`` (``--trajectory_motion_fusion``)."""


def add_training_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Optimisation, schedule, checkpointing, evaluation and logging flags (defaults: the paper's, Sec. 4)."""
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


def check_data_args(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    flags=("data", "eval_data"),
    generated=("synthetic",),
) -> None:
    """``parser.error`` naming the flag unless each of ``flags`` is None, one of ``generated`` (the names of the
    generators the script renders on the fly) or a video folder with a ``metadata.jsonl`` / ``metadata.csv`` (what
    ``trajtok_hf.data.load_video_text_dataset`` reads)."""
    for flag in flags:
        value = getattr(args, flag)
        if value is None or value in generated:
            continue
        if not os.path.isdir(value):
            names = " or ".join(repr(name) for name in generated)
            parser.error(f"--{flag} {value}: not a folder (use {names} or a video folder with metadata.jsonl)")
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
    check_resume_arg(parser, args.resume_from_checkpoint)
    check_output_dir(parser, args, resume=args.resume_from_checkpoint)


def check_resume_arg(parser: argparse.ArgumentParser, spec: str | None) -> None:
    """``parser.error`` unless ``--resume_from_checkpoint`` is unset, ``'latest'`` or a complete checkpoint folder."""
    if spec in (None, "", "latest"):
        return
    if not os.path.isdir(spec):
        parser.error(f"--resume_from_checkpoint {spec}: no such checkpoint folder (or use 'latest')")
    if not os.path.isfile(os.path.join(spec, STATE_FILE)):
        parser.error(f"--resume_from_checkpoint {spec}: not a complete checkpoint (no {STATE_FILE})")
