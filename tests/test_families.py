"""The model families: each family's presets and conditioners (ldm_lab.presets.<family>) and its training targets
(ldm_lab.tasks.targets.<family>) are collected by name with none lost to a clash, and a family trains its own
presets."""

import pytest

import ldm_lab.presets as presets
import ldm_lab.tasks.targets as targets
from ldm_lab.presets import CONDITIONERS, PRESETS, get_preset
from ldm_lab.presets.shapes import LAB_SDXL_REFINER
from ldm_lab.tasks.targets import TARGETS, DiffusionTarget


UNREGISTERED = {LAB_SDXL_REFINER.name}  # a preset its target holds itself, not looked up by name


def family_name(module) -> str:
    return module.__name__.rsplit(".", 1)[-1]


def test_no_name_is_registered_by_two_families():
    assert len(PRESETS) == sum(len(family.PRESETS) for family in presets.FAMILIES) == 48
    assert len(CONDITIONERS) == sum(len(family.CONDITIONERS) for family in presets.FAMILIES) == 11
    assert len(TARGETS) == sum(len(family.TARGETS) for family in targets.FAMILIES) == 48


def test_every_conditioner_belongs_to_a_preset_of_its_family():
    for family in presets.FAMILIES:
        assert set(family.CONDITIONERS) <= {preset.name for preset in family.PRESETS} | UNREGISTERED, family_name(family)


@pytest.mark.parametrize("family", targets.FAMILIES, ids=family_name)
def test_a_familys_diffusion_targets_train_the_presets_of_the_family_of_the_same_name(family):
    own = getattr(presets, family_name(family))
    names = {preset.name for preset in own.PRESETS} | set(own.CONDITIONERS)
    for target in family.TARGETS:
        if isinstance(target, DiffusionTarget):
            assert get_preset(target.model.preset).name in names, target.name
