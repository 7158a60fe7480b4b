"""The compression ablation's models: lab first stages at every f (KL and VQ) and LDM-{1..32}, as presets and
training targets; each trains a step on the CPU."""

import math
from dataclasses import replace

import pytest
import torch

from ldm_lab.compression import (
    COMPRESSION_FACTORS,
    ablation_target,
    first_stage_target,
    lab_first_stage,
)
from ldm_lab.data import DATASETS, build_dataset, collate
from ldm_lab.data.emoji import CATEGORIES
from ldm_lab.models import LatentDiffusion
from ldm_lab.nn.autoencoder import Autoencoder, Regularizer
from ldm_lab.nn.code_restarts import RestartingQuantizer
from ldm_lab.nn.quantize import VectorQuantizer
from ldm_lab.presets import get_preset, parameter_counts
from ldm_lab.presets.compression import check_factor
from ldm_lab.tasks.targets.compression import ABLATION_DISC_START, ABLATION_FIRST_STAGE_STEPS
from ldm_lab.presets.lab import LAB_ABLATION_AUTOENCODER, LAB_AUTOENCODER, LAB_EMOJI_AUTOENCODER
from ldm_lab.tasks import AutoencoderTask, LabClipPerceptual, get_target
from ldm_lab.tasks.autoencoder import AutoencoderLossConfig, ldm_first_stage_train_config
from ldm_lab.training import TrainConfig, build_optimizer

FIRST_STAGES = [(regularizer, f) for regularizer in Regularizer for f in COMPRESSION_FACTORS]
# Latent channels of LDM's first stages (Tab. 8, models/first_stage_models) and of its ablation (App. E, Tab. 13).
LDM_KL_CHANNELS = {8: 4, 16: 16, 32: 64}
LDM_VQ_CHANNELS = {2: 2, 4: 3, 8: 4, 16: 8, 32: 32}
LDM_UNET_LEVELS = {1: 6, 2: 5, 4: 4, 8: 3, 16: 3, 32: 3}  # Tab. 13's channel multipliers, one per level
UNET_PARAMETERS, UNET_BAND = 1.25e6, 0.2  # the stated budget of every LDM-f: 1.25M parameters +-20%
MAX_FIRST_STAGE_FP16_BYTES = 1.2e6        # the twelve shipped fp16 files stay about 8 MiB together


def test_the_ablations_kl_f4_is_its_own_target_and_not_lab_emojis_first_stage():
    assert lab_first_stage(Regularizer.KL, 4) == LAB_ABLATION_AUTOENCODER
    assert first_stage_target(Regularizer.KL, 4) == "lab-kl-f4"
    assert get_target("lab-kl-f4").autoencoder == LAB_ABLATION_AUTOENCODER == get_preset("lab-kl-f4").autoencoder
    assert get_preset("lab-emoji").autoencoder == LAB_EMOJI_AUTOENCODER == get_target("lab-autoencoder").autoencoder
    assert LAB_AUTOENCODER == get_target("lab-autoencoder-symmetric").autoencoder != LAB_ABLATION_AUTOENCODER
    assert get_target("lab-emoji").first_stage == "lab-autoencoder"


def test_every_ablation_first_stage_is_named_by_its_regulariser_and_f_and_trains_as_ldms():
    for regularizer, f in FIRST_STAGES:
        target = get_target(first_stage_target(regularizer, f))
        assert target.name == f"lab-{regularizer.value}-f{f}" and target.crop is None
        assert target.loss == AutoencoderLossConfig.for_regularizer(regularizer, disc_start=ABLATION_DISC_START)
        assert target.train == ldm_first_stage_train_config(16, 1e-4, checkpoint_every=250, sample_every=500)
        assert target.steps == ABLATION_FIRST_STAGE_STEPS  # the same steps for every f and regulariser (Tab. 8)
    assert ABLATION_DISC_START < ABLATION_FIRST_STAGE_STEPS["laptop"]  # the GAN switches on within a laptop run


def test_only_first_stages_with_small_latents_attend_in_their_middle_blocks():
    assert [f for f in COMPRESSION_FACTORS if lab_first_stage(Regularizer.VQ, f).mid_attention] == [2, 4, 8, 16, 32]


def test_emoji_category_count_matches_the_dataset():
    assert DATASETS["emoji"].num_classes == len(CATEGORIES)


