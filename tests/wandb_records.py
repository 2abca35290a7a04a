"""Read an offline W&B run file (``run-<id>.wandb``) without a server.

The file is a LevelDB-style log of protobuf ``Record`` messages: a 7-byte file
header, then 32 KiB blocks of chunks, each with a 7-byte header (CRC32, length,
type: full, first, middle or last piece of a record).
"""

import struct
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B" and magic == 0xBEE1, f"{path} is not a W&B run file"
    pos, pieces = 7, b""
    while pos + 7 <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:  # block trailer: zero padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        pieces = chunk if kind in (FULL, FIRST) else pieces + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def summarize(path: Path) -> dict:
    """The run's id, group, config keys, logged metric names, history rows and their W&B steps."""
    out: dict = {"history": [], "steps": [], "config": {}, "run": None}
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            for item in record.run.config.update:
                out["config"][_key(item)] = item.value_json
        elif kind == "config":
            for item in record.config.update:
                out["config"][_key(item)] = item.value_json
        elif kind == "history":
            out["history"].append({_key(item): item.value_json for item in record.history.item})
            out["steps"].append(record.history.step.num)  # W&B's step: the trainer's (RunWandbLogger)
    return out
