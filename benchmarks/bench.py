"""Speed, side by side in one run: the training step, the training loop, the LRN's share, the input pipeline.

    python benchmarks/bench.py                      # everything, on CUDA if there is a GPU, else the CPU
    python benchmarks/bench.py --only step input --batch-sizes 32 --json bench.json

One table per section, all from this process and machine (this is what the README's
speed table quotes); ``--json`` writes every row. Sections:

- ``step``: one SGD step (forward, backward, update) of a synthetic batch already on the
  device, for naive PyTorch (the paper's net with ``torch.nn.LocalResponseNorm``, eager fp32),
  torchvision's ``alexnet`` (no LRN: the usual reference), and this project's net eager and
  compiled, fp32 and bf16; the same net without LRN gives the LRN's share of the step.
- ``loop``: ``python train.py`` itself (the demo data, data loading and callbacks included)
  for 0/1/2 DataLoader workers, against a bare eager bf16 loop of the same net without LRN.
- ``cifar``: ``python train.py experiment=cifar_fig1`` and ``cifar_lrn`` (in-memory CIFAR-10 format data,
  generated) against a bare step of the same net, in the precision train.py picks (issue 19: within 0.85).
- ``input``: images/s per core (one process, one thread) and in total (a DataLoader with
  a worker per core) for the raw full-size JPEG path (``data=imagenet``) and the prepared
  256x256 shards (``data=prepared``), each also from file to finished float batch on one thread;
  JPEG decoding on one thread with PIL, torchvision.io and TorchCodec; with CUDA, nvJPEG on the GPU.
  The images are generated photo-like full-size JPEGs (~500x375), or ``--images DIR``'s.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F

from alexnet.metric_names import TRAIN_SAMPLES_PER_SEC
from alexnet.model import AlexNet
from alexnet.training.hardware import keep_freed_memory, usable_cores

ROOT = Path(__file__).resolve().parents[1]  # the repository (train.py, conf/)
Row = dict[str, Any]


# --- the training step -----------------------------------------------------------------------------


def naive_alexnet() -> nn.Module:
    """The paper's net as a straightforward port writes it: torch.nn.LocalResponseNorm (alpha scaled by n)."""
    model = AlexNet(num_classes=1000)
    model.norm1 = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
    model.norm2 = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
    return model


def torchvision_alexnet() -> nn.Module:
    from torchvision.models import alexnet

    return alexnet(num_classes=1000)


MODELS: dict[str, Callable[[], nn.Module]] = {
    "naive PyTorch (nn.LocalResponseNorm)": naive_alexnet,
    "torchvision alexnet (no LRN)": torchvision_alexnet,
    "this project": lambda: AlexNet(num_classes=1000),
    "this project, no LRN": lambda: AlexNet(num_classes=1000, lrn=False),
}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def step_rate(
    make_model: Callable[[], nn.Module],
    *,
    device: str,
    batch: int,
    precision: str,
    compiled: bool = False,
    fused: bool = True,
    steps: int = 5,
    warmup: int = 2,
) -> Row:
    """Images/s of a training step; bf16 runs channels_last under autocast, fp32 NCHW (the naive default)."""
    torch.manual_seed(0)
    model = make_model().to(device)
    bf16 = precision == "bf16"
    x = torch.randn(batch, 3, 227, 227, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, fused=fused or None)
    forward = torch.compile(model) if compiled else model

    return timed_steps(forward, optimizer, x, y, device=device, bf16=bf16, steps=steps, warmup=warmup)


def timed_steps(
    forward: Callable, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *, device: str,
    bf16: bool, steps: int, warmup: int,
) -> Row:  # fmt: skip
    """Images/s of ``steps`` SGD steps (forward, backward, update) on one batch, after ``warmup`` untimed ones."""

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    _sync(device)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    return {"img_per_s": x.shape[0] / seconds, "step_ms": 1000 * seconds, "warmup_s": first}


