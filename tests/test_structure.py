"""How the package hangs together: layers that import downwards only, no circles, no import side effects, one owner
for each contract (metric names, the run folder, the error path) that the configs and every command share."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir

PACKAGE = ROOT / "src" / "alexnet"
# What each layer may import of the package (besides itself). The contracts beside the layers
# (errors, metric_names, run_folder, checkpoint, tracking) are for every layer above data; the tasks use everything.
CONTRACTS = {"alexnet.errors", "alexnet.metric_names", "alexnet.run_folder", "alexnet.checkpoint", "alexnet.tracking"}
TASKS = {"alexnet.train", "alexnet.evaluate", "alexnet.predict"}
ALLOWED = {
    "alexnet.model": {"alexnet.errors"},
    "alexnet.data": {"alexnet.errors", "alexnet.run_folder"},  # run_folder's atomic writer
    "alexnet.parallel": {"alexnet.errors", "alexnet.model"},
    "alexnet.training": CONTRACTS | {"alexnet.model", "alexnet.data", "alexnet.parallel"},
    "alexnet.results": CONTRACTS | {"alexnet.model", "alexnet.data"},
    # The contracts: the checkpoint's format needs the net and the normalization; none needs a layer above.
    **{contract: CONTRACTS | {"alexnet.model", "alexnet.data"} for contract in CONTRACTS},
}


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


def _layer(module: str) -> str:
    """``alexnet.training.callbacks`` -> ``alexnet.training``; a top-level module is its own."""
    return ".".join(module.split(".")[:2])


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
    assert "alexnet.results.figures" in edges["alexnet.results.report"]  # the graph sees function-level imports too


def test_each_layer_imports_only_the_layers_below_it():
    crossings = [
        f"{module} imports {imported}"
        for module, imports in _imports().items()
        if _layer(module) in ALLOWED
        for imported in imports
        if _layer(imported) != _layer(module) and _layer(imported) not in ALLOWED[_layer(module)]
    ]
    assert not crossings, "\n".join(crossings)
    layers = {_layer(m) for m in _imports()}
    assert set(ALLOWED) <= layers and layers >= CONTRACTS  # the tree the rules are about


def test_the_contracts_import_no_layer_above_model_and_data():
    edges = _imports()
    for contract in CONTRACTS:
        above = {_layer(m) for m in edges[contract]} & {"alexnet.training", "alexnet.results", "alexnet.parallel"}
        assert not above, f"{contract} imports {above}"


IMPORT_EVERYTHING = """
import importlib, logging, os, pkgutil, sys, warnings
from omegaconf import OmegaConf
RESOLVERS = sys.argv[1].split(",")
for name in sys.argv[2:]:  # the libraries first: some change the warnings filters or the environment themselves
    try:
        importlib.import_module(name)
    except ImportError:
        pass
filters, environ, handlers = list(warnings.filters), dict(os.environ), list(logging.getLogger().handlers)
import alexnet
names = [m.name for m in pkgutil.walk_packages(alexnet.__path__, "alexnet.") if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names))
assert not [r for r in RESOLVERS if OmegaConf.has_resolver(r)], "a module registered a resolver"
assert list(warnings.filters) == filters, f"a module changed the warnings filters: {warnings.filters[:2]}"
assert dict(os.environ) == environ, f"a module set an environment variable: {set(os.environ) - set(environ)}"
assert list(logging.getLogger().handlers) == handlers, "a module configured logging"
from alexnet.training.config import register_resolvers
register_resolvers()
assert all(OmegaConf.has_resolver(r) for r in RESOLVERS), "conf/ uses a resolver that register_resolvers lacks"
"""


def _libraries() -> list[str]:
    """Every module outside the package that the package imports, by its full name."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
    return sorted(name for name in found if not name.startswith("alexnet") and name != "__future__")


def _resolvers_in_conf() -> set[str]:
    """Every resolver conf/ interpolates (``${run_name:}``), less Hydra's own."""
    used = {name for path in (ROOT / "conf").rglob("*.yaml") for name in re.findall(r"\$\{(\w+):", path.read_text())}
    return used - {"hydra", "now"}


def test_importing_a_module_changes_nothing_global():
    resolvers = ",".join(sorted(_resolvers_in_conf()))
    assert {"run_name", "metric", "job_folder"} <= set(resolvers.split(","))
    command = [sys.executable, "-c", IMPORT_EVERYTHING, resolvers, *_libraries()]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[-1]) > 30  # every module of the package was imported


