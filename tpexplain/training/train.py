"""`tpexplain train`: the HRNet/TransPose recipe, sized for CPUs.

Joints MSE with target weights, Adam with linear warm-up and cosine decay, channels_last convolutions,
each zoo model's own dropout (its manifest config: TransPose 0.1 in attention and residuals as the official
configs; TokenPose none; ViTPose drop path), except the bundled default model's recipe: dropout 0 (on CPU
a training step with dropout 0.1 takes ~3x as long, measured by bench/train_speed.py; see docs/fidelity.md).
Checkpoints are written atomically every `save_every` iterations; `resume=True` continues a run.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .. import zoo
from ..io import atomic_path
from ..progress import progress
from .data import CocoPersons, SyntheticPersons

log = logging.getLogger(__name__)


def joints_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """0.5 · mean squared error over the joints that carry a label (the official JointsMSELoss)."""
    w = weight[:, :, None, None]
    return 0.5 * ((pred * w - target * w) ** 2).mean()


def lr_at(step: int, total: int, base: float, warmup: int, final_ratio: float = 0.01) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX). Without it, bf16 autocast is
    emulated and runs about 10x slower than float32 (measured on an AVX2-only EPYC: 0.66 vs 7.0 img/s, bench/train_speed.py)."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


class TrainingDiverged(RuntimeError):
    """The loss or the weights stopped being finite numbers: training stops, no checkpoint is written."""


def non_finite(state: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors in `state` that hold NaN or inf."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _save_atomic(obj, path: Path) -> None:
    # through the one atomic writer: a full disk leaves the previous checkpoint, not a stray temp file
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def train(model: str = "default", out: str | Path = "runs/default", iters: int = 4000, batch_size: int = 32,
          lr: float = 1e-3, warmup: int = 200, seed: int = 0, workers: int = 1, coco: str | None = None,
          images: str | None = None, resume: bool = False, save_every: int = 100,
          export: str | Path | None = None, threads: int | None = None, bf16: bool | None = None) -> dict:
    """Train a zoo architecture from scratch on COCO-format data (`coco`, `images`) or, without them,
    on synthetic people generated on the fly. `bf16` runs the forward pass under bfloat16 autocast
    (about 1.6x faster on CPUs with AMX/AVX512-BF16; the loss and the weights stay float32); None
    turns it on exactly when the CPU has native bfloat16. Returns the final training state summary.

    A learning rate that is not a finite number above 0 is refused. When the loss or the weights stop being
    finite, training stops with `TrainingDiverged` and writes nothing: the last checkpoint stays as it was."""
    # above float32's largest number the optimizer's float32 update cannot hold it either
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr <= torch.finfo(torch.float32).max:
        raise ValueError(f"learning rate must be a finite number above 0, got {lr}")
    torch.manual_seed(seed)
    if bf16 is None:
        bf16 = native_bf16()
    elif bf16 and not native_bf16():
        log.warning("this CPU has no native bfloat16 (AVX512-BF16/AMX); --bf16 runs about 10x slower here "
                    "than float32 (--no-bf16)")
    log.info(f"forward pass in {'bfloat16 autocast' if bf16 else 'float32'}")
    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    net = zoo.build(model)
    size = tuple(net.image_size)
    if coco:
        data = CocoPersons(coco, images, train=True, input_size=size, seed=seed)
    else:
        data = SyntheticPersons(iters * batch_size, seed=seed, train=True, input_size=size)
    net = net.to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    step, history = 0, []
    ckpt_path = out / "last.pth"
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if non_finite(ckpt["model"]):
            raise ValueError(f"cannot resume: {ckpt_path} holds NaN or inf weights ({non_finite(ckpt['model'])[0]})")
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step, history = int(ckpt["step"]), list(ckpt.get("history", []))
        log.info(f"resumed {ckpt_path} at iteration {step}")
    # each epoch of the sampler is offset by the step so a resumed run sees new samples
    sampler = torch.utils.data.RandomSampler(data, generator=torch.Generator().manual_seed(seed + step))
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    t0, seen, running = time.time(), 0, None
    bar = progress(iters, "train", "iter")
    bar.update(step)
    while step < iters:
        for x, target, weight in loader:
            if step >= iters:
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(step, iters, lr, warmup)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                pred = net(x.to(memory_format=torch.channels_last))
            loss = joints_mse(pred.float(), target, weight)
            if not torch.isfinite(loss):
                bar.close()
                raise TrainingDiverged(_diverged(f"the loss is {loss.item()}", step + 1, lr, ckpt_path))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += x.shape[0]
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            bar.update()
            if step % 10 == 0 or step == iters:
                history.append((step, running))
                log.debug(f"iter {step}/{iters}  loss {running:.6f}  lr {opt.param_groups[0]['lr']:.2e}  "
                          f"{seen / (time.time() - t0):.1f} img/s")
            if step % save_every == 0 or step == iters:
                bad = non_finite(net.state_dict())
                if bad:
                    bar.close()
                    raise TrainingDiverged(_diverged(f"{len(bad)} weight tensors hold NaN or inf ({bad[0]}, ...)",
                                                     step, lr, ckpt_path))
                state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                         "history": history, "config": {"model": model, "iters": iters, "batch_size": batch_size,
                                                        "lr": lr, "seed": seed, "coco": coco, "bf16": bf16}}
                _save_atomic(state, ckpt_path)
                if export:
                    _save_atomic({k: v.contiguous() for k, v in net.state_dict().items()}, Path(export))
    bar.close()
    log.info(f"iteration {step}: loss {running:.6f}" if running is not None else f"iteration {step}")
    return {"step": step, "loss": running, "history": history, "seconds": time.time() - t0}


def _diverged(what: str, step: int, lr: float, ckpt_path: Path) -> str:
    kept = f"{ckpt_path} is kept as it was" if ckpt_path.exists() else "no checkpoint was written"
    return (f"training diverged at iteration {step}: {what}; stopped without saving ({kept}); "
            f"try a learning rate smaller than {lr:g}")
