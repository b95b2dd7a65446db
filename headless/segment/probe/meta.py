"""What a probe is trained on (:class:`ProbeMeta`), the probe errors, and the file format tag.

A leaf module: the probe classes, the tree arrays, training and loading all import it, and it
imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FORMAT = "napari-dinoseg probe"  # the ``format`` field of a probe file's metadata
FORMAT_VERSION = 1
CLASSIFIERS = ("linear", "rf")
# Feature options added after probes were first saved, with the value every older probe was
# computed with: a probe file without the key means that value (so old probes still apply).
LEGACY_OPTIONS: dict[str, Any] = {"scale": 1.0, "vit_weight": 1.0, "upsample": "nearest-exact",
                                  "whole_patches": False}


class ProbeError(ValueError):
    """A probe that cannot be trained, read or used, with a message naming the problem."""


class ProbeMismatchError(ProbeError):
    """A probe applied to features it was not trained on (mode, backbone, dimension...)."""


@dataclass
class ProbeMeta:
    """What a probe was trained on: enough to refuse features it does not understand."""

    feature_mode: str
    feature_dim: int
    class_values: list[int]
    class_names: list[str]
    backbone: str | None = None
    feature_options: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None  # the backbone's weights label, for information

    def __post_init__(self) -> None:
        self.class_values = [int(v) for v in self.class_values]
        self.class_names = [str(n) for n in self.class_names]
        self.feature_dim = int(self.feature_dim)
        if len(self.class_values) != len(self.class_names):
            raise ProbeError(
                f"{len(self.class_values)} class values but {len(self.class_names)} class names"
            )
        if len(set(self.class_values)) != len(self.class_values):
            raise ProbeError(f"class values must be distinct, got {self.class_values}")

    @property
    def n_classes(self) -> int:
        return len(self.class_values)
