"""Images too large for the whole filter bank: tiles with a halo, estimates before work.

The tiled bank must equal the untiled one everywhere (image borders included), a segmentation
through tiles must equal the one through the whole bank, and a prediction or CRF that cannot fit
is refused with its estimate before any feature is computed.
"""

from __future__ import annotations

import numpy as np
import pytest

from headless.features.classical import classical_features
from headless.features.classical_tiled import (
    classical_features_at,
    classical_linear,
    iter_classical_tiles,
)
from headless.features.highres.memory import MemoryLimitError
from headless.segment.workflow.feature_source import FeatureSource, FeatureSpec
from headless.segment.workflow.segmenter import Segmenter, SegmentSettings


@pytest.fixture(params=["grey16", "rgb8", "channels_first"])
def image(request) -> np.ndarray:
    rng = np.random.default_rng(4)
    if request.param == "grey16":
        return rng.integers(0, 65535, (173, 151), dtype=np.uint16)
    img = rng.integers(0, 255, (131, 197, 3), dtype=np.uint8)
    return img if request.param == "rgb8" else np.moveaxis(img, -1, 0)


def test_tiled_bank_equals_the_whole_bank_at_borders_and_inside(image):
    full = classical_features(image)
    h, w, nf = full.shape
    r, c = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    at = classical_features_at(image, r.ravel(), c.ravel(), side=48)  # many tiles, 4 borders
    np.testing.assert_allclose(at.reshape(h, w, nf), full, rtol=0, atol=1e-6)
    stitched = np.empty_like(full)
    for inner, f in iter_classical_tiles(image, side=64):
        stitched[inner] = f
    np.testing.assert_allclose(stitched, full, rtol=0, atol=1e-6)
    wt = np.random.default_rng(0).normal(size=(3, nf)).astype(np.float32)
    lin = classical_linear(image, wt, np.arange(3, dtype=np.float32), side=40)
    np.testing.assert_allclose(lin, full @ wt.T + np.arange(3), rtol=1e-5, atol=1e-4)


def test_a_halo_too_small_would_differ_so_the_test_can_fail():
    from headless.features import classical_tiled

    img = np.random.default_rng(1).integers(0, 255, (120, 120), dtype=np.uint8)
    full = classical_features(img)
    r, c = np.meshgrid(np.arange(120), np.arange(120), indexing="ij")
    real = classical_tiled.classical_halo
    try:
        classical_tiled.classical_halo = lambda sigmas=None: 4
        at = classical_features_at(img, r.ravel(), c.ravel(), side=40)
    finally:
        classical_tiled.classical_halo = real
    assert np.abs(at.reshape(full.shape) - full).max() > 1e-3


def _scribbled(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    img = rng.normal(60, 10, (140, 160)).clip(0, 255)
    img[30:100, 40:120] += 120
    scr = np.zeros((140, 160), np.uint8)
    scr[50:60, 60:90] = 1
    scr[5:12, 5:150] = 2
    return img.clip(0, 255).astype(np.uint8), scr


@pytest.mark.parametrize("classifier", ["rf", "linear"])
def test_segmentation_through_tiles_equals_the_whole_bank(classifier, monkeypatch):
    import headless.features.classical_tiled as tiled
    import headless.segment.workflow.feature_source as fs

    img, scr = _scribbled(np.random.default_rng(2))
    settings = SegmentSettings(features=FeatureSpec("classical"), classifier=classifier)
    whole = Segmenter(settings, FeatureSource(settings.features))
    probe, seg_whole = _drive(whole.fit_predict(img, scr))

    shapes = []
    real = tiled.classical_features
    monkeypatch.setattr(tiled, "classical_features",
                        lambda a, *k, **kw: (shapes.append(a.shape), real(a, *k, **kw))[1])
    monkeypatch.setattr(fs, "classical_features", lambda *a, **k: pytest.fail("whole bank"))
    small = FeatureSource(settings.features, max_classical_bytes=1 << 20)
    assert small.too_big(img)
    tiled_seg = Segmenter(settings, small)
    probe_t, seg_t = _drive(tiled_seg.fit_predict(img, scr))
    assert shapes and max(s[0] * s[1] for s in shapes) < img.size  # never the whole image
    np.testing.assert_allclose(seg_t.proba, seg_whole.proba, atol=1e-4)
    assert (seg_t.labels == seg_whole.labels).mean() > 0.999


def test_outputs_and_crf_that_cannot_fit_are_refused_before_any_work(monkeypatch):
    import headless.segment.workflow.feature_source as fs
    from headless.segment.crf import CRFParams, crf_bytes

    img, scr = _scribbled(np.random.default_rng(3))
    settings = SegmentSettings(features=FeatureSpec("classical"), classifier="linear")
    seg = Segmenter(settings)
    probe = _drive(seg.train([(img, scr)]))
    monkeypatch.setattr(fs, "classical_features", lambda *a, **k: pytest.fail("computed"))
    monkeypatch.setenv("DINOSEG_MAX_MEMORY", str(crf_bytes(img.shape, 2) - 1))
    with pytest.raises(MemoryLimitError, match=r"dense CRF on 140x160 px with 2 classes needs"):
        _drive(Segmenter(settings).predict(img, probe, crf=CRFParams()))
    monkeypatch.setenv("DINOSEG_MAX_MEMORY", "10000")
    with pytest.raises(MemoryLimitError, match=r"segmenting 140x160 px into 2 classes needs"):
        _drive(Segmenter(settings).predict(img, probe, crf=False))


def test_a_10000_px_square_image_is_estimated_not_computed(tmp_path, capsys, monkeypatch):
    """The issue's case: the bank of 10^8 px would be 24 GB; the CLI refuses in one line
    when even the outputs cannot fit, and never builds the bank."""
    import tifffile

    import headless.features.classical as classical
    from headless.cli import main

    img, scr = _scribbled(np.random.default_rng(5))
    tifffile.imwrite(tmp_path / "small.tif", img)
    tifffile.imwrite(tmp_path / "small_scr.tif", scr)
    probe_path = tmp_path / "p.npz"
    assert main(["segment", str(tmp_path / "small.tif"), "--scribbles",
                 str(tmp_path / "small_scr.tif"), "--save-probe", str(probe_path),
                 "--out", str(tmp_path / "o"), "--quiet"]) == 0
    big = np.lib.format.open_memmap(tmp_path / "big.npy", "w+", np.uint8, (10000, 10000))
    del big
    tifffile.imwrite(tmp_path / "big.tif", np.load(tmp_path / "big.npy", mmap_mode="r"))
    monkeypatch.setenv("DINOSEG_MAX_MEMORY", str(2 * 1024**3))  # a 2 GiB machine
    monkeypatch.setattr(classical, "classical_features", lambda *a, **k: pytest.fail("bank"))
    capsys.readouterr()
    code = main(["segment", str(tmp_path / "big.tif"), "--probe", str(probe_path),
                 "--out", str(tmp_path / "o2"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2)
    assert any("10000x10000 px into 2 classes needs about" in line for line in err), err


def _drive(gen):
    from headless.progress import run

    return run(gen)
