"""Synthetic video question answering with exact answers, local (video, question, answer) JSONL files, and a
word-level tokenizer for tiny TrajVLMs — all offline.

Questions are generated from the objects :func:`trajtok_hf.data.synthetic.generate_clip` painted, so every answer
is exact:

=============  ==========================================  ==========================================
type           question                                    answer
=============  ==========================================  ==========================================
``colour``     ``What colour is the circle?``              ``red``          (shape unique in the clip)
``shape``      ``What shape is the red object?``           ``circle``       (colours are always distinct)
``count``      ``How many objects are there?``             ``two``
``direction``  ``Which way does the red circle move?``     ``left`` / ``right`` / ``up`` / ``down``
                                                           (objects with a ``move_*`` motion only)
``motion``     ``What does the red circle do?``            the caption phrase, e.g. ``moves left``
=============  ==========================================  ==========================================

Example ``(seed, index)`` is a pure function of the video config: the clip is ``generate_clip(config, seed, index)``
and the question is drawn with ``numpy.random.default_rng([seed, index, 7])`` among the types that the clip can
answer (uniformly over types first, so ``direction`` is not drowned by the other types), hence deterministic.

:func:`caption_example` gives the caption-stage target: the object count followed by the generator's caption
(``"two objects : a large red circle moves left while a small blue square falls"``), so that pre-training on
captions also grounds the number words the count questions need.

JSONL format (one example per line): ``{"video": "clips/000001.npy", "question": "...", "answer": "..."}``; a
relative ``video`` path is resolved against the JSONL file's folder. ``.npy`` files hold uint8 ``(T, H, W, 3)``
frames; any other path is a video file that the video processor decodes (PyAV).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .synthetic import COLOURS, MOTIONS, SHAPES, SIZES, TEXTURES, SyntheticVideoConfig, generate_clip

QUESTION_TYPES = ("colour", "shape", "count", "direction", "motion")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
DIRECTIONS = {"move_left": "left", "move_right": "right", "move_up": "up", "move_down": "down"}

# A small vocabulary of shapes/colours/motions that tiny models can learn in minutes on a CPU
# (used by examples/train_trajvlm_caption.py, examples/finetune_trajvlm_lora.py and benchmarks/bench_trajvlm_qa.py).
SHAPES_PRESET = dict(
    shapes=("circle", "square", "triangle", "star"),
    colours=("red", "green", "blue", "yellow", "white"),
    motions=("static", "move_left", "move_right", "move_up", "move_down"),
    textures=(),
    texture_probability=0.0,
    backgrounds=("gradient", "noise"),
    background_pan_probability=0.0,
    min_objects=1,
    max_objects=3,
    sizes=("large",),  # at 64² a large object spans ~2×2 patches of 8 px; a small one often a single patch
)


def shapes_video_config(num_frames: int = 16, size: int = 64, **overrides) -> SyntheticVideoConfig:
    """The restricted generator config of :data:`SHAPES_PRESET` at ``size``² pixels."""
    kwargs = {**SHAPES_PRESET, "num_frames": num_frames, "height": size, "width": size}
    kwargs.update(overrides)
    return SyntheticVideoConfig(**kwargs)


def _name(obj: dict[str, Any], objects: Sequence[dict[str, Any]]) -> str:
    """The shortest unambiguous name: "the circle" if the shape is unique, else "the red circle"."""
    if sum(o["shape"] == obj["shape"] for o in objects) == 1:
        return f"the {obj['shape']}"
    return f"the {obj['colour']} {obj['shape']}"


def make_questions(objects: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Every question (with its exact answer and type) that the clip's ``objects`` answer unambiguously."""
    questions = [
        {
            "type": "count",
            "question": "How many objects are there?",
            "answer": NUMBER_WORDS[len(objects)] if len(objects) < len(NUMBER_WORDS) else str(len(objects)),
        }
    ]
    for obj in objects:
        if sum(o["shape"] == obj["shape"] for o in objects) == 1:
            questions.append(
                {"type": "colour", "question": f"What colour is the {obj['shape']}?", "answer": obj["colour"]}
            )
        questions.append(
            {"type": "shape", "question": f"What shape is the {obj['colour']} object?", "answer": obj["shape"]}
        )
        name = _name(obj, objects)
        if obj["motion"] in DIRECTIONS:
            questions.append(
                {"type": "direction", "question": f"Which way does {name} move?", "answer": DIRECTIONS[obj["motion"]]}
            )
        questions.append({"type": "motion", "question": f"What does {name} do?", "answer": MOTIONS[obj["motion"]]})
    return questions


