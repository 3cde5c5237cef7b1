"""TrajectoryTokenMerger: pixel-weighted means per global id, spans, order, and its errors."""

from __future__ import annotations

import pytest
import torch

from trajtok_hf.long_video import TrajectoryTokenMerger


def tensor(*values):
    return torch.tensor(values)


def test_tokens_are_pixel_weighted_means_over_chunks_and_split_slots():
    merger = TrajectoryTokenMerger()
    tokens = torch.arange(4 * 2 * 3, dtype=torch.float32).view(4, 2, 3)
    # Chunk 0: slots 0 and 2 are id 0 (a split, 1 and 3 pixels), slot 1 is id 1, slot 3 empty.
    merger.update(tokens, tensor(0, 1, 0, -1), tensor(1, 5, 3, 0), tensor(0, 0, 2, -1), tensor(3, 3, 3, -1))
    # Chunk 1: id 1 again (4 pixels) with other tokens.
    merger.update(tokens + 100, tensor(-1, -1, -1, 1), tensor(0, 0, 0, 4), tensor(-1, -1, -1, 4), tensor(-1, -1, -1, 6))
    merged = merger.result()
    assert merged.global_ids.tolist() == [0, 1]
    assert merged.tokens_per_trajectory == 2
    expected_0 = (tokens[0] * 1 + tokens[2] * 3) / 4
    expected_1 = (tokens[1] * 5 + (tokens[3] + 100) * 4) / 9
    torch.testing.assert_close(merged.trajectory_tokens, torch.cat((expected_0, expected_1)))
    assert merged.trajectory_spans.tolist() == [[0, 4], [0, 4], [0, 7], [0, 7]]


def test_tokens_are_ordered_by_the_start_of_their_span_then_by_id():
    merger = TrajectoryTokenMerger()
    tokens = torch.eye(3).view(3, 1, 3)
    merger.update(tokens, tensor(5, 2, 7), tensor(1, 1, 1), tensor(8, 0, 0), tensor(9, 9, 9))
    merged = merger.result()
    assert merged.global_ids.tolist() == [2, 7, 5]
    assert merged.trajectory_spans[:, 0].tolist() == [0, 0, 8]
    inputs = merged.model_inputs()
    assert inputs["trajectory_tokens"].shape == (1, 3, 3)
    assert inputs["trajectory_mask"].all() and inputs["trajectory_spans"].shape == (1, 3, 2)


def test_bad_updates_are_named():
    merger = TrajectoryTokenMerger()
    with pytest.raises(ValueError, match="no trajectory"):
        merger.result()
    with pytest.raises(ValueError, match="tokens"):
        merger.update(torch.zeros(2, 3), tensor(0, 1), tensor(1, 1), tensor(0, 0), tensor(0, 0))
    with pytest.raises(ValueError, match="pixel_counts"):
        merger.update(torch.zeros(2, 1, 3), tensor(0, 1), tensor(1), tensor(0, 0), tensor(0, 0))
    merger.update(torch.zeros(2, 1, 3), tensor(0, 1), tensor(1, 1), tensor(0, 0), tensor(0, 0))
    with pytest.raises(ValueError, match="like the earlier chunks"):
        merger.update(torch.zeros(2, 2, 3), tensor(0, 1), tensor(1, 1), tensor(0, 0), tensor(0, 0))
