"""Sharding is exact and stable; records survive a kill; keys follow file and settings."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from headless.batch.records import RecordWriter, done_keys, read_records
from headless.batch.shards import (
    image_key,
    settings_digest,
    shard_indices,
    shard_of,
    sorted_images,
)


@pytest.mark.parametrize("n_images,n_shards", [(0, 1), (1, 1), (7, 3), (100, 7), (5, 5)])
def test_shards_partition_the_list_exactly(n_images, n_shards):
    images = [Path(f"/data/img_{i:04d}.png") for i in range(n_images)]
    shards = [shard_of(images, n_shards, i) for i in range(n_shards)]
    flat = [p for s in shards for p in s]
    assert sorted(flat) == images  # the union is the list
    assert len(flat) == len(set(flat))  # no overlap
    sizes = [len(s) for s in shards]
    assert max(sizes, default=0) - min(sizes, default=0) <= 1  # balanced


def test_shards_are_stable_under_reordering_of_the_listing(tmp_path):
    names = [f"{c}{i}.png" for c in "bca" for i in range(5)]
    listing = [tmp_path / n for n in names]
    shuffled = listing[:]
    random.Random(3).shuffle(shuffled)
    a, b = sorted_images(listing), sorted_images(shuffled + listing[:4])  # repeats dropped
    assert a == b
    assert [shard_of(a, 4, i) for i in range(4)] == [shard_of(b, 4, i) for i in range(4)]
    assert a[0].name == "a0.png" and a[-1].name == "c4.png"


def test_shard_index_errors_are_plain():
    with pytest.raises(ValueError, match="at least 1"):
        shard_indices(3, 0, 0)
    with pytest.raises(ValueError, match="shard 3 does not exist"):
        shard_indices(3, 3, 3)


def test_key_changes_with_the_file_and_the_settings(tmp_path):
    p = tmp_path / "a.png"
    p.write_bytes(b"x")
    d1 = settings_digest("boxes", {"method": "lost", "size": 224})
    assert d1 == settings_digest("boxes", {"size": 224, "method": "lost"})  # order-free
    assert d1 != settings_digest("boxes", {"method": "lost", "size": 448})
    assert d1 != settings_digest("sam", {"method": "lost", "size": 224})
    k1 = image_key(p, d1)
    p.write_bytes(b"xy")  # new size
    assert image_key(p, d1) != k1
    os.utime(p, ns=(1, 1))
    k2 = image_key(p, d1)
    os.utime(p, ns=(2, 2))
    assert image_key(p, d1) != k2  # new mtime
    assert image_key(tmp_path / "gone.png", d1).endswith(f"|-1|-1|{d1}")


def test_records_survive_a_torn_last_line_and_appending_cuts_it(tmp_path):
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as w:
        w.append({"key": "a", "result": 1})
        w.append({"key": "b", "result": 2})
    with open(path, "ab") as fh:  # what a kill mid-write leaves
        fh.write(b'{"key": "c", "res')
    assert done_keys(path) == {"a", "b"}
    with RecordWriter(path) as w:
        w.append({"key": "c", "result": 3})
    lines = path.read_bytes().splitlines()
    assert [json.loads(x)["key"] for x in lines] == ["a", "b", "c"]
    assert [r["result"] for r in read_records(path)] == [1, 2, 3]


def test_damaged_lines_are_skipped_not_fatal(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_bytes(b'{"key": "a"}\n\xff\xfe garbage\n[1, 2]\n{"no_key": 1}\n{"key": "b"}\n')
    assert [r["key"] for r in read_records(path)] == ["a", "b"]
    assert done_keys(tmp_path / "missing.jsonl") == set()
