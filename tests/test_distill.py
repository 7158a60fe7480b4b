"""ADD (Sauer et al. 2023) piece by piece on tiny models: the student's timesteps and schedule, the discriminator,
and every loss term's gradients (what each one trains, and what it must leave alone: teacher, frozen feature
network, first stage, text tower). The tiny models: a lab-emoji-shaped teacher (v-prediction, KL first stage, a
lab-clip-style text tower) at 32x32 and a 3-block lab-clip-style feature network, randomly initialised."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ldm_lab.diffusion.parameterisation import v_to_x0
from ldm_lab.distill import (ADDConfig, DiscriminatorConfig, DistillConfig, FeatureNetwork, build_models, build_student,
                             student_sampling, student_timesteps)
from ldm_lab.distill.losses import distillation_loss, distillation_weight, r1_penalty, teacher_x0
from ldm_lab.distill.student import noised_latents, student_x0
from ldm_lab.evaluation_models.lab_clip import LabClipConfig, build_lab_clip
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.nn.autoencoder import AutoencoderConfig
from ldm_lab.presets import get_preset
from ldm_lab.tasks.diffusion import generate
from ldm_lab.training import TrainConfig

TINY_CLIP = LabClipConfig(embed_dim=16, image_size=32, patch_size=8, vision_width=32, vision_layers=3,
                          vision_head_width=16, text_width=16, text_layers=1, text_heads=2)
TINY_DISCRIMINATOR = DiscriminatorConfig(layers=(0, 1, 2), head_width=16)
TINY_TRAIN = TrainConfig(steps=2, batch_size=2, lr=1e-3, min_lr_ratio=1.0, ema_decay=0.9, checkpoint_every=0,
                         keep_checkpoints=3, log_every=1, sample_every=0, device="cpu")
CAPTIONS = ("red apple", "grinning face", "rocket", "sun")


# -- tiny models (also used by test_distill_training.py) ---------------------------------------------------------

def tiny_teacher(seed: int = 0) -> LatentDiffusion:
    """lab-emoji's design in miniature (32x32 images, 8x8x4 latents), frozen, with no all-zero layer."""
    torch.manual_seed(seed)
    emoji = get_preset("lab-emoji")
    text = replace(emoji.text_encoders["text"], width=16, num_layers=1, num_heads=2, projection_dim=16)
    preset = replace(emoji, unet=emoji.unet.replace(model_channels=32, channel_mult=(1, 1), transformer_depth=(0, 1),
                                                    head_dim=8, context_dim=16),
                     autoencoder=AutoencoderConfig(ch=32, ch_mult=(1, 1, 1), num_res_blocks=1, resolution=32),
                     text_encoders={"text": text}, text_weights=None, resolution=(32, 32), latent_scale=1.0)
    teacher = LatentDiffusion(LatentDiffusionConfig(preset, condition_dropout=0.1))
    with torch.no_grad():  # the U-Net's zero-initialised layers (LDM's zero_module) made non-zero, as in a trained one
        for p in teacher.unet.parameters():
            if not p.any():
                p.normal_(0.0, 0.05)
    return teacher.eval().requires_grad_(False)


def tiny_features(layers: tuple[int, ...] = TINY_DISCRIMINATOR.layers, seed: int = 0) -> FeatureNetwork:
    torch.manual_seed(seed)
    return FeatureNetwork(build_lab_clip(TINY_CLIP), layers)


def tiny_config(steps: int = 2, discriminator: DiscriminatorConfig = TINY_DISCRIMINATOR, **add) -> DistillConfig:
    return DistillConfig(add=ADDConfig(**add), discriminator=discriminator, train=replace(TINY_TRAIN, steps=steps),
                         sample_prompts=CAPTIONS[:2])


def tiny_models(discriminator: DiscriminatorConfig = TINY_DISCRIMINATOR, **add):
    return build_models(tiny_teacher(), tiny_config(discriminator=discriminator, **add),
                        tiny_features(discriminator.layers))


def tiny_data(n: int = 8) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    return [{"image": torch.rand(3, 32, 32, generator=generator) * 2 - 1, "caption": CAPTIONS[i % len(CAPTIONS)]}
            for i in range(n)]