def generate_qa(
    config: SyntheticVideoConfig | None = None,
    seed: int = 0,
    index: int = 0,
    question_types: Sequence[str] = QUESTION_TYPES,
) -> dict[str, Any]:
    """Example ``(seed, index)``: ``video`` uint8 (T, H, W, 3), ``question``, ``answer``, ``type``, ``caption``,
    ``objects``, ``seed``, ``index``. The question type is drawn uniformly among ``question_types`` that the clip can
    answer, then the question uniformly within that type."""
    unknown = [t for t in question_types if t not in QUESTION_TYPES]
    if unknown or not question_types:
        raise ValueError(f"question_types must be a non-empty subset of {QUESTION_TYPES}, got {list(question_types)}")
    clip = generate_clip(config, seed, index)
    candidates = [q for q in make_questions(clip["objects"]) if q["type"] in question_types]
    if not candidates:  # e.g. only "direction" asked and no object moves along an axis: fall back to counting
        candidates = make_questions(clip["objects"])[:1]
    rng = np.random.default_rng([int(seed), int(index), 7])
    types = sorted({q["type"] for q in candidates}, key=QUESTION_TYPES.index)
    chosen_type = types[int(rng.integers(len(types)))]
    of_type = [q for q in candidates if q["type"] == chosen_type]
    question = of_type[int(rng.integers(len(of_type)))]
    return {
        "video": clip["video"],
        "question": question["question"],
        "answer": question["answer"],
        "type": question["type"],
        "caption": clip["caption"],
        "objects": clip["objects"],
        "seed": int(seed),
        "index": int(index),
    }


def iter_qa(
    config: SyntheticVideoConfig | None = None,
    seed: int = 0,
    num_examples: int | None = None,
    start: int = 0,
    question_types: Sequence[str] = QUESTION_TYPES,
) -> Iterator[dict[str, Any]]:
    """Examples ``(seed, start)``, ``(seed, start + 1)``, ... (forever if ``num_examples`` is None)."""
    index = start
    while num_examples is None or index < start + num_examples:
        yield generate_qa(config, seed, index, question_types)
        index += 1


def caption_example(clip: dict[str, Any]) -> str:
    """Caption-stage target: ``"<count> object(s) : <generator caption>"``."""
    count = len(clip["objects"])
    word = NUMBER_WORDS[count] if count < len(NUMBER_WORDS) else str(count)
    return f"{word} object{'s' if count != 1 else ''} : {clip['caption']}"


def exact_match(prediction: str, answer: str) -> bool:
    """Case-, whitespace- and final-punctuation-insensitive equality."""

    def norm(text: str) -> str:
        return " ".join(text.lower().replace("?", " ").replace(".", " ").split())

    return norm(prediction) == norm(answer)


