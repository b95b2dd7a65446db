"""Atomic writes and the project folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from headless.store import ProjectStore, array_hash, atomic_write_bytes, atomic_write_json


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "boxes.json"
    atomic_write_json(target, {"v": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"half")
    monkeypatch.undo()
    assert target.read_text().strip().startswith("{") and '"v": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["boxes.json"]  # no temp file left


def test_store_round_trips_labels_json_and_cache(tmp_path):
    store = ProjectStore(tmp_path / ".dinoseg")
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    store.save_labels("img 1.png", "scribbles.tif", labels)
    np.testing.assert_array_equal(store.load_labels("img 1.png", "scribbles.tif"), labels)
    assert store.load_labels("other.png", "scribbles.tif") is None
    store.save_json("img 1.png", "boxes.json", [{"x0": 1}])
    assert store.load_json("img 1.png", "boxes.json") == [{"x0": 1}]
    key = array_hash(labels, "dino", 224)
    assert key != array_hash(labels, "dino", 448)
    assert store.cache_get("features", key) is None
    store.cache_put("features", key, a=labels)
    np.testing.assert_array_equal(store.cache_get("features", key)["a"], labels)
    store.cache_path("features", key).write_bytes(b"damaged")
    assert store.cache_get("features", key) is None  # recomputed, never fatal


def test_for_image_puts_project_next_to_image(tmp_path):
    assert ProjectStore.for_image(tmp_path / "a.tif").root == tmp_path / ".dinoseg"


def test_read_only_image_folder_gets_a_project_in_the_user_home(tmp_path, monkeypatch):
    import headless.store as store_mod
    from headless.store import project_root_for_folder

    monkeypatch.setenv("DINOSEG_HOME", str(tmp_path / "home"))
    images = tmp_path / "dataset"
    images.mkdir()
    assert project_root_for_folder(images) == images / ".dinoseg"
    real_access = os.access
    # the OS says the dataset folder is read-only (root can write anywhere, so simulate it)
    monkeypatch.setattr(store_mod.os, "access",
                        lambda p, mode: False if str(p).startswith(str(images)) else
                        real_access(p, mode))
    root = project_root_for_folder(images)
    assert root.parent == tmp_path / "home" / "projects" and root.name.startswith("dataset-")
    assert project_root_for_folder(images) == root  # found again on reopen
    assert ProjectStore.for_image(images / "a.png").root == root
    ProjectStore(root).save_json("a.png", "boxes.json", [])
    assert (root / "images" / "a.png" / "boxes.json").exists()
    assert not (images / ".dinoseg").exists()


def test_atomic_writes_get_normal_file_permissions(tmp_path):
    target = tmp_path / "labels.json"
    atomic_write_json(target, {})
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    target.chmod(0o640)
    atomic_write_json(target, {"again": 1})
    assert target.stat().st_mode & 0o777 == 0o640  # an existing file keeps its mode


def test_writing_through_a_symlink_keeps_the_link(tmp_path):
    from headless.store import atomic_write_text

    target = tmp_path / "real" / "boxes.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "boxes.json"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert target.read_text() == "new"


def test_the_folder_is_synced_after_the_rename(tmp_path, monkeypatch):
    import headless.store as store_mod

    synced = []
    real = store_mod.fsync_dir
    monkeypatch.setattr(store_mod, "fsync_dir", lambda d: (synced.append(Path(d)), real(d)))
    store_mod.atomic_write_text(tmp_path / "sub" / "a.txt", "x")
    assert synced == [tmp_path / "sub"] and (tmp_path / "sub" / "a.txt").read_text() == "x"


def test_read_only_folder_with_earlier_work_is_read_and_new_work_goes_home(tmp_path,
                                                                           monkeypatch):
    """Work saved in a folder's .dinoseg before it became read-only is still found."""
    import numpy as np

    import headless.store as store_mod
    from headless.boxes.curation import BoxCuration
    from headless.boxes.types import Box

    monkeypatch.setenv("DINOSEG_HOME", str(tmp_path / "home"))
    images = tmp_path / "dataset"
    images.mkdir()
    local = ProjectStore.for_folder(images)
    assert local.root == images / ".dinoseg" and local.fallbacks == ()
    scribbles = np.arange(12, dtype=np.uint8).reshape(3, 4)
    local.save_labels("a.png", "scribbles.tif", scribbles)
    BoxCuration(local).save_edit("a.png", [Box(1, 1, 3, 3)], (4, 3))
    local.cache_put("features", "k1", x=np.ones(2))
    real_access = os.access
    monkeypatch.setattr(store_mod.os, "access",
                        lambda p, mode: False if str(p).startswith(str(images)) else
                        real_access(p, mode))
    store = ProjectStore.for_image(images / "a.png")
    assert store.root.parent == tmp_path / "home" / "projects"
    assert store.fallbacks == (images / ".dinoseg",)
    assert np.array_equal(store.load_labels("a.png", "scribbles.tif"), scribbles)
    assert store.cache_get("features", "k1")["x"].tolist() == [1.0, 1.0]
    assert "read-only" in store.where_note() and str(store.root) in store.where_note()
    cur = BoxCuration.for_folder(images)
    assert cur.status("a.png") == "edited" and cur.saved_images() == ["a.png"]
    cur.mark_verified("a.png")  # written to the home project, the old file left alone
    assert (store.root / "images" / "a.png" / "boxes.json").is_file()
    assert BoxCuration.for_folder(images).status("a.png") == "verified"
    assert json.loads((images / ".dinoseg" / "images" / "a.png" / "boxes.json")
                      .read_text())["status"] == "edited"