def tiny_batch(n: int = 2) -> dict:
    items = tiny_data(n)
    return {"image": torch.stack([i["image"] for i in items]), "caption": [i["caption"] for i in items]}


# -- gradient bookkeeping ----------------------------------------------------------------------------------------

def parts(models) -> dict[str, list[torch.nn.Parameter]]:
    """Every group of weights ADD touches or must not touch."""
    student = models.student
    return {"student U-Net": list(student.unet.parameters()), "heads": list(models.heads.parameters()),
            "feature network": list(models.features.parameters()), "teacher": list(models.teacher.parameters()),
            "first stage": list(student.first_stage.parameters()) + list(models.teacher.first_stage.parameters()),
            "text tower": list(student.conditioner.parameters())}


def receives_gradient(models) -> dict[str, bool]:
    return {name: any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params)
            for name, params in parts(models).items()}


def clear_gradients(models) -> None:
    for params in parts(models).values():
        for p in params:
            p.grad = None


@pytest.fixture(scope="module")
def models():
    return tiny_models().train()


@pytest.fixture
def prepared(models):
    clear_gradients(models)
    torch.manual_seed(0)
    return models.prepare(tiny_batch())


# -- the student's timesteps, schedule and sampler ---------------------------------------------------------------

def test_student_timesteps_are_the_papers():
    assert student_timesteps(4) == (999, 749, 499, 249)
    assert student_timesteps(1) == (999,)
    assert student_timesteps(2) == (999, 499)


@pytest.mark.parametrize("steps", [3, 5, 0, 1.5])
def test_an_unknown_number_of_student_steps_says_which_work(steps):
    with pytest.raises(ValueError, match=r"steps|whole number"):
        student_timesteps(steps)
    if steps in (3, 5):
        with pytest.raises(ValueError, match=r"Use steps in \[1, 2, 4\]"):
            student_timesteps(steps)


def test_a_student_of_other_n_trains_at_its_own_trailing_timesteps():
    assert student_timesteps(2, train_steps=2) == (999, 499)
    with pytest.raises(ValueError, match="student_steps"):
        ADDConfig(student_steps=0)


def test_the_student_starts_from_the_teacher_on_a_zero_terminal_snr_schedule(models):
    student, teacher = models.student, models.teacher
    assert student.schedule.has_zero_terminal_snr and not teacher.schedule.has_zero_terminal_snr
    for key, value in teacher.state_dict().items():
        assert torch.equal(student.state_dict()[key], value), key
    assert all(p.requires_grad for p in student.unet.parameters())
    assert not any(p.requires_grad for name, p in student.named_parameters() if not name.startswith("unet."))
    assert models.student_timesteps.tolist() == [999, 749, 499, 249]


def test_at_the_first_student_timestep_the_input_is_pure_noise_and_x0_is_minus_v(models):
    z0 = torch.randn(2, *models.student.latent_shape)
    s = torch.full((2,), 999)
    noisy_a = noised_latents(models.student, z0, s, torch.Generator().manual_seed(3))
    noisy_b = noised_latents(models.student, torch.zeros_like(z0), s, torch.Generator().manual_seed(3))
    assert torch.equal(noisy_a, noisy_b)  # ab_999 = 0: nothing of x0 is left
    cond = models.student.condition({"caption": ["red apple", "sun"]})
    with torch.no_grad():
        v = models.student(noisy_a, s, **cond)
        assert torch.allclose(student_x0(models.student, noisy_a, s, cond), -v)
        s = torch.full((2,), 249)
        ab = models.student.schedule.alpha_bar_at(s).view(-1, 1, 1, 1)
        assert torch.allclose(student_x0(models.student, noisy_a, s, cond),
                              v_to_x0(models.student(noisy_a, s, **cond), noisy_a, ab))


def test_the_student_samples_with_euler_ancestral_at_its_timesteps_without_guidance(models):
    settings = student_sampling(4, seed=0)
    assert settings.timesteps == (999, 749, 499, 249) and settings.guidance_scale == 1.0
    assert settings.sampler_spec().step.eta == 1.0
    calls = []
    student = models.student.eval()
    original = student.forward
    try:
        student.forward = lambda *args, **kwargs: calls.append(args[1][0].item()) or original(*args, **kwargs)
        images = generate(student, prompts=["red apple"], settings=student_sampling(1, seed=0))
        assert calls == [pytest.approx(999)]
        calls.clear()
        generate(student, prompts=["red apple"], settings=settings)
        assert calls == [pytest.approx(t, abs=1e-3) for t in (999, 749, 499, 249)]
    finally:
        del student.forward
        student.train()
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()


