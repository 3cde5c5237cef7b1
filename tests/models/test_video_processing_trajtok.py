"""Tests of TrajTokVideoProcessor (the release's preprocessing: 224x224 bicubic, /255, ImageNet mean/std)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import PIL.Image
import pytest
import torch
from testers import float_error_bound
from transformers import AutoVideoProcessor, PretrainedConfig

from trajtok_hf.models.video_processing_trajtok import (
    TrajTokVideoProcessor,
    VideoGeometry,
    read_video_pyav,
    uniform_frame_indices,
)

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float64)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float64)
CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"
# Float error bounds (testers.float_error_bound) of the float32 output. A normalised pixel x·(1/(255·std)) − mean/std
# has terms up to 1/std ≤ 4.5 and 4 roundings (two folded constants, the product, the difference); a float input is
# first resized in float (two 4-tap bicubic passes: 8 more terms, relative to 255).
PIXEL_BOUND = float_error_bound(1 / STD.min(), 4)
FLOAT_RESIZE_BOUND = float_error_bound(1 / STD.min(), 8 + 4)
# A frame's grey level read back by frame_levels (a float64 mean of pixels: at most one pixel's error), in 0-255.
LEVEL_BOUND = PIXEL_BOUND * STD.max() * 255


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------
def grey_ramp(num_frames: int, height: int = 24, width: int = 32, step: int = 8) -> np.ndarray:
    """(T, H, W, 3) uint8 video whose frame t is uniformly grey with level `step * t` (frame id readable back)."""
    levels = (np.arange(num_frames) * step).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).copy()


def write_mp4(path: Path, frames: np.ndarray, fps: int, codec: str = CODEC) -> Path:
    """Encode (T, H, W, 3) uint8 frames with PyAV (libx264 lossless if available, else mpeg4 high quality)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1], frames.shape[2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "0"} if codec == "libx264" else {"qscale": "1"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_levels(pixel_values: torch.Tensor) -> np.ndarray:
    """Grey level (0-255) of each frame of a (T, 3, H, W) normalised video (channel 0, mean over pixels)."""
    red = pixel_values[:, 0].double().mean(dim=(-2, -1)).numpy()
    return (red * STD[0] + MEAN[0]) * 255


@pytest.fixture(scope="module")
def processor() -> TrajTokVideoProcessor:
    return TrajTokVideoProcessor()


@pytest.fixture(scope="module")
def mp4_30f_10fps(tmp_path_factory) -> Path:
    """3 s clip: 30 grey frames (level 8 t) at 10 fps, 48x64."""
    return write_mp4(tmp_path_factory.mktemp("videos") / "ramp.mp4", grey_ramp(30, 48, 64), fps=10)


# ----------------------------------------------------------------------------------------------------------------------
# inputs -> (B, T, 3, 224, 224) float32
# ----------------------------------------------------------------------------------------------------------------------
def _inputs(kind: str, mp4: Path):
    video = grey_ramp(20)  # (20, 24, 32, 3)
    return {
        "numpy_thwc": (video, 1),
        "numpy_tchw": (video.transpose(0, 3, 1, 2).copy(), 1),
        "torch_tchw": (torch.from_numpy(video).permute(0, 3, 1, 2).contiguous(), 1),
        "torch_thwc": (torch.from_numpy(video), 1),
        "pil_list": ([PIL.Image.fromarray(f) for f in video], 1),
        "numpy_frame_list": (list(video), 1),
        "torch_frame_list": ([torch.from_numpy(f).permute(2, 0, 1) for f in video], 1),
        "path_str": (str(mp4), 1),
        "path_pathlike": (mp4, 1),
        "batch_5d_numpy": (np.stack([video, video]), 2),
        "batch_mixed_list": (
            [str(mp4), video, [PIL.Image.fromarray(f) for f in video[:7]], torch.zeros(3, 3, 9, 9)],
            4,
        ),
    }[kind]


@pytest.mark.parametrize(
    "kind",
    [
        "numpy_thwc",
        "numpy_tchw",
        "torch_tchw",
        "torch_thwc",
        "pil_list",
        "numpy_frame_list",
        "torch_frame_list",
        "path_str",
        "path_pathlike",
        "batch_5d_numpy",
        "batch_mixed_list",
    ],
)
def test_every_input_type_gives_b_t_3_224_224_float32(processor, mp4_30f_10fps, kind):
    videos, batch = _inputs(kind, mp4_30f_10fps)
    out = processor(videos, return_tensors="pt")
    assert list(out.keys()) == ["pixel_values_videos"]
    pixel_values = out["pixel_values_videos"]
    assert pixel_values.shape == (batch, 16, 3, 224, 224)
    assert pixel_values.dtype == torch.float32
    assert torch.isfinite(pixel_values).all()


def test_layouts_and_containers_give_identical_values(processor):
    video = np.random.default_rng(0).integers(0, 256, (6, 20, 28, 3), dtype=np.uint8)
    reference = processor(video, num_frames=3, return_tensors="pt")["pixel_values_videos"]
    for variant in (
        torch.from_numpy(video).permute(0, 3, 1, 2),
        [PIL.Image.fromarray(f) for f in video],
        list(video),
        video.astype(np.int64),
    ):
        out = processor(variant, num_frames=3, return_tensors="pt")["pixel_values_videos"]
        assert torch.equal(out, reference)  # the same uint8 frames: the same operations


def test_return_tensors_none_gives_list_of_videos(processor):
    out = processor([grey_ramp(3), grey_ramp(30)])
    assert isinstance(out["pixel_values_videos"], list)
    assert [tuple(v.shape) for v in out["pixel_values_videos"]] == [(16, 3, 224, 224)] * 2


# ----------------------------------------------------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------------------------------------------------
def test_constant_colour_normalizes_to_exact_values(processor):
    colour = np.array([10, 128, 250], dtype=np.uint8)
    video = np.broadcast_to(colour, (5, 37, 53, 3)).copy()
    pixel_values = processor(video, return_tensors="pt")["pixel_values_videos"]
    expected = torch.tensor((colour / 255.0 - MEAN) / STD, dtype=torch.float32).view(1, 1, 3, 1, 1)
    torch.testing.assert_close(pixel_values, expected.expand_as(pixel_values), rtol=0, atol=PIXEL_BOUND)


@pytest.mark.parametrize("source_hw", [(100, 120), (480, 640)])
def test_resize_matches_pil_bicubic(processor, source_hw):
    """Official eval: PIL BICUBIC on uint8. torchvision antialiased bicubic on uint8 is within 1 grey level."""
    frame = np.random.default_rng(1).integers(0, 256, (*source_hw, 3), dtype=np.uint8)
    frame[:, : source_hw[1] // 2] = 255  # a hard edge as well as noise
    ours = processor([frame], return_tensors="pt")["pixel_values_videos"][0, 0].double()
    pil = np.asarray(PIL.Image.fromarray(frame).resize((224, 224), PIL.Image.BICUBIC), dtype=np.float64)
    official = torch.from_numpy(((pil / 255.0 - MEAN) / STD).transpose(2, 0, 1))
    # 1 grey level (codec-independent resize difference: uint8 rounding), + the float32 normalisation's bound.
    assert (ours - official).abs().max().item() <= 1.0 / 255 / STD.min() + PIXEL_BOUND


def test_float_input_is_treated_as_0_255(processor):
    video = grey_ramp(4)
    as_uint8 = processor(video, return_tensors="pt")["pixel_values_videos"]
    as_float = processor(video.astype(np.float32), return_tensors="pt")["pixel_values_videos"]
    # Constant frames: the uint8 path's integer rounding changes nothing; the float path's resize rounds in float.
    torch.testing.assert_close(as_float, as_uint8, rtol=0, atol=FLOAT_RESIZE_BOUND)


# ----------------------------------------------------------------------------------------------------------------------
# frame sampling
# ----------------------------------------------------------------------------------------------------------------------
EXPECTED_40_TO_16 = [1, 3, 6, 8, 11, 13, 16, 18, 21, 23, 26, 28, 31, 33, 36, 38]


def test_uniform_sampling_40_frames_to_16_picks_segment_centres(processor):
    assert uniform_frame_indices(40, 16).tolist() == EXPECTED_40_TO_16
    out = processor(grey_ramp(40, step=5), return_tensors="pt", return_metadata=True)
    assert out["video_metadata"][0].frames_indices == EXPECTED_40_TO_16
    np.testing.assert_allclose(
        frame_levels(out["pixel_values_videos"][0]), np.array(EXPECTED_40_TO_16) * 5, rtol=0, atol=LEVEL_BOUND
    )


def test_short_video_repeats_frames_uniformly_without_zeros(processor):
    video = grey_ramp(5, step=40) + 20  # levels 20, 60, ..., 180: no frame is black
    out = processor(video, return_tensors="pt", return_metadata=True)
    pixel_values = out["pixel_values_videos"][0]
    assert pixel_values.shape[0] == 16
    indices = np.array(out["video_metadata"][0].frames_indices)
    assert indices.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    counts = np.bincount(indices, minlength=5)
    assert counts.min() >= 3 and counts.max() - counts.min() <= 1  # every frame, evenly, in temporal order
    np.testing.assert_allclose(frame_levels(pixel_values), 20 + 40 * indices, rtol=0, atol=LEVEL_BOUND)
    zero_level = torch.tensor(-MEAN / STD, dtype=torch.float32).view(3, 1, 1)
    black = torch.isclose(pixel_values, zero_level, rtol=0, atol=PIXEL_BOUND).all(dim=(1, 2, 3))
    assert not black.any()  # no black padding


def test_batch_of_different_lengths_is_sampled_to_same_t(processor):
    videos = [grey_ramp(n) for n in (1, 5, 31)] + [grey_ramp(100, step=2)]
    pixel_values = processor(videos, return_tensors="pt")["pixel_values_videos"]
    assert pixel_values.shape == (4, 16, 3, 224, 224)
    single = processor(videos[2], return_tensors="pt")["pixel_values_videos"]
    assert torch.equal(pixel_values[2:3], single)  # batching does not change a video


def test_num_frames_override_and_no_sampling(processor):
    assert processor(grey_ramp(40), num_frames=8, return_tensors="pt")["pixel_values_videos"].shape[1] == 8
    assert TrajTokVideoProcessor(num_frames=4)(grey_ramp(40), return_tensors="pt")["pixel_values_videos"].shape[1] == 4
    assert processor(grey_ramp(40), num_frames=np.int64(3), return_tensors="pt")["pixel_values_videos"].shape[1] == 3
    assert json.loads(TrajTokVideoProcessor(num_frames=np.int64(5)).to_json_string())["num_frames"] == 5
    out = processor(grey_ramp(7), do_sample_frames=False, return_tensors="pt")
    assert out["pixel_values_videos"].shape[1] == 7
    with pytest.raises(ValueError, match="different numbers of frames"):
        processor([grey_ramp(7), grey_ramp(9)], do_sample_frames=False, return_tensors="pt")


def test_fps_sampling_on_written_mp4(processor, mp4_30f_10fps):
    # 30 frames at 10 fps = 3 s; fps=2 -> 6 frames at the centres of six 0.5 s segments
    out = processor(mp4_30f_10fps, fps=2, return_tensors="pt", return_metadata=True)
    metadata = out["video_metadata"][0]
    assert (metadata.total_num_frames, metadata.fps, metadata.duration) == (30, 10.0, 3.0)
    assert metadata.frames_indices == [2, 7, 12, 17, 22, 27] == uniform_frame_indices(30, 6).tolist()
    assert out["pixel_values_videos"].shape == (1, 6, 3, 224, 224)
    # atol=3: grey levels after a lossy H.264/MPEG-4 round trip (codec error, not float order).
    np.testing.assert_allclose(
        frame_levels(out["pixel_values_videos"][0]), 8 * np.array(metadata.frames_indices), atol=3
    )
    # an fps processor round-trips and samples the same way; a call-time num_frames overrides its fps
    fps_processor = TrajTokVideoProcessor(fps=2)
    assert fps_processor.num_frames is None and fps_processor.fps == 2
    from_fps_processor = fps_processor(mp4_30f_10fps, return_tensors="pt")["pixel_values_videos"]
    assert torch.equal(from_fps_processor, out["pixel_values_videos"])  # the same frames: bit-identical
    assert fps_processor(mp4_30f_10fps, num_frames=4, return_tensors="pt")["pixel_values_videos"].shape[1] == 4


def test_fps_sampling_on_arrays_needs_metadata(processor):
    out = processor(grey_ramp(30), fps=2, video_metadata={"fps": 10}, return_tensors="pt", return_metadata=True)
    assert out["video_metadata"][0].frames_indices == [2, 7, 12, 17, 22, 27]
    with pytest.raises(ValueError, match=r"`fps`.*video_metadata"):
        processor(grey_ramp(30), fps=2, return_tensors="pt")


# ----------------------------------------------------------------------------------------------------------------------
# decoding
# ----------------------------------------------------------------------------------------------------------------------
def test_mp4_written_with_pyav_decodes(processor, tmp_path):
    path = write_mp4(tmp_path / "clip.mp4", grey_ramp(20, 40, 56), fps=25)
    video, metadata = read_video_pyav(path)  # transformers' layout: (T, H, W, 3) uint8
    assert video.shape == (20, 40, 56, 3) and video.dtype == np.uint8
    assert (metadata.total_num_frames, metadata.fps, metadata.height, metadata.width) == (20, 25.0, 40, 56)
    # atol=3 (here and below): grey levels after a lossy codec round trip (codec error, not float order).
    np.testing.assert_allclose(video[..., 0].mean(axis=(1, 2)), 8 * np.arange(20), atol=3)
    out = processor(str(path), return_tensors="pt", return_metadata=True)
    indices = out["video_metadata"][0].frames_indices
    assert indices == uniform_frame_indices(20, 16).tolist()
    np.testing.assert_allclose(frame_levels(out["pixel_values_videos"][0]), 8 * np.array(indices), atol=3)
    # a short file (fewer frames than num_frames) repeats frames too
    short = write_mp4(tmp_path / "short.mp4", grey_ramp(3, 16, 16, step=60) + 30, fps=5)
    out = processor(short, return_tensors="pt")["pixel_values_videos"]
    assert out.shape == (1, 16, 3, 224, 224)
    assert frame_levels(out[0]).min() > 20


def test_container_without_frame_count_is_counted_by_decoding(processor, tmp_path):
    path = write_mp4(tmp_path / "clip.mkv", grey_ramp(12, 16, 16, step=10), fps=10, codec="mpeg4")
    with av.open(str(path)) as container:
        assert container.streams.video[0].frames == 0  # Matroska stores no frame count
    out = processor(path, num_frames=4, return_tensors="pt", return_metadata=True)
    metadata = out["video_metadata"][0]
    assert (metadata.total_num_frames, metadata.frames_indices) == (12, [1, 4, 7, 10])
    np.testing.assert_allclose(frame_levels(out["pixel_values_videos"][0]), [10, 40, 70, 100], atol=3)  # codec error


# ----------------------------------------------------------------------------------------------------------------------
# options
# ----------------------------------------------------------------------------------------------------------------------
def test_center_crop_option_keeps_aspect():
    video = np.zeros((2, 100, 200, 3), np.uint8)
    video[:, :, :40] = 255  # white left fifth: cut away by a centre crop, squeezed but kept by the default
    crop = TrajTokVideoProcessor(size={"shortest_edge": 224}, do_center_crop=True)
    cropped = crop(video, return_tensors="pt")["pixel_values_videos"]
    squeezed = TrajTokVideoProcessor()(video, return_tensors="pt")["pixel_values_videos"]
    assert cropped.shape == squeezed.shape == (1, 16, 3, 224, 224)
    assert frame_levels(cropped[0]).max() <= LEVEL_BOUND  # all black
    assert abs(frame_levels(squeezed[0]).mean() - 255 / 5) < 2  # a fifth white (± bicubic ringing at the edge)
    # its geometry: 224 x 448 after the resize, 112 columns cropped away on the left
    (geometry,) = crop(video, return_tensors="pt", return_geometry=True)["video_geometry"]
    assert geometry == VideoGeometry((100, 200), (224, 448), (0, -112), (224, 224))
    (ids,) = crop.post_process_trajectory_ids(torch.zeros(1, 16, 56, 56, dtype=torch.long), [geometry])
    assert (ids[0] == -1).all(dim=0).sum() == 100  # the outer quarters of the frame are not seen


# ----------------------------------------------------------------------------------------------------------------------
# save / load / Auto
# ----------------------------------------------------------------------------------------------------------------------
def test_save_pretrained_from_pretrained_round_trip(tmp_path):
    settings = dict(
        num_frames=8,
        size={"height": 112, "width": 160},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.25, 0.25, 0.25],
        do_center_crop=True,
        crop_size={"height": 96, "width": 96},
    )
    original = TrajTokVideoProcessor(**settings)
    original.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "video_preprocessor_config.json").read_text())
    assert saved["video_processor_type"] == "TrajTokVideoProcessor" and saved["num_frames"] == 8
    loaded = TrajTokVideoProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == original.to_dict()
    video = grey_ramp(30)
    assert torch.equal(  # the same settings: the same operations
        loaded(video, return_tensors="pt")["pixel_values_videos"],
        original(video, return_tensors="pt")["pixel_values_videos"],
    )
    assert loaded(video, return_tensors="pt")["pixel_values_videos"].shape == (1, 8, 3, 96, 96)


