"""Image reading and normalisation on odd inputs and real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from headless.images import (
    ImageError,
    expand_inputs,
    list_images,
    read_image,
    read_labels,
    to_float01,
    to_rgb01,
)


def test_to_float01_scales_by_type():
    np.testing.assert_allclose(to_float01(np.array([0, 255], np.uint8)), [0, 1])
    np.testing.assert_allclose(to_float01(np.array([0, 65535], np.uint16)), [0, 1])
    # 12-bit data in a 16-bit container is scaled by its own max, not left nearly black
    np.testing.assert_allclose(to_float01(np.array([0, 2048, 4095], np.uint16)),
                               [0, 2048 / 4095, 1])
    np.testing.assert_allclose(to_float01(np.array([-2.0, 0.0, 2.0])), [0, 0.5, 1])
    np.testing.assert_allclose(to_float01(np.array([0.2, 0.4])), [0.2, 0.4])
    out = to_float01(np.array([np.nan, 1.0, 3.0]))
    assert np.isfinite(out).all()


def test_to_rgb01_shapes():
    assert to_rgb01(np.zeros((5, 6), np.uint8)).shape == (5, 6, 3)
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0
    out = to_rgb01(rgba)
    assert out.shape == (5, 6, 3) and out[..., 0].max() == 1.0
    assert to_rgb01(np.zeros((1, 5, 6))).shape == (5, 6, 3)
    assert to_rgb01(np.zeros((3, 5, 6))).shape == (5, 6, 3)  # channels-first
    with pytest.raises(ImageError, match="one slice"):
        to_rgb01(np.zeros((7, 5, 6)))


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ImageError, match="broken.png"):
        read_image(bad)
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.tif")


def test_labels_shape_mismatch_is_reported(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "l.tif", np.zeros((4, 5), np.uint8))
    with pytest.raises(ImageError, match=r"\(4, 5\).*\(6, 6\)"):
        read_labels(tmp_path / "l.tif", shape=(6, 6))


def test_folder_listing_skips_non_images(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.TIF").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    listing = list_images(tmp_path)
    assert [p.name for p in listing.images] == ["a.png", "b.TIF"]
    assert [p.name for p in listing.skipped] == ["notes.txt"]
    assert len(expand_inputs([tmp_path]).images) == 2


def test_real_files_with_leading_axis_and_types(shared_data):
    img1 = read_image(shared_data / "scribbles" / "1.tif")
    assert img1.shape == (518, 518) and img1.dtype == np.uint8  # (1, 518, 518) on disk
    gt1 = read_labels(shared_data / "scribbles" / "1_ground_truth.tif", shape=img1.shape)
    assert set(np.unique(gt1)) == {127, 254}
    nuclei = read_image(shared_data / "nuclei" / "img2d.tif")
    assert nuclei.dtype == np.uint16 and to_rgb01(nuclei).max() <= 1.0
    rgb = read_image(shared_data / "scribbles" / "4.jpg")
    assert rgb.shape == (422, 800, 3)
    stack = read_image(shared_data / "em_cells" / "train_stack_small.tif")
    assert stack.shape == (6, 518, 518)


def test_output_stems_never_collide_and_keep_unique_names():
    from headless.images import output_stems

    items = [Path("d1/same.png"), Path("d2/same.png"), Path("a.png"), Path("a.tif"),
             Path("solo.jpg"), Path("d1/x.png"), Path("d1/x.png")]
    stems = output_stems(items)
    assert len(set(stems)) == len(stems)
    assert stems[:5] == ["d1_same_png", "d2_same_png", "a_png", "a_tif", "solo"]
    assert stems[5:] == ["d1_x_png_1", "d1_x_png_2"]


def test_segment_apply_writes_one_file_per_input_even_with_equal_names(tmp_path):
    import tifffile

    from headless.progress import run
    from headless.segment.workflow import FeatureSpec, Segmenter, SegmentSettings, apply_to_all

    rng = np.random.default_rng(0)
    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
        tifffile.imwrite(tmp_path / folder / "same.tif", rng.integers(0, 255, (24, 24), np.uint8))
    seg = Segmenter(SegmentSettings(features=FeatureSpec(mode="classical")))
    image = rng.integers(0, 255, (24, 24)).astype(np.uint8)
    scribbles = np.zeros((24, 24), np.uint8)
    scribbles[:4], scribbles[-4:] = 1, 2
    probe = run(seg.train([(image, scribbles)]))
    out = tmp_path / "out"
    res = run(apply_to_all(seg, probe, [tmp_path / "d1" / "same.tif",
                                        tmp_path / "d2" / "same.tif"], out))
    assert sorted(p.name for p in res.written) == ["d1_same_tif_labels.tif",
                                                   "d2_same_tif_labels.tif"]
