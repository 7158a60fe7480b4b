"""Each dataset's facts (its class count) live in its registry entry, and the models built for it read them there."""

import pytest

from ldm_lab.data import DATASETS, emoji, fashion_mnist, shapes
from ldm_lab.models import LatentDiffusion
from ldm_lab.presets import get_preset
from ldm_lab.tasks.targets import cycling_labels, get_target


def test_each_dataset_knows_its_class_count():
    assert DATASETS["emoji"].num_classes == len(emoji.CATEGORIES) == 10
    assert DATASETS["fashion_mnist"].num_classes == len(fashion_mnist.CLASSES) == 10
    assert DATASETS["shapes"].num_classes == DATASETS["shapes_multiscale"].num_classes == len(shapes.KINDS) == 5


@pytest.mark.parametrize("name", list(DATASETS))
def test_the_registry_and_the_dataset_info_agree(name):
    assert DATASETS[name].info()["num_classes"] == DATASETS[name].num_classes


@pytest.mark.parametrize(("preset", "dataset"), [("lab-class", "fashion_mnist"), ("lab-ldm-4", "emoji")])
def test_class_tables_have_the_dataset_classes_and_a_null_class(preset, dataset):
    assert get_preset(preset).unet.num_classes == DATASETS[dataset].num_classes + 1


def test_conditioned_models_take_their_dataset_classes():
    fmnist = LatentDiffusion(get_target("lab-fmnist").model).conditioner.embedders["class"].config
    layout = LatentDiffusion(get_target("lab-layout").model).conditioner.embedders["layout"].config
    seg = LatentDiffusion(get_target("lab-seg").model).conditioner.embedders["segmentation"].config
    assert fmnist.num_classes == 10 and layout.num_classes == 5 and seg.num_classes == 1 + 5  # + background


def test_sample_grids_cycle_through_every_class():
    assert cycling_labels("shapes", 7) == (0, 1, 2, 3, 4, 0, 1)
    assert get_target("lab-class").task.sample_labels == get_target("lab-fmnist").task.sample_labels == tuple(
        i % 10 for i in range(16))
    assert get_target("lab-ldm-8").task.sample_labels == tuple(i % 10 for i in range(16))
