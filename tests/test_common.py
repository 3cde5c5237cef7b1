"""Checks every model must pass, run for each entry of testers.MODEL_CASES (table-driven, as peft's tests)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from testers import MODEL_CASES, assert_close_within_bound, assert_ids_equal_up_to_ties, float_error_bound

CASES = pytest.mark.parametrize("case", MODEL_CASES, ids=[c.name for c in MODEL_CASES])


def _assert_same(a: dict, b: dict, case=None):
    """``case=None``: bit-identical outputs. Otherwise float outputs agree within the case's float error bound, and
    hard trajectory ids may differ only where their assignment logits are a float tie."""
    assert a.keys() == b.keys()
    for key in a:
        if case is None:
            assert torch.equal(a[key], b[key]), key
        elif a[key].is_floating_point():
            _assert_float_close(a[key], b[key], case, key)
        elif key == "trajectory_ids" and "assignment_logits" in b:
            logits = b["assignment_logits"]
            bound = float_error_bound(max(logits.abs().max().item(), 1.0), case.reduction_terms)
            assert_ids_equal_up_to_ties(a[key], b[key], logits, bound)
        else:
            assert torch.equal(a[key], b[key]), key


def _assert_float_close(actual, expected, case, key):
    # bound: the outputs' magnitude (at least 1) × the case's reduction length × fp32 eps
    assert case.reduction_terms > 0, f"{case.name}: give the case its reduction_terms"
    assert_close_within_bound(actual, expected, case.reduction_terms, msg=key)


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
    # Same weights and code; the bound covers kernels that block differently for other memory alignments.
    _assert_same(case.outputs(loaded(**inputs)), expected, case)


@CASES
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@torch.no_grad()
def test_loads_in_half_precision_and_runs_from_float32_inputs(case, dtype, tmp_path):
    """from_pretrained(dtype=...) puts every weight in that dtype, nested backbones included, and the model runs on
    the processor's float32 pixel values (the forward casts them), with finite outputs of the model's dtype."""
    case.build().save_pretrained(tmp_path)
    model = case.auto_class.from_pretrained(tmp_path, dtype=dtype).eval()
    stray = sorted({str(p.dtype) for p in model.parameters() if p.is_floating_point() and p.dtype != dtype})
    assert not stray, f"parameters left in {stray}"
    try:
        outputs = case.outputs(model(**case.inputs(1)))
    except RuntimeError as error:  # only a missing half kernel on this CPU; anything else is a failure
        if "not implemented for" in str(error) and dtype == torch.float16:
            pytest.skip(f"this CPU's torch build has no float16 kernel here: {error}")
        raise
    floats = {k: v for k, v in outputs.items() if v.is_floating_point()}
    assert floats and all(v.dtype == dtype and torch.isfinite(v).all() for v in floats.values()), floats.keys()


@CASES
@torch.no_grad()
def test_batch_equals_singles(case):
    model = case.build()
    inputs = case.inputs(3)
    batched = case.outputs(model(**inputs))
    for i in range(3):
        single = case.outputs(model(**_slice(inputs, i)))
        _assert_same(single, {k: v[i : i + 1] for k, v in batched.items()}, case)  # other kernel blocking


@CASES
@torch.no_grad()
def test_eval_is_deterministic(case):
    model = case.build()
    inputs = case.inputs(2)
    _assert_same(case.outputs(model(**inputs)), case.outputs(model(**inputs)))  # bit-identical


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
    tensors = {k: v.contiguous() for k, v in inputs.items() if isinstance(v, torch.Tensor)}
    save_file(tensors, str(tmp_path / "inputs.safetensors"))
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
        from safetensors.torch import load_file, save_file

        inputs = load_file({str(tmp_path / "inputs.safetensors")!r})
        auto_class = transformers.{case.auto_class.__name__}
        model = auto_class.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert "trajtok_hf" not in sys.modules
        with torch.no_grad():
            out = model(**inputs)
        keys = {sorted(outputs)!r}
        save_file({{k: getattr(out, k).contiguous() for k in keys}}, {str(tmp_path / "outputs.safetensors")!r})
        print("REMOTE_OK", type(model).__name__)
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "REMOTE_OK" in result.stdout, result.stdout + result.stderr[-4000:]
    # The copied remote code is this code: the outputs agree within the float bound (as after a reload).
    _assert_same(load_file(str(tmp_path / "outputs.safetensors")), outputs, case)
