"""What a probe file may say, checked before any array is read or any pixel computed.

A probe ``.npz`` can come from anywhere (a colleague, a download, a tampered copy). Its JSON
metadata is validated field by field (types, ranges, lengths) with pydantic, and each array's
declared size in the zip directory is compared with what the metadata implies, so a 3 MB file
cannot make the loader allocate gigabytes and ``sigmas: [1e6]`` cannot start a 469 s filter.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from headless.segment.probe.meta import ProbeError

#: limits far above any real probe, far below what would hurt
MAX_FEATURE_DIM = 65536
MAX_CLASSES = 1024
MAX_NAME = 256
MAX_TREE_NODES = 50_000_000
MAX_JSON_BYTES = 1 << 20


class FeatureOptionsSchema(BaseModel):
    """The feature settings a probe was trained with (unknown keys are kept for newer files)."""

    model_config = ConfigDict(extra="allow")

    sigmas: list[float] | None = Field(None, min_length=1, max_length=32)
    size: int | None = Field(None, ge=8, le=16384)
    shifts: int | None = Field(None, ge=0, le=8)
    dist: int | None = Field(None, ge=1, le=16)
    flips: bool | None = None
    stride: int | None = Field(None, ge=1, le=64)
    scale: float | None = Field(None, ge=0.1, le=8)
    vit_weight: float | None = Field(None, gt=0, le=1000)
    upsample: Literal["bilinear", "nearest-exact"] | None = None

    @field_validator("sigmas")
    @classmethod
    def _sigmas(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and not all(0 < s <= 64 for s in v):
            raise ValueError("every sigma must be in (0, 64] pixels")
        return v


class MetaSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    feature_mode: Literal["classical", "bilinear", "hr", "hybrid", "patch"]
    # strict: a number written as text ("78") is a damaged or hand-made file, not a probe
    feature_dim: int = Field(ge=1, le=MAX_FEATURE_DIM, strict=True)
    class_values: list[StrictInt] = Field(min_length=2, max_length=MAX_CLASSES)
    class_names: list[str] = Field(min_length=2, max_length=MAX_CLASSES)
    backbone: str | None = Field(None, max_length=MAX_NAME)
    feature_options: FeatureOptionsSchema = Field(default_factory=FeatureOptionsSchema)
    weights: str | None = Field(None, max_length=4096)

    @field_validator("class_values")
    @classmethod
    def _values(cls, v: list[int]) -> list[int]:
        if not all(1 <= x <= 65535 for x in v):
            raise ValueError("class values must be label values in 1..65535 (0 is unlabelled)")
        return v

    @field_validator("class_names")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        if any(len(n) > MAX_NAME for n in v):
            raise ValueError(f"class names must be at most {MAX_NAME} characters")
        return v


class FileSchema(BaseModel):
    model_config = ConfigDict(extra="allow")

    format: str
    version: int = Field(ge=0, le=1000)
    classifier: Literal["linear", "rf"]
    meta: MetaSchema
    params: dict[str, Any] = Field(default_factory=dict)


def validate_metadata(raw: Any) -> dict[str, Any]:
    """The metadata as plain values, or :class:`ProbeError` naming the first bad field."""
    try:
        checked = FileSchema.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "metadata"
        raise ProbeError(f"bad probe metadata: {where}: {err['msg']}") from None
    out = checked.model_dump()
    out["meta"]["feature_options"] = {k: v for k, v in out["meta"]["feature_options"].items()
                                      if v is not None}
    return out


def expected_bytes(kind: str, meta: dict[str, Any], n_nodes: int = 0) -> dict[str, int]:
    """Upper bounds of each array's uncompressed size (bytes, plus the .npy header)."""
    d, c, header = int(meta["feature_dim"]), len(meta["class_values"]), 1024
    if kind == "linear":
        return {"weight": 8 * c * d + header, "bias": 8 * c + header,
                "scaler_mean": 8 * d + header, "scaler_std": 8 * d + header}
    per_node = {"value": 8 * c}
    return {f"tree_{name}": per_node.get(name, 8) * n_nodes + header
            for name in ("left", "right", "feature", "threshold", "value", "n_samples",
                         "weighted_n_samples", "impurity")}
