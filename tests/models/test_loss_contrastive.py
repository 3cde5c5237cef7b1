"""Symmetric InfoNCE of TrajViT2 (method spec §9): the formula, and the cross-process gather (2-process gloo on CPU)."""

import importlib.util
import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F


def _load_loss_module():
    """The spawned workers re-import this test module; importing the trajtok_hf package costs seconds per process,
    while loss_contrastive.py imports only torch (it is copied as remote code), so it is loaded from its path."""
    name = "trajtok_hf.models.loss_contrastive"
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(os.path.dirname(__file__), "..", "..", "trajtok_hf", "models", "loss_contrastive.py")
    spec = importlib.util.spec_from_file_location("_loss_contrastive_standalone", os.path.abspath(path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_loss = _load_loss_module()
ClipContrastiveLoss = _loss.ClipContrastiveLoss
clip_contrastive_loss = _loss.clip_contrastive_loss
gather_with_local_grad = _loss.gather_with_local_grad


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    # Tiny tensors: intra-op threads cost more in synchronisation than they save (10-100x more on a shared, loaded
    # CPU), so these tests run single-threaded and restore the setting afterwards.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _embeds(batch, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    video = F.normalize(torch.randn(batch, dim, generator=generator), dim=-1)
    text = F.normalize(torch.randn(batch, dim, generator=generator), dim=-1)
    return video, text


def _reference_loss(video, text, scale):
    """Direct loops: -½ [mean_i log softmax_j(s v_i·t_j)[i] + mean_i log softmax_j(s t_i·v_j)[i]]."""
    n = video.shape[0]
    total = 0.0
    for i in range(n):
        v2t = torch.stack([scale * video[i] @ text[j] for j in range(n)])
        t2v = torch.stack([scale * text[i] @ video[j] for j in range(n)])
        total = total - v2t.log_softmax(0)[i] - t2v.log_softmax(0)[i]
    return total / (2 * n)


def test_matches_direct_formula():
    video, text = _embeds(5)
    loss = clip_contrastive_loss(video, text, torch.tensor(14.3))
    torch.testing.assert_close(loss, _reference_loss(video, text, 14.3), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_embeddings_give_the_float32_loss_of_their_values(dtype):
    """Logits and cross-entropy run in float32: the loss of half embeddings is the float32 loss of the same (rounded)
    values, and their gradient comes back in the embeddings' dtype."""
    video, text = _embeds(5, dim=16, seed=4)
    video, text = video.to(dtype).requires_grad_(), text.to(dtype)
    loss = clip_contrastive_loss(video, text, torch.tensor(14.3, dtype=dtype), gather_distributed=False)
    assert loss.dtype == torch.float32
    expected = clip_contrastive_loss(video.float(), text.float(), torch.tensor(14.3, dtype=dtype).float())
    # Same float32 operations on the same values: only the summation order could differ, over dim=16 terms of
    # products of size <= 14.3 (scale × unit vectors).
    torch.testing.assert_close(loss, expected, atol=14.3 * 16 * torch.finfo().eps, rtol=0)
    loss.backward()
    assert video.grad.dtype == dtype


def test_symmetric_in_video_and_text():
    video, text = _embeds(6, seed=1)
    torch.testing.assert_close(clip_contrastive_loss(video, text, 10.0), clip_contrastive_loss(text, video, 10.0))


def test_aligned_pairs_give_small_loss_and_shuffled_pairs_large():
    video, _ = _embeds(4, dim=16, seed=2)
    assert clip_contrastive_loss(video, video, 100.0) < 1e-3
    assert clip_contrastive_loss(video, video.roll(1, dims=0), 100.0) > 10.0


def test_module_equals_function_and_single_process_gather_is_identity():
    video, text = _embeds(3, seed=3)
    expected = clip_contrastive_loss(video, text, 7.0, gather_distributed=False)
    torch.testing.assert_close(ClipContrastiveLoss()(video, text, 7.0), expected)
    torch.testing.assert_close(clip_contrastive_loss(video, text, 7.0, gather_distributed=True), expected)
    gathered, offset = gather_with_local_grad(video)
    assert gathered is video and offset == 0


def test_bad_inputs():
    video, text = _embeds(3)
    with pytest.raises(ValueError, match="same shape"):
        clip_contrastive_loss(video, text[:2], 1.0)
    with pytest.raises(ValueError, match="video_embeds"):
        clip_contrastive_loss(video[0], text, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        clip_contrastive_loss(video[:0], text[:0], 1.0)


# ----------------------------------------------------------------------------------------------- 2-process gather
SCENARIOS = {"equal": (3, 3), "unequal": (2, 4)}


def _worker(rank, world_size, init_file, result_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        for name, sizes in SCENARIOS.items():
            video, text = _embeds(sum(sizes), seed=7)
            start = sum(sizes[:rank])
            local_video = video[start : start + sizes[rank]].clone().requires_grad_(True)
            local_text = text[start : start + sizes[rank]].clone().requires_grad_(True)
            loss = clip_contrastive_loss(local_video, local_text, torch.tensor(12.0))
            loss.backward()
            gathered, offset = gather_with_local_grad(local_video.detach())
            result = {"loss": loss.detach(), "video_grad": local_video.grad, "text_grad": local_text.grad}
            result.update(gathered=gathered, offset=offset)
            torch.save(result, os.path.join(result_dir, f"{name}_rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    result_dir = tmp_path_factory.mktemp("gloo")
    mp.spawn(_worker, args=(2, str(result_dir / "init"), str(result_dir)), nprocs=2, join=True)
    return result_dir


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_two_process_gather_equals_full_batch(scenario, two_process_results):
    """Each rank sees all negatives: its loss is the global-batch loss and its embeddings' gradient is the global-batch
    gradient of its own rows (open_clip ClipLoss, local_loss=False, gather_with_grad=False); ranks may hold different
    batch sizes."""
    sizes = SCENARIOS[scenario]
    video, text = _embeds(sum(sizes), seed=7)
    video.requires_grad_(True)
    text.requires_grad_(True)
    full = clip_contrastive_loss(video, text, torch.tensor(12.0), gather_distributed=False)
    full.backward()
    for rank in range(2):
        result = torch.load(two_process_results / f"{scenario}_rank{rank}.pt", weights_only=True)
        start = sum(sizes[:rank])
        rows = slice(start, start + sizes[rank])
        torch.testing.assert_close(result["loss"], full.detach(), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(result["video_grad"], video.grad[rows], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(result["text_grad"], text.grad[rows], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(result["gathered"], video.detach())
        assert result["offset"] == start
