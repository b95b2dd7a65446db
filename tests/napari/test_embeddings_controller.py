"""The embedding explorer's Qt-free controller on a planted folder (random tiny ViT)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from headless.progress import run as drive
from napari_dinoseg._widgets.embeddings.controller import EmbeddingController, compute


def test_controller_ranks_steps_and_describes(tmp_path):
    rng = np.random.default_rng(0)
    for c, base in (("dark", 20), ("light", 230)):
        (tmp_path / c).mkdir()
        for i in range(6):
            img = np.clip(base + rng.normal(0, 5, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(tmp_path / c / f"{i}.png")
    # a planted mislabel: a light image filed under dark
    Image.fromarray(np.full((40, 40, 3), 230, np.uint8)).save(tmp_path / "dark" / "odd.png")
    res = drive(compute(tmp_path, "test_dino_tiny16", "random", "cpu", size=32, k=4,
                        projection="pca"))
    ctl = EmbeddingController()
    ctl.set_result(res)
    assert ctl.points().shape == (13, 2) and res.classes == ["dark", "light"]
    assert set(ctl.colour_values("class")) == {0.0, 1.0}
    ctl.set_score("mislabel")
    first = ctl.step()
    assert ctl.image_path(first).name == "odd.png"
    assert "label dark, k-NN says light" in ctl.describe(first)
    assert ctl.ranked(3)[0][1] == "odd.png"
    assert ctl.step(-5) == first  # clamped at the top of the list
    with pytest.raises(ValueError, match="unknown score"):
        ctl.set_score("nope")
    with pytest.raises(ValueError, match="image folder .*missing does not exist"):
        drive(compute(tmp_path / "dark" / "missing", "test_dino_tiny16", "random", "cpu"))
