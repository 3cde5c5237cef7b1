"""Publishing (trajtok_hf.hub, examples/push_to_hub.py) against a fake Hub on 127.0.0.1 — no network.

The fake Hub (FakeHub below) is a threading http.server on a random local port that implements the endpoints
huggingface_hub 2.4's HfApi calls for create_repo / create_branch / create_commit with LFS files:

    POST /api/repos/create                              create_repo (409 + url when it exists, as the Hub)
    POST /api/models/{repo}/branch/{branch}             create_branch
    POST /api/validate-yaml                             README metadata check (create_commit, ModelCard.validate)
    POST /api/models/{repo}/preupload/{rev}             upload mode per file: "lfs" for safetensors / binary
    POST /{repo}.git/info/lfs/objects/batch             LFS batch API (basic transfer: upload + verify actions)
    PUT  /lfs/{oid}   POST /lfs/{oid}/verify            the LFS object store (sha256 checked)
    POST /api/models/{repo}/commit/{rev}                NDJSON commit (header, file (base64), lfsFile lines)
    GET  /api/agent-harnesses                           huggingface_hub's user-agent telemetry: answered 404

Every request is logged; anything else answers 404 and is recorded as unhandled (the tests assert there is none).
The server stops when the test ends, and by itself after LIFETIME_S seconds in any case. Uploads go through the
LFS path: hf_xet is disabled for these tests (the xet protocol needs a CAS server).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import shutil
import sys
import threading
from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml
from huggingface_hub import ModelCard, ModelCardData
from safetensors.torch import load as load_safetensors
from testers import tiny_trajtok_model, tiny_trajvit2_model

from trajtok_hf import TrajTokVideoProcessor, TrajViT2Processor
from trajtok_hf.data.synthetic import SyntheticVideoConfig, generate_clip
from trajtok_hf.hub import (
    FolderValidationError,
    PushError,
    build_model_card,
    find_eval_metrics,
    push_folder,
    select_files,
    validate_card_metadata,
    validate_folder,
)
from trajtok_hf.training import (
    build_caption_tokenizer,
    evaluate_retrieval,
    evaluate_segmentation,
    log_jsonl,
    synthetic_caption_words,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import push_to_hub  # noqa: E402

# huggingface_hub's LFS upload passes a file object as `data=`, which httpx deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

TOKEN = "hf_fake_token_for_tests"
LIFETIME_S = 120
MAX_BODY = 64 * 2**20


# ---------------------------------------------------------------------------------------------------------- fake Hub
class FakeHub:
    """A bounded in-memory Hub. ``fail``: {route name: HTTP status} answers that route with an error instead."""

    def __init__(self, fail: dict | None = None, user: str = "fake-user"):
        self.fail = dict(fail or {})
        self.user = user
        self.repos: dict[str, dict] = {}  # repo_id -> {"private", "branches": {name: {path: bytes}}, "commits": []}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = None

    # -- lifecycle
    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.timer = threading.Timer(LIFETIME_S, self.server.shutdown)  # stops itself whatever happens
        self.timer.daemon = True
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    # -- what a test reads
    def files(self, repo_id: str, branch: str = "main") -> dict[str, bytes]:
        return self.repos[repo_id]["branches"][branch]

    def commits(self, repo_id: str) -> list[dict]:
        return self.repos[repo_id]["commits"]


class _Handler(http.server.BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    # -- plumbing
    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
                if len(data) > MAX_BODY:
                    raise ValueError("body too large")
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length)

    def _send(self, status: int, payload=None, headers: dict | None = None):
        body = json.dumps(payload if payload is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, code: str | None = None):
        self._send(status, {"error": message}, {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})})

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    def _route(self, method: str):
        hub, path = self.hub, self.path.split("?")[0]
        with hub.lock:
            hub.requests.append((method, path))
        try:
            body = self._body()
        except ValueError as error:
            return self._error(413, str(error))
        routes = [
            ("POST", r"/api/repos/create", "create", self._create),
            ("POST", r"/api/validate-yaml", "validate-yaml", self._validate_yaml),
            ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/branch/(?P<branch>[^/]+)", "branch", self._branch),
            ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)", "preupload", self._preupload),
            ("POST", r"/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch", "lfs-batch", self._lfs_batch),
            ("PUT", r"/lfs/(?P<oid>[0-9a-f]{64})", "lfs-upload", self._lfs_upload),
            ("POST", r"/lfs/(?P<oid>[0-9a-f]{64})/verify", "lfs-verify", self._lfs_verify),
            ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)", "commit", self._commit),
        ]
        for verb, pattern, name, handler in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                if name in hub.fail:
                    message = f"fake hub: injected failure at {name}"
                    return self._send(
                        hub.fail[name],
                        {"error": message, "errors": [{"message": message}]},
                        {"X-Error-Message": message},
                    )
                needs_token = name not in ("lfs-upload", "lfs-verify", "validate-yaml")  # as on the Hub
                if needs_token and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._error(401, "fake hub: missing or wrong token")
                args = {k: v.replace("%2F", "/") for k, v in match.groupdict().items()}
                return handler(body, **args)
        if (method, path) == ("GET", "/api/agent-harnesses"):
            # huggingface_hub's best-effort user-agent telemetry (utils/_detect_agent.py): a 404 keeps it from
            # caching anything under HF_HOME; it is not part of the upload protocol.
            return self._error(404, "fake hub: no agent registry")
        with hub.lock:
            hub.unhandled.append((method, path))
        self._error(404, f"fake hub: no route for {method} {path}")

    def _repo(self, repo: str):
        found = self.hub.repos.get(repo)
        if found is None:
            self._error(404, "Repository not found", "RepoNotFound")
        return found

    # -- endpoints
    def _create(self, body):
        data = json.loads(body)
        repo_id = f"{data.get('organization') or self.hub.user}/{data['name']}"
        url = f"{self.hub.endpoint}/{repo_id}"
        with self.hub.lock:
            if repo_id in self.hub.repos:
                return self._send(409, {"error": "You already created this model repo", "url": url})
            self.hub.repos[repo_id] = {
                "private": data.get("visibility") == "private",
                "type": data.get("type"),
                "branches": {"main": {}},
                "commits": [],
            }
        self._send(200, {"url": url, "name": repo_id})

    def _validate_yaml(self, body):
        content = json.loads(body)["content"]
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, flags=re.S)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
            ModelCardData(**(metadata or {}))
        except Exception as error:  # noqa: BLE001 - any parse failure is a 400, as on the Hub
            return self._send(400, {"errors": [{"message": str(error)}]})
        warnings = [] if metadata else [{"message": "empty or missing yaml metadata in repo card"}]
        self._send(200, {"errors": [], "warnings": warnings})

    def _branch(self, body, repo, branch):
        found = self._repo(repo)
        if found is None:
            return
        with self.hub.lock:
            if branch in found["branches"]:
                return self._send(409, {"error": "Reference already exists"})
            found["branches"][branch] = dict(found["branches"]["main"])
        self._send(200, {})

    def _preupload(self, body, repo, rev):
        if self._repo(repo) is None:
            return
        files = []
        for entry in json.loads(body)["files"]:
            sample = base64.b64decode(entry["sample"])
            lfs = entry["path"].endswith(".safetensors") or b"\x00" in sample or entry["size"] >= 10 * 2**20
            files.append(
                {"path": entry["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": None}
            )
        self._send(200, {"files": files, "commitOid": "0" * 40})

    def _lfs_batch(self, body, repo):
        if self._repo(repo) is None:
            return
        objects = []
        for obj in json.loads(body)["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.hub.lfs:
                href = f"{self.hub.endpoint}/lfs/{obj['oid']}"
                entry["actions"] = {"upload": {"href": href}, "verify": {"href": href + "/verify"}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects})

    def _lfs_upload(self, body, oid):
        if hashlib.sha256(body).hexdigest() != oid:
            return self._error(400, "fake hub: sha256 mismatch")
        with self.hub.lock:
            self.hub.lfs[oid] = body
        self._send(200, {})

    def _lfs_verify(self, body, oid):
        data = json.loads(body)
        stored = self.hub.lfs.get(oid)
        if stored is None or len(stored) != data["size"]:
            return self._error(404, "fake hub: object not uploaded")
        self._send(200, {})

    def _commit(self, body, repo, rev):
        found = self._repo(repo)
        if found is None:
            return
        if rev not in found["branches"]:
            return self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0]["key"] != "header":
            return self._error(400, "fake hub: the first NDJSON line must be the header")
        files, kinds = {}, {}
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
                kinds[value["path"]] = "regular"
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.hub.lfs:
                    return self._error(400, f"fake hub: LFS object of {value['path']} was never uploaded")
                files[value["path"]] = self.hub.lfs[value["oid"]]
                kinds[value["path"]] = "lfs"
            else:
                return self._error(400, f"fake hub: unsupported commit line {line['key']}")
        oid = hashlib.sha1(body).hexdigest()
        with self.hub.lock:
            found["branches"][rev].update(files)
            found["commits"].append(
                {"revision": rev, "summary": lines[0]["value"]["summary"], "files": files, "kinds": kinds, "oid": oid}
            )
        self._send(
            200,
            {
                "commitUrl": f"{self.hub.endpoint}/{repo}/commit/{oid}",
                "commitOid": oid,
                "success": True,
                "pullRequestUrl": None,
            },
        )


@pytest.fixture
def fake_hub(monkeypatch):
    """A running FakeHub; huggingface_hub points at it (ENDPOINT), is online for it, and uploads through LFS."""
    with FakeHub() as hub:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # conftest sets offline mode
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield hub


# ------------------------------------------------------------------------------------------------ models to publish
class _SingleProcess:
    """What trajtok_hf.training's evaluate_* need from an Accelerator on one process."""

    @staticmethod
    def gather_for_metrics(x):
        return x


