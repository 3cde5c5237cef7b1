"""trajtok_hf.visualization: overlays, boundaries, per-chunk counts, PNG/GIF rendering and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from trajtok_hf.visualization import (
    TrajectoryVideoWriter,
    active_trajectories_per_chunk,
    denormalize_video,
    fit_frames,
    overlay_trajectories,
    render_trajectory_animation,
    render_trajectory_grid,
    save_gif,
    save_trajectory_pictures,
    trajectory_boundaries,
    trajectory_palette,
)


def _clip(frames=4, size=16, seed=0):
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    ids = np.zeros((frames, size // 4, size // 4), dtype=np.int64)
    ids[:, :2, :2] = 3  # one object in the top-left quarter
    ids[2:, 2:, 2:] = 5  # another one that appears in the second chunk
    return video, ids


def test_palette_distinct_and_deterministic():
    palette = trajectory_palette(64)
    assert palette.shape == (64, 3) and palette.dtype == np.uint8
    assert len({tuple(c) for c in palette}) == 64
    np.testing.assert_array_equal(palette, trajectory_palette(64))
    with pytest.raises(ValueError, match="num_colours"):
        trajectory_palette(0)


def test_overlay_colours_each_trajectory_and_draws_boundaries():
    video, ids = _clip()
    out = overlay_trajectories(video, ids, alpha=1.0, draw_boundaries=False)
    palette = trajectory_palette(6)
    # alpha = 1: every pixel takes its (nearest-neighbour upsampled) trajectory colour
    np.testing.assert_array_equal(out[0, 0, 0], palette[3])
    np.testing.assert_array_equal(out[0, 15, 15], palette[0])
    np.testing.assert_array_equal(out[3, 15, 15], palette[5])
    untouched = overlay_trajectories(video, ids, alpha=0.0, draw_boundaries=False)
    np.testing.assert_array_equal(untouched, video)
    edges = trajectory_boundaries(np.repeat(np.repeat(ids, 4, 1), 4, 2))
    assert edges[0, 7, 3] and not edges[0, 0, 0] and not edges[0, 12, 12]
    with_edges = overlay_trajectories(video, ids, alpha=0.0)
    np.testing.assert_array_equal(with_edges[0, 7, 3], [255, 255, 255])


def test_active_trajectories_per_chunk_counts_distinct_ids():
    _, ids = _clip(frames=4)
    assert active_trajectories_per_chunk(ids, 2) == [2, 3]
    assert active_trajectories_per_chunk(ids, 3) == [3, 3]  # a shorter last chunk counts like the others
    assert active_trajectories_per_chunk(torch.from_numpy(ids), 4) == [3]
    with pytest.raises(ValueError, match="chunk_size"):
        active_trajectories_per_chunk(ids, 0)


def test_denormalize_inverts_the_processor_normalisation():
    video, _ = _clip()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normalised = (
        torch.from_numpy(video).permute(0, 3, 1, 2).float() / 255 - torch.tensor(mean)[:, None, None]
    ) / torch.tensor(std)[:, None, None]
    np.testing.assert_array_equal(denormalize_video(normalised, mean, std), video)
    assert denormalize_video(normalised[None], mean, std).shape == (1, 4, 16, 16, 3)


def test_grid_and_animation_render_and_save(tmp_path):
    clips = [_clip(seed=0), _clip(seed=1)]
    videos, ids = [c[0] for c in clips], [c[1] for c in clips]
    grid = render_trajectory_grid(videos, ids, 2, captions=["a red circle", None], max_frames=3)
    assert isinstance(grid, Image.Image) and grid.width >= 3 * 16 and grid.height > 2 * 2 * 16
    frames = render_trajectory_animation(videos, ids, 2, captions=["a red circle", "a blue star"])
    assert len(frames) == 4 and len({f.size for f in frames}) == 1
    path = tmp_path / "clip.gif"
    save_gif(frames, path, fps=5)
    with Image.open(path) as gif:
        assert gif.n_frames == 4
    assert not list(tmp_path.glob("*.tmp-*"))
    single = render_trajectory_grid(videos[0], ids[0], 2, captions="one clip")  # one clip without a list
    assert single.height < grid.height


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda v, i: overlay_trajectories(v[0], i), ValueError, r"\(T, H, W, 3\)"),
        (lambda v, i: overlay_trajectories(v.astype(np.float32), i), TypeError, "uint8"),
        (lambda v, i: overlay_trajectories(v, i[:2]), ValueError, "frames"),
        (lambda v, i: overlay_trajectories(v, i.astype(np.float32)), TypeError, "integers"),
        (lambda v, i: overlay_trajectories(v, i - 10), ValueError, ">= 0"),
        (lambda v, i: overlay_trajectories(v, i, alpha=2.0), ValueError, "alpha"),
        (lambda v, i: overlay_trajectories(v.tolist(), i), TypeError, "numpy array or a torch tensor"),
        (lambda v, i: render_trajectory_grid([v, v], [i], 2), ValueError, "2 videos but 1"),
        (lambda v, i: render_trajectory_grid([], [], 2), ValueError, "empty"),
        (lambda v, i: render_trajectory_grid([v], [i], 2, captions=["a", "b"]), ValueError, "captions"),
        (lambda v, i: save_gif([], "x.gif"), ValueError, "empty"),
    ],
)
def test_bad_inputs(call, error, match):
    video, ids = _clip()
    with pytest.raises(error, match=match):
        call(video, ids)


def test_save_trajectory_pictures_writes_png_and_gif(tmp_path):
    video, ids = _clip()
    png, gif = save_trajectory_pictures([video], [ids], 2, tmp_path / "pics", captions=["a clip"], fps=2)
    assert png.endswith("trajectories.png") and gif.endswith("trajectories.gif")
    with Image.open(gif) as animation:
        assert animation.n_frames == 4
    with pytest.raises(ValueError, match="chunk_size"):
        save_trajectory_pictures([video], [ids], 0, tmp_path / "bad")


# ids -> (expected active count per chunk of 2 frames, pixels left uncoloured): -1 marks pixels the model did not see
UNSEEN_CASES = [
    ("no unseen pixel", lambda ids: ids, [2, 3], 0),
    ("unseen left columns", lambda ids: np.concatenate([np.full_like(ids[..., :1], -1), ids[..., 1:]], -1), [2, 3], 4),
    ("all unseen", lambda ids: np.full_like(ids, -1), [0, 0], 16),
]


@pytest.mark.parametrize(
    "change, counts, uncoloured_columns", [c[1:] for c in UNSEEN_CASES], ids=[c[0] for c in UNSEEN_CASES]
)
def test_unseen_pixels_are_not_coloured_nor_counted(change, counts, uncoloured_columns):
    video, ids = _clip()
    ids = change(ids)
    assert active_trajectories_per_chunk(ids, 2) == counts
    out = overlay_trajectories(video, ids, alpha=1.0, draw_boundaries=False)
    kept = (out == video).all(axis=(0, 1, 3))  # columns shown exactly as they are in every frame
    assert kept.sum() == uncoloured_columns and kept[:uncoloured_columns].all()
    assert render_trajectory_grid(video, ids, 2).width > 0


def test_cropped_video_ids_overlay_on_the_original_frames():
    """The processor's crop mode end to end: ids mapped back to a 40x100 frame, margins uncoloured."""
    from trajtok_hf import TrajTokVideoProcessor

    video = np.random.default_rng(2).integers(0, 256, (2, 40, 100, 3), dtype=np.uint8)
    processor = TrajTokVideoProcessor(resize_mode="crop", size={"height": 32, "width": 32}, num_frames=2)
    geometry = processor(video, return_tensors="pt", return_geometry=True)["video_geometry"]
    (ids,) = processor.post_process_trajectory_ids(torch.ones(1, 2, 8, 8, dtype=torch.long), geometry)
    out = overlay_trajectories(video, ids, alpha=1.0, draw_boundaries=False)
    uncoloured = (out == video).all(axis=(0, 1, 3))
    np.testing.assert_array_equal(uncoloured, (ids[0] == -1).all(dim=0).numpy())
    assert 55 <= uncoloured.sum() <= 62  # 100 - 40 columns cut away (± rounding), 30 on each side


