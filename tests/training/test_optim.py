"""Optimisation (trajtok_hf/training/optim.py): AdamW parameter groups (no decay on norms, biases, latents, logit
scales; per-prefix learning rates) and the warm-up + cosine schedule of the paper (Sec. 4)."""

from __future__ import annotations

import pytest
import torch
from testers import float_error_bound, tiny_trajtok_model, video_batch

from trajtok_hf.training import SEGMENTER_MODULES, build_optimizer, build_scheduler, parameter_groups


def test_parameter_groups_exclude_norms_biases_latents_and_logit_scale():
    model = tiny_trajtok_model()
    decay, no_decay = parameter_groups(model, 0.02)
    assert decay["weight_decay"] == 0.02 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    not_decayed = {names[id(p)] for p in no_decay["params"]}
    assert len(decayed) + len(not_decayed) == len(names)
    for name in (
        "query_latents",
        "logit_scale",
        "subtoken_offsets",
        "feature_extractor.layer_norms.0.weight",
        "query_head.0.bias",
        "feature_extractor.backbone.embeddings.layernorm.weight",
        "feature_extractor.backbone.encoder.stages.1.downsampling_layer.0.weight",
    ):
        assert name in not_decayed, name
    for name in (
        "query_head.0.weight",
        "feature_extractor.projections.0.weight",
        "feature_extractor.backbone.embeddings.patch_embeddings.weight",
    ):
        assert name in decayed, name
    optimizer = build_optimizer(model)
    assert optimizer.defaults["lr"] == 1e-4 and optimizer.defaults["betas"] == (0.9, 0.999)


def test_parameter_groups_per_prefix_learning_rates():
    model = tiny_trajtok_model()
    groups = parameter_groups(model, 0.02, {"query_perceiver": 1e-5, "feature_extractor.backbone": 2e-5})
    names = {id(p): n for n, p in model.named_parameters()}
    seen = [names[id(p)] for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(names.values())  # every parameter exactly once
    for group in groups:
        group_names = [names[id(p)] for p in group["params"]]
        if "lr" not in group:
            assert not any(n.startswith(("query_perceiver.", "feature_extractor.backbone.")) for n in group_names)
        else:
            prefix = "query_perceiver." if group["lr"] == 1e-5 else "feature_extractor.backbone."
            assert all(n.startswith(prefix) for n in group_names)
    assert {(g.get("lr"), g["weight_decay"]) for g in groups} >= {(1e-5, 0.02), (1e-5, 0.0), (2e-5, 0.02)}
    assert "lr" not in groups[0] and groups[0]["weight_decay"] == 0.02  # default-LR decayed group first
    # The scheduler scales every group by the same factor, so the ratio of the peaks is kept.
    optimizer = build_optimizer(model, 1e-3, learning_rates={"query_perceiver": 1e-5})
    scheduler = build_scheduler(optimizer, num_training_steps=10, num_warmup_steps=2)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    lrs = {group.get("initial_lr"): group["lr"] for group in optimizer.param_groups}
    # bound: float64 Python arithmetic, two scaled LRs and their ratio (3 roundings of values <= 1e-2).
    assert lrs[1e-5] / lrs[1e-3] == pytest.approx(1e-2, rel=0, abs=float_error_bound(1e-2, 3, torch.float64))


@pytest.mark.parametrize(
    "learning_rates, match",
    [
        ({"query_perceivr": 1e-5}, "no trainable parameter"),  # a typo must not silently use the default LR
        ({"query": 1e-5}, "no trainable parameter"),  # prefixes match whole module names
        ({"query_perceiver": 0.0}, "must be a number > 0"),
        ({"": 1e-5}, "non-empty"),
    ],
)
def test_parameter_groups_reject_bad_learning_rates(learning_rates, match):
    with pytest.raises(ValueError, match=match):
        parameter_groups(tiny_trajtok_model(), 0.02, learning_rates)


def test_parameter_groups_reject_learning_rates_that_are_not_a_mapping():
    with pytest.raises(TypeError, match="learning_rates must be a mapping"):
        parameter_groups(tiny_trajtok_model(), 0.02, [("query_perceiver", 1e-5)])


def test_segmenter_modules_are_what_the_segmentation_loss_trains():
    """SEGMENTER_MODULES (the parts --segmenter_learning_rate applies to) = the tokenizer's top-level modules that
    get a gradient from the segmentation loss, which is all that segmentation pre-training trains."""
    from trajtok_hf.models.loss_trajtok import trajectory_segmentation_loss

    model = tiny_trajtok_model(pixel_context_layers=1, query_update_iterations=1).train()
    labels = torch.randint(0, 3, (2, 4, 16, 16))
    out = model(pixel_values_videos=video_batch(2, 4, 64))
    trajectory_segmentation_loss(out.assignment_logits, labels).backward()
    trained = {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None and p.grad.any()}
    assert trained == set(SEGMENTER_MODULES)


def test_scheduler_warms_up_then_cosine_to_one_percent():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=1e-4)
    scheduler = build_scheduler(optimizer, num_training_steps=100, num_warmup_steps=10, min_lr_ratio=0.01)
    lrs = []
    for _ in range(100):
        lrs.append(scheduler.get_last_lr()[0])  # the LR the next optimizer step uses
        optimizer.step()
        scheduler.step()
    # bound: float64 Python arithmetic of the schedule (progress ratio, cosine, interpolation, scaling: <= 8 roundings
    # of values <= the 1e-4 peak).
    lr_bound = float_error_bound(1e-4, 8, torch.float64)
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5e-4, rel=0, abs=lr_bound)
    assert lrs[10] == pytest.approx(1e-4, rel=0, abs=lr_bound)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # cosine: non-increasing after warm-up
    assert scheduler.get_last_lr()[0] == pytest.approx(1e-6, rel=0, abs=lr_bound)  # ends at 1 % of the peak
    assert min(lrs[10:]) > 1e-6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_training_steps=0), "num_training_steps"),
        (dict(num_training_steps=10, num_warmup_steps=10), "num_warmup_steps"),
        (dict(num_training_steps=10, min_lr_ratio=2.0), "min_lr_ratio"),
    ],
)
def test_scheduler_rejects_bad_arguments(kwargs, match):
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    with pytest.raises(ValueError, match=match):
        build_scheduler(optimizer, **kwargs)
