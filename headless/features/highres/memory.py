"""Memory of an HR request: estimate it, read the limit, pick a chunk that fits or refuse clearly.

HR outputs grow with the pixel count and stride reduction with the fourth power of ``P / s``, so
a request is sized before it runs (:func:`plan_chunk`) and refused with a way around the limit
(:class:`MemoryLimitError`) instead of swapping the machine. Also the engine's scratch budgets.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

GiB = 1024**3
# Bytes of live activations per token and embedding channel during one inference forward
# (residual, norm, qkv, attention output, 4x MLP hidden and its activation, plus allocator slack);
# calibrated against peak RSS in tests/benchmarks/bench_highres.py.
ACTIVATION_BYTES_PER_TOKEN_CHANNEL = 4 * 16
BLOCK_BYTES = 16 * 1024**2  # scratch per gathered block of output pixels
WIDEN_BYTES = 256 * 1024**2  # bilinear: column-interpolated low-res map kept per copy
FUSED_BLOCK_BYTES = 1024**2  # output block summed over a whole batch while in cache


class MemoryLimitError(ValueError):
    """A request whose estimated memory exceeds the limit; the message says how to get around it."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a request needs, by part (all float32)."""

    output: int
    forward: int
    features: int
    inputs: int
    scratch: int

    @property
    def total(self) -> int:
        return self.output + self.forward + self.features + self.inputs + self.scratch

    def describe(self) -> str:
        parts = [("output", self.output), ("forward pass", self.forward),
                 ("low-res features", self.features), ("input copies", self.inputs),
                 ("index maps and scratch", self.scratch)]
        inner = ", ".join(f"{name} {_fmt_bytes(v)}" for name, v in parts if v)
        return f"about {_fmt_bytes(self.total)} ({inner})"


def _fmt_bytes(n: float) -> str:
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    return f"{n / 1024**2:.0f} MiB"


def available_memory() -> int:
    """Memory the OS can give us now (``MemAvailable``), in bytes."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 * GiB


def parse_bytes(text: str) -> int:
    """``"4G"``, ``"512M"``, ``"2.5GiB"`` or plain bytes -> bytes."""
    t = text.strip().upper().replace("IB", "").replace("B", "")
    mult = {"K": 1024, "M": 1024**2, "G": GiB, "T": 1024**4}.get(t[-1:], 1)
    num = t[:-1] if t[-1:] in "KMGT" and t[-1:] else t
    return int(float(num) * mult)


def memory_limit(max_bytes: int | None = None) -> int:
    """``max_bytes``, else ``$DINOSEG_MAX_MEMORY``, else 80 % of the available memory."""
    if max_bytes is not None:
        return int(max_bytes)
    env = os.environ.get("DINOSEG_MAX_MEMORY")
    if env:
        return parse_bytes(env)
    return int(0.8 * available_memory())


def estimate_memory(
    *, out_values: int, chunk: int, tokens: int, embed_dim: int, feat_channels: int,
    input_pixels: int, work_pixels: int, heads: int = 0, fused_attention: bool = True,
) -> MemoryEstimate:
    """Peak bytes of one HR request (the model's weights are not counted: they are loaded).

    ``out_values``: floats in the result (H * W * C, or N * D); ``tokens``: per copy;
    ``input_pixels``: padded pixels per copy; ``work_pixels``: pixels of the working image.
    """
    forward = chunk * tokens * embed_dim * ACTIVATION_BYTES_PER_TOKEN_CHANNEL
    if not fused_attention:
        forward += chunk * heads * tokens * tokens * 4 * 2
    return MemoryEstimate(
        output=out_values * 4,
        forward=forward,
        features=2 * chunk * tokens * max(feat_channels, embed_dim) * 4,
        inputs=2 * chunk * 3 * input_pixels * 4,
        scratch=work_pixels * 2 * 8 + out_values // max(feat_channels, 1) * 4 * chunk
        + 3 * BLOCK_BYTES
        + min(WIDEN_BYTES, int(2 * math.sqrt(tokens * input_pixels)) * feat_channels * 4),
    )


def plan_chunk(
    estimate_for: Callable[[int], MemoryEstimate], chunk: int, limit: int, what: str,
    suggest_linear: bool = True,
) -> tuple[int, MemoryEstimate]:
    """Largest chunk <= ``chunk`` whose estimate fits ``limit``; else :class:`MemoryLimitError`."""
    c = max(1, int(chunk))
    est = estimate_for(c)
    while est.total > limit and c > 1:
        c = max(1, c // 2)
        est = estimate_for(c)
    if est.total > limit:
        hint = (
            "Use the linear-map path (headless.features.hr_linear: a probe's C output channels "
            "instead of all D feature channels, as the segmenter does) or hr_sample (features "
            "at chosen pixels only); or lower the size"
            if suggest_linear else "Lower the size"
        )
        raise MemoryLimitError(
            f"{what} would need {est.describe()}, more than the {_fmt_bytes(limit)} allowed "
            f"(80 % of available memory, or $DINOSEG_MAX_MEMORY). {hint} (with stride "
            "reduction: a larger stride)."
        )
    return c, est
