"""Errors the user fixes, and how every command reports them: one line, ``error: <problem and fix>``, exit 2.

Bad data, an invalid setting, a missing or unreadable checkpoint, an unknown
experiment and a diverged run are not bugs in this code: a traceback would bury
the one line that says what to change. Everything else is, and keeps its traceback.
``HYDRA_FULL_ERROR=1`` shows the traceback of every error.

The Hydra entry points (train.py, eval.py, predict.py) run through :func:`run_main`, every
``python -m alexnet...`` command's ``main`` is decorated with :func:`command`: one error path for all
of them. (The one other exit: ``python -m alexnet.results.dashboard`` says in one line that the W&B
server did not answer and exits 1, for an outage is not bad input.)
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

USAGE_EXIT_CODE = 2  # what argparse and most command-line tools return for bad input
_SET_BY_US = "_ALEXNET_HYDRA_FULL_ERROR"  # tells our own HYDRA_FULL_ERROR=1 from the user's (in child processes too)


class UserError(Exception):
    """A problem the user fixes; the message names the problem and the fix."""


class ConfigError(UserError, ValueError):
    """A config value that cannot work (``model.dropout=1.5``, ``ckpt_path=last`` in a sweep)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that is missing, unreadable, or of another model."""


class DataError(UserError, RuntimeError):
    """The data on disk cannot be used as configured."""


class TrainingDiverged(UserError, ArithmeticError):
    """The loss became NaN or infinite (see :class:`alexnet.training.callbacks.StopOnDivergence`)."""


def _hydra_user_errors() -> tuple[type[BaseException], ...]:
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    return ConfigCompositionException, MissingConfigException, OverrideParseException


def user_error(error: BaseException) -> BaseException | None:
    """The user error behind ``error``, or None if it is a bug (which keeps its traceback).

    Only explicit causes are followed (Hydra's ``instantiate`` wraps a constructor's error with
    ``raise ... from``): an error raised while handling a user error is a bug of its own.
    """
    cause: BaseException | None = error
    for _ in range(10):
        if cause is None:
            break
        if isinstance(cause, UserError):
            return cause
        cause = cause.__cause__
    if isinstance(error, _hydra_user_errors()):  # a typo in an override, an unknown group option
        return error
    return None


def one_line(error: BaseException) -> str:
    """The message on one line; Hydra's own errors with their cause (``Key 'max_epoch' is not in struct``)."""
    text = str(error).split("Config search path:")[0]  # Hydra's list of where it looked for configs
    if not isinstance(error, UserError) and error.__cause__ is not None:
        text += f" ({str(error.__cause__).splitlines()[0]})"
    return " ".join(line.strip() for line in text.splitlines() if line.strip()) or type(error).__name__


def _wants_traceback() -> bool:
    """The user's ``HYDRA_FULL_ERROR=1`` (not the one :func:`run_main` sets for itself)."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1" and not os.environ.get(_SET_BY_US)


def _report(error: BaseException) -> None:
    """Re-raise a bug (or anything, when the user asked for tracebacks); a user error as one line, exit 2."""
    found = None if _wants_traceback() else user_error(error)
    if found is None:
        raise error
    print(f"error: {one_line(found)}", file=sys.stderr)
    sys.exit(USAGE_EXIT_CODE)


def run_main(main: Callable[[], Any]) -> None:
    """Run a ``@hydra.main`` function; report a user error as one line and exit 2.

    Hydra prints an error from inside the job with a filtered traceback and exits 1;
    with ``HYDRA_FULL_ERROR=1`` it raises it instead, which is how this sees it.
    """
    if not _wants_traceback():
        os.environ["HYDRA_FULL_ERROR"] = os.environ[_SET_BY_US] = "1"
    try:
        main()
    except Exception as error:
        _report(error)


def command(main: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a ``python -m alexnet...`` command's ``main``: a user error becomes one line and exit 2.

    argparse reports a malformed command line itself (usage, then ``error: ...``, exit 2); this does
    the same for what the command finds wrong (a missing folder, a file of the wrong kind), also when
    it comes wrapped (Hydra's ``instantiate`` raises a constructor's error ``from`` its own).
    """

    @functools.wraps(main)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except Exception as error:
            _report(error)

    return run