# ----------------------------------------------------------------------------------------------------------------------
# Local (video, question, answer) JSONL
# ----------------------------------------------------------------------------------------------------------------------
def write_qa_jsonl(
    path: str | os.PathLike, examples: Sequence[dict[str, Any]] | Iterator[dict[str, Any]], video_dir: str = "videos"
) -> Path:
    """Write examples with in-memory ``video`` arrays as ``video_dir/NNNNNN.npy`` next to a JSONL file at ``path``.

    Examples whose ``video`` is already a path are written as they are. Extra keys (``type``...) are kept if they are
    JSON-serialisable scalars."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / video_dir).mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i, example in enumerate(examples):
            for key in ("video", "question", "answer"):
                if key not in example:
                    raise ValueError(f"example {i} has no {key!r}")
            video = example["video"]
            if isinstance(video, np.ndarray):
                relative = f"{video_dir}/{i:06d}.npy"
                np.save(path.parent / relative, np.ascontiguousarray(video, dtype=np.uint8))
                video = relative
            elif not isinstance(video, (str, os.PathLike)):
                raise TypeError(f"example {i}: video must be a uint8 array or a path, got {type(video).__name__}")
            row = {"video": os.fspath(video), "question": str(example["question"]), "answer": str(example["answer"])}
            row.update(
                {
                    k: v
                    for k, v in example.items()
                    if k not in row and k not in ("caption",) and isinstance(v, (str, int, float, bool))
                }
            )
            f.write(json.dumps(row) + "\n")
    return path


def load_qa_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a (video, question, answer) JSONL file; ``video`` becomes an absolute path (checked to exist)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"QA file {path} does not exist")
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_number}: not valid JSON: {err}") from err
            missing = [k for k in ("video", "question", "answer") if k not in row]
            if missing:
                raise ValueError(f"{path}:{line_number}: missing key(s) {missing}")
            video = Path(row["video"])
            if not video.is_absolute():
                video = path.parent / video
            if not video.exists():
                raise FileNotFoundError(f"{path}:{line_number}: video {video} does not exist")
            rows.append({**row, "video": str(video)})
    if not rows:
        raise ValueError(f"QA file {path} holds no examples")
    return rows


def load_video(video: Any) -> Any:
    """A JSONL ``video`` entry → what the video processor takes: ``.npy`` → uint8 array; other paths as they are."""
    if isinstance(video, (str, os.PathLike)) and os.fspath(video).endswith(".npy"):
        return np.load(video)
    return video


# ----------------------------------------------------------------------------------------------------------------------
# Collator
# ----------------------------------------------------------------------------------------------------------------------
CAPTION_PROMPT = "Describe the video."


class VideoQACollator:
    """Examples ``{"video", "question", "answer"}`` → a training batch for ``TrajVLMForConditionalGeneration``.

    Each row is the chat-template prompt (one ``<video>`` + the question, then the assistant header) followed by the
    answer and the end-of-turn token. ``labels`` are -100 over the prompt and the padding (the model also sets them
    to -100 over the video tokens it inserts), so only the answer is learned. Rows are padded on ``padding_side``
    (``"right"`` by default for training; the model keeps whichever side the batch uses).

    Args:
        processor: a ``TrajVLMProcessor`` (its tokenizer, chat template and video processor are used).
        padding_side: ``"right"`` or ``"left"``.
        video_kwargs: extra arguments for the video processor (e.g. ``num_frames``).
    """

    def __init__(self, processor, padding_side: str = "right", video_kwargs: dict | None = None):
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.padding_side = padding_side
        self.video_kwargs = dict(video_kwargs or {})
        if self.tokenizer.eos_token is None or self.tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs an eos_token (end of the answer) and a pad_token")

    def prompt(self, question: str) -> str:
        conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(conversation, add_generation_prompt=True)

    def encode(self, question: str, answer: str) -> tuple[list[int], list[int]]:
        """(input_ids, labels) of one example."""
        prompt_ids = self.tokenizer(self.prompt(question), add_special_tokens=False)["input_ids"]
        answer_ids = self.tokenizer(answer + self.tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        encoded = [self.encode(str(ex["question"]), str(ex["answer"])) for ex in examples]
        length = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(examples), length), pad, dtype=torch.long)
        labels = torch.full((len(examples), length), -100, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
        for row, (ids, target) in enumerate(encoded):
            span = slice(0, len(ids)) if self.padding_side == "right" else slice(length - len(ids), length)
            input_ids[row, span] = torch.tensor(ids)
            labels[row, span] = torch.tensor(target)
            attention_mask[row, span] = 1
        videos = [load_video(ex["video"]) for ex in examples]
        pixel_values_videos = self.processor.video_processor(videos, return_tensors="pt", **self.video_kwargs)[
            "pixel_values_videos"
        ]
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "pixel_values_videos": pixel_values_videos,
        }


def slot_form_processor(processor, config):
    """``processor`` writing one ``<video>`` per connector slot of the model with ``config`` (the slot form, where
    every ``generate`` path is correct); a processor saved without ``video_slot_layout`` is rebuilt with it."""
    layout = config.video_slot_layout
    if getattr(processor, "video_slot_layout", None) == layout:
        return processor
    return type(processor)(
        video_processor=processor.video_processor,
        tokenizer=processor.tokenizer,
        chat_template=processor.chat_template,
        video_token=processor.video_token,
        video_slot_layout=layout,
    )


def evaluate_video_qa(
    model, processor, examples: Sequence[dict[str, Any]], batch_size: int = 16, max_new_tokens: int = 6
) -> dict[str, Any]:
    """Greedy answers of ``model`` (a TrajVLM, or a PeftModel around one) to ``examples``; exact-match accuracy.
    Prompts are written in the slot form (:func:`slot_form_processor`).

    Returns ``accuracy``, ``accuracy_by_type`` (when examples carry a ``type``), ``seconds_per_answer`` (wall time of
    ``generate`` only, batched, divided by the number of questions), ``video_tokens_per_video`` (mean LLM tokens per
    video), ``num_examples`` and ``predictions``."""
    import time

    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    processor = slot_form_processor(processor, base.config)
    collator = VideoQACollator(processor, padding_side="left")
    was_training = model.training
    model.eval()
    predictions, correct, seconds, token_counts = [], [], 0.0, []
    tokenizer = processor.tokenizer
    device = next(base.parameters()).device
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            prompts = [collator.prompt(str(ex["question"])) for ex in chunk]
            inputs = processor(text=prompts, videos=[load_video(ex["video"]) for ex in chunk], return_tensors="pt")
            inputs = {k: v.to(device) for k, v in inputs.items()}
            token_counts += base.get_video_features(inputs["pixel_values_videos"]).num_video_tokens.tolist()
            began = time.perf_counter()
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            seconds += time.perf_counter() - began
            answers = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            for example, answer in zip(chunk, answers, strict=True):
                predictions.append(answer.strip())
                correct.append(exact_match(answer, str(example["answer"])))
    if was_training:
        model.train()
    result = {
        "accuracy": sum(correct) / max(len(correct), 1),
        "num_examples": len(correct),
        "seconds_per_answer": seconds / max(len(correct), 1),
        "video_tokens_per_video": sum(token_counts) / max(len(token_counts), 1),
        "predictions": predictions,
    }
    types = [ex.get("type") for ex in examples]
    if all(t is not None for t in types):
        result["accuracy_by_type"] = {
            t: sum(c for c, tt in zip(correct, types, strict=True) if tt == t) / types.count(t)
            for t in sorted(set(types))
        }
    return result


# ----------------------------------------------------------------------------------------------------------------------
# Word-level tokenizer
# ----------------------------------------------------------------------------------------------------------------------
SPECIAL_TOKENS = ("<pad>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<video>")
_EXTRA_WORDS = (
    "user assistant system what colour is the shape object objects how many are there which way does move do "
    "a an and while on background drifting describe video this of in : , . ? left right up down"
)


def qa_vocabulary(extra_words: Sequence[str] = ()) -> list[str]:
    """Every word of the generator's captions (all shapes, colours, sizes, textures, motions) and of the questions."""
    words = set(_EXTRA_WORDS.split()) | set(NUMBER_WORDS) | set(SHAPES) | set(COLOURS) | set(SIZES) | set(TEXTURES)
    for phrase in MOTIONS.values():
        words.update(phrase.split())
    words.update(extra_words)
    return sorted(words)


