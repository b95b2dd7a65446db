"""Issue 10's scribble levers: the linear probe's C per feature mode, whole-patch model inputs.

The figures behind them (SEM / TEM scribble images, real ViT-S/14) are in the README; here the
mechanics: hybrid probes train with C = 0.01 unless C is given, other modes keep 0.1; a resized
ViT input is stretched to whole patches (same token grid as zero-padding, no black band) only
when the caller resized it.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from headless.segment.probe.meta import ProbeMeta
from headless.segment.probe.training import TrainParams, linear_c, train_probe


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.normal(size=300) > 0).astype(np.int64)
    return x, y


def _meta(mode: str, dim: int) -> ProbeMeta:
    return ProbeMeta(mode, dim, [1, 2], ["a", "b"])


def test_c_defaults_per_mode_and_an_explicit_c_wins():
    assert linear_c(TrainParams(), "hybrid") == 0.01
    for mode in ("classical", "hr", "bilinear", "patch", None):
        assert linear_c(TrainParams(), mode) == 0.1
    assert linear_c(TrainParams(C=0.5), "hybrid") == 0.5


@pytest.mark.parametrize("mode,c", [("hybrid", 0.01), ("classical", 0.1)])
def test_the_probe_trains_and_records_the_resolved_c(mode, c):
    x, y = _data()
    probe = train_probe(x, y, _meta(mode, x.shape[1]), "linear")
    assert probe.params["C"] == c
    z = (x - x.mean(0)) / x.std(0)
    ref = LogisticRegression(C=c, max_iter=300, tol=1e-6, class_weight="balanced").fit(z, y)
    w = probe.weight[1] - probe.weight[0]  # binary: stored as [-coef / 2, coef / 2]
    np.testing.assert_allclose(w, ref.coef_[0], atol=1e-3)
    # a stronger penalty shrinks the weights
    other = train_probe(x, y, _meta(mode, x.shape[1]), "linear", TrainParams(C=1.0))
    assert np.abs(other.weight).sum() > np.abs(probe.weight).sum() if c < 1 else True


def test_a_resized_input_is_stretched_to_whole_patches():
    from headless.features.backbones import load_backbone
    from headless.features.dense import mode_options
    from headless.features.highres.config import HRConfig
    from headless.features.highres.driver import prepare_image
    from headless.segment.workflow.feature_source import FeatureSpec

    bb = load_backbone("test_dinov2_tiny14_reg", weights="random")
    image = np.random.default_rng(0).random((100, 90)).astype(np.float32)
    spec = FeatureSpec(mode="hr", size=150)
    assert spec.options()["whole_patches"] is True
    resized = HRConfig.from_options(**spec.hr_options(image))
    assert resized.whole_patches
    x, hw, _ = prepare_image(bb, image, resized)
    assert hw == (100, 90) and tuple(x.shape[-2:]) == (154, 140)  # 150 x 135 -> 11 x 10
    # the reference rule (zero-pad later): the features command's default, and on request
    for cfg in (HRConfig.from_options(**mode_options("hr", size=150)),
                HRConfig.from_options(**FeatureSpec(mode="hr", size=150,
                                                    whole_patches=False).hr_options(image))):
        padded, _, _ = prepare_image(bb, image, cfg)
        assert tuple(padded.shape[-2:]) == (150, 135)
    # no resize (scale 1): the image's own pixels are kept (nothing to round)
    native = HRConfig.from_options(**FeatureSpec(mode="hr", scale=1.0).hr_options(image))
    assert not native.whole_patches
    x1, _, _ = prepare_image(bb, image, native)
    assert tuple(x1.shape[-2:]) == (100, 90)
