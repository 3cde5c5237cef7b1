"""Procedural textures: every family at odd sizes, determinism, variety, argument checks."""

import numpy as np
import pytest

pytest.importorskip("cv2")

from trajtok_hf.data.procedural_textures import (  # noqa: E402 - after the optional-dependency skip
    PROCEDURAL_KINDS,
    procedural_texture,
    random_palette,
    through_palette,
)


@pytest.mark.parametrize("kind", PROCEDURAL_KINDS)
@pytest.mark.parametrize("size", [(1, 1), (17, 53), (96, 96)])
def test_every_family_at_any_size(kind, size):
    image = procedural_texture(*size, np.random.default_rng(0), kinds=(kind,))
    assert image.shape == (*size, 3) and image.dtype == np.uint8


@pytest.mark.parametrize("kind", PROCEDURAL_KINDS)
def test_deterministic_and_varied(kind):
    def draw(seed):
        return procedural_texture(48, 48, np.random.default_rng(seed), kinds=(kind,), grain=0.0)

    assert np.array_equal(draw(1), draw(1))
    assert not np.array_equal(draw(1), draw(2))
    assert draw(1).astype(np.float32).std(axis=(0, 1)).max() > 1.0  # a texture, not a flat colour


def test_grain_adds_high_frequency_noise():
    flat = procedural_texture(64, 64, np.random.default_rng(3), kinds=("gradient",), grain=0.0).astype(np.float32)
    grainy = procedural_texture(64, 64, np.random.default_rng(3), kinds=("gradient",), grain=40.0).astype(np.float32)
    assert np.abs(np.diff(grainy, axis=1)).mean() > np.abs(np.diff(flat, axis=1)).mean() + 1.0


def test_through_palette_hits_the_stops():
    colours = random_palette(3, np.random.default_rng(0))
    mapped = through_palette(np.array([0.0, 0.5, 1.0], dtype=np.float32), colours)
    np.testing.assert_allclose(mapped, colours, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(height=0, width=4), "height"),
        (dict(height=4, width=4, kinds=("plasma",)), "kinds"),
        (dict(height=4, width=4, kinds=()), "kinds"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        procedural_texture(rng=np.random.default_rng(0), **kwargs)
