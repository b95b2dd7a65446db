"""Linear probe and random forest: planted data, exact equivalences, safe save / load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from headless.segment.probe import (
    ForestProbe,
    LinearProbe,
    ProbeError,
    ProbeMeta,
    ProbeMismatchError,
    TrainParams,
    TreeArrays,
    load_probe,
    train_probe,
)


def planted(n_per_class=(300, 300, 300), d=8, sep=4.0, seed=0):
    """Gaussian blobs with distinct means in d dimensions, features on different scales."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c, n in enumerate(n_per_class):
        mean = np.zeros(d)
        mean[c % d] = sep
        xs.append(rng.normal(mean, 1.0, (n, d)))
        ys.append(np.full(n, c))
    scale = np.logspace(-2, 2, d)  # badly scaled features: the scaler must handle them
    return (np.concatenate(xs) * scale + 5).astype(np.float32), np.concatenate(ys)


def meta_for(x, n_classes, mode="classical", backbone=None, **opts):
    values = [85 * (i + 1) for i in range(n_classes)]
    return ProbeMeta(mode, x.shape[1], values, [f"c{v}" for v in values], backbone=backbone,
                     feature_options=opts)


@pytest.mark.parametrize("kind", ["linear", "rf"])
def test_planted_classes_are_recovered(kind):
    x, y = planted()
    xt, yt = planted(seed=1)
    probe = train_probe(x, y, meta_for(x, 3), kind)
    p = probe.predict_proba(xt)
    assert p.shape == (len(yt), 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-5)
    assert (p.argmax(1) == yt).mean() > 0.95
    labels = probe.labels_from_proba(p)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {85, 170, 255}


@pytest.mark.parametrize("n_classes", [2, 3])
def test_linear_probe_equals_sklearn_and_folds_the_scaler(n_classes):
    from sklearn.linear_model import LogisticRegression

    x, y = planted(n_per_class=(200,) * n_classes, sep=1.5)
    probe = train_probe(x, y, meta_for(x, n_classes), "linear",
                        TrainParams(balance=False, C=0.5, max_iter=2000))
    assert isinstance(probe, LinearProbe)
    z = (x - probe.mean) / probe.std
    ref = LogisticRegression(C=0.5, max_iter=2000, tol=1e-4).fit(z, y)
    np.testing.assert_allclose(probe.predict_proba(x), ref.predict_proba(z), atol=2e-3)
    w, b = probe.folded()
    np.testing.assert_allclose(x @ w.T + b, z @ probe.weight.T + probe.bias, rtol=1e-4,
                               atol=1e-3)
    # image-shaped prediction (any memory layout) equals the row prediction
    block = np.ascontiguousarray(np.moveaxis(x[:400].reshape(20, 20, -1), -1, 0))
    img = np.moveaxis(block, 0, -1)  # a channels-last view of a channels-first block
    np.testing.assert_allclose(probe.predict_image(img).reshape(-1, n_classes),
                               probe.predict_proba(x[:400]), atol=1e-6)


def test_forest_probe_equals_the_sklearn_forest_it_was_built_from():
    from sklearn.ensemble import RandomForestClassifier

    x, y = planted(sep=1.0)
    rf = RandomForestClassifier(n_estimators=7, max_depth=6, random_state=0).fit(x, y)
    meta = meta_for(x, 3)
    probe = ForestProbe(meta, [TreeArrays.from_sklearn(t) for t in rf.estimators_])
    xt, _ = planted(seed=5, sep=1.0)
    np.testing.assert_allclose(probe.predict_proba(xt), rf.predict_proba(xt), atol=1e-6)


def test_balancing_raises_recall_of_a_rare_class():
    x, y = planted(n_per_class=(2000, 25), sep=2.0, seed=3)
    xt, yt = planted(n_per_class=(2000, 2000), sep=2.0, seed=4)
    for kind in ("linear", "rf"):
        recall = {}
        for balance in (False, True):
            probe = train_probe(x, y, meta_for(x, 2), kind, TrainParams(balance=balance))
            pred = probe.predict_proba(xt).argmax(1)
            recall[balance] = (pred[yt == 1] == 1).mean()
        assert recall[True] > recall[False] + 0.05, (kind, recall)