def build_qa_tokenizer(extra_words: Sequence[str] = (), padding_side: str = "left"):
    """A word-level ``PreTrainedTokenizerFast`` built offline with the ``tokenizers`` library.

    Special tokens: ``<pad>`` (0), ``<unk>``, ``<|endoftext|>`` (bos/eos), ``<|im_start|>``, ``<|im_end|>`` and the
    ``<video>`` placeholder; then :func:`qa_vocabulary`. Text is split on whitespace and punctuation and lower-cased;
    decoding joins words with spaces. ``padding_side="left"`` suits batched generation."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in qa_vocabulary(extra_words):
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>", "<video>"],
        padding_side=padding_side,
        model_max_length=512,
    )
    return tokenizer


__all__ = [
    "CAPTION_PROMPT",
    "DIRECTIONS",
    "NUMBER_WORDS",
    "QUESTION_TYPES",
    "SHAPES_PRESET",
    "VideoQACollator",
    "build_qa_tokenizer",
    "caption_example",
    "evaluate_video_qa",
    "exact_match",
    "generate_qa",
    "iter_qa",
    "load_qa_jsonl",
    "load_video",
    "make_questions",
    "qa_vocabulary",
    "shapes_video_config",
    "slot_form_processor",
    "write_qa_jsonl",
]