@pytest.mark.parametrize("regularizer, f", FIRST_STAGES)
def test_first_stage_compresses_by_f_with_ldms_latent_channels(regularizer, f):
    config = lab_first_stage(regularizer, f)
    torch.manual_seed(0)
    autoencoder = Autoencoder(config).eval()
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        encoded = autoencoder.encode(image)
        latent = encoded.mode() if regularizer is Regularizer.KL else encoded[0]
        assert autoencoder.decode(latent).shape == image.shape
    ldm_channels = (LDM_KL_CHANNELS if regularizer is Regularizer.KL else LDM_VQ_CHANNELS).get(f)
    assert latent.shape[1] == (ldm_channels or config.embed_dim)
    assert latent.shape[2:] == (64 // f, 64 // f) and config.downsampling_factor == f
    assert get_preset(f"lab-{regularizer.value}-f{f}").autoencoder == config


@pytest.mark.parametrize("regularizer, f", FIRST_STAGES)
def test_first_stage_ships_small(regularizer, f):
    parameters = parameter_counts(f"lab-{regularizer.value}-f{f}")["first_stage"]
    assert 2 * parameters <= MAX_FIRST_STAGE_FP16_BYTES, f"{regularizer.name}-f{f}: {parameters} parameters"


def test_vq_codebooks_grow_with_f_as_ldms_do_scaled_down():
    sizes = [lab_first_stage(Regularizer.VQ, f).codebook_size for f in COMPRESSION_FACTORS]
    assert sizes == sorted(sizes) and max(sizes) <= 16384 // 16


@pytest.mark.parametrize("f", COMPRESSION_FACTORS)
def test_ablation_unets_have_comparable_sizes_and_ldms_depth(f):
    preset = get_preset(ablation_target(f))
    parameters = parameter_counts(preset)["unet"]
    assert abs(parameters / UNET_PARAMETERS - 1) <= UNET_BAND, f"LDM-{f}: {parameters} parameters"
    side = 64 // f
    assert len(preset.unet.channel_mult) == min(LDM_UNET_LEVELS[f], int(math.log2(side)) + 1)


@pytest.mark.parametrize("f", COMPRESSION_FACTORS)
def test_ablation_model_works_on_its_first_stages_latent(f):
    model = LatentDiffusion(get_target(ablation_target(f)).model)
    channels = 3 if f == 1 else LDM_VQ_CHANNELS[f]
    assert model.latent_shape == (channels, 64 // f, 64 // f)
    assert model.num_classes == len(CATEGORIES)
    if f > 1:
        assert model.first_stage.config == lab_first_stage(Regularizer.VQ, f)  # VQ, as LDM's ablation


def test_ablation_targets_differ_only_in_f():
    targets = [get_target(ablation_target(f)) for f in COMPRESSION_FACTORS]
    assert {t.first_stage for t in targets} == {None} | {first_stage_target(Regularizer.VQ, f)
                                                          for f in COMPRESSION_FACTORS[1:]}
    assert targets[0].first_stage is None and targets[-1].first_stage == "lab-vq-f32"
    for target in targets[1:]:
        assert (target.train, target.steps, target.task, target.dataset) == \
               (targets[0].train, targets[0].steps, targets[0].task, targets[0].dataset)
    train = targets[0].train
    assert train.checkpoint_every > 0 and train.keep_checkpoints * train.checkpoint_every >= targets[0].steps["gpu"]


def test_unknown_factor_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"\(1, 2, 4, 8, 16, 32\)"):
        check_factor(3)


@pytest.fixture(scope="module")
def emoji_batch():
    data = build_dataset("emoji", "train", (64, 64))
    return collate([data[i] for i in range(2)])


@pytest.fixture(scope="module")
def perceptual():
    return LabClipPerceptual()


def _changes_weights(model, loss_fn) -> bool:
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3, warmup_steps=0))
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    loss = loss_fn()
    loss.backward()
    optimizer.step()
    after = [p for p in model.parameters() if p.requires_grad]
    return math.isfinite(loss.item()) and any(not torch.equal(a, b) for a, b in zip(before, after))


@pytest.mark.parametrize("regularizer, f", FIRST_STAGES)
def test_first_stage_target_trains_a_step_with_the_gan_on(regularizer, f, emoji_batch, perceptual):
    target = get_target(first_stage_target(regularizer, f))
    torch.manual_seed(0)
    model = target.build_model().train()
    model.batches_seen.fill_(target.loss.disc_start)  # past disc_start: the adversarial terms are in the loss
    task = AutoencoderTask(emoji_batch["image"], perceptual)
    assert _changes_weights(model, lambda: task.loss(model, emoji_batch))


@pytest.mark.parametrize("f", COMPRESSION_FACTORS)
def test_ablation_target_trains_a_step(f, emoji_batch):
    target = get_target(ablation_target(f))
    torch.manual_seed(0)
    model, task = target.build_model().train(), target.build_task()
    assert _changes_weights(model, lambda: task.loss(model, emoji_batch))
    assert model.latent_scale.isfinite()


def test_idle_codes_restart_onto_latents_in_training_only():
    torch.manual_seed(0)
    quantizer = RestartingQuantizer(num_codes=8, dim=2, idle_factor=1.0)  # idle limit: 8 latent pixels
    with torch.no_grad():
        quantizer.codebook.weight.copy_(torch.arange(16.0).view(8, 2))
    latents = torch.zeros(1, 2, 2, 2)  # 4 latent pixels, all nearest to code 0
    quantizer.eval()(latents)
    assert torch.equal(quantizer.codebook.weight, torch.arange(16.0).view(8, 2)) and not quantizer.idle.any()
    quantizer.train()(latents)  # codes 1..7 idle for 4 pixels: below the limit
    assert torch.equal(quantizer.codebook.weight[1:], torch.arange(2.0, 16.0).view(7, 2))
    quantizer(latents)  # idle for 8: restarted onto the latents (zeros); code 0 was chosen and stays
    assert torch.equal(quantizer.codebook.weight[1:], torch.zeros(7, 2))
    assert torch.equal(quantizer.codebook.weight[0], torch.tensor([0.0, 1.0]))
    assert quantizer.state_dict().keys() == VectorQuantizer(8, 2).state_dict().keys()


def test_vq_first_stages_train_with_restarts_and_ship_plain_weights():
    model = get_target(first_stage_target(Regularizer.VQ, 16)).build_model()
    assert isinstance(model.autoencoder.quantizer, RestartingQuantizer)
    plain = Autoencoder(replace(lab_first_stage(Regularizer.VQ, 16), restart_idle_codes=False))
    plain.load_state_dict(model.autoencoder.state_dict())  # strict: the same keys
    assert not isinstance(plain.quantizer, RestartingQuantizer)
    assert get_target(first_stage_target(Regularizer.KL, 16)).build_model().autoencoder.quantizer is None
    with pytest.raises(ValueError, match="KL autoencoder has none"):
        replace(lab_first_stage(Regularizer.KL, 16), restart_idle_codes=True)