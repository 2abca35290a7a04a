"""W&B never blocks or stops a run: mode resolution, missing package, failing server."""

import sys

import pytest

from alexnet import tracking


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
    assert tracking.wandb_logger(str(tmp_path)) is None


def test_failing_online_start_falls_back_to_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
    modes = []

    class FlakyLogger:
        def __init__(self, offline: bool, **kwargs):
            self.offline = offline
            modes.append("offline" if offline else "online")

        @property
        def experiment(self):
            if not self.offline:
                raise ConnectionError("server unreachable")
            return object()

    monkeypatch.setattr(tracking, "WandbLogger", FlakyLogger)
    logger = tracking.wandb_logger(str(tmp_path), mode="online")
    assert isinstance(logger, FlakyLogger) and logger.offline and modes == ["online", "offline"]


def test_w_and_b_failing_entirely_means_csv_only(monkeypatch, tmp_path):
    class BrokenLogger:
        def __init__(self, **kwargs):
            raise RuntimeError("wandb-core would not start")

    monkeypatch.setattr(tracking, "WandbLogger", BrokenLogger)
    assert tracking.wandb_logger(str(tmp_path), mode="offline") is None
