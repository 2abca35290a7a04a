"""How the package hangs together: no import circles, entry points that need only what they use, one config module."""

import ast
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "src" / "alexnet"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """alexnet.* module -> the alexnet.* modules it imports anywhere in its body (functions included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("alexnet"):
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                          for a in node.names}  # fmt: skip
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("alexnet")}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def test_no_import_circle_in_the_package():
    edges = _imports()
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges[node]):
            assert state.get(nxt) != "open", f"import circle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            visit(name, [])
    assert "alexnet.data.shapes" in edges["alexnet.data.datamodule"]  # the graph sees function-level imports too


def test_eval_needs_nothing_of_train():
    code = "import sys, alexnet.evaluate; print('alexnet.train' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_importing_an_entry_points_code_is_enough_for_conf_to_resolve():
    """What a submitit worker does: it imports alexnet.train (or .evaluate) and never runs train.py."""
    for module, entry in (("alexnet.train", "train"), ("alexnet.evaluate", "eval")):
        code = f"""
import {module}
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
with initialize_config_dir({str(ROOT / "conf")!r}, version_base="1.3"):
    cfg = compose({entry!r}, overrides=["trainer.accelerator=cpu", "ckpt_path=x"], return_hydra_config=True)
print(cfg.trainer.precision, cfg.hydra.run.dir, OmegaConf.create({{"log": "train${{rank_suffix:}}.log"}}).log)
"""
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "RANK": "1"}
        )
        assert result.returncode == 0, result.stderr[-2000:]
        precision, run_dir, log_suffix = result.stdout.split()
        assert precision in ("bf16-mixed", "32-true") and run_dir.startswith(f"logs/{entry}/runs/")
        assert log_suffix == "train_rank1.log"  # ${rank_suffix:}


def test_the_old_module_name_still_sorts_imagenet_val():
    result = subprocess.run([sys.executable, "-m", "alexnet.data.imagenet", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--labels" in result.stdout
