"""The ``dino`` job: DINO pre-training (facebookresearch/dino's ``train_one_epoch``) as a run.

Per step ``it``: lr / weight decay / teacher momentum from per-step cosine schedules (lr
warm-up, lr scaled by batch x processes / 256; weight decay on the first parameter group only);
the teacher sees the 2 global crops, the student all crops; DINO loss (:mod:`.loss`);
per-parameter gradient clipping; the head's last layer gets no update during the first
``freeze_last_layer`` epochs; optimiser step; teacher EMA. Checkpoints hold student, teacher,
optimiser, the loss centre, the scaler, RNG states and the step; augmentations are keyed by
(seed, epoch, index), so a killed run resumed from its checkpoint ends with the same weights.
At the end the teacher backbone is exported (:mod:`.export`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from headless.jobs.runlog import RunLog
from headless.train.classifier.checkpoints import load_checkpoint, save_checkpoint
from headless.train.classifier.runtime import (
    any_rank,
    make_loader,
    rng_state,
    set_rng_state,
    start_job,
)
from headless.train.classifier.trackers import Trackers
from headless.train.data.dataset import EpochBatches
from headless.train.ssl.spec import DinoSpec


def preflight(spec: DinoSpec) -> dict[str, Any]:
    """Pretext images readable and large enough, sizes that fit the patch, k-NN folders."""
    from headless.train.ssl.data import check_pretext

    if spec.model.arch != "resnet50":
        p = spec.model.patch_size
        for name in ("global_size", "local_size"):
            if getattr(spec.crops, name) % p:
                raise ValueError(f"crops.{name} ({getattr(spec.crops, name)}) is not a multiple "
                                 f"of the ViT patch ({p})")
    if spec.model.init_weights and not Path(spec.model.init_weights).is_file():
        raise FileNotFoundError(f"model.init_weights: file {spec.model.init_weights} not found")
    paths = check_pretext(spec.data.pretext, spec.crops.local_size)
    summary: dict[str, Any] = {"pretext_images": len(paths), "arch": spec.model.arch,
                               **spec.recipe()}
    if spec.data.knn_root:
        from headless.train.ssl.labelled import load_labelled

        lab = load_labelled(spec.data.knn_root)
        summary["knn"] = {"classes": len(lab.classes), "train": len(lab.train),
                          "val": len(lab.val)}
    if len(paths) < spec.data.batch_size:
        summary["note"] = (f"{len(paths)} images < batch {spec.data.batch_size}: one smaller "
                           "batch per epoch")
    return summary


def _autocast(spec: DinoSpec, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype, use a gradient scaler); CPU runs in fp32."""
    if device.type != "cuda" or spec.opt.precision == "fp32":
        return None, False
    if spec.opt.precision == "bf16" or (spec.opt.precision == "auto"
                                        and torch.cuda.is_bf16_supported()):
        return torch.bfloat16, False
    return torch.float16, True


