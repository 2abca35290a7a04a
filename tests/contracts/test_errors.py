"""The error path: which errors are the user's (one line, exit 2) and which keep their traceback."""

import pytest

from alexnet.errors import ConfigError, DataError, command, user_error


def test_only_explicit_causes_make_an_error_a_user_error():
    from hydra.errors import InstantiationException

    wrapped = InstantiationException("Error in call to target 'alexnet.model.AlexNet'")
    wrapped.__cause__ = ConfigError("model.towers=3 is not valid")  # how instantiate raises it
    assert user_error(wrapped) is wrapped.__cause__
    try:
        try:
            raise DataError("data.root=/x does not exist")
        except DataError:
            raise RuntimeError("a bug while reporting it") from None
    except RuntimeError as bug:
        assert user_error(bug) is None  # keeps its traceback
    try:
        try:
            raise DataError("data.root=/x does not exist")
        except DataError:
            {}["missing"]  # a bug in the handler: only __context__ links it to the user error
    except KeyError as bug:
        assert user_error(bug) is None


def test_a_command_reports_a_user_error_in_one_line_and_a_bug_with_its_traceback(capsys):
    @command
    def missing(path: str) -> None:
        raise DataError(f"{path} does not exist:\n pass another folder")

    with pytest.raises(SystemExit) as exit:
        missing("/nowhere")
    assert exit.value.code == 2
    assert capsys.readouterr().err == "error: /nowhere does not exist: pass another folder\n"

    @command
    def bug() -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        bug()
