"""The remote-code check of trajtok_hf.hub.validate_folder (check_remote_code=True): a folder whose remote code gives
other outputs than the installed package, or does not run, is refused."""

from __future__ import annotations

import pytest

from trajtok_hf.hub import FolderValidationError, validate_folder


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

    monkeypatch.setattr("trajtok_hf.hub.remote_code.subprocess.run", fake_run)
    with pytest.raises(FolderValidationError, match="stale"):
        validate_folder(final, check_remote_code=True)
    monkeypatch.setattr(
        "trajtok_hf.hub.remote_code.subprocess.run",
        lambda command, **kwargs: subprocess.CompletedProcess(
            command, 1, stdout="", stderr="ImportError: cannot import name 'TrajTokModel'"
        ),
    )
    with pytest.raises(FolderValidationError, match="(?s)without trajtok_hf installed.*ImportError"):
        validate_folder(final, check_remote_code=True)
