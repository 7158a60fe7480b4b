"""Every training target answers the same questions (its first stage, whether it caches latents) and every model
and embedder has ``load_pretrained``, so callers ask instead of probing attributes."""

import pytest
import torch

from ldm_lab.conditioning.class_embedder import ClassEmbedder, ClassEmbedderConfig
from ldm_lab.conditioning.text import TextEmbedder, TextEmbedderConfig
from ldm_lab.models import LatentDiffusion
from ldm_lab.shipping.plan import first_stage_of
from ldm_lab.tasks.targets import TARGETS, AutoencoderTarget, DiffusionTarget, TrainTargetBase, get_target


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_target_answers_the_common_questions(name):
    target = get_target(name)
    assert isinstance(target, TrainTargetBase)
    assert target.needs_first_stage == (target.first_stage is not None)
    assert isinstance(target.cache_latents, bool) and len(target.resolution) == 2
    assert {"smoke", "laptop", "gpu"} <= set(target.steps)


def test_a_first_stage_trains_on_no_first_stage_and_caches_nothing():
    target = get_target("lab-autoencoder")
    assert isinstance(target, AutoencoderTarget)
    assert target.first_stage is None and not target.needs_first_stage and not target.cache_latents
    assert first_stage_of("lab-autoencoder") is None


def test_latent_targets_name_their_first_stage():
    target = get_target("lab-emoji")
    assert isinstance(target, DiffusionTarget)
    assert target.first_stage == first_stage_of("lab-emoji") == "lab-autoencoder"
    assert target.needs_first_stage and target.cache_latents
    assert first_stage_of("lab-pixel") is None


def test_a_first_stage_model_has_nothing_pretrained_to_load():
    model = get_target("lab-fmnist-autoencoder").build_model()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    model.load_pretrained()
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


def test_only_embedders_with_shipped_weights_are_pretrained():
    assert ClassEmbedder(ClassEmbedderConfig(10, width=8)).pretrained_from is None
    assert TextEmbedder(TextEmbedderConfig()).pretrained_from is None
    assert TextEmbedder(TextEmbedderConfig(trainable=False, pretrained="lab-clip")).pretrained_from == "lab-clip"
    conditioner = LatentDiffusion(get_target("lab-emoji").model).conditioner
    assert list(conditioner.pretrained()) == ["text"]
    assert LatentDiffusion(get_target("lab-fmnist").model).conditioner.pretrained() == {}