@pytest.mark.parametrize("kind", ["linear", "rf"])
def test_save_load_round_trip_without_pickle(tmp_path, kind):
    x, y = planted()
    probe = train_probe(x, y, meta_for(x, 3, "hr", "dinov2_vits14", shifts=4, flips=False),
                        kind)
    path = probe.save(tmp_path / "p.npz")
    with np.load(path, allow_pickle=False) as data:  # no object arrays anywhere
        assert all(data[k].dtype != object for k in data.files)
        meta = json.loads(str(data["metadata_json"]))
    assert meta["classifier"] == kind
    assert meta["meta"]["class_values"] == [85, 170, 255]
    assert meta["meta"]["feature_dim"] == 8 and meta["meta"]["backbone"] == "dinov2_vits14"
    back = load_probe(path)
    assert type(back) is type(probe)
    np.testing.assert_array_equal(back.predict_proba(x), probe.predict_proba(x))
    np.testing.assert_array_equal(back.mean, probe.mean)
    np.testing.assert_array_equal(back.std, probe.std)
    assert back.meta == probe.meta


def test_compatibility_names_every_difference():
    x, y = planted()
    probe = train_probe(x, y, meta_for(x, 3, "hr", "dinov2_vits14", shifts=4), "linear")
    probe.check_compatible("hr", "dinov2_vits14", 8, {"shifts": 4})
    with pytest.raises(ProbeMismatchError, match="backbone: probe 'dinov2_vits14'.*dino_vits16"):
        probe.check_compatible("hr", "dino_vits16", 8)
    with pytest.raises(ProbeMismatchError, match="feature mode: probe 'hr', features 'bilinear'"):
        probe.check_compatible("bilinear", "dinov2_vits14")
    with pytest.raises(ProbeMismatchError, match="dimension: probe 8, features 384"):
        probe.check_compatible(feature_dim=384)
    with pytest.raises(ProbeMismatchError, match="'shifts': probe 4, features 8"):
        probe.check_compatible("hr", "dinov2_vits14", 8, {"shifts": 8})
    with pytest.raises(ProbeMismatchError, match="dimension"):
        probe.predict_proba(np.zeros((3, 9), np.float32))


def test_damaged_files_are_refused_with_a_message(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(ProbeError, match="not a probe file"):
        load_probe(bad)
    with pytest.raises(ProbeError, match="no such probe"):
        load_probe(tmp_path / "missing.npz")
    x, y = planted()
    path = train_probe(x, y, meta_for(x, 3), "rf", TrainParams(n_estimators=3)).save(
        tmp_path / "rf.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["tree_left"] = arrays["tree_left"].copy()
    arrays["tree_left"][0] = 10**6  # a child outside its tree
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(ProbeError, match="outside the tree"):
        load_probe(tmp_path / "tampered.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ProbeError, match="no metadata"):
        load_probe(tmp_path / "other.npz")


def test_training_needs_two_classes_and_finite_features():
    x, y = planted()
    with pytest.raises(ProbeError, match="at least two classes.*'c85'"):
        train_probe(x[y == 0], y[y == 0], meta_for(x, 3))
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ProbeError, match="NaN"):
        train_probe(bad, y, meta_for(x, 3))


def test_a_class_without_scribbles_is_never_predicted():
    x, y = planted()
    keep = y != 1
    for kind in ("linear", "rf"):
        probe = train_probe(x[keep], y[keep], meta_for(x, 3), kind)
        assert probe.predict_proba(x)[:, 1].max() < 1e-3


def test_warm_start_reuses_the_previous_fit():
    x, y = planted(sep=1.5)
    meta = meta_for(x, 3)
    first = train_probe(x, y, meta, "linear")
    again = train_probe(x, y, meta, "linear", previous=first)
    assert again.params["n_iter"] < max(first.params["n_iter"], 2)
    np.testing.assert_allclose(again.predict_proba(x), first.predict_proba(x), atol=1e-2)
