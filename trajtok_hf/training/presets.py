"""Model sizes of the training scripts (``--preset tiny|small|base``): ``"base"`` is the paper's, ``"tiny"`` and
``"small"`` train on a CPU."""

from __future__ import annotations

from typing import Any

TRAJTOK_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        backbone_config=dict(model_type="convnext", depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32]),
        hidden_size=32,
        num_trajectories=8,
        num_attention_heads=4,
        assignment_hidden_size=16,
        assignment_embed_dim=8,
        subtoken_fourier_frequencies=4,
    ),
    "small": dict(
        backbone_config=dict(model_type="convnext", depths=[2, 2, 2, 2], hidden_sizes=[32, 64, 128, 256]),
        hidden_size=128,
        num_trajectories=32,
        num_attention_heads=4,
        assignment_hidden_size=64,
        assignment_embed_dim=32,
        subtoken_fourier_frequencies=8,
    ),
    "base": dict(),  # ConvNeXt-T, width 512, K = 128 (TrajTokConfig defaults)
}
"""``TrajTokConfig`` keyword arguments per preset."""

TRAJVIT2_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": dict(
        vision=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
        text=dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64
        ),
        model=dict(projection_dim=16),
    ),
    "small": dict(
        vision=dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
        text=dict(
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=512,
            max_position_embeddings=64,
        ),
        model=dict(projection_dim=64),
    ),
    # The release: encoder width 512, 24 layers, 16 heads; BERT-base through 9 layers; projection 256.
    "base": dict(vision=dict(), text=dict(num_hidden_layers=9), model=dict(projection_dim=256)),
}
"""``TrajViT2VisionConfig`` (``vision``), ``BertConfig`` (``text``) and ``TrajViT2Config`` (``model``) keyword
arguments per preset; the vision tower's tokenizer is ``TRAJTOK_PRESETS`` of the same name."""
