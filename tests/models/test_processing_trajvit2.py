"""TrajViT2Processor: TrajTokVideoProcessor + a text tokenizer (built offline with the `tokenizers` library)."""

import inspect
import os
import subprocess
import sys
import textwrap

import numpy as np
import PIL.Image
import pytest
import torch
from testers import tiny_trajvit2_model
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AutoModel, AutoProcessor, PreTrainedTokenizerFast

from trajtok_hf import TrajTokVideoProcessor, TrajViT2Model, TrajViT2Processor

WORDS = "a the dog cat runs jumps car red blue over under fast slow turns left right".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# Tiny tensors: intra-op threads cost more in synchronisation than they save (conftest.single_thread).
pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_tokenizer(model_max_length=16) -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate(SPECIAL + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
    )


@pytest.fixture(scope="module")
def processor(tmp_path_factory) -> TrajViT2Processor:
    # Saved and reloaded once, as a user would get it: the tokenizer from files written by the tokenizers library.
    folder = tmp_path_factory.mktemp("tokenizer")
    tiny_tokenizer().save_pretrained(folder)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(folder)
    video_processor = TrajTokVideoProcessor(num_frames=2, size={"height": 32, "width": 32})
    return TrajViT2Processor(video_processor=video_processor, tokenizer=tokenizer)


def clips(count=2, frames=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (frames + i, 24, 40, 3), dtype=np.uint8) for i in range(count)]


CAPTIONS = ["the dog runs", "a red car turns left fast"]


# ---------------------------------------------------------------------------------------------------------- outputs
def test_text_and_video_batch(processor):
    videos = clips()
    batch = processor(text=CAPTIONS, videos=videos, return_tensors="pt", padding=True)
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values_videos"}
    assert (
        batch["pixel_values_videos"].shape == (2, 2, 3, 32, 32) and batch["pixel_values_videos"].dtype == torch.float32
    )
    expected_text = processor.tokenizer(CAPTIONS, padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], expected_text["input_ids"])
    expected_videos = processor.video_processor(videos, return_tensors="pt")["pixel_values_videos"]
    assert torch.equal(batch["pixel_values_videos"], expected_videos)
    assert processor.model_input_names[-1] == "pixel_values_videos" and "input_ids" in processor.model_input_names


