"""Seed 000's classifier job: ResNet-50 (or a DINOv2 ViT) trained with box-aware crops.

What ``run`` does, in order: seeds and determinism; the data plan (split, boxes); the model
(torchvision ResNet with random, ImageNet or file weights, or a DINOv2 ViT from
:mod:`headless.features.backbones` with a frozen backbone or only its CLS token trained, plus a
linear head); the optimiser (SGD / Adam / AdamW, no weight decay on biases, norms and tokens); the
learning rate as a pure function of the step (:func:`headless.jobs.spec.lr_at`); an EMA of the
weights every k steps; then the loop, which logs JSON lines, evaluates every ``eval_every``
epochs, checkpoints every N steps and stops cleanly at a step boundary when asked.

A checkpoint holds the model, optimiser, EMA, step and RNG states; the data order and each
sample's augmentation are keyed by ``(seed, epoch, index)`` (:mod:`headless.train.data`), so a
run killed at any point and resumed from its last checkpoint ends with exactly the weights and
metrics of an uninterrupted run (on CPU, or on GPU with deterministic algorithms).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from headless.jobs.runlog import RunLog
from headless.jobs.spec import ClassifierSpec, lr_at
from headless.train.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClassifierDataset,
    DatasetError,
    EpochBatches,
    eval_transform,
    plan_data,
    train_transform,
)
from headless.train.evaluate import EvalResult, evaluate, load_confusion, save_confusion

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
TINY_RESNET = "test_resnet_tiny"
TORCHVISION_WEIGHTS = {"imagenet": "DEFAULT", "imagenet_v1": "IMAGENET1K_V1",
                       "imagenet_v2": "IMAGENET1K_V2"}
CHECKPOINT_DIR = "checkpoints"
LAST = "last.pt"


class ModelError(ValueError):
    """A model that cannot be built as asked (unknown type, weights, sizes)."""


# ----------------------------------------------------------------------------------------------
# models


class TinyResNet(nn.Module):
    """A three-block ResNet for tests and demos (a few thousand parameters, any input size)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        def down(cin: int, cout: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False),
                                 nn.BatchNorm2d(cout))

        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(
            BasicBlock(w, w), BasicBlock(w, 2 * w, stride=2, downsample=down(w, 2 * w)),
            BasicBlock(2 * w, 4 * w, stride=2, downsample=down(2 * w, 4 * w)),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 4 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.blocks(self.stem(x))).flatten(1)


class Classifier(nn.Module):
    """A feature trunk and a linear head. A frozen trunk stays in eval mode (no BN/dropout
    updates) and runs without gradients unless only its CLS token is trained."""

    def __init__(self, trunk: nn.Module, dim: int, n_classes: int, freeze_trunk: bool = False,
                 cls_only: bool = False) -> None:
        super().__init__()
        self.trunk = trunk
        self.fc = nn.Linear(dim, n_classes)
        self.frozen = freeze_trunk or cls_only
        self.cls_only = cls_only
        if self.frozen:
            trunk.requires_grad_(False)
        else:
            trunk.requires_grad_(True)
        if cls_only:
            trunk.cls_token.requires_grad_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen and not self.cls_only:
            with torch.no_grad():
                feats = self.trunk(x)
        else:
            feats = self.trunk(x)
        return self.fc(feats)

    def train(self, mode: bool = True) -> Classifier:
        super().train(mode)
        if self.frozen:
            self.trunk.eval()
        return self


def is_vit(name: str) -> bool:
    from headless.features.backbones import REGISTRY

    return name in REGISTRY


def known_models() -> list[str]:
    from headless.features.backbones import list_backbones

    return [*RESNETS, TINY_RESNET, *list_backbones()]


