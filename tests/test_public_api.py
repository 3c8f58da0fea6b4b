"""The public surface: short `__all__` lists, private helpers, documented sub-packages."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import keras_opt
from keras_opt import hardware

PACKAGES = (
    "callbacks",
    "hardware",
    "diagnostics",
    "schedules",
    "optimization",
    "tuning",
    "tflite",
    "cli",
)


def _public_modules():
    for package in PACKAGES:
        pkg = importlib.import_module(f"keras_opt.{package}")
        yield pkg.__name__
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                yield f"{pkg.__name__}.{info.name}"


@pytest.mark.parametrize("name", sorted(set(_public_modules())))
def test_every_public_module_declares_a_short_all_of_existing_names(name):
    module = importlib.import_module(name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{name} has no __all__"
    assert len(names) == len(set(names)) <= 12
    for item in names:
        assert hasattr(module, item), f"{name}.__all__ lists missing {item}"


def test_hardware_exports_what_a_training_script_calls():
    assert sorted(hardware.__all__) == sorted(
        [
            "auto_strategy",
            "set_precision",
            "float32_output",
            "resolve_jit_compile",
            "setup_summary",
            "prepare_dataset",
            "global_batch_size",
            "scale_learning_rate",
            "find_batch_size",
            "check_input_pipeline",
            "profile_steps",
        ]
    )
    public = {n for n in vars(hardware) if not n.startswith("_")}
    modules = {n for n in public if hasattr(getattr(hardware, n), "__file__")}
    assert public - modules == set(hardware.__all__)


def test_package_docstring_names_every_sub_package():
    for name in keras_opt._SUBMODULES:
        assert f"`keras_opt.{name}`" in keras_opt.__doc__
