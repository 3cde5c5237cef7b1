"""Symmetric InfoNCE of TrajViT2 (paper Sec. 4): the formula, and the cross-process gather (2-process gloo on CPU)."""

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
paired_contrastive_loss = _loss.paired_contrastive_loss
negative_caption_loss = _loss.negative_caption_loss
paraphrase_loss = _loss.paraphrase_loss


# Tiny tensors: intra-op threads cost more in synchronisation than they save (conftest.single_thread).
pytestmark = pytest.mark.usefixtures("single_thread")


def assert_close_within_bound(*args, **kwargs):
    """testers.assert_close_within_bound, imported when called: the spawned workers re-import this module, and
    testers imports the trajtok_hf package."""
    from testers import assert_close_within_bound

    assert_close_within_bound(*args, **kwargs)


def _loss_terms(batch, dim):
    """Reduction length of the loss (testers.float_error_bound): a dot product of `dim` terms per logit, a
    log-sum-exp over `batch` logits and the mean of 2·`batch` cross-entropies; every term is at most the logit scale
    (scale × unit vectors), which is the magnitude the bounds below use."""
    return dim + 3 * batch


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
    # bound: |logits| <= 14.3, the loss's reductions (_loss_terms), fp32 eps; the loops sum in another order.
    assert_close_within_bound(loss, _reference_loss(video, text, 14.3), _loss_terms(5, 8), magnitude=14.3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_embeddings_give_the_float32_loss_of_their_values(dtype):
    """Logits and cross-entropy run in float32: the loss of half embeddings is the float32 loss of the same (rounded)
    values, and their gradient comes back in the embeddings' dtype."""
    video, text = _embeds(5, dim=16, seed=4)
    video, text = video.to(dtype).requires_grad_(), text.to(dtype)
    loss = clip_contrastive_loss(video, text, torch.tensor(14.3, dtype=dtype), gather_distributed=False)
    assert loss.dtype == torch.float32
    expected = clip_contrastive_loss(video.float(), text.float(), torch.tensor(14.3, dtype=dtype).float())
    # bound: |logits| <= 14.3, the loss's reductions (_loss_terms), fp32 eps; same float32 operations on the same
    # values, only the summation order could differ.
    assert_close_within_bound(loss, expected, _loss_terms(5, 16), magnitude=14.3)
    loss.backward()
    assert video.grad.dtype == dtype


def test_symmetric_in_video_and_text():
    video, text = _embeds(6, seed=1)
    # bound: |logits| <= 10, the loss's reductions (_loss_terms), fp32 eps; the transposed logits sum in another order.
    assert_close_within_bound(
        clip_contrastive_loss(video, text, 10.0),
        clip_contrastive_loss(text, video, 10.0),
        _loss_terms(6, 8),
        magnitude=10.0,
    )


def test_aligned_pairs_give_small_loss_and_shuffled_pairs_large():
    video, _ = _embeds(4, dim=16, seed=2)
    assert clip_contrastive_loss(video, video, 100.0) < 1e-3  # behaviour thresholds (≈ e^-100·(1−cos)), not rounding
    assert clip_contrastive_loss(video, video.roll(1, dims=0), 100.0) > 10.0


def test_module_equals_function_and_single_process_gather_is_identity():
    video, text = _embeds(3, seed=3)
    expected = clip_contrastive_loss(video, text, 7.0, gather_distributed=False)
    # Exact: the same operations on the same tensors (one process: the gather returns its input).
    assert torch.equal(ClipContrastiveLoss()(video, text, 7.0), expected)
    assert torch.equal(clip_contrastive_loss(video, text, 7.0, gather_distributed=True), expected)
    gathered, offset = gather_with_local_grad(video)
    assert gathered is video and offset == 0


def _reference_pair_loss(logits):
    """Direct loops over the pairs (2j, 2j + 1): each video against its pair's two captions, each caption against
    its pair's two videos."""
    total, count = 0.0, 0
    for first in range(0, logits.shape[0], 2):
        block = logits[first : first + 2, first : first + 2]
        for own in range(2):
            total = total - block[own].log_softmax(0)[own] - block[:, own].log_softmax(0)[own]
            count += 2
    return total / count


@pytest.mark.parametrize("batch", [2, 6])
def test_paired_loss_matches_direct_formula(batch):
    generator = torch.Generator().manual_seed(batch)
    logits = torch.randn(batch, batch, generator=generator) * 5.0
    # bound: a log-sum-exp over 2 logits of magnitude <= ~20 and a mean over 2·batch terms.
    assert_close_within_bound(
        paired_contrastive_loss(logits), _reference_pair_loss(logits), 2 + 2 * batch, magnitude=20.0
    )


def test_paired_loss_reads_only_each_pairs_block():
    logits = torch.randn(4, 4)
    changed = logits.clone()
    changed[0, 2:] = 100.0  # video 0 against the captions of the other pair
    changed[3, :2] = -100.0
    assert torch.equal(paired_contrastive_loss(logits), paired_contrastive_loss(changed))
    swapped = logits.clone()
    swapped[0, 0], swapped[0, 1] = logits[0, 1], logits[0, 0]  # inside the block: the loss sees it
    assert not torch.equal(paired_contrastive_loss(logits), paired_contrastive_loss(swapped))


def test_paired_loss_is_log2_when_a_pair_is_indistinguishable_and_its_gradient_tells_them_apart():
    logits = torch.full((2, 2), 3.0, requires_grad=True)
    loss = paired_contrastive_loss(logits)
    torch.testing.assert_close(loss, torch.tensor(2.0).log())
    loss.backward()
    # the own caption's logit is pushed up, the pair's other one down
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1] and logits.grad[1, 1] < 0 < logits.grad[1, 0]


