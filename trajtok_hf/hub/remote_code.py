"""The remote code of a folder: what a Hub user without trajtok_hf runs (``trust_remote_code=True``).

:func:`check_remote_code_files` checks the ``*.py`` files statically (every ``auto_map`` entry resolves to a class
defined in the folder, relative imports have their siblings, nothing imports trajtok_hf);
:func:`missing_remote_code` names the modules of the ``auto_map`` entries a folder lacks (publishing then stages
the folder with the installed package's remote code, :mod:`.staging`); :func:`check_remote_code_subprocess` loads
the upload folder with ``trust_remote_code=True`` in a Python where trajtok_hf cannot be imported and compares its
outputs with the installed package's on the same inputs.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import FolderValidationError
from .files import read_json
from .specs import ModelSpec

if TYPE_CHECKING:
    from .validation import FolderReport

__all__ = ["check_remote_code_files", "check_remote_code_subprocess", "missing_remote_code"]

_CONFIG_FILES_WITH_AUTO_MAP = (
    "config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer_config.json",
)


def _auto_map_targets(auto_map: dict) -> Iterable[tuple[str, str]]:
    """(auto class, 'module.Class') pairs; tokenizer entries are [slow, fast] lists, 'repo--module.Class' strips."""
    for key, value in auto_map.items():
        for target in value if isinstance(value, (list, tuple)) else [value]:
            if target:
                yield key, str(target).split("--")[-1]


def check_remote_code_files(folder: Path, files: Sequence[str], spec: ModelSpec, config_json: dict) -> None:
    """Static checks of the remote code: auto_map entries resolve to classes defined in the folder's files, the
    model's auto class is in config.json's auto_map, every relative import has its sibling, nothing imports
    trajtok_hf. Raises FolderValidationError."""
    _check_model_auto_map(folder, spec, config_json)
    python_files = {name for name in files if name.endswith(".py")}
    classes = {name[:-3]: _check_python_file(folder, name, python_files) for name in sorted(python_files)}
    _check_auto_map_targets(folder, config_json, classes)


def _check_model_auto_map(folder: Path, spec: ModelSpec, config_json: dict) -> None:
    """config.json has an ``auto_map`` with the model's Auto class."""
    auto_map = config_json.get("auto_map")
    if not isinstance(auto_map, dict) or not auto_map:
        raise FolderValidationError(
            f"{folder}/config.json has no auto_map: the Hub copy would not load without trajtok_hf installed. "
            "Save the model with trajtok_hf imported (it calls register_for_auto_class)."
        )
    if spec.auto_class not in auto_map:
        raise FolderValidationError(
            f"{folder}/config.json's auto_map has no {spec.auto_class} entry (has {sorted(auto_map)}): "
            f"a {spec.model_type} model loads with transformers.{spec.auto_class}"
        )


def _check_python_file(folder: Path, name: str, python_files: set[str]) -> set[str]:
    """The classes one remote-code file defines, after checking that it parses, that its relative imports are files
    of the folder and that it does not import trajtok_hf."""
    source = (folder / name).read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=name)
    except SyntaxError as error:
        raise FolderValidationError(f"remote-code file {name} does not parse: {error}") from error
    classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            modules = [node.module] if node.module else [alias.name for alias in node.names]
            for module in modules:
                sibling = module.split(".")[0] + ".py"
                if sibling not in python_files:
                    raise FolderValidationError(
                        f"remote-code file {name} imports .{module}, but {sibling} is not in {folder}"
                    )
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if any(n == "trajtok_hf" or n.startswith("trajtok_hf.") for n in names):
                raise FolderValidationError(
                    f"remote-code file {name} imports trajtok_hf: it would fail on the Hub for users "
                    "without the package"
                )
    return classes


def _auto_map_entries(folder: Path, config_json: dict) -> Iterator[tuple[str, str, str]]:
    """(config file, auto class, 'module.Class') for every ``auto_map`` entry of the config and processor files."""
    for config_name in _CONFIG_FILES_WITH_AUTO_MAP:
        path = folder / config_name
        if path.is_file():
            data = config_json if config_name == "config.json" else read_json(path, "processor file")
            for key, target in _auto_map_targets(data.get("auto_map") or {}):
                yield config_name, key, target


def missing_remote_code(folder: Path, config_json: dict) -> list[str]:
    """The module files named by the folder's ``auto_map`` entries that are not in the folder (sorted)."""
    modules = {target.rpartition(".")[0] + ".py" for _, _, target in _auto_map_entries(folder, config_json)}
    return sorted(name for name in modules if not (folder / name).is_file())


