"""The two errors of publishing: a folder that cannot be published, and an upload that failed."""

__all__ = ["FolderValidationError", "PushError"]


class FolderValidationError(ValueError):
    """The folder cannot be published as is (it does not load, has no safetensors, misses remote code, ...)."""


class PushError(RuntimeError):
    """The upload failed. The message names the step; the local folder was only read."""
