"""Loading helpers shared by the trajtok_hf models: a weight file that cannot be read is named in the error.

transformers' ``from_pretrained`` hands the weight files to ``safetensors.safe_open``; a truncated or corrupt file
(an interrupted save or download) then fails with safetensors' bare ``SafetensorError`` ("Error while deserializing
header: incomplete metadata, file not fully covered"), and a corrupt ``model.safetensors.index.json`` with a bare
``JSONDecodeError``: neither says which file. :class:`SafetensorsFileCheckMixin` catches those two errors and
re-raises an ``OSError`` (what transformers raises for unreadable files) naming the file. The files are only examined
after such a failure, so a good folder loads exactly as before, at the same cost.

A safetensors file starts with an 8-byte header length and a JSON header whose data offsets must cover the rest of
the file exactly; :func:`check_safetensors_file` opens that header (``safe_open``, which checks both), so any
truncation is caught. Bytes changed inside the tensor data (same length) cannot be detected: the format has no
checksum.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

__all__ = [
    "MAX_ABS_PIXEL_VALUE",
    "SafetensorsFileCheckMixin",
    "check_safetensors_file",
    "check_video_pixels",
    "check_weight_files",
    "from_sub_config",
    "safetensors_weight_files",
]

# Normalised pixels lie within about ±10 (rescaled to [0, 1], then (x - mean) / std with std ≥ 0.1); even raw 0–255
# frames normalised without rescaling stay below ±1200. Far larger values come from no video processor and overflow
# the models: 1e30 squared in a LayerNorm is inf in float32/bfloat16, which gives NaN tokens. 1e4 still fits float16.
MAX_ABS_PIXEL_VALUE = 1e4

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"


def _add_variant(name: str, variant: str | None) -> str:
    # transformers' naming: model.safetensors -> model.<variant>.safetensors (the index likewise before ".json").
    if not variant:
        return name
    stem, extension = name.rsplit(".", 1)
    return f"{stem}.{variant}.{extension}"


def check_safetensors_file(path: str | os.PathLike) -> None:
    """Raise an ``OSError`` naming ``path`` when its safetensors header cannot be read (truncated, not safetensors)."""
    try:
        with safe_open(os.fspath(path), framework="pt") as handle:
            handle.keys()
    except SafetensorError as error:
        raise OSError(
            f"{path} is not a readable safetensors file ({error}): it is truncated or corrupt (an interrupted save "
            "or download?); save the model again, or download it again with force_download=True"
        ) from error


def safetensors_weight_files(folder: str | os.PathLike, variant: str | None = None) -> list[Path]:
    """The safetensors files ``from_pretrained`` reads from a local folder: ``model.safetensors``, or else the shards
    that ``model.safetensors.index.json`` names (as transformers picks them; ``variant`` as its ``variant``).

    Raises an ``OSError`` naming the index when it is not a JSON object with a ``weight_map``."""
    folder = Path(folder)
    single = folder / _add_variant(SAFE_WEIGHTS_NAME, variant)
    if single.is_file():
        return [single]
    index = folder / _add_variant(SAFE_WEIGHTS_INDEX_NAME, variant)
    if not index.is_file():
        return []
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise OSError(
            f"{index} is not a valid safetensors weight index (a JSON object with a 'weight_map' of tensor name → "
            f"shard file): {type(error).__name__}: {error}"
        ) from error
    return [folder / shard for shard in shards]


def check_weight_files(folder: str | os.PathLike, variant: str | None = None) -> None:
    """:func:`check_safetensors_file` on every file of :func:`safetensors_weight_files` (missing shards are left to
    transformers, whose error names them)."""
    for path in safetensors_weight_files(folder, variant):
        if path.is_file():
            check_safetensors_file(path)


class SafetensorsFileCheckMixin:
    """Put before ``PreTrainedModel`` in a model's bases: ``from_pretrained`` errors from an unreadable weight file
    (``SafetensorError``, a corrupt weight index) become an ``OSError`` that names the file."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except (SafetensorError, json.JSONDecodeError) as error:
            if pretrained_model_name_or_path is not None:
                folder = Path(os.fspath(pretrained_model_name_or_path)) / (kwargs.get("subfolder") or "")
                if folder.is_dir():
                    check_weight_files(folder, kwargs.get("variant"))  # raises, naming the file, if one is bad
            if isinstance(error, SafetensorError):
                raise OSError(
                    f"the safetensors weights of {pretrained_model_name_or_path!r} cannot be read ({error}): a "
                    "truncated or corrupt file (an interrupted save or download?); save the model again, or "
                    "download it again with force_download=True"
                ) from error
            raise


def check_video_pixels(value, name: str = "pixel_values_videos", channels: int = 3) -> None:
    """The public-boundary check of a batch of processed videos, shared by every model.

    ``value`` must be a float ``torch.Tensor`` of shape ``(batch, frames, channels, height, width)`` with at least one
    video and one frame, holding finite values within ``±MAX_ABS_PIXEL_VALUE``. Raises a ``TypeError`` or
    ``ValueError`` naming ``name`` and what was expected. The range check is one ``aminmax`` pass (min/max propagate
    NaN and expose ±inf); it runs before any cast to half precision, where 1e30 would already be inf (float16) or
    pass for finite (bfloat16)."""
    shape = f"(batch, frames, {channels}, height, width)"
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(value).__name__}")
    if value.ndim != 5:
        hint = " (an image is a 1-frame video: use pixel_values.unsqueeze(1))" if value.ndim == 4 else ""
        raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}{hint}")
    if not value.is_floating_point():
        raise ValueError(
            f"{name} must be a float tensor normalised by the video processor, got dtype {value.dtype} (raw uint8 "
            "frames go through the processor first)"
        )
    if value.shape[0] == 0 or value.shape[1] == 0:
        raise ValueError(f"{name} needs at least one video and one frame, got shape {tuple(value.shape)}")
    if value.shape[2] != channels:
        raise ValueError(f"{name} must have {channels} (RGB) channels in dim 2, got shape {tuple(value.shape)}")
    if value.shape[3] == 0 or value.shape[4] == 0:
        raise ValueError(f"{name} frames must have a positive height and width, got shape {tuple(value.shape)}")
    low, high = (float(v) for v in torch.aminmax(value.detach()))
    if not (-MAX_ABS_PIXEL_VALUE <= low and high <= MAX_ABS_PIXEL_VALUE):
        raise ValueError(
            f"{name} must hold finite frames normalised by the video processor (|value| <= "
            f"{MAX_ABS_PIXEL_VALUE:g}), got values in [{low:g}, {high:g}] (NaN or inf values, or frames that did "
            "not go through the processor)"
        )


def from_sub_config(auto_class, config, **kwargs):
    """``auto_class.from_config(config)`` for a model nested in one of ours, built in the dtype that the enclosing
    model is being built in (``torch.get_default_dtype()``, which ``from_pretrained(..., dtype=...)`` sets while it
    builds).

    transformers gives ``from_pretrained``'s ``dtype`` to the top config's direct sub-configs only, and
    ``from_config`` builds in the sub-config's own saved ``dtype``: a backbone nested two levels down (TrajViT2 →
    vision config → TrajTok config → ConvNeXt config) would otherwise stay float32 in a bfloat16 model."""
    return auto_class.from_config(config, dtype=torch.get_default_dtype(), **kwargs)