def test_eval_needs_nothing_of_train():
    code = "import sys, alexnet.evaluate; print('alexnet.train' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_slurm_job_registers_the_resolvers_before_hydra_resolves_its_folder():
    """What a submitit worker does: it unpickles the launcher and calls it; it never runs train.py."""
    code = """
from unittest import mock
from omegaconf import OmegaConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from hydra_plugins.alexnet_lab.slurm_launcher import SlurmLauncher
with mock.patch.object(BaseSubmititLauncher, "__call__", lambda self, *a, **k: OmegaConf.create(
        {"log": "train${rank_suffix:}.log", "monitor": "${metric:VAL_TOP1_ERROR}"})):
    config = SlurmLauncher.__new__(SlurmLauncher)(["seed=1"], "hydra.sweep.dir", 0, "id", {})
print(config.log, config.monitor)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "RANK": "1"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["train_rank1.log", "val/top1_error"]


def _composed(overrides: list[str] = ()):
    """train.py's config as a run resolves it (Hydra's runtime set, so that ${hydra:...} resolves)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    with initialize_config_dir(str(ROOT / "conf")):
        cfg = compose("train", overrides=["trainer.accelerator=cpu", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = "logs/train/runs/now"
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_the_configs_name_metrics_through_metric_names_only():
    """No config spells a metric key: each refers to alexnet.metric_names (``${metric:NAME}``)."""
    from alexnet import metric_names

    keys = {v for k, v in vars(metric_names).items() if k.isupper() and isinstance(v, str) and "/" in v}
    spelt = [
        f"{path.relative_to(ROOT)}: {key}"
        for path in (ROOT / "conf").rglob("*.yaml")
        for key in keys
        if re.search(rf"(?<![\w/]){re.escape(key)}(?![\w/])", path.read_text())
    ]
    assert not spelt, spelt
    cfg = _composed(["hparams_search=optuna"])
    assert cfg.callbacks.model_checkpoint.monitor == metric_names.VAL_TOP1_ERROR
    assert cfg.optimized_metric == metric_names.BEST_VAL_TOP1_ERROR
    assert "{" + metric_names.VAL_TOP1_ERROR + ":.4f}" in cfg.callbacks.model_checkpoint.filename


def test_the_configs_write_the_run_folder_that_run_folder_describes():
    from alexnet import run_folder

    cfg = _composed()
    output = Path(cfg.paths.output_dir)
    assert Path(cfg.callbacks.model_checkpoint.dirpath) == output / run_folder.CHECKPOINTS
    assert Path(cfg.callbacks.last_checkpoint.dirpath) == output / run_folder.CHECKPOINTS
    assert cfg.callbacks.last_checkpoint.filename + ".ckpt" == run_folder.LAST_CHECKPOINT
    assert Path(cfg.callbacks.conv1_filters.dirpath) == output / run_folder.CONV1
    assert Path(cfg.logger.csv.save_dir) == output  # metrics.csv and hparams.yaml at the top
    assert Path(cfg.trainer.default_root_dir) == output  # where Lightning looks for hpc_ckpt_*.ckpt
    assert cfg.hydra.output_subdir == run_folder.HYDRA


COMMANDS = [  # every python -m command of the package, with a path that does not exist
    ("alexnet.results.report", ["nowhere"]),
    ("alexnet.results.figures", ["nowhere"]),
    ("alexnet.results.dashboard", ["nowhere", "--dry-run"]),
    ("alexnet.data.prepare", ["nowhere", "nowhere-prepared"]),
    ("alexnet.data.stats", ["nowhere"]),
    ("alexnet.data.imagenet_val", ["nowhere", "--labels", "nowhere.txt"]),
]


def test_the_commands_are_all_listed():
    found = {_module_name(p).removesuffix(".__main__") for p in PACKAGE.rglob("*.py") if "__main__" in p.read_text()}
    assert found - {"alexnet.parallel.communication"} == {name for name, _ in COMMANDS}  # that one takes no path


@pytest.mark.parametrize(("module", "args"), COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_command_answers_a_missing_path_with_one_line(tmp_path, module, args):
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert (result.returncode, len(lines)) == (2, 1), result.stderr[-2000:]
    assert lines[0].startswith("error: ") and "nowhere" in lines[0]
    assert not (tmp_path / "nowhere-prepared").exists() and not (tmp_path / "nowhere-prepared.partial").exists()


def test_every_target_in_conf_is_one_that_the_entry_points_trust():
    """Hydra 1.4 resolves a config's _target_ only where the entry points' execution whitelist allows it."""
    from alexnet.training.config import TRUSTED_TARGETS

    def trusted(target: str) -> bool:
        return any(target == t or (t.endswith(".*") and target.startswith(t[:-1])) for t in TRUSTED_TARGETS)

    targets = {
        f"{path.relative_to(ROOT)}: {match}"
        for path in (ROOT / "conf").rglob("*.yaml")
        for match in re.findall(r"^\s*_target_:\s*([\w.]+)", path.read_text(), flags=re.M)
        if not trusted(match) and not match.startswith("hydra_plugins.hydra_optuna_sweeper.")  # Hydra's own plugin
    }
    assert not targets, targets
