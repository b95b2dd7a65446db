"""GIL-holding steps (the dense CRF) run in a helper process and give the inline result."""

from __future__ import annotations

import numpy as np

from headless.images import read_image


def test_crf_in_the_helper_process_equals_inline(shared_data, monkeypatch):
    from headless.segment.crf import CRFParams, crf_refine
    from napari_dinoseg._widgets.common.processes import HelperProcess

    monkeypatch.delenv("DINOSEG_SYNC", raising=False)
    helper = HelperProcess()
    image = read_image(shared_data / "scribbles" / "3.tif")
    # a noisy two-class probability map the CRF has to clean up
    rng = np.random.default_rng(0)
    p = np.clip((image.astype(np.float32) / 255) + rng.normal(0, 0.3, image.shape), 0.01, 0.99)
    proba = np.stack([1 - p, p], -1).astype(np.float32)
    params = CRFParams(iterations=5)
    try:
        remote = helper.run(crf_refine, image, proba, params)
        assert helper.running  # it did run in the helper
        again = helper.run(crf_refine, image, proba, params)  # same helper
    finally:
        helper.shutdown()
    assert not helper.running
    local = crf_refine(image, proba, params)
    np.testing.assert_allclose(remote, local, atol=1e-6)
    np.testing.assert_allclose(again, local, atol=1e-6)
    assert not np.allclose(remote, proba, atol=1e-2)  # the CRF changed the map


def test_inline_in_sync_mode(monkeypatch):
    from napari_dinoseg._widgets.common.processes import HelperProcess

    monkeypatch.setenv("DINOSEG_SYNC", "1")
    helper = HelperProcess()
    assert helper.run(np.add, 2, 3) == 5
    assert not helper.running