def _torchvision_weights_file(arch: str, key: str, download: bool | None = None) -> Path:
    """The cached torchvision checkpoint for ``arch`` (hub cache or $DINOSEG_CACHE)."""
    import torchvision

    from headless.features.backbones import WeightsError, cache_dir

    try:
        enum = torchvision.models.get_model_weights(arch)
        weights = enum[TORCHVISION_WEIGHTS[key]] if key in TORCHVISION_WEIGHTS else enum[key]
    except KeyError:
        raise ModelError(f"{arch} has no {key!r} weights in torchvision") from None
    fname = os.path.basename(weights.url)
    candidates = [Path(torch.hub.get_dir()) / "checkpoints" / fname, cache_dir() / fname]
    for c in candidates:
        if c.is_file():
            return c
    from headless.downloads import download_to, downloads_allowed

    if download is None:
        download = downloads_allowed()
    reason = "offline mode (DINOSEG_OFFLINE=1)"
    if download:
        try:
            return download_to(weights.url, candidates[0], progress=False)
        except Exception as exc:
            reason = f"download failed ({type(exc).__name__}: {exc})"
    raise WeightsError(
        f"ImageNet weights for {arch} not found: {reason}. Download {weights.url} and save it "
        f"as {candidates[0]} (or in $DINOSEG_CACHE), or give model.weights a local file, or "
        "leave model.weights empty for random initialisation."
    )


def _strip_state_dict(sd: dict[str, Any]) -> dict[str, Any]:
    for key in ("model", "state_dict"):
        if key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    for prefix in ("module.", "trunk."):
        if sd and all(k.startswith(prefix) or k.startswith("fc.") for k in sd):
            sd = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}
    return sd


def _load_resnet_weights(net: nn.Module, arch: str, weights: str) -> str:
    from headless.features.backbones import WeightsError, read_state_dict

    if weights in TORCHVISION_WEIGHTS or weights.startswith("IMAGENET"):
        path = _torchvision_weights_file(arch, weights)
        label = f"imagenet ({path.name})"
    else:
        path = Path(weights).expanduser()
        label = f"file ({path.name})"
    sd = _strip_state_dict(read_state_dict(path))
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}  # the head is ours
    missing, unexpected = net.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise WeightsError(
            f"{path} does not fit {arch}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return label


@dataclass
class BuiltModel:
    model: Classifier
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights_label: str
    patch_size: int | None = None


def build_model(cfg: Any, n_classes: int) -> BuiltModel:
    """The classifier of ``cfg`` (:class:`~headless.jobs.spec.ModelConfig`) with ``n_classes``."""
    name = cfg.type
    weights = cfg.weights if cfg.weights not in ("", "none", "None") else None
    if name in RESNETS:
        import torchvision

        net = getattr(torchvision.models, name)(weights=None)
        label = "random (untrained)"
        if weights and weights != "random":
            label = _load_resnet_weights(net, name, weights)
        dim = net.fc.in_features
        net.fc = nn.Identity()
        model = Classifier(net, dim, n_classes, freeze_trunk=cfg.freeze_backbone)
        built = BuiltModel(model, IMAGENET_MEAN, IMAGENET_STD, label)
    elif name == TINY_RESNET:
        net = TinyResNet()
        label = "random (untrained)"
        if weights and weights != "random":
            label = _load_resnet_weights(net, name, weights)
        model = Classifier(net, net.num_features, n_classes, freeze_trunk=cfg.freeze_backbone)
        built = BuiltModel(model, IMAGENET_MEAN, IMAGENET_STD, label)
    elif is_vit(name):
        from headless.features.backbones import load_backbone

        rng = torch.get_rng_state()
        backbone = load_backbone(name, weights=weights or "official", device="cpu")
        torch.set_rng_state(rng)  # loading must not change the run's random stream
        vit = backbone.model
        model = Classifier(vit, int(vit.num_features), n_classes,
                           freeze_trunk=cfg.freeze_backbone, cls_only=cfg.train_cls)
        built = BuiltModel(model, tuple(backbone.spec.mean), tuple(backbone.spec.std),
                           backbone.weights_label, backbone.patch_size)
    else:
        raise ModelError(f"model.type: unknown model {name!r}; known: {', '.join(known_models())}")
    nn.init.trunc_normal_(built.model.fc.weight, std=0.01)
    nn.init.zeros_(built.model.fc.bias)
    if cfg.resumed_model:
        _load_classifier_weights(built.model, cfg.resumed_model)
        built.weights_label += f" + {Path(cfg.resumed_model).name}"
    return built


def _load_classifier_weights(model: Classifier, path: str) -> None:
    from headless.features.backbones import WeightsError, read_state_dict

    sd = read_state_dict(path)
    for key in ("model", "state_dict"):
        if key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[7:]: v for k, v in sd.items()}
    head = model.fc.weight.shape
    if "fc.weight" in sd and tuple(sd["fc.weight"].shape) != tuple(head):
        sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}  # other classes: new head
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise WeightsError(f"model.resumed_model {path} does not fit this model: missing "
                           f"{missing[:5]}, unexpected {unexpected[:5]}")