def _trajtok_config_class() -> type:
    """The real TrajTokConfig when it imports; otherwise a stand-in config with model_type "trajtok"."""
    try:
        from trajtok_hf.models.configuration_trajtok import TrajTokConfig

        return TrajTokConfig
    except Exception:  # not written yet (or mid-edit): the registration under test does not depend on its fields

        class StandInTrajTokConfig(PretrainedConfig):
            model_type = "trajtok"

        return StandInTrajTokConfig


def test_auto_video_processor_round_trip(tmp_path):
    AutoVideoProcessor.register(_trajtok_config_class(), TrajTokVideoProcessor, exist_ok=True)
    TrajTokVideoProcessor(num_frames=12).save_pretrained(tmp_path)
    loaded = AutoVideoProcessor.from_pretrained(str(tmp_path))
    assert type(loaded) is TrajTokVideoProcessor and loaded.num_frames == 12


# ----------------------------------------------------------------------------------------------------------------------
# bad inputs: every error names the argument
# ----------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "videos, error, match",
    [
        (np.zeros((24, 32), np.uint8), ValueError, r"`videos`.*2-D"),
        (np.zeros((24, 32, 3), np.uint8), ValueError, r"`videos`.*3-D.*single frame"),
        (np.zeros((1, 1, 2, 24, 32, 3), np.uint8), ValueError, r"`videos`.*6-D"),
        ([np.zeros((4, 8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)], ValueError, r"`videos\[1\]`.*2-D"),
        (np.zeros((4, 24, 32, 1), np.uint8), ValueError, r"`videos`.*3 colour channels"),
        (np.zeros((4, 24, 32, 4), np.uint8), ValueError, r"`videos`.*3 colour channels"),
        (torch.zeros(4, 1, 24, 32, dtype=torch.uint8), ValueError, r"`videos`.*3 colour channels"),
        (torch.zeros(4, 4, 24, 32, dtype=torch.uint8), ValueError, r"`videos`.*3 colour channels"),
        ([np.zeros((24, 32, 4), np.uint8)] * 2, ValueError, r"`videos`.*3 colour channels"),
        (np.zeros((0, 24, 32, 3), np.uint8), ValueError, r"`videos`.*empty video"),
        (torch.zeros(0, 3, 24, 32), ValueError, r"`videos`.*empty video"),
        ([], ValueError, r"`videos` is empty"),
        ([grey_ramp(3), []], ValueError, r"`videos\[1\]`.*empty video"),
        (np.zeros((0, 4, 8, 8, 3), np.uint8), ValueError, r"`videos`.*empty batch"),
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)], ValueError, r"`videos`.*same shape"),
        (np.full((2, 8, 8, 3), 300, np.int64), ValueError, r"`videos`.*\[0, 255\]"),
        (np.zeros((2, 8, 8, 3), bool), TypeError, r"`videos`.*uint8"),
        (np.full((2, 8, 8, 3), np.inf, np.float32), ValueError, r"`videos`.*finite"),
        (np.full((2, 8, 8, 3), -np.inf, np.float64), ValueError, r"`videos`.*finite"),
        ([grey_ramp(2), np.full((2, 8, 8, 3), np.nan, np.float32)], ValueError, r"`videos\[1\]`.*finite"),
        (torch.full((2, 3, 8, 8), 1e30), ValueError, r"`videos`.*up to 1e\+30"),
        (42, TypeError, r"`videos`.*unsupported input type int"),
        (None, TypeError, r"`videos`.*unsupported input type NoneType"),
        ({"video": 1}, TypeError, r"`videos`.*unsupported input type dict"),
        ([1, 2], TypeError, r"`videos\[0\]`.*unsupported video type int"),
        ([grey_ramp(2), [np.zeros((8, 8, 3), np.uint8), "x"]], TypeError, r"`videos\[1\]\[1\]`.*expected a frame"),
    ],
    ids=lambda value: None,
)
def test_bad_videos_raise_naming_the_argument(processor, videos, error, match):
    with pytest.raises(error, match=match):
        processor(videos, return_tensors="pt")