def bench_step(device: str, batch_sizes: list[int], steps: int, compile_: bool) -> list[Row]:
    rows = []
    configs = [
        ("naive PyTorch (nn.LocalResponseNorm)", "fp32", False, False),
        ("torchvision alexnet (no LRN)", "fp32", False, True),
        ("torchvision alexnet (no LRN)", "bf16", False, True),
    ]
    for precision in ("fp32", "bf16"):
        for compiled in (False, True) if compile_ else (False,):
            configs += [
                ("this project", precision, compiled, True),
                ("this project, no LRN", precision, compiled, True),
            ]
    for batch in batch_sizes:
        for name, precision, compiled, fused in configs:
            try:
                result = step_rate(
                    MODELS[name], device=device, batch=batch, precision=precision, compiled=compiled,
                    fused=fused, steps=steps,
                )  # fmt: skip
            except Exception as error:  # e.g. no bf16 kernel for nn.LocalResponseNorm on this device
                result = {"img_per_s": float("nan"), "error": f"{type(error).__name__}: {error}"[:200]}
            row = {"section": "step", "model": name, "batch": batch, "precision": precision, "compiled": compiled}
            rows.append(row | result)
            _print_row(row | result)
    for row in rows:  # the LRN's share: (t_with - t_without) / t_with, same batch, precision and compile
        if row["model"] == "this project":
            other = next(
                r for r in rows
                if r["model"] == "this project, no LRN"
                and all(r[k] == row[k] for k in ("batch", "precision", "compiled"))
            )  # fmt: skip
            row["lrn_share"] = 1 - row["img_per_s"] / other["img_per_s"]
    return rows


# --- the training loop ------------------------------------------------------------------------------


def loop_rate(workers: int, steps: int, workdir: Path, extra: list[str]) -> Row:
    """``python train.py`` on the demo data for ``steps`` steps: ThroughputMonitor's last images/s."""
    overrides = [
        "logger=csv", f"trainer.max_steps={steps}", "trainer.limit_val_batches=0", "test=false",
        f"data.num_workers={workers}", "trainer.log_every_n_steps=5", "callbacks.throughput.window_size=10",
        "callbacks.model_checkpoint=null", "callbacks.last_checkpoint=null", "callbacks.conv1_filters=null",
        "+trainer.enable_checkpointing=false",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *overrides], cwd=workdir, env=env, capture_output=True, text=True
    )
    if result.returncode:
        return {"img_per_s": float("nan"), "error": result.stderr[-500:]}
    (metrics,) = sorted(workdir.glob("logs/train/runs/*/metrics.csv"), key=os.path.getmtime)[-1:]
    import csv

    with open(metrics) as file:
        rates = [float(r[TRAIN_SAMPLES_PER_SEC]) for r in csv.DictReader(file) if r.get(TRAIN_SAMPLES_PER_SEC)]
    return {"img_per_s": rates[-1], "run_s": time.perf_counter() - start}


def bench_loop(device: str, steps: int, workers: list[int], batch: int) -> list[Row]:
    rows = []
    bare = step_rate(MODELS["this project, no LRN"], device=device, batch=batch, precision="bf16", steps=10)
    row = {"section": "loop", "loop": "bare eager step, no LRN, bf16 channels_last", "batch": batch, "workers": None}
    rows.append(row | bare)
    _print_row(rows[-1])
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        extra = [
            f"data.batch_size={batch}", f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
            f"paths.data_dir={ROOT / 'data'}",  # the demo data is generated there once, as by python train.py
        ]  # fmt: skip
        for count in workers:
            result = loop_rate(count, steps, workdir, extra)
            row = {"section": "loop", "loop": "python train.py (paper net, LRN, demo data)", "batch": batch}
            row |= {"workers": count, **result, "vs_bare": result["img_per_s"] / bare["img_per_s"]}
            rows.append(row)
            _print_row(row)
    return rows


# --- CIFAR-10: the loop against a bare step ---------------------------------------------------------


def cifar_step_rate(net: str, *, device: str, batch: int, bf16: bool, steps: int = 20) -> Row:
    """Images/s of a bare training step of a CIFAR-10 net: channels_last, as the module runs it.

    The inputs are random 0-255 pixels less their mean, the range the loop feeds: with N(0, 1) inputs
    the nets' small initial weights (N(0, 1e-4) in conv1) make activations and gradients subnormal
    floats, which a CPU computes several times slower.
    """
    from alexnet.model import build_net

    torch.manual_seed(0)
    model = build_net(net, {}).to(device, memory_format=torch.channels_last)
    size = model.input_size
    pixels = torch.randint(0, 256, (batch, 3, size, size), device=device).float() - 127.5
    x = pixels.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    optimizer = torch.optim.SGD(model.param_groups(), lr=1e-3, momentum=0.9, fused=True)
    return timed_steps(model, optimizer, x, y, device=device, bf16=bf16, steps=steps, warmup=3)


def cifar_batches(folder: Path, per_batch: int = 2000) -> Path:
    """Random images in the official batches' format (pickled (N, 3072) uint8 rows): no data set needed."""
    import pickle

    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        data = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                b"labels": rng.integers(0, 10, per_batch).tolist()}  # fmt: skip
        (batches / name).write_bytes(pickle.dumps(data))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (batches / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}))
    return folder


