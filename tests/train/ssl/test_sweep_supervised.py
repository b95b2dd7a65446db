"""The label-budget sweep's supervised baseline: same subsets as k-NN / linear, learns a planted
texture, CSV rows and a third curve, ``--no-supervised`` unchanged, budgets refused first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from headless.train.ssl.labelled import load_labelled
from headless.train.ssl.supervised import ImageBank, SupervisedConfig, train_supervised
from headless.train.ssl.sweep import stratified_subset, subset_seed, summarise, sweep

TINY = SupervisedConfig("test_resnet_tiny", epochs=15, batch_size=8)


def _stripes(root: Path, n_train: int = 12, n_val: int = 20, side: int = 24) -> None:
    """Two classes told apart only by texture: horizontal vs vertical stripes, each image with
    its own frequency, phase, brightness, contrast and noise (one example is not enough)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    t = np.arange(side)
    for split, n in (("train", n_train), ("val", n_val)):
        for c in ("h", "v"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                f, ph = rng.uniform(0.15, 0.5), rng.uniform(0, 6.3)
                b, a = rng.uniform(60, 190), rng.uniform(40, 60)
                wave = b + a * np.sin(2 * f * t + ph)
                img = np.repeat(wave[:, None], side, 1) if c == "h" else \
                    np.repeat(wave[None, :], side, 0)
                img = np.clip(img + rng.normal(0, 15, img.shape), 0, 255).astype(np.uint8)
                Image.fromarray(img).convert("RGB").save(root / split / c / f"{i}.png")


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stripes")
    _stripes(root)
    return root


def _feats(root: Path, noise: float = 0.0):
    """Hand-made 'features' for the planted folder: the class one-hot plus noise."""
    from headless.train.ssl.evaluation import LabelledFeatures

    lab = load_labelled(root)
    ty = np.array([c for _, c in lab.train])
    vy = np.array([c for _, c in lab.val])
    rng = np.random.default_rng(3)

    def x(y):  # noqa: ANN001, ANN202
        return (np.eye(2)[y] + rng.normal(0, noise, (len(y), 2))).astype(np.float32)

    return lab, LabelledFeatures(lab.classes, x(ty), ty, x(vy), vy, [p for p, _ in lab.train],
                                 [p for p, _ in lab.val], "planted")


def test_supervised_rows_use_exactly_the_knn_subsets(planted):
    lab, f = _feats(planted, 0.1)
    bank = ImageBank.from_labelled(lab, 24)
    cfg = SupervisedConfig("test_resnet_tiny", epochs=1, batch_size=8)
    used: dict = {}
    rows = sweep({"planted": f}, [1, 3], repeats=2, seed=5, k=3, linear_epochs=2,
                 supervised=(bank, cfg), used=used)
    assert [r["method"] for r in rows].count("supervised") == 4
    for n in (1, 3):
        for r in range(2):
            sup = used[("test_resnet_tiny", "supervised", n, r)]
            assert np.array_equal(sup, used[("planted", "knn", n, r)])
            assert np.array_equal(sup, used[("planted", "linear", n, r)])
            assert np.array_equal(sup, stratified_subset(f.train_y, n, subset_seed(5, n, r)))
            assert np.array_equal(np.bincount(bank.train_y[sup]), [n, n])
    # repeats draw other subsets (otherwise "the same indices" would be trivially true)
    assert not np.array_equal(used[("planted", "knn", 3, 0)], used[("planted", "knn", 3, 1)])


def test_supervised_learns_the_planted_texture_and_is_seeded(planted):
    bank = ImageBank.from_labelled(load_labelled(planted), 24)
    many = train_supervised(bank, stratified_subset(bank.train_y, 10, 1), TINY, seed=1)
    one = train_supervised(bank, stratified_subset(bank.train_y, 1, 1), TINY, seed=1)
    assert many.top1 >= 90.0
    assert one.top1 <= many.top1
    again = train_supervised(bank, stratified_subset(bank.train_y, 10, 1), TINY, seed=1)
    assert again.top1 == many.top1 and again.steps == many.steps == 15 * 3


def test_supervised_refuses_unknown_models():
    with pytest.raises(ValueError, match="not one of"):
        SupervisedConfig("vgg16")


def _sweep_cli(root: Path, out: Path, *extra: str) -> int:
    from headless.cli import main

    return main(["label-sweep", str(root), "--backbone", "test_dino_tiny16", "--weights",
                 "random", "--size", "32", "--supervised-size", "24", "--device", "cpu", "--quiet",
                 "--no-cache",
                 "--budgets", "1", "4", "--repeats", "2", "--epochs", "3",
                 "--csv", str(out / "s.csv"), "--png", str(out / "s.png"), *extra])


def test_cli_writes_supervised_rows_and_a_third_curve(planted, tmp_path):
    from PIL import Image

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert _sweep_cli(planted, a, "--supervised-arch", "test_resnet_tiny",
                      "--supervised-epochs", "2") == 0
    lines = (a / "s.csv").read_text().splitlines()
    assert lines[0] == "backbone,method,labels_per_class,repeat,top1"
    sup = [ln for ln in lines if ln.startswith("test_resnet_tiny,supervised,")]
    assert [ln.split(",")[2:4] for ln in sup] == [["1", "0"], ["1", "1"], ["4", "0"], ["4", "1"]]
    assert len(lines) == 1 + 2 * 2 * 3
    png = np.asarray(Image.open(a / "s.png").convert("RGB"))
    assert png.shape == (480, 720, 3)
    assert (png == (44, 160, 44)).all(-1).sum() > 20  # the third series' colour is drawn
    # a rerun gives the same numbers
    assert _sweep_cli(planted, b, "--supervised-arch", "test_resnet_tiny",
                      "--supervised-epochs", "2") == 0
    assert (b / "s.csv").read_text() == (a / "s.csv").read_text()


def test_no_supervised_leaves_the_old_output(planted, tmp_path, monkeypatch):
    import headless.train.ssl.supervised as sup

    def boom(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("no supervised training with --no-supervised")

    monkeypatch.setattr(sup, "train_supervised", boom)
    assert _sweep_cli(planted, tmp_path, "--no-supervised") == 0
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "backbone,method,labels_per_class,repeat,top1"
    assert len(lines) == 1 + 2 * 2 * 2
    assert {ln.split(",")[1] for ln in lines[1:]} == {"knn", "linear"}
    # exactly what the sweep without a baseline writes
    from headless.progress import run
    from headless.train.ssl.evaluation import labelled_features
    from headless.train.ssl.sweep import write_outputs

    f = run(labelled_features("test_dino_tiny16", "random", planted, size=32, device="cpu",
                              cache=False))
    write_outputs(sweep({f.label: f}, [1, 4], 2, 0, 20, 3, 0.001), tmp_path / "old.csv")
    assert (tmp_path / "old.csv").read_text() == (tmp_path / "s.csv").read_text()
    assert set(summarise(sweep({f.label: f}, [1], 1, 0, 20, 1))) == \
        {f"{f.label} knn", f"{f.label} linear"}


def test_budget_above_the_class_size_is_refused_before_training(planted, tmp_path, capsys,
                                                                 monkeypatch):
    import headless.train.ssl.evaluation as ev
    import headless.train.ssl.supervised as sup

    def boom(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("work started before the budgets were checked")

    monkeypatch.setattr(sup, "train_supervised", boom)
    monkeypatch.setattr(ev, "labelled_features", boom)
    monkeypatch.setattr(sup.ImageBank, "train_images", boom)
    from headless.cli import main

    assert main(["label-sweep", str(planted), "--backbone", "test_dino_tiny16", "--weights",
                 "random", "--quiet", "--budgets", "1", "13", "--supervised-arch",
                 "test_resnet_tiny", "--csv", str(tmp_path / "s.csv"),
                 "--png", str(tmp_path / "s.png")]) == 2
    assert "class 'h' has 12 training images" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()
    # and the engine refuses it too, without training
    lab, f = _feats(planted)
    with pytest.raises(Exception, match="has 12 training images"):
        sweep({}, [13], supervised=(ImageBank.from_labelled(lab, 24), TINY))
