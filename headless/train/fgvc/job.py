"""The ``fgvc`` job: fine-tune a ViT with the IELT head (seed 002) and test it.

Built on the seed-000 job's parts: keyed-random data and the resumable sampler
(:mod:`headless.train.data`), runtime / DDP, checkpoints, trackers and the optimiser
(:mod:`headless.train.classifier`), the confusion-matrix evaluation (:mod:`headless.train.evaluate`)
and the learning rate as a pure function of the step. What is its own: the model
(:mod:`.model`), the loss (IELT's CAM mix + batch-hard triplet, :mod:`.losses`), gradient
accumulation over strided sub-batches (seed 002), DSM updates after the warm-up, and a final
evaluation on the held-out test split (top-1 / top-5, per-class accuracy, confusion matrix).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headless.jobs.runlog import RunLog
from headless.jobs.spec import lr_at
from headless.train.classifier.checkpoints import load_checkpoint, save_checkpoint, save_weights
from headless.train.classifier.optim import build_optimizer
from headless.train.classifier.runtime import (
    IndexBatches,
    any_rank,
    make_loader,
    rng_state,
    set_rng_state,
    start_job,
)
from headless.train.classifier.trackers import Trackers
from headless.train.data.dataset import ClassifierDataset, EpochBatches
from headless.train.data.errors import DatasetError
from headless.train.data.transforms import eval_transform, train_transform
from headless.train.evaluate import evaluate, save_confusion
from headless.train.fgvc.backbone import check_backbone
from headless.train.fgvc.build import FINAL, build_fgvc
from headless.train.fgvc.datasets import FgvcSplits, read_splits
from headless.train.fgvc.losses import batch_hard_triplet, ielt_loss
from headless.train.fgvc.sampling import TripletBatches
from headless.train.fgvc.spec import FgvcSpec, resolved_opt


def _boxes(spec: FgvcSpec, splits: FgvcSplits) -> dict[Path, Any]:
    if not spec.data.boxes:
        return {}
    from headless.train.data.box_table import match_boxes, read_box_table

    table = read_box_table(spec.data.boxes)
    boxes = match_boxes(splits.train + splits.val + splits.test, splits.roots, table)
    if spec.crop.type == "localized" and not any(p in boxes for p, _ in splits.train):
        raise DatasetError(f"boxes file {spec.data.boxes} matches none of the training images")
    return boxes


def preflight(spec: FgvcSpec) -> dict[str, Any]:
    """Data layout and splits, boxes, backbone and weights: every check before a worker."""
    splits = read_splits(spec.data, spec.seed)
    boxes = _boxes(spec, splits)
    check_backbone(spec.model.backbone, spec.model.weights, spec.data.image_size)
    return {**splits.summary(), "classes": splits.classes, "n_images_with_boxes": len(boxes),
            "warnings": []}




def sub_batches(n: int, sub: int | None) -> list[slice]:
    """A batch of ``n`` in contiguous sub-batches of ``sub`` (whole triplets when ``sub`` is a
    multiple of 3; seed 002 strides over its [anchors; positives; negatives] layout instead)."""
    if not sub or sub >= n:
        return [slice(0, n)]
    return [slice(i, min(i + sub, n)) for i in range(0, n, sub)]


def train_step(model: nn.Module, train_model: nn.Module, images: torch.Tensor,
               labels: torch.Tensor, spec: FgvcSpec, autocast_dtype: Any, dsm_on: bool
               ) -> tuple[float, int]:
    """Forward + backward over the sub-batches (gradients accumulate); loss and #correct."""
    total, correct, n = 0.0, 0, labels.numel()
    for sl in sub_batches(n, spec.data.sub_batch):
        x, y = images[sl], labels[sl]
        with torch.autocast(images.device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            out = train_model(x, full=True)
        alpha = spec.ielt.loss_alpha
        loss = ielt_loss(out.logits, out.complement, y, alpha, spec.opt.label_smoothing)
        if spec.loss.triplet_weight > 0:
            loss = loss + spec.loss.triplet_weight * batch_hard_triplet(
                out.embedding, y, spec.loss.triplet_margin)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss.item()}: lower opt.lr or check "
                                     "the data")
        (loss * (y.numel() / n)).backward()
        total += float(loss.item()) * y.numel() / n
        correct += int((out.logits.argmax(1) == y).sum().item())
        if dsm_on and hasattr(model, "update_selection"):
            model.update_selection(out)
    return total, correct