# -- the discriminator -------------------------------------------------------------------------------------------

def test_heads_sit_on_three_layers_of_a_frozen_feature_network_and_project_the_text(models, prepared):
    features = models.features(prepared.images)
    assert len(features) == len(models.heads.heads) == 3
    assert all(f.shape == (2, 1 + 16, 32) for f in features)  # class token + 4x4 patches, width 32
    assert not any(p.requires_grad for p in models.features.parameters())
    with torch.no_grad():
        logits = models.heads(features, prepared.disc_condition)
        other = models.heads(features, prepared.disc_condition.flip(0))
    assert all(x.shape == (2, 17) for x in logits)
    assert not torch.allclose(logits[0], other[0])  # the caption's embedding changes the verdict (projection)


def test_the_image_embedding_can_condition_the_heads_too():
    models = tiny_models(discriminator=replace(TINY_DISCRIMINATOR, image_condition=True))
    prepared = models.prepare(tiny_batch())
    assert prepared.disc_condition.shape == (2, 2 * TINY_CLIP.embed_dim)
    assert torch.allclose(prepared.disc_condition.norm(dim=1), torch.full((2,), 2.0 ** 0.5))


def test_layers_beyond_the_feature_network_say_which_exist():
    with pytest.raises(ValueError, match=r"has 3 blocks \(0\.\.2\)"):
        FeatureNetwork(build_lab_clip(TINY_CLIP), (0, 3))
    with pytest.raises(ValueError, match="distinct"):
        DiscriminatorConfig(layers=(1, 1))


# -- every loss term: gradients where they belong, none elsewhere ------------------------------------------------

NOTHING_FROZEN = {"feature network": False, "teacher": False, "first stage": False, "text tower": False}


def test_the_adversarial_generator_term_reaches_the_student_through_the_frozen_features(models, prepared):
    adversarial_only = build_models(models.teacher, tiny_config(distillation_weight=0.0), models.features)
    adversarial_only.trainable.load_state_dict(models.trainable.state_dict())
    losses = adversarial_only.student_losses(prepared)
    assert losses.distillation == 0 and losses.total.requires_grad
    losses.total.backward()
    assert receives_gradient(adversarial_only) == {"student U-Net": True, "heads": False, **NOTHING_FROZEN}


def test_the_distillation_term_trains_the_student_only(models, prepared):
    distillation_only = build_models(models.teacher, tiny_config(adversarial_weight=0.0), models.features)
    losses = distillation_only.student_losses(prepared)
    assert losses.adversarial == 0 and losses.distillation > 0
    losses.total.backward()
    assert receives_gradient(distillation_only) == {"student U-Net": True, "heads": False, **NOTHING_FROZEN}


def test_the_hinge_loss_trains_the_heads_only(models, prepared):
    losses = models.student_losses(prepared)
    d_loss, _ = replace_r1(models, 0.0).discriminator_losses(prepared, losses.images)
    d_loss.backward()
    assert receives_gradient(models) == {"student U-Net": False, "heads": True, **NOTHING_FROZEN}


def replace_r1(models, gamma: float):
    models.config = replace(models.config, r1_gamma=gamma)
    return models


def test_r1_is_on_the_heads_inputs_and_has_no_gradient_for_the_student(models, prepared):
    replace_r1(models, 1e-5)
    with torch.no_grad():
        real = models.features(prepared.images)
    real = [f.requires_grad_(True) for f in real]
    r1 = r1_penalty(models.heads(real, prepared.disc_condition), real)
    assert r1 > 0
    r1.backward()
    assert receives_gradient(models) == {"student U-Net": False, "heads": True, **NOTHING_FROZEN}
    # Through the discriminator's own loss: R1 adds gamma * R1, and still nothing reaches the student.
    clear_gradients(models)
    losses = models.student_losses(prepared)
    torch.manual_seed(0)                                   # the same DiffAugment draws for both
    d_loss, r1_logged = models.discriminator_losses(prepared, losses.images)
    torch.manual_seed(0)
    d_without, _ = replace_r1(models, 0.0).discriminator_losses(prepared, losses.images)
    # float32 sums near 6: the difference is exact to a few ulps
    assert float((d_loss - d_without).detach()) == pytest.approx(1e-5 * float(r1_logged), abs=2e-6)
    student_params = list(models.student.unet.parameters())
    assert all(g is None for g in torch.autograd.grad(d_loss, student_params, allow_unused=True))
    replace_r1(models, 1e-5)


