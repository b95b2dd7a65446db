"""The fgvc model of a spec, and a trained run loaded back (``load_fgvc``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from headless.train.fgvc.backbone import load_trunk
from headless.train.fgvc.model import IELTModel, LinearModel

FINAL = "model_final.safetensors"


@dataclass
class BuiltFgvc:
    model: nn.Module
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights_label: str
    patch_size: int


def build_fgvc(spec: Any, n_classes: int, weights: str | None = None) -> BuiltFgvc:
    """IELT (or the linear baseline) on the spec's backbone; ``weights`` overrides the spec's."""
    m = spec.model
    trunk = load_trunk(m.backbone, weights if weights is not None else m.weights, m.drop_path)
    if m.head == "linear":
        model: nn.Module = LinearModel(trunk.vit, n_classes)
    else:
        model = IELTModel(trunk.vit, n_classes, spec.ielt, trunk.num_prefix, trunk.patch_size)
    return BuiltFgvc(model, trunk.mean, trunk.std, trunk.label, trunk.patch_size)


@dataclass
class LoadedRun:
    model: nn.Module
    spec: Any
    classes: list[str]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def load_fgvc(run_dir: str | Path, device: str = "cpu") -> LoadedRun:
    """A finished fgvc run's model in eval mode (from ``config.yaml`` + the final weights)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from headless.jobs.runs import CONFIG_NAME
    from headless.jobs.spec import load_spec
    from headless.train.data.errors import DatasetError

    run_dir = Path(run_dir)
    path = run_dir / FINAL
    if not path.is_file():
        raise DatasetError(f"{run_dir}: no {FINAL} (the run has not finished)")
    spec = load_spec(run_dir / CONFIG_NAME)
    if spec.job != "fgvc":
        raise DatasetError(f"{run_dir} is a {spec.job!r} run, not an fgvc run")
    with safe_open(str(path), framework="pt") as fh:
        meta = {k: json.loads(v) for k, v in (fh.metadata() or {}).items()}
    classes = list(meta["classes"])
    built = build_fgvc(spec, len(classes), weights="random")
    built.model.load_state_dict(load_file(str(path)))
    built.model.eval().to(device)
    return LoadedRun(built.model, spec, classes, int(meta["image_size"]),
                     tuple(meta["mean"]), tuple(meta["std"]))