def test_bad_video_files_raise_naming_the_path(processor, tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(ValueError, match=r"`videos`.*missing\.mp4.*does not exist"):
        processor(str(missing))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(2048))
    with pytest.raises(ValueError, match=r"`videos`.*garbage\.mp4"):
        processor(garbage)
    with pytest.raises(ValueError, match=r"`videos\[1\]`.*missing\.mp4"):
        processor([grey_ramp(3), missing])
    no_stream = tmp_path / "no_video_stream.mp4"  # a container whose header has no (decodable) video stream
    with av.open(str(no_stream), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        container.start_encoding()
    with pytest.raises(ValueError, match=r"`videos`.*no_video_stream\.mp4.*(no video stream|empty)"):
        processor(no_stream)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_frames": 0}, ValueError, r"`num_frames` must be a positive int"),
        ({"num_frames": -3}, ValueError, r"`num_frames` must be a positive int"),
        ({"num_frames": 2.5}, TypeError, r"`num_frames` must be a positive int"),
        ({"num_frames": 8, "fps": 2}, ValueError, r"`num_frames` and `fps` are mutually exclusive"),
        ({"fps": 0}, ValueError, r"`fps` must be a positive"),
        ({"fps": "2"}, TypeError, r"`fps` must be a positive number"),
        ({"num_frame": 8}, TypeError, r"'num_frame' \(did you mean 'num_frames'\?\)"),
        ({"do_sample_frames": "yes"}, TypeError, r"`do_sample_frames` must be a bool"),
        ({"size": {"side": 224}}, ValueError, r"invalid `size`"),
    ],
    ids=lambda value: None,
)
def test_bad_arguments_raise_naming_the_argument(processor, kwargs, error, match):
    with pytest.raises(error, match=match):
        processor(grey_ramp(4), return_tensors="pt", **kwargs)
    if "do_sample_frames" not in kwargs:  # the constructor checks the same arguments
        with pytest.raises(error, match=match):
            TrajTokVideoProcessor(**kwargs)


