"""headless/downloads.py: no network fails at once, in one line that says what to do."""

from __future__ import annotations

import socket
import threading

import pytest

import headless.downloads as D

URL = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth"


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(D, "_unreachable", {})
    monkeypatch.setattr(D, "_audience", None)
    monkeypatch.delenv("DINOSEG_AUDIENCE", raising=False)
    monkeypatch.delenv("DINOSEG_OFFLINE", raising=False)


def _no_download(monkeypatch):
    import torch.hub

    calls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: calls.append(a))
    return calls


def test_offline_mode_refuses_before_any_lookup(monkeypatch, tmp_path):
    monkeypatch.setenv("DINOSEG_OFFLINE", "1")
    calls = _no_download(monkeypatch)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: pytest.fail("looked up"))
    with pytest.raises(D.DownloadError, match=r"offline mode \(DINOSEG_OFFLINE=1\)"):
        D.download_to(URL, tmp_path / "w.pth")
    assert calls == [] and not (tmp_path / "w.pth").exists()


def test_a_resolver_that_hangs_is_not_waited_for(monkeypatch, tmp_path):
    release = threading.Event()
    looked = []

    def hang(host, *a, **k):
        looked.append(host)
        release.wait(30)
        raise socket.gaierror("late")

    monkeypatch.setattr(socket, "getaddrinfo", hang)
    calls = _no_download(monkeypatch)
    try:
        with pytest.raises(D.DownloadError, match="no answer resolving dl.fbaipublicfiles.com"):
            D.check_reachable(URL, timeout=0.2)
        # remembered: the second attempt does not look the host up again
        with pytest.raises(D.DownloadError, match="no answer resolving"):
            D.download_to(URL, tmp_path / "w.pth")
    finally:
        release.set()
    assert looked == ["dl.fbaipublicfiles.com"] and calls == []


def test_unresolvable_host_and_failed_download_are_one_line(monkeypatch, tmp_path):
    def gai(host, *a, **k):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", gai)
    with pytest.raises(D.DownloadError, match=r"^cannot resolve dl.fbaipublicfiles.com"):
        D.check_reachable(URL)
    monkeypatch.setattr(D, "_unreachable", {})
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [()])  # resolves

    import torch.hub

    def refused(url, dst, progress=True):
        raise ConnectionRefusedError("refused\nmore detail")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refused)
    with pytest.raises(D.DownloadError) as err:
        D.download_to(URL, tmp_path / "w.pth")
    assert str(err.value) == "download failed (ConnectionRefusedError: refused)"


@pytest.mark.parametrize("who, random, local", [
    ("cli", "--weights random", "--weights PATH"),
    ("python", "weights='random'", "weights=PATH"),
    ("dock", "'random' in the weights field", "choose a local file"),
])
def test_message_names_file_url_cache_and_the_way_out(monkeypatch, tmp_path, who, random,
                                                      local):
    monkeypatch.setenv("DINOSEG_AUDIENCE", who)
    target = tmp_path / "cache" / "dinov2_vits14_pretrain.pth"
    msg = D.missing_weights_message("dinov2_vits14", URL, target, "offline mode")
    assert "\n" not in msg and "dinov2_vits14_pretrain.pth" in msg
    assert URL in msg and str(target) in msg and random in msg and local in msg
    others = {"cli": "weights='random'", "python": "--weights", "dock": "--weights"}
    assert others[who] not in msg


def test_console_script_is_the_cli_audience(monkeypatch):
    monkeypatch.setattr("sys.argv", ["/venv/bin/dinoseg", "features"])
    assert D.audience() == "cli"
    monkeypatch.setattr("sys.argv", ["script.py"])
    assert D.audience() == "python"
    D.set_audience("dock")
    assert D.audience() == "dock"
    with pytest.raises(ValueError, match="audience must be one of"):
        D.set_audience("gui")


def test_sam_offline_message_speaks_cli(monkeypatch):
    import headless.sam as S

    monkeypatch.setenv("DINOSEG_OFFLINE", "1")
    monkeypatch.setenv("DINOSEG_AUDIENCE", "cli")
    with pytest.raises(S.SamWeightsError) as err:
        S.load_sam("vit_b", "official")
    msg = str(err.value)
    assert "sam_vit_b_01ec64.pth" in msg and "--weights random" in msg and "\n" not in msg
    assert "offline mode (DINOSEG_OFFLINE=1)" in msg and str(S.weights_dir()) in msg


def test_dock_checks_official_weights_before_building_a_model(monkeypatch):
    from headless.features.backbones import WeightsError
    from napari_dinoseg._widgets.common.models import ensure_official_weights

    monkeypatch.setenv("DINOSEG_OFFLINE", "1")
    built = []
    monkeypatch.setattr("headless.features.backbones.create_model", lambda s: built.append(s))
    with pytest.raises(WeightsError) as err:
        ensure_official_weights("dinov2_vits14", "official")
    msg = str(err.value)
    assert "dinov2_vits14_pretrain.pth" in msg and "offline mode" in msg and "\n" not in msg
    assert "choose a local file" in msg and "--weights" not in msg
    assert built == []
    ensure_official_weights("dinov2_vits14", "random")  # other weights: load_backbone's job
    ensure_official_weights("test_dino_tiny16", "official")  # a test architecture, too
