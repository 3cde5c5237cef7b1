"""Evaluation during training, gathered over processes and computed with :mod:`trajtok_hf.metrics`:
:func:`evaluate_segmentation` (ARI / FG-ARI / matched mIoU of the hard trajectory ids against ground truth) and
:func:`evaluate_retrieval` (R@1/5/10 in both directions); :func:`load_segmenter` loads a trained segmenter, and
:func:`oracle_query_trajectory_ids` separates what a segmenter's pixel embeddings allow from what its queries find."""

from __future__ import annotations

import os

import torch
from torch import nn

from ..data import IGNORE_INDEX
from ..metrics import retrieval_metrics, segmentation_metrics
from ..models.modeling_trajtok import TrajTokModel
from ..models.modeling_trajvit2 import TrajViT2Model


def load_segmenter(path: str | os.PathLike):
    """``(TrajTokModel, its video processor)`` from a ``save_pretrained`` folder of a TrajTok segmenter, or the TrajTok
    tokenizer inside a TrajViT2 folder (the segmenter after joint training). Raises ``ValueError`` for any other
    model, including a TrajViT2 whose vision tokenizer is ViT3D (no trajectories)."""
    from transformers import AutoModel, AutoVideoProcessor

    model = AutoModel.from_pretrained(path)
    if isinstance(model, TrajViT2Model):
        if model.config.vision_tokenizer != "trajtok":
            raise ValueError(f"{path} is a TrajViT2 with ViT3D space-time patches: it has no TrajTok segmenter")
        model = model.vision_model.tokenizer
    elif not isinstance(model, TrajTokModel):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a TrajTokModel or a TrajViT2Model")
    # A TrajViT2 folder's processor_config.json nests the video processor; AutoVideoProcessor reads it from there.
    return model, AutoVideoProcessor.from_pretrained(path)


@torch.no_grad()
def evaluate_segmentation(model, dataloader, accelerator, background_id: int | None = 0) -> dict[str, float]:
    """ARI, FG-ARI, matched mIoU and FG-mIoU (fractions) of the model's hard trajectory ids against the ground-truth
    ``segmentation_labels`` over a prepared eval dataloader, gathered over processes (every process returns the
    same numbers). ``model`` is a TrajTok model, or any model whose output has ``trajectory_ids``."""
    was_training = model.training
    model.eval()
    predictions, references = [], []
    for batch in dataloader:
        if batch is None:
            continue
        # A bare tokenizer can skip its refinement Perceiver: the ids come from the assignment alone.
        kwargs = {"output_trajectory_tokens": False} if isinstance(model, TrajTokModel) else {}
        ids = model(pixel_values_videos=batch["pixel_values_videos"], **kwargs).trajectory_ids
        ids, labels = accelerator.gather_for_metrics((ids.contiguous(), batch["segmentation_labels"].contiguous()))
        predictions.extend(ids.cpu())
        references.extend(labels.cpu())
    model.train(was_training)
    metrics = segmentation_metrics(predictions, references, background_id=background_id, ignore_index=IGNORE_INDEX)
    return {key: metrics[key] for key in ("ARI", "FG-ARI", "mIoU", "FG-mIoU")}


