"""The release's pseudo-label format → per-pixel trajectory ids, and downsampling to the mask grid."""

import numpy as np
import pytest
import torch

from trajtok_hf.data import IGNORE_INDEX, downsample_labels, trajectories_to_pixel_labels


def _hand_made():
    # Two frames of 2x3 pixels. Frame 0 has instances 1, 2; frame 1 has instances 1, 2, 3 where the ids are
    # shuffled relative to frame 0 (per-frame ids carry no identity by themselves).
    masks = np.array(
        [
            [[1, 1, 0], [2, 2, 0]],
            [[2, 2, 0], [1, 3, 3]],
        ]
    )
    graph = np.array(
        [
            [1, 2],  # trajectory 0: instance 1 in frame 0, instance 2 in frame 1
            [2, 1],  # trajectory 1: instance 2, then instance 1
            [0, -1],  # trajectory 2: never present (both absent markers)
        ]
    )
    # Instance 3 of frame 1 belongs to no trajectory -> unlabeled, like background.
    expected = np.array(
        [
            [[0, 0, -100], [1, 1, -100]],
            [[0, 0, -100], [1, -100, -100]],
        ]
    )
    return masks, graph, expected


def test_hand_made_case():
    masks, graph, expected = _hand_made()
    labels = trajectories_to_pixel_labels(masks, graph)
    assert labels.dtype == np.int64 and labels.shape == masks.shape
    np.testing.assert_array_equal(labels, expected)


def test_torch_in_torch_out_and_custom_ignore():
    masks, graph, expected = _hand_made()
    labels = trajectories_to_pixel_labels(torch.from_numpy(masks), torch.from_numpy(graph), ignore_index=-1)
    assert isinstance(labels, torch.Tensor) and labels.dtype == torch.int64
    np.testing.assert_array_equal(labels.numpy(), np.where(expected == -100, -1, expected))


def test_empty_graph_gives_all_unlabeled():
    masks, _, _ = _hand_made()
    labels = trajectories_to_pixel_labels(masks, np.zeros((0, 2), dtype=np.int64))
    assert (labels == IGNORE_INDEX).all()


def test_matches_brute_force_on_random_data():
    rng = np.random.default_rng(0)
    T, H, W, max_inst, N = 5, 9, 7, 6, 4
    masks = rng.integers(0, max_inst + 1, size=(T, H, W))
    graph = np.full((N, T), -1)
    for t in range(T):  # each frame: a random injective assignment of instances to trajectories
        inst = rng.permutation(np.arange(1, max_inst + 1))[:N]
        present = rng.random(N) < 0.7
        graph[present, t] = inst[present]
    labels = trajectories_to_pixel_labels(masks, graph)
    expected = np.full((T, H, W), -100)
    for i in range(N):
        for t in range(T):
            if graph[i, t] > 0:
                expected[t][masks[t] == graph[i, t]] = i
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize(
    "masks, graph, error, match",
    [
        (np.zeros((2, 3)), np.zeros((1, 2)), TypeError, "instance_masks"),  # float dtype
        (np.zeros((2, 3), int), np.zeros((1, 2), int), ValueError, "instance_masks"),  # rank
        (np.zeros((2, 3, 3), int), np.zeros((1, 3), int), ValueError, "trajectory_graph"),  # T mismatch
        (np.zeros((2, 3, 3), int), np.zeros((2,), int) + 1, ValueError, "trajectory_graph"),  # rank
        (-np.ones((2, 3, 3), int), np.zeros((1, 2), int), ValueError, "instance_masks"),  # negative id
        (np.zeros((2, 3, 3), int), np.full((1, 2), -2), ValueError, "trajectory_graph"),  # below -1
        (np.ones((2, 3, 3), int), np.ones((2, 2), int), ValueError, "several trajectories"),  # double claim
    ],
)
def test_bad_inputs_raise_naming_the_argument(masks, graph, error, match):
    with pytest.raises(error, match=match):
        trajectories_to_pixel_labels(masks, graph)


def _brute_mode(labels, s):
    T, H, W = labels.shape
    out = np.empty((T, H // s, W // s), dtype=np.int64)
    for t in range(T):
        for i in range(H // s):
            for j in range(W // s):
                values, counts = np.unique(labels[t, i * s : (i + 1) * s, j * s : (j + 1) * s], return_counts=True)
                out[t, i, j] = values[np.argmax(counts)]  # unique is sorted: ties -> smallest
    return out


@pytest.mark.parametrize("num_values", [2, 5, 40, 1000])
def test_downsample_mode_matches_brute_force(num_values):
    # 2/5 values: the per-label pooling path; 40 and 1000 (sparse range): the bincount path.
    rng = np.random.default_rng(num_values)
    pool = rng.choice(np.arange(-100, 5000), size=num_values, replace=False)
    labels = pool[rng.integers(0, num_values, size=(3, 16, 12))]
    for stride in (2, 4):
        np.testing.assert_array_equal(downsample_labels(labels, stride), _brute_mode(labels, stride))


def test_downsample_tie_goes_to_smaller_label_and_nearest_is_cell_centre():
    labels = np.array([[[-100, -100, 3, 3], [3, 3, 3, 3], [1, 1, 2, 2], [1, 2, 1, 1]]])
    np.testing.assert_array_equal(downsample_labels(labels, 2), [[[-100, 3], [1, 1]]])  # cell (1,1): 2 vs 1 tie
    nearest = downsample_labels(labels, 2, mode="nearest")
    np.testing.assert_array_equal(nearest, labels[:, 1::2, 1::2])
    assert nearest.dtype == np.int64
    # stride 1 is the identity
    np.testing.assert_array_equal(downsample_labels(labels, 1), labels)
    out = downsample_labels(torch.from_numpy(labels), 2)
    assert isinstance(out, torch.Tensor)


def test_downsample_validation():
    labels = np.zeros((2, 8, 8), dtype=np.int64)
    with pytest.raises(ValueError, match="stride"):
        downsample_labels(labels, 3)
    with pytest.raises(ValueError, match="stride"):
        downsample_labels(labels, 0)
    with pytest.raises(ValueError, match="mode"):
        downsample_labels(labels, 2, mode="bilinear")
    with pytest.raises(TypeError, match="labels"):
        downsample_labels(labels.astype(np.float32), 2)


def test_large_instance_ids_are_compacted():
    # e.g. ids that are packed RGB colours: the result must not depend on the id values
    masks, graph, expected = _hand_made()
    big = np.where(masks > 0, masks * 1_000_003 + (1 << 24), 0)
    big_graph = np.where(graph > 0, graph * 1_000_003 + (1 << 24), graph)
    np.testing.assert_array_equal(trajectories_to_pixel_labels(big, big_graph), expected)