def _clips(count, frames=4, size=64, seed=7):
    config = SyntheticVideoConfig(num_frames=frames, height=size, width=size, max_objects=3)
    return [generate_clip(config, seed=seed, index=i) for i in range(count)]


@pytest.fixture(scope="module")
def trajtok_run(tmp_path_factory):
    """A train_segmenter.py-shaped output_dir: final/ (model + video processor, plus files that must not be pushed)
    and metrics.jsonl whose eval record is computed by evaluate_segmentation on held-out synthetic clips."""
    run = tmp_path_factory.mktemp("seg_run")
    final = run / "final"
    model = tiny_trajtok_model()
    processor = TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4)
    model.save_pretrained(final)
    processor.save_pretrained(final)
    (final / "pytorch_model.bin").write_bytes(b"pickle weights must not be pushed")
    (final / "optimizer.pt").write_bytes(b"neither must optimizer state")
    (final / "README.md").write_text("a stale local README: replaced by the generated card\n")
    (final / "checkpoints").mkdir()
    (final / "checkpoints" / "latest").write_text("step_000001\n")
    clips = _clips(3)
    batches = [
        {
            "pixel_values_videos": processor([c["video"] for c in clips], return_tensors="pt")["pixel_values_videos"],
            "segmentation_labels": torch.stack([torch.as_tensor(c["segmentation_labels"]) for c in clips]),
        }
    ]
    with torch.no_grad():
        metrics = evaluate_segmentation(model, batches, _SingleProcess())
    log_jsonl(run / "metrics.jsonl", {"step": 1, "loss": 1.5, "focal": 0.5, "dice": 1.0})
    log_jsonl(run / "metrics.jsonl", {"step": 1, **{f"eval/{k}": v for k, v in metrics.items()}})
    return final, metrics


