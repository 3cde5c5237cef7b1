"""Shared helpers of the converters from the official TrajTok release (hellomuffin/trajtok @658a6ed).

- :func:`load_official_state_dict`: an official ``model.pth`` (pickle ``{"model": state_dict, "meta": {...}}`` or a bare
  state dict), read with ``torch.load(..., weights_only=True)``, or a ``.safetensors`` file (e.g. a small
  official-format parity checkpoint).
- :func:`rename_official_keys`: the regex key-mapping table machinery, in the style of transformers'
  ``convert_dinov3_convnext_to_hf.py`` (``ORIGINAL_TO_CONVERTED_KEY_MAPPING``): every official key must either match
  one rename rule or one *documented* drop pattern; anything else is reported, never silently ignored.
- :func:`check_converted_state_dict`: compares the renamed tensors with the target model's state dict and fails
  loudly (``ValueError`` with the full key lists) on missing keys, unexpected keys and shape mismatches.
- :func:`compare_outputs`: the parity check of converted outputs against official reference outputs.
- :func:`save_video_processor`: writes the preprocessing of the release (224×224 bicubic, no crop, ImageNet mean/std,
  as in the release's ``scripts/eval_*.py``) next to the converted weights, when ``TrajTokVideoProcessor`` is
  available.

Key layout and forward of the release: the official classes ``SegmentWrapper`` / ``SimpleSegmenter`` (segmenter) and
``SegmentCLIP`` / ``SegmentViT`` / ``SegmentTokenizer`` (TrajViT2) of hellomuffin/trajtok @658a6ed; the converters'
module docstrings list the key maps.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..file_utils import atomic_folder

__all__ = [
    "RELEASE_CLIP_FRAMES",
    "OfficialCheckpointError",
    "check_converted_state_dict",
    "compare_outputs",
    "converted_model_folder",
    "format_key_list",
    "invert_rename_rules",
    "load_official_state_dict",
    "load_reference",
    "official_name",
    "rename_official_keys",
    "save_video_processor",
]


class OfficialCheckpointError(ValueError):
    """A checkpoint that does not have the layout the converter expects (unused / missing keys, wrong shapes, a
    pickle that cannot be read safely, reference outputs that do not match)."""


def format_key_list(keys, limit: int = 200) -> str:
    keys = sorted(keys)
    shown = "\n  ".join(keys[:limit])
    more = f"\n  ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"\n  {shown}{more}"


# --------------------------------------------------------------------------------------------------------- loading
_RESAVE_HINT = (
    "Re-save it in a trusted environment, and only if you trust the file (unpickling can run arbitrary code): "
    "load it with torch.load with its safety check off (weights_only set to False) into `ckpt`, then keep only the "
    "tensors:\n"
    "    state_dict = ckpt['model'] if 'model' in ckpt else ckpt\n"
    "    torch.save({'model': state_dict}, 'model_tensors_only.pth')\n"
    "    # or: safetensors.torch.save_file({k: v.contiguous() for k, v in state_dict.items()}, 'model.safetensors')\n"
    "and convert that file."
)


def load_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official checkpoint into a flat ``{key: tensor}`` dict (float tensors as stored, fp32 in the release).

    Accepted: a ``.safetensors`` file, or a torch pickle (``model.pth``) holding ``{"model": state_dict, ...}`` (the
    release's ``release/prep_ckpt.py`` layout, other top-level entries such as ``"meta"`` are ignored) or a bare state
    dict. Pickles are read with ``weights_only=True``; one that holds more than tensors and plain containers raises an
    :class:`OfficialCheckpointError` that says how to re-save it. Any other file (text, empty, truncated, a folder)
    raises an :class:`OfficialCheckpointError` (a ``ValueError``) naming the file and the formats expected.
    """
    return unwrap_state_dict(_read_tensor_file(path, "an official checkpoint"), str(path))


def _read_tensor_file(path: str | Path, what: str):
    """The object stored in ``path``, a safetensors file or a torch checkpoint read with ``weights_only=True``; the
    format is told by the file's first bytes, not its name."""
    path = Path(path)
    if path.is_dir():
        raise OfficialCheckpointError(f"{path}: is a folder, not {what}; expected {_FORMATS}")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path} (expected {what})")
    with open(path, "rb") as handle:
        head = handle.read(16)
    kind = _sniff(head, path.stat().st_size)
    if kind is None:
        shown = f"its first bytes are {head!r}" if head else "it is empty"
        raise OfficialCheckpointError(f"{path}: not {what} ({shown}); expected {_FORMATS}")
    try:
        if kind == "safetensors":
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" not in str(err).lower():
            raise OfficialCheckpointError(f"{path}: a damaged torch pickle ({str(err).splitlines()[0]})") from err
        raise OfficialCheckpointError(
            f"{path} holds objects other than tensors and plain containers, so it cannot be read with "
            f"torch.load(weights_only=True):\n  {str(err).splitlines()[0]}\n{_RESAVE_HINT}"
        ) from err
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError) as err:
        first_line = (str(err).splitlines() or [type(err).__name__])[0]
        raise OfficialCheckpointError(
            f"{path}: a damaged or truncated {kind} file ({type(err).__name__}: {first_line}); expected {_FORMATS}"
        ) from err


