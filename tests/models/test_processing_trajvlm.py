"""TrajVLMProcessor (tokenizer with <video> + chat template + TrajTokVideoProcessor) and the synthetic video QA data:
chat template, placeholders, save/load, remote code, bad inputs, exact QA answers, JSONL round trip, collator,
end-to-end generate."""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from testers import TRAJVLM_VIDEO_TOKEN_ID, tiny_trajvlm_model
from transformers import AutoProcessor

from trajtok_hf import TrajTokVideoProcessor, TrajVLMProcessor
from trajtok_hf.data.synthetic import MOTIONS
from trajtok_hf.data.video_qa import (
    NUMBER_WORDS,
    VideoQACollator,
    build_qa_tokenizer,
    caption_example,
    exact_match,
    generate_qa,
    iter_qa,
    load_qa_jsonl,
    make_questions,
    shapes_video_config,
    write_qa_jsonl,
)


@pytest.fixture(scope="module")
def processor():
    video_processor = TrajTokVideoProcessor(
        size={"height": 32, "width": 32}, num_frames=4, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )
    return TrajVLMProcessor(video_processor=video_processor, tokenizer=build_qa_tokenizer())


@pytest.fixture(scope="module")
def qa_config():
    return shapes_video_config(num_frames=4, size=32)


def _conversation(question="What colour is the circle?", video=None):
    block = {"type": "video"} if video is None else {"type": "video", "video": video}
    return [{"role": "user", "content": [block, {"type": "text", "text": question}]}]


# ------------------------------------------------------------------------------------------------------- processor
def test_tokenizer_and_placeholder_id(processor):
    assert processor.video_token == "<video>" and processor.video_token_id == TRAJVLM_VIDEO_TOKEN_ID
    assert processor.tokenizer.padding_side == "left"
    assert len(processor.tokenizer) <= 100  # fits the tiny test LLM's vocabulary


def test_chat_template_puts_one_placeholder_per_video(processor):
    prompt = processor.apply_chat_template(_conversation(), add_generation_prompt=True)
    assert prompt == "<|im_start|>user\n<video>\nWhat colour is the circle?<|im_end|>\n<|im_start|>assistant\n"
    two = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "and"}, {"type": "video"}]}]
    assert processor.apply_chat_template(two).count("<video>") == 2


def test_call_returns_model_inputs(processor, qa_config):
    clips = [generate_qa(qa_config, 0, i)["video"] for i in range(2)]
    prompts = [
        processor.apply_chat_template(_conversation(q), add_generation_prompt=True)
        for q in ("What colour is the circle?", "How many objects are there?")
    ]
    batch = processor(text=prompts, videos=clips, return_tensors="pt")
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values_videos"}
    assert batch["pixel_values_videos"].shape == (2, 4, 3, 32, 32)
    assert (batch["input_ids"] == TRAJVLM_VIDEO_TOKEN_ID).sum(1).tolist() == [1, 1]  # NOT repeated: the model expands
    assert (batch["attention_mask"][:, -1] == 1).all()  # left padding
    # Tower normalisation (mean/std 0.5): values in [-1, 1].
    assert batch["pixel_values_videos"].min() >= -1.0 - 1e-6 and batch["pixel_values_videos"].max() <= 1.0 + 1e-6


def test_tokenized_chat_template_with_videos_in_the_conversation(processor, qa_config):
    clip = generate_qa(qa_config, 0, 1)["video"]
    out = processor.apply_chat_template(
        _conversation(video=clip),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        processor_kwargs={"return_tensors": "pt"},
    )
    assert out["pixel_values_videos"].shape == (1, 4, 3, 32, 32)
    assert int((out["input_ids"] == TRAJVLM_VIDEO_TOKEN_ID).sum()) == 1