def run(spec: FgvcSpec, run_dir: str | Path, stop: Any = None, log: RunLog | None = None) -> str:
    """Train (or continue) the fgvc run of ``spec``; "completed" or "stopped" (resumable)."""
    run_dir = Path(run_dir)
    dist, log, device = start_job(spec, run_dir, log)
    splits = read_splits(spec.data, spec.seed)
    boxes = _boxes(spec, splits)
    classes, n_classes = splits.classes, len(splits.classes)
    built = build_fgvc(spec, n_classes)
    model = built.model.to(device)
    train_ds = ClassifierDataset(splits.train, train_transform(spec, built.mean, built.std),
                                 boxes, seed=spec.seed)
    tf = eval_transform(spec.data.image_size, built.mean, built.std)
    val_ds = ClassifierDataset(splits.val, tf, boxes)
    test_ds = ClassifierDataset(splits.test, tf, boxes)
    triplets = spec.loss.triplet_weight > 0 and spec.data.triplets
    labels_train = [y for _, y in splits.train]
    sampler_cls: Any = TripletBatches if triplets else EpochBatches
    spe = sampler_cls.steps_per_epoch(len(train_ds), spec.data.batch_size, dist.world)
    total = spec.max_steps or spec.num_epochs * spe
    opt_cfg = resolved_opt(spec)
    optimizer = build_optimizer(model, opt_cfg)
    autocast_dtype = torch.bfloat16 if device.type == "cuda" and \
        torch.cuda.is_bf16_supported() else None
    train_model: nn.Module = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=spec.ielt.enhancement == "learnable")
    warm = int(round(spec.ielt.update_warm_epochs * spe))
    step = 0
    ckpt = load_checkpoint(run_dir, on_note=lambda m: log.append("message", message=m))
    if ckpt is not None:
        if ckpt.get("classes") != classes:
            raise DatasetError("the dataset's classes changed since the checkpoint; start a "
                               "new run")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
        log.append("resume", step=step, epoch=step / spe, world_size=dist.world)
    log.append("start", total_steps=total, steps_per_epoch=spe, start_step=step, classes=classes,
               n_train=len(train_ds), n_val=len(val_ds), n_test=len(test_ds), device=str(device),
               world_size=dist.world, model=f"{spec.model.backbone} + {spec.model.head}",
               weights=built.weights_label, split=splits.layout, opt=opt_cfg.type, lr=opt_cfg.lr,
               n_params=sum(p.numel() for p in model.parameters()))
    trackers = Trackers(spec, run_dir, log, dist.is_main)  # type: ignore[arg-type]

    def state() -> dict[str, Any]:
        return {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": rng_state(), "classes": classes, "world_size": dist.world}

    def run_eval(ds: ClassifierDataset) -> Any:
        idx = list(range(len(ds)))[dist.rank::dist.world]
        batches = IndexBatches(idx, spec.data.batch_size)
        loader = make_loader(ds, batches, spec.data.num_workers, device, spec.seed)
        return evaluate(model, loader, n_classes, device, 0.0, classes, dist.enabled,
                        autocast_dtype)

    seen = time.perf_counter()
    acc = {"loss": 0.0, "correct": 0, "n": 0, "steps": 0}
    while step < total:
        epoch = step // spe
        first = labels_train if triplets else len(train_ds)
        sampler = sampler_cls(first, spec.data.batch_size, spec.seed, epoch,
                              start=step % spe, rank=dist.rank, world=dist.world)
        loader = make_loader(train_ds, sampler, spec.data.num_workers, device, spec.seed + epoch)
        for images, labels in loader:
            if any_rank(stop is not None and stop.requested, dist, device):
                if dist.is_main:
                    path = save_checkpoint(run_dir, state(), step, spec.checkpoint.keep)
                    log.append("checkpoint", step=step, path=str(path), reason="stop")
                trackers.close()
                return "stopped"
            lr = lr_at(opt_cfg, step, total, spe)
            for group in optimizer.param_groups:
                group["lr"] = lr
            images, labels = images.to(device), labels.to(device)
            train_model.train()
            optimizer.zero_grad(set_to_none=True)
            loss, correct = train_step(model, train_model, images, labels, spec,
                                       autocast_dtype, spec.ielt.dsm and step >= warm)
            if spec.opt.clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), spec.opt.clip_grad)
            optimizer.step()
            step += 1
            acc["loss"] += loss
            acc["correct"] += correct
            acc["n"] += labels.numel()
            acc["steps"] += 1
            if step % spec.log.interval == 0 or step == total:
                now = time.perf_counter()
                rec = {"step": step, "epoch": step / spe, "loss": acc["loss"] / acc["steps"],
                       "acc1": acc["correct"] / max(acc["n"], 1), "lr": lr,
                       "images_per_s": acc["n"] * dist.world / max(now - seen, 1e-9)}
                log.append("train", **rec)
                trackers.scalars("train", rec, step)
                seen = now
                acc = {"loss": 0.0, "correct": 0, "n": 0, "steps": 0}
            if ((step % spe == 0 and (step // spe) % spec.eval_every == 0) or step == total) \
                    and len(val_ds):
                res = run_eval(val_ds)
                log.append("eval", step=step, epoch=step / spe, **res.metrics())
                trackers.scalars("val", res.metrics(), step)
                if dist.is_main:
                    save_confusion(run_dir, res, step)
            if dist.is_main and (step % spec.checkpoint.every_steps == 0 or step == total):
                path = save_checkpoint(run_dir, state(), step, spec.checkpoint.keep)
                log.append("checkpoint", step=step, path=str(path))
            if step >= total:
                break

    test = run_eval(test_ds)
    final: dict[str, Any] = {"step": step, "classes": classes, "split": "test",
                             **{f"test_{k}": v for k, v in test.metrics().items()},
                             "per_class_accuracy": test.per_class_recall()}
    final["acc1"], final["acc5"] = test.acc1, test.acc5
    log.append("eval", step=step, split="test", **test.metrics())
    if dist.is_main:
        from headless.store import atomic_write_json

        save_confusion(run_dir, test, step, which="test")
        meta = {"classes": classes, "backbone": spec.model.backbone, "head": spec.model.head,
                "image_size": spec.data.image_size, "mean": list(built.mean),
                "std": list(built.std), "step": step}
        save_weights(run_dir / FINAL, model, meta)
        atomic_write_json(run_dir / "metrics.json", final)
    trackers.close()
    if dist.enabled:
        import torch.distributed as tdist

        tdist.barrier()
    return "completed"
