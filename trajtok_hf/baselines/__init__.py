"""Token-reduction peers that the benchmarks compare TrajTok with (not part of the paper's models).

- :mod:`.token_merging`: ToMe (Bolya et al., ICLR 2023) inside the ViT3D baseline's encoder, the token-count-matched
  peer of TrajViT2.
"""

from .token_merging import apply_token_merging, remove_token_merging, tome_r_for_token_count, tome_tokens_per_layer

__all__ = ["apply_token_merging", "remove_token_merging", "tome_r_for_token_count", "tome_tokens_per_layer"]
