"""Sample data: real photos that scikit-image ships (no download needed)."""

from __future__ import annotations

from typing import Any


def _sample(name: str) -> list[tuple[Any, dict[str, Any], str]]:
    import skimage.data

    return [(getattr(skimage.data, name)(), {"name": name, "rgb": True}, "image")]


def astronaut() -> list[tuple[Any, dict[str, Any], str]]:
    return _sample("astronaut")


def chelsea() -> list[tuple[Any, dict[str, Any], str]]:
    return _sample("chelsea")


def coffee() -> list[tuple[Any, dict[str, Any], str]]:
    return _sample("coffee")
