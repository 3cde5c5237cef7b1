"""TrajViT2: video-text CLIP over trajectory tokens (paper Sec. 4), and its ViT3D baseline.

Vision tower ([`TrajViT2VisionModel`], shared by both tokenizers):

1. A vision tokenizer turns the video into a token set with a boolean mask: TrajTok (paper Sec. 3,
   ``modeling_trajtok.py``) → ``trajectory_tokens`` (B, C·K·n, D) + ``trajectory_mask``; or ViT3D
   (``modeling_vit3d.py``) → tubelet tokens + an all-True mask. Tokens of another width than the encoder are linearly
   projected.
2. A learned [CLS] is prepended. Trajectory tokens get **no position embedding** (they are a set); with
   ``max_chunk_positions > 0`` (not in the paper) each token gets a learned embedding of its chunk's index, so that
   the order of a clip's chunks matters.
3. Pre-LN transformer encoder: transformers' ``ViTLayer`` (the layer the official code uses; in transformers 5.24 it
   takes a 4-D attention mask and dispatches to SDPA/eager), with the padding mask built by
   ``create_bidirectional_mask``. Inactive token slots are zeroed and masked out as keys, so they have no effect at
   all; by default (``compact_tokens``) the active tokens are first moved to the front with a stable argsort of the
   mask and the sequence is cut to the batch's largest active count (cost ∝ ~10–30 active trajectories, not 128).
   With ``token_packing`` (``"on"``/``"auto"``, not in the paper or the release) the clips of a batch need not be
   padded to that count: their [CLS] and active tokens run as one sequence under a block-diagonal mask, and the
   outputs are put back in the padded layout (same result up to float summation order).
4. Final LayerNorm (official ``vision_encoder.norm``, eps 1e-5); pooling = the [CLS] hidden state.

CLIP model ([`TrajViT2Model`]): vision tower + any transformers text encoder (``AutoModel.from_config``, BERT-base by
default) pooled at its first ([CLS]) token; linear projections (with bias) to ``projection_dim``; L2-normalised
embeddings; ``logits = exp(logit_scale) · cos`` with logit_scale initialised to ln(1/0.07). With ``return_loss``:
symmetric InfoNCE (``loss_contrastive.py``, gathered across processes under torch.distributed) weighted by
``contrastive_loss_weight``, plus, when ``segmentation_labels`` are given, the Hungarian focal + Dice loss of the
segmentation supervision (``loss_trajtok.py``) on the tokenizer's assignment logits, weighted by
``segmentation_loss_weight``.

Differences from the official code (hellomuffin/trajtok ``SegmentCLIP``/``SegmentViT``), each a config option with the
paper's form as default:

- The padding mask is honoured (the release's ViT ignores it and attends over all 128 token slots, empty
  trajectories included, as the official ``model/vit_attn.py`` passes no mask to SDPA:
  ``vision_config.attend_to_inactive_tokens=True``).
- Text tower: any ``text_config``; the release's is BERT-base run through its first 9 layers, i.e.
  ``BertConfig(num_hidden_layers=9)`` (its text mode stops before the fusion layers). Pooling is the [CLS] hidden state
  without a pooler in both.
- The logit scale is not clamped (the release never calls its clamp either).
- The contrastive loss gathers negatives over all processes (the release: per process).

Convention of ``get_video_features`` / ``get_image_features`` / ``get_text_features`` (transformers 5.x CLIP style):
they return the tower's output object whose ``pooler_output`` is the **projected, not normalised** embedding
(B, projection_dim), a tuple with ``return_dict=False``; ``output_hidden_states`` / ``output_attentions`` reach the
tower.
``forward`` returns L2-normalised ``video_embeds`` / ``text_embeds``; the towers' hidden states and attention weights
ride in ``vision_model_output`` / ``text_model_output``, as in CLIP and SigLIP.

Precomputed trajectory tokens (long videos; an extension, the official release has no long-video path): the vision
tower, ``get_video_features`` and ``forward`` take ``trajectory_tokens`` (B, N, D) + ``trajectory_mask`` (B, N) +
``trajectory_spans`` (B, N, 2) instead of ``pixel_values_videos``, e.g. the tokens of a whole video tokenized chunk by
chunk, linked across chunks and merged per global trajectory. The tokenizer is skipped; the tokens go through the same
chunk-position step and encoder. A span ``[start, end)`` (frames of the video as the tokenizer saw it) covers chunks
``c0 = start // chunk_size`` … ``c1 = (end − 1) // chunk_size``; with ``max_chunk_positions > 0`` its token gets the
mean of the chunk-position embeddings of c0 … c1 (exactly the chunk's embedding for a one-chunk span, so a clip's own
per-chunk tokens with their chunk spans give the pixel path's embedding). Without chunk positions the spans are only
validated: the encoder is order-free over trajectory tokens (paper Sec. 4), so it does not see time at all. Tokens
where ``trajectory_mask`` is False (batch padding) have no effect, as inactive slots, except under the release option
``attend_to_inactive_tokens=True``, which attends to every slot given: there, embed videos of different token counts
one at a time.

Inputs are checked once, at the public methods: pixel values must be finite and normalised (|value| ≤
``MAX_ABS_PIXEL_VALUE``), token ids inside the text vocabulary, texts no longer than the text tower's position table,
and every text must attend to at least one token. Floating inputs are cast to the model's dtype there, so a bf16/fp16
model runs straight from the processor's fp32 output.
"""

from __future__ import annotations

import copy
import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.vit.modeling_vit import ViTLayer
from transformers.utils import ModelOutput, can_return_tuple, logging

from .configuration_trajvit2 import TOKEN_PACKING_MODES, TrajViT2Config, TrajViT2VisionConfig
from .loss_contrastive import clip_contrastive_loss
from .loss_trajtok import trajectory_segmentation_loss
from .modeling_trajtok import TrajTokModel, init_linear_and_norm
from .modeling_utils_trajtok import MAX_ABS_PIXEL_VALUE, SafetensorsFileCheckMixin, check_video_pixels, from_sub_config
from .modeling_vit3d import ViT3DPatchTokenizer

logger = logging.get_logger(__name__)

__all__ = [
    "MAX_ABS_PIXEL_VALUE",
    "TrajViT2Model",
    "TrajViT2Output",
    "TrajViT2PreTrainedModel",
    "TrajViT2VisionModel",
    "TrajViT2VisionOutput",
    "TrajViT2VisionTransformer",
]


