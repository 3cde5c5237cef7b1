"""Pictures of trajectory tokens: frames with each pixel's trajectory id as a coloured overlay and trajectory
boundaries, plus the active-trajectory (token) count of every chunk, as a PNG grid or an animated GIF.

The paper shows its segmentations the same way (a colour per trajectory, consistent through a clip). The
official code has no visualisation; here only numpy and Pillow are used (no matplotlib), so the demo needs nothing
beyond the package's dependencies.

Inputs are what the models return: ``trajectory_ids`` ``(T, h, w)`` (or ``(B, T, h, w)``) on the segmenter's mask
grid (1/4 of the frame for the default stride), upsampled here with nearest-neighbour to the frame size; ids are the
global ``c·K + k`` indices of :class:`~trajtok_hf.TrajTokOutput`, so a trajectory's colour is fixed within its chunk
(chunks are tokenized independently, so the model's identities are not linked across them). A trajectory is
*active* in a chunk when it owns at least one pixel of the hard mask there (the argmax of the Eq. 1 assignment, paper
Sec. 3), so the per-chunk count is the number of distinct ids in the chunk: each active trajectory becomes ``n``
tokens, the rest are dropped.

Ids mapped back to the original frame size (``TrajTokVideoProcessor.post_process_trajectory_ids``, for a processor that
keeps the aspect ratio) may hold -1 where the model did not see the frame (margins cut away by ``resize_mode="crop"``):
those pixels are shown as they are, not coloured and not counted as a trajectory; a boundary line marks where the
seen part ends. Such ids are on the original frames, which :func:`fit_frames` shrinks (or enlarges) to a picture size:
ids of any size are resampled to the frames they are drawn on, and clips of different sizes share one picture.

Long videos (``trajtok_hf.long_video``) carry *global* ids, linked across chunks: :class:`TrajectoryVideoWriter`
writes their overlay chunk by chunk to an mp4, and since the colour of an id depends on the id alone, an object keeps
its colour over the whole video for as long as it keeps its id.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "UNSEEN_ID",
    "TrajectoryVideoWriter",
    "active_trajectories_per_chunk",
    "denormalize_video",
    "fit_frames",
    "overlay_trajectories",
    "render_trajectory_animation",
    "render_trajectory_grid",
    "save_gif",
    "save_trajectory_pictures",
    "trajectory_boundaries",
    "trajectory_palette",
]

_BOUNDARY_COLOUR = np.array([255, 255, 255], dtype=np.uint8)
_TEXT_COLOUR = (20, 20, 20)
_PAPER_COLOUR = (250, 250, 250)


def trajectory_palette(num_colours: int, seed: int = 0) -> np.ndarray:
    """``(num_colours, 3)`` uint8 colours, well separated in hue (golden-ratio steps) and alternating in
    saturation/brightness so that neighbouring ids differ clearly."""
    if isinstance(num_colours, bool) or not isinstance(num_colours, int) or num_colours < 1:
        raise ValueError(f"num_colours must be a positive int, got {num_colours!r}")
    golden = 0.618033988749895
    colours = []
    for i in range(num_colours):
        hue = (seed * 0.137 + i * golden) % 1.0
        saturation = (0.85, 0.6, 0.95)[i % 3]
        value = (0.95, 0.75, 0.85)[(i // 3) % 3]
        colours.append(colorsys.hsv_to_rgb(hue, saturation, value))
    return (np.asarray(colours) * 255).round().astype(np.uint8)


def _as_numpy(value, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(value).__name__}")


def _check_frames(frames, name: str = "frames") -> np.ndarray:
    frames = _as_numpy(frames, name)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (T, H, W, 3), got {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 RGB (use denormalize_video for model inputs), got {frames.dtype}")
    return frames


UNSEEN_ID = -1  # a pixel the model did not see (cropped away): shown uncoloured


def _check_ids(trajectory_ids, num_frames: int | None = None) -> np.ndarray:
    ids = _as_numpy(trajectory_ids, "trajectory_ids")
    if ids.ndim != 3:
        raise ValueError(f"trajectory_ids must have shape (T, h, w) for one clip, got {tuple(ids.shape)}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"trajectory_ids must be integers, got {ids.dtype}")
    if num_frames is not None and ids.shape[0] != num_frames:
        raise ValueError(f"trajectory_ids has {ids.shape[0]} frames but the video has {num_frames}")
    if ids.min(initial=0) < UNSEEN_ID:
        raise ValueError(f"trajectory_ids must be >= 0, or {UNSEEN_ID} for pixels the model did not see")
    return ids.astype(np.int64, copy=False)


def denormalize_video(pixel_values_videos, image_mean: Sequence[float], image_std: Sequence[float]) -> np.ndarray:
    """Undo the video processor's normalisation: ``(T, 3, H, W)`` or ``(B, T, 3, H, W)`` floats → uint8 RGB
    ``(T, H, W, 3)`` / ``(B, T, H, W, 3)`` (values clipped to [0, 255])."""
    video = _as_numpy(pixel_values_videos, "pixel_values_videos").astype(np.float32)
    if video.ndim not in (4, 5) or video.shape[-3] != 3:
        raise ValueError(f"pixel_values_videos must have shape (T, 3, H, W) or (B, T, 3, H, W), got {video.shape}")
    mean = np.asarray(image_mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(image_std, dtype=np.float32).reshape(3, 1, 1)
    if mean.size != 3 or std.size != 3:
        raise ValueError("image_mean and image_std must have 3 values (RGB)")
    rgb = (video * std + mean) * 255.0
    return np.clip(np.moveaxis(rgb, -3, -1).round(), 0, 255).astype(np.uint8)


def _resample_ids(ids: np.ndarray, height: int, width: int) -> np.ndarray:
    # Nearest neighbour on the pixel centres: row r of the frame reads id row floor((r + 1/2)·h / H), which is
    # floor(r·h / H) when the frame is an integer multiple of the id grid.
    rows = ((2 * np.arange(height) + 1) * ids.shape[1]) // (2 * height)
    cols = ((2 * np.arange(width) + 1) * ids.shape[2]) // (2 * width)
    return ids[:, rows[:, None], cols[None, :]]


def fit_frames(frames, max_side: int) -> np.ndarray:
    """Resize uint8 ``(T, H, W, 3)`` frames, aspect ratio kept, so that their longest side is ``max_side`` pixels
    (the other side rounded, at least 1): Lanczos when shrinking, nearest neighbour when enlarging (so that a small
    clip shows its own pixels). Frames already of that size are returned as they are."""
    frames = _check_frames(frames)
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise ValueError(f"max_side must be a positive int, got {max_side!r}")
    height, width = frames.shape[1:3]
    longest = max(height, width)
    if longest == max_side:
        return frames
    size = (max(1, round(width * max_side / longest)), max(1, round(height * max_side / longest)))
    resample = Image.Resampling.LANCZOS if longest > max_side else Image.Resampling.NEAREST
    return np.stack([np.asarray(Image.fromarray(frame).resize(size, resample)) for frame in frames])


def trajectory_boundaries(trajectory_ids) -> np.ndarray:
    """``(T, H, W)`` bool: pixels whose right or lower neighbour belongs to another trajectory."""
    ids = _check_ids(trajectory_ids)
    edges = np.zeros(ids.shape, dtype=bool)
    edges[:, :, :-1] |= ids[:, :, :-1] != ids[:, :, 1:]
    edges[:, :-1, :] |= ids[:, :-1, :] != ids[:, 1:, :]
    return edges


def overlay_trajectories(
    frames, trajectory_ids, alpha: float = 0.55, draw_boundaries: bool = True, palette: np.ndarray | None = None
) -> np.ndarray:
    """Blend a colour per trajectory id over ``frames`` ``(T, H, W, 3)`` uint8; ``trajectory_ids`` ``(T, h, w)``
    (the mask grid or the original frame size, resampled nearest-neighbour to the frames; -1 = not seen, left
    uncoloured). Boundaries between trajectories are drawn white. Returns ``(T, H, W, 3)`` uint8."""
    frames = _check_frames(frames)
    ids = _check_ids(trajectory_ids, frames.shape[0])
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    full = _resample_ids(ids, frames.shape[1], frames.shape[2])
    palette = trajectory_palette(int(full.max(initial=0)) + 1) if palette is None else np.asarray(palette, np.uint8)
    colours = palette[full.clip(min=0) % len(palette)]
    blended = (frames.astype(np.float32) * (1.0 - alpha) + colours.astype(np.float32) * alpha).round()
    out = np.where((full == UNSEEN_ID)[..., None], frames, blended.astype(np.uint8))
    if draw_boundaries:
        out[trajectory_boundaries(full)] = _BOUNDARY_COLOUR
    return out


def active_trajectories_per_chunk(trajectory_ids, chunk_size: int) -> list[int]:
    """Active (non-empty) trajectories of each temporal chunk of one clip: the distinct ids among its pixels (-1,
    not seen, is not a trajectory). A shorter last chunk counts like the others."""
    ids = _check_ids(trajectory_ids)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    chunks = (ids[start : start + chunk_size] for start in range(0, ids.shape[0], chunk_size))
    return [int(np.unique(chunk[chunk != UNSEEN_ID]).size) for chunk in chunks]


def _font(size: int):
    try:  # Pillow >= 10.1 ships a scalable default font
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - older Pillow
        return ImageFont.load_default()


def _scale_for(height: int, target: int = 160) -> int:
    return max(1, -(-target // height))


def _enlarge(frame: np.ndarray, scale: int) -> np.ndarray:
    return frame.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else frame


def _clip_inputs(videos, trajectory_ids, captions):
    if isinstance(videos, (np.ndarray, torch.Tensor)) and _as_numpy(videos, "videos").ndim == 4:
        videos, trajectory_ids = [videos], [trajectory_ids]
        captions = [captions] if isinstance(captions, str) else captions
    videos, trajectory_ids = list(videos), list(trajectory_ids)
    if not videos:
        raise ValueError("videos is empty: pass at least one clip")
    if len(videos) != len(trajectory_ids):
        raise ValueError(f"got {len(videos)} videos but {len(trajectory_ids)} trajectory_ids")
    if captions is None:
        captions = [None] * len(videos)
    captions = list(captions)
    if len(captions) != len(videos):
        raise ValueError(f"got {len(videos)} videos but {len(captions)} captions")
    frames = [_check_frames(v, "videos[i]") for v in videos]
    ids = [_check_ids(i, f.shape[0]) for i, f in zip(trajectory_ids, frames, strict=True)]
    return frames, ids, captions


def _wrap(text: str, width_px: int, font) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and font.getlength(candidate) > width_px:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + ([line] if line else [])


def _cell_scale(frames: list[np.ndarray], scale: int | None) -> int:
    """One enlargement for every clip (their relative sizes stay true): by default the tallest reaches 160 px."""
    if scale is None:
        return _scale_for(max(f.shape[1] for f in frames))
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int or None, got {scale!r}")
    return scale


def render_trajectory_grid(
    videos,
    trajectory_ids,
    chunk_size: int,
    captions: Sequence[str | None] | None = None,
    max_frames: int = 8,
    scale: int | None = None,
    alpha: float = 0.55,
    frame_indices: Sequence[int] | None = None,
) -> Image.Image:
    """A PNG-ready picture of one or more clips: per clip, its caption and active trajectories per chunk, a row of
    frames and below it the same frames with the trajectory overlay; frames are evenly subsampled to ``max_frames``
    and enlarged by ``scale`` (default: the tallest clip to ≥ 160 px). Clips may differ in frame size: each keeps
    its own, in columns as wide as the widest. ``frame_indices`` gives the frames' indices in a longer video (e.g.
    frames picked across a whole video), for their labels and chunks; the per-chunk counts are then left out."""
    frames, ids, captions = _clip_inputs(videos, trajectory_ids, captions)
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    scale = _cell_scale(frames, scale)
    column_w, gap = max(f.shape[2] for f in frames) * scale, 4
    font, small = _font(14), _font(11)
    columns = min(max_frames, max(f.shape[0] for f in frames))
    canvas_w = columns * (column_w + gap) + gap
    blocks = []
    for clip, clip_ids, caption in zip(frames, ids, captions, strict=True):
        cell_h = clip.shape[1] * scale
        if frame_indices is not None and len(frame_indices) != clip.shape[0]:
            raise ValueError(f"frame_indices has {len(frame_indices)} entries for a clip of {clip.shape[0]} frames")
        labels = list(range(clip.shape[0])) if frame_indices is None else [int(i) for i in frame_indices]
        header = caption or ""
        if frame_indices is None:
            counts = active_trajectories_per_chunk(clip_ids, chunk_size)
            header = (f"{header}  |  " if header else "") + "active trajectories per chunk: "
            header += ", ".join(str(c) for c in counts)
        text_lines = _wrap(header, canvas_w - 2 * gap, font)
        overlay = overlay_trajectories(clip, clip_ids, alpha=alpha)
        picks = np.unique(np.linspace(0, clip.shape[0] - 1, min(columns, clip.shape[0])).round().astype(int))
        block_h = gap + 18 * len(text_lines) + 14 + 2 * (cell_h + gap)
        block = Image.new("RGB", (canvas_w, block_h), _PAPER_COLOUR)
        draw = ImageDraw.Draw(block)
        for j, line in enumerate(text_lines):
            draw.text((gap, gap + 18 * j), line, fill=_TEXT_COLOUR, font=font)
        top = gap + 18 * len(text_lines)
        for col, t in enumerate(picks):
            x = gap + col * (column_w + gap)
            frame = labels[t]
            draw.text((x, top), f"t={frame} chunk {frame // chunk_size}", fill=_TEXT_COLOUR, font=small)
            block.paste(Image.fromarray(_enlarge(clip[t], scale)), (x, top + 14))
            block.paste(Image.fromarray(_enlarge(overlay[t], scale)), (x, top + 14 + cell_h + gap))
        blocks.append(block)
    out = Image.new("RGB", (canvas_w, sum(b.height for b in blocks)), _PAPER_COLOUR)
    y = 0
    for block in blocks:
        out.paste(block, (0, y))
        y += block.height
    return out


def render_trajectory_animation(
    videos,
    trajectory_ids,
    chunk_size: int,
    captions: Sequence[str | None] | None = None,
    scale: int | None = None,
    alpha: float = 0.55,
) -> list[Image.Image]:
    """GIF frames: at each time step, every clip as a row [frame | overlay] with its frame index, chunk and that
    chunk's active-trajectory count (clips shorter than the longest hold their last frame; clips of different frame
    sizes keep their own, the overlays aligned in one column)."""
    frames, ids, captions = _clip_inputs(videos, trajectory_ids, captions)
    scale = _cell_scale(frames, scale)
    column_w, gap, label_h = max(f.shape[2] for f in frames) * scale, 4, 30
    font = _font(12)
    overlays = [overlay_trajectories(f, i, alpha=alpha) for f, i in zip(frames, ids, strict=True)]
    counts = [active_trajectories_per_chunk(i, chunk_size) for i in ids]
    tops = np.cumsum([gap] + [f.shape[1] * scale + label_h + gap for f in frames])
    canvas = (2 * column_w + 3 * gap, int(tops[-1]))
    steps = max(f.shape[0] for f in frames)
    images = []
    for step in range(steps):
        image = Image.new("RGB", canvas, _PAPER_COLOUR)
        draw = ImageDraw.Draw(image)
        for clip, overlay, caption, clip_counts, y in zip(frames, overlays, captions, counts, tops[:-1], strict=True):
            t = min(step, clip.shape[0] - 1)
            chunk = t // chunk_size
            label = f"t={t}  chunk {chunk}: {clip_counts[chunk]} active trajectories"
            lines = [label] + (_wrap(caption, canvas[0] - 2 * gap, font)[:1] if caption else [])
            for j, line in enumerate(lines):
                draw.text((gap, int(y) + 14 * j), line, fill=_TEXT_COLOUR, font=font)
            image.paste(Image.fromarray(_enlarge(clip[t], scale)), (gap, int(y) + label_h))
            image.paste(Image.fromarray(_enlarge(overlay[t], scale)), (2 * gap + column_w, int(y) + label_h))
        images.append(image)
    return images


def save_gif(images: Sequence[Image.Image], path: str | os.PathLike, fps: float = 4.0) -> None:
    """Write PIL images as a looping GIF (written to a temporary name first, then renamed: an interrupted write
    never leaves a truncated file at ``path``)."""
    images = list(images)
    if not images:
        raise ValueError("images is empty: nothing to write")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0, disposal=2
        )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_trajectory_pictures(
    videos,
    trajectory_ids,
    chunk_size: int,
    output_dir: str | os.PathLike,
    captions: Sequence[str | None] | None = None,
    max_frames: int = 8,
    fps: float = 4.0,
    name: str = "trajectories",
    scale: int | None = None,
) -> list[str]:
    """Write ``<name>.png`` (:func:`render_trajectory_grid`) and ``<name>.gif`` (:func:`render_trajectory_animation`)
    of the clips into ``output_dir`` (created if missing); returns the two paths. ``scale`` enlarges the frames
    (default: to ≥ 160 px; pass 1 for frames already at picture size, e.g. from :func:`fit_frames`)."""
    os.makedirs(output_dir, exist_ok=True)
    png, gif = os.path.join(output_dir, f"{name}.png"), os.path.join(output_dir, f"{name}.gif")
    grid = render_trajectory_grid(
        videos, trajectory_ids, chunk_size, captions=captions, max_frames=max_frames, scale=scale
    )
    grid.save(png)
    save_gif(
        render_trajectory_animation(videos, trajectory_ids, chunk_size, captions=captions, scale=scale), gif, fps=fps
    )
    return [png, gif]


def _even(frames: np.ndarray) -> np.ndarray:
    """Crop a last row / column so that height and width are even (yuv420p video)."""
    return frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]


class TrajectoryVideoWriter:
    """Write the trajectory overlay of a video of any length to an mp4, chunk by chunk.

    Each :meth:`write` takes a chunk's uint8 frames ``(t, H, W, 3)`` (original size) and its trajectory ids
    ``(t, h, w)`` (global ids from ``trajtok_hf.long_video``, on the mask grid or the frame size; -1 = not seen).
    The colour of id ``i`` is entry ``i`` of :func:`trajectory_palette`, whatever the other ids are, so an id keeps
    its colour through the whole video. Frames are drawn with their longest side at ``max_side`` pixels, the
    original frame beside its overlay when ``side_by_side``. Only the chunk being written is held in memory.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: int = 8,
        max_side: int = 320,
        alpha: float = 0.55,
        side_by_side: bool = True,
    ):
        from .data.synthetic import Mp4Writer

        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 2:
            raise ValueError(f"max_side must be an int >= 2, got {max_side!r}")
        self.max_side, self.alpha, self.side_by_side = max_side, alpha, side_by_side
        self._palette = trajectory_palette(64)
        self._writer = Mp4Writer(path, fps=fps)

    @property
    def num_frames(self) -> int:
        return self._writer.num_frames

    def _colours_for(self, largest_id: int) -> np.ndarray:
        if largest_id >= len(self._palette):
            self._palette = trajectory_palette(max(largest_id + 1, 2 * len(self._palette)))
        return self._palette

    def write(self, frames, trajectory_ids) -> None:
        frames = _check_frames(frames)
        ids = _check_ids(trajectory_ids, frames.shape[0])
        frames = fit_frames(frames, self.max_side)
        palette = self._colours_for(int(ids.max(initial=0)))
        picture = overlay_trajectories(frames, ids, alpha=self.alpha, palette=palette)
        if self.side_by_side:
            picture = np.concatenate((frames, picture), axis=2)
        self._writer.write(_even(picture))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> TrajectoryVideoWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