def bench_cifar(device: str, steps: int) -> list[Row]:
    """``python train.py experiment=cifar_fig1 / cifar_lrn`` (in-memory data, batch 128) against a bare step."""
    from alexnet.training.hardware import auto_precision

    bf16 = "bf16" in auto_precision("gpu" if device == "cuda" else "cpu")  # what train.py runs in
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = cifar_batches(Path(tmp) / "cifar")
        for experiment, net in (("cifar_fig1", "CifarConvNet"), ("cifar_lrn", "CifarLocalNet")):
            bare = cifar_step_rate(net, device=device, batch=128, bf16=bf16)
            row = {"section": "cifar", "loop": f"bare step, {net}, {'bf16' if bf16 else 'fp32'}", "batch": 128}
            rows.append(row | bare)
            _print_row(rows[-1])
            extra = [f"experiment={experiment}", f"data.root={root}", "data.val_size=100",
                     f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}"]  # fmt: skip
            result = loop_rate(0, steps, Path(tmp), extra)
            row = {"section": "cifar", "loop": f"python train.py experiment={experiment}", "batch": 128}
            row |= {**result, "vs_bare": result["img_per_s"] / bare["img_per_s"]}
            rows.append(row)
            _print_row(row)
    return rows


# --- the input pipeline -----------------------------------------------------------------------------


def photo_like_jpegs(folder: Path, count: int, classes: int = 2, seed: int = 0) -> list[Path]:
    """Full-size JPEGs with the statistics that matter for decoding: ~500x375, smooth regions and texture."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        width, height = int(rng.integers(400, 520)), int(rng.integers(330, 480))
        coarse = rng.integers(0, 256, (height // 24 + 1, width // 24 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 10, (height, width, 3)).astype(np.int16)
        folder.joinpath(f"c{i % classes}").mkdir(parents=True, exist_ok=True)
        path = folder / f"c{i % classes}" / f"{i:05d}.JPEG"
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def _per_core(dataset, count: int) -> float:
    torch.set_num_threads(1)
    for i in range(min(8, len(dataset))):  # warm the page cache and the decoder
        dataset[i]
    start = time.perf_counter()
    for i in range(count):
        dataset[i % len(dataset)]
    return count / (time.perf_counter() - start)


def _total(dataset, workers: int, count: int, batch: int = 32) -> float:
    from alexnet.data.folder import collate

    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=count)
    loader = torch.utils.data.DataLoader(dataset, batch, sampler=sampler, num_workers=workers, collate_fn=collate)
    iterator = iter(loader)
    next(iterator)  # workers started
    start, images = time.perf_counter(), 0
    for inputs, _ in iterator:
        images += len(inputs["crop"]) if isinstance(inputs, dict) else len(inputs)
    return images / (time.perf_counter() - start)


def linked_jpegs(folder: Path, train: Path, classes: int = 2) -> int:
    """``--images DIR``: its JPEGs (any depth) as an ImageFolder of ``classes`` classes, by links; their count."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))
    if not paths:
        raise SystemExit(f"error: --images {folder} holds no .jpg/.JPEG files")
    for i, path in enumerate(paths):
        target = train / f"c{i % classes}" / f"{i:05d}.JPEG"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path.resolve())
    return len(paths)