def check_model(spec: ClassifierSpec) -> None:
    """Cheap checks before a run starts: known model, weights at hand, sizes that fit."""
    from headless.features.backbones import WeightsError, get_spec, official_weights_path

    cfg = spec.model
    if cfg.type not in (*RESNETS, TINY_RESNET) and not is_vit(cfg.type):
        raise ModelError(
            f"model.type: unknown model {cfg.type!r}; known: {', '.join(known_models())}"
        )
    w = cfg.weights
    if is_vit(cfg.type):
        bspec = get_spec(cfg.type)
        if spec.data.image_size % bspec.patch_size:
            k = max(1, round(spec.data.image_size / bspec.patch_size)) * bspec.patch_size
            raise ModelError(
                f"data.image_size={spec.data.image_size} is not a multiple of {cfg.type}'s patch "
                f"size {bspec.patch_size} (use {k})"
            )
        if not w or w == "official":
            if bspec.family == "test":
                raise WeightsError(f"{cfg.type} has no official weights: set model.weights: random")
            official_weights_path(bspec)
        elif w != "random" and not Path(w).expanduser().is_file():
            raise WeightsError(f"model.weights: file {w} does not exist")
    else:
        if cfg.train_cls:
            raise ModelError("model.train_cls needs a ViT backbone (a ResNet has no CLS token)")
        if w and w != "random":
            if w in TORCHVISION_WEIGHTS:
                if cfg.type == TINY_RESNET:
                    raise ModelError(f"{TINY_RESNET} has no ImageNet weights")
                _torchvision_weights_file(cfg.type, w)
            elif not Path(w).expanduser().is_file():
                raise WeightsError(
                    f"model.weights: {w!r} is neither a file nor one of "
                    f"{', '.join(TORCHVISION_WEIGHTS)}"
                )
    if cfg.resumed_model and not Path(cfg.resumed_model).expanduser().is_file():
        raise WeightsError(f"model.resumed_model: file {cfg.resumed_model} does not exist")
    if spec.crop.type == "attention":
        aspec = get_spec(spec.crop.attention_backbone)
        aw = spec.crop.attention_weights
        if aw == "official":
            official_weights_path(aspec)
        elif aw != "random" and not Path(aw).expanduser().is_file():
            raise WeightsError(f"crop.attention_weights: file {aw} does not exist")


# ----------------------------------------------------------------------------------------------
# optimisation


