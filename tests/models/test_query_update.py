"""The clustering update of the query embeddings (``TrajTokConfig.query_update_iterations``)."""

import pytest
import torch
import torch.nn.functional as F
from testers import tiny_trajtok_config, tiny_trajtok_model, video_batch

from trajtok_hf import TrajTokConfig, TrajTokModel


def reference_logits(model: TrajTokModel, output, frames: int, stages: list | None = None) -> torch.Tensor:
    """Eq. 1 and the updates written out slot by slot, chunk by chunk: (B, T, h, w, K). ``stages`` receives the
    logits before each update, chunk by chunk (a list of per-chunk lists)."""
    config = model.config
    features = output.pixel_features  # (B, T, h, w, D)
    batch, _, height, width, _ = features.shape
    num_traj = config.num_trajectories
    scale = (F.softplus(model.logit_scale) + 1.0).clamp(max=config.logit_scale_max)
    chunks = []
    for index, first in enumerate(range(0, frames, config.chunk_size)):
        pixels = features[:, first : first + config.chunk_size].reshape(batch, -1, features.shape[-1])
        queries = output.trajectory_queries[:, index * num_traj : (index + 1) * num_traj]
        pixel_embed = F.normalize(model.pixel_head(pixels), dim=-1)
        query_embed = F.normalize(model.query_head(queries), dim=-1)
        logits = pixel_embed @ query_embed.transpose(1, 2) * scale
        chunk_stages = []
        for gate in model.query_update_gates if model.query_update_gates is not None else []:
            chunk_stages.append(logits.reshape(batch, -1, height, width, num_traj))
            ids = logits.argmax(-1)
            updated = query_embed.clone()
            for b in range(batch):
                for k in range(num_traj):
                    won = ids[b] == k
                    if won.any():
                        centre = F.normalize(pixel_embed[b, won].sum(0), dim=0)
                        updated[b, k] = F.normalize(query_embed[b, k] + gate * centre, dim=0)
            query_embed = updated
            logits = pixel_embed @ query_embed.transpose(1, 2) * scale
        chunks.append(logits.reshape(batch, -1, height, width, num_traj))
        if stages is not None:
            stages.append(chunk_stages)
    return torch.cat(chunks, dim=1)


