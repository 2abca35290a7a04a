"""Training throughput of the paper's model, and what the LRN costs.

    python benchmarks/train_step.py                 # batch 32 on this machine's CPU or GPU
    python benchmarks/train_step.py --batch-size 128 --steps 20

Prints images/second for one SGD step (forward, backward, update) of AlexNet at
227x227 for each precision and memory layout, with this project's LocalResponseNorm,
with torch.nn.LocalResponseNorm (the same formula, alpha scaled by n) and without LRN.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.nn import functional as F

from alexnet.model import AlexNet


def images_per_second(lrn: str, precision: str, channels_last: bool, batch: int, steps: int, device: str) -> float:
    torch.manual_seed(0)
    model = AlexNet(num_classes=1000, lrn=lrn != "none").to(device)
    if lrn == "torch":
        model.norm1 = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
        model.norm2 = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
    x = torch.randn(batch, 3, 227, 227, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"AlexNet training step, batch {args.batch_size}, {args.device}, {torch.get_num_threads()} threads")
    images_per_second("alexnet", "32-true", False, args.batch_size, 2, args.device)  # the process's first-use costs
    print(f"{'precision':12}{'layout':15}{'alexnet LRN':>13}{'torch LRN':>11}{'no LRN':>9}  (images/s)")
    for precision in ("32-true", "bf16-mixed"):
        for channels_last in (False, True):
            rates = []
            for lrn in ("alexnet", "torch", "none"):
                try:
                    rates.append(
                        images_per_second(lrn, precision, channels_last, args.batch_size, args.steps, args.device)
                    )
                except (RuntimeError, NotImplementedError):  # torch's LRN has no bf16 CPU kernel
                    rates.append(float("nan"))
            layout = "channels_last" if channels_last else "NCHW"
            print(f"{precision:12}{layout:15}{rates[0]:>13.1f}{rates[1]:>11.1f}{rates[2]:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
