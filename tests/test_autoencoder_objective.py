"""The first-stage objective and optimisation as LDM/taming: two Adams as one, disc_weight vs disc_factor, the
adaptive weight's clamp in our units, VQ loss weights, LitEma's warm-up, and VQ latents before quantisation."""

import copy
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.models.latent_diffusion import VQLatents
from ldm_lab.nn.autoencoder import AutoencoderConfig, Regularizer
from ldm_lab.nn.quantize import VectorQuantizer
from ldm_lab.tasks import AutoencoderGAN, AutoencoderLossConfig, AutoencoderTask
from ldm_lab.tasks.autoencoder import (
    LDM_MAX_ADAPTIVE_WEIGHT,
    ldm_first_stage_train_config,
    max_adaptive_weight,
)
from ldm_lab.training import EMA, build_optimizer

TINY_KL = AutoencoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, resolution=16)
TINY_VQ = AutoencoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, resolution=16, z_channels=3, embed_dim=3,
                            regularizer=Regularizer.VQ, codebook_size=16)


def images(n: int = 2, side: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def tiny_gan(autoencoder: AutoencoderConfig = TINY_KL, **loss) -> AutoencoderGAN:
    torch.manual_seed(0)
    config = AutoencoderLossConfig(perceptual_weight=0.0, disc_width=8, disc_layers=2, disc_start=0, **loss)
    return AutoencoderGAN(autoencoder, config)


# --- optimisation: one AdamW over both players == LDM's two Adams -------------------------------------------

def ldm_two_adam_step(model: AutoencoderGAN, task: AutoencoderTask, batch: torch.Tensor,
                      opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, seed: int) -> None:
    """LDM's AutoencoderKL.training_step as written there: a generator step on its loss (discriminator unfrozen,
    its gradient simply not stepped), then a discriminator step on the hinge loss, both on the same
    reconstructions."""
    c = model.loss_config
    torch.manual_seed(seed)
    output = model.autoencoder(batch)
    nll = task.reconstruction_loss(model, batch, output)
    g_loss = -model.discriminator(output.reconstruction).mean()
    last = model.autoencoder.decoder.conv_out.weight
    nll_grad, = torch.autograd.grad(nll, last, retain_graph=True)
    g_grad, = torch.autograd.grad(g_loss, last, retain_graph=True)
    d_weight = (nll_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0, max_adaptive_weight(batch, Regularizer.KL))
    adversarial = d_weight.detach() * c.disc_weight * c.disc_factor * g_loss
    loss_g = nll + task.regularizer_loss(model, batch, output) + adversarial
    opt_g.zero_grad()
    opt_d.zero_grad()
    loss_g.backward()
    opt_g.step()
    d_loss = c.disc_factor * 0.5 * (F.relu(1 - model.discriminator(batch)).mean()
                                    + F.relu(1 + model.discriminator(output.reconstruction.detach())).mean())
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()


def test_one_adamw_over_both_players_equals_ldms_two_adams():
    lr, batches = 1e-3, [images(seed=s) for s in (1, 2, 3)]
    ours = tiny_gan(disc_weight=0.7, disc_factor=0.6)
    ldm = copy.deepcopy(ours)
    task = AutoencoderTask(preview=images())

    config = ldm_first_stage_train_config(batch_size=2, lr=lr)
    optimizer = build_optimizer(ours, config)
    for seed, batch in enumerate(batches):
        optimizer.zero_grad()
        torch.manual_seed(seed)
        task.loss(ours, {"image": batch}).backward()
        torch.nn.utils.clip_grad_norm_(ours.parameters(), config.max_grad_norm or float("inf"))  # as the trainer
        optimizer.step()

    opt_g = torch.optim.Adam(ldm.autoencoder.parameters(), lr=lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(ldm.discriminator.parameters(), lr=lr, betas=(0.5, 0.9))
    for seed, batch in enumerate(batches):
        ldm_two_adam_step(ldm, task, batch, opt_g, opt_d, seed)

    for (name, p), q in zip(ours.named_parameters(), ldm.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(ours.discriminator.layers[0].weight, tiny_gan().discriminator.layers[0].weight)


def test_ldm_first_stage_train_config_is_ldms_adam_without_clipping_or_schedule():
    config = ldm_first_stage_train_config(batch_size=8, lr=4.5e-6, steps=10)
    assert (config.betas, config.weight_decay, config.max_grad_norm) == ((0.5, 0.9), 0.0, None)
    assert (config.warmup_steps, config.min_lr_ratio, config.batch_size, config.steps) == (0, 1.0, 8, 10)
    assert ldm_first_stage_train_config(batch_size=8, lr=1e-4, warmup_steps=5).warmup_steps == 5


# --- disc_weight on the generator only, disc_factor on both --------------------------------------------------

def gradients(model: AutoencoderGAN, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    torch.manual_seed(3)
    AutoencoderTask(preview=batch).loss(model, {"image": batch}).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_disc_weight_scales_only_the_generator_and_disc_factor_the_discriminator():
    batch = images()
    base = gradients(tiny_gan(disc_weight=0.5), batch)
    heavier = gradients(tiny_gan(disc_weight=1.0), batch)
    for name in base:
        if name.startswith("discriminator."):  # the hinge loss does not see disc_weight
            torch.testing.assert_close(heavier[name], base[name])
    assert not torch.allclose(heavier["autoencoder.decoder.conv_out.weight"],
                              base["autoencoder.decoder.conv_out.weight"])
    halved = gradients(tiny_gan(disc_weight=0.5, disc_factor=0.5), batch)
    for name in base:
        if name.startswith("discriminator."):
            torch.testing.assert_close(halved[name], 0.5 * base[name])


def test_disc_factor_zero_turns_the_gan_off():
    model = tiny_gan(disc_factor=0.0)
    assert not model.adversarial


# --- the adaptive weight's clamp in per-pixel-mean units ------------------------------------------------------

def test_adaptive_weight_clamp_is_ldms_1e4_rescaled_to_per_pixel_means_for_kl():
    batch = images(side=16)
    assert max_adaptive_weight(batch, Regularizer.KL) == pytest.approx(LDM_MAX_ADAPTIVE_WEIGHT / (3 * 16 * 16))
    assert max_adaptive_weight(batch, Regularizer.VQ) == LDM_MAX_ADAPTIVE_WEIGHT  # taming averages already


@pytest.mark.parametrize("autoencoder, limit", [(TINY_KL, 1e4 / 768), (TINY_VQ, 1e4)])
def test_the_task_clamps_the_adaptive_weight_where_the_adversarial_gradient_vanishes(autoencoder, limit):
    model, batch = tiny_gan(autoencoder), images()
    with torch.no_grad():
        model.discriminator.layers[-1].weight.zero_()  # D(x) is its bias: no adversarial gradient, ratio -> huge
    task = AutoencoderTask(preview=batch)
    output = model.autoencoder(batch)
    reconstruction = 100 * task.reconstruction_loss(model, batch, output)  # a gradient far above the clamp
    g_loss = -model.discriminator(output.reconstruction).mean()
    assert float(task.generator_weight(model, batch, reconstruction, g_loss)) == pytest.approx(limit)


# --- VQ: taming's loss weights and VectorQuantizer2(legacy=True) ----------------------------------------------

def test_vq_first_stages_get_tamings_disc_weight():
    assert AutoencoderLossConfig.for_regularizer(Regularizer.VQ).disc_weight == 0.75
    assert AutoencoderLossConfig.for_regularizer(Regularizer.KL).disc_weight == 0.5
    assert AutoencoderLossConfig.for_regularizer(Regularizer.VQ, disc_start=100).disc_start == 100


@pytest.mark.parametrize("legacy", [True, False])
def test_legacy_puts_beta_on_the_codebook_term(legacy):
    torch.manual_seed(0)
    beta = 0.25
    vq = VectorQuantizer(num_codes=8, dim=4, beta=beta, legacy=legacy)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    _, info = vq(z)
    codes = vq.lookup(info.indices).detach()
    torch.testing.assert_close(info.loss, (1 + beta) * ((codes - z) ** 2).mean())
    info.loss.backward()
    # taming (legacy): mean((sg[e] - z)^2) + beta * mean((e - sg[z])^2): the encoder gets weight 1, the codes beta
    encoder_weight, code_weight = (1.0, beta) if legacy else (beta, 1.0)
    torch.testing.assert_close(z.grad, encoder_weight * 2 * (z - codes).detach() / z.numel())
    code_grad = torch.zeros_like(vq.codebook.weight)
    pixels = (codes - z.detach()).permute(0, 2, 3, 1).reshape(-1, 4)
    code_grad.index_add_(0, info.indices.flatten(), code_weight * 2 * pixels / z.numel())
    torch.testing.assert_close(vq.codebook.weight.grad, code_grad)


def test_legacy_flag_adds_no_state_so_vq_checkpoints_load():
    legacy, eq_3 = VectorQuantizer(8, 2, legacy=True), VectorQuantizer(8, 2, legacy=False)
    assert legacy.state_dict().keys() == eq_3.state_dict().keys() == {"codebook.weight"}
    assert VectorQuantizer(8, 2).legacy


# --- EMA: LitEma's warm-up ------------------------------------------------------------------------------------

def test_ema_first_decays_are_litemas():
    ema = EMA(torch.nn.Linear(2, 1), decay=0.999)
    assert [ema.decay_at(n) for n in range(3)] == pytest.approx([2 / 11, 3 / 12, 4 / 13])


# --- VQ latents before quantisation ---------------------------------------------------------------------------

def test_vq_diffusion_learns_pre_quantisation_latents_and_the_decoder_quantises():
    torch.manual_seed(0)
    model = LatentDiffusion(LatentDiffusionConfig("lab-ldm-8")).eval()
    quantised_model = LatentDiffusion(LatentDiffusionConfig("lab-ldm-8", vq_latents=VQLatents.QUANTISED)).eval()
    quantised_model.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    pre, codes = model.raw_latents(x), quantised_model.raw_latents(x)
    first_stage = model.first_stage
    with torch.no_grad():
        torch.testing.assert_close(pre, first_stage.quant_conv(first_stage.encoder(x)))
        torch.testing.assert_close(codes, first_stage.quantizer.lookup(first_stage.quantizer.nearest_code(pre)))
        assert not torch.allclose(pre, codes)
        torch.testing.assert_close(first_stage.decode(pre), first_stage.decode(codes))


def test_a_first_stage_takes_over_an_encoder_only_from_one_built_like_its_own():
    source = AutoencoderGAN(TINY_KL)
    wider = AutoencoderGAN(replace(TINY_KL, decoder_ch=64)).adopt_encoder(source)
    for part in ("encoder", "quant_conv"):
        for key, value in getattr(source.autoencoder, part).state_dict().items():
            assert torch.equal(getattr(wider.autoencoder, part).state_dict()[key], value), f"{part}.{key}"
    with pytest.raises(ValueError, match="only the decoder may differ"):
        AutoencoderGAN(replace(TINY_KL, ch=64)).adopt_encoder(source)