def bench_input(device: str, images: int | Path) -> list[Row]:
    from torchvision import datasets
    from torchvision.transforms import v2

    from alexnet.data import PreparedDataModule
    from alexnet.data.images import load_rgb
    from alexnet.data.prepare import prepare
    from alexnet.data.transforms import RESIZE, RandomCropFlip, resize_and_centre_crop

    rows: list[Row] = []
    cores = len(usable_cores())
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        if isinstance(images, Path):
            images = linked_jpegs(images, src / "train")
        else:
            photo_like_jpegs(src / "train", images)
        photo_like_jpegs(src / "val", 2, seed=1)
        size_kb = np.mean([p.stat().st_size for p in (src / "train").rglob("*.JPEG")]) / 1000
        start = time.perf_counter()
        prepared_root = prepare(src, Path(tmp) / "prepared", workers=cores, shard_size=256)
        prepare_rate = images / (time.perf_counter() - start)
        prepared = PreparedDataModule(str(prepared_root), num_workers=cores)
        prepared.setup("fit")
        paths = {
            "raw JPEG, now (PIL draft decode, uint8 crop)": datasets.ImageFolder(
                src / "train",
                transform=v2.Compose([*resize_and_centre_crop(), RandomCropFlip()]),
                loader=partial(load_rgb, draft=RESIZE),
            ),
            "prepared 256x256 shards (decode + uint8 crop)": prepared.train_set,
        }
        for name, dataset in paths.items():
            per_core = _per_core(dataset, max(images, 200))
            torch.set_num_threads(threads)
            total = _total(dataset, cores, count=int(3 * per_core * cores))  # about 3 s
            row = {"section": "input", "path": name, "per_core": per_core, "total": total, "cores": cores}
            row["jpeg_kb"] = size_kb
            rows.append(row)
            _print_row(row)
        finished = {}
        for name, dataset in paths.items():
            finished[name] = _finished_per_core(dataset, prepared.batch_transform, max(images, 256))
            torch.set_num_threads(threads)
            rows.append({"section": "input", "path": f"{name.split(' (')[0]}, finished batches on 1 thread "
                         "(+ lighting, mean, scale)", "per_core": finished[name]})  # fmt: skip
            _print_row(rows[-1])
        raw_rate, prepared_rate = finished.values()
        rows[-1]["vs_raw"] = prepared_rate / raw_rate
        rows += bench_decode(src / "train", prepared.train_set)
        torch.set_num_threads(threads)
        row = {"section": "input", "path": "alexnet.data.prepare (writing shards, all cores)", "cores": cores}
        rows.append(row | {"per_core": prepare_rate / cores, "total": prepare_rate})
        _print_row(rows[-1])
        batch = prepared.batch_transform
        sample = torch.utils.data.default_collate([prepared.train_set[i][0] for i in range(64)])
        rows.append(_device_half(batch, sample, device))
        _print_row(rows[-1])
        if device == "cuda":
            on_device = PreparedDataModule(str(prepared_root), decode_on_device=True)
            on_device.setup("fit")
            rows.append(_gpu_decode(on_device, device))
            _print_row(rows[-1])
    return rows


def _finished_per_core(dataset, transform, count: int, batch: int = 64) -> float:
    """One thread from file to the model's float input: the workers' part and the batch's float work."""
    from alexnet.data.folder import collate

    torch.set_num_threads(1)

    def batches(n: int) -> int:
        done = 0
        for first in range(0, n, batch):
            inputs, _ = collate([dataset[i % len(dataset)] for i in range(first, min(first + batch, n))])
            done += len(transform(inputs))
        return done

    batches(batch)  # warm
    start = time.perf_counter()
    done = batches(count)
    return done / (time.perf_counter() - start)


def bench_decode(originals: Path, shards) -> list[Row]:
    """JPEG decoding on one thread, side by side: PIL, torchvision.io (deprecated from 0.29), TorchCodec."""
    import warnings

    from alexnet.data import jpeg

    torch.set_num_threads(1)
    files = sorted(originals.rglob("*.JPEG"))[:100]
    sources = {
        "originals": [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in files],
        "shards": [shards.jpeg(i) for i in range(min(len(shards), 100))],
    }

    def pil(data: Tensor) -> Tensor:
        with Image.open(io.BytesIO(data.numpy().tobytes())) as image:
            return torch.from_numpy(np.asarray(image.convert("RGB"))).permute(2, 0, 1)

    def torchvision_io(data: Tensor) -> Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_jpeg(data, mode=ImageReadMode.RGB)

    decoders = {"PIL (Image.open, convert RGB)": pil, "torchvision.io.decode_jpeg": torchvision_io}
    if jpeg.DECODER == "torchcodec":
        decoders["TorchCodec decode_jpeg (what the project uses)"] = jpeg.decode_rgb
    rows = []
    for name, decode in decoders.items():
        row: Row = {"section": "decode", "decoder": name}
        for kind, datas in sources.items():
            for data in datas[:5]:
                decode(data)
            start = time.perf_counter()
            for _ in range(3):
                for data in datas:
                    decode(data)
            row[kind] = 3 * len(datas) / (time.perf_counter() - start)
        rows.append(row)
        _print_row(row)
    return rows


def _device_half(transform, sample: dict, device: str) -> Row:
    """The batch's float work (lighting, per-pixel mean, scale) where the model runs."""
    sample = {k: v.to(device) for k, v in sample.items()}
    transform(sample)
    _sync(device)
    start = time.perf_counter()
    for _ in range(10):
        transform(sample)
    _sync(device)
    rate = 10 * len(sample["crop"]) / (time.perf_counter() - start)
    return {"section": "input", "path": f"batch float work on {device} (lighting, per-pixel mean)", "total": rate}


