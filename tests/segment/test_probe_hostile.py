"""Tampered probe files are refused before any work, with one line naming the problem."""

from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np
import pytest

from headless.segment.probe import ProbeError, ProbeMeta, load_probe, train_probe


def planted(n_per_class=(80, 80), d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(3.0 * c, 1.0, (n, d)) for c, n in enumerate(n_per_class)])
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    return x.astype(np.float32), y


def meta_for(x, n_classes):
    values = [85 * (i + 1) for i in range(n_classes)]
    return ProbeMeta("classical", x.shape[1], values, [f"c{v}" for v in values])


@pytest.fixture
def saved(tmp_path):
    """A real linear probe file and a function that rewrites one of its members."""
    x, y = planted(n_per_class=(80, 80), d=6)
    path = tmp_path / "p.npz"
    train_probe(x, y, meta_for(x, 2), "linear").save(path)

    def rewrite(*, meta=None, arrays=None, drop=()):
        with np.load(path, allow_pickle=False) as data:
            members = {k: data[k] for k in data.files if k not in drop}
        raw = json.loads(str(members["metadata_json"]))
        if meta is not None:
            meta(raw)
            members["metadata_json"] = np.array(json.dumps(raw))
        members.update(arrays or {})
        out = tmp_path / "tampered.npz"
        np.savez_compressed(out, **members)
        return out

    return path, rewrite


def test_the_untampered_file_loads(saved):
    path, _ = saved
    assert load_probe(path).kind == "linear"


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m["meta"]["feature_options"].update(sigmas=[1e6]), "feature_options.sigmas"),
    (lambda m: m["meta"].update(class_values=[-5, 170]), "class_values"),
    (lambda m: m["meta"].update(feature_dim=None), "meta.feature_dim"),
    (lambda m: m["meta"].update(class_names=[]), "meta.class_names"),
    (lambda m: m["meta"].update(feature_dim=10**30), "meta.feature_dim"),
    (lambda m: m["meta"].update(feature_dim="8"), "meta.feature_dim"),  # a number as text
    (lambda m: m["meta"].update(class_values=["85", 170]), "class_values"),
    (lambda m: m.update(classifier=["linear"]), "classifier"),
    (lambda m: m.update(meta=[]), "meta"),
    (lambda m: m["meta"].update(feature_mode="telepathy"), "meta.feature_mode"),
])
def test_bad_metadata_is_refused_before_any_array_is_read(saved, monkeypatch, change, message):
    _, rewrite = saved
    tampered = rewrite(meta=change)
    read = []
    real = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__",
                        lambda self, key: (read.append(key), real(self, key))[1])
    start = time.perf_counter()
    with pytest.raises(ProbeError, match=message.replace(".", r"\.")) as exc:
        load_probe(tampered)
    assert "\n" not in str(exc.value) and time.perf_counter() - start < 30
    assert read == ["metadata_json"]


def test_an_array_larger_than_the_metadata_says_is_refused(saved):
    _, rewrite = saved
    with pytest.raises(ProbeError, match="array 'weight' holds .* bytes .* at most"):
        load_probe(rewrite(arrays={"weight": np.zeros((2, 200_000))}))


def test_extra_arrays_are_never_read(saved, monkeypatch):
    path, rewrite = saved
    tampered = rewrite(arrays={"junk": np.zeros(2_000_000)})
    read = []
    real = np.lib.npyio.NpzFile.__getitem__
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__",
                        lambda self, key: (read.append(key), real(self, key))[1])
    assert load_probe(tampered).kind == "linear"
    assert "junk" not in read and "weight" in read


def test_nan_weights_are_refused(saved):
    path, rewrite = saved
    with np.load(path) as data:
        w = data["weight"].copy()
    w[0, 0] = np.nan
    with pytest.raises(ProbeError, match="'weight' holds NaN"):
        load_probe(rewrite(arrays={"weight": w}))


def test_deeply_nested_json_is_one_line(saved, tmp_path):
    path, _ = saved
    with np.load(path) as data:
        members = {k: data[k] for k in data.files}
    members["metadata_json"] = np.array("[" * 100_000 + "]" * 100_000)
    out = tmp_path / "deep.npz"
    np.savez_compressed(out, **members)
    with pytest.raises(ProbeError) as exc:
        load_probe(out)
    assert "\n" not in str(exc.value)


def test_a_zip_that_is_not_a_probe(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    (tmp_path / "z.npz").write_bytes(buf.getvalue())
    with pytest.raises(ProbeError, match="no metadata"):
        load_probe(tmp_path / "z.npz")