@dataclass
class TrajViT2VisionOutput(BaseModelOutputWithPooling):
    r"""
    Output of the TrajViT2 vision tower. B = batch, L = token positions after the optional compaction (the batch's
    largest active-token count when `compact_tokens`, else all N token slots; ViT3D: all t·h·w patches),
    D = `vision_config.hidden_size`, N = token slots of the tokenizer (TrajTok: chunks × K × n), or the N given
    `trajectory_tokens` when precomputed tokens are passed instead of pixels (then `num_trajectories`,
    `assignment_logits` and `trajectory_ids` are None: no tokenizer ran).

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(B, 1 + L, D)`):
            Final-LayerNorm'd encoder output, [CLS] first. Positions where `attention_mask` is False are zeros.
        pooler_output (`torch.FloatTensor` of shape `(B, D)`):
            The [CLS] hidden state (in [`TrajViT2Model.get_video_features`]: its projection, shape
            `(B, projection_dim)`, not normalised).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*, returned when `output_hidden_states` is set):
            The encoder input and the output of each layer (before the final LayerNorm, as CLIP/SigLIP), each
            `(B, 1 + L, D)`: `num_hidden_layers + 1` entries. With a list of indices for `output_hidden_states`
            (transformers' convention; negative ones count from the end), the entries not selected are None. At
            positions where `attention_mask` is False they hold zeros when the batch ran packed (`token_packing`) and
            unused values otherwise.
        attentions (`tuple(torch.FloatTensor)`, *optional*, returned when `output_attentions=True`):
            Attention weights of each encoder layer, `(B, num_attention_heads, 1 + L, 1 + L)` (keys of inactive
            positions get weight 0). Only the eager attention computes them (`attn_implementation="eager"`); under
            SDPA a warning is logged and the tuple is empty, as in transformers' models.
        attention_mask (`torch.BoolTensor` of shape `(B, 1 + L)`):
            True for the [CLS] and for the tokens the encoder attended to.
        token_indices (`torch.LongTensor` of shape `(B, L)`):
            For each position after the [CLS], the index of its slot in the tokenizer's N tokens (TrajTok: token
            ``(c·K + k)·n + s``; precomputed tokens: the index in the given N); meaningful where
            `attention_mask[:, 1:]` is True.
        trajectory_mask (`torch.BoolTensor` of shape `(B, N)`, *optional*):
            TrajTok only: True for tokens of non-empty trajectories (precomputed tokens: the given mask).
        num_trajectories (`torch.LongTensor` of shape `(B,)`, *optional*):
            TrajTok from pixels only: active trajectories per video.
        assignment_logits (`torch.FloatTensor` of shape `(B, T, h, w, K)`, *optional*):
            TrajTok from pixels only: the segmenter's per-pixel logits over the K queries (Eq. 1), input of the
            segmentation loss.
        trajectory_ids (`torch.LongTensor` of shape `(B, T, h, w)`, *optional*):
            TrajTok from pixels only: the hard segmentation (global trajectory index per pixel of the mask grid).
    """

    attention_mask: torch.BoolTensor | None = None
    token_indices: torch.LongTensor | None = None
    trajectory_mask: torch.BoolTensor | None = None
    num_trajectories: torch.LongTensor | None = None
    assignment_logits: torch.FloatTensor | None = None
    trajectory_ids: torch.LongTensor | None = None


@dataclass
class TrajViT2Output(ModelOutput):
    r"""
    Output of [`TrajViT2Model`]. B_v = videos, B_t = texts (equal when a loss is computed), P = `projection_dim`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `return_loss` is True):
            `contrastive_loss_weight · contrastive_loss + segmentation_loss_weight · segmentation_loss` (the second
            term only when `segmentation_labels` are given).
        logits_per_video (`torch.FloatTensor` of shape `(B_v, B_t)`):
            `exp(logit_scale) · cos(video_embeds, text_embeds)`: video-text similarity scores.
        logits_per_text (`torch.FloatTensor` of shape `(B_t, B_v)`):
            The transpose of `logits_per_video`.
        video_embeds (`torch.FloatTensor` of shape `(B_v, P)`):
            L2-normalised projection of the vision tower's [CLS] output.
        text_embeds (`torch.FloatTensor` of shape `(B_t, P)`):
            L2-normalised projection of the text tower's pooled output.
        contrastive_loss (`torch.FloatTensor` of shape `()`, *optional*):
            Symmetric InfoNCE (unweighted; over the global batch under torch.distributed).
        segmentation_loss (`torch.FloatTensor` of shape `()`, *optional*):
            Hungarian focal + Dice loss of the tokenizer (unweighted), when `segmentation_labels` are given.
        vision_model_output ([`TrajViT2VisionOutput`]):
            The vision tower's output (`pooler_output` = the [CLS] hidden state, before projection).
        text_model_output (`BaseModelOutputWithPooling`):
            The text tower's output.
    """

    loss: torch.FloatTensor | None = None
    logits_per_video: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    video_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    segmentation_loss: torch.FloatTensor | None = None
    vision_model_output: TrajViT2VisionOutput | None = None
    text_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple[Any]:
        return tuple(
            self[k].to_tuple() if k in ("vision_model_output", "text_model_output") else self[k] for k in self.keys()
        )


def _hidden_state_indices(output_hidden_states, num_hidden_states: int) -> frozenset[int] | None:
    """The hidden states to return, in transformers' convention: None/False = none, True = all, an int or a list of
    ints = those indices (negative ones count from the end, out-of-range ones select nothing)."""
    if output_hidden_states is None or output_hidden_states is False:
        return None
    if output_hidden_states is True:
        return frozenset(range(num_hidden_states))
    indices = [output_hidden_states] if isinstance(output_hidden_states, int) else output_hidden_states
    valid = isinstance(indices, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in indices)
    if not valid:
        raise TypeError(
            f"output_hidden_states must be a bool, an int or a list of ints (hidden-state indices), got "
            f"{output_hidden_states!r}"
        )
    return frozenset(i % num_hidden_states for i in indices if -num_hidden_states <= i < num_hidden_states)


@contextmanager
def _recorded_attention_weights(layers: nn.ModuleList, enabled: bool):
    """Yields the list that collects the attention weights of each `ViTLayer` run inside the block (when `enabled`).

    `ViTLayer` drops the weights its `ViTAttention` returns; a forward hook on each attention module records them, as
    transformers' `capture_outputs` does. SDPA returns None for them: nothing is recorded.
    """
    weights: list[torch.Tensor] = []
    if not enabled:
        yield weights
        return

    def record(module, args, output):
        if output[1] is not None:
            weights.append(output[1])

    handles = [layer.attention.register_forward_hook(record) for layer in layers]
    try:
        yield weights
    finally:
        for handle in handles:
            handle.remove()


def encoder_layer_flops(num_sequences: int, sequence_length: int, hidden_size: int, intermediate_size: int) -> int:
    """FLOPs (2 per multiply-add) of one pre-LN ViT encoder layer over `num_sequences` sequences of
    `sequence_length` tokens, each attending densely over its whole sequence: the cost model of
    `token_packing="auto"` (an addition to the paper; the official TrajViT2 always pads).

    Per token, the Q/K/V and output projections cost 2·4·D² and the MLP 2·2·D·intermediate (24·D² for the usual
    intermediate = 4·D); per sequence, q·kᵀ and the weighted sum of values cost 2·S²·D each. LayerNorms, softmax,
    GELU and residual additions are linear in the token count and left out. The padded batch costs
    `encoder_layer_flops(B, 1 + L_max, D, I)`, the packed one `encoder_layer_flops(1, Σ_b (1 + L_b), D, I)`: packing
    saves the linear layers' work on padding but attends over one Σ_b (1 + L_b)-long sequence (the block-diagonal
    mask removes cross-clip attention from the result, not from the dense attention's work).
    """
    linear_per_token = 2 * (4 * hidden_size * hidden_size + 2 * hidden_size * intermediate_size)
    attention_per_sequence = 4 * sequence_length * sequence_length * hidden_size
    return num_sequences * (sequence_length * linear_per_token + attention_per_sequence)


def _block_diagonal_attention_mask(
    segment_ids: torch.Tensor, attn_implementation: str, dtype: torch.dtype
) -> torch.Tensor:
    """The `(1, 1, N, N)` mask of a packed sequence whose token i belongs to clip `segment_ids[i]`: each token attends
    to the tokens of its own clip only.

    SDPA takes it boolean (True = attend); the eager attention adds it to the scores, so there it is 0 where True and
    `torch.finfo(dtype).min` elsewhere, the form `transformers.masking_utils.eager_mask` gives (no row is fully
    masked: every token sees itself and its clip's [CLS]).
    """
    same_clip = (segment_ids[:, None] == segment_ids[None, :])[None, None]
    if attn_implementation == "sdpa":
        return same_clip
    return torch.where(same_clip, torch.zeros((), dtype=dtype, device=same_clip.device), torch.finfo(dtype).min)


