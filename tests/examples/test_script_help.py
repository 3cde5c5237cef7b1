"""Every script in examples/ and benchmarks/ answers ``--help`` and usage errors before it imports torch,
transformers or trajtok_hf: standard-library imports and the parser come first, the heavy imports after.

Each script runs in a fresh interpreter, as ``python SCRIPT ARG`` would (its folder first on ``sys.path``), and the
modules loaded when it exits are listed: a deterministic check, unlike a timing. The wall time of each run is printed
(``pytest -s``) for reference only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY_MODULES = ("torch", "transformers", "trajtok_hf")
LIBRARY_MODULES = {"training_args.py"}  # imported by the scripts, not run
SCRIPTS = sorted(
    path
    for folder in ("examples", "benchmarks")
    for path in (ROOT / folder).glob("*.py")
    if path.name not in LIBRARY_MODULES
)

# Runs SCRIPT as __main__ with the given arguments, then prints the exit status and the heavy modules loaded.
RUNNER = """
import json, os, runpy, sys
heavy, script, *args = sys.argv[1:]
sys.argv = [script, *args]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # what `python SCRIPT` does
try:
    runpy.run_path(script, run_name="__main__")
    code = 0
except SystemExit as exit:
    code = 0 if exit.code is None else exit.code
loaded = sorted(name for name in json.loads(heavy) if name in sys.modules)
print(json.dumps({"code": code, "loaded": loaded}))
"""


def run_script(script: Path, *args: str) -> tuple[dict, float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(HEAVY_MODULES), str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), seconds


def test_every_script_is_in_the_table():
    names = {path.name for path in SCRIPTS}
    assert {"train_segmenter.py", "finetune_trajvlm_lora.py", "bench_encoders.py", "compare_encoders.py"} <= names
    assert "training_args.py" not in names


@pytest.mark.parametrize(
    "args, exit_code",
    [
        (["--help"], 0),
        (["--no_such_flag"], 2),  # a usage error: argparse's message and exit status 2
    ],
    ids=["help", "usage_error"],
)
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_script_parses_arguments_before_heavy_imports(script, args, exit_code):
    result, seconds = run_script(script, *args)
    print(f"{script.parent.name}/{script.name} {' '.join(args)}: {seconds:.2f} s")
    assert result == {"code": exit_code, "loaded": []}
