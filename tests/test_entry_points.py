"""Public entry points survive the regrouping: CLI commands and flags, documented import paths."""

from __future__ import annotations

import importlib

import pytest

#: Every ``dinoseg`` sub-command and its long options as they stood before the regrouping:
#: scripts and the README use them, so none may disappear or change its spelling.
COMMANDS: dict[str, list[str]] = {
    "attention-maps": ["--backbone", "--batch-size", "--cache-dir", "--device", "--overwrite",
                       "--quiet", "--size", "--weights"],
    "boxes": ["--backbone", "--device", "--format", "--image-list", "--method", "--out",
              "--param", "--project", "--quiet", "--size", "--weights", "--which"],
    "boxes-export": ["--format", "--out", "--status"],
    "eval-boxes": ["--ignore-difficult", "--image-list", "--json", "--threshold"],
    "features": ["--backbone", "--device", "--dist", "--flips", "--keep", "--mode", "--out",
                 "--pca-foreground", "--quiet", "--shifts", "--size", "--stride", "--weights"],
    "runs": ["--runs-root"],
    "runs cancel": ["--force"],
    "runs list": [],
    "runs resume": ["--runner", "--wait"],
    "runs show": ["--json"],
    "sam": ["--backbone", "--backbone-weights", "--box-nms-thresh", "--boxes", "--choose",
            "--crop-n-layers", "--crop-nms-thresh", "--device", "--format", "--keep",
            "--min-mask-region-area", "--model", "--no-cache", "--out", "--points-per-batch",
            "--points-per-side", "--pred-iou-thresh", "--quiet", "--size",
            "--stability-score-offset", "--stability-score-thresh", "--weights"],
    "segment": ["--C", "--backbone", "--classifier", "--crf", "--crf-bilateral-compat",
                "--crf-bilateral-srgb", "--crf-bilateral-sxy", "--crf-gaussian-compat",
                "--crf-gaussian-sxy", "--crf-iterations", "--features", "--flips", "--max-depth",
                "--max-per-class", "--names", "--no-balance", "--out", "--probe", "--probs",
                "--quiet", "--save-probe", "--scribbles", "--seed", "--shifts", "--size",
                "--stride", "--trees", "--weights"],
    "train": ["--dry-run", "--print-defaults", "--runner", "--runs-root", "--set", "--wait"],
}


def _long_options(parser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings if s.startswith("--")} - {
        "--help"}


def _commands() -> dict[str, object]:
    """``"name"`` / ``"name sub"`` -> its argparse parser."""
    from headless.cli import build_parser

    def subparsers(parser):
        for action in parser._actions:
            if isinstance(getattr(action, "choices", None), dict):
                return action.choices
        return {}

    found = {}
    for name, parser in subparsers(build_parser()).items():
        found[name] = parser
        for sub, sub_parser in subparsers(parser).items():
            found[f"{name} {sub}"] = sub_parser
    return found


def test_every_command_keeps_its_options():
    found = _commands()
    missing = sorted(set(COMMANDS) - set(found))
    assert not missing, f"commands gone: {missing}"
    for name, options in COMMANDS.items():
        lost = set(options) - _long_options(found[name])
        assert not lost, (name, sorted(lost))


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("headless.localize", "localize"),
        ("headless.boxes.localize", "localize"),
        ("headless.train.classifier", "load_classifier"),
        ("headless.boxes", "Box"),
        ("headless.boxes", "read_boxes"),
        ("headless.features", "load_backbone"),
        ("headless.features", "extract"),
        ("headless.features", "hr_features"),
        ("headless.segment", "Segmenter"),
        ("headless.segment", "load_probe"),
        ("headless.sam", "load_sam"),
        ("headless.jobs", "get_job"),
    ],
)
def test_documented_import_paths(path, name):
    assert callable(getattr(importlib.import_module(path), name))


def test_the_old_localize_path_is_the_same_function():
    import headless.boxes.localize as new
    import headless.localize as old

    assert old.localize is new.localize and old.METHODS == new.METHODS


def test_lazy_exports_name_real_objects_and_refuse_unknown_names():
    import headless.features as features
    import headless.segment as segment

    for package in (features, segment):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            package.nope  # noqa: B018


def test_job_types_resolve_to_functions():
    from headless.jobs import JOBS

    for job in JOBS.values():
        assert callable(job._resolve(job.preflight_ref)) and callable(job._resolve(job.run_ref))