@pytest.fixture(scope="module")
def trajvit2_run(tmp_path_factory):
    """A train_trajvit2.py-shaped output_dir: final/ with a TrajViT2Processor (word-level caption tokenizer) and a
    metrics.jsonl whose eval record is computed by evaluate_retrieval."""
    run = tmp_path_factory.mktemp("clip_run")
    final = run / "final"
    tokenizer = build_caption_tokenizer(synthetic_caption_words(), model_max_length=32)
    model = tiny_trajvit2_model(text_overrides={"vocab_size": len(tokenizer)})
    processor = TrajViT2Processor(
        video_processor=TrajTokVideoProcessor(size={"height": 64, "width": 64}, num_frames=4), tokenizer=tokenizer
    )
    model.save_pretrained(final)
    processor.save_pretrained(final)
    clips = _clips(3, seed=8)
    batch = processor(
        text=[c["caption"] for c in clips], videos=[c["video"] for c in clips], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        metrics = evaluate_retrieval(model, [batch], _SingleProcess())
    log_jsonl(run / "metrics.jsonl", {"step": 2, **{f"eval/{k}": v for k, v in metrics.items()}})
    return final, metrics


def _folder_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


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


def _assert_pushed_model_repo(hub, repo_id, folder, expected_files, tmp_path, branch="main"):
    pushed = hub.files(repo_id, branch)
    assert sorted(pushed) == sorted(expected_files)
    assert not any(name.endswith((".bin", ".pt", ".pth", ".ckpt")) for name in pushed)
    for name in expected_files:
        if name != "README.md":
            assert pushed[name] == (folder / name).read_bytes(), name  # byte-identical upload
    commit = hub.commits(repo_id)[-1]
    assert commit["kinds"]["model.safetensors"] == "lfs"  # went through the LFS batch + PUT + verify path
    assert load_safetensors(pushed["model.safetensors"])  # real safetensors
    config = json.loads(pushed["config.json"])
    assert "auto_map" in config
    for target in config["auto_map"].values():
        assert target.split(".")[0] + ".py" in pushed  # every auto_map module is in the repo
    assert hub.unhandled == []
    return pushed, config


# --------------------------------------------------------------------------------------------------------- the tests
TRAJTOK_FILES = [
    "README.md",
    "config.json",
    "configuration_trajtok.py",
    "model.safetensors",
    "modeling_trajtok.py",
    "modeling_utils_trajtok.py",
    "perceiver_trajtok.py",
    "video_preprocessor_config.json",
    "video_processing_trajtok.py",
]
TRAJVIT2_FILES = [
    "README.md",
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
    "video_processing_trajtok.py",
]


def test_cli_pushes_trajtok_segmenter(fake_hub, trajtok_run, tmp_path, capsys):
    """The command line end to end, remote-code check included: validated, pushed to a private repo on a branch,
    the card's eval results are the metrics.jsonl numbers, the card's code runs, the folder is unchanged."""
    final, metrics = trajtok_run
    before = _folder_digest(final)
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
    assert "remote code matches" in out.out and "pushed 9 files" in out.out
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
    assert _folder_digest(final) == before


def test_push_trajvit2_with_processor(fake_hub, trajvit2_run, tmp_path):
    """Library API: TrajViT2 validated with a caption through its processor; tokenizer files pushed; R@K results."""
    final, metrics = trajvit2_run
    before = _folder_digest(final)
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
    assert _folder_digest(final) == before
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


def _break_remove(folder):
    (folder / "perceiver_trajtok.py").unlink()


def _break_weights(folder, name="model.safetensors"):
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])