_FORMATS = "a .safetensors file or a torch checkpoint (.pth, a zip archive or a pickle of tensors)"


def _sniff(head: bytes, size: int) -> str | None:
    """ "safetensors", "torch" (zip archive or legacy pickle) or None from the first bytes of a file."""
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch"
    if len(head) > 8 and 2 <= int.from_bytes(head[:8], "little") <= size - 8 and head[8:9] == b"{":
        return "safetensors"  # an 8-byte little-endian header length, then the JSON header
    return None


def unwrap_state_dict(obj, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """``{"model": sd, "meta": ...}`` → sd; a bare ``{key: tensor}`` dict is returned as it is."""
    if not isinstance(obj, Mapping):
        raise OfficialCheckpointError(f"{source}: expected a dict, got {type(obj).__name__}")
    if "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise OfficialCheckpointError(
            f"{source}: expected a state dict (or {{'model': state_dict, 'meta': ...}}) of tensors; these entries are "
            f"not tensors:{format_key_list(map(str, bad))}"
        )
    return dict(obj)


def load_reference(path: str | Path) -> dict[str, torch.Tensor]:
    """Reference inputs/outputs for ``--verify_with`` (a ``.safetensors`` file or a torch pickle of tensors)."""
    obj = _read_tensor_file(path, "a reference file")
    if not isinstance(obj, Mapping):
        raise OfficialCheckpointError(f"{path}: expected a dict of reference tensors, got {type(obj).__name__}")
    return dict(obj)


# ----------------------------------------------------------------------------------------------------- key mapping
def rename_official_keys(
    state_dict: Mapping[str, torch.Tensor],
    prefix: str,
    rename_rules: Mapping[str, str],
    drop_patterns: Mapping[str, str],
    target_prefix: str = "",
) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """Rename the keys of ``state_dict`` under ``prefix`` with a regex table.

    Args:
        rename_rules: ``{regex: replacement}``; a key (with ``prefix`` removed) must ``re.fullmatch`` a regex, the new
            key is ``target_prefix + match.expand(replacement)``.
        drop_patterns: ``{regex: reason}``; keys that fullmatch one are documented as unused and dropped.
    Returns:
        ``(renamed, dropped, unused)``: the renamed tensors, ``{dropped key: reason}``, and the keys under ``prefix``
        that matched nothing (the caller reports them). Keys outside ``prefix`` are not looked at.
    Raises:
        OfficialCheckpointError: two official keys map to the same new key, or a key matches several rules.
    """
    renamed: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    dropped: dict[str, str] = {}
    unused: list[str] = []
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            continue
        rel = key[len(prefix) :]
        reason = next((why for pattern, why in drop_patterns.items() if re.fullmatch(pattern, rel)), None)
        if reason is not None:
            dropped[key] = reason
            continue
        matches = [(pattern, repl) for pattern, repl in rename_rules.items() if re.fullmatch(pattern, rel)]
        if not matches:
            unused.append(key)
            continue
        if len(matches) > 1:
            raise OfficialCheckpointError(f"{key} matches several rename rules: {[p for p, _ in matches]}")
        pattern, repl = matches[0]
        new_key = target_prefix + re.fullmatch(pattern, rel).expand(repl)
        if new_key in renamed:
            raise OfficialCheckpointError(f"{origin[new_key]} and {key} both map to {new_key}")
        renamed[new_key] = tensor
        origin[new_key] = key
    return renamed, dropped, unused


def invert_rename_rules(rename_rules: Mapping[str, str], official_prefix: str = "") -> list[tuple[str, str]]:
    """``{official regex: our template}`` → ``[(our regex, official template)]``, to name the official tensor a
    missing key should have come from. Works for the tables' form: groups appear in the same order on both sides."""
    inverted = []
    for pattern, repl in rename_rules.items():
        groups = re.findall(r"\((?:[^()\\]|\\.)*\)", pattern)
        literal_parts = re.split(r"\\\d", repl)
        if len(literal_parts) != len(groups) + 1:
            continue
        regex = "".join(
            re.escape(part) + (groups[i] if i < len(groups) else "") for i, part in enumerate(literal_parts)
        )
        template, index = pattern, 0

        def _group(_match):
            nonlocal index
            index += 1
            return f"\\{index}"

        template = re.sub(r"\((?:[^()\\]|\\.)*\)", _group, template).replace("\\.", ".")
        inverted.append((regex, official_prefix + template))
    return inverted


def official_name(key: str, inverted_rules) -> str | None:
    for regex, template in inverted_rules:
        match = re.fullmatch(regex, key)
        if match:
            return match.expand(template)
    return None


