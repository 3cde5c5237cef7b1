"""Evaluation during training, gathered over processes and computed with :mod:`trajtok_hf.metrics`:
:func:`evaluate_segmentation` (ARI / FG-ARI / matched mIoU of the hard trajectory ids against ground truth) and
:func:`evaluate_retrieval` (R@1/5/10 in both directions); :func:`load_segmenter` loads a trained segmenter."""

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
