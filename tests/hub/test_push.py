"""Pushing validated folders (trajtok_hf.hub.push_folder and examples/push_to_hub.py) to the fake Hub: the files and
card that arrive, the repository and branch, and a failure at each upload step named in the error."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml
from hub_testing import TOKEN, TRAJTOK_FILES, FakeHub, folder_digest, push_to_hub
from huggingface_hub import ModelCard
from safetensors.torch import load as load_safetensors

import trajtok_hf.models
from trajtok_hf import TrajTokVideoProcessor
from trajtok_hf.hub import PushError, build_model_card, push_folder, validate_folder
from trajtok_hf.training import log_jsonl

# huggingface_hub's LFS upload passes a file object as `data=`, which httpx deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def _card_metadata(readme: bytes, tmp_path: Path) -> tuple[ModelCard, dict]:
    path = tmp_path / "pushed_README.md"
    path.write_bytes(readme)
    card = ModelCard.load(path)  # huggingface_hub's own parser
    header = re.match(r"^---\s*\n(.*?)\n---\s*\n", readme.decode(), flags=re.S).group(1)
    return card, yaml.safe_load(header)


def _run_card_code(readme: bytes, repo_id: str, folder: Path):
    """The card's 'How to use' code, with the Hub id replaced by the local folder (the fake Hub serves no downloads)."""
    code = re.search(r"```python\n(.*?)```", readme.decode(), flags=re.S).group(1)
    assert f'repo_id = "{repo_id}"' in code
    code = code.replace(f'repo_id = "{repo_id}"', f"repo_id = {str(folder)!r}")
    namespace: dict = {}
    with torch.no_grad():
        exec(compile(code, "model_card_how_to_use", "exec"), namespace)  # noqa: S102
    return namespace


def _assert_pushed_model_repo(hub, repo_id, folder, expected_files, tmp_path, branch="main", code_folder=None):
    """The repo holds ``expected_files``, byte-identical to ``folder``'s (the ``*.py`` to ``code_folder``'s when the
    remote code was staged from there)."""
    pushed = hub.files(repo_id, branch)
    assert sorted(pushed) == sorted(expected_files)
    assert not any(name.endswith((".bin", ".pt", ".pth", ".ckpt")) for name in pushed)
    for name in expected_files:
        if name != "README.md":
            source = code_folder if code_folder is not None and name.endswith(".py") else folder
            assert pushed[name] == (source / name).read_bytes(), name  # byte-identical upload
    commit = hub.commits(repo_id)[-1]
    assert commit["kinds"]["model.safetensors"] == "lfs"  # went through the LFS batch + PUT + verify path
    assert load_safetensors(pushed["model.safetensors"])  # real safetensors
    config = json.loads(pushed["config.json"])
    assert "auto_map" in config
    for target in config["auto_map"].values():
        assert target.split(".")[0] + ".py" in pushed  # every auto_map module is in the repo
    assert hub.unhandled == []
    return pushed, config


TRAJVIT2_FILES = [
    "README.md",
    "attention_trajtok.py",
    "config.json",
    "configuration_trajtok.py",
    "configuration_trajvit2.py",
    "loss_contrastive.py",
    "loss_trajtok.py",
    "model.safetensors",
    "modeling_trajtok.py",
    "modeling_trajvit2.py",
    "modeling_utils_trajtok.py",
    "modeling_vit3d.py",
    "perceiver_trajtok.py",
    "processing_trajvit2.py",
    "processing_utils_trajtok.py",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "video_io_trajtok.py",
    "video_processing_trajtok.py",
]


