"""Training-step throughput of TransPose-R configurations, side by side in one run.

    python bench/train_speed.py [--threads 2] [--batch-size 32]

One step is forward, joints-MSE backward and an Adam update on random input, channels_last; the median of
five steps after a warm-up one. bfloat16 autocast is measured too: on a CPU without native bfloat16
(AVX512-BF16 or AMX) it is emulated, which is why `tpexplain train` only turns it on where it is native.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from tpexplain import zoo
from tpexplain.models.transpose import TransPoseR
from tpexplain.training.train import joints_mse, native_bf16

SMALL = dict(stem_channels=16, blocks=(1, 1), planes=(16, 32), d_model=64, nhead=2, dim_feedforward=128,
             num_layers=3, deconv_channels=64, dropout=0.0)


def step_seconds(net: torch.nn.Module, batch: int, bf16: bool, steps: int = 5) -> float:
    net = net.to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.randn(batch, 3, 256, 192).contiguous(memory_format=torch.channels_last)
    target, weight = torch.rand(batch, 17, 64, 48), torch.ones(batch, 17)
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = net(x)
        loss = joints_mse(pred.float(), target, weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def _default_with_dropout(p: float) -> torch.nn.Module:
    """The default model's architecture with the official TransPose dropout (attention dropout on CPU takes a
    slower path than the fused kernel: why the default recipe trains without it)."""
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in zoo.entry("default")["config"].items()}
    return TransPoseR(**{**config, "dropout": p, "attn_dropout": p})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, native bfloat16: {native_bf16()}")
    runs = [("default", lambda: zoo.build("default"), False), ("default", lambda: zoo.build("default"), True),
            ("default+drop.1", lambda: _default_with_dropout(0.1), False),
            ("3-layer d=64", lambda: TransPoseR(**SMALL), False)]
    for name, build, bf16 in runs:
        torch.manual_seed(0)
        # emulated bfloat16 is ~10x slower: one timed step says enough there
        s = step_seconds(build(), args.batch_size, bf16, steps=5 if not bf16 or native_bf16() else 1)
        print(f"{name:14s} {'bfloat16' if bf16 else 'float32 '}  {s:6.2f} s/step  {args.batch_size / s:6.1f} img/s  "
              f"3 h = {args.batch_size / s * 10800 / 1000:.0f} k crops")


if __name__ == "__main__":
    main()
