"""Tiny configurations and inputs for every model, shared by the per-model tests and tests/test_common.py."""

from __future__ import annotations

import torch

from trajtok_hf import TrajTokConfig, TrajTokModel

TINY_BACKBONE = {"model_type": "convnext", "depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 24, 32]}


def tiny_trajtok_config(**overrides) -> TrajTokConfig:
    kwargs = dict(
        backbone_config=dict(TINY_BACKBONE),
        hidden_size=32,
        num_trajectories=8,
        num_attention_heads=4,
        assignment_hidden_size=16,
        assignment_embed_dim=8,
        subtoken_fourier_frequencies=4,
        chunk_size=4,
    )
    kwargs.update(overrides)
    return TrajTokConfig(**kwargs)


def tiny_trajtok_model(**overrides) -> TrajTokModel:
    return TrajTokModel(tiny_trajtok_config(**overrides)).eval()


def video_batch(batch=2, frames=4, size=64, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, frames, 3, size, size, generator=generator)


# ---------------------------------------------------------------------------------------------------------------------
# The table of models that every common check in tests/test_common.py runs on. Each new model adds one ModelCase.
from dataclasses import dataclass, field  # noqa: E402
from typing import Callable  # noqa: E402

from transformers import AutoModel  # noqa: E402


@dataclass
class ModelCase:
    """name: test id; build(): a tiny model in eval mode; inputs(batch_size): forward kwargs whose tensors all have
    the batch first; outputs(output): the tensors to compare (batch first); bad_inputs: (kwargs, error, match)."""

    name: str
    build: Callable
    inputs: Callable
    outputs: Callable
    auto_class: type = AutoModel
    bad_inputs: list = field(default_factory=list)
    atol: float = 1e-5


def _trajtok_outputs(out):
    return {
        "trajectory_tokens": out.trajectory_tokens,
        "trajectory_mask": out.trajectory_mask,
        "assignment_logits": out.assignment_logits,
        "trajectory_ids": out.trajectory_ids,
        "num_trajectories": out.num_trajectories,
    }


MODEL_CASES = [
    ModelCase(
        name="trajtok",
        build=lambda: tiny_trajtok_model(),
        inputs=lambda batch: {"pixel_values_videos": video_batch(batch, 5, seed=3)},
        outputs=_trajtok_outputs,
        bad_inputs=[
            ({"pixel_values_videos": torch.randn(1, 3, 64, 64)}, ValueError, "pixel_values_videos"),
            ({"pixel_values_videos": torch.randn(1, 2, 4, 64, 64)}, ValueError, "pixel_values_videos"),
        ],
    ),
]
