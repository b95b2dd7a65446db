"""Seed 000's classifier job: ResNet-50 (or a DINOv2 ViT) trained with box-aware crops.

The two functions of the job type (:mod:`headless.jobs`): :func:`preflight` checks the data and
the model before a worker starts; :func:`run` trains. What ``run`` does, in order: seeds and
determinism; the data plan (split, boxes); the model (:mod:`.models`); the optimiser and EMA
(:mod:`.optim`); the learning rate as a pure function of the step
(:func:`headless.jobs.spec.lr_at`); then the loop, which logs JSON lines, evaluates every
``eval_every`` epochs, checkpoints every N steps and stops cleanly at a step boundary when asked.

A checkpoint holds the model, optimiser, EMA, step and RNG states; the data order and each
sample's augmentation are keyed by ``(seed, epoch, index)`` (:mod:`headless.train.data`), so a
run killed at any point and resumed from its last checkpoint ends with exactly the weights and
metrics of an uninterrupted run (on CPU, or on GPU with deterministic algorithms).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from headless.jobs.runlog import RunLog
from headless.jobs.spec import ClassifierSpec, lr_at
from headless.train.classifier.attention_lookup import attention_lookup
from headless.train.classifier.checkpoints import load_checkpoint, save_checkpoint, save_weights
from headless.train.classifier.models import build_model, check_model
from headless.train.classifier.optim import build_optimizer, make_ema
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
from headless.train.data.plan import plan_data
from headless.train.data.transforms import eval_transform, train_transform
from headless.train.evaluate import EvalResult, evaluate, load_confusion, save_confusion


def preflight(spec: ClassifierSpec) -> dict[str, Any]:
    """Every check that can be made before a worker starts (data, boxes, weights, sizes)."""
    plan = plan_data(spec)
    check_model(spec)
    return plan.summary()



def run(
    spec: ClassifierSpec, run_dir: str | Path, stop: Any = None, log: RunLog | None = None
) -> str:
    """Train (or continue training) the classifier of ``spec`` in ``run_dir``.

    Returns "completed", or "stopped" when ``stop.requested`` became true: a checkpoint at the
    current step was saved first, so the run can resume exactly.
    """
    run_dir = Path(run_dir)
    dist, log, device = start_job(spec, run_dir, log)

    plan = plan_data(spec)
    for warning in plan.warnings():
        log.append("message", message=f"warning: {warning}")
    split = plan.split
    classes = split.classes
    n_classes = len(classes)
    built = build_model(spec.model, n_classes)
    model = built.model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    attention = None
    if spec.crop.type == "attention":
        attention = attention_lookup(spec, split.train, device, dist, log)
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
    ckpt = load_checkpoint(run_dir, on_note=lambda m: log.append("message", message=m))
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
        batches = IndexBatches(val_indices, spec.data.batch_size)
        loader = make_loader(val_ds, batches, spec.data.num_workers, device, spec.seed)
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
        loader = make_loader(train_ds, sampler, spec.data.num_workers, device, spec.seed + epoch)
        for images, labels in loader:
            if any_rank(stop is not None and stop.requested, dist, device):
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