def _check_auto_map_targets(folder: Path, config_json: dict, classes: dict[str, set[str]]) -> None:
    """Every ``auto_map`` entry of the config and processor files names a class defined in the folder."""
    for config_name, key, target in _auto_map_entries(folder, config_json):
        module, _, class_name = target.rpartition(".")
        if module not in classes:
            raise FolderValidationError(
                f"{config_name}'s auto_map[{key!r}] = {target!r}, but {module}.py is not in {folder}"
            )
        if class_name not in classes[module]:
            raise FolderValidationError(
                f"{config_name}'s auto_map[{key!r}] = {target!r}, but {module}.py defines no class {class_name}"
            )


_REMOTE_CODE_SCRIPT = r"""
import importlib.abc, sys

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "trajtok_hf" or name.startswith("trajtok_hf."):
            raise ImportError("trajtok_hf is blocked: this check loads the folder's own remote code")

sys.meta_path.insert(0, _Block())
import torch, transformers
from safetensors.torch import load_file, save_file

folder, io_path, out_path, auto_class = sys.argv[1:5]
inputs = load_file(io_path)
model = getattr(transformers, auto_class).from_pretrained(folder, trust_remote_code=True).eval()
if not type(model).__module__.startswith("transformers_modules"):
    raise SystemExit(f"loaded {type(model).__module__}.{type(model).__name__}, not the folder's remote code")
with torch.no_grad():
    out = model(**inputs)
save_file({k: v.detach().clone().contiguous() for k, v in out.items() if isinstance(v, torch.Tensor)}, out_path)
print("REMOTE_CODE_OK", type(model).__name__)
"""


def check_remote_code_subprocess(report: FolderReport, timeout: float, atol: float = 1e-4) -> None:
    """Load the folder with trust_remote_code=True where trajtok_hf cannot be imported; same inputs, same outputs."""
    remote = _run_remote_code(report, timeout)
    for key, expected in report.outputs.items():
        got = remote.get(key)
        if got is None or got.shape != expected.shape:
            raise FolderValidationError(f"remote-code output {key!r} is missing or has another shape")
        same = (
            torch.allclose(got, expected, atol=atol, rtol=atol)
            if expected.is_floating_point()
            else torch.equal(got, expected)
        )
        if not same:
            raise FolderValidationError(
                f"{_described(report)}: its remote code gives a different {key!r} than {_fix(report)}"
            )


def _described(report: FolderReport) -> str:
    """The folder, and the staged folder the check loaded when the remote code was written by the package."""
    if not report.remote_code_written:
        return str(report.folder)
    return f"{report.folder} (staged in {report.upload_folder} with the remote code of the installed trajtok_hf)"


def _fix(report: FolderReport) -> str:
    """What a mismatch between the remote code and the installed package means, and what to do about it."""
    if report.remote_code_written:
        return "the installed trajtok_hf itself: the package's modules do not run the same without it (a bug)"
    return (
        "the installed trajtok_hf: the folder's *.py files are stale; save the model again with the current package, "
        "or delete the folder's *.py files and publishing writes the current ones"
    )


def _run_remote_code(report: FolderReport, timeout: float) -> dict[str, torch.Tensor]:
    """The outputs of :data:`_REMOTE_CODE_SCRIPT` on the report's inputs, run offline in a fresh Python."""
    from safetensors.torch import load_file, save_file

    with tempfile.TemporaryDirectory(prefix="trajtok_remote_code_") as tmp:
        io_path, out_path = os.path.join(tmp, "inputs.safetensors"), os.path.join(tmp, "outputs.safetensors")
        save_file({k: v.clone().contiguous() for k, v in report.inputs.items()}, io_path)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=os.path.join(tmp, "modules"))
        command = [
            sys.executable,
            "-c",
            _REMOTE_CODE_SCRIPT,
            str(report.upload_folder.resolve()),
            io_path,
            out_path,
            report.spec.auto_class,
        ]
        try:
            result = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise FolderValidationError(f"the remote-code check did not finish in {timeout:.0f} s") from error
        if result.returncode != 0 or "REMOTE_CODE_OK" not in result.stdout:
            raise FolderValidationError(
                f"{_described(report)} does not load or run with trust_remote_code=True without trajtok_hf "
                f"installed (what a Hub user runs):\n{(result.stdout + result.stderr)[-3000:]}"
            )
        return load_file(out_path)
