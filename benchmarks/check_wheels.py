"""Check here, before a GPU lease is spent on it, that the wheels in .whl/ install on the GPU machine.

benchmarks/gpu_check.sh installs them there with ``pip install --no-index --find-links .whl ...`` beside the
machine's own packages (benchmarks/gpu_machine_packages.txt), on Python 3.12. This runs pip's resolver on
the same request as a dry run for that Python, the machine's packages stood in for by empty wheels of their
names and versions, and exits 1 with pip's own explanation where it would fail there (two wheels that exclude
each other, a dependency neither carried nor on the machine, a wheel for another Python).

    benchmarks/download_wheels.sh && python benchmarks/check_wheels.py     # .ci/run does both
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CARRIED = ("hydra-core", "omegaconf", "torchdata")  # what gpu_check.sh installs from .whl/


def machine_packages(listing: Path) -> dict[str, str]:
    """Name -> version of the GPU machine's packages; unversioned lines take this environment's version."""
    packages = {}
    for line in listing.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        pinned = [s.version for s in requirement.specifier if s.operator == "=="]
        try:
            version = pinned[0] if pinned else importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # not here either: a wheel that needs it fails the check, as it would there
        packages[canonicalize_name(requirement.name)] = version
    return packages


def stand_in_wheel(folder: Path, name: str, version: str) -> Path:
    """An empty wheel that tells pip only that ``name==version`` is installed."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: check_wheels\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{path},sha256={_digest(text)},{len(text.encode())}" for path, text in files.items()]
    files[f"{dist}.dist-info/RECORD"] = "\n".join([*record, f"{dist}.dist-info/RECORD,,"]) + "\n"
    path = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, text in files.items():
            wheel.writestr(member, text)
    return path


def _digest(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl")
    parser.add_argument("--python-version", default="3.12")
    parser.add_argument("--packages", type=Path, default=ROOT / "benchmarks" / "gpu_machine_packages.txt")
    args = parser.parse_args()
    if not any(args.wheels.glob("*.whl")):
        print(f"error: no wheels in {args.wheels}: run benchmarks/download_wheels.sh first", file=sys.stderr)
        return 2
    machine = machine_packages(args.packages)
    with tempfile.TemporaryDirectory() as stand_ins, tempfile.TemporaryDirectory() as target:
        for name, version in machine.items():
            stand_in_wheel(Path(stand_ins), name, version)
        command = [  # --target: pip before 23 takes another platform's options only with it
            sys.executable, "-m", "pip", "--isolated", "install", "--dry-run", "--target", target, "--no-index",
            "--only-binary=:all:", "--python-version", args.python_version, "--implementation", "cp",
            "--platform", "manylinux2014_x86_64", "--find-links", str(args.wheels), "--find-links", stand_ins,
            *CARRIED, *(f"{name}=={version}" for name, version in machine.items()),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stderr[-3000:] or result.stdout[-3000:], file=sys.stderr)
        print(f"error: the wheels in {args.wheels} do not install on the GPU machine (Python "
              f"{args.python_version} beside {args.packages.name}): see pip above", file=sys.stderr)  # fmt: skip
        return 1
    carried = sorted(p.name for p in args.wheels.glob("*.whl"))
    print(f"ok: {', '.join(carried)} install on Python {args.python_version} beside the GPU machine's packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
