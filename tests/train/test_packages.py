"""The training packages' lazy re-exports: every public name resolves, and importing a package
loads no torch (the job runner and ``dinoseg --help`` import them before anything trains)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ("headless.train.attention_maps", "headless.train.classifier", "headless.train.crops",
            "headless.train.data")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package):
    mod = importlib.import_module(package)
    assert mod.__all__ and sorted(dir(mod)) == mod.__all__
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
    with pytest.raises(AttributeError):
        mod.no_such_name  # noqa: B018


def test_importing_the_packages_loads_no_torch():
    code = ("import sys\n"
            f"for p in {PACKAGES!r}: __import__(p)\n"
            "heavy = [m for m in ('torch', 'torchvision') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_the_classifier_job_functions_are_the_documented_ones():
    from headless.jobs import get_job
    from headless.train import classifier
    from headless.train.classifier import job

    spec = get_job("classifier")
    assert spec._resolve(spec.preflight_ref) is job.preflight is classifier.preflight
    assert spec._resolve(spec.run_ref) is job.run is classifier.run
    assert classifier.load_classifier.__module__ == "headless.train.classifier.inference"