class TrajViT2VisionTransformer(nn.Module):
    """Vision tokenizer → [CLS] + active tokens → ViT encoder (padding mask) → final LayerNorm → [CLS] pooling.

    With `config.token_packing` (an addition to the paper; the official TrajViT2 pads) the clips' tokens may instead
    run as one packed sequence under a block-diagonal mask; the output keeps the padded layout either way.
    """

    # Attention implementations whose mask the packed path builds (`_block_diagonal_attention_mask`).
    _packing_attn_implementations = ("eager", "sdpa")

    # The encoder's ViTLayers dispatch on `config._attn_implementation` (eager or SDPA), as a PreTrainedModel tower
    # that declares it; composite-model tooling reads the flag on the `vision_model` attribute.
    _supports_sdpa = True

    def __init__(self, config: TrajViT2VisionConfig):
        super().__init__()
        self.config = config
        if config.vision_tokenizer == "trajtok":
            self.tokenizer = TrajTokModel(config.trajtok_config)
        else:
            self.tokenizer = ViT3DPatchTokenizer(config)
        width = config.hidden_size
        self.input_projection = nn.Linear(config.token_width, width) if config.token_width != width else nn.Identity()
        self.cls_token = nn.Parameter(torch.empty(1, 1, width))
        self.chunk_positions = (
            nn.Embedding(config.max_chunk_positions, config.token_width) if config.max_chunk_positions else None
        )
        self.layers = nn.ModuleList(ViTLayer(config) for _ in range(config.num_hidden_layers))
        self.post_layernorm = nn.LayerNorm(width, eps=config.final_layer_norm_eps)

    def forward(
        self,
        pixel_values_videos: torch.Tensor | None = None,
        tokens_per_trajectory: int | None = None,
        output_hidden_states: bool | int | list[int] = False,
        output_attentions: bool = False,
        trajectory_tokens: torch.Tensor | None = None,
        trajectory_mask: torch.Tensor | None = None,
        trajectory_spans: torch.Tensor | None = None,
    ) -> TrajViT2VisionOutput:
        """Pixels through the tokenizer, or precomputed TrajTok `trajectory_tokens` + `trajectory_mask` (+
        `trajectory_spans`, needed with chunk positions), checked at the public methods (see the module docstring)."""
        if (pixel_values_videos is None) == (trajectory_tokens is None):
            raise ValueError("pass exactly one of pixel_values_videos or trajectory_tokens")
        if trajectory_tokens is not None:
            tokens = trajectory_tokens
            if self.chunk_positions is not None:
                tokens = tokens + self._span_chunk_positions(trajectory_spans, trajectory_mask).to(tokens.dtype)
            output = self._encode(tokens, trajectory_mask, output_hidden_states, output_attentions)
            output.trajectory_mask = trajectory_mask
            return output
        if self.config.vision_tokenizer == "trajtok":
            tok = self.tokenizer(pixel_values_videos, tokens_per_trajectory=tokens_per_trajectory, return_dict=True)
            tokens = tok.trajectory_tokens
            if self.chunk_positions is not None:
                tokens = self._add_chunk_positions(tokens, pixel_values_videos.shape[1])
            output = self._encode(tokens, tok.trajectory_mask, output_hidden_states, output_attentions)
            output.trajectory_mask = tok.trajectory_mask
            output.num_trajectories = tok.num_trajectories
            output.assignment_logits = tok.assignment_logits
            output.trajectory_ids = tok.trajectory_ids
            return output
        if tokens_per_trajectory is not None:
            raise ValueError(
                "tokens_per_trajectory only applies to the TrajTok tokenizer, not to vision_tokenizer='vit3d'"
            )
        tok = self.tokenizer(pixel_values_videos)
        return self._encode(tok.tokens, tok.token_mask, output_hidden_states, output_attentions)

    def _add_chunk_positions(self, tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Adds the learned embedding of each token's chunk index; the tokenizer lays tokens out chunk by chunk
        (``C·K·n`` slots, ``C = ⌈T / chunk_size⌉``)."""
        num_chunks = -(-num_frames // self.config.trajtok_config.chunk_size)
        if num_chunks > self.config.max_chunk_positions:
            raise ValueError(
                f"pixel_values_videos has {num_frames} frames = {num_chunks} chunks of "
                f"{self.config.trajtok_config.chunk_size}, more than max_chunk_positions "
                f"({self.config.max_chunk_positions})"
            )
        per_chunk = tokens.shape[1] // num_chunks
        chunk_index = torch.arange(tokens.shape[1], device=tokens.device) // per_chunk
        return tokens + self.chunk_positions(chunk_index).to(tokens.dtype)

    def _span_chunk_positions(self, spans: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """Chunk-position embedding of each token from its trajectory's frame span `[start, end)` (B, N, 2): the mean
        of the embeddings of chunks ``start // chunk_size`` … ``(end − 1) // chunk_size``, from a cumulative sum over
        the table (no loop over tokens); a one-chunk span gets that chunk's embedding itself, as the pixel path adds.
        Spans of tokens where `token_mask` is False are ignored (their result is finite and unused)."""
        if spans is None:
            raise ValueError(
                f"trajectory_spans are required: this model adds chunk-position embeddings (max_chunk_positions="
                f"{self.config.max_chunk_positions})"
            )
        chunk_size = self.config.trajtok_config.chunk_size
        num_positions = self.config.max_chunk_positions
        first = torch.div(spans[..., 0], chunk_size, rounding_mode="floor")
        last = torch.div(spans[..., 1] - 1, chunk_size, rounding_mode="floor")
        if bool(token_mask.any()):
            reach = int(last[token_mask].max()) + 1
            if reach > num_positions:
                raise ValueError(
                    f"trajectory_spans reach frame {int(spans[..., 1][token_mask].max())} = {reach} chunks of "
                    f"{chunk_size}, more than max_chunk_positions ({num_positions})"
                )
        first = first.masked_fill(~token_mask, 0).clamp(0, num_positions - 1)
        last = last.masked_fill(~token_mask, 0).clamp(0, num_positions - 1)
        table = self.chunk_positions.weight
        sums = F.pad(table.float().cumsum(dim=0), (0, 0, 1, 0))  # row c: sum of the embeddings of chunks < c
        mean = (sums[last + 1] - sums[first]) / (last - first + 1).unsqueeze(-1).to(sums.dtype)
        single = self.chunk_positions(first)
        return torch.where((first == last).unsqueeze(-1), single, mean.to(single.dtype))

    def _encode(self, tokens, token_mask, output_hidden_states, output_attentions: bool) -> TrajViT2VisionOutput:
        """[`encode_tokens`], also collecting the layers' attention weights when `output_attentions`."""
        if output_attentions and self.config._attn_implementation != "eager":
            logger.warning_once(
                f"output_attentions=True needs attn_implementation='eager' (the vision encoder uses "
                f"{self.config._attn_implementation!r}, which computes no attention weights): no attentions returned"
            )
        # Attention weights keep their per-clip (B, heads, 1 + L, 1 + L) layout only on the padded path.
        packing = "off" if output_attentions else None
        with _recorded_attention_weights(self.layers, output_attentions) as attentions:
            output = self.encode_tokens(tokens, token_mask, output_hidden_states, token_packing=packing)
        if output_attentions:
            output.attentions = tuple(attentions)
        return output

    def encode_tokens(
        self,
        tokens: torch.Tensor,
        token_mask: torch.Tensor,
        output_hidden_states: bool | int | list[int] = False,
        *,
        token_packing: str | None = None,
    ) -> TrajViT2VisionOutput:
        """Run [CLS] + the token set through the encoder.

        Args:
            tokens (`torch.FloatTensor` of shape `(B, N, token_width)`): the tokenizer's tokens.
            token_mask (`torch.BoolTensor` of shape `(B, N)`): True for tokens that exist (active trajectories).
                Unless `attend_to_inactive_tokens`, the other slots have no effect, whatever their values.
            output_hidden_states (`bool`, `int` or `list[int]`): the hidden states to return (see
                [`TrajViT2VisionOutput`]).
            token_packing (`str`, *optional*): `"off"`, `"on"` or `"auto"` for this call (see
                [`TrajViT2VisionConfig`]); None = `config.token_packing`. Packed or not, the output has the padded
                layout; where `attention_mask` is False the packed path's `hidden_states` entries are zeros (the
                padded path's hold the unused values computed there).
        """
        if tokens.ndim != 3 or token_mask.shape != tokens.shape[:2] or token_mask.dtype != torch.bool:
            raise ValueError(
                f"tokens must be (B, N, D) and token_mask a bool (B, N) tensor, got {tuple(tokens.shape)} and "
                f"{tuple(token_mask.shape)} {token_mask.dtype}"
            )
        if token_packing is None:
            token_packing = self.config.token_packing
        elif token_packing not in TOKEN_PACKING_MODES:
            raise ValueError(f"token_packing must be one of {TOKEN_PACKING_MODES}, got {token_packing!r}")
        keep = _hidden_state_indices(output_hidden_states, len(self.layers) + 1)
        batch, num_slots = token_mask.shape
        token_indices = torch.arange(num_slots, device=tokens.device).expand(batch, num_slots)
        if self.config.attend_to_inactive_tokens:
            # Release behaviour: every slot is a token, empty trajectories included.
            token_mask = torch.ones_like(token_mask)
        else:
            # Zeroing (not only masking) keeps NaN/inf in unused slots out of the masked attention's 0·v products.
            tokens = tokens.masked_fill(~token_mask.unsqueeze(-1), 0.0)
            if self.config.compact_tokens:
                length = int(token_mask.sum(dim=1).max())
                if length < num_slots:
                    # Stable sort keeps the active tokens in their original order; the sequence is cut to the
                    # batch's largest active count.
                    token_indices = torch.argsort((~token_mask).to(torch.uint8), dim=1, stable=True)[:, :length]
                    tokens = tokens.gather(1, token_indices.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
                    token_mask = token_mask.gather(1, token_indices)

        attention_mask = torch.cat((token_mask.new_ones(batch, 1), token_mask), dim=1)
        if self._packs(attention_mask, token_packing):
            return self._encode_packed(tokens, token_mask, attention_mask, token_indices, keep)
        hidden = self.input_projection(tokens)
        hidden = torch.cat((self.cls_token.expand(batch, -1, -1).to(hidden.dtype), hidden), dim=1)
        # Key-padding mask: every row keeps the [CLS], so no row is fully masked. None when nothing is padded.
        mask_4d = create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask)
        # Only the selected hidden states are kept alive (an entry per layer input, None where not selected).
        all_hidden_states = [] if keep is not None else None
        for index, layer in enumerate(self.layers):
            if keep is not None:
                all_hidden_states.append(hidden if index in keep else None)
            hidden = layer(hidden, mask_4d)
        if keep is not None:
            all_hidden_states = tuple(all_hidden_states) + (hidden if len(self.layers) in keep else None,)
        hidden = self.post_layernorm(hidden)
        hidden = hidden.masked_fill(~attention_mask.unsqueeze(-1), 0.0)
        return TrajViT2VisionOutput(
            last_hidden_state=hidden,
            pooler_output=hidden[:, 0],
            hidden_states=all_hidden_states,
            attention_mask=attention_mask,
            token_indices=token_indices,
        )

    def _packs(self, attention_mask: torch.Tensor, token_packing: str) -> bool:
        """Whether this batch runs packed: `"on"`, or `"auto"` when [`encoder_layer_flops`] of the packed sequence is
        below that of the padded batch; never without padding, under `attend_to_inactive_tokens` or for an
        attention implementation whose packed mask is not built here."""
        if (
            token_packing == "off"
            or self.config.attend_to_inactive_tokens
            or self.config._attn_implementation not in self._packing_attn_implementations
            or bool(attention_mask.all())
        ):
            return False
        if token_packing == "on":
            return True
        batch, length = attention_mask.shape
        width, intermediate = self.config.hidden_size, self.config.intermediate_size
        packed = encoder_layer_flops(1, int(attention_mask.sum()), width, intermediate)
        return packed < encoder_layer_flops(batch, length, width, intermediate)

    def _encode_packed(self, tokens, token_mask, attention_mask, token_indices, keep) -> TrajViT2VisionOutput:
        """[`encode_tokens`] on one packed sequence: the [CLS] and active tokens of every clip, clip after clip
        (N = `attention_mask.sum()` tokens), under a block-diagonal mask; every output is scattered back to the
        padded `(B, 1 + L)` layout of `attention_mask` (zeros elsewhere). Indices come from the mask (`nonzero`,
        no loop over clips or tokens)."""
        batch, length = attention_mask.shape
        # Positions of the packed tokens in the flattened padded layout, row-major: clip b's [CLS], then its tokens.
        flat_positions = attention_mask.reshape(-1).nonzero().squeeze(1)
        segment_ids = torch.div(flat_positions, length, rounding_mode="floor")
        is_cls = flat_positions % length == 0
        projected = self.input_projection(tokens[token_mask])  # the active tokens in the same row-major order
        cls = self.cls_token[0].to(projected.dtype).expand(batch, -1)
        # Packed position p takes row b of the [CLS] block for clip b's [CLS], else the projected token of rank
        # p − (b + 1) (the b + 1 [CLS] up to and including its clip's precede it).
        packed_index = torch.arange(flat_positions.shape[0], device=flat_positions.device)
        source = torch.where(is_cls, segment_ids, batch + packed_index - segment_ids - 1)
        hidden = torch.cat((cls, projected), dim=0)[source].unsqueeze(0)
        mask_4d = _block_diagonal_attention_mask(segment_ids, self.config._attn_implementation, hidden.dtype)

        def unpack(packed: torch.Tensor) -> torch.Tensor:
            padded = packed.new_zeros(batch * length, packed.shape[-1]).index_copy(0, flat_positions, packed[0])
            return padded.view(batch, length, -1)

        all_hidden_states = [] if keep is not None else None
        for index, layer in enumerate(self.layers):
            if keep is not None:
                all_hidden_states.append(unpack(hidden) if index in keep else None)
            hidden = layer(hidden, mask_4d)
        if keep is not None:
            all_hidden_states = tuple(all_hidden_states) + (unpack(hidden) if len(self.layers) in keep else None,)
        hidden = unpack(self.post_layernorm(hidden))
        return TrajViT2VisionOutput(
            last_hidden_state=hidden,
            pooler_output=hidden[:, 0],
            hidden_states=all_hidden_states,
            attention_mask=attention_mask,
            token_indices=token_indices,
        )


class TrajViT2PreTrainedModel(SafetensorsFileCheckMixin, PreTrainedModel):
    config_class = TrajViT2Config
    config: TrajViT2Config
    base_model_prefix = "trajvit2"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["ViTLayer", "TrajTokPerceiverLayer"]

    def _prepare_video(self, name: str, value) -> torch.Tensor:
        """Check a video batch at the public boundary and cast it to the model's dtype (fp32 processor output → a
        bf16/fp16 model), as transformers' models do with their pixel values."""
        check_video_pixels(value, name)
        return value.to(self.dtype)

    def _prepare_trajectory_tokens(
        self, pixel_values_videos, trajectory_tokens, trajectory_mask, trajectory_spans, tokens_per_trajectory
    ) -> dict | None:
        """Check precomputed TrajTok tokens at the public boundary; returns the vision tower's keyword arguments (the
        tokens cast to the model's dtype), or None when no tokens are given."""
        if trajectory_tokens is None:
            named = (("trajectory_mask", trajectory_mask), ("trajectory_spans", trajectory_spans))
            given = [name for name, value in named if value is not None]
            if given:
                raise ValueError(f"{' and '.join(given)} given without trajectory_tokens")
            if pixel_values_videos is None:
                raise ValueError(
                    "pixel_values_videos is required, or precomputed trajectory_tokens (with trajectory_mask)"
                )
            return None
        vision = getattr(self.config, "vision_config", self.config)
        if pixel_values_videos is not None:
            raise ValueError("pass either pixel_values_videos or trajectory_tokens, not both")
        if vision.vision_tokenizer != "trajtok":
            raise ValueError(
                f"trajectory_tokens are TrajTok tokens; this model uses vision_tokenizer={vision.vision_tokenizer!r}"
            )
        if tokens_per_trajectory is not None:
            raise ValueError(
                "tokens_per_trajectory applies to the tokenizer: trajectory_tokens were made with theirs already"
            )
        _check_trajectory_tokens(vision, trajectory_tokens, trajectory_mask, trajectory_spans)
        return {
            "trajectory_tokens": trajectory_tokens.to(self.dtype),
            "trajectory_mask": trajectory_mask,
            "trajectory_spans": trajectory_spans,
        }

    def _vision_std(self) -> float:
        vision = getattr(self.config, "vision_config", self.config)
        return vision.initializer_range

    def _init_weights(self, module):
        # The TrajTok tokenizer and the text model are PreTrainedModels: transformers dispatches their own
        # _init_weights to their submodules.
        std = self._vision_std()
        if init_linear_and_norm(module, std, linear_types=(nn.Linear, nn.Conv3d)):
            return
        if isinstance(module, TrajViT2VisionTransformer):
            init.trunc_normal_(module.cls_token, std=std)
            if module.chunk_positions is not None:
                init.trunc_normal_(module.chunk_positions.weight, std=std)
        elif isinstance(module, ViT3DPatchTokenizer):
            if module.position_embeddings is not None:
                init.trunc_normal_(module.position_embeddings, std=std)
        elif isinstance(module, TrajViT2Model):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
            for projection in (module.visual_projection, module.text_projection):
                init.trunc_normal_(projection.weight, std=self.config.initializer_range)
                if projection.bias is not None:
                    init.zeros_(projection.bias)


class TrajViT2VisionModel(TrajViT2PreTrainedModel):
    """The TrajViT2 vision tower on its own (TrajTok or ViT3D tokens → [CLS] encoder), e.g. for video features."""

    config_class = TrajViT2VisionConfig
    config: TrajViT2VisionConfig
    main_input_name = "pixel_values_videos"
    input_modalities = ("video",)

    def __init__(self, config: TrajViT2VisionConfig):
        super().__init__(config)
        self.vision_model = TrajViT2VisionTransformer(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        """The layer that embeds the pixels (as ViT's patch embedding): ViT3D's tubelet `Conv3d`, or what the TrajTok
        tokenizer reports as its input embeddings."""
        tokenizer = self.vision_model.tokenizer
        if isinstance(tokenizer, ViT3DPatchTokenizer):
            return tokenizer.projection
        return tokenizer.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        tokenizer = self.vision_model.tokenizer
        if isinstance(tokenizer, ViT3DPatchTokenizer):
            tokenizer.projection = value
        else:
            tokenizer.set_input_embeddings(value)

    def forward(
        self,
        pixel_values_videos: torch.FloatTensor | None = None,
        tokens_per_trajectory: int | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        return_dict: bool | None = None,
        trajectory_tokens: torch.FloatTensor | None = None,
        trajectory_mask: torch.BoolTensor | None = None,
        trajectory_spans: torch.LongTensor | None = None,
        **kwargs,
    ) -> TrajViT2VisionOutput | tuple:
        r"""
        Args:
            pixel_values_videos (`torch.FloatTensor` of shape `(batch, frames, 3, height, width)`, *optional*):
                Frames normalised by [`TrajTokVideoProcessor`]; an image is a 1-frame video. Cast to the model's
                dtype. Exactly one of `pixel_values_videos` and `trajectory_tokens` is required.
            tokens_per_trajectory (`int`, *optional*):
                TrajTok only: tokens per trajectory n (see [`TrajTokModel.forward`]); not with `trajectory_tokens`.
            output_attentions (`bool`, *optional*):
                Also return the encoder's attention weights (eager attention only).
            output_hidden_states (`bool`, `int` or `list[int]`, *optional*):
                Also return the encoder's hidden states: all (True) or those at the given indices.
            trajectory_tokens (`torch.FloatTensor` of shape `(batch, N, token_width)`, *optional*):
                Precomputed TrajTok `trajectory_tokens` instead of pixels (e.g. a long video's tokens merged per
                trajectory across chunks; see the module docstring). TrajTok only. Cast to the model's dtype.
            trajectory_mask (`torch.BoolTensor` of shape `(batch, N)`, *optional*):
                With `trajectory_tokens`: True for real tokens (padding False); every video needs one.
            trajectory_spans (`torch.LongTensor` of shape `(batch, N, 2)`, *optional*):
                With `trajectory_tokens`: `[start, end)` frames of each token's trajectory (chunk c = frames
                `[c·chunk_size, (c+1)·chunk_size)`). Required with `max_chunk_positions > 0` (a token gets the mean
                chunk-position embedding of the chunks its span covers); otherwise only validated, as the encoder
                does not see token order.
        """
        if kwargs:
            raise TypeError(f"TrajViT2VisionModel.forward got unexpected arguments {sorted(kwargs)}")
        precomputed = self._prepare_trajectory_tokens(
            pixel_values_videos, trajectory_tokens, trajectory_mask, trajectory_spans, tokens_per_trajectory
        )
        if precomputed is None:
            pixel_values_videos = self._prepare_video("pixel_values_videos", pixel_values_videos)
        output_attentions = _flag(output_attentions, "output_attentions", self.config)
        output_hidden_states = _flag(output_hidden_states, "output_hidden_states", self.config)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        output = self.vision_model(
            pixel_values_videos, tokens_per_trajectory, output_hidden_states, output_attentions, **(precomputed or {})
        )
        return output if return_dict else output.to_tuple()


def _check_trajectory_tokens(vision_config: TrajViT2VisionConfig, tokens, mask, spans) -> None:
    """Precomputed TrajTok tokens (B, N, D), their bool mask (B, N) and frame spans (B, N, 2): types, shapes, the
    tokenizer's width D, at least one real token per video, finite values, spans ``0 <= start < end`` (padding's
    spans and values are not read, except the values under `attend_to_inactive_tokens`)."""
    width = vision_config.token_width
    if not isinstance(tokens, torch.Tensor):
        got = type(tokens).__name__
        raise TypeError(f"trajectory_tokens must be a torch.Tensor of shape (B, N, {width}), got {got}")
    if not tokens.is_floating_point():
        raise TypeError(f"trajectory_tokens must be a float tensor, got dtype {tokens.dtype}")
    if tokens.ndim != 3 or tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"trajectory_tokens must have shape (B, N, {width}) with B, N >= 1, got {tuple(tokens.shape)}")
    if tokens.shape[2] != width:
        raise ValueError(
            f"trajectory_tokens have width {tokens.shape[2]} but the TrajTok tokenizer's tokens have {width} "
            "(vision_config.token_width = trajtok_config.token_size)"
        )
    batch, num_tokens = tokens.shape[:2]
    if mask is None:
        raise ValueError("trajectory_mask (bool, (B, N), True for real tokens) is required with trajectory_tokens")
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"trajectory_mask must be a bool torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(f"trajectory_mask must be a bool tensor (True for real tokens), got dtype {mask.dtype}")
    if tuple(mask.shape) != (batch, num_tokens):
        raise ValueError(
            f"trajectory_mask must have shape (B, N) = {(batch, num_tokens)} (that of trajectory_tokens), got "
            f"{tuple(mask.shape)}"
        )
    empty = torch.nonzero(~mask.any(dim=1)).flatten().tolist()
    if empty:
        raise ValueError(f"trajectory_mask has no real token for video(s) {empty}: each video needs at least one")
    checked = tokens if vision_config.attend_to_inactive_tokens else tokens[mask]
    if not bool(torch.isfinite(checked).all()):
        raise ValueError("trajectory_tokens must be finite, got NaN or inf values")
    if spans is None:
        return
    if not isinstance(spans, torch.Tensor):
        raise TypeError(f"trajectory_spans must be an integer torch.Tensor, got {type(spans).__name__}")
    if spans.is_floating_point() or spans.is_complex() or spans.dtype == torch.bool:
        raise TypeError(f"trajectory_spans must be an integer tensor of frame indices, got dtype {spans.dtype}")
    if tuple(spans.shape) != (batch, num_tokens, 2):
        raise ValueError(
            f"trajectory_spans must have shape (B, N, 2) = {(batch, num_tokens, 2)} ([start, end) frames of each "
            f"token), got {tuple(spans.shape)}"
        )
    real = spans[mask]
    if bool((real[:, 0] < 0).any()):
        raise ValueError(f"trajectory_spans must start at frame 0 or later, got start {int(real[:, 0].min())}")
    bad = real[:, 1] <= real[:, 0]
    if bool(bad.any()):
        start, end = (int(v) for v in real[bad][0])
        raise ValueError(f"trajectory_spans must be [start, end) with end > start, got [{start}, {end})")


def _check_index_range(name: str, value: torch.Tensor, size: int, what: str) -> None:
    """`value` must hold integer indices into a table of `size` rows."""
    if value.is_floating_point() or value.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {value.dtype}")
    if value.numel():
        low, high = (int(v) for v in torch.aminmax(value))
        if low < 0 or high >= size:
            raise ValueError(f"{name} must be in [0, {size}) ({what}), got values in [{low}, {high}]")


def _flag(value, name: str, *configs):
    """An output flag (`output_attentions` / `output_hidden_states`): the argument when given, else whether any of the
    configs sets it (a model's config and its tower's sub-config, as transformers' composite models read them)."""
    if value is not None:
        return value
    return any(bool(getattr(config, name, False)) for config in configs)


def _build_text_model(text_config, text_pooling: str) -> PreTrainedModel:
    """AutoModel.from_config(text_config); without its pooling layer when the pooler output is not used and the
    model class supports `add_pooling_layer` (BERT-like), so no parameter stays untrained."""
    kwargs = {}
    if text_pooling != "pooler":
        from transformers.models.auto.modeling_auto import MODEL_MAPPING

        try:
            model_class = MODEL_MAPPING[type(text_config)]
        except KeyError:
            model_class = None
        if model_class is not None and "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
            kwargs["add_pooling_layer"] = False
    return from_sub_config(AutoModel, text_config, **kwargs)


class TrajViT2Model(TrajViT2PreTrainedModel):
    """Video-text CLIP model with trajectory (or ViT3D patch) tokens: see the module docstring.

    Example:

    ```python
    >>> model = AutoModel.from_pretrained(path)
    >>> processor = AutoProcessor.from_pretrained(path)
    >>> inputs = processor(text=["a dog runs", "a car turns"], videos=[clip_a, clip_b], return_tensors="pt")
    >>> out = model(**inputs)
    >>> out.logits_per_text.softmax(dim=-1)  # which clip each caption describes
    ```
    """

    config_class = TrajViT2Config
    main_input_name = "input_ids"

    def __init__(self, config: TrajViT2Config):
        super().__init__(config)
        if config.vision_config._attn_implementation is None:
            # PreTrainedModel.__init__ resolves the attention implementation of the top-level config only; the vision
            # encoder is not a PreTrainedModel of its own, so its config inherits the resolved value.
            config.vision_config._attn_implementation_internal = config._attn_implementation
        self.vision_model = TrajViT2VisionTransformer(config.vision_config)
        self.text_model = _build_text_model(config.text_config, config.text_pooling)
        bias = config.projection_bias
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=bias)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=bias)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        # The text tower's token embeddings (resize_token_embeddings, PEFT).
        return self.text_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.text_model.set_input_embeddings(value)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_text_pretrained(
        cls,
        text_model_name_or_path,
        config: TrajViT2Config | None = None,
        text_model_kwargs: dict | None = None,
        **config_kwargs,
    ) -> TrajViT2Model:
        """A new TrajViT2Model (randomly initialised vision tower and projections) whose text tower is the pretrained
        text encoder at `text_model_name_or_path` (a local folder or Hub id loadable with `AutoModel`).

        Args:
            text_model_name_or_path: the pretrained text encoder.
            config ([`TrajViT2Config`], *optional*): the rest of the model; its `text_config` is replaced by the
                pretrained model's. Without it, `TrajViT2Config(**config_kwargs)` is used.
            text_model_kwargs (`dict`, *optional*): passed to `AutoModel.from_pretrained` of the text encoder.
        """
        text_model = AutoModel.from_pretrained(text_model_name_or_path, **(text_model_kwargs or {}))
        text_config = copy.deepcopy(text_model.config)
        if config is None:
            config = TrajViT2Config(text_config=text_config, **config_kwargs)
        else:
            if config_kwargs:
                raise TypeError(f"pass either config or config keyword arguments, got both ({sorted(config_kwargs)})")
            config = copy.deepcopy(config)
            config.text_config = text_config
            config._validate_trajvit2()
        model = cls(config)
        result = model.text_model.load_state_dict(text_model.state_dict(), strict=False)
        unexpected = [k for k in result.unexpected_keys if not k.startswith("pooler.")]
        if result.missing_keys or unexpected:
            raise ValueError(
                f"the pretrained text model at {text_model_name_or_path!r} does not match the text tower: missing "
                f"{result.missing_keys}, unexpected {unexpected}"
            )
        return model

    # ------------------------------------------------------------------ checks
    def _text_position_limit(self) -> int | None:
        """Length of the text tower's absolute position table (`max_position_embeddings`); None for rotary
        positions, which have no table."""
        text_config = self.config.text_config
        if getattr(text_config, "rope_parameters", None) is not None:
            return None
        return getattr(text_config, "max_position_embeddings", None)

    def _check_text(self, input_ids, attention_mask, token_type_ids=None, position_ids=None) -> None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
            raise ValueError(
                f"input_ids must be a (batch, sequence) tensor of token ids, got "
                f"{tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__}"
            )
        if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise ValueError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}")
        if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids needs at least one text of one token, got shape {tuple(input_ids.shape)}")
        _check_index_range(
            "input_ids",
            input_ids,
            self.text_model.get_input_embeddings().num_embeddings,
            "the text model's vocabulary size",
        )
        limit = self._text_position_limit()
        if position_ids is None and limit is not None and input_ids.shape[1] > limit:
            raise ValueError(
                f"input_ids has {input_ids.shape[1]} tokens per text but the text model's position table holds "
                f"{limit} (text_config.max_position_embeddings): truncate the texts (the processor does with "
                "truncation=True)"
            )
        for name, value in (
            ("attention_mask", attention_mask),
            ("token_type_ids", token_type_ids),
            ("position_ids", position_ids),
        ):
            if value is not None and (not isinstance(value, torch.Tensor) or value.shape != input_ids.shape):
                raise ValueError(
                    f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, got "
                    f"{tuple(value.shape) if isinstance(value, torch.Tensor) else value!r}"
                )
        if attention_mask is not None:
            if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
                raise ValueError("attention_mask must hold 1 for tokens to attend to and 0 for padding, got others")
            empty = torch.nonzero(attention_mask.sum(dim=1) == 0).flatten().tolist()
            if empty:
                raise ValueError(
                    f"attention_mask masks every token of text(s) {empty}: each text needs at least one attended token"
                )
        type_vocab_size = getattr(self.config.text_config, "type_vocab_size", None)
        if token_type_ids is not None and type_vocab_size is not None:
            _check_index_range("token_type_ids", token_type_ids, type_vocab_size, "text_config.type_vocab_size")
        if position_ids is not None and limit is not None:
            _check_index_range("position_ids", position_ids, limit, "text_config.max_position_embeddings")

    # ------------------------------------------------------------------ towers
    def _text_pooled(self, text_outputs, attention_mask) -> torch.Tensor:
        pooling = self.config.text_pooling
        if pooling == "cls":
            return text_outputs.last_hidden_state[:, 0]
        if pooling == "pooler":
            if text_outputs.pooler_output is None:
                raise ValueError(f"text_pooling='pooler' but {type(self.text_model).__name__} returns no pooler_output")
            return text_outputs.pooler_output
        hidden = text_outputs.last_hidden_state
        if attention_mask is None:
            return hidden.mean(dim=1)
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)

    def _run_text(
        self, input_ids, attention_mask, token_type_ids, position_ids, output_attentions, output_hidden_states
    ):
        text_config = self.config.text_config
        kwargs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "output_attentions": _flag(output_attentions, "output_attentions", self.config, text_config),
            "output_hidden_states": _flag(output_hidden_states, "output_hidden_states", self.config, text_config),
            "return_dict": True,
        }
        # Only pass what is given: not every text encoder takes token_type_ids.
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        text_outputs = self.text_model(**kwargs)
        return text_outputs, self._text_pooled(text_outputs, attention_mask)

    def _run_vision(
        self, pixel_values_videos, tokens_per_trajectory, output_attentions, output_hidden_states, precomputed=None
    ):
        vision_config = self.config.vision_config
        return self.vision_model(
            pixel_values_videos,
            tokens_per_trajectory,
            _flag(output_hidden_states, "output_hidden_states", self.config, vision_config),
            _flag(output_attentions, "output_attentions", self.config, vision_config),
            **(precomputed or {}),
        )

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
    ) -> BaseModelOutputWithPooling | tuple:
        r"""
        Args:
            input_ids, attention_mask, token_type_ids, position_ids: as in [`forward`].
            output_attentions, output_hidden_states (*optional*): passed to the text model.
            return_dict (`bool`, *optional*): False returns a tuple (defaults to `config.return_dict`).

        Returns:
            The text tower's output whose `pooler_output` is the projected text embedding `(B, projection_dim)`,
            **not** L2-normalised (normalise it for cosine retrieval; `forward` returns normalised embeddings).
        """
        self._check_text(input_ids, attention_mask, token_type_ids, position_ids)
        text_outputs, pooled = self._run_text(
            input_ids, attention_mask, token_type_ids, position_ids, output_attentions, output_hidden_states
        )
        text_outputs.pooler_output = self.text_projection(pooled)
        return text_outputs

    @can_return_tuple
    def get_video_features(
        self,
        pixel_values_videos: torch.Tensor | None = None,
        tokens_per_trajectory: int | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        trajectory_tokens: torch.Tensor | None = None,
        trajectory_mask: torch.Tensor | None = None,
        trajectory_spans: torch.Tensor | None = None,
    ) -> TrajViT2VisionOutput | tuple:
        r"""
        Args:
            pixel_values_videos (`torch.FloatTensor` of shape `(batch, frames, 3, height, width)`, *optional*):
                Frames normalised by the processor; an image is a 1-frame video. Cast to the model's dtype. Exactly
                one of `pixel_values_videos` and `trajectory_tokens` is required.
            tokens_per_trajectory (`int`, *optional*): TrajTok only, tokens per trajectory n (pixels only).
            output_attentions, output_hidden_states (*optional*): see [`TrajViT2VisionOutput`].
            trajectory_tokens, trajectory_mask, trajectory_spans (*optional*): precomputed TrajTok tokens instead of
                pixels, one embedding per video of any length: see [`TrajViT2VisionModel.forward`].
            return_dict (`bool`, *optional*): False returns a tuple (defaults to `config.return_dict`).

        Returns:
            [`TrajViT2VisionOutput`] whose `pooler_output` is the projected video embedding `(B, projection_dim)`,
            **not** L2-normalised.
        """
        precomputed = self._prepare_trajectory_tokens(
            pixel_values_videos, trajectory_tokens, trajectory_mask, trajectory_spans, tokens_per_trajectory
        )
        if precomputed is not None:
            vision_outputs = self._run_vision(None, None, output_attentions, output_hidden_states, precomputed)
            vision_outputs.pooler_output = self.visual_projection(vision_outputs.pooler_output)
            return vision_outputs
        return self._video_features(
            "pixel_values_videos", pixel_values_videos, tokens_per_trajectory, output_attentions, output_hidden_states
        )

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        tokens_per_trajectory: int | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
    ) -> TrajViT2VisionOutput | tuple:
        r"""Images `pixel_values` (batch, 3, height, width) as 1-frame videos; see [`get_video_features`]."""
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
            got = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise ValueError(f"pixel_values must be a (batch, 3, height, width) tensor of images, got {got}")
        return self._video_features(
            "pixel_values", pixel_values.unsqueeze(1), tokens_per_trajectory, output_attentions, output_hidden_states
        )

    def _video_features(
        self, name, pixel_values_videos, tokens_per_trajectory, output_attentions, output_hidden_states
    ):
        pixel_values_videos = self._prepare_video(name, pixel_values_videos)
        vision_outputs = self._run_vision(
            pixel_values_videos, tokens_per_trajectory, output_attentions, output_hidden_states
        )
        vision_outputs.pooler_output = self.visual_projection(vision_outputs.pooler_output)
        return vision_outputs

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        segmentation_labels: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        tokens_per_trajectory: int | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | int | list[int] | None = None,
        return_dict: bool | None = None,
        trajectory_tokens: torch.FloatTensor | None = None,
        trajectory_mask: torch.BoolTensor | None = None,
        trajectory_spans: torch.LongTensor | None = None,
        **kwargs,
    ) -> TrajViT2Output | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(B_t, sequence_length)`):
                Token ids of the captions (from the processor's tokenizer).
            pixel_values_videos (`torch.FloatTensor` of shape `(B_v, frames, 3, height, width)`, *optional*):
                Normalised frames; an image is a 1-frame video. Cast to the model's dtype. Exactly one of
                `pixel_values_videos` and `trajectory_tokens` is required.
            attention_mask, token_type_ids, position_ids (*optional*):
                Passed to the text model (every text must attend to at least one token).
            segmentation_labels (`torch.LongTensor` of shape `(B_v, T, h, w)`, *optional*):
                Ground-truth trajectory id per pixel of the tokenizer's mask grid (`-100` = unlabeled). Adds the
                segmentation loss (TrajTok tokenizer only). Implies `return_loss=True`.
            return_loss (`bool`, *optional*):
                Compute the loss (needs B_v == B_t: text i is the caption of video i). Defaults to True when
                `segmentation_labels` are given, else False.
            tokens_per_trajectory (`int`, *optional*):
                TrajTok only: tokens per trajectory n (None: sampled per step in training, config value in eval).
            output_attentions (`bool`, *optional*):
                Also return the attention weights of both towers (in `vision_model_output` / `text_model_output`;
                eager attention only). Defaults to the configs' `output_attentions`.
            output_hidden_states (`bool`, `int` or `list[int]`, *optional*):
                Also return the hidden states of both towers (all, or those at the given indices), in
                `vision_model_output` / `text_model_output`. Defaults to the configs' `output_hidden_states`.
            trajectory_tokens (`torch.FloatTensor` of shape `(B_v, N, token_width)`, *optional*),
            trajectory_mask (`torch.BoolTensor` of shape `(B_v, N)`, *optional*),
            trajectory_spans (`torch.LongTensor` of shape `(B_v, N, 2)`, *optional*):
                Precomputed TrajTok tokens instead of pixels (e.g. a long video's merged tokens), for retrieval
                logits and the contrastive loss; see [`TrajViT2VisionModel.forward`]. Not with `segmentation_labels`
                (no tokenizer runs).
        """
        if kwargs:
            raise TypeError(f"TrajViT2Model.forward got unexpected arguments {sorted(kwargs)}")
        if pixel_values_videos is None and trajectory_tokens is None:
            raise ValueError(
                "pixel_values_videos is required, or precomputed trajectory_tokens (use get_text_features for text "
                "only, get_image_features for images)"
            )
        if input_ids is None:
            raise ValueError("input_ids is required (use get_video_features for videos only)")
        precomputed = self._prepare_trajectory_tokens(
            pixel_values_videos, trajectory_tokens, trajectory_mask, trajectory_spans, tokens_per_trajectory
        )
        if precomputed is None:
            pixel_values_videos = self._prepare_video("pixel_values_videos", pixel_values_videos)
            num_videos = pixel_values_videos.shape[0]
        else:
            num_videos = trajectory_tokens.shape[0]
            if segmentation_labels is not None:
                raise ValueError(
                    "segmentation_labels supervise the TrajTok segmenter, which does not run on trajectory_tokens: "
                    "pass pixel_values_videos"
                )
        self._check_text(input_ids, attention_mask, token_type_ids, position_ids)
        if return_loss is None:
            return_loss = segmentation_labels is not None
        elif segmentation_labels is not None and not return_loss:
            raise ValueError("segmentation_labels were given with return_loss=False: drop them or set return_loss=True")
        if return_loss and input_ids.shape[0] != num_videos:
            video_name = "pixel_values_videos" if precomputed is None else "trajectory_tokens"
            raise ValueError(
                f"return_loss=True needs one caption per video: input_ids has batch size {input_ids.shape[0]} but "
                f"{video_name} has {num_videos}"
            )
        if segmentation_labels is not None:
            self._check_segmentation_labels_early(segmentation_labels, pixel_values_videos)
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        vision_outputs = self._run_vision(
            pixel_values_videos, tokens_per_trajectory, output_attentions, output_hidden_states, precomputed
        )
        text_outputs, text_pooled = self._run_text(
            input_ids, attention_mask, token_type_ids, position_ids, output_attentions, output_hidden_states
        )
        video_embeds = F.normalize(self.visual_projection(vision_outputs.pooler_output), dim=-1)
        text_embeds = F.normalize(self.text_projection(text_pooled), dim=-1)
        logit_scale = self.logit_scale.exp()
        logits_per_text = logit_scale * text_embeds @ video_embeds.t()
        logits_per_video = logits_per_text.t()

        loss = contrastive_loss = segmentation_loss = None
        if return_loss:
            contrastive_loss = clip_contrastive_loss(video_embeds, text_embeds, logit_scale)
            loss = self.config.contrastive_loss_weight * contrastive_loss
            if segmentation_labels is not None:
                logits = vision_outputs.assignment_logits
                if tuple(segmentation_labels.shape) != tuple(logits.shape[:-1]):
                    raise ValueError(
                        f"segmentation_labels must have shape (B, T, h, w) = {tuple(logits.shape[:-1])} (the "
                        f"tokenizer's mask grid), got {tuple(segmentation_labels.shape)}"
                    )
                trajtok_config = self.config.vision_config.trajtok_config
                segmentation_loss = trajectory_segmentation_loss(
                    logits,
                    segmentation_labels,
                    tie_break=trajtok_config.matching_tie_break,
                    chunk_size=trajtok_config.chunk_size,  # slots are chunk-local: match per chunk
                )
                loss = loss + self.config.segmentation_loss_weight * segmentation_loss

        output = TrajViT2Output(
            loss=loss,
            logits_per_video=logits_per_video,
            logits_per_text=logits_per_text,
            video_embeds=video_embeds,
            text_embeds=text_embeds,
            contrastive_loss=contrastive_loss,
            segmentation_loss=segmentation_loss,
            vision_model_output=vision_outputs,
            text_model_output=text_outputs,
        )
        return output if return_dict else output.to_tuple()

    def _check_segmentation_labels_early(self, segmentation_labels, pixel_values_videos) -> None:
        """Checks that need no forward pass (the (h, w) grid is checked against the logits afterwards)."""
        if self.config.vision_config.vision_tokenizer != "trajtok":
            raise ValueError(
                "segmentation_labels supervise the TrajTok segmenter; this model uses vision_tokenizer="
                f"{self.config.vision_config.vision_tokenizer!r}"
            )
        if not isinstance(segmentation_labels, torch.Tensor):
            raise TypeError(f"segmentation_labels must be a torch.Tensor, got {type(segmentation_labels).__name__}")
        if segmentation_labels.is_floating_point() or segmentation_labels.dtype == torch.bool:
            raise ValueError(
                "segmentation_labels must be integer trajectory ids (-100 = unlabeled), got dtype "
                f"{segmentation_labels.dtype}"
            )
        batch, frames = pixel_values_videos.shape[:2]
        if segmentation_labels.ndim != 4 or tuple(segmentation_labels.shape[:2]) != (batch, frames):
            raise ValueError(
                f"segmentation_labels must have shape (B, T, h, w) = ({batch}, {frames}, h, w) on the tokenizer's "
                f"mask grid, got {tuple(segmentation_labels.shape)}"
            )
