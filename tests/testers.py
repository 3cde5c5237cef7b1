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