def test_cli_pushes_trajtok_segmenter(fake_hub, trajtok_run, tmp_path, capsys):
    """The command line end to end, remote-code check included: validated, pushed to a private repo on a branch,
    the card's eval results are the metrics.jsonl numbers, the card's code runs, the folder is unchanged."""
    final, metrics = trajtok_run
    before = folder_digest(final)
    code = push_to_hub.main(
        [
            "--model",
            str(final),
            "--repo_id",
            "me/trajtok-segmenter-tiny",
            "--private",
            "--revision",
            "v0.1",
            "--commit_message",
            "tiny segmenter",
            "--endpoint",
            fake_hub.endpoint,
            "--token",
            TOKEN,
            "--dataset",
            "me/procedural-videos",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "remote code matches" in out.out and "pushed 11 files" in out.out
    repo = fake_hub.repos["me/trajtok-segmenter-tiny"]
    assert repo["private"] and set(repo["branches"]) == {"main", "v0.1"}
    assert fake_hub.commits("me/trajtok-segmenter-tiny")[-1]["summary"] == "tiny segmenter"
    pushed, config = _assert_pushed_model_repo(
        fake_hub, "me/trajtok-segmenter-tiny", final, TRAJTOK_FILES, tmp_path, branch="v0.1"
    )
    assert config["auto_map"]["AutoModel"] == "modeling_trajtok.TrajTokModel"
    assert fake_hub.files("me/trajtok-segmenter-tiny", "main") == {}  # only the branch got the commit
    assert not any(path.endswith("/preupload/main") for _, path in fake_hub.requests)

    card, metadata = _card_metadata(pushed["README.md"], tmp_path)
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "mask-generation"
    assert metadata["license"] == "apache-2.0" and "trajtok" in metadata["tags"]
    assert metadata["datasets"] == ["me/procedural-videos"]
    got = {r.metric_name: r.metric_value for r in card.data.eval_results}
    want = {
        "ARI": metrics["ARI"],
        "Foreground ARI": metrics["FG-ARI"],
        "Matched mIoU": metrics["mIoU"],
        "Foreground matched mIoU": metrics["FG-mIoU"],
    }
    assert got == pytest.approx(want, abs=1e-6)
    assert {r.dataset_split for r in card.data.eval_results} == {"held-out"}
    text = pushed["README.md"].decode()
    for section in (
        "## What it is",
        "## How to use",
        "## Training data and command",
        "## Evaluation results",
        "## Limitations",
        "## Citation",
    ):
        assert section in text
    assert "Coarse masks" in text and "Single-object" in text and "2602.22779" in text
    out = _run_card_code(pushed["README.md"], "me/trajtok-segmenter-tiny", final)["out"]
    assert out.trajectory_ids.shape[:2] == (1, 4)
    assert folder_digest(final) == before


def test_cli_pushes_a_folder_without_code_with_the_package_remote_code(fake_hub, trajtok_run, tmp_path, capsys):
    """A folder holding no *.py (as the shipped checkpoints): the remote code is staged from the installed package,
    checked in a Python without trajtok_hf, and pushed with the folder's own weights and configs; the folder is only
    read."""
    final, _ = trajtok_run
    folder = tmp_path / "no_code"
    shutil.copytree(final, folder, ignore=shutil.ignore_patterns("*.py"))
    before = folder_digest(folder)
    code = push_to_hub.main(
        ["--model", str(folder), "--repo_id", "me/seg-staged", "--endpoint", fake_hub.endpoint, "--token", TOKEN]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "remote code matches" in out.out and "staged from the installed trajtok_hf" in out.out
    assert "pushed 11 files" in out.out
    package_code = Path(trajtok_hf.models.__file__).parent
    _assert_pushed_model_repo(fake_hub, "me/seg-staged", folder, TRAJTOK_FILES, tmp_path, code_folder=package_code)
    assert folder_digest(folder) == before and not list(folder.glob("*.py"))


def test_push_trajvit2_with_processor(fake_hub, trajvit2_run, tmp_path):
    """Library API: TrajViT2 validated with a caption through its processor; tokenizer files pushed; R@K results."""
    final, metrics = trajvit2_run
    before = folder_digest(final)
    report = validate_folder(final)
    assert report.processor_class == "TrajViT2Processor"
    assert {"input_ids", "attention_mask", "pixel_values_videos"} <= set(report.inputs)
    assert report.outputs["logits_per_video"].shape == (1, 1)
    card = build_model_card(report, "me/trajvit2-tiny", base_model=["me/trajtok-segmenter-tiny"])
    result = push_folder(report, "me/trajvit2-tiny", card, endpoint=fake_hub.endpoint, token=TOKEN)
    assert result.files == TRAJVIT2_FILES[1:] + ["README.md"]
    assert result.commit_url.startswith(fake_hub.endpoint)
    pushed, config = _assert_pushed_model_repo(fake_hub, "me/trajvit2-tiny", final, TRAJVIT2_FILES, tmp_path)
    assert json.loads(pushed["processor_config.json"])["auto_map"]["AutoProcessor"] == (
        "processing_trajvit2.TrajViT2Processor"
    )
    loaded, metadata = _card_metadata(pushed["README.md"], tmp_path)
    assert metadata["pipeline_tag"] == "video-classification" and metadata["base_model"] == "me/trajtok-segmenter-tiny"
    assert "datasets" not in metadata  # no Hub dataset was named: the card text says what the data was
    got = {r.metric_type: r.metric_value for r in loaded.data.eval_results}
    assert got["t2v_recall@5"] == pytest.approx(metrics["t2v_R@5"]) and got["v2t_median_rank"] == metrics["v2t_MedR"]
    assert {r.task_type for r in loaded.data.eval_results} == {"video-text-retrieval"}
    out = _run_card_code(pushed["README.md"], "me/trajvit2-tiny", final)["out"]
    assert out.logits_per_video.shape == (2, 2)
    assert folder_digest(final) == before
    assert b"## Notes" not in pushed["README.md"]
    noted = build_model_card(report, "me/trajvit2-tiny", notes="The text tower is a **tiny BERT**.\n")
    assert "## Notes\n\nThe text tower is a **tiny BERT**." in noted.text
    assert noted.text.index("## Notes") < noted.text.index("## Limitations")
    with pytest.raises(TypeError, match="notes"):
        build_model_card(report, "me/trajvit2-tiny", notes=["not", "markdown"])


def _other_model_cases():
    """TrajAdapter / TrajVLM: only when their classes import (they are being finished elsewhere)."""
    cases = []
    for name, builder in (("trajadapter", "tiny_trajadapter_model"), ("trajvlm", "tiny_trajvlm_model")):
        try:
            import testers

            build = getattr(testers, builder)
            reason = None
        except Exception as error:  # noqa: BLE001
            build, reason = None, f"{name} is not importable yet: {type(error).__name__}: {error}"
        cases.append(pytest.param(name, build, id=name, marks=pytest.mark.skipif(build is None, reason=str(reason))))
    return cases


@pytest.mark.parametrize("name,build", _other_model_cases())
def test_push_other_models(fake_hub, name, build, tmp_path):
    folder = tmp_path / name
    build().save_pretrained(folder)
    if name == "trajvlm":  # with the processor users need (tokenizer with <video>, chat template)
        from trajtok_hf import TrajVLMProcessor
        from trajtok_hf.data.video_qa import build_qa_tokenizer

        video_processor = TrajTokVideoProcessor(
            size={"height": 32, "width": 32}, num_frames=4, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
        TrajVLMProcessor(video_processor=video_processor, tokenizer=build_qa_tokenizer()).save_pretrained(folder)
        # what examples/train_trajvlm_caption.py writes next to the model: its arguments and training losses
        (folder / "train_args.json").write_text(
            json.dumps(
                {"output_dir": "runs/vlm", "connector": "trajtok", "segmenter": None, "steps": 2, "train_seconds": 1.0}
            )
        )
        log_jsonl(folder / "metrics.jsonl", {"step": 2, "loss": 0.875})
    eval_results = tmp_path / "eval.json"  # finetune_trajvlm_lora.py's format / a generic --eval_results file
    eval_results.write_text(json.dumps({"after": {"accuracy": 0.5, "accuracy_by_type": {"colour": 0.75}}}))
    report = validate_folder(folder)
    card = build_model_card(report, f"me/{name}-tiny")
    result = push_folder(report, f"me/{name}-tiny", card, endpoint=fake_hub.endpoint, token=TOKEN)
    pushed, config = _assert_pushed_model_repo(fake_hub, f"me/{name}-tiny", folder, result.files, tmp_path)
    logs = {"train_args.json", "metrics.jsonl"}
    assert sorted(result.files) == sorted([f for f in os.listdir(folder) if f not in logs] + ["README.md"])
    _, metadata = _card_metadata(pushed["README.md"], tmp_path)
    expected_auto = {"trajadapter": "AutoModelForVideoClassification", "trajvlm": "AutoModelForImageTextToText"}
    assert expected_auto[name] in config["auto_map"]
    assert metadata["pipeline_tag"] == {"trajadapter": "video-classification", "trajvlm": "video-text-to-text"}[name]
    loaded = ModelCard(pushed["README.md"].decode())
    assert [(r.metric_name, r.metric_value) for r in loaded.data.eval_results] == [
        ("Accuracy", 0.5),
        ("Accuracy (colour)", 0.75),
    ]
    if name == "trajvlm":
        text = loaded.text
        assert "python examples/train_trajvlm_caption.py --output_dir runs/vlm --connector trajtok --steps 2" in text
        assert "recorded by the training script in train_args.json" in text
    _run_card_code(pushed["README.md"], f"me/{name}-tiny", folder)
    print(f"{name} repo files: {sorted(pushed)}")


def test_server_error_mid_upload(trajtok_run, tmp_path, capsys, monkeypatch):
    """The commit fails with HTTP 500 after the LFS upload: a PushError names the step, no commit exists, and the
    local folder is byte-identical."""
    final, _ = trajtok_run
    before = folder_digest(final)
    with FakeHub(fail={"commit": 500}) as hub:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        report = validate_folder(final)
        card = build_model_card(report, "me/seg")
        with pytest.raises(PushError, match=r"(?s)creating the commit \(HTTP 500\).*injected failure") as caught:
            push_folder(report, "me/seg", card, endpoint=hub.endpoint, token=TOKEN)
        assert "unchanged" in str(caught.value)
        assert hub.commits("me/seg") == [] and hub.files("me/seg") == {}
        assert len(hub.lfs) == 1  # model.safetensors had been uploaded: the failure really was mid-upload
        # the same through the command line: exit 1 and the failed step on stderr
        code = push_to_hub.main(
            [
                "--model",
                str(final),
                "--repo_id",
                "me/seg",
                "--endpoint",
                hub.endpoint,
                "--token",
                TOKEN,
                "--skip_remote_code_check",
            ]
        )
        err = capsys.readouterr().err
        assert code == 1 and "creating the commit (HTTP 500)" in err
    with FakeHub(fail={"lfs-batch": 403}) as hub:  # an earlier step fails: it is the one named
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
        with pytest.raises(PushError, match=r"requesting LFS upload URLs \(HTTP 403\)"):
            push_folder(report, "me/seg", card, endpoint=hub.endpoint, token=TOKEN)
    with FakeHub(fail={"validate-yaml": 400}) as hub:  # the Hub rejects the card before any file is uploaded
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
        with pytest.raises(PushError, match=r"(?s)validating the model card metadata on the Hub.*injected failure"):
            push_folder(report, "me/seg", card, endpoint=hub.endpoint, token=TOKEN)
        assert hub.lfs == {} and hub.commits("me/seg") == []
    assert folder_digest(final) == before
