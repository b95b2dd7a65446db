"""Checkpoints and final weights in a run folder.

``checkpoints/step_XXXXXXXX.pt`` and ``checkpoints/last.pt`` hold the model, optimiser, EMA, step
and RNG states (written atomically, the last ``keep`` kept); a run resumes from ``last.pt``.
The final weights are safetensors with JSON metadata (classes, model, image size, mean, std).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"


def save_checkpoint(run_dir: Path, state: dict[str, Any], step: int, keep: int = 1) -> Path:
    """``checkpoints/step_XXXXXXXX.pt`` and ``last.pt`` (atomic rename), keeping ``keep``."""
    folder = run_dir / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.pt"
    tmp = folder / f".{path.name}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    last_tmp = folder / f".{LAST}.tmp"
    if last_tmp.exists():
        last_tmp.unlink()
    try:
        os.link(path, last_tmp)
    except OSError:
        import shutil

        shutil.copyfile(path, last_tmp)
    os.replace(last_tmp, folder / LAST)
    for old in sorted(folder.glob("step_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / CHECKPOINT_DIR / LAST
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def save_weights(path: Path, model: nn.Module, metadata: dict[str, Any]) -> Path:
    """Final weights as safetensors: loadable anywhere without unpickling code."""
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(sd, str(tmp), metadata={k: json.dumps(v) for k, v in metadata.items()})
    os.replace(tmp, path)
    return path