def _break_a_shard(folder):
    """Re-save the weights as two shards + index (as save_pretrained(max_shard_size=...)), then cut the second."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, folder / shard, metadata={"format": "pt"})
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "model.safetensors").unlink()
    _break_weights(folder, "model-00002-of-00002.safetensors")


def _break_extra_weights(folder):
    (folder / "extra.safetensors").write_bytes(b"not safetensors")  # would be pushed: refused, by name


def _break_index(folder):
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {"a": "model-0')


def _break_only_pickle(folder):
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


def _break_model_type(folder):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))


def _break_missing_tensor(folder):
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    tensors.pop(sorted(tensors)[0])
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def _break_no_auto_map(folder):
    config = json.loads((folder / "config.json").read_text())
    config.pop("auto_map")
    (folder / "config.json").write_text(json.dumps(config))


BROKEN = [
    (_break_remove, "perceiver_trajtok.py is not in"),
    (_break_weights, "does not load: .*/model.safetensors is not a readable safetensors file"),
    (_break_a_shard, "does not load: .*/model-00002-of-00002.safetensors is not a readable safetensors file"),
    (_break_extra_weights, "does not load: .*/extra.safetensors is not a readable safetensors file"),
    (_break_index, "weight index .*/model.safetensors.index.json cannot be read as JSON"),
    (_break_only_pickle, "no \\*.safetensors weights .*pytorch_model.bin"),
    (_break_model_type, "not a trajtok_hf model"),
    (_break_missing_tensor, "missing_keys"),
    (_break_no_auto_map, "no auto_map"),
]


def test_invalid_folders_are_refused_and_nothing_is_sent(fake_hub, trajtok_run, tmp_path, capsys):
    final, _ = trajtok_run
    for index, (breaker, match) in enumerate(BROKEN):
        folder = tmp_path / f"broken_{index}"
        shutil.copytree(final, folder)
        breaker(folder)
        with pytest.raises(FolderValidationError, match=match):
            validate_folder(folder)
    # the command line: exit 2, a clear message, and not one request reached the Hub
    code = push_to_hub.main(
        [
            "--model",
            str(tmp_path / "broken_1"),
            "--repo_id",
            "me/broken",
            "--endpoint",
            fake_hub.endpoint,
            "--token",
            TOKEN,
            "--skip_remote_code_check",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "refusing to push" in err and "does not load" in err
    assert fake_hub.requests == [] and fake_hub.repos == {}


def test_remote_code_check_refuses_stale_or_broken_code(trajtok_run, monkeypatch):
    """The comparison behind check_remote_code=True, with the subprocess replaced (the real one runs in the CLI test):
    outputs that differ from the installed package's, or a subprocess that fails, refuse the folder."""
    import subprocess

    from safetensors.torch import save_file

    final, _ = trajtok_run
    reference = validate_folder(final).outputs

    def fake_run(command, **kwargs):
        out_path = command[5]
        save_file({k: (v + 1 if v.is_floating_point() else v).contiguous() for k, v in reference.items()}, out_path)
        return subprocess.CompletedProcess(command, 0, stdout="REMOTE_CODE_OK TrajTokModel", stderr="")

    monkeypatch.setattr("trajtok_hf.hub.subprocess.run", fake_run)
    with pytest.raises(FolderValidationError, match="stale"):
        validate_folder(final, check_remote_code=True)
    monkeypatch.setattr(
        "trajtok_hf.hub.subprocess.run",
        lambda command, **kwargs: subprocess.CompletedProcess(
            command, 1, stdout="", stderr="ImportError: cannot import name 'TrajTokModel'"
        ),
    )
    with pytest.raises(FolderValidationError, match="(?s)without trajtok_hf installed.*ImportError"):
        validate_folder(final, check_remote_code=True)


