"""Symmetric InfoNCE (CLIP) loss of TrajViT2 (paper Sec. 4), standalone, with its own cross-process gather.

``loss = ½ · [CE(s · V Tᵀ, I) + CE(s · T Vᵀ, I)]`` for L2-normalised video embeddings V, text embeddings T (row i of
V and T is a positive pair) and the logit scale s = exp(logit_scale).

Multi-process training: when ``torch.distributed`` is initialised with world size > 1, the embeddings of every rank
are all-gathered so that each rank scores its pairs against the negatives of the whole global batch, as open_clip's
``ClipLoss(local_loss=False, gather_with_grad=False)``: the gathered copies carry no gradient, the rank's own rows are
put back in place with their gradient, and every rank computes the full global-batch loss. The gradient a rank gets
for its own embeddings is then exactly the gradient of the global-batch loss for those rows; DDP's averaging of
parameter gradients over ranks divides the global-batch gradient by the world size (open_clip's behaviour too).
Ranks may hold different batch sizes (e.g. the last batch of an epoch): sizes are gathered first and rows padded.

The official code (hellomuffin/trajtok ``SegmentCLIP``) computes ``img·txtᵀ / temp`` on the local batch of each
process; gathering is what CLIP-style training at scale needs and is a no-op in one process.

The logits and the cross-entropy are computed in float32 whatever the embeddings' dtype (a bf16 model's logits of up
to s = 100 keep only ~2 significant digits), as transformers' losses upcast their logits; the gradient flows back in
the embeddings' dtype.

Imports only torch: the file is copied beside the modeling files as remote code.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ClipContrastiveLoss",
    "clip_contrastive_loss",
    "gather_with_local_grad",
    "negative_caption_loss",
    "paired_contrastive_loss",
    "paraphrase_loss",
]


def _distributed_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def gather_with_local_grad(features: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All-gather `features` (b_r, D) from every rank into (Σ_r b_r, D), rank order.

    The rows of the calling rank are the input tensor itself (they keep their gradient); the other ranks' rows are
    detached copies. Returns the gathered tensor and the offset of this rank's rows in it. Without an initialised
    process group (or with world size 1) returns `(features, 0)`.
    """
    world_size, rank = _distributed_world()
    if world_size == 1:
        return features, 0
    features = features.contiguous()
    local_size = torch.tensor([features.shape[0]], device=features.device, dtype=torch.long)
    sizes = [torch.zeros_like(local_size) for _ in range(world_size)]
    dist.all_gather(sizes, local_size)
    sizes = [int(s.item()) for s in sizes]
    max_size = max(sizes)
    padded = features.detach()
    if features.shape[0] < max_size:
        padded = torch.cat([padded, padded.new_zeros(max_size - features.shape[0], *features.shape[1:])])
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded)
    parts = [g[:size] for g, size in zip(gathered, sizes, strict=True)]
    parts[rank] = features
    return torch.cat(parts), sum(sizes[:rank])