def _gpu_decode(dm, device: str, batch: int = 256, repeats: int = 5) -> Row:
    """Reading the bytes (one core) and decoding and cutting a batch on the GPU."""
    from alexnet.data.folder import collate

    def one_batch() -> None:
        samples = collate([dm.train_set[i % len(dm.train_set)] for i in range(batch)])
        dm.on_after_batch_transfer(dm.transfer_batch_to_device(samples, torch.device(device), 0), 0)

    one_batch()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        one_batch()
    _sync(device)
    rate = repeats * batch / (time.perf_counter() - start)
    return {
        "section": "input",
        "path": "prepared, nvJPEG batch decode on the GPU (bytes read on 1 core)",
        "total": rate,
    }


# --- output -----------------------------------------------------------------------------------------


def _print_row(row: Row) -> None:
    shown = {k: (f"{v:,.1f}" if isinstance(v, float) else v) for k, v in row.items() if k != "error"}
    print(
        "  ".join(f"{k}={v}" for k, v in shown.items()) + (f"  ERROR {row['error']}" if "error" in row else ""),
        flush=True,
    )


def markdown(rows: list[Row]) -> str:
    """The README's tables."""
    lines = []
    step = [r for r in rows if r["section"] == "step"]
    if step:
        lines += ["| step | batch | precision | compiled | img/s | LRN share |", "|---|---:|---|---|---:|---:|"]
        for r in step:
            share = f"{r['lrn_share']:.0%}" if "lrn_share" in r else ""
            lines.append(
                f"| {r['model']} | {r['batch']} | {r['precision']} | {'yes' if r['compiled'] else 'no'} "
                f"| {r['img_per_s']:,.1f} | {share} |"
            )
        lines.append("")
    loop = [r for r in rows if r["section"] in ("loop", "cifar")]
    if loop:
        lines += ["| loop | batch | workers | img/s | vs bare |", "|---|---:|---:|---:|---:|"]
        for r in loop:
            ratio = f"{r['vs_bare']:.2f}" if "vs_bare" in r else ""
            workers = "" if r.get("workers") is None else r["workers"]
            lines.append(f"| {r['loop']} | {r['batch']} | {workers} | {r['img_per_s']:,.1f} | {ratio} |")
        lines.append("")
    data = [r for r in rows if r["section"] == "input"]
    if data:
        lines += ["| input | img/s per core | img/s total |", "|---|---:|---:|"]
        for r in data:
            per_core = f"{r['per_core']:,.0f}" if "per_core" in r else ""
            total = f"{r['total']:,.0f}" if "total" in r else ""
            versus = f" ({r['vs_raw']:.1f}x the raw path's)" if "vs_raw" in r else ""
            lines.append(f"| {r['path']} | {per_core}{versus} | {total} |")
        lines.append("")
    decode = [r for r in rows if r["section"] == "decode"]
    if decode:
        lines += ["| decode, 1 thread | originals img/s | 256x256 shards img/s |", "|---|---:|---:|"]
        lines += [f"| {r['decoder']} | {r['originals']:,.0f} | {r['shards']:,.0f} |" for r in decode]
    return "\n".join(lines)


def _count_or_folder(value: str) -> int | Path:
    return int(value) if value.isdigit() else Path(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="+", choices=["step", "loop", "input", "cifar"],
                        default=["step", "loop", "input", "cifar"])  # fmt: skip
    parser.add_argument("--batch-sizes", nargs="+", type=int, help="default: 32 128 on a CPU, 128 512 on CUDA")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration (5 CPU, 20 CUDA)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--loop-steps", type=int, default=60)
    parser.add_argument("--loop-workers", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--images", type=_count_or_folder, default=200,
                        help="generated full-size JPEGs for the input rows (a count), or a folder of real ones")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write every row here")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    batch_sizes = args.batch_sizes or ([128, 512] if cuda else [32, 128])
    steps = args.steps or (20 if cuda else 5)
    device_name = torch.cuda.get_device_name() if cuda else platform.processor() or platform.machine()
    print(
        f"benchmarks/bench.py on {args.device} ({device_name}), torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    rows: list[Row] = []
    if not cuda:
        keep_freed_memory()  # as train.py does on a CPU, so that the bare steps and the loops compare
    if "step" in args.only:
        rows += bench_step(args.device, batch_sizes, steps, not args.no_compile)
    if "loop" in args.only:
        rows += bench_loop(args.device, args.loop_steps, args.loop_workers, 32 if not cuda else 128)
    if "input" in args.only:
        rows += bench_input(args.device, args.images)
    if "cifar" in args.only:
        rows += bench_cifar(args.device, args.loop_steps)
    print()
    print(markdown(rows))
    if args.json:
        meta = {
            "device": args.device,
            "device_name": device_name,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        print(f"\n{len(rows)} rows -> {args.json}")


if __name__ == "__main__":
    main()