@pytest.mark.parametrize(
    "logits, match",
    [
        (torch.zeros(4), "2-D tensor"),
        (torch.zeros(3, 3), "even"),
        (torch.zeros(4, 2), "square"),
        (torch.zeros(0, 0), "non-zero"),
        ([[0.0, 1.0], [1.0, 0.0]], "2-D tensor"),
    ],
)
def test_paired_loss_bad_inputs(logits, match):
    with pytest.raises(ValueError, match=match):
        paired_contrastive_loss(logits)


def test_negative_caption_loss_matches_direct_formula():
    video, text = _embeds(4, seed=1)
    negatives = F.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(2)), dim=-1)
    index = torch.tensor([3, 1])
    loss = negative_caption_loss(video, text, negatives, index, torch.tensor(14.3))
    reference = 0.0
    for n, row in enumerate(index.tolist()):
        logits = torch.stack([14.3 * video[row] @ text[row], 14.3 * video[row] @ negatives[n]])
        reference = reference - logits.log_softmax(0)[0] / 2
    # bound: dot products of 8 terms, a 2-way log-sum-exp, a mean over 2 negatives, magnitude 14.3.
    assert_close_within_bound(loss, reference, 8 + 4, magnitude=14.3)


def test_negative_caption_loss_pushes_the_own_caption_up_and_the_negative_down():
    video, text = _embeds(2, seed=3)
    negatives = text[:1].clone().requires_grad_(True)  # as close as the own caption: loss log 2
    own = text.clone().requires_grad_(True)
    loss = negative_caption_loss(video, own, negatives, torch.tensor([0]), 10.0)
    torch.testing.assert_close(loss, torch.tensor(2.0).log())
    loss.backward()
    assert (own.grad[0] @ video[0]) < 0 < (negatives.grad[0] @ video[0])  # descent raises v·t, lowers v·t_neg
    assert not own.grad[1].any()  # rows without a negative get no gradient from this term


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(negative_index=torch.tensor([0, 1])), "negative_index must be a LongTensor of shape \\(1,\\)"),
        (dict(negative_index=torch.tensor([0.0])), "LongTensor"),
        (dict(negative_index=torch.tensor([5])), "must index the 2 batch rows"),
        (dict(negative_text_embeds=torch.zeros(1, 3)), "share the embedding width"),
        (dict(negative_text_embeds=torch.zeros(3)), "2-D tensor"),
        (dict(negative_text_embeds=torch.zeros(0, 8), negative_index=torch.zeros(0, dtype=torch.long)), "at least one"),
    ],
)
def test_negative_caption_loss_bad_inputs(kwargs, match):
    video, text = _embeds(2)
    args = dict(negative_text_embeds=text[:1], negative_index=torch.tensor([0]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        negative_caption_loss(video, text, args["negative_text_embeds"], args["negative_index"], 1.0)


@pytest.mark.parametrize("with_negatives", [False, True])
def test_paraphrase_loss_matches_direct_formula(with_negatives):
    _, text = _embeds(4, seed=4)
    paraphrases = F.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(5)), dim=-1)
    negatives = F.normalize(torch.randn(2, 8, generator=torch.Generator().manual_seed(6)), dim=-1)
    index = torch.tensor([2, 0, 3])
    extra = (negatives, torch.tensor([2, 3])) if with_negatives else (None, None)
    loss = paraphrase_loss(text, paraphrases, index, torch.tensor(12.5), *extra)
    candidates = torch.cat([paraphrases, negatives]) if with_negatives else paraphrases
    reference = 0.0
    for p, row in enumerate(index.tolist()):
        forward = torch.stack([12.5 * text[row] @ c for c in candidates])
        backward = torch.stack([12.5 * paraphrases[p] @ text[r] for r in index.tolist()])
        reference = reference - (forward.log_softmax(0)[p] + backward.log_softmax(0)[p]) / (2 * len(index))
    # bound: dot products of 8 terms, log-sum-exps over ≤ 5 logits, a mean over 3 rows, magnitude 12.5.
    assert_close_within_bound(loss, reference, 8 + 8, magnitude=12.5)