def test_padding_to_longest_and_to_max_length(processor):
    batch = processor(text=CAPTIONS, return_tensors="pt")  # padding=True is the default
    cls, sep, pad = (processor.tokenizer.convert_tokens_to_ids(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    assert batch["input_ids"].shape == (2, 8)  # [CLS] + 6 words + [SEP]
    word_ids = [len(SPECIAL) + WORDS.index(word) for word in ("the", "dog", "runs")]
    assert batch["input_ids"][0].tolist()[:5] == [cls, *word_ids, sep]
    assert batch["input_ids"][0, 5:].eq(pad).all() and batch["attention_mask"][0].tolist() == [1] * 5 + [0] * 3
    batch = processor(text=CAPTIONS, padding="max_length", max_length=12, return_tensors="pt")
    assert batch["input_ids"].shape == (2, 12)


def test_truncation(processor):
    long_text = " ".join(WORDS * 3)
    batch = processor(text=[long_text, "a dog"], return_tensors="pt")
    assert batch["input_ids"].shape == (2, 16)  # model_max_length of the tokenizer
    assert batch["input_ids"][0, -1] == processor.tokenizer.sep_token_id
    batch = processor(text=[long_text], truncation=True, max_length=5, return_tensors="pt")
    assert batch["input_ids"].shape == (1, 5)


def test_video_arguments_are_routed_to_the_video_processor(processor):
    batch = processor(videos=clips(), num_frames=3, return_tensors="pt")
    assert set(batch) == {"pixel_values_videos"} and batch["pixel_values_videos"].shape[1] == 3


def test_images_become_one_frame_videos(processor):
    rng = np.random.default_rng(1)
    arrays = rng.integers(0, 256, (3, 20, 28, 3), dtype=np.uint8)
    from_batch = processor(images=arrays, return_tensors="pt")["pixel_values_videos"]
    assert from_batch.shape == (3, 1, 3, 32, 32)  # no frame repetition despite num_frames=2
    pil = [PIL.Image.fromarray(a) for a in arrays]
    # The same uint8 pixels through the same operations (here and below): bit-identical.
    assert torch.equal(processor(images=pil, return_tensors="pt")["pixel_values_videos"], from_batch)
    single = processor(images=pil[0], text="a cat", return_tensors="pt")
    assert single["pixel_values_videos"].shape == (1, 1, 3, 32, 32) and single["input_ids"].shape[0] == 1
    expected = processor.video_processor([a[None] for a in arrays], do_sample_frames=False, return_tensors="pt")
    assert torch.equal(from_batch, expected["pixel_values_videos"])


def test_batch_equals_singles_and_deterministic(processor):
    videos = clips(seed=2)
    batch = processor(text=CAPTIONS, videos=videos, return_tensors="pt")
    again = processor(text=CAPTIONS, videos=videos, return_tensors="pt")
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    for i in range(2):
        single = processor(text=CAPTIONS[i], videos=videos[i], return_tensors="pt")
        assert torch.equal(single["pixel_values_videos"][0], batch["pixel_values_videos"][i])
        length = int(single["attention_mask"].sum())
        assert torch.equal(single["input_ids"][0, :length], batch["input_ids"][i, :length])


# ------------------------------------------------------------------------------------------------------ save / load
def test_save_load_and_auto_processor_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    videos = clips(seed=3)
    expected = processor(text=CAPTIONS, videos=videos, return_tensors="pt")
    for loader in (TrajViT2Processor.from_pretrained, AutoProcessor.from_pretrained):
        loaded = loader(tmp_path)
        assert type(loaded) is TrajViT2Processor and type(loaded.video_processor) is TrajTokVideoProcessor
        assert loaded.video_processor.num_frames == 2 and loaded.tokenizer.model_max_length == 16
        got = loaded(text=CAPTIONS, videos=videos, return_tensors="pt")
        assert set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in got)


def test_model_and_processor_from_one_folder_end_to_end(processor, tmp_path):
    """`AutoModel.from_pretrained(path)` + `AutoProcessor.from_pretrained(path)` → embeddings, similarities, loss."""
    tiny_trajvit2_model().save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    model = AutoModel.from_pretrained(tmp_path).eval()
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(model) is TrajViT2Model and type(loaded) is TrajViT2Processor
    inputs = loaded(text=CAPTIONS, videos=clips(seed=4), return_tensors="pt", padding=True, paired=True)
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
    assert out.logits_per_video.shape == (2, 2) and out.loss.ndim == 0 and torch.isfinite(out.loss)


def test_auto_processor_with_trust_remote_code_without_trajtok_hf(processor, tmp_path):
    folder = tmp_path / "processor"
    processor.save_pretrained(folder)
    assert {"processing_trajvit2.py", "video_processing_trajtok.py"} <= set(os.listdir(folder))
    videos = [v[:5] for v in clips(seed=5)]
    np.save(tmp_path / "videos.npy", np.stack(videos))
    expected = processor(text=CAPTIONS, videos=videos, return_tensors="pt")
    torch.save(dict(expected), tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "trajtok_hf" or name.startswith("trajtok_hf."):
                    raise ImportError("trajtok_hf is blocked in this test")

        sys.meta_path.insert(0, Block())
        import numpy as np, torch
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        assert type(processor).__module__.startswith("transformers_modules"), type(processor).__module__
        videos = list(np.load({str(tmp_path / "videos.npy")!r}))
        got = processor(text={CAPTIONS!r}, videos=videos, return_tensors="pt")
        expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        assert set(got) == set(expected), (set(got), set(expected))
        for key in got:
            assert torch.equal(got[key], expected[key]), key
        print("REMOTE_OK")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "REMOTE_OK" in result.stdout, result.stdout + result.stderr[-4000:]


# ------------------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"text": CAPTIONS, "videos": clips(3), "paired": True}, ValueError, "one caption per video: got 2 text"),
        ({"text": ["a dog"], "images": np.zeros((2, 8, 8, 3), np.uint8), "paired": True}, ValueError, "2 image"),
        ({"text": CAPTIONS, "paired": True}, ValueError, "paired=True needs both"),
        ({"text": []}, ValueError, "text must not be an empty list"),
        ({"text": ["a dog", 3]}, TypeError, r"text\[1\]"),
        ({"videos": np.zeros((2, 3, 4, 5, 6, 7), np.uint8)}, ValueError, "videos"),
        ({"videos": np.zeros((4, 32, 32, 5), np.uint8)}, ValueError, "videos"),
        ({"videos": torch.zeros(4, 32, 32)}, ValueError, "videos"),
        ({"images": np.zeros((8, 8), np.uint8)}, ValueError, "images"),
        ({}, ValueError, "at least one of text, videos or images"),
        ({"videos": clips(1), "images": np.zeros((8, 8, 3), np.uint8)}, ValueError, "either videos or images"),
        ({"videos": clips(1), "num_frame": 4}, TypeError, "did you mean 'num_frames'"),
        ({"text": "a dog", "paired": "yes"}, TypeError, "paired must be a bool"),
    ],
)
def test_bad_inputs_raise_clear_errors(processor, kwargs, error, match):
    with pytest.raises(error, match=match):
        processor(**kwargs)


@pytest.mark.parametrize("paired", [{}, {"paired": None}, {"paired": False}], ids=["omitted", "None", "False"])
def test_paired_defaults_to_none_and_then_allows_any_counts(processor, paired):
    """transformers' processor convention: call arguments default to None; unset means unpaired (retrieval)."""
    assert inspect.signature(TrajViT2Processor.__call__).parameters["paired"].default is None
    batch = processor(text=CAPTIONS, videos=clips(3), return_tensors="pt", **paired)
    assert batch["input_ids"].shape[0] == 2 and batch["pixel_values_videos"].shape[0] == 3
