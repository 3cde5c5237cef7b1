"""Checks every model must pass, run for each entry of testers.MODEL_CASES (table-driven, as peft's tests)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import save_file

from testers import MODEL_CASES

CASES = pytest.mark.parametrize("case", MODEL_CASES, ids=[c.name for c in MODEL_CASES])


def _assert_same(a: dict, b: dict, atol: float):
    assert a.keys() == b.keys()
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(a[key], b[key], atol=atol, rtol=atol, msg=key)
        else:
            assert torch.equal(a[key], b[key]), key


def _slice(inputs: dict, index: int) -> dict:
    return {k: v[index : index + 1] if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


@CASES
@torch.no_grad()
def test_save_load_identical(case, tmp_path):
    model = case.build()
    inputs = case.inputs(2)
    expected = case.outputs(model(**inputs))
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert "config.json" in files and "model.safetensors" in files
    assert not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
    loaded = case.auto_class.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    _assert_same(case.outputs(loaded(**inputs)), expected, atol=1e-6)


@CASES
@torch.no_grad()
def test_batch_equals_singles(case):
    model = case.build()
    inputs = case.inputs(3)
    batched = case.outputs(model(**inputs))
    for i in range(3):
        single = case.outputs(model(**_slice(inputs, i)))
        _assert_same(single, {k: v[i : i + 1] for k, v in batched.items()}, atol=case.atol)


@CASES
@torch.no_grad()
def test_eval_is_deterministic(case):
    model = case.build()
    inputs = case.inputs(2)
    _assert_same(case.outputs(model(**inputs)), case.outputs(model(**inputs)), atol=0.0)


@CASES
def test_bad_inputs_raise_clear_errors(case):
    model = case.build()
    for kwargs, error, match in case.bad_inputs:
        with pytest.raises(error, match=match):
            model(**kwargs)


@CASES
@torch.no_grad()
def test_trust_remote_code_without_trajtok_hf(case, tmp_path):
    """A saved folder loads with trust_remote_code=True in a Python where trajtok_hf cannot be imported."""
    model = case.build()
    inputs = case.inputs(1)
    outputs = case.outputs(model(**inputs))
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    assert "auto_map" in (model_dir / "config.json").read_text()
    save_file({f"in.{k}": v.contiguous() for k, v in inputs.items() if isinstance(v, torch.Tensor)}
              | {f"out.{k}": v.contiguous() for k, v in outputs.items()}, str(tmp_path / "io.safetensors"))
    script = textwrap.dedent(
        f"""
        import importlib.abc, sys

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "trajtok_hf" or name.startswith("trajtok_hf."):
                    raise ImportError("trajtok_hf is blocked in this test")

        sys.meta_path.insert(0, Block())
        import torch
        import transformers
        from safetensors.torch import load_file

        io = load_file({str(tmp_path / 'io.safetensors')!r})
        model = transformers.{case.auto_class.__name__}.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert "trajtok_hf" not in sys.modules
        inputs = {{k[3:]: v for k, v in io.items() if k.startswith("in.")}}
        with torch.no_grad():
            out = model(**inputs)
        for key in [k[4:] for k in io if k.startswith("out.")]:
            got, want = getattr(out, key), io["out." + key]
            if want.is_floating_point():
                torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
            else:
                assert torch.equal(got, want), key
        print("REMOTE_OK", type(model).__name__)
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "REMOTE_OK" in result.stdout, result.stdout + result.stderr[-4000:]
