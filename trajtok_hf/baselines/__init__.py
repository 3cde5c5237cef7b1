"""Token-reduction peers that the benchmarks compare TrajTok with (not part of the paper's models).

- :mod:`.token_merging`: ToMe (Bolya et al., ICLR 2023) inside the ViT3D baseline's encoder, the token-count-matched
  peer of TrajViT2.
- :mod:`.token_reduction`: run-length tokenization (RLT; Choudhury et al., NeurIPS 2024) and space-time pooling of
  ViT3D's tubelet tokens before the encoder.
"""

from .token_merging import apply_token_merging, remove_token_merging, tome_r_for_token_count, tome_tokens_per_layer
from .token_reduction import (
    apply_run_length_tokenization,
    apply_token_pooling,
    pooled_grid_size,
    remove_token_reduction,
    run_length_keep_mask,
    tubelet_changes,
)

__all__ = [
    "apply_run_length_tokenization",
    "apply_token_merging",
    "apply_token_pooling",
    "pooled_grid_size",
    "remove_token_merging",
    "remove_token_reduction",
    "run_length_keep_mask",
    "tome_r_for_token_count",
    "tome_tokens_per_layer",
    "tubelet_changes",
]
