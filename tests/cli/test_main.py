"""The keras-opt command: --version, --help, python -m keras_opt, demo."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import keras_opt
from keras_opt.cli import build_parser, main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_version_flag_in_process(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"keras-opt {keras_opt.__version__}"


def test_python_dash_m_prints_version_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "keras_opt", "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0
    assert out.stdout.strip() == f"keras-opt {keras_opt.__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "keras_opt", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 0
    assert "usage: keras-opt" in out.stdout
    assert "demo" in out.stdout


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: keras-opt" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_every_registered_command_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "demo" in sub.choices
    for name, command in sub.choices.items():
        assert command.format_help().startswith(f"usage: keras-opt {name}")


def test_demo_rejects_bad_epochs(capsys):
    assert main(["demo", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1. Received: 0" in capsys.readouterr().err


def test_building_the_parser_does_not_import_tensorflow():
    code = "import sys, keras_opt.cli as c; c.build_parser(); print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
