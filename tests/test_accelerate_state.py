"""accelerate's process-wide state is reset in one place, so one process can build Accelerators with other
mixed precisions (a notebook trains a classifier in fp32, then a U-Net in bf16)."""

import re

import pytest
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from ldm_lab.paths import REPO_ROOT
from ldm_lab.training.accelerate_state import forget_single_process_state

tomllib = pytest.importorskip("tomllib")


@pytest.fixture
def fresh_state():
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_a_second_accelerator_with_another_precision_needs_the_reset(fresh_state):
    assert Accelerator(cpu=True, mixed_precision="no").mixed_precision == "no"
    with pytest.raises(ValueError, match="mixed_precision"):
        Accelerator(cpu=True, mixed_precision="bf16")  # what accelerate does without the reset


def test_forgetting_the_state_lets_another_precision_be_built(fresh_state):
    Accelerator(cpu=True, mixed_precision="no")
    forget_single_process_state("bf16", cpu=True)
    assert Accelerator(cpu=True, mixed_precision="bf16").mixed_precision == "bf16"
    forget_single_process_state("no", cpu=True)
    assert Accelerator(cpu=True, mixed_precision="no").mixed_precision == "no"


def test_a_state_with_the_same_settings_is_kept(fresh_state):
    Accelerator(cpu=True, mixed_precision="no")
    shared = dict(AcceleratorState._shared_state)
    forget_single_process_state("no", cpu=True)
    assert AcceleratorState._shared_state == shared


def test_the_installed_accelerate_is_inside_the_pinned_range():
    from importlib.metadata import version

    from packaging.requirements import Requirement

    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = Requirement(next(req for req in declared if re.match(r"accelerate\b", req)))
    assert any(spec.operator == "<" for spec in pin.specifier), "accelerate needs an upper pin (private state API)"
    assert version("accelerate") in pin.specifier
