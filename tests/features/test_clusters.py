"""Semantic clusters: k-means must recover planted regions; colour and position terms must do
what they say (and nothing when their weight is 0)."""

from __future__ import annotations

import numpy as np
import pytest

from headless.features.clusters import cluster_pixels, position_terms, semantic_clusters


def _agreement(labels: np.ndarray, truth: np.ndarray) -> float:
    """Share of pixels whose label matches the truth under the best one-to-one relabelling."""
    from scipy.optimize import linear_sum_assignment

    a, b = labels.ravel(), truth.ravel()
    la, lb = np.unique(a), np.unique(b)
    table = np.array([[np.sum((a == i) & (b == j)) for j in lb] for i in la])
    r, c = linear_sum_assignment(-table)
    return float(table[r, c].sum() / a.size)


def _planted(h=48, w=64, d=32, seed=0):
    """Three irregular regions with their own mean feature vector, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    truth = np.zeros((h, w), int)
    truth[(yy - 20) ** 2 + (xx - 18) ** 2 < 12 ** 2] = 1
    truth[(xx > 40) & (yy > 10)] = 2
    means = rng.standard_normal((3, d)) * 2.0
    feats = means[truth] + rng.standard_normal((h, w, d))
    return feats.astype(np.float32), truth


def test_kmeans_recovers_planted_regions_and_orders_labels_by_size():
    feats, truth = _planted()
    labels = cluster_pixels(feats, 3)
    assert _agreement(labels, truth) > 0.99
    sizes = np.bincount(labels.ravel())[1:]
    assert list(sizes) == sorted(sizes, reverse=True) and labels.min() == 1
    # a baseline that ignores the features (position only) cannot do this
    pos = cluster_pixels(position_terms(truth.shape), 3, n_components=None)
    assert _agreement(pos, truth) < 0.9


def test_colour_term_follows_colour_only_when_weighted():
    rng = np.random.default_rng(1)
    h, w = 40, 60
    yy, xx = np.mgrid[0:h, 0:w]
    truth = ((xx - 30) ** 2 + (yy - 20) ** 2 < 14 ** 2).astype(int)
    image = np.zeros((h, w, 3))
    image[truth == 1] = (0.9, 0.1, 0.1)  # a red disc on blue
    image[truth == 0] = (0.1, 0.1, 0.9)
    feats = rng.standard_normal((h, w, 16)).astype(np.float32)  # features carry nothing
    off = cluster_pixels(feats, 2, image=image, colour_weight=0.0)
    on = cluster_pixels(feats, 2, image=image, colour_weight=3.0)
    assert _agreement(off, truth) < 0.75
    assert _agreement(on, truth) == 1.0


def test_position_term_makes_spatially_compact_clusters():
    rng = np.random.default_rng(2)
    feats = rng.standard_normal((30, 80, 8)).astype(np.float32)
    halves = (np.mgrid[0:30, 0:80][1] >= 40).astype(int)
    off = cluster_pixels(feats, 2, position_weight=0.0)
    on = cluster_pixels(feats, 2, position_weight=4.0)
    assert _agreement(off, halves) < 0.75
    assert _agreement(on, halves) > 0.95  # the longer axis is split in two


def test_foreground_only_leaves_the_background_out():
    feats, truth = _planted()
    mask = truth > 0
    labels = cluster_pixels(feats, 2, mask=mask)
    assert np.all(labels[~mask] == 0) and set(np.unique(labels[mask])) == {1, 2}
    assert _agreement(labels[mask], truth[mask]) == 1.0


def test_bad_arguments_are_refused_with_a_clear_message():
    feats, _ = _planted()
    with pytest.raises(ValueError, match="at least 2"):
        cluster_pixels(feats, 1)
    with pytest.raises(ValueError, match="needs the image"):
        cluster_pixels(feats, 2, colour_weight=1.0)
    with pytest.raises(ValueError, match="negative"):
        cluster_pixels(feats, 2, position_weight=-1.0)


def test_semantic_clusters_end_to_end_with_classical_features():
    """The engine generator on an image with two planted textures (no weights needed)."""
    rng = np.random.default_rng(3)
    h, w = 64, 96
    truth = np.zeros((h, w), int)
    truth[:, 48:] = 1
    image = np.where(truth == 1, 0.7, 0.3) + 0.02 * rng.standard_normal((h, w))
    gen = semantic_clusters(None, image.clip(0, 1), k=2, mode="classical")
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        result = stop.value
    assert result.labels.shape == (h, w) and result.k == 2
    assert _agreement(result.labels, truth) > 0.97