def test_save_and_load_with_auto_processor(processor, qa_config, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is TrajVLMProcessor and isinstance(loaded.video_processor, TrajTokVideoProcessor)
    assert loaded.chat_template == processor.chat_template and loaded.video_token_id == processor.video_token_id
    clip = generate_qa(qa_config, 0, 2)["video"]
    prompt = processor.apply_chat_template(_conversation(), add_generation_prompt=True)
    a = processor(text=prompt, videos=[clip], return_tensors="pt")
    b = loaded(text=prompt, videos=[clip], return_tensors="pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_auto_processor_with_trust_remote_code_without_trajtok_hf(processor, qa_config, tmp_path):
    folder = tmp_path / "processor"
    processor.save_pretrained(folder)
    assert {"processing_trajvlm.py", "video_processing_trajtok.py", "chat_template.jinja"} <= set(os.listdir(folder))
    clip = generate_qa(qa_config, 0, 3)["video"]
    np.save(tmp_path / "clip.npy", clip)
    prompt = processor.apply_chat_template(_conversation(), add_generation_prompt=True)
    torch.save(dict(processor(text=prompt, videos=[clip], return_tensors="pt")), tmp_path / "expected.pt")
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
        question = {{"type": "text", "text": "What colour is the circle?"}}
        conversation = [{{"role": "user", "content": [{{"type": "video"}}, question]}}]
        prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
        assert prompt == {prompt!r}, prompt
        got = processor(text=prompt, videos=[np.load({str(tmp_path / "clip.npy")!r})], return_tensors="pt")
        expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        assert set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in got)
        print("REMOTE_OK")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "REMOTE_OK" in result.stdout, result.stdout + result.stderr[-4000:]


@pytest.mark.parametrize(
    "text, num_videos, match",
    [
        ("<video> <video> how many objects", 1, "<video>"),  # more placeholders than videos
        ("<video> how many objects", 2, "<video>"),  # fewer placeholders than videos
        ("how many objects", 1, "<video>"),  # video without placeholder
        ("", 1, "empty prompt"),
        ([], 1, "empty"),
        (None, 1, "prompt"),
        (3, 1, "text must be a string or a list of strings"),
        (["<video> ok", None], 1, "text must be a string or a list of strings"),
    ],
)
def test_bad_inputs_raise_clear_errors(processor, qa_config, text, num_videos, match):
    clips = [generate_qa(qa_config, 0, i)["video"] for i in range(num_videos)]
    with pytest.raises((TypeError, ValueError), match=match):
        processor(text=text, videos=clips, return_tensors="pt")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"images": [np.zeros((32, 32, 3), np.uint8)]}, "not images"),
        ({"audio": [np.zeros(16, np.float32)]}, "no audio"),
    ],
)
def test_other_modalities_are_rejected(processor, qa_config, kwargs, match):
    clip = generate_qa(qa_config, 0, 0)["video"]
    with pytest.raises(ValueError, match=match):
        processor(text="<video> what", videos=[clip], **kwargs)


def test_text_is_the_first_positional_argument(processor, qa_config):
    clip = generate_qa(qa_config, 0, 0)["video"]
    positional = processor("<video> what", [clip], return_tensors="pt")
    named = processor(text="<video> what", videos=[clip], return_tensors="pt")
    assert positional.keys() == named.keys() and all(torch.equal(positional[k], named[k]) for k in named)


def test_slot_layout_survives_save_and_load(processor, qa_config, tmp_path):
    layout = {"chunk_size": 4, "slot_group_frames": 4, "slots_per_group": 16}
    slotted = TrajVLMProcessor(
        video_processor=processor.video_processor, tokenizer=processor.tokenizer, video_slot_layout=layout
    )
    slotted.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert loaded.video_slot_layout == layout
    clip = generate_qa(qa_config, 0, 0)["video"]
    batch = loaded(text="<video> what", videos=[clip], return_tensors="pt")
    assert int((batch["input_ids"] == TRAJVLM_VIDEO_TOKEN_ID).sum()) == 16  # 4 frames = one chunk of 16 slots


LAYOUT = {"chunk_size": 4, "slot_group_frames": 4, "slots_per_group": 16}