def test_server_error_mid_upload(trajtok_run, tmp_path, capsys, monkeypatch):
    """The commit fails with HTTP 500 after the LFS upload: a PushError names the step, no commit exists, and the
    local folder is byte-identical."""
    final, _ = trajtok_run
    before = _folder_digest(final)
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
    assert _folder_digest(final) == before


def test_card_metadata_is_validated_locally(fake_hub, trajtok_run, monkeypatch):
    """card.validate() needs the network (it posts to {ENDPOINT}/api/validate-yaml — here the fake Hub), so
    build_model_card validates the metadata locally: YAML + ModelCardData + model-index round trip."""
    final, metrics = trajtok_run
    report = validate_folder(final)
    card = build_model_card(report, "me/seg")
    metadata = validate_card_metadata(card)
    assert metadata["model-index"][0]["name"] == "seg"
    assert len(metadata["model-index"][0]["results"][0]["metrics"]) == len(metrics)
    card.validate()  # online check, answered by the fake Hub
    assert ("POST", "/api/validate-yaml") in fake_hub.requests
    broken = ModelCard(str(card).replace("library_name: transformers\n", ""))
    with pytest.raises(ValueError, match="library_name"):
        validate_card_metadata(broken)


def test_file_selection_and_eval_sources(trajtok_run, tmp_path, capsys):
    final, metrics = trajtok_run
    files, skipped = select_files(final)
    assert files == [f for f in TRAJTOK_FILES if f != "README.md"]
    assert {name for name, _ in skipped} == {"README.md", "checkpoints/", "optimizer.pt", "pytorch_model.bin"}
    found = find_eval_metrics(final)
    assert found.metrics == metrics and found.step == 1 and found.extra["final_train_loss"] == 1.5
    # --eval_results overrides; --dry_run uploads nothing (no endpoint needed at all) and writes the card
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps({"metrics": {"eval/ARI": 0.25}, "dataset": {"type": "davis", "name": "DAVIS-17", "split": "val"}})
    )
    card_out = tmp_path / "card.md"
    code = push_to_hub.main(
        [
            "--model",
            str(final),
            "--repo_id",
            "me/seg",
            "--eval_results",
            str(results),
            "--dry_run",
            "--skip_remote_code_check",
            "--card_out",
            str(card_out),
            "--training_command",
            "python examples/train_segmenter.py --max_steps 1",
        ]
    )
    assert code == 0 and "dry run: nothing uploaded" in capsys.readouterr().out
    card = ModelCard.load(card_out)
    assert [(r.dataset_name, r.dataset_split, r.metric_value) for r in card.data.eval_results] == [
        ("DAVIS-17", "val", 0.25)
    ]
    assert "python examples/train_segmenter.py --max_steps 1" in card.text


