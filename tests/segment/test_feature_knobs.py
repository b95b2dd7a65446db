"""The feature knobs of issue 10: ViT input scale, ViT / classical channel weight, old probes.

Exact maths where there is some: the channel weight is a rescaling of the standardised ViT
channels inside the linear probe (stored in the probe's scaler, so a saved probe reapplies it),
the scale sets the model input size, and probes saved before the knobs existed still load and
apply with the settings they were trained with.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from headless.progress import run
from headless.segment.probe import (
    LinearProbe,
    ProbeError,
    ProbeMeta,
    ProbeMismatchError,
    TrainParams,
    load_probe,
    train_probe,
)
from headless.segment.probe.training import linear_c
from headless.segment.workflow import FeatureSource, FeatureSpec, Segmenter, SegmentSettings
from headless.segment.workflow.feature_source import DEFAULT_SCALE, DEFAULT_VIT_WEIGHT

TINY = {"backbone": "test_dinov2_tiny14_reg", "weights": "random"}


def _blobs(n=300, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 1, (n, d)) + 2.0 * np.eye(d)[y % d]
    return (x * np.linspace(0.5, 3, d) + 1).astype(np.float32), y


def _meta(x, n=3, mode="hybrid", **opts):
    return ProbeMeta(mode, x.shape[1], [10 * (i + 1) for i in range(n)],
                     [f"c{i}" for i in range(n)], feature_options=opts)


def test_channel_weights_scale_the_standardised_channels_exactly():
    """z = w (x - mean) / std: the probe equals sklearn's fit on those z, and stores std / w."""
    from sklearn.linear_model import LogisticRegression

    from headless.segment.probe.training import _class_weights

    x, y = _blobs()
    w = np.array([0.2, 0.2, 0.2, 1, 1, 1], np.float32)
    params = TrainParams(max_per_class=0)
    probe = train_probe(x, y, _meta(x), "linear", params, channel_weights=w)
    plain = train_probe(x, y, _meta(x), "linear", params)
    mean, std = x.mean(0), x.std(0)
    np.testing.assert_allclose(probe.std, std / w, rtol=1e-5)
    np.testing.assert_allclose(plain.std, std, rtol=1e-5)
    z = w * (x - mean) / std
    ref = LogisticRegression(C=linear_c(params, "hybrid"), max_iter=params.max_iter, tol=1e-4).fit(
        z, y, sample_weight=_class_weights(y, 3, True))
    np.testing.assert_allclose(probe.predict_proba(x), ref.predict_proba(z), atol=2e-3)
    # the weighted channels cost more penalty per unit of logit: their share of |W| drops
    share = np.abs(probe.folded()[0][:, :3] * std[:3]).sum() / np.abs(
        probe.folded()[0] * std).sum()
    share_plain = np.abs(plain.folded()[0][:, :3] * std[:3]).sum() / np.abs(
        plain.folded()[0] * std).sum()
    assert share < share_plain


def test_channel_weights_leave_the_forest_unchanged_and_are_checked():
    x, y = _blobs()
    w = np.full(x.shape[1], 0.3, np.float32)
    a = train_probe(x, y, _meta(x), "rf", channel_weights=w)
    b = train_probe(x, y, _meta(x), "rf")
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))
    for bad in (np.ones(3), -w, w * np.nan):
        with pytest.raises(ProbeError, match="channel weights"):
            train_probe(x, y, _meta(x), "linear", channel_weights=bad)


def test_spec_channel_weights_cover_the_vit_block_of_hybrid_only():
    spec = FeatureSpec(mode="hybrid", vit_weight=0.25, **TINY)
    np.testing.assert_array_equal(spec.channel_weights(3, 5), [0.25, 0.25, 0.25, 1, 1])
    assert FeatureSpec(mode="hybrid", vit_weight=1.0, **TINY).channel_weights(3, 5) is None
    assert FeatureSpec(mode="hr", vit_weight=0.25, **TINY).channel_weights(3, 3) is None
    assert FeatureSpec(mode="hybrid", **TINY).vit_weight == DEFAULT_VIT_WEIGHT
    with pytest.raises(ValueError, match="vit_weight"):
        FeatureSpec(mode="hybrid", vit_weight=0)


def test_scale_sets_the_model_input_size():
    img = np.zeros((300, 512), np.uint8)
    assert FeatureSpec(mode="hr", **TINY).scale == DEFAULT_SCALE
    assert FeatureSpec(mode="hr", scale=2, **TINY).model_size(img) == 1024
    assert FeatureSpec(mode="hr", scale=1.5, **TINY).model_size(img) == 768
    assert FeatureSpec(mode="hr", scale=1, **TINY).model_size(img) is None
    assert FeatureSpec(mode="hr", scale=2, size=224, **TINY).model_size(img) == 224
    assert FeatureSpec(mode="hr", scale=2, **TINY).hr_options(img)["size"] == 1024
    for bad in (0, -1, float("nan"), 100):
        with pytest.raises(ValueError, match="scale"):
            FeatureSpec(mode="hr", scale=bad)


