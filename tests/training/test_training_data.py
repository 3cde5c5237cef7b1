"""Training data (trajtok_hf/training/data.py): the processor's normalisation in torch, the on-the-fly
synthetic dataset and the resumable epoch shuffle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from testers import float_error_bound

from trajtok_hf import TrajTokVideoProcessor
from trajtok_hf.data import (
    PhotoCompositeConfig,
    SyntheticVideoConfig,
    generate_clip,
    generate_swapped_clip,
    paraphrase_clip,
    shape_negative_caption,
    swap_motions_caption,
    transform_clip,
)
from trajtok_hf.training import PAIRED_TRANSFORMS, EpochShuffleSampler, SyntheticClipDataset, normalize_video


def test_normalize_video_matches_processor_and_synthetic_dataset_is_deterministic():
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    config = SyntheticVideoConfig(num_frames=4, height=64, width=64)
    clip = generate_clip(config, seed=5, index=3)
    expected = processor(videos=[clip["video"]], return_tensors="pt")["pixel_values_videos"][0]
    # bound: terms up to 1/std <= 4.5, the two float32 paths' roundings (<= 5 for (x·(1/255) − mean)/std with rounded
    # constants, 4 for the processor's folded affine map), fp32 eps.
    pixel_bound = float_error_bound(1 / min(processor.image_std), 5 + 4)
    torch.testing.assert_close(normalize_video(clip["video"], processor), expected, atol=pixel_bound, rtol=0)
    # Frames of another size go through the full processor (resize).
    big = np.repeat(np.repeat(clip["video"], 2, axis=1), 2, axis=2)
    assert normalize_video(big, processor).shape == (4, 3, 64, 64)

    dataset = SyntheticClipDataset(config, seed=5, num_clips=4, video_processor=processor)
    item = dataset[3]
    torch.testing.assert_close(item["pixel_values_videos"], expected, atol=pixel_bound, rtol=0)
    assert torch.equal(item["segmentation_labels"], torch.from_numpy(clip["segmentation_labels"]))
    dataset.set_epoch(1)  # epoch 1 = clips 4..7: fresh data
    fresh = generate_clip(config, 5, 4)["segmentation_labels"]
    assert torch.equal(dataset[0]["segmentation_labels"], torch.from_numpy(fresh))
    with pytest.raises(IndexError):
        dataset[4]
    # An evaluation set ignores the epoch (accelerate's DataLoader calls set_epoch at every pass).
    held_out = SyntheticClipDataset(config, seed=5, num_clips=4, video_processor=processor, fresh_each_epoch=False)
    held_out.set_epoch(7)
    assert torch.equal(held_out[3]["segmentation_labels"], item["segmentation_labels"])


def test_epoch_shuffle_sampler_depends_only_on_seed_and_epoch():
    a, b = EpochShuffleSampler(50, seed=1), EpochShuffleSampler(50, seed=1)
    torch.manual_seed(123)  # the global RNG plays no part
    first = list(a)
    assert first == list(b) and sorted(first) == list(range(50))
    a.set_epoch(1)
    assert list(a) != first
    assert list(EpochShuffleSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


def test_clip_dataset_mixes_sources_by_weight_and_renders_each_with_its_generator():
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=2)
    shapes = SyntheticVideoConfig(num_frames=2, height=64, width=64, max_objects=1)
    many = SyntheticVideoConfig(num_frames=2, height=64, width=64, min_objects=3, max_objects=3)
    mixed = SyntheticClipDataset((shapes, many), seed=5, num_clips=300, video_processor=processor, weights=(3, 1))
    sources = np.array([mixed._source(i) for i in range(300)])
    assert 0.15 < sources.mean() < 0.35  # a quarter of the clips from the second config
    assert sources.tolist() == [mixed._source(i) for i in range(300)]  # a pure function of (seed, index)
    for index in (int(np.argmin(sources)), int(np.argmax(sources))):
        config = (shapes, many)[sources[index]]
        expected = generate_clip(config, 5, index)["segmentation_labels"]
        assert torch.equal(mixed[index]["segmentation_labels"], torch.from_numpy(expected))
    only_first = SyntheticClipDataset((shapes, many), seed=5, num_clips=50, video_processor=processor, weights=(1, 0))
    assert {only_first._source(i) for i in range(50)} == {0}


@pytest.mark.parametrize(
    "config, weights, error",
    [
        ("not a config", None, TypeError),
        ((), None, TypeError),
        ((SyntheticVideoConfig(), SyntheticVideoConfig()), (1.0,), ValueError),
        ((SyntheticVideoConfig(), SyntheticVideoConfig()), (0.0, 0.0), ValueError),
        ((SyntheticVideoConfig(), SyntheticVideoConfig()), (1.0, -1.0), ValueError),
    ],
)
def test_clip_dataset_rejects_bad_sources(config, weights, error):
    processor = TrajTokVideoProcessor(size={"height": 32, "width": 32}, num_frames=2)
    with pytest.raises(error):
        SyntheticClipDataset(config, seed=0, num_clips=4, video_processor=processor, weights=weights)


def test_paired_transforms_put_a_clip_and_its_transform_side_by_side():
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    config = SyntheticVideoConfig(num_frames=4, height=64, width=64, motions=("move_left", "enter_top"))
    dataset = SyntheticClipDataset(
        config, seed=2, num_clips=6, video_processor=processor, paired_transforms=("reverse", "mirror_vertical")
    )
    for pair, transform in ((0, "reverse"), (1, "mirror_vertical"), (2, "reverse")):
        clip = generate_clip(config, 2, pair)
        first, second = dataset[2 * pair], dataset[2 * pair + 1]
        expected = transform_clip(clip, transform)
        assert first["caption"] == clip["caption"] and second["caption"] == expected["caption"]
        assert torch.equal(second["segmentation_labels"], torch.from_numpy(expected["segmentation_labels"]))
        flipped = first["pixel_values_videos"].flip(0 if transform == "reverse" else 2)
        torch.testing.assert_close(second["pixel_values_videos"], flipped)
    with pytest.raises(ValueError, match="unknown names"):
        SyntheticClipDataset(config, seed=2, num_clips=2, video_processor=processor, paired_transforms=("rotate",))
    with pytest.raises(TypeError, match="sequence of names"):
        SyntheticClipDataset(config, seed=2, num_clips=2, video_processor=processor, paired_transforms="reverse")


def test_swap_objects_pairs_a_clip_with_its_object_swapped_copy_or_its_reversal():
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    config = SyntheticVideoConfig(num_frames=4, height=64, width=64, max_objects=3, caption_wording="train")
    dataset = SyntheticClipDataset(
        config, seed=2, num_clips=16, video_processor=processor, paired_transforms=("swap_objects", "reverse")
    )
    kinds = set()
    for pair in range(0, 8, 2):  # even pairs take swap_objects
        clip, swapped = generate_clip(config, 2, pair), generate_swapped_clip(config, 2, pair)
        expected = transform_clip(clip, "reverse") if swapped is None else swapped
        second = dataset[2 * pair + 1]
        assert dataset[2 * pair]["caption"] == clip["caption"] and second["caption"] == expected["caption"]
        assert torch.equal(second["segmentation_labels"], torch.from_numpy(expected["segmentation_labels"]))
        kinds.add(swapped is None)
    assert kinds == {True, False}  # both a swapped copy and the fallback occur in these pairs
    assert "swap_objects" in PAIRED_TRANSFORMS
    with pytest.raises(ValueError, match="swap_objects"):
        SyntheticClipDataset(config, seed=2, num_clips=2, video_processor=processor, paired_transforms=("swap",))


def _mirror_pairs(config, **extras):
    """8 items (4 clips, each followed by its horizontal mirror) of seed 4 at 64², 4 frames, with ``extras``."""
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    dataset = SyntheticClipDataset(
        config, seed=4, num_clips=8, video_processor=processor, paired_transforms=("mirror_horizontal",), **extras
    )
    return dataset, processor


def test_swap_negatives_give_each_item_its_object_swapped_caption():
    config = SyntheticVideoConfig(num_frames=4, height=64, width=64, max_objects=3)
    dataset, processor = _mirror_pairs(config, swap_negatives=True)
    for pair in range(4):
        clip = generate_clip(config, 4, pair)
        first, second = dataset[2 * pair], dataset[2 * pair + 1]
        assert first["negative_caption"] == swap_motions_caption(clip)
        # the transformed copy's negative swaps the transformed motions
        assert second["negative_caption"] == swap_motions_caption(transform_clip(clip, "mirror_horizontal"))
    assert any(dataset[i]["negative_caption"] is not None for i in range(8))
    assert "negative_caption" not in SyntheticClipDataset(config, seed=4, num_clips=2, video_processor=processor)[0]


def test_shape_negatives_change_one_shape_the_same_way_for_both_copies_of_a_pair():
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    config = SyntheticVideoConfig(num_frames=4, height=64, width=64, max_objects=3, caption_wording="train")
    dataset = SyntheticClipDataset(
        config, seed=4, num_clips=8, video_processor=processor, paired_transforms=("reverse",), shape_negatives=True
    )
    for pair in range(4):
        clip = generate_clip(config, 4, pair)
        first, second = dataset[2 * pair], dataset[2 * pair + 1]
        expected = shape_negative_caption(clip, np.random.default_rng([4, pair, 3]))
        assert first["shape_negative_caption"] == expected != first["caption"]
        reversed_clip = transform_clip(clip, "reverse")
        assert second["shape_negative_caption"] == shape_negative_caption(
            reversed_clip, np.random.default_rng([4, pair, 3])
        )
    assert "shape_negative_caption" not in SyntheticClipDataset(config, 4, 2, processor)[0]


def test_paraphrases_reword_each_item_and_swap_the_paraphrase():
    config = SyntheticVideoConfig(num_frames=4, height=64, width=64, max_objects=3, caption_wording="train")
    dataset, processor = _mirror_pairs(config, swap_negatives=True, paraphrases=True)
    for pair in range(4):
        clip = generate_clip(config, 4, pair)
        for second, source in enumerate((clip, transform_clip(clip, "mirror_horizontal"))):
            item = dataset[2 * pair + second]
            paraphrase = paraphrase_clip(source, np.random.default_rng([4, pair, 5, second]))
            assert item["paraphrase_caption"] == paraphrase["caption"] != item["caption"]
            assert item["paraphrase_negative_caption"] == swap_motions_caption(paraphrase)
    only = SyntheticClipDataset(config, seed=4, num_clips=2, video_processor=processor, paraphrases=True)[0]
    assert "paraphrase_caption" in only and "paraphrase_negative_caption" not in only  # no swap_negatives
    assert "paraphrase_caption" not in SyntheticClipDataset(config, 4, 2, processor)[0]


def test_fact_negatives_turn_a_fact_around_the_same_way_for_both_copies_of_a_pair():
    from trajtok_hf.data import fact_negative_caption

    config = SyntheticVideoConfig(
        num_frames=4, height=64, width=64, max_objects=3, caption_speed=True, caption_occlusion=True
    )
    dataset, processor = _mirror_pairs(config, fact_negatives=True)
    for pair in range(4):
        clip = generate_clip(config, 4, pair)
        for second, source in enumerate((clip, transform_clip(clip, "mirror_horizontal"))):
            item = dataset[2 * pair + second]
            expected = fact_negative_caption(source, np.random.default_rng([4, pair, 6]))
            assert item["fact_negative_caption"] == expected and expected != item["caption"]
    assert "fact_negative_caption" not in SyntheticClipDataset(config, 4, 2, processor)[0]


@pytest.mark.parametrize("flag", ["swap_negatives", "shape_negatives", "paraphrases", "fact_negatives"])
@pytest.mark.parametrize("value", [1, "yes"])
def test_extra_caption_flags_refuse_what_they_cannot_do(flag, value):
    """Each extra caption is a bool flag, and only procedural clips (whose captions know the facts) can have it."""
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    config = SyntheticVideoConfig(num_frames=4, height=64, width=64)
    with pytest.raises(TypeError, match=f"{flag} must be a bool"):
        SyntheticClipDataset(config, seed=4, num_clips=2, video_processor=processor, **{flag: value})
    photos = PhotoCompositeConfig(num_frames=4, height=64, width=64)
    with pytest.raises(ValueError, match=f"{flag} needs procedural clips"):
        SyntheticClipDataset(photos, seed=4, num_clips=2, video_processor=processor, **{flag: True})
