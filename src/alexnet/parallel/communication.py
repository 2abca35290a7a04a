"""Bytes each strategy moves between devices per training step, from the model's shapes.

    python -m alexnet.parallel.communication            # batch 128, fp32 and bf16 activations
    python -m alexnet.parallel.communication --batch 256 --classes 1000

Two figures per collective. The *payload* is what each process hands to the call
(all-gather: its own piece; reduce-scatter and all-reduce: the whole buffer); the
tests count it in a real run and check the two against each other. The bytes each device *sends* follow from it for ring
algorithms over ``p`` devices: all-gather ``(p-1) x piece``, reduce-scatter
``(p-1)/p x buffer``, all-reduce ``2 (p-1)/p x buffer``.

DDP all-reduces every gradient once per step (fp32, whatever the autocast). The
towers exchange activations: at the paper's batch of 128 they send about an eighth
of what DDP does, which is why the paper could split one net over two GPUs joined by
PCIe. (Not per step, so not counted here: the towers' 32-byte check that both read
the same batch, every 50 steps, and the few bytes of the synchronized metrics.)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from alexnet.errors import ConfigError, command
from alexnet.model import AlexNet, count_parameters
from alexnet.parallel.towers import SHARDED, TOWERS, gather_points


@dataclass(frozen=True)
class Transfer:
    """One collective per step: what it carries, its kind, and its payload per process in bytes."""

    what: str
    kind: str  # all_gather | reduce_scatter | all_reduce
    payload: int
    group: int  # processes taking part

    @property
    def sent(self) -> float:
        """Bytes each device sends for it (ring algorithm)."""
        p = self.group
        if self.kind == "all_gather":
            return (p - 1) * self.payload
        if self.kind == "reduce_scatter":
            return (p - 1) / p * self.payload
        return 2 * (p - 1) / p * self.payload


def towers_transfers(batch: int, num_classes: int = 1000, activation_bytes: int = 4) -> list[Transfer]:
    """Per step and tower of the 2-tower net, ``batch`` images per replica.

    The places and sizes come from the model itself: its maps where a tower gathers
    (:func:`alexnet.parallel.gather_points`), measured on the meta device.
    """
    with torch.device("meta"):
        model = AlexNet(num_classes=num_classes)
        image = torch.empty(1, 3, 227, 227)
    maps: dict[str, torch.Size] = {}
    points = gather_points(model)
    for name in points:
        layer = getattr(model, name)
        layer.register_forward_pre_hook(lambda _, args, name=name: maps.__setitem__(name, args[0].shape[1:]))
    model(image)
    children = list(model.named_children())
    transfers = []
    for point in points:
        start = next(i for i, (name, _) in enumerate(children) if name == point)
        fed = next(name for name, layer in children[start:] if isinstance(layer, SHARDED))  # what the maps feed
        share = (maps[point][0] // TOWERS, *maps[point][1:])  # this tower's half of the maps
        piece = batch * torch.Size(share).numel() * activation_bytes
        what = f"{fed} input ({'x'.join(map(str, share))} per tower)"
        transfers.append(Transfer(f"{what}: forward", "all_gather", piece, TOWERS))
        transfers.append(Transfer(f"{what}: backward", "reduce_scatter", TOWERS * piece, TOWERS))
    classes = -(-num_classes // TOWERS)
    transfers.append(
        Transfer(f"logits ({classes} per tower)", "all_gather", batch * classes * activation_bytes, TOWERS)
    )
    return transfers


def ddp_transfers(num_classes: int = 1000, replicas: int = 2, towers: bool = False) -> list[Transfer]:
    """The gradient all-reduce of data parallelism (of one tower's parameters when ``towers``)."""
    with torch.device("meta"):
        model = AlexNet(num_classes=num_classes)
    params = count_parameters(model)
    if towers:  # each tower holds the rows torch.chunk gives it; the first tower holds the most
        params = sum(p.chunk(TOWERS)[0].numel() for p in model.parameters())
    what = "gradients of one tower" if towers else "gradients"
    return [Transfer(f"{what} ({params:,} fp32)", "all_reduce", 4 * params, replicas)]


def table(batch: int = 128, num_classes: int = 1000) -> str:
    """Markdown: bytes sent per device and step for DDP, towers and the 2x2 hybrid, fp32 and bf16."""

    def mb(transfers: list[Transfer]) -> str:
        return f"{sum(t.sent for t in transfers) / 1e6:,.1f} MB"

    rows = [
        ("DDP, 2 devices", f"{batch // 2} per device", ddp_transfers(num_classes), ddp_transfers(num_classes)),
        (
            "towers, 2 devices",
            f"{batch} per tower",
            towers_transfers(batch, num_classes, 4),
            towers_transfers(batch, num_classes, 2),
        ),
        (
            "towers 2 x DDP 2, 4 devices",
            f"{batch // 2} per replica",
            towers_transfers(batch // 2, num_classes, 4) + ddp_transfers(num_classes, towers=True),
            towers_transfers(batch // 2, num_classes, 2) + ddp_transfers(num_classes, towers=True),
        ),
    ]
    lines = [
        f"Bytes each device sends per training step, global batch {batch}, {num_classes} classes:",
        "",
        "| strategy | images | fp32 activations | bf16 activations |",
        "|---|---|---|---|",
        *(f"| {name} | {images} | {mb(fp32)} | {mb(bf16)} |" for name, images, fp32, bf16 in rows),
        "",
        f"Towers, per collective (batch {batch} per tower, fp32):",
        "",
        "| transfer | collective | payload | sent |",
        "|---|---|---|---|",
        *(
            f"| {t.what} | {t.kind} | {t.payload / 1e6:,.3f} MB | {t.sent / 1e6:,.3f} MB |"
            for t in towers_transfers(batch, num_classes)
        ),
    ]
    return "\n".join(lines)


@command
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128, help="global batch (the paper: 128)")
    parser.add_argument("--classes", type=int, default=1000)
    args = parser.parse_args()
    if args.batch < 2 or args.classes < 1:
        raise ConfigError(f"--batch {args.batch} --classes {args.classes}: the towers need a batch >= 2 and >= 1 class")
    print(table(args.batch, args.classes))


if __name__ == "__main__":
    main()
