"""TrajVLM: TrajTok as the connector of a video LLM (Zheng et al., CVPR 2026, arXiv 2602.22779, Sec. 5).

The LLM sees one token (or ``tokens_per_trajectory``) per *active* object trajectory of each chunk instead of hundreds
of patches per frame:

1. Vision tower (SigLIP by default) on every frame at its own size → patch features on a g×g grid (27×27 at 378²).
2. Segmenter (a [`TrajTokModel`], frozen by default) on the same frames resized to ``segmenter_image_size`` with its
   own normalisation → assignment logits on its 1/4 grid (56×56 at 224²) and its K trajectory queries per chunk.
3. The logits are resized (bilinear) to the tower's g×g grid and argmax'd: the hard mask on the tower grid. A
   trajectory is active iff it owns at least one tower patch *after* this resize.
4. The queries are linearly mapped to the tower width (+ Fourier-ring sub-token offsets when n > 1, the Matryoshka
   tokens of paper Sec. 3); a hard-mask refinement Perceiver (paper Sec. 3; the package's segment-softmax attention)
   pools each trajectory's tower patches into its token(s). Chunks of ``chunk_size`` frames are tokenized independently
   (as one batch); a last shorter chunk is kept.
5. A 2-layer MLP projects the active tokens to the LLM width (LLaVA's projector).

``connector_type="patch_pool"`` replaces 2–4 by p×p (× temporal) average pooling of the tower features: the paper's
PatchVLM baseline, through the same projector and the same placeholder expansion.

Placeholders, two forms (vectorised, no loop over rows, videos or tokens):

* slot form (what [`TrajVLMProcessor`] writes with a ``video_slot_layout``): one ``<video>`` per connector slot
  (chunks × K × n, fixed by the frame count). The active slots receive the video tokens; the empty ones get attention
  mask 0 and are not counted in the positions (cumulative sum of the mask), so the LLM computes what it would without
  them. The cache remembers its empty slots, so every generation path (continuing from a returned cache, prompt-lookup
  and assisted decoding, beam search, ``inputs_embeds``) sees the same sequence as greedy decoding.
* compact form: ONE ``<video>`` per video; ``forward`` replaces it by the video's active tokens (per-token repeat
  counts, cumulative sums, one scatter). Rows keep the input's padding side. The output is longer than the input and
  carries the ``expanded_*`` mask, positions and labels; generation supports greedy / sampled decoding only.

Videos are read only at a prefill from an empty cache (:meth:`prepare_inputs_for_generation` also gives them to an
assistant model, which transformers would leave without).

Precomputed video tokens (an extension; the official release has no long-video path): ``forward`` and ``generate``
take ``video_embeds`` instead of ``pixel_values_videos``: one ``(N_i, D)`` tensor of LLM-space tokens per video, what
``get_video_features(...).pooler_output`` returns, or any other token set of that width, e.g. a long video tokenized
chunk by chunk whose tokens are merged per trajectory across chunks (then N_i is that video's number of merged tokens,
whatever its length). ``mm_encoder_outputs={"video": output}`` (transformers' argument for pre-encoded multimodal
inputs, as in LLaVA) is read the same way, from ``output.pooler_output``. The prompt holds either ONE ``<video>`` per
video (the compact form above) or one ``<video>`` per video token (N_i placeholders, LLaVA's layout: filled in place,
the sequence keeps its length and every generation path works). The slot form needs the connector's slot mask, which
a bare token set does not have: it takes pixels.

Differences from the official release: the segmenter's input is derived from the tower-normalised frames (undo the
tower normalisation, bilinear antialiased resize, segmenter normalisation) instead of a second decode at 224²
with bicubic resizing. Only the public ``TrajTokModel.forward`` is called (with ``output_trajectory_tokens=False``:
the segmenter's own refinement Perceiver is skipped), so this file keeps working when the segmenter's internals
change.

Imports only torch, transformers and sibling files (remote code).
"""

from __future__ import annotations

import bisect
import copy
import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_trajvlm import TrajVLMConfig
from .modeling_trajtok import TrajTokModel, fourier_ring_offsets, random_orthonormal
from .modeling_utils_trajtok import SafetensorsFileCheckMixin, check_video_pixels, from_sub_config
from .perceiver_trajtok import HardMask, TrajTokPerceiver

IGNORE_INDEX = -100


# ----------------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class TrajVLMVideoOutput(ModelOutput):
    r"""
    Output of [`TrajVLMModel.get_video_features`]. B = videos, N = connector slots of a video (C·K·n for TrajTok,
    the pooled grid for patch pooling), D = LLM width, D_v = tower width.

    Args:
        pooler_output (`tuple(torch.FloatTensor)`, one per video, each of shape `(num_video_tokens[i], D)`):
            The projected tokens the LLM sees for each video, in chunk order, then trajectory slot, then sub-token.
            Only active trajectories: the count varies per video.
        video_embeds (`torch.FloatTensor` of shape `(sum(num_video_tokens), D)`):
            The same tokens packed video after video (what `forward` scatters into the sequence).
        num_video_tokens (`torch.LongTensor` of shape `(B,)`):
            LLM tokens per video (active trajectories × tokens per trajectory; all slots for patch pooling).
        token_mask (`torch.BoolTensor` of shape `(B, N)`):
            Which connector slots are active.
        last_hidden_state (`torch.FloatTensor` of shape `(B, N, D_v)`):
            Every connector slot before the projector (inactive slots hold finite values without meaning).
        trajectory_ids (`torch.LongTensor` of shape `(B, T, g, g)`, *optional*):
            TrajTok only: the hard mask on the tower's patch grid, global ids ``c·K + k`` (chunk c, trajectory k).
        hidden_states, attentions (*optional*): the vision tower's, over all `B·T` frames, when asked for.
    """

    pooler_output: tuple[torch.FloatTensor, ...] | None = None
    video_embeds: torch.FloatTensor | None = None
    num_video_tokens: torch.LongTensor | None = None
    token_mask: torch.BoolTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    trajectory_ids: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class TrajVLMModelOutputWithPast(ModelOutput):
    r"""
    Output of [`TrajVLMModel`]. L' = length of the expanded sequence (placeholders replaced by video tokens).

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(B, L', D)`): the LLM's last hidden states.
        cache (`Cache`, *optional*): the KV cache of the expanded sequence.
        hidden_states, attentions: as the language model returns them, when asked for.
        expanded_attention_mask (`torch.LongTensor` of shape `(B, L')`, *optional*):
            The attention mask of the expanded sequence (None when nothing was expanded).
        expanded_position_ids (`torch.LongTensor` of shape `(B, L')`, *optional*): its position ids.
        expanded_labels (`torch.LongTensor` of shape `(B, L')`, *optional*): labels, -100 over video tokens and padding.
        video_token_mask (`torch.BoolTensor` of shape `(B, L')`, *optional*): True at video tokens.
        slot_attention_mask (`torch.LongTensor` of shape `(B, past + L)`, *optional*): slot form with empty slots: the
            attention mask the LLM used (0 at padding and at empty slots).
        video_outputs ([`TrajVLMVideoOutput`], *optional*): the video features that were inserted (from
            `video_embeds`: only `pooler_output`, `video_embeds` and `num_video_tokens` are set).
    """

    last_hidden_state: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    expanded_attention_mask: torch.LongTensor | None = None
    expanded_position_ids: torch.LongTensor | None = None
    expanded_labels: torch.LongTensor | None = None
    video_token_mask: torch.BoolTensor | None = None
    video_outputs: TrajVLMVideoOutput | None = None
    slot_attention_mask: torch.LongTensor | None = None


