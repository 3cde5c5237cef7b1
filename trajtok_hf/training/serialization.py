"""State dicts as safetensors + JSON, so that nothing in a checkpoint folder is ever unpickled.

A state dict (optimizer, scheduler, RNG states) is split into its tensors, stored in ``{stem}.safetensors``, and
everything else, stored in ``{stem}.json`` with each tensor replaced by a reference to it. Tuples and int-keyed dicts
are tagged so that they come back as they were. Every reader raises ``ValueError`` naming the file for anything
malformed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# Tags of the JSON encoding of state dicts (a tag object has exactly one key).
_TENSOR, _TUPLE, _INT_KEYS = "__tensor__", "__tuple__", "__int_keys__"
_TAGS = (_TENSOR, _TUPLE, _INT_KEYS)


def to_json(value: Any, tensors: dict[str, torch.Tensor] | None, name: str) -> Any:
    """``value`` (a state dict) → JSON-able data; tensors go into ``tensors`` (``None``: tensors are an error) and are
    replaced by ``{"__tensor__": name}``. Tuples and int-keyed dicts are tagged so that they come back as they were."""
    if isinstance(value, torch.Tensor):
        if tensors is None or name in tensors:
            raise TypeError(f"{name}: cannot store this tensor in a JSON-only state")
        tensors[name] = value.detach().cpu().contiguous()
        return {_TENSOR: name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        items = [to_json(v, tensors, f"{name}.{i}") for i, v in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value) and not (len(value) == 1 and next(iter(value)) in _TAGS):
            return {k: to_json(v, tensors, f"{name}.{k}") for k, v in value.items()}
        if all(isinstance(k, int) and not isinstance(k, bool) for k in value):
            return {_INT_KEYS: {str(k): to_json(v, tensors, f"{name}.{k}") for k, v in value.items()}}
    raise TypeError(
        f"{name}: cannot store a {type(value).__name__} in a checkpoint (tensors, numbers, strings, "
        "lists, tuples and dicts with str or int keys only)"
    )


def from_json(value: Any, tensors: Mapping[str, torch.Tensor], used: set[str]) -> Any:
    """Inverse of :func:`to_json`; ``used`` collects the tensor names referenced. Raises ``ValueError``."""
    if isinstance(value, list):
        return [from_json(v, tensors, used) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in _TAGS:
        ((tag, inner),) = value.items()
        if tag == _TENSOR:
            if not isinstance(inner, str) or inner not in tensors:
                raise ValueError(f"refers to tensor {inner!r}, which its .safetensors file does not hold")
            used.add(inner)
            return tensors[inner]
        if tag == _TUPLE and isinstance(inner, list):
            return tuple(from_json(v, tensors, used) for v in inner)
        if tag == _INT_KEYS and isinstance(inner, dict) and all(re.fullmatch(r"-?\d+", k) for k in inner):
            return {int(k): from_json(v, tensors, used) for k, v in inner.items()}
        raise ValueError(f"malformed {tag!r} entry")
    return {k: from_json(v, tensors, used) for k, v in value.items()}


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` (the output of :func:`to_json`) as indented, key-sorted JSON."""
    path.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: Path) -> Any:
    """The JSON data of ``path``; ``ValueError`` naming the file when it is not valid UTF-8 JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a valid JSON file ({error}); the checkpoint is damaged") from None


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path``; ``ValueError`` naming the file when it cannot be read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({error}); the checkpoint is damaged") from None


def save_state(folder: Path, stem: str, state: Any) -> None:
    """``state`` → ``{stem}.safetensors`` (its tensors) + ``{stem}.json`` (everything else, tensors referenced)."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    data = to_json(state, tensors, stem)
    save_file(tensors, str(folder / f"{stem}.safetensors"))
    write_json(folder / f"{stem}.json", data)


def load_state(folder: Path, stem: str) -> Any:
    """Inverse of :func:`save_state`; ``ValueError`` naming the file for anything malformed."""
    tensors = read_tensors(folder / f"{stem}.safetensors")
    path, used = folder / f"{stem}.json", set()
    try:
        state = from_json(read_json(path), tensors, used)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    unused = sorted(set(tensors) - used)
    if unused:
        raise ValueError(f"{folder / f'{stem}.safetensors'}: holds tensors {unused[:5]} that {path.name} never uses")
    return state


def read_state_json(path: Path) -> Any:
    """A JSON-only state (no tensors, e.g. a scheduler's) written with ``to_json(state, None, ...)``; ``ValueError``
    naming the file for anything malformed."""
    try:
        return from_json(read_json(path), {}, set())
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
