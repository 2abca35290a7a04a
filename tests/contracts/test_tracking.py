"""W&B never blocks or stops a run: mode resolution, missing package, failing server."""

import json
import os
import subprocess
import sys

import pytest
from conftest import closed_port
from wandb_records import summarize

from alexnet import tracking
from alexnet.training import loggers


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    return tmp_path / "netrc"


def test_auto_mode_is_offline_without_credentials_and_online_with_them(no_credentials, monkeypatch):
    assert tracking.resolve_mode("auto") == "offline"
    no_credentials.write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")
    assert tracking.resolve_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the user's explicit choice wins
    assert tracking.resolve_mode("auto") == "disabled"
    assert tracking.resolve_mode("offline") == "offline"
    no_credentials.unlink()
    assert tracking.resolve_mode("online") == "offline"  # never a login prompt
    with pytest.raises(ValueError, match=r"logger.wandb.mode='cloud' .* allowed values"):
        tracking.resolve_mode("cloud")


def test_missing_wandb_package_means_csv_only(monkeypatch, tmp_path, no_credentials):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    assert loggers.wandb_logger(str(tmp_path)) is None


OUTAGE = """
import json, sys, time
from alexnet.training import loggers

start = time.monotonic()
logger = loggers.wandb_logger(sys.argv[1], mode="online", init_timeout=3, finish_timeout=5)
started = time.monotonic() - start
mode = logger.experiment.settings.mode
logger.log_metrics({"train/loss": 1.5}, step=1)
loggers.finish_wandb([logger])
again = loggers.wandb_logger(sys.argv[1] + "/next_job", mode="online")  # the next job of a sweep
next_job = again.experiment.settings.mode
loggers.finish_wandb([again])
print("result:", json.dumps({"started_s": started, "mode": mode, "next_job": next_job}))
"""


def test_an_unreachable_server_costs_init_timeout_then_the_run_is_logged_offline(tmp_path):
    env = {**os.environ, "WANDB_API_KEY": "0" * 40, "WANDB_BASE_URL": f"http://127.0.0.1:{closed_port()}"}
    env.pop("WANDB_MODE", None)
    run = subprocess.run(
        [sys.executable, "-c", OUTAGE, str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = [line for line in run.stdout.splitlines() if line.startswith("result: ")]
    result = json.loads(line.removeprefix("result: "))
    assert result["mode"] == "offline" and result["next_job"] == "offline"
    assert result["started_s"] < 30  # 3 s for the server, then offline at once (it was ~200 s)
    assert "W&B could not start the training run in online mode" in run.stderr
    assert "W&B did not answer earlier in this process: the training run logged offline" in run.stderr  # no 2nd wait
    (offline,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")  # what `wandb sync` uploads
    assert {"train/loss"} <= {k for row in summarize(offline)["history"] for k in row}


def test_w_and_b_failing_entirely_means_csv_only(monkeypatch, tmp_path):
    class BrokenLogger:
        def __init__(self, **kwargs):
            raise RuntimeError("wandb-core would not start")

    monkeypatch.setattr(loggers, "RunWandbLogger", BrokenLogger)
    assert loggers.wandb_logger(str(tmp_path), mode="offline") is None
