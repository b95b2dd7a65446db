"""``dinoseg attention-maps`` fills the same cache that training jobs read."""

from __future__ import annotations

import numpy as np
from PIL import Image

from headless.cli import main


def test_attention_maps_are_computed_once_and_cached(tmp_path, capsys):
    for cls in ("a", "b"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(3):
            arr = np.random.default_rng(i).integers(0, 255, (60, 80, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / "data" / cls / f"{i}.png")
    args = ["attention-maps", str(tmp_path / "data"), "--backbone", "test_dino_tiny16",
            "--weights", "random", "--size", "64", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "6 of 6 maps cached" in out
    cache = tmp_path / "data" / ".dinoseg" / "cache"
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert len(files) == 6
    stamps = {p: p.stat().st_mtime_ns for p in files}
    assert main(args) == 0  # second run: every map found, nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in files} == stamps

    assert main(["attention-maps", str(tmp_path / "nothing"), "--weights", "random"]) == 2