@pytest.mark.parametrize(("iterations", "chunk_size", "gates"), [(0, 4, None), (1, 4, [1.0]), (2, 2, [0.7, -0.3])])
def test_logits_match_the_update_written_out(iterations, chunk_size, gates):
    torch.manual_seed(0)
    model = tiny_trajtok_model(query_update_iterations=iterations, chunk_size=chunk_size)
    if gates is not None:
        with torch.no_grad():
            model.query_update_gates.copy_(torch.tensor(gates))
    video = video_batch(batch=2, frames=4)
    with torch.no_grad():
        output = model(pixel_values_videos=video, output_pixel_features=True)
        expected = reference_logits(model, output, frames=4)
    torch.testing.assert_close(output.assignment_logits, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(output.trajectory_ids % model.config.num_trajectories, expected.argmax(-1))


@pytest.mark.parametrize(("iterations", "frames", "chunk_size"), [(0, 4, 4), (1, 4, 4), (3, 5, 2), (2, 6, 4)])
def test_logits_before_each_update_are_returned_when_asked(iterations, frames, chunk_size):
    """``output_query_update_logits``: one (B, T, h, w, K) tensor per update, the stages of the written-out update
    (chunks merged along frames, a shorter last chunk included); the first is the model without updates."""
    torch.manual_seed(0)
    model = tiny_trajtok_model(query_update_iterations=iterations, chunk_size=chunk_size)
    if iterations:
        with torch.no_grad():
            model.query_update_gates.copy_(torch.linspace(0.5, 1.5, iterations))
    video = video_batch(batch=2, frames=frames)
    with torch.no_grad():
        output = model(pixel_values_videos=video, output_pixel_features=True, output_query_update_logits=True)
        assert model(pixel_values_videos=video).query_update_logits is None
        per_chunk = []
        reference_logits(model, output, frames=frames, stages=per_chunk)
        without_updates = model.with_query_update_iterations(0)(pixel_values_videos=video).assignment_logits
    assert isinstance(output.query_update_logits, tuple) and len(output.query_update_logits) == iterations
    for index, logits in enumerate(output.query_update_logits):
        expected = torch.cat([chunk[index] for chunk in per_chunk], dim=1)
        assert logits.shape == output.assignment_logits.shape
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    if iterations:
        torch.testing.assert_close(output.query_update_logits[0], without_updates, rtol=1e-5, atol=1e-5)


def test_a_loss_on_the_first_stage_reaches_the_query_perceiver():
    torch.manual_seed(0)
    model = tiny_trajtok_model(query_update_iterations=2).train()
    output = model(
        pixel_values_videos=video_batch(batch=2, frames=4),
        output_trajectory_tokens=False,
        output_query_update_logits=True,
    )
    output.query_update_logits[0].log_softmax(-1).amax(-1).sum().backward()
    assert model.query_latents.grad is not None and model.query_latents.grad.abs().sum() > 0
    assert model.query_update_gates.grad is None  # the first stage comes before any gate


def test_output_query_update_logits_must_be_a_bool():
    model = tiny_trajtok_model(query_update_iterations=1)
    with pytest.raises(TypeError, match="output_query_update_logits"):
        model(pixel_values_videos=video_batch(batch=1, frames=4), output_query_update_logits="yes")


def test_the_update_changes_the_segmentation_and_gates_only_exist_when_on():
    torch.manual_seed(0)
    plain = tiny_trajtok_model()
    assert plain.query_update_gates is None and "query_update_gates" not in plain.state_dict()
    updated = plain.with_query_update_iterations(2)
    torch.testing.assert_close(updated.query_update_gates.detach(), torch.ones(2))
    video = video_batch(batch=2, frames=4)
    with torch.no_grad():
        before = plain(pixel_values_videos=video).assignment_logits
        after = updated(pixel_values_videos=video).assignment_logits
    assert not torch.allclose(before, after)


def test_gradient_reaches_the_gates_the_pixel_head_and_the_queries():
    torch.manual_seed(0)
    model = tiny_trajtok_model(query_update_iterations=1).train()
    output = model(pixel_values_videos=video_batch(batch=2, frames=4), output_trajectory_tokens=False)
    output.assignment_logits.log_softmax(-1).amax(-1).sum().backward()
    for name in ("query_update_gates", "pixel_head.0.weight", "query_head.0.weight", "query_latents"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_with_query_update_iterations_copies_weights_keeps_gates_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = tiny_trajtok_model(query_update_iterations=2)
    with torch.no_grad():
        model.query_update_gates.copy_(torch.tensor([0.25, 0.5]))
    video = video_batch(batch=1, frames=4)
    fewer = model.with_query_update_iterations(1)
    more = model.with_query_update_iterations(3)
    torch.testing.assert_close(fewer.query_update_gates.detach(), torch.tensor([0.25]))
    torch.testing.assert_close(more.query_update_gates.detach(), torch.tensor([0.25, 0.5, 1.0]))
    assert model.config.query_update_iterations == 2 and not fewer.training
    off = more.with_query_update_iterations(0)
    reference = TrajTokModel(tiny_trajtok_config())
    reference.load_state_dict(off.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(
            off(pixel_values_videos=video).assignment_logits,
            reference.eval()(pixel_values_videos=video).assignment_logits,
        )
    more.save_pretrained(tmp_path)
    loaded = TrajTokModel.from_pretrained(tmp_path).eval()
    assert loaded.config.query_update_iterations == 3
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(pixel_values_videos=video).assignment_logits, more(pixel_values_videos=video).assignment_logits
        )


@pytest.mark.parametrize("value", [-1, 1.5, True, "2"])
def test_bad_iteration_counts_are_refused(value):
    with pytest.raises(ValueError, match="query_update_iterations must be an int >= 0"):
        TrajTokConfig.from_dict({**tiny_trajtok_config().to_dict(), "query_update_iterations": value})
    with pytest.raises(ValueError, match="iterations must be an int >= 0"):
        tiny_trajtok_model().with_query_update_iterations(value)
