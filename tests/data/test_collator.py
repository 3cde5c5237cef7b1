"""VideoTextCollator: stacking, caption padding with an offline tokenizer, labels, dropped items."""

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from trajtok_hf.data import (
    COLOURS,
    MOTIONS,
    SHAPES,
    SyntheticVideoConfig,
    VideoTextCollator,
    make_synthetic_dataset,
)


@pytest.fixture(scope="module")
def tokenizer():
    words = {"[PAD]", "[UNK]", "a", "while", "and", "small", "large", "striped", "checkered"}
    words |= set(COLOURS) | set(SHAPES)
    for phrase in MOTIONS.values():
        words |= set(phrase.split())
    vocab = {w: i for i, w in enumerate(sorted(words, key=lambda w: (w != "[PAD]", w != "[UNK]", w)))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")


CFG = SyntheticVideoConfig(num_frames=4, height=32, width=32, max_objects=3)


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    ds = make_synthetic_dataset(4, CFG, seed=0, cache_dir=tmp_path_factory.mktemp("cache"))
    return [ds[i] for i in range(4)]


def test_synthetic_items_collate(items, tokenizer):
    batch = VideoTextCollator(tokenizer, max_length=64)(items)
    assert batch["videos"].shape == (4, 4, 32, 32, 3) and batch["videos"].dtype == torch.uint8
    np.testing.assert_array_equal(batch["videos"][2].numpy(), items[2]["video"])
    assert batch["segmentation_labels"].shape == (4, 4, 8, 8) and batch["segmentation_labels"].dtype == torch.long
    ids, mask = batch["input_ids"], batch["attention_mask"]
    lengths = [len(item["caption"].split()) for item in items]
    assert ids.shape == (4, max(lengths)) and mask.shape == ids.shape
    assert mask.sum(1).tolist() == lengths
    assert (ids[mask == 0] == tokenizer.pad_token_id).all()
    assert tokenizer.unk_token_id not in ids[mask == 1].tolist()  # the vocabulary covers every caption word
    assert tokenizer.decode(ids[0][mask[0] == 1]) == items[0]["caption"]
    assert "captions" not in batch  # strings only when there is no tokenizer


def test_truncation_and_max_length_padding(items, tokenizer):
    batch = VideoTextCollator(tokenizer, max_length=3)(items)
    assert batch["input_ids"].shape == (4, 3)
    batch = VideoTextCollator(tokenizer, max_length=40, padding="max_length")(items)
    assert batch["input_ids"].shape == (4, 40)


def test_without_tokenizer_returns_strings(items):
    batch = VideoTextCollator()(items)
    assert batch["captions"] == [item["caption"] for item in items]
    assert "input_ids" not in batch


def test_pixel_values_videos_are_stacked():
    feats = [{"pixel_values_videos": torch.randn(4, 3, 16, 16), "caption": "a red circle"} for _ in range(3)]
    batch = VideoTextCollator()(feats)
    assert batch["pixel_values_videos"].shape == (3, 4, 3, 16, 16)
    assert torch.equal(batch["pixel_values_videos"][1], feats[1]["pixel_values_videos"])  # stacked, not changed
    with pytest.raises(ValueError, match="pixel_values_videos"):
        VideoTextCollator()([{"pixel_values_videos": torch.randn(4, 16, 16, 3)}])
    feats[2]["pixel_values_videos"] = torch.randn(4, 3, 8, 8)
    with pytest.raises(ValueError, match="different shapes"):
        VideoTextCollator()(feats)


def test_video_processor_is_applied_to_raw_clips(items):
    calls = []

    def processor(videos, return_tensors):
        calls.append((len(videos), return_tensors))
        return {
            "pixel_values_videos": torch.stack([torch.from_numpy(v).permute(0, 3, 1, 2).float() / 255 for v in videos])
        }

    batch = VideoTextCollator(video_processor=processor)(items)
    assert calls == [(4, "pt")]
    assert batch["pixel_values_videos"].shape == (4, 4, 3, 32, 32) and "videos" not in batch


def test_failed_items_are_dropped_and_counted(items, tokenizer):
    broken = dict(items[1], video=None, decode_error="InvalidDataError: boom")
    collator = VideoTextCollator(tokenizer)
    with pytest.warns(RuntimeWarning, match="dropped 1 of 3"):
        batch = collator([items[0], broken, items[2]])
    assert batch["videos"].shape[0] == 2 and batch["input_ids"].shape[0] == 2
    assert batch["segmentation_labels"].shape[0] == 2
    assert collator.num_dropped == 1
    with pytest.warns(RuntimeWarning):
        assert collator([broken, broken]) is None
    assert collator.num_dropped == 3


def test_items_without_labels_get_ignore_index(items):
    partial = [items[0], {k: v for k, v in items[1].items() if k != "segmentation_labels"}]
    labels = VideoTextCollator()(partial)["segmentation_labels"]
    assert (labels[1] == -100).all()
    assert torch.equal(labels[0], torch.from_numpy(items[0]["segmentation_labels"]))


def test_caption_lists_first_or_seeded_random():
    feats = [{"pixel_values_videos": torch.zeros(1, 3, 2, 2), "captions": ["one", "two", "three"]}] * 8
    assert VideoTextCollator()(feats)["captions"] == ["one"] * 8
    a = VideoTextCollator(caption_selection="random", seed=0)(feats)["captions"]
    b = VideoTextCollator(caption_selection="random", seed=0)(feats)["captions"]
    assert a == b and len(set(a)) > 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_length"):
        VideoTextCollator(max_length=0)
    with pytest.raises(ValueError, match="caption_selection"):
        VideoTextCollator(caption_selection="longest")
    with pytest.raises(TypeError, match="video_processor"):
        VideoTextCollator(video_processor="not callable")
    with pytest.raises(TypeError, match="features"):
        VideoTextCollator()({"video": np.zeros((1, 2, 2, 3), np.uint8)})


EXTRA_CAPTIONS = [
    ("negative_caption", "negative"),
    ("shape_negative_caption", "shape_negative"),
    ("paraphrase_caption", "paraphrase"),
    ("paraphrase_negative_caption", "paraphrase_negative"),
    ("fact_negative_caption", "fact_negative"),
]


@pytest.mark.parametrize("key, prefix", EXTRA_CAPTIONS)
def test_negative_captions_are_tokenized_with_their_batch_rows(tokenizer, key, prefix):
    video = torch.zeros(2, 3, 8, 8)
    batch_items = [
        {"pixel_values_videos": video, "caption": "a red circle", key: "a blue circle"},
        {"pixel_values_videos": video, "caption": "a red square", key: None},
        {"pixel_values_videos": video, "caption": "a small star", key: "a large red star"},
    ]
    batch = VideoTextCollator(tokenizer)(batch_items)
    assert batch[f"{prefix}_index"].tolist() == [0, 2]
    expected = tokenizer(["a blue circle", "a large red star"], padding=True, return_tensors="pt")
    assert torch.equal(batch[f"{prefix}_input_ids"], expected["input_ids"])
    assert torch.equal(batch[f"{prefix}_attention_mask"], expected["attention_mask"])
    for _, other in EXTRA_CAPTIONS:  # each kind of extra caption has its own keys
        assert other == prefix or f"{other}_index" not in batch
    none = VideoTextCollator(tokenizer)([{**item, key: None} for item in batch_items])
    assert f"{prefix}_index" not in none and f"{prefix}_input_ids" not in none
    with pytest.raises(TypeError, match=key):
        VideoTextCollator(tokenizer)([{**batch_items[0], key: 3}])
