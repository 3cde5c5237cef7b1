"""What the tests of trajtok_hf.hub share: a fake Hub on 127.0.0.1 (no network), the push script, file lists.

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
import re
import sys
import threading
from pathlib import Path

import yaml
from huggingface_hub import ModelCardData

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import push_to_hub  # noqa: E402, F401  (the command line under test, imported by the test modules from here)

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


def folder_digest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder``: equal before and after means the folder was only read."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# What select_files keeps of a train_segmenter.py-shaped final/ folder, plus the generated card.
TRAJTOK_FILES = [
    "README.md",
    "attention_trajtok.py",
    "config.json",
    "configuration_trajtok.py",
    "model.safetensors",
    "modeling_trajtok.py",
    "modeling_utils_trajtok.py",
    "perceiver_trajtok.py",
    "video_io_trajtok.py",
    "video_preprocessor_config.json",
    "video_processing_trajtok.py",
]