# (frame height, width, max_side) -> drawn (height, width): the longest side becomes max_side, the aspect ratio stays
FIT_CASES = [
    ("shrink wide", (272, 640, 320), (136, 320)),
    ("shrink tall", (90, 30, 45), (45, 15)),
    ("enlarge", (9, 15, 30), (18, 30)),
    ("unchanged", (16, 16, 16), (16, 16)),
    ("thin side kept >= 1", (1, 100, 10), (1, 10)),
]


@pytest.mark.parametrize("shape, expected", [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES])
def test_fit_frames_keeps_the_aspect_ratio(shape, expected):
    height, width, max_side = shape
    frames = np.random.default_rng(0).integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    fitted = fit_frames(frames, max_side)
    assert fitted.shape == (2, *expected, 3) and fitted.dtype == np.uint8
    if max(height, width) < max_side:  # enlarging repeats pixels (nearest neighbour): no invented colours
        assert {tuple(p) for p in fitted.reshape(-1, 3)} <= {tuple(p) for p in frames.reshape(-1, 3)}
    with pytest.raises(ValueError, match="max_side"):
        fit_frames(frames, 0)


def test_ids_at_the_original_size_are_resampled_to_smaller_frames():
    """Ids on a 6-wide original frame drawn on 4-wide frames: each drawn pixel takes the id under its centre."""
    ids = np.arange(6)[None, None, :].repeat(2, axis=1)  # (1, 2, 6): column c has id c
    video = np.zeros((1, 2, 4, 3), dtype=np.uint8)
    out = overlay_trajectories(video, ids, alpha=1.0, draw_boundaries=False)
    palette = trajectory_palette(6)
    for column, source in enumerate([0, 2, 3, 5]):  # floor((2c + 1) · 6 / 8)
        np.testing.assert_array_equal(out[0, 0, column], palette[source])


