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


def test_one_bad_file_is_skipped_and_named_not_fatal(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        arr = np.random.default_rng(i).integers(0, 255, (60, 80, 3), dtype=np.uint8)
        Image.fromarray(arr).save(data / f"{i}.png")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = Image.open(data / "0.png")
    good.save(data / "cut.jpg")
    (data / "cut.jpg").write_bytes((data / "cut.jpg").read_bytes()[:200])  # header only
    code = main(["attention-maps", str(data), "--backbone", "test_dino_tiny16",
                 "--weights", "random", "--size", "64", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1  # some maps are missing, and the run says which
    assert "3 of 5 maps cached" in captured.out
    assert "no map:" in captured.err and "broken.png (" in captured.err
    assert "cut.jpg" in captured.err
    files = [p for p in (data / ".dinoseg" / "cache").rglob("*") if p.is_file()]
    assert len(files) == 3