def check_converted_state_dict(
    converted: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    unused_official_keys=(),
    allowed_missing=(),
    what: str = "model",
    inverted_rules=(),
) -> None:
    """Fail loudly unless ``converted`` covers ``expected`` exactly (names and shapes) and nothing was left over.

    Args:
        converted: renamed official tensors.
        expected: the target model's ``state_dict()``.
        unused_official_keys: official keys that matched neither a rename rule nor a documented drop pattern.
        allowed_missing: regexes of target keys that are *meant* to stay freshly initialised (e.g. the refinement
            part of a model converted from the segmenter checkpoint, which has none).
        inverted_rules: from :func:`invert_rename_rules`, to name the official tensor of each missing key.
    """
    problems = []
    if unused_official_keys:
        problems.append(
            f"{len(unused_official_keys)} official key(s) are neither mapped nor documented as unused:"
            f"{format_key_list(unused_official_keys)}"
        )
    missing = [k for k in expected if k not in converted and not any(re.fullmatch(p, k) for p in allowed_missing)]
    if missing:
        named = [f"{k} (official: {name})" if (name := official_name(k, inverted_rules)) else k for k in missing]
        problems.append(f"{len(missing)} {what} key(s) get no official tensor (missing):{format_key_list(named)}")
    unexpected = [k for k in converted if k not in expected]
    if unexpected:
        problems.append(f"{len(unexpected)} mapped key(s) do not exist in the {what}:{format_key_list(unexpected)}")
    mismatched = [
        f"{k}: official {tuple(converted[k].shape)} vs {what} {tuple(expected[k].shape)}"
        for k in converted
        if k in expected and tuple(converted[k].shape) != tuple(expected[k].shape)
    ]
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es):{format_key_list(mismatched)}")
    if problems:
        raise OfficialCheckpointError("cannot convert the official checkpoint:\n" + "\n".join(problems))


# ------------------------------------------------------------------------------------------------------- parity
def compare_outputs(pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor, float]]) -> dict[str, float]:
    """``{name: (ours, reference, atol)}`` → ``{name: max |ours − reference|}``; atol 0 means *exactly equal*
    (ids, masks). Raises :class:`OfficialCheckpointError` listing every tensor out of tolerance."""
    diffs, failures = {}, []
    for name, (ours, ref, atol) in pairs.items():
        ours, ref = ours.detach().cpu(), ref.detach().cpu()
        if ours.shape != ref.shape:
            failures.append(f"{name}: shape {tuple(ours.shape)} vs reference {tuple(ref.shape)}")
            continue
        if ours.is_floating_point() or ref.is_floating_point():
            diff = (ours.double() - ref.double()).abs().max().item() if ours.numel() else 0.0
        else:
            diff = float((ours != ref).sum().item())  # number of differing entries
        diffs[name] = diff
        if not diff <= atol:  # also catches NaN
            unit = "max abs diff" if ours.is_floating_point() else "entries differ"
            failures.append(f"{name}: {unit} {diff:.3g} > {atol:g}")
    if failures:
        raise OfficialCheckpointError(
            "converted model does not reproduce the reference outputs:\n  " + "\n  ".join(failures)
        )
    return diffs


# -------------------------------------------------------------------------------------------------- processor
# Frames per clip of the release (``video_input.num_frames: 8`` in its segmenter and TrajViT2 configs, ``--num_frames``
# 8 in its eval scripts); its tokenizer runs a whole clip in one pass, so the converters write ``chunk_size`` = this.
RELEASE_CLIP_FRAMES = 8


def save_video_processor(output_dir: str | Path):
    """Write the release's preprocessing (as in its ``scripts/eval_*.py``: ``RELEASE_CLIP_FRAMES`` frames per clip,
    every frame 224×224 bicubic, aspect not kept, no crop, /255, ImageNet mean/std) as a ``TrajTokVideoProcessor``
    into ``output_dir``.

    Returns the processor, or None when ``trajtok_hf.models.video_processing_trajtok`` is not available."""
    try:
        from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

        from ..models.video_processing_trajtok import TrajTokVideoProcessor
    except ImportError:
        return None
    processor = TrajTokVideoProcessor(
        num_frames=RELEASE_CLIP_FRAMES,
        size={"height": 224, "width": 224},
        resize_mode="squash",  # the release stretches every frame to 224x224 (aspect not kept): parity needs that
        resample=PILImageResampling.BICUBIC,
        do_center_crop=False,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(IMAGENET_DEFAULT_MEAN),
        image_std=list(IMAGENET_DEFAULT_STD),
    )
    processor.save_pretrained(str(output_dir))
    return processor


@contextlib.contextmanager
def converted_model_folder(output_dir: str | os.PathLike):
    """Where a converter writes its model folder: a temporary sibling renamed to ``output_dir`` once every file is
    written (:func:`~trajtok_hf.file_utils.atomic_folder`), so a kill during the conversion leaves no half-written
    model. The new folder replaces ``output_dir`` whole, so ``output_dir`` must be absent, empty or a model folder
    (``config.json`` beside weights); anything else is refused before the conversion writes."""
    path = Path(output_dir)
    if path.exists():
        if not path.is_dir():
            raise OfficialCheckpointError(f"output_dir {path} is a file: give a folder for the converted model")
        if any(path.iterdir()) and not (path / "config.json").is_file():
            raise OfficialCheckpointError(
                f"output_dir {path} holds files that are not a model folder: the converted model replaces the folder "
                "whole, so choose a new or empty folder"
            )
    with atomic_folder(path) as folder:
        yield folder