def test_the_paper_constants_are_the_defaults():
    config = ADDConfig()
    assert (config.distillation_weight, config.r1_gamma, config.student_steps) == (2.5, 1e-5, 4)
    assert config.zero_terminal_snr and config.adversarial_weight == 1.0


def test_the_distillation_weight_is_alpha_bar_of_the_teacher_timestep(models):
    t = torch.tensor([0, 250, 500, 999])
    expected = models.teacher.schedule.alphas_cumprod[t].float()
    assert torch.equal(distillation_weight(models.teacher, t), expected)
    # and the loss is sum_b c(t_b) * mean-squared pixel distance / b, the target decoded without a gradient
    student_images = torch.randn(4, 3, 8, 8, requires_grad=True)
    target = torch.randn(4, 3, 8, 8)
    loss = distillation_loss(lambda z: z * 2, student_images, target, expected)
    manual = (expected * (student_images - 2 * target).pow(2).flatten(1).mean(1)).mean()
    assert torch.allclose(loss, manual)
    loss.backward()
    assert student_images.grad is not None


def test_the_teacher_target_uses_classifier_free_guidance(models, prepared):
    assert prepared.uncond is not None  # the teacher's null prompt, for its CFG
    x0 = torch.randn(2, *models.student.latent_shape)
    t = torch.tensor([500, 500])
    guided = teacher_x0(models.teacher, x0, t, prepared.cond, prepared.uncond, 3.0, torch.Generator().manual_seed(0))
    plain = teacher_x0(models.teacher, x0, t, prepared.cond, prepared.uncond, 1.0, torch.Generator().manual_seed(0))
    assert not guided.requires_grad and not torch.allclose(guided, plain)


def test_bad_objectives_say_what_to_change():
    with pytest.raises(ValueError, match="both 0"):
        ADDConfig(adversarial_weight=0.0, distillation_weight=0.0)
    with pytest.raises(ValueError, match="r1_gamma"):
        ADDConfig(r1_gamma=float("nan"))


def test_a_teacher_of_several_ddim_steps_walks_each_sample_from_its_own_t(models, prepared):
    teacher, calls = models.teacher, []
    original = teacher.forward
    x0 = torch.randn(2, *models.student.latent_shape)
    t = torch.tensor([800, 300])
    try:
        teacher.forward = lambda x, s, **cond: calls.append(s.tolist()) or original(x, s, **cond)
        one = teacher_x0(teacher, x0, t, prepared.cond, None, 1.0, torch.Generator().manual_seed(0))
        assert calls == [[800, 300]]
        calls.clear()
        three = teacher_x0(teacher, x0, t, prepared.cond, None, 1.0, torch.Generator().manual_seed(0), steps=3)
        assert calls == [[800, 300], [533, 200], [267, 100]]
    finally:
        del teacher.forward
    assert torch.isfinite(three).all() and not three.requires_grad and not torch.allclose(one, three)
    with pytest.raises(ValueError, match="teacher_steps"):
        ADDConfig(teacher_steps=0)


def test_a_randomly_initialised_student_keeps_only_the_teachers_first_stage_and_text_tower():
    teacher = tiny_teacher()
    torch.manual_seed(1)
    student = build_student(teacher, pretrained=False)
    trained, fresh = teacher.state_dict(), student.state_dict()
    assert all(torch.equal(fresh[k], v) for k, v in trained.items() if not k.startswith("unet."))
    assert not all(torch.equal(fresh[k], v) for k, v in trained.items() if k.startswith("unet."))
    assert student.schedule.has_zero_terminal_snr and all(p.requires_grad for p in student.unet.parameters())