def run(spec: DinoSpec, run_dir: str | Path, stop: Any = None, log: RunLog | None = None) -> str:

    from headless.train.ssl.augment import MultiCrop, PretextDataset
    from headless.train.ssl.data import list_pretext
    from headless.train.ssl.export import export_teacher
    from headless.train.ssl.loss import DINOLoss
    from headless.train.ssl.models import (
        build_student_teacher,
        cancel_last_layer_gradients,
        clip_gradients,
        ema_update,
        param_groups,
    )
    from headless.train.ssl.schedules import cosine_schedule

    run_dir = Path(run_dir)
    dist, log, device = start_job(spec, run_dir, log)
    recipe = spec.recipe()
    paths = list_pretext(spec.data.pretext)
    crops = MultiCrop(recipe["global_scale"], recipe["local_scale"], spec.crops.n_local,
                      spec.crops.global_size, spec.crops.local_size)
    dataset = PretextDataset(paths, crops, seed=spec.seed)
    models = build_student_teacher(spec.model)
    student, teacher = models.student.to(device), models.teacher.to(device)
    train_student: torch.nn.Module = student
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        if spec.model.arch == "resnet50":  # as the reference: synchronised BatchNorm
            student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(student)
            teacher = torch.nn.SyncBatchNorm.convert_sync_batchnorm(teacher)
        train_student = DistributedDataParallel(
            student, device_ids=[device.index] if device.type == "cuda" else None)
    ncrops = 2 + spec.crops.n_local
    epochs = spec.num_epochs
    o = spec.opt
    dino_loss = DINOLoss(spec.model.out_dim, ncrops, o.warmup_teacher_temp, o.teacher_temp,
                         o.warmup_teacher_temp_epochs, epochs, o.student_temp,
                         o.center_momentum).to(device)
    groups = param_groups(student)
    if recipe["optimizer"] == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(groups, lr=0, momentum=0.9)
    else:
        optimizer = torch.optim.AdamW(groups)
    spe = EpochBatches.steps_per_epoch(len(dataset), spec.data.batch_size, dist.world)
    base_lr = recipe["lr"] * spec.data.batch_size * dist.world / 256.0
    lr_s = cosine_schedule(base_lr, o.min_lr, epochs, spe, warmup_epochs=o.warmup_epochs)
    wd_s = cosine_schedule(recipe["weight_decay"], recipe["weight_decay_end"], epochs, spe)
    mom_s = cosine_schedule(o.momentum_teacher, 1.0, epochs, spe)
    total = min(spec.max_steps or epochs * spe, epochs * spe)
    amp_dtype, use_scaler = _autocast(spec, device)
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None

    step = 0
    ckpt = load_checkpoint(run_dir, on_note=lambda m: log.append("message", message=m))
    if ckpt is not None:
        student.load_state_dict(ckpt["model"])
        teacher.load_state_dict(ckpt["teacher"])
        optimizer.load_state_dict(ckpt["optimizer"])
        dino_loss.load_state_dict(ckpt["dino_loss"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        step = int(ckpt["step"])
        log.append("resume", step=step, epoch=step / spe, world_size=dist.world,
                   checkpoint_world_size=ckpt.get("world_size"))
    log.append("start", total_steps=total, steps_per_epoch=spe, start_step=step,
               n_images=len(dataset), device=str(device), world_size=dist.world,
               arch=spec.model.arch, crops=ncrops, base_lr=base_lr,
               n_params=sum(p.numel() for p in student.parameters()), **{
                   k: list(v) if isinstance(v, tuple) else v for k, v in recipe.items()})
    trackers = Trackers(spec, run_dir, log, dist.is_main)

    def state() -> dict[str, Any]:
        return {"step": step, "model": student.state_dict(), "teacher": teacher.state_dict(),
                "optimizer": optimizer.state_dict(), "dino_loss": dino_loss.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": rng_state(), "world_size": dist.world, "arch": spec.model.arch}

    def knn_monitor() -> dict[str, Any]:
        from headless.train.ssl.monitor import knn_of_module

        return knn_of_module(teacher.backbone, spec.data.knn_root, spec.model.arch, device,
                             size=spec.crops.global_size)

    last: dict[str, Any] = {}
    if spec.data.knn_root and dist.is_main and step == 0:
        # the initialisation's k-NN: the baseline every later evaluation is read against
        init = knn_monitor()
        log.append("eval", step=0, epoch=0.0, **init)
        trackers.scalars("val", init, 0)
        last.update({f"init_{k}": v for k, v in init.items()})
    seen, acc_loss, acc_steps, acc_n = time.perf_counter(), 0.0, 0, 0
    while step < total:
        epoch = step // spe
        sampler = EpochBatches(len(dataset), spec.data.batch_size, spec.seed, epoch,
                               start=step % spe, rank=dist.rank, world=dist.world)
        loader = make_loader(dataset, sampler, spec.data.num_workers, device, spec.seed + epoch)
        for images, _ in loader:
            if any_rank(stop is not None and stop.requested, dist, device):
                if dist.is_main:
                    path = save_checkpoint(run_dir, state(), step, spec.checkpoint.keep)
                    log.append("checkpoint", step=step, path=str(path), reason="stop")
                trackers.close()
                return "stopped"
            it = step
            for i, g in enumerate(optimizer.param_groups):
                g["lr"] = float(lr_s[it])
                if i == 0:
                    g["weight_decay"] = float(wd_s[it])
            images = [im.to(device, non_blocking=True) for im in images]
            student.train()
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                teacher_out = teacher(images[:2])
                student_out = train_student(images)
            loss = dino_loss(student_out.float(), teacher_out.float(), epoch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the DINO loss became {loss.item()} at step {it + 1}; "
                                         "lower opt.lr or use opt.precision: fp32")
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                if o.clip_grad:
                    clip_gradients(student, o.clip_grad)
                cancel_last_layer_gradients(epoch, student, o.freeze_last_layer)
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                if o.clip_grad:
                    scaler.unscale_(optimizer)
                    clip_gradients(student, o.clip_grad)
                cancel_last_layer_gradients(epoch, student, o.freeze_last_layer)
                scaler.step(optimizer)
                scaler.update()
            ema_update(student, teacher, float(mom_s[it]))
            step += 1
            acc_loss += float(loss.item())
            acc_steps += 1
            acc_n += images[0].shape[0]
            if step % spec.log.interval == 0 or step == total:
                now = time.perf_counter()
                rec = {"step": step, "epoch": step / spe, "loss": acc_loss / acc_steps,
                       "lr": float(lr_s[it]), "wd": float(wd_s[it]),
                       "momentum": float(mom_s[it]),
                       "teacher_temp": float(dino_loss.teacher_temp_schedule[epoch]),
                       "images_per_s": acc_n * dist.world / max(now - seen, 1e-9)}
                log.append("train", **rec)
                trackers.scalars("train", rec, step)
                last["loss"] = rec["loss"]
                seen, acc_loss, acc_steps, acc_n = now, 0.0, 0, 0
            epoch_end = step % spe == 0
            if spec.data.knn_root and dist.is_main and (
                    (epoch_end and (step // spe) % spec.eval_every == 0) or step == total):
                metrics = knn_monitor()
                log.append("eval", step=step, epoch=step / spe, **metrics)
                trackers.scalars("val", metrics, step)
                last.update(metrics)
            if dist.is_main and (step % spec.checkpoint.every_steps == 0 or step == total):
                path = save_checkpoint(run_dir, state(), step, spec.checkpoint.keep)
                log.append("checkpoint", step=step, path=str(path))
            if step >= total:
                break
    if dist.is_main:
        from headless.store import atomic_write_json

        export_teacher(run_dir, teacher.backbone, spec)
        atomic_write_json(run_dir / "metrics.json", {"step": step, "epoch": step / spe, **last})
    trackers.close()
    if dist.enabled:
        import torch.distributed as tdist

        tdist.barrier()
    return "completed"