def test_clips_of_different_sizes_share_one_picture():
    wide, wide_ids = _clip(frames=4, size=16)
    wide = np.concatenate([wide, wide], axis=2)  # 16 x 32
    wide_ids = np.concatenate([wide_ids, wide_ids], axis=2)
    tall, tall_ids = _clip(frames=2, size=8)
    grid = render_trajectory_grid([wide, tall], [wide_ids, tall_ids], 2, max_frames=4, scale=1)
    assert grid.width == 4 * (32 + 4) + 4  # columns as wide as the widest clip
    frames = render_trajectory_animation([wide, tall], [wide_ids, tall_ids], 2, scale=2)
    assert len(frames) == 4 and frames[0].size == (2 * 64 + 3 * 4, 4 + (32 + 30 + 4) + (16 + 30 + 4))
    with pytest.raises(ValueError, match="scale"):
        render_trajectory_grid([wide], [wide_ids], 2, scale=0)


def test_save_trajectory_pictures_scale(tmp_path):
    video, ids = _clip()
    _, gif = save_trajectory_pictures([video], [ids], 2, tmp_path, scale=1, name="small")
    with Image.open(gif) as animation:
        assert animation.size == (2 * 16 + 3 * 4, 4 + 16 + 30 + 4)


def _decoded(path) -> np.ndarray:
    from trajtok_hf.models.video_io_trajtok import read_video_pyav

    return read_video_pyav(path)[0]


def test_a_global_id_keeps_its_colour_over_a_whole_video(tmp_path):
    # Two chunks: id 40 (beyond the first palette block) is left in chunk 0 and right in chunk 1; id 3 elsewhere.
    frames = np.full((4, 32, 32, 3), 128, np.uint8)
    ids = np.full((4, 8, 8), 3)
    ids[:2, :, :4] = 40
    ids[2:, :, 4:] = 40
    path = tmp_path / "ids.mp4"
    with TrajectoryVideoWriter(path, fps=4, max_side=32, alpha=1.0, side_by_side=False) as writer:
        writer.write(frames[:2], ids[:2])
        writer.write(frames[2:], ids[2:])
        assert writer.num_frames == 4
    video = _decoded(path).astype(int)
    assert video.shape == (4, 32, 32, 3)
    colour = trajectory_palette(41)[40].astype(int)
    left, right = video[:2, 8:24, 4:12].mean((1, 2)), video[2:, 8:24, 20:28].mean((1, 2))
    # The codec's error is a few grey levels; the colours of different ids differ by far more.
    assert np.abs(left - colour).max() < 12 and np.abs(right - colour).max() < 12
    assert np.abs(trajectory_palette(41)[3].astype(int) - colour).max() > 40


def test_the_video_writer_draws_the_frame_beside_the_overlay_and_checks_its_inputs(tmp_path):
    with TrajectoryVideoWriter(tmp_path / "pair.mp4", max_side=20) as writer:
        writer.write(np.zeros((2, 15, 10, 3), np.uint8), np.zeros((2, 3, 2), int))
        with pytest.raises(ValueError, match="frames"):
            writer.write(np.zeros((2, 15, 10, 3), np.uint8), np.zeros((3, 3, 2), int))
    assert _decoded(tmp_path / "pair.mp4").shape == (2, 20, 26, 3)  # 20 x 13 twice, cut to even sizes
    for kwargs, match in ((dict(alpha=2.0), "alpha"), (dict(max_side=1), "max_side")):
        with pytest.raises(ValueError, match=match):
            TrajectoryVideoWriter(tmp_path / "x.mp4", **kwargs)