@dataclass
class TrajVLMCausalLMOutputWithPast(ModelOutput):
    r"""
    Output of [`TrajVLMForConditionalGeneration`]; fields as [`TrajVLMModelOutputWithPast`] plus:

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): next-token cross-entropy over the non -100 labels of
            the expanded sequence (video tokens never count).
        logits (`torch.FloatTensor` of shape `(B, L', vocab)`): LM logits of the expanded sequence (the last
            `logits_to_keep` positions when that is set).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    expanded_attention_mask: torch.LongTensor | None = None
    expanded_position_ids: torch.LongTensor | None = None
    expanded_labels: torch.LongTensor | None = None
    video_token_mask: torch.BoolTensor | None = None
    video_outputs: TrajVLMVideoOutput | None = None
    slot_attention_mask: torch.LongTensor | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------------------------
class TrajVLMMultiModalProjector(nn.Module):
    """Tower width → LLM width → LLM width (LLaVA's 2-layer MLP)."""

    def __init__(self, config: TrajVLMConfig):
        super().__init__()
        text_width = config.text_config.hidden_size
        bias = config.multimodal_projector_bias
        self.linear_1 = nn.Linear(config.vision_config.hidden_size, text_width, bias=bias)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(text_width, text_width, bias=bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(features)))


class TrajVLMTrajectoryConnector(nn.Module):
    """The TrajVLM connector (paper Sec. 5): resized hard mask + mapped segmenter queries + hard-mask refinement
    Perceiver over tower features."""

    def __init__(self, config: TrajVLMConfig):
        super().__init__()
        width = config.vision_config.hidden_size
        n = config.tokens_per_trajectory
        self.tokens_per_trajectory = n
        self.query_projection = nn.Linear(config.trajtok_config.hidden_size, width)
        self.subtoken_offsets = nn.Parameter(torch.empty(n, width)) if n > 1 else None
        # Its attention implementation is the model's (`attn_implementation=`, `set_attn_implementation`).
        self.perceiver = TrajTokPerceiver(
            width,
            config.connector_num_attention_heads,
            config.connector_depth,
            config.connector_ff_mult,
            rope_theta=config.connector_rope_theta,
            attention_config=config,
        )

    def forward(self, features: torch.Tensor, logits: torch.Tensor, queries: torch.Tensor):
        """One batch of chunks.

        Args:
            features: (b, t, g, g, D_v) tower patch features.
            logits: (b, t, h, w, K) the segmenter's assignment logits (local ids of the chunk).
            queries: (b, K, D_s) the segmenter's trajectory queries.
        Returns:
            tokens (b, K·n, D_v), active (b, K) bool, ids (b, t, g, g) local trajectory id per tower patch.
        """
        b, t, g = features.shape[:3]
        num_traj = logits.shape[-1]
        n = self.tokens_per_trajectory
        # Resize the logits (not the ids) to the tower grid, then argmax: the hard mask on the tower's patches.
        resized = F.interpolate(
            logits.permute(0, 1, 4, 2, 3).flatten(0, 1), size=(g, g), mode="bilinear", align_corners=False
        )
        ids = resized.argmax(dim=1).reshape(b, t * g * g)
        active = torch.zeros(b, num_traj, dtype=torch.bool, device=ids.device).scatter_(1, ids, True)
        latents = self.query_projection(queries)  # (b, K, D_v)
        if self.subtoken_offsets is not None:
            latents = (latents.unsqueeze(2) + self.subtoken_offsets.view(1, 1, n, -1)).flatten(1, 2)
        hard_mask = HardMask(trajectory_ids=ids, tokens_per_trajectory=n)
        tokens = self.perceiver(latents, features.reshape(b, t * g * g, -1), hard_mask)
        return tokens, active, ids.reshape(b, t, g, g)


# Modules of a vision tower that act after its last hidden state: the post-LayerNorm (SigLIP, CLIP) and the pooling
# head (SigLIP with `vision_use_head`). The connector reads `hidden_states[vision_feature_layer]`, which never passes
# through them, so they would get no gradient and compute an unused output.
UNUSED_TOWER_MODULES = ("post_layernorm", "head")
UNUSED_TOWER_KEYS = r"vision_tower\.(vision_model\.)?(post_layernorm|head)\."


def drop_unused_tower_modules(tower: nn.Module) -> None:
    """Replace the tower's :data:`UNUSED_TOWER_MODULES` (on the tower or its `vision_model`) by `nn.Identity`."""
    for parent in (tower, getattr(tower, "vision_model", None)):
        for name in UNUSED_TOWER_MODULES:
            if isinstance(parent, nn.Module) and isinstance(getattr(parent, name, None), nn.Module):
                setattr(parent, name, nn.Identity())


def patch_pool(features: torch.Tensor, spatial: int, temporal: int) -> torch.Tensor:
    """PatchVLM baseline: average pooling of (b, t, g, g, D) features over (temporal × spatial × spatial) windows.

    A last partial window averages only the positions it covers. Returns (b, t'·g'·g', D), (t', row, col) order.
    The average runs in float32 (CPU torch has no half-precision 3-D average pooling) and returns the input dtype."""
    x = features.permute(0, 4, 1, 2, 3)  # (b, D, t, g, g)
    kernel = (min(temporal, x.shape[2]), spatial, spatial)
    pooled = F.avg_pool3d(x.float(), kernel_size=kernel, stride=kernel, ceil_mode=True, count_include_pad=False)
    return pooled.to(features.dtype).flatten(2).transpose(1, 2)


def _chunk_groups(frames: int, chunk: int) -> list[tuple[int, int, int]]:
    """(start, stop, chunks) of the full chunks (as one group) and of a last shorter chunk."""
    num_full, remainder = divmod(frames, chunk)
    groups = []
    if num_full:
        groups.append((0, num_full * chunk, num_full))
    if remainder:
        groups.append((num_full * chunk, frames, 1))
    return groups


