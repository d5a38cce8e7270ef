"""The command line's contract for errors: usage errors exit 2, our errors say what happened, bugs are said as bugs."""

from __future__ import annotations

import tempfile

import pytest

import medallion_nb.export
from medallion_nb.cli import EXIT_FAILED, EXIT_USAGE, main
from medallion_nb.errors import LakeError, UsageError


@pytest.fixture
def failing_export(monkeypatch, tmp_path):
    """``medallion-nb export`` raising what the test gives; bug reports go to ``tmp_path``."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    def fail_with(exc: BaseException) -> None:
        def export_tables(*args, **kwargs):
            raise exc

        monkeypatch.setattr(medallion_nb.export, "export_tables", export_tables)

    return fail_with


@pytest.mark.parametrize("exc", [KeyError("layer"), ValueError("could not convert string to float: 'x'"),
                                 TypeError("unsupported operand")])
def test_a_bug_is_said_as_one_in_a_few_lines_with_the_traceback_kept_in_a_file(failing_export, tmp_path, capsys,
                                                                                  exc):
    failing_export(exc)
    code = main(["export", "--project", str(tmp_path)])
    err = capsys.readouterr().err
    # Not "bad usage" (2): a ValueError raised deep inside a library is not the user's mistake.
    assert code == EXIT_FAILED
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith(f"error: internal error in medallion_nb {medallion_nb.__version__}: "
                               f"{type(exc).__name__}: ")
    assert "(at medallion_nb/cli.py:" in lines[0]
    assert "this is a bug in medallion_nb, not in your project" in lines[1]
    assert "please report it" in lines[1]
    assert "Traceback" not in err
    (saved,) = tmp_path.glob("medallion-nb-bug-*.txt")
    assert str(saved) in lines[1]
    text = saved.read_text(encoding="utf-8")
    assert "command 'export'" in text
    assert "Traceback (most recent call last)" in text
    assert f"{type(exc).__name__}: " in text


def test_a_usage_error_exits_2_with_its_message(failing_export, tmp_path, capsys):
    failing_export(UsageError("export: --layer 'x' is not a layer"))
    assert main(["export", "--project", str(tmp_path)]) == EXIT_USAGE
    assert capsys.readouterr().err == "error: export: --layer 'x' is not a layer\n"
    assert not list(tmp_path.glob("medallion-nb-bug-*"))


def test_our_errors_exit_1_with_their_message_and_hint(failing_export, tmp_path, capsys):
    failing_export(LakeError("table gold.x cannot be read", hint="run the gold layer"))
    assert main(["export", "--project", str(tmp_path)]) == EXIT_FAILED
    assert capsys.readouterr().err == "error: table gold.x cannot be read\n  hint: run the gold layer\n"


def test_bad_command_line_values_are_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--project", str(tmp_path), "-p", "no-equals-sign"])
    assert exit_.value.code == EXIT_USAGE
    assert "argument -p/--param: parameter 'no-equals-sign': expected name=value" in capsys.readouterr().err
    assert main(["sample-data", "--orders", "0", "--out", str(tmp_path / "raw")]) == EXIT_USAGE
    assert capsys.readouterr().err == "error: sample data needs at least 1 order and 2 days\n"
