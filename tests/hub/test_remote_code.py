"""The remote code of a folder to publish: the folder's own when it is complete, otherwise staged from the installed
trajtok_hf (trajtok_hf.hub.staging); and the check behind check_remote_code=True: a folder whose remote code gives
other outputs than the installed package, or does not run, is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hub_testing import TRAJTOK_FILES, folder_digest

import trajtok_hf.models
from trajtok_hf.hub import FolderValidationError, validate_folder
from trajtok_hf.hub.staging import REPLACED_REMOTE_CODE

PACKAGE_MODELS = Path(trajtok_hf.models.__file__).parent
REMOTE_CODE = [name for name in TRAJTOK_FILES if name.endswith(".py")]


def _keep(folder):
    pass


def _remove_all_code(folder):
    for path in folder.glob("*.py"):
        path.unlink()


def _remove_a_model_module(folder):
    (folder / "modeling_trajtok.py").unlink()


def _remove_a_processor_module(folder):
    (folder / "video_processing_trajtok.py").unlink()


def _remove_all_code_and_rename_the_model_module(folder):
    _remove_all_code(folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"]["AutoModel"] = "modeling_elsewhere.TrajTokModel"
    (folder / "config.json").write_text(json.dumps(config))


# (change to a freshly saved segmenter folder, staged?, local *.py files replaced by the package's, error)
STAGING = [
    (_keep, False, [], None),
    (_remove_all_code, True, [], None),
    (_remove_a_model_module, True, sorted(set(REMOTE_CODE) - {"modeling_trajtok.py"}), None),
    (_remove_a_processor_module, True, sorted(set(REMOTE_CODE) - {"video_processing_trajtok.py"}), None),
    (_remove_all_code_and_rename_the_model_module, None, [], "names modeling_elsewhere.py, which neither"),
]


@pytest.mark.parametrize("change,staged,replaced,error", STAGING, ids=[case[0].__name__ for case in STAGING])
def test_missing_remote_code_is_staged_from_the_installed_package(
    trajtok_run, tmp_path, change, staged, replaced, error
):
    final, _ = trajtok_run
    folder = tmp_path / "final"
    shutil.copytree(final, folder)
    change(folder)
    before = folder_digest(folder)
    if error:
        with pytest.raises(FolderValidationError, match=error):
            validate_folder(folder)
        assert folder_digest(folder) == before
        return
    report = validate_folder(folder)
    assert report.files == TRAJTOK_FILES[1:]  # the same upload either way (README.md is the generated card)
    assert (report.upload_folder != folder) == staged
    assert report.remote_code_written == (REMOTE_CODE if staged else [])
    for name in report.remote_code_written:
        assert (report.upload_folder / name).read_bytes() == (PACKAGE_MODELS / name).read_bytes(), name
    for name in report.files:
        if name not in report.remote_code_written:
            assert (report.upload_folder / name).read_bytes() == (folder / name).read_bytes(), name
    assert [name for name, why in report.skipped if why == REPLACED_REMOTE_CODE] == replaced
    assert folder_digest(folder) == before  # only read
    if staged:  # the staged folder goes with the report
        upload_folder = report.upload_folder
        del report
        assert not upload_folder.exists()


def _fake_remote_outputs(reference, returncode=0, stderr=""):
    """A stand-in for the remote-code subprocess: writes ``reference`` + 1 (floats), or fails with ``stderr``."""
    from safetensors.torch import save_file

    def run(command, **kwargs):
        if returncode == 0:
            shifted = {k: (v + 1 if v.is_floating_point() else v).contiguous() for k, v in reference.items()}
            save_file(shifted, command[5])
        return subprocess.CompletedProcess(
            command, returncode, stdout="REMOTE_CODE_OK" * (not returncode), stderr=stderr
        )

    return run


# (change to the folder, subprocess return code, its stderr, the refusal)
REFUSALS = [
    (_keep, 0, "", "stale; save the model again"),
    (_remove_all_code, 0, "", "staged in .* with the remote code of the installed trajtok_hf.*a bug"),
    (_keep, 1, "ImportError: cannot import name 'TrajTokModel'", "(?s)without trajtok_hf installed.*ImportError"),
    (_remove_all_code, 1, "ImportError: x", "(?s)staged in .*without trajtok_hf installed.*ImportError: x"),
]


@pytest.mark.parametrize("change,returncode,stderr,match", REFUSALS)
def test_remote_code_check_refuses_other_outputs_or_a_failure(
    trajtok_run, tmp_path, monkeypatch, change, returncode, stderr, match
):
    """The comparison behind check_remote_code=True, with the subprocess replaced (the real one runs in the CLI test
    and tests/test_checkpoints.py): outputs that differ from the installed package's, or a subprocess that fails,
    refuse the folder, with what to do about it."""
    final, _ = trajtok_run
    folder = tmp_path / "final"
    shutil.copytree(final, folder)
    change(folder)
    reference = validate_folder(folder).outputs
    monkeypatch.setattr(
        "trajtok_hf.hub.remote_code.subprocess.run", _fake_remote_outputs(reference, returncode, stderr)
    )
    with pytest.raises(FolderValidationError, match=match):
        validate_folder(folder, check_remote_code=True)