@pytest.mark.parametrize(
    "given, expected, warns, error",
    [
        (LAYOUT, LAYOUT, False, None),
        # Layouts saved with the deprecated key load under the new one, with a FutureWarning.
        ({"clip_length": 4, "slot_group_frames": 4, "slots_per_group": 16}, LAYOUT, True, None),
        ({**LAYOUT, "clip_length": 4}, None, False, r"'clip_length'.*'chunk_size'"),
        ({"slot_group_frames": 4, "slots_per_group": 16}, None, False, "video_slot_layout"),
    ],
    ids=["new", "deprecated", "both", "missing"],
)
def test_slot_layout_key_names(processor, given, expected, warns, error):
    def build():
        return TrajVLMProcessor(
            video_processor=processor.video_processor, tokenizer=processor.tokenizer, video_slot_layout=given
        )

    if error:
        with pytest.raises(ValueError, match=error):
            build()
        return
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert build().video_slot_layout == expected
    deprecations = [w for w in record if issubclass(w.category, FutureWarning) and "clip_length" in str(w.message)]
    assert len(deprecations) == int(warns)


def test_processor_saved_with_the_deprecated_layout_key_loads_and_resaves_the_new_one(processor, tmp_path):
    TrajVLMProcessor(
        video_processor=processor.video_processor, tokenizer=processor.tokenizer, video_slot_layout=LAYOUT
    ).save_pretrained(tmp_path)
    file = tmp_path / "processor_config.json"
    saved = json.loads(file.read_text())
    assert saved["video_slot_layout"] == LAYOUT
    saved["video_slot_layout"] = {"clip_length": 4, **{k: v for k, v in LAYOUT.items() if k != "chunk_size"}}
    file.write_text(json.dumps(saved))
    with pytest.warns(FutureWarning, match="'clip_length' is deprecated"):
        loaded = AutoProcessor.from_pretrained(tmp_path)
    assert loaded.video_slot_layout == LAYOUT
    loaded.save_pretrained(tmp_path / "resaved")
    assert json.loads((tmp_path / "resaved" / "processor_config.json").read_text())["video_slot_layout"] == LAYOUT