def test_video_metadata_must_match_the_batch(processor):
    with pytest.raises(ValueError, match=r"`video_metadata`.*2 videos, got 3"):
        processor([grey_ramp(3), grey_ramp(4)], video_metadata=[{"fps": 1}] * 3)


def test_channels_first_numpy_frame_list_and_input_data_format(processor):
    video = grey_ramp(5)
    reference = processor(video, num_frames=2, return_tensors="pt")["pixel_values_videos"]
    frames_chw = [f.transpose(2, 0, 1) for f in video]
    # The same uint8 frames in another layout: the same operations, bit-identical values.
    assert torch.equal(processor(frames_chw, num_frames=2, return_tensors="pt")["pixel_values_videos"], reference)
    explicit = processor(video, num_frames=2, input_data_format="channels_last", return_tensors="pt")
    assert torch.equal(explicit["pixel_values_videos"], reference)
    with pytest.raises(ValueError, match=r"`videos`.*3 colour channels \(RGB\) on the channels_first axis"):
        processor(video, input_data_format="channels_first", return_tensors="pt")


@pytest.mark.parametrize(
    "videos, kwargs, warns",
    [
        (np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32), {}, True),  # [0, 1] floats, rescaled again
        (torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), {}, True),
        (np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32), {"do_rescale": False}, False),
        (np.full((2, 8, 8, 3), 200.0, np.float32), {}, False),  # 0-255 floats: what do_rescale expects
        (np.ones((2, 8, 8, 3), np.uint8), {}, False),  # uint8 is never "already rescaled"
    ],
)
def test_already_rescaled_floats_warn(processor, videos, kwargs, warns, monkeypatch):
    """transformers' image processors warn when do_rescale meets pixel values already in [0, 1] (the normalised
    mean would otherwise end near −2 without a word)."""
    from trajtok_hf.models import video_processing_trajtok

    messages = []  # warning_once prints a message once per process: record the calls instead
    monkeypatch.setattr(
        video_processing_trajtok.logger, "warning_once", lambda message, *a, **k: messages.append(message)
    )
    processor(videos, return_tensors="pt", **kwargs)
    assert any("already rescaled" in m for m in messages) == warns