def test_scaled_features_are_the_dense_features_of_the_resized_input():
    from headless.features.dense import dense_features

    img = (np.random.default_rng(0).random((40, 56)) * 255).astype(np.uint8)
    spec = FeatureSpec(mode="bilinear", scale=2, **TINY)
    src = FeatureSource(spec)
    got = run(src.features(img))
    # 80 x 112 is stretched to whole 14 px patches (84 x 112), not zero-padded
    want = run(dense_features(img, "bilinear", src.backbone, size=112, whole_patches=True))
    np.testing.assert_array_equal(got, want)
    padded = run(FeatureSource(FeatureSpec(mode="bilinear", scale=2, whole_patches=False, **TINY),
                               backbone=src.backbone).features(img))
    np.testing.assert_array_equal(padded, run(dense_features(img, "bilinear", src.backbone,
                                                             size=112)))
    assert not np.allclose(got, padded)
    native = run(FeatureSource(FeatureSpec(mode="bilinear", scale=1, **TINY),
                               backbone=src.backbone).features(img))
    assert got.shape == native.shape and not np.allclose(got, native)


def _scribbled(seed=3):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (42, 42), dtype=np.uint8)
    img[:, 21:] //= 3
    scr = np.zeros((42, 42), np.uint8)
    scr[5:10, 3:15], scr[30:35, 28:40] = 1, 2
    return img, scr


def test_saved_probe_records_and_reapplies_the_knobs(tmp_path):
    img, scr = _scribbled()
    spec = FeatureSpec(mode="hybrid", scale=1.5, vit_weight=0.5, **TINY)
    seg = Segmenter(SegmentSettings(features=spec))
    probe = run(seg.train([(img, scr)]))
    assert isinstance(probe, LinearProbe)  # hybrid's default probe
    assert probe.meta.feature_options["scale"] == 1.5
    assert probe.meta.feature_options["vit_weight"] == 0.5
    loaded = load_probe(probe.save(tmp_path / "p.npz"))
    again = FeatureSpec.from_probe(loaded, weights="random")
    assert (again.scale, again.vit_weight) == (1.5, 0.5)
    a = run(seg.predict(img, probe, crf=False)).proba
    b = run(Segmenter(SegmentSettings(features=again)).predict(img, loaded, crf=False)).proba
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ProbeMismatchError, match="feature option 'scale'"):
        run(Segmenter(SegmentSettings(features=FeatureSpec(mode="hybrid", vit_weight=0.5,
                                                           **TINY))).predict(img, loaded))


def test_probe_saved_before_the_knobs_still_loads_and_applies(tmp_path):
    """A probe file whose metadata has no scale / vit_weight (format 1 as first written) means
    scale 1 and weight 1: it loads, reapplies at the native size, and refuses the new defaults."""
    img, scr = _scribbled()
    old = FeatureSpec(mode="hybrid", scale=1.0, vit_weight=1.0, upsample="nearest-exact",
                      whole_patches=False, **TINY)
    seg = Segmenter(SegmentSettings(features=old, classifier="rf"))
    probe = run(seg.train([(img, scr)]))
    path = probe.save(tmp_path / "old.npz")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["metadata_json"]))
    for key in ("scale", "vit_weight", "upsample", "whole_patches"):
        del meta["meta"]["feature_options"][key]
    assert set(meta["meta"]["feature_options"]) == {"sigmas", "size", "stride", "shifts", "dist",
                                                    "flips"}
    arrays["metadata_json"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    loaded = load_probe(path)
    spec = FeatureSpec.from_probe(loaded, weights="random")
    assert (spec.scale, spec.vit_weight, spec.upsample, spec.whole_patches) == \
        (1.0, 1.0, "nearest-exact", False)
    a = run(seg.predict(img, probe, crf=False)).labels
    b = run(Segmenter(SegmentSettings(features=spec, classifier="rf")).predict(
        img, loaded, crf=False)).labels
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ProbeMismatchError, match="'scale': probe 1.0, features 2.0"):
        run(Segmenter(SegmentSettings(features=FeatureSpec(mode="hybrid", **TINY))).predict(
            img, loaded))


def test_upsample_reaches_hr_copies_and_only_hr_modes():
    from headless.features.dense import dense_features

    img = (np.random.default_rng(1).random((40, 56)) * 255).astype(np.uint8)
    spec = FeatureSpec(mode="hr", scale=1, **TINY)
    assert spec.upsample == "bilinear" and spec.options()["upsample"] == "bilinear"
    src = FeatureSource(spec)
    want = run(dense_features(img, "hr", src.backbone, upsample="bilinear"))
    np.testing.assert_array_equal(run(src.features(img)), want)
    nearest = run(dense_features(img, "hr", src.backbone, upsample="nearest-exact"))
    assert not np.allclose(want, nearest)
    assert "upsample" not in FeatureSpec(mode="bilinear", **TINY).options()
    patch = FeatureSpec(mode="patch", upsample="bilinear", **TINY).hr_options(img)
    assert patch["upsample"] == "nearest-exact"  # the mode's own upsampling is kept
    with pytest.raises(ValueError, match="upsample"):
        FeatureSpec(mode="hr", upsample="cubic")
