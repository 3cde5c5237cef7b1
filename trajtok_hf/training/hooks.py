"""Test-only crash points of the atomic saves.

A test sets :data:`fault_hook` on this module (``monkeypatch.setattr(trajtok_hf.training.hooks, "fault_hook", ...)``)
to kill or interrupt the process in the middle of a save. :func:`maybe_fault` looks the hook up here at call time, so
setting it anywhere else (e.g. on the ``trajtok_hf.training`` package) has no effect. Nothing in the package sets it.
"""

from __future__ import annotations

from collections.abc import Callable

fault_hook: Callable[[str, int | None], None] | None = None
"""When set, called as ``fault_hook(stage, step)`` at the crash points of a save (``step`` is None for the final
save), so a test can kill the process there. Stages: ``"before_commit"`` (every file written into the temporary
folder, nothing committed), ``"before_pointer"`` (checkpoint folder renamed into place, ``latest`` not yet updated)
and ``"final_before_commit"`` (``final/`` written into its temporary folder, not yet renamed)."""


def maybe_fault(stage: str, step: int | None = None) -> None:
    """Call :data:`fault_hook` (when a test set it) at the crash point ``stage`` of the save of ``step``."""
    if fault_hook is not None:
        fault_hook(stage, step)