def test_saved_processor_equals_its_reloaded_copy(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    assert processor.to_dict() == AutoProcessor.from_pretrained(tmp_path).to_dict()


def test_tokenizers_without_placeholder_are_rejected(processor):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    plain = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")
    with pytest.raises(ValueError, match="<video>"):
        TrajVLMProcessor(video_processor=processor.video_processor, tokenizer=plain)


@torch.no_grad()
def test_end_to_end_generate_and_decode(processor, qa_config):
    model = tiny_trajvlm_model(tokenizer_overrides={"num_trajectories": 16})
    clips = [generate_qa(qa_config, 1, i)["video"] for i in range(2)]
    prompts = [
        processor.apply_chat_template(_conversation(q), add_generation_prompt=True)
        for q in ("What colour is the circle?", "How many objects are there in this video?")
    ]
    inputs = processor(text=prompts, videos=clips, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    answers = processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


# ------------------------------------------------------------------------------------------------- synthetic QA data
def test_questions_have_exact_answers():
    objects = [
        {"shape": "circle", "colour": "red", "motion": "move_left"},
        {"shape": "circle", "colour": "blue", "motion": "static"},
        {"shape": "square", "colour": "green", "motion": "move_up"},
    ]
    questions = {(q["type"], q["question"]): q["answer"] for q in make_questions(objects)}
    assert questions[("count", "How many objects are there?")] == "three"
    assert questions[("colour", "What colour is the square?")] == "green"
    assert ("colour", "What colour is the circle?") not in questions  # two circles: ambiguous, never asked
    assert questions[("shape", "What shape is the blue object?")] == "circle"
    assert questions[("direction", "Which way does the red circle move?")] == "left"
    assert questions[("direction", "Which way does the square move?")] == "up"
    assert questions[("motion", "What does the blue circle do?")] == MOTIONS["static"]


def test_generated_examples_are_deterministic_and_consistent(qa_config):
    a, b = generate_qa(qa_config, 3, 5), generate_qa(qa_config, 3, 5)
    assert a["question"] == b["question"] and a["answer"] == b["answer"] and np.array_equal(a["video"], b["video"])
    seen = set()
    for example in iter_qa(qa_config, seed=4, num_examples=30):
        objects = example["objects"]
        seen.add(example["type"])
        if example["type"] == "count":
            assert example["answer"] == NUMBER_WORDS[len(objects)]
        elif example["type"] == "colour":
            shape = example["question"].split()[-1].rstrip("?")
            assert [o["colour"] for o in objects if o["shape"] == shape] == [example["answer"]]
        assert caption_example(example).startswith(NUMBER_WORDS[len(objects)] + " object")
    assert seen == {"colour", "shape", "count", "direction", "motion"}
    assert exact_match(" Left. ", "left") and not exact_match("left", "right")


def test_jsonl_round_trip_and_collator(processor, qa_config, tmp_path):
    examples = list(iter_qa(qa_config, seed=5, num_examples=3))
    path = write_qa_jsonl(tmp_path / "qa" / "train.jsonl", examples)
    rows = load_qa_jsonl(path)
    assert [r["answer"] for r in rows] == [e["answer"] for e in examples]
    assert json.loads(path.read_text().splitlines()[0])["video"].startswith("videos/")
    batch = VideoQACollator(processor)(rows)
    assert batch["pixel_values_videos"].shape == (3, 4, 3, 32, 32)
    tokenizer = processor.tokenizer
    for row in range(3):
        target = batch["labels"][row][batch["labels"][row] != -100]
        assert tokenizer.decode(target) == f"{rows[row]['answer'].lower()} <|im_end|>"
        assert batch["attention_mask"][row, 0] == 1  # right padding for training
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"video": "missing.npy", "question": "q", "answer": "a"}) + "\n")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_qa_jsonl(bad)


@torch.no_grad()
def test_evaluate_video_qa_prompts_in_the_slot_form(processor, qa_config):
    """A processor saved without a slot layout is given the model's: the prompts hold one <video> per slot."""
    from trajtok_hf.data.video_qa import evaluate_video_qa, slot_form_processor

    model = tiny_trajvlm_model(tokenizer_overrides={"num_trajectories": 16})
    slotted = slot_form_processor(processor, model.config)
    assert slotted.video_slot_layout == model.config.video_slot_layout and processor.video_slot_layout is None
    assert slot_form_processor(slotted, model.config) is slotted
    examples = list(iter_qa(qa_config, seed=6, num_examples=2))
    calls = []
    original = model.generate
    model.generate = lambda **kw: calls.append(kw["input_ids"]) or original(**kw)
    result = evaluate_video_qa(model, processor, examples, batch_size=2, max_new_tokens=2)
    assert result["num_examples"] == 2 and 0.0 <= result["accuracy"] <= 1.0
    assert (calls[0] == TRAJVLM_VIDEO_TOKEN_ID).sum(1).tolist() == [16, 16]  # 4 frames = one chunk of K = 16 slots


@pytest.mark.parametrize("connector, frames", [("trajtok", 4), ("trajtok", 6), ("patch_pool", 5), ("patch_pool", 8)])
def test_slot_count_matches_the_model(connector, frames):
    """The processor's slot count (from the frame count alone) equals the model's connector slots."""
    from testers import tiny_trajvlm_model, video_batch

    from trajtok_hf.models.processing_trajvlm import num_video_slots

    kwargs = {"patch_pool_temporal_size": 3} if connector == "patch_pool" else {}
    model = tiny_trajvlm_model(connector, **kwargs)
    with torch.no_grad():
        slots = model.get_video_features(video_batch(1, frames, size=32)).token_mask.shape[1]
    assert num_video_slots(frames, **model.config.video_slot_layout) == slots