def build_optimizer(model: nn.Module, opt: Any) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over trainable parameters; biases, norms and tokens get no decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(("cls_token", "reg_token", "pos_embed")):
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [g for g in ({"params": decay, "weight_decay": opt.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    if not groups:
        raise ModelError("nothing to train: every parameter is frozen")
    if opt.type == "sgd":
        return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum,
                               nesterov=opt.nesterov and opt.momentum > 0)
    if opt.type == "adam":
        return torch.optim.Adam(groups, lr=opt.lr)
    return torch.optim.AdamW(groups, lr=opt.lr)


def make_ema(model: nn.Module, decay: float) -> Any:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


# ----------------------------------------------------------------------------------------------
# determinism, distribution, RNG state


def set_determinism(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: a few CUDA kernels (adaptive pooling backward) have no deterministic
        # version; CPU training is exactly reproducible either way
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join the process group that torchrun / SLURM set up in the environment (if any)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            if use_cuda:
                torch.cuda.set_device(info.local_rank)
            dist.init_process_group("nccl" if use_cuda else "gloo")
    return info


def resolve_device(name: str, dist: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError(f"device {name!r} was asked for, but no CUDA GPU is available")
        if dist.enabled:
            return torch.device("cuda", dist.local_rank)
    return torch.device(name)


def _any_rank(flag: bool, dist: DistInfo, device: torch.device) -> bool:
    if not dist.enabled:
        return flag
    import torch.distributed as tdist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item() > 0)


# ----------------------------------------------------------------------------------------------
# checkpoints


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


def load_classifier(run_dir: str | Path, ema: bool = False) -> tuple[Classifier, list[str], Any]:
    """A finished run's model (eval mode), class names and evaluation transform."""
    from safetensors import safe_open

    from headless.jobs.spec import load_spec

    run_dir = Path(run_dir)
    spec = load_spec(run_dir / "config.yaml")
    path = run_dir / ("model_ema_final.safetensors" if ema else "model_final.safetensors")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: has the run finished?")
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
        sd = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    classes = json.loads(meta.get("classes", "[]"))
    cfg = spec.model.model_copy(update={"weights": "random", "resumed_model": None})
    built = build_model(cfg, len(classes))
    built.model.load_state_dict(sd)
    built.model.eval()
    return built.model, classes, eval_transform(spec.data.image_size, built.mean, built.std)


# ----------------------------------------------------------------------------------------------
# trackers


class Trackers:
    """TensorBoard and W&B, each only when asked for and installed (a message otherwise)."""

    def __init__(self, spec: ClassifierSpec, run_dir: Path, log: RunLog, enabled: bool) -> None:
        self.tb = None
        self.wandb = None
        if not enabled:
            return
        if spec.log.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                log.append("message", message="log.tensorboard: tensorboard is not installed "
                                              "(pip install tensorboard); not logging to it")
        if spec.log.wandb:
            try:
                import wandb

                self.wandb = wandb.init(
                    project=spec.log.wandb_project, name=run_dir.name, dir=str(run_dir),
                    config=spec.model_dump(mode="json"), id=_wandb_id(run_dir), resume="allow",
                )
            except ImportError:
                log.append("message", message="log.wandb: wandb is not installed "
                                              "(pip install wandb); not logging to it")
            except Exception as exc:  # no login / no network must not stop training
                log.append("message", message=f"log.wandb: {type(exc).__name__}: {exc}")

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        clean = {k: float(v) for k, v in values.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        if self.tb is not None:
            for k, v in clean.items():
                self.tb.add_scalar(f"{prefix}/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log({f"{prefix}/{k}": v for k, v in clean.items()}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def _wandb_id(run_dir: Path) -> str:
    import hashlib

    return hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# the job


def _loader(dataset: Any, batch_sampler: Any, spec: ClassifierSpec, device: torch.device,
            seed: int) -> Any:
    from torch.utils.data import DataLoader

    return DataLoader(
        dataset, batch_sampler=batch_sampler, num_workers=spec.data.num_workers,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed),
    )


class _Batches:
    """Validation batches of plain indices (this rank's share)."""

    def __init__(self, indices: list[int], batch_size: int) -> None:
        self.indices, self.batch_size = indices, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self) -> Any:
        for i in range(0, len(self.indices), self.batch_size):
            yield self.indices[i:i + self.batch_size]


def _attention_lookup(spec: ClassifierSpec, samples: list[tuple[Path, int]], device: torch.device,
                      dist: DistInfo, log: RunLog) -> Any:
    """Attention maps for every training image, computed once in batches and cached on disk
    (:mod:`headless.train.attention_maps`), so the data loader only reads a few KB per image. Seed
    000 ran the ViT per item and measured data loading about 12x slower."""
    from headless.progress import run as drive
    from headless.train.attention_maps import compute_attention_maps

    paths = [p for p, _ in samples]
    last = [-1.0]

    def report(p: Any) -> None:
        now = time.monotonic()
        if p.done == p.total or now - last[0] > 2.0:
            last[0] = now
            log.append("stage", stage="attention maps", done=p.done, total=p.total,
                       message=p.message)

    def compute() -> Any:
        gen = compute_attention_maps(
            spec.crop.attention_backbone, paths, size=spec.crop.attention_size,
            device=str(device), weights=spec.crop.attention_weights,
        )
        return drive(gen, report)

    rng = torch.get_rng_state()
    if dist.enabled:  # rank 0 fills the cache, the others then find every map in it
        import torch.distributed as tdist

        store = compute() if dist.is_main else None
        tdist.barrier()
        if store is None:
            store = compute()
    else:
        store = compute()
    torch.set_rng_state(rng)  # a random test backbone reseeds; the run's stream must not move
    missing = len(store.missing(paths))
    if missing:
        log.append("message", message=f"{missing} images have no attention map; they get "
                                      "RandomResizedCrop")
    return _AttentionLookup(store, paths)


class _AttentionLookup:
    """Picklable (DataLoader workers): image path -> its cached map as an ``AttentionMap``.

    Up to ``preload_limit`` maps (a few hundred bytes each) are read into memory once, so a
    lookup is a dict access instead of a stat, a hash and a file read per item; larger
    datasets read each map from the cache file when needed.
    """

    def __init__(self, store: Any, paths: list[Path] | None = None,
                 preload_limit: int = 300_000) -> None:
        self.store = store
        self.maps: dict[str, Any] | None = None
        if paths is not None and len(paths) <= preload_limit:
            self.maps = {str(p): store.get(p) for p in paths}

    def __call__(self, index: int, path: Path) -> Any:
        if self.maps is None:
            return self.store.attention_map(path)
        arr = self.maps.get(str(path))
        if arr is None:
            return None
        from headless.train.crops import AttentionMap

        return AttentionMap(arr)


def run(
    spec: ClassifierSpec, run_dir: str | Path, stop: Any = None, log: RunLog | None = None
) -> str:
    """Train (or continue training) the classifier of ``spec`` in ``run_dir``.

    Returns "completed", or "stopped" when ``stop.requested`` became true: a checkpoint at the
    current step was saved first, so the run can resume exactly.
    """
    run_dir = Path(run_dir)
    use_cuda = spec.device.startswith("cuda") or (spec.device == "auto"
                                                  and torch.cuda.is_available())
    dist = init_distributed(use_cuda)
    log = log or RunLog(run_dir, enabled=dist.is_main)
    device = resolve_device(spec.device, dist)
    set_determinism(spec.seed, spec.deterministic)
    if spec.cpu_threads:
        torch.set_num_threads(spec.cpu_threads)

    plan = plan_data(spec)
    split = plan.split
    classes = split.classes
    n_classes = len(classes)
    built = build_model(spec.model, n_classes)
    model = built.model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    attention = None
    if spec.crop.type == "attention":
        attention = _attention_lookup(spec, split.train, device, dist, log)
    train_ds = ClassifierDataset(split.train, train_transform(spec, built.mean, built.std),
                                 plan.boxes, seed=spec.seed, attention=attention)
    val_ds = ClassifierDataset(split.val, eval_transform(spec.data.image_size, built.mean,
                                                         built.std), plan.boxes)
    spe = EpochBatches.steps_per_epoch(len(train_ds), spec.data.batch_size, dist.world)
    total = spec.max_steps or spec.num_epochs * spe
    optimizer = build_optimizer(model, spec.opt)
    ema = make_ema(model, spec.model.ema_decay) if spec.model.ema_step else None
    autocast_dtype = None
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        autocast_dtype = torch.bfloat16
    train_model: nn.Module = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    step = 0
    ckpt = load_checkpoint(run_dir)
    if ckpt is not None:
        if ckpt.get("classes") != classes:
            raise DatasetError(
                f"the dataset's classes changed since the checkpoint ({ckpt.get('classes')} -> "
                f"{classes}); start a new run"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.load_state_dict(ckpt["ema"])
        set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
        log.append("resume", step=step, epoch=step / spe,
                   world_size=dist.world, checkpoint_world_size=ckpt.get("world_size"))
    log.append(
        "start", total_steps=total, steps_per_epoch=spe, start_step=step, classes=classes,
        n_train=len(train_ds), n_val=len(val_ds), device=str(device), world_size=dist.world,
        model=spec.model.type, weights=built.weights_label, split=split.how,
        n_params=sum(p.numel() for p in model.parameters()),
        n_trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
    )
    trackers = Trackers(spec, run_dir, log, dist.is_main)
    crit = nn.CrossEntropyLoss(label_smoothing=spec.opt.label_smoothing)
    val_indices = list(range(len(val_ds)))[dist.rank::dist.world]

    def checkpoint_state() -> dict[str, Any]:
        return {
            "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else None, "rng": rng_state(),
            "classes": classes, "world_size": dist.world,
            "lr": lr_at(spec.opt, max(step - 1, 0), total, spe),
        }

    def run_eval() -> dict[str, Any]:
        loader = _loader(val_ds, _Batches(val_indices, spec.data.batch_size), spec, device,
                         spec.seed)
        res = evaluate(model, loader, n_classes, device, spec.opt.label_smoothing, classes,
                       dist.enabled, autocast_dtype)
        out: dict[str, Any] = res.metrics()
        best: EvalResult = res
        if ema is not None:
            res_ema = evaluate(ema.module, loader, n_classes, device, spec.opt.label_smoothing,
                               classes, dist.enabled, autocast_dtype)
            out.update(res_ema.metrics("ema_"))
        if dist.is_main:
            save_confusion(run_dir, best, step)
        return out

    seen = time.perf_counter()
    acc_loss = acc_correct = acc_n = acc_steps = 0.0
    last_eval_step = -1
    last_metrics: dict[str, Any] = {}
    while step < total:
        epoch = step // spe
        sampler = EpochBatches(len(train_ds), spec.data.batch_size, spec.seed, epoch,
                               start=step % spe, rank=dist.rank, world=dist.world)
        for images, labels in _loader(train_ds, sampler, spec, device, spec.seed + epoch):
            if _any_rank(stop is not None and stop.requested, dist, device):
                if dist.is_main:
                    path = save_checkpoint(run_dir, checkpoint_state(), step,
                                           spec.checkpoint.keep)
                    log.append("checkpoint", step=step, path=str(path), reason="stop")
                trackers.close()
                return "stopped"
            lr = lr_at(spec.opt, step, total, spe)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            if device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            train_model.train()
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                enabled=autocast_dtype is not None):
                logits = train_model(images)
            loss = crit(logits.float(), labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became {loss.item()} at step {step + 1}: lower opt.lr "
                    f"(now {lr:g}) or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if ema is not None and step % spec.model.ema_step == 0:
                ema.update_parameters(model)
            acc_loss += float(loss.item())
            acc_correct += float((logits.argmax(1) == labels).sum().item())
            acc_n += labels.numel()
            acc_steps += 1
            if step % spec.log.interval == 0 or step == total:
                now = time.perf_counter()
                rec = {"step": step, "epoch": step / spe, "loss": acc_loss / acc_steps,
                       "acc1": acc_correct / max(acc_n, 1), "lr": lr,
                       "images_per_s": acc_n * dist.world / max(now - seen, 1e-9)}
                log.append("train", **rec)
                trackers.scalars("train", rec, step)
                seen = now
                acc_loss = acc_correct = acc_n = acc_steps = 0.0
            epoch_end = step % spe == 0
            if (epoch_end and (step // spe) % spec.eval_every == 0) or step == total:
                if len(val_ds):
                    last_metrics = run_eval()
                    log.append("eval", step=step, epoch=step / spe, **last_metrics)
                    trackers.scalars("val", last_metrics, step)
                    last_eval_step = step
            if dist.is_main and (step % spec.checkpoint.every_steps == 0 or step == total):
                path = save_checkpoint(run_dir, checkpoint_state(), step, spec.checkpoint.keep)
                log.append("checkpoint", step=step, path=str(path))
            if step >= total:
                break

    final: dict[str, Any] = {"step": step, "epoch": step / spe, "classes": classes}
    if len(val_ds):
        if last_eval_step != step:
            last_metrics = run_eval()
            log.append("eval", step=step, epoch=step / spe, **last_metrics)
        final.update(last_metrics)
        conf = load_confusion(run_dir) if dist.is_main else None
        if conf is not None:
            final["per_class_recall"] = conf.get("per_class_recall")
    if dist.is_main:
        from headless.store import atomic_write_json

        meta = {"classes": classes, "model": spec.model.type, "image_size": spec.data.image_size,
                "mean": list(built.mean), "std": list(built.std), "step": step}
        save_weights(run_dir / "model_final.safetensors", model, meta)
        if ema is not None:
            save_weights(run_dir / "model_ema_final.safetensors", ema.module, meta)
        atomic_write_json(run_dir / "metrics.json", final)
    trackers.close()
    if dist.enabled:
        import torch.distributed as tdist

        tdist.barrier()
    return "completed"
