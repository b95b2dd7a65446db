"""Foreground from a ViT: planted tokens (exact behaviour) and the real DINOv2 on real images,
always against Otsu's intensity threshold as the baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headless.features.foreground import (
    border_sign,
    foreground,
    foreground_from_features,
    iou,
    otsu,
    pca_direction,
)
from headless.features.forward import Features


def _planted_features(h=12, w=16, d=24, p=8, seed=0):
    """Tokens: an object block (rows 3..8, cols 4..11) with its own mean, plus noise."""
    rng = np.random.default_rng(seed)
    obj = np.zeros((h, w), bool)
    obj[3:9, 4:12] = True
    mu = rng.standard_normal((2, d)) * 3
    patch = mu[obj.astype(int)] + 0.3 * rng.standard_normal((h, w, d))
    attn = np.where(obj, 1.0, 0.1)[None].repeat(3, 0) * (1 + 0.1 * rng.random((3, h, w)))
    z = torch.zeros(1, 0)
    f = Features(patch=torch.tensor(patch[None], dtype=torch.float32), cls=z, q=z, k=z, v=z,
                 attn=torch.tensor(attn[None], dtype=torch.float32), grid=(h, w), patch_size=p,
                 input_hw=(h * p, w * p), orig_hw=(h * p, w * p))
    truth = np.kron(obj, np.ones((p, p), bool))
    return f, truth


@pytest.mark.parametrize("method", ["pca", "attention", "fused"])
def test_planted_object_is_found_whatever_the_sign(method):
    f, truth = _planted_features()
    image = np.zeros(truth.shape)  # a flat image: the mask can only come from the features
    fg = foreground_from_features(f, image, method)
    assert fg.mask.shape == truth.shape and iou(fg.mask, truth) > 0.9
    assert 0.0 <= fg.score.min() and fg.score.max() <= 1.0
    f.patch = -f.patch  # PCA's sign is arbitrary: the border rule must undo it
    assert iou(foreground_from_features(f, image, method).mask, truth) > 0.9
    # an intensity threshold sees nothing on this image
    assert iou(image > otsu(image), truth) < 0.1


def test_pca_direction_is_signed_by_the_border():
    f, _ = _planted_features()
    w, b = pca_direction(f.patch[0].numpy())
    score = f.patch[0].numpy() @ w + b
    assert border_sign(score) == 1.0
    assert score[3:9, 4:12].mean() > score[0].mean()


def test_crf_pulls_a_blocky_mask_onto_the_image_edges():
    """A patch-level score around a disc: the CRF follows the disc's edge in the image."""
    f, _ = _planted_features()
    h, w = 96, 128
    yy, xx = np.mgrid[0:h, 0:w]
    disc = (yy - 48) ** 2 + (xx - 64) ** 2 < 26 ** 2
    image = np.where(disc, 0.8, 0.2)
    obj = np.zeros((12, 16))
    obj[(np.mgrid[0:12, 0:16][0] * 8 + 4 - 48) ** 2 + (np.mgrid[0:12, 0:16][1] * 8 + 4 - 64) ** 2
        < 26 ** 2] = 1
    f.patch = torch.tensor(obj[None, ..., None] * np.ones(24) + 0.01 * np.random.default_rng(
        0).standard_normal((1, 12, 16, 24)), dtype=torch.float32)
    plain = foreground_from_features(f, image, "pca")
    refined = foreground_from_features(f, image, "pca", crf=True)
    assert iou(refined.mask, disc) > iou(plain.mask, disc)
    assert iou(refined.mask, disc) > 0.95


def test_bad_options_are_clear():
    from headless.features.backbones import load_backbone

    bb = load_backbone("test_dino_tiny16", "random")
    with pytest.raises(ValueError, match="unknown foreground method"):
        next(foreground(bb, np.zeros((64, 64)), method="saliency"))
    with pytest.raises(ValueError, match="threshold"):
        next(foreground(bb, np.zeros((64, 64)), threshold=2.0))
    with pytest.raises(ValueError, match="hr=True"):
        next(foreground(bb, np.zeros((64, 64)), method="attention", hr=True))


def _run(gen):
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def test_real_weights_foreground_on_nuclei_beats_otsu(shared_weights, shared_data):
    """The default method ('fused') against Otsu's intensity threshold, which is strong here.

    Figures (README): fused 0.743 at 1036 px (0.751 native) against Otsu 0.717; the first PCA
    component alone (0.43) and the attention (0.33) do not beat the baseline on this image.
    """
    from headless.features.backbones import load_backbone
    from headless.images import read_image

    img = read_image(shared_data / "nuclei" / "img2d.tif")
    truth = read_image(shared_data / "nuclei" / "mask2d.tif") > 0
    f01 = (img - img.min()) / np.ptp(img)
    baseline = iou(f01 > otsu(f01), truth)
    bb = load_backbone("dinov2_vits14", shared_weights)
    fg = _run(foreground(bb, img, method="fused", size=1036))
    assert iou(fg.mask, truth) > baseline + 0.01, (iou(fg.mask, truth), baseline)
    assert abs(fg.mask.mean() - truth.mean()) < 0.05
