"""Weighted k-NN (hand-made features, chunking), linear evaluation, labelled-folder checks and
the real DINOv2 ViT-S/14 against random weights on real raccoon / background crops."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from headless.train.data.errors import DatasetError
from headless.train.ssl.knn import knn_classify, knn_predict, knn_votes, topk_neighbours
from headless.train.ssl.labelled import load_labelled


def _unit(angles_deg):
    a = np.radians(angles_deg)
    return torch.tensor(np.stack([np.cos(a), np.sin(a)], 1), dtype=torch.float64)


def test_weighted_knn_votes_by_hand():
    train = _unit([0, 12, 20, 85, 100, 180])
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    query = _unit([50])
    sims, idx = topk_neighbours(query, train, k=3)
    assert idx.tolist() == [[2, 3, 1]]  # 30, 35, 38 degrees away
    cos = [math.cos(math.radians(d)) for d in (30, 35, 38)]
    np.testing.assert_allclose(sims[0].numpy(), cos)
    votes = knn_votes(sims, labels[idx], 3, temperature=0.07)
    want = [math.exp(cos[2] / 0.07), math.exp(cos[0] / 0.07) + math.exp(cos[1] / 0.07), 0.0]
    np.testing.assert_allclose(votes[0].numpy(), want, rtol=1e-12)
    # k = 3: class 1 wins on weight (two votes); k = 1: class 1 too; query at 5 deg: class 0
    res = knn_classify(train, labels, _unit([50, 5]), torch.tensor([1, 0]), ks=(1, 3))
    assert [r.top1 for r in res] == [100.0, 100.0]
    # temperature matters: with one near class-0 vote against two farther class-1 votes
    q = _unit([6])
    tr = _unit([5, 30, 31])
    lab = torch.tensor([0, 1, 1])
    sharp = knn_classify(tr, lab, q, torch.tensor([0]), ks=(3,), temperature=0.01)[0]
    flat = knn_classify(tr, lab, q, torch.tensor([0]), ks=(3,), temperature=100.0)[0]
    assert sharp.top1 == 100.0 and flat.top1 == 0.0


def test_chunked_search_equals_the_whole_matrix():
    g = torch.Generator().manual_seed(0)
    train = torch.nn.functional.normalize(torch.randn(500, 16, generator=g), dim=1)
    query = torch.nn.functional.normalize(torch.randn(37, 16, generator=g), dim=1)
    s_full, i_full = (query @ train.T).topk(20, dim=1)
    s, i = topk_neighbours(query, train, 20, query_chunk=7, train_chunk=33)
    assert torch.allclose(s, s_full) and torch.equal(i, i_full)
    labels = torch.randint(0, 4, (500,), generator=g)
    a = knn_classify(train, labels, query, labels[:37], ks=(5, 20), query_chunk=5,
                     train_chunk=64)
    b = knn_classify(train, labels, query, labels[:37], ks=(5, 20))
    assert [(r.top1, r.top5) for r in a] == [(r.top1, r.top5) for r in b]


def test_knn_predict_excludes_each_query_itself():
    train = _unit([0, 1, 2, 3, 90, 91])
    labels = torch.tensor([0, 0, 1, 0, 1, 1])  # index 2 sits among class 0: a planted mislabel
    shares, pred = knn_predict(train, labels, train, k=3, num_classes=2, exclude_self=True)
    assert pred.tolist() == [0, 0, 0, 0, 1, 1]
    assert shares[2, 1] == 0.0  # its own (wrong) label gets no vote from itself


def test_linear_evaluation_learns_separable_features():
    from headless.train.ssl.linear import train_linear

    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 3
    y = torch.arange(3).repeat(20)
    x = centres[y] + torch.randn(60, 8, generator=g) * 0.3
    res = train_linear(x[:30], y[:30], x[30:], y[30:], 3, epochs=50, lr=1.0, batch_size=16)
    assert res.top1 == 100.0 and res.top5 == 100.0
    untrained = train_linear(x[:30], y[:30], x[30:], y[30:], 3, epochs=1, lr=1e-9)
    assert untrained.top1 < 80.0  # the learning, not the initialisation, separates them


def _folder(root: Path, classes: list[str], n: int = 2) -> None:
    from PIL import Image

    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (40, 40), (i * 50, 0, 0)).save(root / c / f"{i}.png")


def test_labelled_folders_with_different_classes_are_refused(tmp_path):
    _folder(tmp_path / "train", ["cat", "dog"])
    _folder(tmp_path / "val", ["cat", "owl"])
    with pytest.raises(DatasetError, match="only in train: dog; only in val: owl"):
        load_labelled(tmp_path)
    with pytest.raises(DatasetError, match="no train/ folder"):
        load_labelled(tmp_path / "val")
    _folder(tmp_path / "ok" / "train", ["a", "b"])
    _folder(tmp_path / "ok" / "val", ["a", "b"])
    lab = load_labelled(tmp_path / "ok")
    assert lab.classes == ["a", "b"] and len(lab.train) == len(lab.val) == 4


# ---------------------------------------------------------------------------------------------
# real weights on real photos


def _raccoon_crops(data: Path, out: Path, n_train: int = 25, n_val: int = 20) -> Path:
    """Class 'raccoon' = the box; class 'scene' = the largest strip of the photo beside it."""
    import xml.etree.ElementTree as ET

    from PIL import Image

    ann = sorted((data / "raccoon_voc" / "annotations").glob("*.xml"))
    made = 0
    for xml in ann:
        root = ET.parse(xml).getroot()
        objs = root.findall("object")
        if len(objs) != 1:
            continue
        bb = objs[0].find("bndbox")
        x0, y0, x1, y1 = (int(float(bb.find(t).text)) for t in ("xmin", "ymin", "xmax", "ymax"))
        img_path = data / "raccoon_voc" / "images" / root.find("filename").text
        if not img_path.is_file():
            continue
        img = Image.open(img_path).convert("RGB")
        w, h = img.size
        strips = [(0, 0, x0, h), (x1, 0, w, h), (0, 0, w, y0), (0, y1, w, h)]
        strips = [s for s in strips if min(s[2] - s[0], s[3] - s[1]) >= 48]
        if not strips or min(x1 - x0, y1 - y0) < 48:
            continue
        strip = max(strips, key=lambda s: (s[2] - s[0]) * (s[3] - s[1]))
        split = "train" if made < n_train else "val"
        for cls, box in (("raccoon", (x0, y0, x1, y1)), ("scene", strip)):
            folder = out / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            img.crop(box).save(folder / f"{xml.stem}.png")
        made += 1
        if made >= n_train + n_val:
            break
    return out


@pytest.fixture(scope="module")
def raccoon_crops(tmp_path_factory):
    data = Path(__file__).resolve().parents[3].parent / "shared" / "data"
    if not (data / "raccoon_voc").is_dir():
        pytest.skip("../shared/data is not here")
    return _raccoon_crops(data, tmp_path_factory.mktemp("raccoon_crops"))


def test_real_dinov2_knn_and_linear_far_above_random_weights(raccoon_crops, shared_weights,
                                                             tmp_path):
    """Measured at size 112: k-NN(10) 87.5 vs 47.5, linear 95.0 vs 50.0 (chance 50)."""
    import dataclasses

    from headless.progress import run as drive
    from headless.train.ssl.evaluation import eval_knn, eval_linear, labelled_features

    def evaluate(weights):
        # one extraction: the 4 last CLS tokens; the last of them is the k-NN feature
        feats = drive(labelled_features("dinov2_vits14", weights, raccoon_crops, size=112,
                                        batch_size=16, device="cpu", mode="linear",
                                        n_last_blocks=4, cache=tmp_path))
        cls = dataclasses.replace(feats, train_x=feats.train_x[:, -384:],
                                  val_x=feats.val_x[:, -384:])
        return eval_knn(cls, ks=(10, 20)), eval_linear(feats, epochs=100, lr=0.001)

    real_knn, real_lin = evaluate(str(shared_weights))
    rand_knn, rand_lin = evaluate("random")
    assert real_knn["n_train"] == 50 and real_knn["n_val"] == 40
    assert real_knn["knn10_top1"] >= 80.0 and rand_knn["knn10_top1"] <= 65.0
    assert real_lin["linear_top1"] >= 85.0 and rand_lin["linear_top1"] <= 65.0