def clip_contrastive_loss(
    video_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor | float,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """Symmetric InfoNCE over all pairs of the (global) batch.

    Args:
        video_embeds (`torch.Tensor` of shape `(batch_size, dim)`): L2-normalised video embeddings.
        text_embeds (`torch.Tensor` of shape `(batch_size, dim)`): L2-normalised text embeddings; row i is the
            caption of video i.
        logit_scale (`torch.Tensor` or `float`): the multiplier s = exp(log scale) of the cosine similarities
            (already exponentiated, as open_clip's `ClipLoss`).
        gather_distributed (`bool`, defaults to `True`): gather the embeddings of all ranks when torch.distributed
            is initialised with world size > 1 (see the module docstring); `False` = local batch only.

    Returns:
        The scalar float32 loss ½ · (CE(video→text) + CE(text→video)), averaged over the (global) batch.
    """
    for name, value in (("video_embeds", video_embeds), ("text_embeds", text_embeds)):
        if not isinstance(value, torch.Tensor) or value.ndim != 2:
            raise ValueError(f"{name} must be a 2-D tensor (batch_size, dim), got {getattr(value, 'shape', value)}")
    if video_embeds.shape != text_embeds.shape:
        raise ValueError(
            f"video_embeds {tuple(video_embeds.shape)} and text_embeds {tuple(text_embeds.shape)} must have the same "
            "shape: the contrastive loss needs one caption per video (row i of each is a positive pair)"
        )
    if video_embeds.shape[0] == 0:
        raise ValueError("the contrastive loss needs at least one video-text pair")
    if gather_distributed:
        # Every rank computes the global-batch loss, so the row offset of its own pairs is not needed.
        all_video, _ = gather_with_local_grad(video_embeds)
        all_text, _ = gather_with_local_grad(text_embeds)
    else:
        all_video, all_text = video_embeds, text_embeds
    logits_per_video = logit_scale * all_video.float() @ all_text.float().t()
    labels = torch.arange(all_video.shape[0], device=logits_per_video.device)
    return 0.5 * (F.cross_entropy(logits_per_video, labels) + F.cross_entropy(logits_per_video.t(), labels))


def paired_contrastive_loss(logits_per_video: torch.Tensor) -> torch.Tensor:
    """Two-way InfoNCE inside each hard-negative pair of a batch: items ``2j`` and ``2j + 1`` are a clip and its
    transformed copy (played backwards or mirrored, captioned for what it shows), and each must pick its own caption
    over the pair's other caption, and each caption its own clip over the other clip.

    Not in the paper. In a batch of B clips the pair's two logits are two of B in the full InfoNCE, whose gradient is
    spread over the appearance differences to the other B − 2 clips; this term weighs the one difference between
    the two (time order or direction) on its own.

    Args:
        logits_per_video (`torch.Tensor` of shape `(batch_size, batch_size)`): scaled video-text similarities of the
            local batch (row i: video i; column j: caption j), `batch_size` even, pairs in adjacent rows.

    Returns:
        The scalar float32 loss ½ · (CE(video → its pair's two captions) + CE(caption → its pair's two videos)),
        averaged over the batch.
    """
    if not isinstance(logits_per_video, torch.Tensor) or logits_per_video.ndim != 2:
        raise ValueError(
            "logits_per_video must be a 2-D tensor (batch_size, batch_size), got "
            f"{getattr(logits_per_video, 'shape', logits_per_video)}"
        )
    rows, columns = logits_per_video.shape
    if rows != columns or rows == 0 or rows % 2:
        raise ValueError(
            f"logits_per_video must be square with an even, non-zero batch size (pairs in adjacent rows), got "
            f"{(rows, columns)}"
        )
    pairs = rows // 2
    # [i, a, j, c] = logits[2i + a, 2j + c]; the diagonal over (i, j) keeps each pair's own 2 × 2 block.
    blocks = logits_per_video.float().view(pairs, 2, pairs, 2).diagonal(dim1=0, dim2=2).permute(2, 0, 1)
    target = torch.arange(2, device=logits_per_video.device).repeat(pairs)
    video_to_text = F.cross_entropy(blocks.reshape(rows, 2), target)
    text_to_video = F.cross_entropy(blocks.transpose(1, 2).reshape(rows, 2), target)
    return 0.5 * (video_to_text + text_to_video)


def negative_caption_loss(
    video_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    negative_text_embeds: torch.Tensor,
    negative_index: torch.Tensor,
    logit_scale: torch.Tensor | float,
) -> torch.Tensor:
    """Two-way InfoNCE of a video between its own caption and a hard negative caption of it (NegCLIP-style, e.g. the
    caption with two objects' motions exchanged): video ``negative_index[n]`` must score its caption above
    ``negative_text_embeds[n]``. Not in the paper.

    Args:
        video_embeds (`torch.Tensor` of shape `(batch_size, dim)`): L2-normalised video embeddings of the local batch.
        text_embeds (`torch.Tensor` of shape `(batch_size, dim)`): L2-normalised embeddings of their captions.
        negative_text_embeds (`torch.Tensor` of shape `(num_negatives, dim)`): L2-normalised embeddings of the
            negative captions.
        negative_index (`torch.LongTensor` of shape `(num_negatives,)`): the batch row each negative belongs to.
        logit_scale (`torch.Tensor` or `float`): the multiplier s of the cosine similarities (already exponentiated).

    Returns:
        The scalar float32 loss, the mean over the negatives of CE([s·v·t, s·v·t_neg], 0).
    """
    for name, value in (
        ("video_embeds", video_embeds),
        ("text_embeds", text_embeds),
        ("negative_text_embeds", negative_text_embeds),
    ):
        if not isinstance(value, torch.Tensor) or value.ndim != 2:
            raise ValueError(f"{name} must be a 2-D tensor (rows, dim), got {getattr(value, 'shape', value)}")
    if video_embeds.shape != text_embeds.shape or negative_text_embeds.shape[1] != video_embeds.shape[1]:
        raise ValueError(
            f"video_embeds {tuple(video_embeds.shape)}, text_embeds {tuple(text_embeds.shape)} and "
            f"negative_text_embeds {tuple(negative_text_embeds.shape)} must share the embedding width, and the first "
            "two their batch size"
        )
    if (
        not isinstance(negative_index, torch.Tensor)
        or negative_index.dtype != torch.long
        or negative_index.shape != (negative_text_embeds.shape[0],)
    ):
        raise ValueError(
            f"negative_index must be a LongTensor of shape ({negative_text_embeds.shape[0]},), one batch row per "
            f"negative, got {getattr(negative_index, 'dtype', type(negative_index).__name__)} "
            f"{tuple(getattr(negative_index, 'shape', ()))}"
        )
    if negative_index.numel() == 0:
        raise ValueError("negative_caption_loss needs at least one negative caption")
    if negative_index.min() < 0 or negative_index.max() >= video_embeds.shape[0]:
        raise ValueError(f"negative_index must index the {video_embeds.shape[0]} batch rows, got {negative_index}")
    video = video_embeds.float()[negative_index]
    own = (video * text_embeds.float()[negative_index]).sum(-1)
    negative = (video * negative_text_embeds.float()).sum(-1)
    logits = logit_scale * torch.stack((own, negative), dim=-1)
    return F.cross_entropy(logits, torch.zeros_like(negative_index))


def _check_rows(name: str, value, dim: int | None = None) -> None:
    if not isinstance(value, torch.Tensor) or value.ndim != 2 or (dim is not None and value.shape[1] != dim):
        width = "dim" if dim is None else str(dim)
        raise ValueError(f"{name} must be a 2-D tensor (rows, {width}), got {getattr(value, 'shape', value)}")


def _check_index(name: str, index, rows: int, batch_size: int) -> None:
    if not isinstance(index, torch.Tensor) or index.dtype != torch.long or index.shape != (rows,):
        raise ValueError(
            f"{name} must be a LongTensor of shape ({rows},), one batch row per caption, got "
            f"{getattr(index, 'dtype', type(index).__name__)} {tuple(getattr(index, 'shape', ()))}"
        )
    if rows and (index.min() < 0 or index.max() >= batch_size):
        raise ValueError(f"{name} must index the {batch_size} batch rows, got {index}")


def paraphrase_loss(
    text_embeds: torch.Tensor,
    paraphrase_embeds: torch.Tensor,
    paraphrase_index: torch.Tensor,
    logit_scale: torch.Tensor | float,
    negative_embeds: torch.Tensor | None = None,
    negative_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Two-way InfoNCE between captions and paraphrases of them (the same facts in another wording): caption
    ``paraphrase_index[p]`` must pick paraphrase p among the batch's paraphrases and hard negatives (e.g. paraphrases
    with two objects' motions exchanged), and paraphrase p its caption among the batch's captions that have one. A
    text-side term that asks the text tower to embed what a caption says rather than how, and to keep which motion
    belongs to which object when the wording changes. Not in the paper.

    Args:
        text_embeds (`torch.Tensor` of shape `(batch_size, dim)`): L2-normalised embeddings of the batch's captions.
        paraphrase_embeds (`torch.Tensor` of shape `(num_paraphrases, dim)`): L2-normalised embeddings of the
            paraphrases.
        paraphrase_index (`torch.LongTensor` of shape `(num_paraphrases,)`): the batch row of each paraphrase, each
            row at most once.
        logit_scale (`torch.Tensor` or `float`): the multiplier s of the cosine similarities (already exponentiated).
        negative_embeds (`torch.Tensor` of shape `(num_negatives, dim)`, *optional*): L2-normalised embeddings of
            hard negative paraphrases; extra candidates for every caption.
        negative_index (`torch.LongTensor` of shape `(num_negatives,)`, *optional*): the batch row of each negative
            (checked; every negative is a candidate for every caption).

    Returns:
        The scalar float32 loss ½ · (CE(caption → [paraphrases ; negatives]) + CE(paraphrase → captions)), averaged
        over the paraphrases.
    """
    _check_rows("text_embeds", text_embeds)
    dim = text_embeds.shape[1]
    _check_rows("paraphrase_embeds", paraphrase_embeds, dim)
    _check_index("paraphrase_index", paraphrase_index, paraphrase_embeds.shape[0], text_embeds.shape[0])
    if paraphrase_index.numel() == 0:
        raise ValueError("paraphrase_loss needs at least one paraphrase")
    if paraphrase_index.unique().numel() != paraphrase_index.numel():
        raise ValueError(f"paraphrase_index must name each batch row at most once, got {paraphrase_index}")
    if (negative_embeds is None) != (negative_index is None):
        raise ValueError("negative_embeds and negative_index must be given together")
    anchors = text_embeds.float()[paraphrase_index]
    candidates = paraphrase_embeds.float()
    if negative_embeds is not None:
        _check_rows("negative_embeds", negative_embeds, dim)
        _check_index("negative_index", negative_index, negative_embeds.shape[0], text_embeds.shape[0])
        candidates = torch.cat((candidates, negative_embeds.float()))
    target = torch.arange(anchors.shape[0], device=anchors.device)
    caption_to_paraphrase = F.cross_entropy(logit_scale * anchors @ candidates.t(), target)
    paraphrase_to_caption = F.cross_entropy(logit_scale * paraphrase_embeds.float() @ anchors.t(), target)
    return 0.5 * (caption_to_paraphrase + paraphrase_to_caption)


class ClipContrastiveLoss(nn.Module):
    """`nn.Module` form of [`clip_contrastive_loss`]; no parameters (the logit scale belongs to the model)."""

    def __init__(self, gather_distributed: bool = True):
        super().__init__()
        self.gather_distributed = bool(gather_distributed)

    def forward(self, video_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale) -> torch.Tensor:
        return clip_contrastive_loss(video_embeds, text_embeds, logit_scale, self.gather_distributed)

    def extra_repr(self) -> str:
        return f"gather_distributed={self.gather_distributed}"