@pytest.mark.parametrize(
    "files, expected, warning",
    [
        # a kill while metrics.jsonl was being appended: the cut line is named and skipped, the last eval stands
        (
            {"metrics.jsonl": '{"step": 1, "eval/ARI": 0.5}\n{"step": 2, "eval/A'},
            {"ARI": 0.5},
            r"metrics.jsonl: skipped line\(s\) \[2\]",
        ),
        (
            {"metrics.jsonl": '{"step": 1, "eval/ARI": 0.5}\n[1, 2]\n'},
            {"ARI": 0.5},
            r"metrics.jsonl: skipped line\(s\) \[2\]",
        ),
        # an eval.json cut short: named, and the metrics.jsonl beside it is used instead
        (
            {"eval.json": '{"after": {"accur', "metrics.jsonl": '{"step": 3, "eval/ARI": 0.25}\n'},
            {"ARI": 0.25},
            "eval.json is not valid JSON",
        ),
        ({"eval.json": '{"after": {"accuracy": 0.75}}'}, {"accuracy": 0.75}, None),
    ],
)
def test_eval_sources_cut_short_are_named(files, expected, warning, tmp_path, recwarn):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    found = find_eval_metrics(tmp_path)
    assert found.metrics == expected
    messages = [str(w.message) for w in recwarn.list if issubclass(w.category, UserWarning)]
    if warning is None:
        assert messages == []
    else:
        assert len(messages) == 1 and re.search(warning, messages[0]) and str(tmp_path) in messages[0]
