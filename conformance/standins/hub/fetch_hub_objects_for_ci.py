"""Stand-in for transformers' ``utils/fetch_hub_objects_for_ci.py`` (a repository script, not in the sdist).

``test_processing_common`` (at import) and a few processor tests call ``url_to_local_path(url)`` on Hub URLs of test
media. The upstream function returns the name of a file that CI downloaded beforehand, else the URL. This harness
cannot reach the Hub, so it writes small local media instead, deterministically, into ``CONFORMANCE_MEDIA_DIR``:

- images (``.png``, ``.jpg``): a 320×240 RGB gradient (PIL);
- videos (``.mp4``): a 320×240 moving gradient (PyAV, mpeg4) of 16 frames at 8 fps, except where a test's
  expectations depend on the upstream file: ``tiny_video_320x240.mp4`` has 11 frames at 30 fps as upstream's;
- anything else (audio): the URL unchanged, as upstream does for a file it did not fetch; no processor here takes
  audio, and the processor tests skip audio when the processor has no audio component.
"""

import os
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 320, 240
# (frames, fps) of the upstream videos whose frame counts tests assert; others get DEFAULT_VIDEO.
VIDEO_SPECS = {"tiny_video_320x240.mp4": (11, 30)}
DEFAULT_VIDEO = (16, 8)
DEFAULT_MEDIA_DIR = Path(__file__).resolve().parents[3] / ".cache" / "conformance" / "media"


def _gradient(shift: int = 0) -> np.ndarray:
    """(HEIGHT, WIDTH, 3) uint8: red ramps along x, green along y, blue with `shift` (the frame index)."""
    x = np.linspace(0, 255, WIDTH, dtype=np.float32)[None, :].repeat(HEIGHT, 0)
    y = np.linspace(0, 255, HEIGHT, dtype=np.float32)[:, None].repeat(WIDTH, 1)
    blue = np.full_like(x, (16 * shift) % 256)
    return np.stack([np.roll(x, 8 * shift, axis=1), y, blue], axis=-1).astype(np.uint8)


def _write_image(path: Path, name: str) -> None:
    from PIL import Image

    Image.fromarray(_gradient()).save(path)


def _write_video(path: Path, name: str) -> None:
    import av

    num_frames, fps = VIDEO_SPECS.get(name, DEFAULT_VIDEO)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index in range(num_frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_gradient(index), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


_WRITERS = {".png": _write_image, ".jpg": _write_image, ".jpeg": _write_image, ".mp4": _write_video}


def url_to_local_path(url, return_url_if_not_found=True):
    """A local file standing in for the media at `url` (written on first use), or `url` for other media."""
    filename = url.split("/")[-1]
    writer = _WRITERS.get(os.path.splitext(filename)[1].lower())
    if writer is None:
        return url if return_url_if_not_found else filename
    media_dir = Path(os.environ.get("CONFORMANCE_MEDIA_DIR", DEFAULT_MEDIA_DIR))
    media_dir.mkdir(parents=True, exist_ok=True)
    path = media_dir / filename
    if not path.exists():
        partial = path.with_name(f".{filename}.partial{path.suffix}")
        writer(partial, filename)
        os.replace(partial, path)
    return str(path)
