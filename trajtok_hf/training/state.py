"""The live state a checkpoint captures and restores, each piece checked against the live object before it is loaded:
model tensors (names, shapes, dtypes; tied weights stored once), the optimizer's parameter groups and per-parameter
state, the keys of scheduler and gradient scaler states, and the per-process RNG states (torch CPU and device
generators, python ``random``, numpy, accelerate's step counter)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .serialization import read_tensors


def unique_storage(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop later names of a tensor already present under another name (tied weights): safetensors stores each
    storage once. :func:`load_model` restores them through the model's own sharing."""
    seen, out = set(), {}
    for name, tensor in state_dict.items():
        key = (tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tuple(tensor.stride()))
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        out[name] = tensor.detach().cpu().contiguous()
    return out


def load_model(model: nn.Module, path: Path) -> None:
    """Load ``path`` into ``model`` after checking it has exactly the model's tensors (names, shapes, dtypes)."""
    tensors = read_tensors(path)
    expected = model.state_dict()
    aliases: dict[tuple, list[str]] = {}
    for name, tensor in expected.items():
        aliases.setdefault((tensor.data_ptr(), tuple(tensor.shape)) if tensor.numel() else (name,), []).append(name)
    missing = [names[0] for names in aliases.values() if not any(n in tensors for n in names)]
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{k}: {tuple(v.shape)} {v.dtype} (model: {tuple(expected[k].shape)} {expected[k].dtype})"
        for k, v in tensors.items()
        if k in expected and (v.shape != expected[k].shape or v.dtype != expected[k].dtype)
    ]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path} does not fit the model being trained: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, mismatched {mismatched[:5]}"
        )
    model.load_state_dict(tensors, strict=False)


def _device_rng_states(device_type: str) -> list[torch.Tensor]:
    if device_type == "cpu":
        return []
    module = torch.get_device_module(device_type)
    return list(module.get_rng_state_all()) if hasattr(module, "get_rng_state_all") else [module.get_rng_state()]


def process_rng_state(device_type: str = "cpu") -> dict[str, Any]:
    """This process's random states: torch CPU and ``device_type`` generators, python ``random`` and numpy."""
    numpy_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "device": {"type": device_type, "states": _device_rng_states(device_type)},
        "python": random.getstate(),
        "numpy": (numpy_state[0], numpy_state[1].tolist(), *(_plain(v) for v in numpy_state[2:])),
    }


def set_process_rng_state(state: Any, device_type: str = "cpu") -> None:
    """Restore what :func:`process_rng_state` saved (device generators only when the saved ``device_type`` matches);
    ``ValueError``/``TypeError`` from the setters on malformed values."""
    if not isinstance(state, dict) or set(state) != {"torch", "device", "python", "numpy"}:
        raise ValueError("expected the keys torch, device, python, numpy")
    torch.set_rng_state(state["torch"])
    device = state["device"]
    if device["type"] == device_type != "cpu":  # states of another device type do not apply
        module = torch.get_device_module(device["type"])
        if hasattr(module, "set_rng_state_all"):
            module.set_rng_state_all(device["states"])
        else:
            module.set_rng_state(device["states"][0])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))


def rng_state(accelerator) -> dict[str, Any]:
    """:func:`process_rng_state` on the accelerator's device, and accelerate's step counter."""
    return {**process_rng_state(accelerator.device.type), "accelerator_step": int(accelerator.step)}


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def set_rng_state(accelerator, state: Any) -> None:
    """Restore what :func:`rng_state` saved; ``ValueError``/``TypeError`` from the setters on malformed values."""
    if not isinstance(state, dict) or set(state) != {"torch", "device", "python", "numpy", "accelerator_step"}:
        raise ValueError("expected the keys torch, device, python, numpy, accelerator_step")
    step = state["accelerator_step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"accelerator_step must be an int >= 0, got {step!r}")
    set_process_rng_state({k: v for k, v in state.items() if k != "accelerator_step"}, accelerator.device.type)
    accelerator.step = step


def matching_keys(saved: Any, current: Mapping[str, Any], what: str = "state") -> dict[str, Any]:
    """``saved`` when it is a dict with exactly the keys of ``current`` (the live object's own state dict) and values
    of the same kinds (numbers, strings, lists, ...; ``None`` matches anything)."""
    if not isinstance(saved, dict) or set(saved) != set(current):
        keys = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(f"{what}: expected the keys {sorted(current)}, got {keys}")
    for key, value in saved.items():
        if not (value is None or current[key] is None or _kind(value) == _kind(current[key])):
            raise ValueError(f"{what}[{key!r}] must be a {_kind(current[key])}, got {value!r}")
    return saved


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, (int, float)) else type(value).__name__


def check_optimizer_state(saved: Any, optimizer) -> dict[str, Any]:
    """``saved`` when it has the layout of ``optimizer.state_dict()``: the same groups with the same parameter
    ids, state only for those ids, each state tensor either a scalar or shaped like its parameter."""
    current = optimizer.state_dict()
    if not isinstance(saved, dict) or set(saved) != {"state", "param_groups"}:
        raise ValueError("expected a dict with the keys 'state' and 'param_groups'")
    groups = saved["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(current["param_groups"]):
        raise ValueError(f"expected {len(current['param_groups'])} parameter groups")
    ids = [group["params"] for group in current["param_groups"]]
    if [g.get("params") if isinstance(g, dict) else None for g in groups] != ids:
        raise ValueError("the parameter groups hold other parameters than this run's optimizer")
    for i, (group, live) in enumerate(zip(groups, current["param_groups"], strict=True)):
        matching_keys(group, live, f"param_groups[{i}]")
    params = {
        i: p
        for group, live in zip(ids, optimizer.param_groups, strict=True)
        for i, p in zip(group, live["params"], strict=True)
    }
    state = saved["state"]
    if not isinstance(state, dict) or not set(state) <= set(params):
        raise ValueError("'state' must map this optimizer's parameter ids to their state")
    for index, entry in state.items():
        if not isinstance(entry, dict):
            raise ValueError(f"state of parameter {index} must be a dict")
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != params[index].shape:
                raise ValueError(
                    f"state[{index}][{key!r}] has shape {tuple(value.shape)}, the parameter "
                    f"{tuple(params[index].shape)}"
                )
    return saved
