"""Checkpoints and final weights in a run folder.

``checkpoints/step_XXXXXXXX.pt`` and ``checkpoints/last.pt`` hold the model, optimiser, EMA, step
and RNG states (written atomically, the last ``keep`` kept); a run resumes from ``last.pt``, or,
when that file is damaged, from the newest intact step checkpoint (and says so). Partial
``*.tmp`` files that a kill left behind are removed when the run starts again.
The final weights are safetensors with JSON metadata (classes, model, image size, mean, std).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headless.store import fsync_dir

CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"


def save_checkpoint(run_dir: Path, state: dict[str, Any], step: int, keep: int = 1) -> Path:
    """``checkpoints/step_XXXXXXXX.pt`` and ``last.pt`` (atomic rename), keeping ``keep``."""
    folder = run_dir / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.pt"
    tmp = folder / f".{path.name}.tmp"
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
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
    fsync_dir(folder)
    for old in sorted(folder.glob("step_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


class CheckpointError(RuntimeError):
    """Checkpoints exist but none of them can be read: resuming would silently start over."""


def remove_partial(folder: Path) -> list[str]:
    """Delete the ``.*.tmp`` files a killed save left in ``folder``; their names."""
    removed = []
    for tmp in sorted(folder.glob(".*.tmp")):
        tmp.unlink(missing_ok=True)
        removed.append(tmp.name)
    return removed


def load_checkpoint(
    run_dir: Path, on_note: Callable[[str], None] | None = None
) -> dict[str, Any] | None:
    """The newest intact checkpoint of ``run_dir`` (``last.pt`` first), None for a fresh run.

    A damaged ``last.pt`` (truncated, tampered, not a checkpoint) falls back to the newest step
    checkpoint that loads, and ``on_note`` says which; when checkpoints exist but none loads,
    :class:`CheckpointError` names each file and why, instead of restarting from step 0.
    """
    folder = run_dir / CHECKPOINT_DIR
    if not folder.is_dir():
        return None
    note = on_note or (lambda message: None)
    removed = remove_partial(folder)
    if removed:
        note(f"removed partial checkpoint files left by an interrupted save: {', '.join(removed)}")
    candidates = [folder / LAST, *sorted(folder.glob("step_*.pt"), reverse=True)]
    problems: list[str] = []
    for path in candidates:
        if not path.is_file():
            continue
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped, then reported
            first = (str(exc).splitlines() or ["unreadable"])[0][:120]
            problems.append(f"{path.name}: {type(exc).__name__}: {first}")
            continue
        if not isinstance(state, dict) or not {"model", "step"} <= set(state):
            problems.append(f"{path.name}: not a training checkpoint (no model / step)")
            continue
        from headless.features.layouts import non_finite_tensors

        bad = non_finite_tensors(state.get("model"))
        if bad:  # a diverged step: resuming from it would train on NaN
            problems.append(f"{path.name}: NaN or infinite weights (e.g. {bad[0]})")
            continue
        if problems:
            note(f"{'; '.join(problems)}; resuming from {path.name} (step {int(state['step'])})")
        return state
    if problems:
        raise CheckpointError(
            f"no intact checkpoint in {folder} ({'; '.join(problems)}); start a new run or "
            "remove the damaged files"
        )
    return None



def save_weights(path: Path, model: nn.Module, metadata: dict[str, Any]) -> Path:
    """Final weights as safetensors: loadable anywhere without unpickling code."""
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(sd, str(tmp), metadata={k: json.dumps(v) for k, v in metadata.items()})
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path