# ------------------------------------------------------------------------------------ frames given as image files
def _frame_files(folder: Path, count: int = 3) -> list[str]:
    rng = np.random.default_rng(4)
    paths = []
    for i in range(count):
        path = folder / f"frame_{i}.png"
        PIL.Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("nesting", ["one video", "batch", "per conversation"])
def test_frames_as_image_files_equal_the_same_frames_as_pil(tmp_path, nesting):
    files = _frame_files(tmp_path)
    videos = {"one video": files, "batch": [files], "per conversation": [[files]]}[nesting]
    processor = TrajTokVideoProcessor(num_frames=3, size={"height": 16, "width": 16})
    got = processor(videos, do_sample_frames=False, return_tensors="pt")["pixel_values_videos"]
    frames = [PIL.Image.open(path).convert("RGB") for path in files]
    expected = processor(frames, do_sample_frames=False, return_tensors="pt")["pixel_values_videos"]
    assert got.shape == (1, 3, 3, 16, 16) and torch.equal(got, expected)  # the same decoded frames, same arithmetic


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda files: files, "Sampling frames from a list of images is not supported"),  # sampling asked (default)
        (lambda files: [files[0], files[1] + ".missing.png"], "could not read the image file"),
    ],
    ids=["sampling asked", "unreadable file"],
)
def test_frames_as_image_files_bad_use_is_named(tmp_path, change, match):
    files = change(_frame_files(tmp_path, 2))
    processor = TrajTokVideoProcessor(num_frames=2, size={"height": 16, "width": 16})
    do_sample = match.startswith("Sampling")
    with pytest.raises(ValueError, match=match):
        processor(files, do_sample_frames=do_sample, return_tensors="pt")


