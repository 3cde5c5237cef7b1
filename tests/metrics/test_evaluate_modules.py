"""The bundled `evaluate` metric modules load offline from their local path and agree with the
plain functions (including when fed through several `add_batch` calls)."""

import os

# Offline like the project's CI; evaluate/datasets read these at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")

# Tolerances: metric values here are the plain functions' float64 values, accumulated over add_batch calls;
# pytest.approx (rel 1e-6 by default) absorbs only their float64 rounding. No float32 computation is compared.

import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

evaluate = pytest.importorskip("evaluate")
datasets = pytest.importorskip("datasets")

import trajtok_hf.metrics as tm  # noqa: E402
from trajtok_hf.metrics import load_metric, metric_module_path, retrieval_metrics, segmentation_metrics  # noqa: E402


@pytest.fixture(scope="module")
def retrieval_metric():
    return load_metric("video_text_retrieval")


@pytest.fixture(scope="module")
def segmentation_metric():
    return load_metric("trajectory_segmentation")


def _retrieval_data(seed=0, nv=17, captions=3):
    rng = np.random.default_rng(seed)
    t2v = np.repeat(np.arange(nv), captions)
    rng.shuffle(t2v)
    sim = rng.standard_normal((t2v.size, nv)).astype(np.float32)
    sim[np.arange(t2v.size), t2v] += 1.5  # better than chance
    sim[:, 3] = np.round(sim[:, 3])  # some ties
    return sim, t2v


def _segmentation_data(seed=0):
    rng = np.random.default_rng(seed)
    preds, refs = [], []
    for shape in [(2, 6, 6), (3, 4, 5), (1, 8, 8), (2, 5, 5)]:
        g = rng.integers(0, 4, shape)
        g[rng.random(shape) < 0.1] = -100
        p = np.where(rng.random(shape) < 0.8, g + 10, rng.integers(0, 5, shape))
        preds.append(p)
        refs.append(g)
    refs[-1][:] = 0  # one clip without foreground
    return preds, refs


def test_offline_env_and_local_paths():
    for name in tm.METRIC_MODULES:
        path = metric_module_path(name)
        assert os.path.isdir(path)
        assert os.path.isfile(os.path.join(path, f"{name}.py"))
        assert os.path.isfile(os.path.join(path, "__init__.py"))  # packaged by find_packages
    with pytest.raises(ValueError, match="name"):
        metric_module_path("bleu")


def test_direct_evaluate_load_of_folder_and_script():
    path = metric_module_path("video_text_retrieval")
    m1 = evaluate.load(path)
    m2 = evaluate.load(os.path.join(path, "video_text_retrieval.py"))
    sim, t2v = _retrieval_data()
    assert m1.compute(predictions=sim, references=t2v) == m2.compute(predictions=sim, references=t2v)


def test_infos(retrieval_metric, segmentation_metric):
    for m in (retrieval_metric, segmentation_metric):
        assert isinstance(m, evaluate.Metric)
        assert m.info.description and m.info.citation and m.info.inputs_description
        assert set(m.info.features) == {"predictions", "references"}
    f = retrieval_metric.info.features
    assert f["predictions"].feature.dtype == "float32" and f["references"].dtype == "int64"
    f = segmentation_metric.info.features
    assert f["predictions"].feature.dtype == "int64" and f["references"].feature.dtype == "int64"


def test_retrieval_module_matches_plain_function(retrieval_metric):
    sim, t2v = _retrieval_data()
    want = retrieval_metrics(sim, t2v)
    got = retrieval_metric.compute(predictions=sim, references=t2v)
    assert got == pytest.approx(want)
    got = retrieval_metric.compute(predictions=sim.tolist(), references=t2v.tolist(), ties="optimistic", ks=[1, 2])
    assert got == pytest.approx(retrieval_metrics(sim, t2v, ties="optimistic", ks=(1, 2)))


