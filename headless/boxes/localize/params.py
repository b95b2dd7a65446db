"""Checking a method's parameters before any feature is computed.

The accepted names are the method function's own keyword parameters (so they can never drift
from the code), plus ``which``; values must be finite numbers where the default is a number,
counts at least 1, and a few documented ranges hold (``tau``, ``keep`` in [0, 1]). A misspelt
name gets the closest known one as a hint.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

#: the positional inputs every method takes from the features, never from the user
_INPUTS = {"feats", "attn", "grid", "patch_size", "image_hw", "orig_hw", "attention"}
_COUNTS = {"k", "ks", "min_size"}
_UNIT = {"tau", "keep", "mask_threshold"}


def accepted(function: Callable[..., Any]) -> dict[str, Any]:
    """Name -> default of the keyword parameters a method accepts from users."""
    sig = inspect.signature(function)
    return {n: p.default for n, p in sig.parameters.items()
            if n not in _INPUTS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def check_params(method: str, function: Callable[..., Any], params: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the first unknown or impossible parameter."""
    known = accepted(function)
    for name, value in params.items():
        if name == "which":
            continue
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{method} has no parameter {name!r}{hint}; known: "
                             f"{', '.join(sorted(known))}")
        default = known[name]
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if numeric and isinstance(value, (list, tuple)):
            raise ValueError(f"{method} parameter {name}={value!r}: expected one number")
        values = value if isinstance(value, (list, tuple)) else [value]
        if numeric or (isinstance(default, (list, tuple)) and default
                       and isinstance(default[0], (int, float))):
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise ValueError(f"{method} parameter {name}={value!r}: expected a number")
                if not math.isfinite(v):
                    raise ValueError(f"{method} parameter {name}={value!r}: must be finite")
                if name in _COUNTS and (v < 1 or int(v) != v):
                    raise ValueError(f"{method} parameter {name}={value!r}: must be a whole "
                                     "number >= 1")
                if name in _UNIT and not 0 <= v <= 1:
                    raise ValueError(f"{method} parameter {name}={value!r}: must be in [0, 1]")
                if name not in _COUNTS and name not in _UNIT and v < 0:
                    raise ValueError(f"{method} parameter {name}={value!r}: must be >= 0")