# ----------------------------------------------------------------------------------------------------------------------
# aspect ratio: resize_mode, video_geometry, trajectory ids back at the original size
# ----------------------------------------------------------------------------------------------------------------------
FULL = (0, 0, 224, 224)
# (original (H, W), resize_mode, resized (h, w), offset (top, left), content box (top, left, bottom, right)):
# "pad" fits the longest edge (224) and centres the rest, "crop" fits the shortest edge and crops the centre.
ASPECT_CASES = [
    ((240, 320), "squash", (224, 224), (0, 0), FULL),
    ((240, 320), "pad", (168, 224), (28, 0), (28, 0, 196, 224)),  # 240·224/320 = 168
    ((240, 320), "crop", (224, 299), (0, -37), FULL),  # 320·224/240 = 298.7
    ((270, 480), "squash", (224, 224), (0, 0), FULL),
    ((270, 480), "pad", (126, 224), (49, 0), (49, 0, 175, 224)),  # 270·224/480 = 126
    ((270, 480), "crop", (224, 398), (0, -87), FULL),  # 480·224/270 = 398.2
    ((180, 180), "squash", (224, 224), (0, 0), FULL),
    ((180, 180), "pad", (224, 224), (0, 0), FULL),
    ((180, 180), "crop", (224, 224), (0, 0), FULL),
    ((272, 640), "squash", (224, 224), (0, 0), FULL),
    ((272, 640), "pad", (95, 224), (64, 0), (64, 0, 159, 224)),  # 272·224/640 = 95.2
    ((272, 640), "crop", (224, 527), (0, -151), FULL),  # 640·224/272 = 527.1
]
ASPECT_IDS = [f"{w}x{h}-{mode}" for (h, w), mode, *_ in ASPECT_CASES]
WHITE = torch.tensor((1 - MEAN) / STD, dtype=torch.float32).view(3, 1, 1)
BLACK = torch.tensor(-MEAN / STD, dtype=torch.float32).view(3, 1, 1)