def test_retrieval_module_add_batch(retrieval_metric):
    sim, t2v = _retrieval_data(seed=1)
    for start in range(0, len(t2v), 10):  # uneven batches of caption rows
        retrieval_metric.add_batch(predictions=sim[start : start + 10], references=t2v[start : start + 10])
    assert retrieval_metric.compute() == pytest.approx(retrieval_metrics(sim, t2v))
    for row, ref in zip(sim[:5], t2v[:5], strict=True):
        retrieval_metric.add(predictions=row, references=ref)
    retrieval_metric.add_batch(predictions=sim[5:], references=t2v[5:])
    assert retrieval_metric.compute() == pytest.approx(retrieval_metrics(sim, t2v))


def test_retrieval_module_errors_name_argument(retrieval_metric):
    with pytest.raises(ValueError, match="predictions"):
        retrieval_metric.compute(predictions=[[0.1, 0.2], [0.3]], references=[0, 1])
    with pytest.raises(ValueError, match="references"):
        retrieval_metric.compute(predictions=[[0.1, 0.2], [0.3, 0.1]], references=[0, 2])


def test_segmentation_module_matches_plain_function(segmentation_metric):
    preds, refs = _segmentation_data()
    want = segmentation_metrics(preds, refs)
    got = segmentation_metric.compute(
        predictions=[p.reshape(-1) for p in preds], references=[r.reshape(-1) for r in refs]
    )
    assert got == pytest.approx(want, nan_ok=True)
    assert got["num_clips_FG-ARI"] == 3
    kw = dict(background_id=None, ignore_index=None)
    got = segmentation_metric.compute(
        predictions=[p.ravel().tolist() for p in preds], references=[r.ravel().tolist() for r in refs], **kw
    )
    assert got == pytest.approx(segmentation_metrics(preds, refs, **kw), nan_ok=True)


def test_segmentation_module_add_batch(segmentation_metric):
    preds, refs = _segmentation_data(seed=1)
    flat_p = [p.reshape(-1) for p in preds]
    flat_r = [r.reshape(-1) for r in refs]
    segmentation_metric.add_batch(predictions=flat_p[:1], references=flat_r[:1])
    segmentation_metric.add_batch(predictions=flat_p[1:3], references=flat_r[1:3])
    segmentation_metric.add(predictions=flat_p[3], references=flat_r[3])
    assert segmentation_metric.compute() == pytest.approx(segmentation_metrics(preds, refs), nan_ok=True)


def test_segmentation_module_errors_name_argument(segmentation_metric):
    with pytest.raises(ValueError, match="predictions.*references"):
        segmentation_metric.compute(predictions=[[1, 2, 3]], references=[[1, 2]])


def test_in_memory_loading():
    m = load_metric("trajectory_segmentation", keep_in_memory=True)
    out = m.compute(predictions=[[5, 5, 7, 7]], references=[[0, 0, 1, 1]])
    assert out["ARI"] == 1.0 and out["mIoU"] == 1.0


def test_metrics_package_does_not_import_models():
    # The parent package's __init__ may import the models (to register Auto classes); what must
    # hold is that trajtok_hf.metrics itself never does. Import it under a bare parent package.
    import importlib.util

    root = os.path.dirname(os.path.dirname(tm.__file__))
    code = (
        "import importlib.machinery, importlib.util, sys, types\n"
        f"root = {root!r}\n"
        "pkg = types.ModuleType('trajtok_hf'); pkg.__path__ = [root]\n"
        "pkg.__spec__ = importlib.machinery.ModuleSpec('trajtok_hf', None, is_package=True)\n"
        "sys.modules['trajtok_hf'] = pkg\n"
        "import trajtok_hf.metrics\n"
        "bad = [m for m in sys.modules if m.startswith('trajtok_hf.models')]\n"
        "assert not bad, bad\n"
        "assert 'evaluate' not in sys.modules and 'torch' not in sys.modules\n"
    )
    assert importlib.util.find_spec("trajtok_hf.metrics") is not None
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    for dirpath, _, files in os.walk(os.path.dirname(tm.__file__)):
        for f in files:
            if f.endswith(".py"):
                src = open(os.path.join(dirpath, f), encoding="utf-8").read()
                assert not re.search(r"^\s*(from|import)\s+(trajtok_hf\.models|\.\.+models)", src, re.M), f
