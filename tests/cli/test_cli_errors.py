"""Every CLI failure is one line on stderr and exit code 2, whatever raised it."""

from __future__ import annotations

import pytest

import headless.cli.features as features_cmd
from headless.cli import main


@pytest.mark.parametrize("exc", [RuntimeError("boom\nsecond line"), IsADirectoryError(21, "dir"),
                                 RecursionError("maximum recursion depth exceeded"),
                                 TypeError("list indices must be integers")])
def test_unexpected_errors_are_one_line_exit_2(monkeypatch, capsys, exc):
    def explode(args):
        raise exc

    monkeypatch.setattr(features_cmd, "run", explode)
    monkeypatch.delenv("DINOSEG_TRACEBACK", raising=False)
    assert main(["features", "x.png", "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dinoseg features: error: ")
    assert type(exc).__name__ in err and "Traceback" not in err
    assert "DINOSEG_TRACEBACK=1" in err


def test_the_traceback_is_one_variable_away(monkeypatch):
    def explode(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(features_cmd, "run", explode)
    monkeypatch.setenv("DINOSEG_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["features", "x.png", "--out", "o"])


def test_user_errors_stay_plain_one_liners(monkeypatch, capsys):
    def refuse(args):
        raise ValueError("x.png: not an image\n(try a PNG)")

    monkeypatch.setattr(features_cmd, "run", refuse)
    assert main(["features", "x.png", "--out", "o"]) == 2
    assert capsys.readouterr().err == "dinoseg features: error: x.png: not an image (try a PNG)\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["features", "x.png", "--out", "o", "--size", "-5"], "argument --size: must be at least 1"),
    (["features", "x.png", "--out", "o", "--keep", "2"], "argument --keep: must be in (0, 1]"),
    (["segment", "x.png", "--scribbles", "s.tif", "--out", "o", "--trees", "0"],
     "argument --trees: must be at least 1"),
    (["sam", "x.png", "--out", "o", "--points-per-side", "zero"],
     "argument --points-per-side: expected a whole number"),
    (["attention-maps", "x", "--batch-size", "0"], "argument --batch-size: must be at least 1"),
    (["boxes", "x.png", "--method", "lost", "--out", "o.json", "--size", "0"],
     "argument --size: must be at least 1"),
])
def test_impossible_numbers_are_refused_before_any_work(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