@pytest.mark.parametrize("original, mode, resized, offset, box", ASPECT_CASES, ids=ASPECT_IDS)
def test_resize_modes_shapes_geometry_and_margins(original, mode, resized, offset, box):
    """A white clip: the content box is white, the padded margins black (grey level 0), and the geometry says so."""
    processor = TrajTokVideoProcessor(resize_mode=mode, num_frames=2)
    out = processor(np.full((3, *original, 3), 255, np.uint8), return_tensors="pt", return_geometry=True)
    pixel_values, (geometry,) = out["pixel_values_videos"], out["video_geometry"]
    assert pixel_values.shape == (1, 2, 3, 224, 224)
    assert (geometry.original_size, geometry.resized_size, geometry.offset) == (original, resized, offset)
    assert geometry.output_size == (224, 224) and geometry.content_box == box
    top, left, bottom, right = box
    content = torch.zeros(224, 224, dtype=torch.bool)
    content[top:bottom, left:right] = True
    frames = pixel_values[0]
    expected = torch.where(content, WHITE, BLACK).expand_as(frames)
    torch.testing.assert_close(frames, expected, rtol=0, atol=PIXEL_BOUND)


def _block_labels(height: int, width: int) -> np.ndarray:
    """(H, W) labels 0..15: a 4 x 4 grid of blocks over the original frame."""
    rows = np.arange(height)[:, None] * 4 // height
    cols = np.arange(width)[None, :] * 4 // width
    return rows * 4 + cols


def _labels_on_mask_grid(labels: np.ndarray, geometry, grid: int = 56, margin_id: int = 99) -> np.ndarray:
    """What a perfect segmenter answers on the (grid, grid) mask grid: each cell takes the label of the original
    pixel under its centre (float arithmetic, independent of the processor), `margin_id` in padded margins."""
    out_h, out_w = geometry.output_size
    axes = []
    for cells, out, off, res, orig in zip(
        (grid, grid), (out_h, out_w), geometry.offset, geometry.resized_size, labels.shape, strict=True
    ):
        position = (np.arange(cells) + 0.5) * out / cells - off  # in the resized frame
        axes.append(np.floor(position * orig / res).astype(np.int64))
    rows, cols = axes
    inside = ((rows >= 0) & (rows < labels.shape[0]))[:, None] & ((cols >= 0) & (cols < labels.shape[1]))[None, :]
    picked = labels[rows.clip(0, labels.shape[0] - 1)][:, cols.clip(0, labels.shape[1] - 1)]
    return np.where(inside, picked, margin_id)


