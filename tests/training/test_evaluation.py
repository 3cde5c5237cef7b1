"""Evaluation during training (trajtok_hf/training/evaluation.py): segmentation metrics of a bare tokenizer and
loading a segmenter from a TrajTok or a TrajViT2 folder."""

from __future__ import annotations

import pytest
import torch
from testers import tiny_trajtok_model, tiny_trajvit2_model, video_batch

import trajtok_hf  # noqa: F401  (registers the Auto classes)
from trajtok_hf import TrajTokVideoProcessor
from trajtok_hf.training import load_segmenter


def test_evaluate_segmentation_skips_the_refinement_of_a_bare_tokenizer(monkeypatch):
    """The ids come from the assignment alone: evaluating a TrajTokModel must not run (and pay for) its refinement
    Perceiver, and must give the ids of a full forward."""
    from accelerate import Accelerator

    from trajtok_hf.metrics import segmentation_metrics
    from trajtok_hf.training import evaluate_segmentation

    model = tiny_trajtok_model().eval()
    pixels = video_batch(2, 4, 64)
    labels = torch.randint(0, 3, (2, 4, 16, 16))
    with torch.no_grad():
        full_ids = model(pixel_values_videos=pixels).trajectory_ids
    expected = segmentation_metrics(list(full_ids), list(labels), background_id=0)

    def refinement_must_not_run(*args, **kwargs):
        raise AssertionError("the refinement Perceiver ran during evaluate_segmentation")

    monkeypatch.setattr(model.refinement_perceiver, "forward", refinement_must_not_run)
    batches = [{"pixel_values_videos": pixels, "segmentation_labels": labels}]
    metrics = evaluate_segmentation(model, batches, Accelerator(cpu=True))
    # The same hard ids (the refinement is skipped, not the logits) and the same float64 metric code: the default
    # approx (rel 1e-6) only absorbs the order of a per-batch mean (float64 rounding ~1e-16), not float32 order.
    assert metrics == {key: pytest.approx(expected[key]) for key in ("ARI", "FG-ARI", "mIoU", "FG-mIoU")}


def test_load_segmenter_from_a_trajtok_or_a_trajvit2_folder(tmp_path):
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    segmenter = tiny_trajtok_model().eval()
    segmenter.save_pretrained(tmp_path / "seg")
    processor.save_pretrained(tmp_path / "seg")
    loaded, loaded_processor = load_segmenter(tmp_path / "seg")
    assert type(loaded) is type(segmenter) and loaded_processor.num_frames == 4
    for name, tensor in segmenter.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name

    trajvit2 = tiny_trajvit2_model().eval()
    trajvit2.save_pretrained(tmp_path / "trajvit2")
    processor.save_pretrained(tmp_path / "trajvit2")
    tokenizer, _ = load_segmenter(tmp_path / "trajvit2")
    expected = trajvit2.vision_model.tokenizer.state_dict()
    assert tokenizer.state_dict().keys() == expected.keys()
    assert all(torch.equal(tokenizer.state_dict()[k], v) for k, v in expected.items())

    tiny_trajvit2_model(vision_tokenizer="vit3d").save_pretrained(tmp_path / "vit3d")
    with pytest.raises(ValueError, match="ViT3D"):
        load_segmenter(tmp_path / "vit3d")


def _oracle_reference(model, video, labels):
    """oracle_query_trajectory_ids written out chunk by chunk, clip by clip, id by id."""
    import torch.nn.functional as F

    with torch.no_grad():
        features = model(pixel_values_videos=video, output_pixel_features=True).pixel_features
        embeddings = F.normalize(model.pixel_head(features), dim=-1)
    out = torch.zeros_like(labels)
    chunk = model.config.chunk_size
    for b in range(labels.shape[0]):
        for first in range(0, labels.shape[1], chunk):
            emb, lab = embeddings[b, first : first + chunk], labels[b, first : first + chunk]
            ids = [int(i) for i in lab.unique() if i != -100]
            if not ids:
                continue
            centres = torch.stack([F.normalize(emb[lab == i].sum(0), dim=0) for i in ids])
            out[b, first : first + chunk] = torch.tensor(ids)[(emb @ centres.T).argmax(-1)]
    return out


@pytest.mark.parametrize(("frames", "chunk_size"), [(4, 4), (3, 2), (4, 1)])
def test_oracle_query_ids_match_the_written_out_form(frames, chunk_size):
    from trajtok_hf.training import oracle_query_trajectory_ids

    torch.manual_seed(0)
    model = tiny_trajtok_model(chunk_size=chunk_size)
    video = video_batch(batch=2, frames=frames)
    labels = torch.randint(0, 4, (2, frames, 16, 16)) * 3  # sparse ids 0, 3, 6, 9
    labels[0, :, :4] = -100
    labels[1, -1] = -100  # the last chunk of clip 1 may have no labeled pixel at all
    got = oracle_query_trajectory_ids(model, video, labels)
    assert got.shape == labels.shape and got.dtype == torch.long
    torch.testing.assert_close(got, _oracle_reference(model, video, labels), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"labels": torch.zeros(2, 4, 16, 16)}, TypeError, "integer tensor"),
        ({"labels": torch.zeros(2, 4, 8, 8, dtype=torch.long)}, ValueError, "shape of the model's grid"),
        ({"labels": torch.full((2, 4, 16, 16), -3)}, ValueError, ">= 0 or -100"),
        ({"model": "vit3d"}, TypeError, "must be a TrajTokModel"),
    ],
)
def test_oracle_query_ids_reject_bad_input(change, error, match):
    from trajtok_hf.training import oracle_query_trajectory_ids

    model = change.get("model", tiny_trajtok_model())
    labels = change.get("labels", torch.zeros(2, 4, 16, 16, dtype=torch.long))
    with pytest.raises(error, match=match):
        oracle_query_trajectory_ids(model, video_batch(batch=2, frames=4), labels)