def test_paraphrase_loss_pulls_the_paraphrase_and_pushes_the_swapped_one():
    _, text = _embeds(2, seed=7)
    paraphrases = text.clone().requires_grad_(True)
    negative = text[:1].clone().requires_grad_(True)  # the swapped paraphrase, as close as the paraphrase
    loss = paraphrase_loss(text, paraphrases, torch.tensor([0, 1]), 10.0, negative, torch.tensor([0]))
    loss.backward()
    assert (paraphrases.grad[0] @ text[0]) < 0 < (negative.grad[0] @ text[0])  # descent: closer, further


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(paraphrase_index=torch.tensor([0])), "paraphrase_index must be a LongTensor of shape \\(2,\\)"),
        (dict(paraphrase_index=torch.tensor([0.0, 1.0])), "LongTensor"),
        (dict(paraphrase_index=torch.tensor([0, 3])), "must index the 2 batch rows"),
        (dict(paraphrase_index=torch.tensor([1, 1])), "at most once"),
        (dict(paraphrase_embeds=torch.zeros(2, 3)), "paraphrase_embeds must be a 2-D tensor \\(rows, 8\\)"),
        (dict(paraphrase_embeds=torch.zeros(0, 8), paraphrase_index=torch.zeros(0, dtype=torch.long)), "at least one"),
        (dict(negative_embeds=torch.zeros(1, 8)), "must be given together"),
        (dict(negative_embeds=torch.zeros(1, 5), negative_index=torch.tensor([0])), "negative_embeds must be"),
        (dict(negative_embeds=torch.zeros(1, 8), negative_index=torch.tensor([4])), "must index the 2 batch rows"),
    ],
)
def test_paraphrase_loss_bad_inputs(kwargs, match):
    _, text = _embeds(2)
    args = dict(paraphrase_embeds=text, paraphrase_index=torch.tensor([0, 1]), negative_embeds=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        paraphrase_loss(
            text,
            args["paraphrase_embeds"],
            args["paraphrase_index"],
            1.0,
            args["negative_embeds"],
            args.get("negative_index"),
        )


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
        # bound: |logits| <= 12 (and |gradient| <= 12), the loss's reductions (_loss_terms), fp32 eps; the workers
        # may run other kernels (thread counts) on the same values. The gathered rows are copies: exact.
        for key, expected in (("loss", full), ("video_grad", video.grad[rows]), ("text_grad", text.grad[rows])):
            assert_close_within_bound(result[key], expected.detach(), _loss_terms(sum(sizes), 8), 12.0, msg=key)
        assert torch.equal(result["gathered"], video.detach())
        assert result["offset"] == start