@pytest.mark.parametrize("original, mode, resized, offset, box", ASPECT_CASES, ids=ASPECT_IDS)
def test_trajectory_ids_map_back_to_the_original_frame(original, mode, resized, offset, box):
    processor = TrajTokVideoProcessor(resize_mode=mode, num_frames=2)
    out = processor(np.zeros((2, *original, 3), np.uint8), return_tensors="pt", return_geometry=True)
    geometry = out["video_geometry"][0]
    labels = _block_labels(*original)
    grid_ids = torch.from_numpy(_labels_on_mask_grid(labels, geometry)).expand(1, 2, 56, 56)
    (back,) = processor.post_process_trajectory_ids(grid_ids, out["video_geometry"])
    assert back.shape == (2, *original) and back.dtype == torch.int64
    assert not (back == 99).any()  # padded margins are dropped: nothing outside the original frame comes back
    seen = back[0] != -1
    # -1 exactly on whole columns, those "crop" cut away: as many on each side (up to one resized pixel), ~W·224/w seen
    cut = (~seen).all(dim=0)
    assert torch.equal(seen, ~cut.expand_as(seen))
    assert abs(int(cut.sum()) - (original[1] - 224 * original[1] / resized[1])) <= 1
    left, right = int(cut[: original[1] // 2].sum()), int(cut[original[1] // 2 :].sum())
    assert abs(left - right) <= original[1] / resized[1] + 1
    # where seen, the labels come back: only pixels within one mask cell of a block border can differ
    agree = (back[0].numpy() == labels)[seen.numpy()]
    assert agree.mean() >= 0.95
    assert torch.equal(back[0], back[1])


@pytest.mark.parametrize("original", [(240, 320), (270, 480), (180, 180), (272, 640)], ids=lambda s: f"{s[1]}x{s[0]}")
def test_squash_is_transformers_resize_and_normalize_bit_for_bit(original):
    """The default (the release's preprocessing) is transformers' batched resize + rescale + normalize, unchanged."""
    from transformers.image_utils import PILImageResampling, SizeDict
    from transformers.video_processing_utils import BaseVideoProcessor

    video = np.random.default_rng(3).integers(0, 256, (4, *original, 3), dtype=np.uint8)
    default = TrajTokVideoProcessor(num_frames=4)
    reference = BaseVideoProcessor._preprocess(
        default,
        [torch.from_numpy(video).permute(0, 3, 1, 2).contiguous()],
        do_resize=True,
        size=SizeDict(height=224, width=224),
        resample=PILImageResampling.BICUBIC,
        do_center_crop=False,
        crop_size=None,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=default.image_mean,
        image_std=default.image_std,
        return_tensors="pt",
    )["pixel_values_videos"]
    assert default.resize_mode == "squash"
    for processor in (default, TrajTokVideoProcessor(num_frames=4, resize_mode="squash")):
        assert torch.equal(processor(video, return_tensors="pt")["pixel_values_videos"], reference)


def test_resize_mode_is_saved_and_loaded(tmp_path):
    TrajTokVideoProcessor(resize_mode="pad").save_pretrained(tmp_path)
    assert json.loads((tmp_path / "video_preprocessor_config.json").read_text())["resize_mode"] == "pad"
    loaded = TrajTokVideoProcessor.from_pretrained(tmp_path)
    assert loaded.resize_mode == "pad"
    video = np.zeros((2, 30, 60, 3), np.uint8)
    (geometry,) = loaded(video, return_tensors="pt", return_geometry=True)["video_geometry"]
    assert geometry.content_box == (56, 0, 168, 224)  # 30·224/60 = 112 rows, centred
    # a call-time mode overrides the saved one; without return_geometry the outputs are the model inputs only
    assert list(loaded(video, resize_mode="crop", return_tensors="pt").keys()) == ["pixel_values_videos"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"resize_mode": "stretch"}, r"`resize_mode` must be one of \('squash', 'pad', 'crop'\)"),
        ({"resize_mode": "pad", "size": {"shortest_edge": 224}}, r"`resize_mode`='pad' needs `size` with 'height'"),
        ({"resize_mode": "crop", "do_center_crop": True}, r"`resize_mode`='crop' already fits.*do_center_crop=False"),
    ],
    ids=["unknown mode", "pad without height and width", "crop and center crop"],
)
def test_bad_resize_settings_raise_naming_the_argument(processor, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrajTokVideoProcessor(**kwargs)
    with pytest.raises(ValueError, match=match):
        processor(grey_ramp(2), return_tensors="pt", **kwargs)


def test_post_process_trajectory_ids_checks_its_inputs(processor):
    geometry = processor(grey_ramp(2), return_tensors="pt", return_geometry=True)["video_geometry"]
    with pytest.raises(ValueError, match=r"2 videos but `video_geometry` has 1"):
        processor.post_process_trajectory_ids(torch.zeros(2, 16, 56, 56, dtype=torch.long), geometry)
    with pytest.raises(ValueError, match=r"\(T, h, w\) integer tensor"):
        processor.post_process_trajectory_ids(torch.zeros(1, 16, 56, 56), geometry)
    # squash: every original pixel is seen; the grid is read at the pixel centres
    (back,) = processor.post_process_trajectory_ids(torch.arange(56).expand(1, 16, 56, 56), geometry)
    assert (
        back.shape == (16, 24, 32)
        and back.min() >= 0
        and back[0, 0].tolist() == [(2 * c + 1) * 56 // 64 for c in range(32)]
    )