def _skip_unattended(shift_labels: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """Move each next-token target from an unattended position (an empty slot) to the last attended position before
    it, and drop targets left on unattended positions: the targets of the dropped-token sequence."""
    attended = attended.bool()
    positions = torch.arange(attended.shape[1], device=attended.device).expand_as(attended)
    last_attended = torch.where(attended, positions, -1).cummax(dim=1).values
    moved = torch.full_like(shift_labels, IGNORE_INDEX)
    valid = (shift_labels != IGNORE_INDEX) & (last_attended >= 0)
    rows = valid.nonzero(as_tuple=True)[0]
    moved[rows, last_attended[valid]] = shift_labels[valid]
    return moved


def _repeat_videos_per_row(videos, placeholders_per_row: list[int], expand_size: int):
    """Precomputed per-video tokens for prompts whose rows are each repeated `expand_size` times: row r's videos
    [A, B] become [A, B, A, B]. A row holds as many videos as placeholders (one per video) or the videos whose tokens
    fill its placeholders (one per token). Counts that fit neither are left as they are (forward names the mismatch).
    Runs once per `generate`, on the list of videos (not in a forward pass)."""
    if isinstance(videos, torch.Tensor):
        videos = tuple(videos.unbind(0))
    if not isinstance(videos, (list, tuple)) or not all(isinstance(v, torch.Tensor) for v in videos):
        return videos
    counts = [len(v) for v in videos]
    if sum(placeholders_per_row) == len(videos):
        per_row = list(placeholders_per_row)
    elif sum(placeholders_per_row) == sum(counts):
        video_ends = list(itertools.accumulate(counts))
        row_ends = list(itertools.accumulate(placeholders_per_row))
        if not all(end == 0 or end in video_ends for end in row_ends):
            return videos  # a video's tokens would straddle two rows
        videos_before = [0] + [bisect.bisect_right(video_ends, end) for end in row_ends]
        per_row = [after - before for before, after in itertools.pairwise(videos_before)]
    else:
        return videos
    starts = itertools.accumulate([0, *per_row])
    return [
        video
        for start, n in zip(starts, per_row, strict=False)
        for video in list(videos[start : start + n]) * expand_size
    ]


# ----------------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------------
class TrajVLMPreTrainedModel(SafetensorsFileCheckMixin, PreTrainedModel):
    config_class = TrajVLMConfig
    config: TrajVLMConfig
    base_model_prefix = "model"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    _no_split_modules = ["TrajTokPerceiverLayer"]
    _skip_keys_device_placement = "cache"
    # Checkpoints saved while the tower kept its unused post-LayerNorm / pooling head load without a warning.
    _keys_to_ignore_on_load_unexpected = [UNUSED_TOWER_KEYS]

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, then re-freeze the segmenter (loading recreates the parameters with
        `requires_grad=True`)."""
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded
        model._freeze_segmenter()
        return loaded

    def _freeze_segmenter(self) -> None:
        base = self if isinstance(self, TrajVLMModel) else getattr(self, self.base_model_prefix, None)
        if isinstance(base, TrajVLMModel) and base.segmenter is not None and self.config.freeze_segmenter:
            base.segmenter.requires_grad_(False)

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, TrajVLMTrajectoryConnector) and module.subtoken_offsets is not None:
            config = self.config
            freqs = config.subtoken_fourier_frequencies
            width = config.vision_config.hidden_size
            offsets = fourier_ring_offsets(config.tokens_per_trajectory, freqs, random_orthonormal(2 * freqs, width))
            init.copy_(module.subtoken_offsets, offsets * config.subtoken_init_scale)


class TrajVLMModel(TrajVLMPreTrainedModel):
    """Vision tower + connector (TrajTok or patch pooling) + projector + language model (without LM head)."""

    def __init__(self, config: TrajVLMConfig):
        super().__init__(config)
        self.vision_tower = from_sub_config(AutoModel, config.vision_config)
        drop_unused_tower_modules(self.vision_tower)
        if config.connector_type == "trajtok":
            self.segmenter = TrajTokModel(config.trajtok_config)
            self.connector = TrajVLMTrajectoryConnector(config)
        else:
            self.segmenter = None
            self.connector = None
        self.multi_modal_projector = TrajVLMMultiModalProjector(config)
        self.language_model = from_sub_config(AutoModel, config.text_config)
        self.post_init()
        self._freeze_segmenter()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.segmenter is not None and self.config.freeze_segmenter:
            self.segmenter.eval()  # a frozen segmenter always runs as at inference
        return self

    # ------------------------------------------------------------------ video
    def _check_pixel_values(self, pixel_values_videos) -> None:
        check_video_pixels(pixel_values_videos)
        size = self.config.vision_config.image_size
        height, width = pixel_values_videos.shape[-2:]
        if (height, width) != (size, size):
            raise ValueError(
                f"pixel_values_videos frames must be {size}×{size} (the vision tower's image_size), got "
                f"{height}×{width}: process the videos with this model's processor"
            )

    def _tower_features(self, frames: torch.Tensor, output_attentions: bool = False):
        """(M, 3, H, W) → (M, g, g, D_v) patch features of the selected tower layer, and the tower's outputs."""
        outputs = self.vision_tower(
            pixel_values=frames, output_hidden_states=True, output_attentions=output_attentions, return_dict=True
        )
        features = outputs.hidden_states[self.config.vision_feature_layer]
        if self.config.vision_feature_select_strategy == "default":
            features = features[:, 1:]
        g = self.config.patch_grid
        if features.shape[1] != g * g:
            raise ValueError(
                f"the vision tower returned {features.shape[1]} positions per frame, expected {g}×{g} patches (check "
                "vision_feature_select_strategy: 'default' drops a leading [CLS] token)"
            )
        return features.reshape(frames.shape[0], g, g, -1), outputs

    def _segmenter_frames(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """Tower-normalised frames → the segmenter's size and normalisation."""
        config = self.config
        b, t = pixel_values_videos.shape[:2]
        x = pixel_values_videos.flatten(0, 1)
        size = config.segmenter_image_size
        same_norm = (
            config.vision_image_mean == config.segmenter_image_mean
            and config.vision_image_std == config.segmenter_image_std
        )
        if not same_norm:
            v_mean = x.new_tensor(config.vision_image_mean).view(1, 3, 1, 1)
            v_std = x.new_tensor(config.vision_image_std).view(1, 3, 1, 1)
            x = x * v_std + v_mean
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        if not same_norm:
            s_mean = x.new_tensor(config.segmenter_image_mean).view(1, 3, 1, 1)
            s_std = x.new_tensor(config.segmenter_image_std).view(1, 3, 1, 1)
            x = (x - s_mean) / s_std
        return x.reshape(b, t, *x.shape[1:])

    def get_video_features(
        self,
        pixel_values_videos: torch.FloatTensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> TrajVLMVideoOutput | tuple:
        r"""
        The LLM tokens of each video.

        Args:
            pixel_values_videos (`torch.FloatTensor` of shape `(videos, frames, 3, H, W)`):
                Frames normalised by the processor for the vision tower (H = W = `vision_config.image_size`); cast
                to the model's dtype.
            output_hidden_states / output_attentions (`bool`, *optional*): return the vision tower's (default: the
                config's `output_hidden_states` / `output_attentions`).
            return_dict (`bool`, *optional*): False returns a tuple.

        Returns:
            [`TrajVLMVideoOutput`]: `pooler_output` holds one `(num_video_tokens[i], D)` tensor per video (only active
            trajectories), `video_embeds` the same tokens packed, `num_video_tokens` their counts.
        """
        config = self.config
        return_dict = return_dict if return_dict is not None else config.return_dict
        output_hidden_states = output_hidden_states if output_hidden_states is not None else config.output_hidden_states
        output_attentions = output_attentions if output_attentions is not None else config.output_attentions
        self._check_pixel_values(pixel_values_videos)
        pixel_values_videos = pixel_values_videos.to(self.vision_tower.dtype)
        b, t = pixel_values_videos.shape[:2]
        g = config.patch_grid
        features, tower_outputs = self._tower_features(pixel_values_videos.flatten(0, 1), bool(output_attentions))
        features = features.reshape(b, t, g, g, -1)
        groups = _chunk_groups(t, config.chunk_size)

        trajectory_ids = None
        if config.connector_type == "patch_pool":
            parts = []
            for start, stop, chunks in groups:
                chunk_features = features[:, start:stop].reshape(b * chunks, (stop - start) // chunks, g, g, -1)
                pooled = patch_pool(chunk_features, config.patch_pool_size, config.patch_pool_temporal_size)
                parts.append(pooled.reshape(b, -1, pooled.shape[-1]))
            tokens = torch.cat(parts, dim=1)
            token_mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        else:
            segmenter_frames = self._segmenter_frames(pixel_values_videos)
            level = min(config.trajtok_config.tokens_per_trajectory_choices)
            with torch.set_grad_enabled(torch.is_grad_enabled() and not config.freeze_segmenter):
                # Only the logits and queries are used: the segmenter's own refinement Perceiver is skipped.
                segmentation = self.segmenter(
                    segmenter_frames, tokens_per_trajectory=level, output_trajectory_tokens=False, return_dict=True
                )
            num_traj = config.trajtok_config.num_trajectories
            logits = segmentation.assignment_logits  # (b, t, h, w, K), local ids per chunk
            queries = segmentation.trajectory_queries
            queries = queries.reshape(b, -1, num_traj, queries.shape[-1])  # (b, chunks, K, D_s)
            token_parts, active_parts, id_parts = [], [], []
            first_chunk = 0
            for start, stop, chunks in groups:
                frames = (stop - start) // chunks
                chunk_tokens, active, ids = self.connector(
                    features[:, start:stop].reshape(b * chunks, frames, g, g, -1),
                    logits[:, start:stop].reshape(b * chunks, frames, *logits.shape[2:]),
                    queries[:, first_chunk : first_chunk + chunks].flatten(0, 1),
                )
                token_parts.append(chunk_tokens.reshape(b, -1, chunk_tokens.shape[-1]))
                active_parts.append(active.reshape(b, -1))
                chunk_index = torch.arange(first_chunk, first_chunk + chunks, device=ids.device).repeat(b)
                id_parts.append((ids + (chunk_index * num_traj).view(-1, 1, 1, 1)).reshape(b, stop - start, g, g))
                first_chunk += chunks
            tokens = torch.cat(token_parts, dim=1)
            token_mask = torch.cat(active_parts, dim=1).repeat_interleave(config.tokens_per_trajectory, dim=1)
            trajectory_ids = torch.cat(id_parts, dim=1)

        # Only the active tokens are projected (and seen by the LLM).
        video_embeds = self.multi_modal_projector(tokens[token_mask])
        num_video_tokens = token_mask.sum(dim=1)
        output = TrajVLMVideoOutput(
            pooler_output=tuple(torch.split(video_embeds, num_video_tokens.tolist())),
            video_embeds=video_embeds,
            num_video_tokens=num_video_tokens,
            token_mask=token_mask,
            last_hidden_state=tokens,
            trajectory_ids=trajectory_ids,
            hidden_states=tower_outputs.hidden_states if output_hidden_states else None,
            attentions=tower_outputs.attentions if output_attentions else None,
        )
        return output if return_dict else output.to_tuple()

    # ------------------------------------------------------------------ placeholder expansion
    @staticmethod
    def _expand(
        is_video: torch.BoolTensor,
        inputs_embeds: torch.Tensor,
        video_embeds: torch.Tensor,
        num_video_tokens: torch.LongTensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.LongTensor | None,
        labels: torch.LongTensor | None,
    ) -> dict:
        """Replace each placeholder (True in the (B, L) `is_video`) by its video's tokens; vectorised (no loop over
        rows, videos or tokens)."""
        batch, length = is_video.shape
        device = inputs_embeds.device
        real = torch.ones_like(is_video) if attention_mask is None else attention_mask.bool()
        # Right-padded rows stay right-padded; anything else (left-padded or unpadded) is left-padded.
        left_pad = attention_mask is None or not bool((~real[:, -1]).any())

        repeat = real.long()
        repeat[is_video] = num_video_tokens.to(device)  # placeholders take their video's count, row-major order
        ends = repeat.cumsum(dim=1)
        starts = ends - repeat  # first new index of each token within its row's content
        lengths = ends[:, -1]
        new_length = int(lengths.max())
        offset = (new_length - lengths) if left_pad else torch.zeros_like(lengths)

        new_embeds = inputs_embeds.new_zeros(batch, new_length, inputs_embeds.shape[-1])
        text_rows, text_cols = (real & ~is_video).nonzero(as_tuple=True)
        text_dest = offset[text_rows] + starts[text_rows, text_cols]
        new_embeds[text_rows, text_dest] = inputs_embeds[text_rows, text_cols]

        video_rows, video_cols = is_video.nonzero(as_tuple=True)  # one per video, row-major = video order
        counts = num_video_tokens.to(device)
        video_of_token = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
        within = torch.arange(len(video_of_token), device=device) - (counts.cumsum(0) - counts)[video_of_token]
        token_rows = video_rows[video_of_token]
        token_cols = video_cols[video_of_token]
        token_dest = offset[token_rows] + starts[token_rows, token_cols] + within
        new_embeds[token_rows, token_dest] = video_embeds.to(new_embeds.dtype)

        positions = torch.arange(new_length, device=device)
        new_mask = (positions >= offset[:, None]) & (positions < (offset + lengths)[:, None])
        video_token_mask = torch.zeros(batch, new_length, dtype=torch.bool, device=device)
        video_token_mask[token_rows, token_dest] = True

        if position_ids is None:
            new_position_ids = (new_mask.long().cumsum(dim=1) - 1).masked_fill(~new_mask, 0)
        else:
            position_ids = position_ids.expand(batch, -1).to(device)
            extra = torch.where(is_video, repeat - 1, torch.zeros_like(repeat))
            shifted = position_ids + (extra.cumsum(dim=1) - extra)  # positions after the tokens added before
            new_position_ids = torch.zeros(batch, new_length, dtype=position_ids.dtype, device=device)
            new_position_ids[text_rows, text_dest] = shifted[text_rows, text_cols]
            new_position_ids[token_rows, token_dest] = shifted[token_rows, token_cols] + within

        new_labels = None
        if labels is not None:
            new_labels = torch.full((batch, new_length), IGNORE_INDEX, dtype=labels.dtype, device=device)
            new_labels[text_rows, text_dest] = labels.to(device)[text_rows, text_cols]
        return {
            "inputs_embeds": new_embeds,
            "attention_mask": new_mask.long(),
            "position_ids": new_position_ids,
            "labels": new_labels,
            "video_token_mask": video_token_mask,
        }

    # ------------------------------------------------------------------ input checks (public boundary)
    def _check_ids(self, input_ids) -> None:
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
            raise ValueError(
                "input_ids must be a (batch, sequence) tensor, got "
                f"{tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__}"
            )
        if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
            raise TypeError(f"input_ids must be an integer tensor of token ids, got {input_ids.dtype}")
        if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
            raise ValueError(f"empty prompt: input_ids has shape {tuple(input_ids.shape)}")
        vocab = self.config.text_config.vocab_size
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= vocab:
            raise ValueError(
                f"input_ids must lie in [0, {vocab}) (text_config.vocab_size), got values in [{low}, {high}]"
            )

    def _check_labels(self, labels, batch: int, length: int) -> None:
        if labels is None:
            return
        if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex():
            got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise TypeError(f"labels must be an integer tensor of token ids (-100 = ignored), got {got}")
        if tuple(labels.shape) != (batch, length):
            raise ValueError(
                f"labels must have the shape of input_ids / inputs_embeds {(batch, length)}, got {tuple(labels.shape)}"
            )
        vocab = self.config.text_config.vocab_size
        kept = labels[labels != IGNORE_INDEX]
        if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= vocab):
            raise ValueError(
                f"labels must be token ids in [0, {vocab}) (text_config.vocab_size) or {IGNORE_INDEX} (ignored), got "
                f"values in [{int(kept.min())}, {int(kept.max())}]"
            )

    def _check_embeds(self, inputs_embeds) -> None:
        width = self.config.text_config.hidden_size
        if not isinstance(inputs_embeds, torch.Tensor) or inputs_embeds.ndim != 3 or inputs_embeds.shape[-1] != width:
            raise ValueError(
                f"inputs_embeds must be a (batch, sequence, {width}) float tensor, got "
                f"{tuple(inputs_embeds.shape) if isinstance(inputs_embeds, torch.Tensor) else type(inputs_embeds)}"
            )
        if not inputs_embeds.is_floating_point():
            raise TypeError(f"inputs_embeds must be a float tensor, got {inputs_embeds.dtype}")

    @staticmethod
    def _check_attention_mask(attention_mask, batch: int, length: int, past: int) -> None:
        if attention_mask is None:
            return
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.is_complex():
            raise TypeError(f"attention_mask must be a tensor of 0/1, got {type(attention_mask).__name__}")
        if (
            attention_mask.ndim != 2
            or attention_mask.shape[0] != batch
            or attention_mask.shape[1] not in (length, past + length)
        ):
            raise ValueError(
                f"attention_mask must have shape ({batch}, {past + length}) (the cached {past} plus the {length} new "
                f"tokens), got {tuple(attention_mask.shape)}"
            )
        if not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
        if not bool(attention_mask.bool().any(dim=1).all()):
            raise ValueError("empty prompt: a row of attention_mask is all zeros")

    def _placeholder_mask(self, input_ids, inputs_embeds) -> torch.BoolTensor:
        """True at `<video>` placeholders: found by id, or (embeddings only) by equality with the `<video>` embedding,
        as LLaVA does."""
        if input_ids is not None:
            return input_ids == self.config.video_token_id
        token = torch.tensor(self.config.video_token_id, device=inputs_embeds.device)
        return (inputs_embeds == self.get_input_embeddings()(token).to(inputs_embeds.dtype)).all(dim=-1)

    def _check_placeholders(self, is_video, attention_mask, video_outputs, past) -> None:
        """Placeholders against videos. From pixels: V·N of them (slot form: one per connector slot, N = slots of the
        video outputs' token mask) or V (compact form: one per video). From `video_embeds` (no token mask): V or the
        total token count (one per token)."""
        per_row = is_video.sum(dim=1).tolist()
        if video_outputs is None:
            if sum(per_row) and past == 0:
                raise ValueError(
                    f"input_ids hold {sum(per_row)} <video> placeholder(s) (id {self.config.video_token_id}, per row "
                    f"{per_row}) but no pixel_values_videos (or video_embeds) were given"
                )
            return
        if video_outputs.token_mask is None:
            counts = video_outputs.num_video_tokens.tolist()
            if sum(per_row) not in (len(counts), sum(counts)):
                raise ValueError(
                    f"input_ids hold {sum(per_row)} <video> placeholder(s) (per row {per_row}) but video_embeds has "
                    f"{len(counts)} video(s) of {counts} tokens: the prompt needs exactly one <video> token (id "
                    f"{self.config.video_token_id}) per video, or one per video token ({sum(counts)}); videos fill "
                    "the placeholders in row-major order. The slot form (one per connector slot) needs "
                    "pixel_values_videos"
                )
            video_ends = set(itertools.accumulate(counts))
            if sum(per_row) != len(counts) and not all(
                end == 0 or end in video_ends for end in itertools.accumulate(per_row)
            ):
                raise ValueError(
                    f"with one <video> per video token, each row must hold whole videos: rows hold {per_row} "
                    f"placeholders, the videos {counts} tokens"
                )
        else:
            videos, num_slots = video_outputs.token_mask.shape
            if sum(per_row) not in (videos * num_slots, videos):
                raise ValueError(
                    f"input_ids hold {sum(per_row)} <video> placeholder(s) (per row {per_row}) but pixel_values_videos "
                    f"has {videos} video(s) of {num_slots} connector slots: the prompt needs {num_slots} placeholders "
                    "per video "
                    f"(slot form, what TrajVLMProcessor writes with video_slot_layout) or exactly one <video> token "
                    f"(id {self.config.video_token_id}) per video; videos fill the placeholders in row-major order"
                )
        if attention_mask is not None:
            current = attention_mask[:, -is_video.shape[1] :].bool()
            if bool((is_video & ~current).any()):
                raise ValueError("a <video> placeholder lies under attention_mask == 0 (padding)")

    def _precomputed_video_outputs(self, video_embeds, mm_encoder_outputs) -> TrajVLMVideoOutput | None:
        """Check precomputed video tokens (`video_embeds`, or `mm_encoder_outputs["video"].pooler_output`) and pack
        them as the video outputs the placeholders are filled from (no token mask: not the slot form)."""
        name = "video_embeds"
        if mm_encoder_outputs is not None:
            if not isinstance(mm_encoder_outputs, dict):
                raise TypeError(
                    "mm_encoder_outputs must be a dict {'video': output with pooler_output}, got "
                    f"{type(mm_encoder_outputs).__name__}"
                )
            others = sorted(k for k, v in mm_encoder_outputs.items() if k != "video" and v is not None)
            if others:
                raise ValueError(
                    f"mm_encoder_outputs holds {others}: TrajVLM takes videos only (an image is a 1-frame video)"
                )
            video = mm_encoder_outputs.get("video")
            if video is not None:
                if video_embeds is not None:
                    raise ValueError("pass video_embeds or mm_encoder_outputs['video'], not both")
                video_embeds = getattr(video, "pooler_output", None)
                name = "mm_encoder_outputs['video'].pooler_output"
                if video_embeds is None:
                    raise ValueError(f"{name} is None: it must hold the video tokens, one (N_i, D) tensor per video")
        if video_embeds is None:
            return None
        width = self.config.text_config.hidden_size
        expected = (
            f"a list or tuple of (N_i, {width}) float tensors, one per video (get_video_features(...).pooler_output)"
        )
        if isinstance(video_embeds, torch.Tensor):
            if video_embeds.ndim != 3:
                hint = " (one video: pass [tensor])" if video_embeds.ndim == 2 else ""
                raise TypeError(
                    f"{name} must be {expected} or a (V, N, {width}) tensor, got a tensor of shape "
                    f"{tuple(video_embeds.shape)}{hint}"
                )
            video_embeds = tuple(video_embeds.unbind(0))
        if not isinstance(video_embeds, (list, tuple)) or not video_embeds:
            got = "an empty sequence" if isinstance(video_embeds, (list, tuple)) else type(video_embeds).__name__
            raise TypeError(f"{name} must be {expected}, got {got}")
        for index, tokens in enumerate(video_embeds):
            if not isinstance(tokens, torch.Tensor):
                raise TypeError(f"{name}[{index}] must be a torch.Tensor, got {type(tokens).__name__}")
            if not tokens.is_floating_point():
                raise TypeError(f"{name}[{index}] must be a float tensor, got dtype {tokens.dtype}")
            if tokens.ndim != 2 or tokens.shape[1] != width:
                raise ValueError(
                    f"{name}[{index}] must have shape (N, {width}) (text_config.hidden_size: the LLM-space tokens of "
                    f"get_video_features), got {tuple(tokens.shape)}"
                )
            if tokens.shape[0] == 0:
                raise ValueError(f"{name}[{index}] has no tokens: every video needs at least one")
        packed = torch.cat([tokens.to(video_embeds[0].device) for tokens in video_embeds])
        if not bool(torch.isfinite(packed).all()):
            raise ValueError(f"{name} must be finite, got NaN or inf values")
        counts = torch.tensor([len(tokens) for tokens in video_embeds], device=packed.device)
        return TrajVLMVideoOutput(pooler_output=tuple(video_embeds), video_embeds=packed, num_video_tokens=counts)

    # ------------------------------------------------------------------ slot form
    @staticmethod
    def _fill_slots(inputs_embeds, is_video, video_outputs) -> tuple[torch.Tensor, torch.BoolTensor]:
        """Slot form: the active slots' tokens go to their placeholders (row-major = video, then slot order); returns
        the embeddings and the (B, L) mask of empty slots (placeholders of inactive trajectories)."""
        active = torch.zeros_like(is_video)
        active[is_video] = video_outputs.token_mask.flatten().to(is_video.device)
        embeds = inputs_embeds.masked_scatter(active.unsqueeze(-1), video_outputs.video_embeds.to(inputs_embeds.dtype))
        return embeds, is_video & ~active

    @staticmethod
    def _attended_positions(cache, empty, attention_mask, position_ids, batch, length, past):
        """Hide empty slots from attention and from the position count, in this call and in every later call on the
        same cache (the cache remembers them as `trajvlm_empty_slots`): the LLM then computes what it would on the
        sequence without them (the dropped-token form). Position of a token = attended tokens before it."""
        stored = getattr(cache, "trajvlm_empty_slots", None) if cache is not None else None
        device = attention_mask if attention_mask is not None else empty if empty is not None else position_ids
        device = device.device if device is not None else None
        if stored is None:
            stored = torch.zeros(batch, past, dtype=torch.bool, device=device)
        stored = F.pad(stored[:, :past], (0, max(past - stored.shape[1], 0)))
        current = empty if empty is not None else torch.zeros(batch, length, dtype=torch.bool, device=stored.device)
        skipped = torch.cat([stored, current], dim=1)  # (B, past + L)
        if cache is not None and (empty is not None or getattr(cache, "trajvlm_empty_slots", None) is not None):
            cache.trajvlm_empty_slots = skipped
        full_mask = attention_mask is not None and attention_mask.shape[1] == past + length
        if not bool(skipped.any()):
            if position_ids is None and full_mask:
                position_ids = (attention_mask.long().cumsum(1) - 1).clamp(min=0)[:, past:]
            return attention_mask, position_ids
        keep = (attention_mask.bool() if full_mask else torch.ones_like(skipped)) & ~skipped
        if position_ids is None:
            position_ids = (keep.long().cumsum(1) - 1).clamp(min=0)[:, past:]
        else:
            before = skipped.long().cumsum(1) - skipped.long()
            position_ids = position_ids.to(before.device) - before[:, past:]
        mask_dtype = attention_mask.dtype if attention_mask is not None else torch.long
        return keep.to(mask_dtype), position_ids

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        video_embeds: list[torch.FloatTensor] | tuple[torch.FloatTensor, ...] | None = None,
        **kwargs,
    ) -> TrajVLMModelOutputWithPast | tuple:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(B, L)`):
                Prompt ids. Slot form (what [`TrajVLMProcessor`] writes with a `video_slot_layout`): one `<video>`
                (`config.video_token_id`) per connector slot of each video; the active slots get the video tokens, the
                empty ones are masked (no attention, not counted in the positions). Compact form: ONE `<video>` per
                video, replaced here by the video's active tokens (the output is then longer than the input).
            pixel_values_videos (`torch.FloatTensor` of shape `(V, T, 3, H, W)`, *optional*):
                The V videos of the batch, filling the placeholders in row-major order (a row may hold several). Cast
                to the model's dtype. Only read when the cache is empty (the prompt's prefill); ignored afterwards.
            attention_mask (`torch.Tensor` of shape `(B, L)` or `(B, past + L)`, *optional*): 1 = token, 0 = padding.
            position_ids (`torch.LongTensor` of shape `(B, L)`, *optional*): default: the number of attended tokens
                before each token (padding-invariant). Given ones are shifted down by the empty slots before them.
            cache (`Cache`, *optional*): KV cache (`past_key_values` is accepted too).
            inputs_embeds (`torch.FloatTensor` of shape `(B, L, D)`, *optional*): instead of `input_ids`; placeholders
                are found as the `<video>` embedding (as LLaVA does), in either form.
            labels (`torch.LongTensor` of shape `(B, L)`, *optional*): returned as `expanded_labels` with -100 over
                video tokens; the loss itself is computed by [`TrajVLMForConditionalGeneration`].
            return_dict (`bool`, *optional*): False returns a tuple.
            video_embeds (`list[torch.FloatTensor]`, *optional*): instead of `pixel_values_videos`: one `(N_i, D)`
                tensor of LLM-space tokens per video (`get_video_features(...).pooler_output`, or a long video's
                merged tokens), filling the placeholders in row-major order: one `<video>` per video (expanded to its
                N_i tokens, compact form) or one per token. Cast to the LLM's dtype; read at the prefill only, as
                pixels. `mm_encoder_outputs={"video": output}` (transformers' pre-encoded inputs) reads
                `output.pooler_output` the same way.
            output_hidden_states / output_attentions: passed to the language model (a list of layer indices selects
                hidden states, as in transformers).
        """
        if pixel_values_videos is None and kwargs.get("pixel_values") is not None:
            raise TypeError(
                "TrajVLM takes videos as pixel_values_videos (an image is a 1-frame video), not pixel_values"
            )
        kwargs.pop("pixel_values", None)
        precomputed = self._precomputed_video_outputs(video_embeds, kwargs.pop("mm_encoder_outputs", None))
        if pixel_values_videos is not None and precomputed is not None:
            raise ValueError("pass either pixel_values_videos or video_embeds (precomputed video tokens), not both")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if input_ids is not None:
            self._check_ids(input_ids)
            inputs_embeds = self.get_input_embeddings()(input_ids)
        else:
            self._check_embeds(inputs_embeds)
        batch, length = inputs_embeds.shape[:2]
        self._check_labels(labels, batch, length)
        past = cache.get_seq_length() if cache is not None else 0
        self._check_attention_mask(attention_mask, batch, length, past)
        is_video = self._placeholder_mask(input_ids, inputs_embeds)
        if past > 0:
            # the prompt (and its videos) is in the cache already: videos fill a prefill
            pixel_values_videos = precomputed = None
        if precomputed is not None:  # onto the LLM input's device and dtype, as the scatter needs
            precomputed.video_embeds = precomputed.video_embeds.to(inputs_embeds.device, inputs_embeds.dtype)
        video_outputs = self.get_video_features(pixel_values_videos) if pixel_values_videos is not None else precomputed
        self._check_placeholders(is_video, attention_mask, video_outputs, past)

        expanded = empty = None
        llm_labels = None if labels is None else labels.masked_fill(is_video, IGNORE_INDEX)
        video_token_mask = None
        num_placeholders = int(is_video.sum())
        if (
            video_outputs is not None
            and video_outputs.token_mask is None
            and num_placeholders == len(video_outputs.video_embeds)
        ):
            # One placeholder per precomputed token: filled in place (row-major = video, then token order).
            inputs_embeds = inputs_embeds.masked_scatter(is_video.unsqueeze(-1), video_outputs.video_embeds)
            video_token_mask = is_video
        elif (
            video_outputs is not None
            and video_outputs.token_mask is not None
            and num_placeholders == video_outputs.token_mask.numel()
        ):
            inputs_embeds, empty = self._fill_slots(inputs_embeds, is_video, video_outputs)
            video_token_mask = is_video & ~empty
        elif video_outputs is not None:
            if attention_mask is not None and attention_mask.shape[1] != length:
                raise ValueError(
                    f"attention_mask must have the shape of the prompt {(batch, length)} when one <video> per video "
                    f"is expanded, got {tuple(attention_mask.shape)}"
                )
            if position_ids is not None and position_ids.shape[-1] != length:
                raise ValueError(
                    f"position_ids must have the length of the prompt ({length}), got {tuple(position_ids.shape)}"
                )
            expanded = self._expand(
                is_video,
                inputs_embeds,
                video_outputs.video_embeds,
                video_outputs.num_video_tokens,
                attention_mask,
                position_ids,
                labels,
            )
            inputs_embeds, attention_mask = expanded["inputs_embeds"], expanded["attention_mask"]
            position_ids, llm_labels = expanded["position_ids"], expanded["labels"]
            video_token_mask = expanded["video_token_mask"]
        if expanded is None:
            attention_mask, position_ids = self._attended_positions(
                cache, empty, attention_mask, position_ids, batch, length, past
            )

        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        output = TrajVLMModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=getattr(outputs, "cache", None),
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
            expanded_attention_mask=None if expanded is None else expanded["attention_mask"],
            expanded_position_ids=None if expanded is None else expanded["position_ids"],
            expanded_labels=llm_labels,
            video_token_mask=video_token_mask,
            video_outputs=video_outputs,
            slot_attention_mask=attention_mask if empty is not None else None,
        )
        return output if return_dict else output.to_tuple()


class TrajVLMForConditionalGeneration(TrajVLMPreTrainedModel, GenerationMixin):
    r"""
    TrajVLM with a language-modelling head: answers questions about videos with `generate`.

    Example:

    ```python
    >>> processor = AutoProcessor.from_pretrained(path)
    >>> model = AutoModelForImageTextToText.from_pretrained(path)
    >>> question = {"type": "text", "text": "What colour is the circle?"}
    >>> conversation = [{"role": "user", "content": [{"type": "video"}, question]}]
    >>> prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    >>> inputs = processor(text=prompt, videos=[clip], return_tensors="pt")
    >>> answer = model.generate(**inputs, max_new_tokens=8)
    >>> processor.batch_decode(answer[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    ```
    """

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    # The text config's base plan shards embed_tokens (embedding_rowwise); the tied head is sharded with it, as in
    # LLaVA and Qwen3ForCausalLM.
    _tp_plan = {"lm_head": "colwise_gather_output"}

    def __init__(self, config: TrajVLMConfig):
        super().__init__(config)
        self.model = TrajVLMModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def get_video_features(self, pixel_values_videos: torch.FloatTensor, **kwargs) -> TrajVLMVideoOutput:
        """See [`TrajVLMModel.get_video_features`]."""
        return self.model.get_video_features(pixel_values_videos, **kwargs)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        video_embeds: list[torch.FloatTensor] | tuple[torch.FloatTensor, ...] | None = None,
        **kwargs,
    ) -> TrajVLMCausalLMOutputWithPast:
        r"""
        Args: as [`TrajVLMModel.forward`], plus
            labels (`torch.LongTensor` of shape `(B, L)`, *optional*): next-token targets aligned with `input_ids`
                (-100 = ignored). They are expanded like the sequence (-100 over video tokens) before the usual
                shifted cross-entropy.
            logits_to_keep (`int`, *optional*, defaults to 0): compute logits for the last positions only (0 = all).
            video_embeds (`list[torch.FloatTensor]`, *optional*): precomputed video tokens instead of
                `pixel_values_videos`, one `(N_i, D)` tensor per video (see [`TrajVLMModel.forward`]); `generate`
                takes them too.
        """
        return_dict = kwargs.pop("return_dict", None)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        shift_labels = kwargs.pop("shift_labels", None)
        outputs = self.model(
            input_ids=input_ids,
            pixel_values_videos=pixel_values_videos,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            return_dict=True,
            video_embeds=video_embeds,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, keep, :])

        loss = None
        if labels is not None or shift_labels is not None:
            loss = self._loss(logits, labels, shift_labels, outputs, num_items_in_batch)
        output = TrajVLMCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            expanded_attention_mask=outputs.expanded_attention_mask,
            expanded_position_ids=outputs.expanded_position_ids,
            expanded_labels=outputs.expanded_labels,
            video_token_mask=outputs.video_token_mask,
            video_outputs=outputs.video_outputs,
            slot_attention_mask=outputs.slot_attention_mask,
        )
        return output if return_dict else output.to_tuple()

    def _loss(self, logits, labels, shift_labels, outputs, num_items_in_batch):
        """Next-token cross-entropy over what the LLM attends to. Each attended token predicts the target of the next
        attended one, so an empty slot (slot form) is skipped exactly as in the dropped-token (compact) form."""
        if shift_labels is None:
            target = outputs.expanded_labels if outputs.expanded_labels is not None else labels
            shift_labels = F.pad(target, (0, 1), value=IGNORE_INDEX)[:, 1:]
        elif outputs.expanded_attention_mask is not None:
            raise ValueError(
                "shift_labels need the slot form (one <video> per connector slot) or no video: with one "
                "<video> per video the sequence is expanded, pass labels instead"
            )
        elif outputs.video_token_mask is not None:
            not_target = outputs.video_token_mask
            if outputs.slot_attention_mask is not None:
                not_target = not_target | ~outputs.slot_attention_mask[:, -not_target.shape[1] :].bool()
            shift_labels = shift_labels.masked_fill(F.pad(not_target, (0, 1))[:, 1:], IGNORE_INDEX)
        if outputs.slot_attention_mask is not None:
            shift_labels = _skip_unattended(shift_labels, outputs.slot_attention_mask[:, -shift_labels.shape[1] :])
        if logits.shape[1] != shift_labels.shape[1]:
            shift_labels = shift_labels[:, -logits.shape[1] :]
        return self.loss_function(
            logits=logits,
            labels=None,
            shift_labels=shift_labels.contiguous(),
            vocab_size=self.config.text_config.vocab_size,
            num_items_in_batch=num_items_in_batch,
        )

    def prepare_inputs_for_generation(
        self,
        input_ids,
        cache=None,
        attention_mask=None,
        inputs_embeds=None,
        pixel_values_videos=None,
        video_embeds=None,
        mm_encoder_outputs=None,
        **kwargs,
    ):
        """transformers' preparation, but the videos (pixels or precomputed tokens) go with every prefill from an
        empty cache (transformers gives none to an assistant model, which would see bare placeholders) and with every
        step without a cache."""
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, cache=cache, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
        )
        if cache is None or cache.get_seq_length() == 0:
            videos = {
                "pixel_values_videos": pixel_values_videos,
                "video_embeds": video_embeds,
                "mm_encoder_outputs": mm_encoder_outputs,
            }
            model_inputs.update({name: value for name, value in videos.items() if value is not None})
        return model_inputs

    def _expand_inputs_for_generation(self, expand_size=1, is_encoder_decoder=False, input_ids=None, **model_kwargs):
        """transformers' expansion (each row repeated `expand_size` times: beam search, several return sequences),
        plus precomputed video tokens: each row's own videos, in order, once per copy of the row."""
        video_embeds = model_kwargs.pop("video_embeds", None)
        mm_encoder_outputs = model_kwargs.pop("mm_encoder_outputs", None)
        video = mm_encoder_outputs.get("video") if isinstance(mm_encoder_outputs, dict) else None
        if getattr(video, "pooler_output", None) is None:
            video = None  # nothing to expand (forward names what is missing)
        if expand_size > 1 and (video_embeds is not None or video is not None):
            rows = input_ids if input_ids is not None and input_ids.numel() else None
            per_row = self.model._placeholder_mask(rows, model_kwargs.get("inputs_embeds")).sum(dim=1).tolist()
            if video_embeds is not None:
                video_embeds = _repeat_videos_per_row(video_embeds, per_row, expand_size)
            else:
                video = copy.copy(video)
                video.pooler_output = _repeat_videos_per_row(video.pooler_output, per_row, expand_size)
                mm_encoder_outputs = {**mm_encoder_outputs, "video": video}
        input_ids, model_kwargs = super()._expand_inputs_for_generation(
            expand_size=expand_size, is_encoder_decoder=is_encoder_decoder, input_ids=input_ids, **model_kwargs
        )
        if video_embeds is not None:
            model_kwargs["video_embeds"] = video_embeds
        if mm_encoder_outputs is not None:
            model_kwargs["mm_encoder_outputs"] = mm_encoder_outputs
        return input_ids, model_kwargs

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False, num_new_tokens=1):
        """After a step that expanded placeholders with a KV cache, continue from the *expanded* attention mask and
        position ids (the cache holds the expanded sequence); otherwise the default update."""
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        expanded_mask = getattr(outputs, "expanded_attention_mask", None)
        with_cache = model_kwargs.get("use_cache", True) and getattr(outputs, "cache", None) is not None
        if expanded_mask is not None and with_cache:
            ones = expanded_mask.new_ones(expanded_mask.shape[0], num_new_tokens)
            model_kwargs["attention_mask"] = torch.cat([expanded_mask, ones], dim=-1)
            positions = outputs.expanded_position_ids
            step = torch.arange(1, num_new_tokens + 1, dtype=positions.dtype, device=positions.device)
            model_kwargs["position_ids"] = torch.cat([positions, positions[:, -1:] + step], dim=-1)
        return model_kwargs


__all__ = [
    "TrajVLMCausalLMOutputWithPast",
    "TrajVLMForConditionalGeneration",
    "TrajVLMModel",
    "TrajVLMModelOutputWithPast",
    "TrajVLMPreTrainedModel",
    "TrajVLMVideoOutput",
]