@torch.no_grad()
def oracle_query_trajectory_ids(
    model: TrajTokModel, pixel_values_videos: torch.Tensor, segmentation_labels: torch.Tensor
) -> torch.Tensor:
    """The segmentation a TrajTok segmenter gives when its queries are replaced by the ground truth's: in each chunk
    of each clip, every labeled trajectory's query embedding is the normalised mean of its pixels' embeddings (the
    pixel head's output of Eq. 1), and every pixel takes the trajectory whose embedding is closest (cosine). A
    diagnostic, not a segmenter: it scores the pixel embeddings alone, as if the query Perceiver found every object,
    so its gap to the model's own ids is what the queries lose.

    Args:
        model: a :class:`~trajtok_hf.TrajTokModel`.
        pixel_values_videos: ``(B, T, C, H, W)``, as the model takes them.
        segmentation_labels: ``(B, T, h, w)`` integer ground-truth ids on the model's 1/4 grid, ``-100`` unlabeled.

    Returns:
        ``(B, T, h, w)`` long: for every pixel, the ground-truth id of the trajectory it joins (a chunk without
        labeled pixels gives 0).
    """
    if not isinstance(model, TrajTokModel):
        raise TypeError(f"`model` must be a TrajTokModel, got {type(model).__name__}")
    if not isinstance(segmentation_labels, torch.Tensor) or segmentation_labels.is_floating_point():
        raise TypeError("`segmentation_labels` must be an integer tensor (B, T, h, w)")
    output = model(pixel_values_videos=pixel_values_videos, output_trajectory_tokens=False, output_pixel_features=True)
    embeddings = nn.functional.normalize(model.pixel_head(output.pixel_features).float(), dim=-1)  # (B, T, h, w, E)
    if segmentation_labels.shape != embeddings.shape[:4]:
        raise ValueError(
            f"`segmentation_labels` must have the shape of the model's grid {tuple(embeddings.shape[:4])}, got "
            f"{tuple(segmentation_labels.shape)}"
        )
    labels = segmentation_labels.to(embeddings.device)
    batch, frames = labels.shape[:2]
    chunk = model.config.chunk_size
    chunks = -(-frames // chunk)
    pad = chunks * chunk - frames  # a shorter last chunk: padded frames carry no label and no score
    embeddings = nn.functional.pad(embeddings, (0, 0, 0, 0, 0, 0, 0, pad)).flatten(0, 1)
    labels = nn.functional.pad(labels, (0, 0, 0, 0, 0, pad), value=IGNORE_INDEX)
    embeddings = embeddings.reshape(batch * chunks, -1, embeddings.shape[-1])  # (B·C, pixels, E)
    labels = labels.reshape(batch * chunks, -1)
    valid = labels != IGNORE_INDEX
    if (labels[valid] < 0).any():
        raise ValueError(f"`segmentation_labels` must be >= 0 or {IGNORE_INDEX} (unlabeled)")
    num_ids = int(labels[valid].max()) + 1 if valid.any() else 1
    group = torch.arange(batch * chunks, device=labels.device)[:, None] * num_ids + labels.clamp(min=0)
    centres = embeddings.new_zeros(batch * chunks * num_ids, embeddings.shape[-1])
    centres.index_add_(0, group[valid], embeddings[valid])
    present = torch.zeros(batch * chunks * num_ids, dtype=torch.bool, device=labels.device)
    present[group[valid]] = True
    centres = nn.functional.normalize(centres, dim=-1).view(batch * chunks, num_ids, -1)
    scores = torch.bmm(embeddings, centres.transpose(1, 2))
    scores = scores.masked_fill(~present.view(batch * chunks, 1, num_ids), float("-inf"))
    ids = scores.argmax(dim=-1).masked_fill(~present.view(batch * chunks, num_ids).any(-1, keepdim=True), 0)
    return ids.reshape(batch, chunks * chunk, *segmentation_labels.shape[2:])[:, :frames]


@torch.no_grad()
def evaluate_retrieval(model, dataloader, accelerator) -> dict[str, float]:
    """Text→video and video→text R@1/5/10 (percent) and median rank over a prepared eval dataloader (one caption
    per video), embeddings gathered over processes. ``model`` has ``get_video_features`` / ``get_text_features``
    (returning the projected embedding or an output whose ``pooler_output`` is)."""
    was_training = model.training
    model.eval()
    videos, texts = [], []
    for batch in dataloader:
        if batch is None:
            continue
        video = _embedding(model.get_video_features(pixel_values_videos=batch["pixel_values_videos"]))
        text = _embedding(model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))
        video, text = accelerator.gather_for_metrics((video.float().contiguous(), text.float().contiguous()))
        videos.append(video.cpu())
        texts.append(text.cpu())
    model.train(was_training)
    videos = nn.functional.normalize(torch.cat(videos), dim=-1)
    texts = nn.functional.normalize(torch.cat(texts), dim=-1)
    metrics = retrieval_metrics(texts @ videos.T, layout="text_video")
    return {k: v for k, v in metrics.items() if "MeanR" not in k}


def _embedding(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"expected a tensor or an output with `pooler_output`, got {type(output).__name__}")
    return pooled
