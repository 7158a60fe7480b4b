"""Training tasks: the GAN game under one optimizer, scale_by_std, condition dropout, and their errors."""

import pytest
import torch

from ldm_lab.diffusion import SamplingSettings
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.nn.autoencoder import AutoencoderConfig
from ldm_lab.tasks import (
    AutoencoderGAN,
    AutoencoderLossConfig,
    AutoencoderTask,
    DiffusionTask,
    LabClipPerceptual,
    PatchDiscriminator,
    adaptive_weight,
    discriminator_loss,
    generate,
    generator_loss,
)
from ldm_lab.tasks.autoencoder import max_adaptive_weight
from ldm_lab.tasks.gan import frozen_call

TINY_AE = AutoencoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, resolution=16)


def tiny_gan(**loss) -> AutoencoderGAN:
    torch.manual_seed(0)
    config = AutoencoderLossConfig(perceptual_weight=0.0, disc_width=8, disc_layers=2, **loss)
    return AutoencoderGAN(TINY_AE, config)


def images(n: int = 2, side: int = 16, channels: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_generator_term_gives_the_discriminator_no_gradient():
    discriminator = PatchDiscriminator(3, width=8, num_layers=2)
    fake = images().requires_grad_()
    generator_loss(discriminator, fake).backward()
    assert all(p.grad is None for p in discriminator.parameters())
    assert fake.grad.abs().sum() > 0


def test_discriminator_term_gives_the_generator_no_gradient():
    discriminator = PatchDiscriminator(3, width=8, num_layers=2)
    fake = images(seed=2).requires_grad_()
    discriminator_loss(discriminator, images(), fake).backward()
    assert fake.grad is None
    assert all(p.grad is not None for p in discriminator.parameters())
    assert sum(p.grad.abs().sum() for p in discriminator.parameters()) > 0


def test_frozen_call_computes_what_the_module_computes():
    discriminator = PatchDiscriminator(3, width=8, num_layers=2)
    x = images()
    torch.testing.assert_close(frozen_call(discriminator, x), discriminator(x))


def test_one_backward_gives_each_player_exactly_its_own_gradient():
    model, batch = tiny_gan(disc_start=0), {"image": images()}
    task, c = AutoencoderTask(preview=images()), model.loss_config
    torch.manual_seed(5)
    task.loss(model, batch).backward()
    full = {name: p.grad.clone() for name, p in model.named_parameters()}

    # The discriminator's gradient is that of its hinge term alone ...
    model.zero_grad()
    torch.manual_seed(5)
    output = model.autoencoder(batch["image"])
    (c.disc_factor * discriminator_loss(model.discriminator, batch["image"], output.reconstruction)).backward()
    for name, p in model.discriminator.named_parameters():
        torch.testing.assert_close(full[f"discriminator.{name}"], p.grad)

    # ... and the autoencoder's that of reconstruction + KL + the (frozen-discriminator) generator term.
    model.zero_grad()
    torch.manual_seed(5)
    output = model.autoencoder(batch["image"])
    reconstruction = task.reconstruction_loss(model, batch["image"], output)
    g_loss = generator_loss(model.discriminator, output.reconstruction)
    weight = adaptive_weight(reconstruction, g_loss, model.autoencoder.decoder.conv_out.weight,
                             max_adaptive_weight(batch["image"], model.config.regularizer))
    (reconstruction + task.regularizer_loss(model, batch["image"], output)
     + c.disc_factor * c.disc_weight * weight * g_loss).backward()
    for name, p in model.autoencoder.named_parameters():
        torch.testing.assert_close(full[f"autoencoder.{name}"], p.grad)
    assert all(p.grad is None for p in model.discriminator.parameters())


def test_the_gan_switches_on_after_disc_start_batches_and_the_count_is_saved():
    model, task = tiny_gan(disc_start=2), AutoencoderTask(preview=images())
    for expected_on in (False, True):
        model.zero_grad()
        task.loss(model, {"image": images()}).backward()
        assert all((p.grad is not None) == expected_on for p in model.discriminator.parameters())
    assert int(model.batches_seen) == 2 and "batches_seen" in model.state_dict()


def test_adaptive_weight_balances_the_gradient_norms():
    w = torch.randn(4, 4, requires_grad=True)
    x = torch.randn(4)
    reconstruction, adversarial = (w @ x).pow(2).sum() * 6, (w @ x).pow(2).sum() * 2
    assert adaptive_weight(reconstruction, adversarial, w).item() == pytest.approx(3.0, rel=1e-3)


def test_lab_clip_perceptual_distance_is_zero_for_equal_images_and_differentiable():
    perceptual = LabClipPerceptual()
    x, y = images(2, 64), images(2, 64).flip(-1).requires_grad_()
    assert perceptual(x, x).abs().max() < 1e-6
    distance = perceptual(x, y)
    assert (distance > 0.01).all()
    distance.sum().backward()
    assert y.grad.abs().sum() > 0 and all(p.grad is None for p in perceptual.parameters())


def test_scale_by_std_gives_unit_std_latents():
    model = LatentDiffusion(LatentDiffusionConfig("lab-emoji"))
    assert model.needs_latent_scale
    x = images(8, 64)
    torch.manual_seed(0)
    DiffusionTask().loss(model, {"image": x, "caption": ["red apple"] * 8})
    assert not model.needs_latent_scale
    torch.manual_seed(0)  # the same posterior sample as the measurement
    assert model.encode(x).std().item() == pytest.approx(1.0, abs=1e-4)


def test_encoding_before_the_scale_is_measured_says_what_to_do():
    model = LatentDiffusion(LatentDiffusionConfig("lab-emoji"))
    with pytest.raises(RuntimeError, match="set_latent_scale_from"):
        model.encode(images(1, 64))


def test_condition_dropout_uses_the_null_class_and_the_empty_prompt():
    class_model = LatentDiffusion(LatentDiffusionConfig("lab-class", condition_dropout=0.5))
    batch = {"image": torch.zeros(64, 1, 28, 28), "label": torch.arange(64) % 10, "caption": ["a"] * 64}
    torch.manual_seed(0)
    labels = class_model.condition(batch, dropout=True)["y"]
    dropped = labels == 10
    assert 0 < dropped.sum() < 64 and torch.equal(labels[~dropped], batch["label"][~dropped])
    assert torch.equal(class_model.condition(batch)["y"], batch["label"])

    text_model = LatentDiffusion(LatentDiffusionConfig("lab-emoji", condition_dropout=0.5)).eval()
    batch = {"caption": ["red apple", "a cat"] * 8}
    with torch.no_grad():
        torch.manual_seed(0)
        context = text_model.condition(batch, dropout=True)["context"]
        full, empty = text_model.condition(batch)["context"], text_model.unconditional(batch)["context"]
    is_empty = (context - empty).abs().amax(dim=(1, 2)) == 0
    is_full = (context - full).abs().amax(dim=(1, 2)) == 0
    assert torch.all(is_empty ^ is_full) and 0 < is_empty.sum() < 16
    torch.testing.assert_close(empty, text_model.condition({"caption": [""] * 16})["context"])


def test_wrong_image_size_says_what_the_model_expects():
    model = LatentDiffusion(LatentDiffusionConfig("lab-class"))
    batch = {"image": torch.zeros(2, 1, 32, 32), "label": torch.tensor([0, 1])}
    with pytest.raises(ValueError, match=r"built for \(1, 28, 28\).*Build the dataset at 28x28"):
        DiffusionTask().loss(model, batch)


def test_conditioning_errors_say_what_to_pass():
    pixel = LatentDiffusion(LatentDiffusionConfig("lab-pixel"))
    with pytest.raises(ValueError, match="lab-pixel takes no prompts: it is conditioned on nothing.*Drop the prompts"):
        generate(pixel, prompts=["a shirt"])
    with pytest.raises(ValueError, match="unconditional: classifier-free guidance needs a condition"):
        generate(pixel, 1, settings=SamplingSettings(steps=1, guidance_scale=3.0))
    classes = LatentDiffusion(LatentDiffusionConfig("lab-class"))
    with pytest.raises(ValueError, match="class 12 is out of range: this model has classes 0..9"):
        generate(classes, labels=torch.tensor([3, 12]))
    with pytest.raises(ValueError, match=r"lab-class takes no prompts: it is conditioned on a class label \(0..9\)"):
        generate(classes, prompts=["a shirt"])


def test_a_class_model_samples_images_in_range():
    model = LatentDiffusion(LatentDiffusionConfig("lab-class")).eval()
    out = generate(model, labels=torch.tensor([0, 9, 10]), settings=SamplingSettings(steps=2, guidance_scale=2.0),
                   generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 1, 28, 28) and out.abs().max() <= 1.0


def test_generate_without_decoding_returns_the_latents_the_decoder_turns_into_the_images(untrained_ldm8):
    settings = SamplingSettings(steps=2)
    draw = lambda decode: generate(untrained_ldm8, labels=torch.tensor([1, 2]), settings=settings, decode=decode,
                                   generator=torch.Generator().manual_seed(0))
    latents, images = draw(False), draw(True)
    assert latents.shape == (2, *untrained_ldm8.latent_shape)
    assert torch.allclose(untrained_ldm8.decode(latents).clamp(-1, 1), images, atol=1e-5)


def test_the_trainer_moves_both_players_and_resumes_the_batch_count(tmp_path):
    from ldm_lab.training import TrainConfig, load_weights, train

    model = tiny_gan(disc_start=1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    data = [{"image": image} for image in images(4)]
    config = TrainConfig(steps=2, batch_size=2, lr=1e-3, device="cpu", log_every=1)
    train(model, AutoencoderTask(preview=images()), data, config, tmp_path)
    moved = {name.split(".")[0] for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert moved == {"autoencoder", "discriminator"}
    restored = load_weights(tiny_gan(disc_start=1), tmp_path)
    assert int(restored.batches_seen) == 2


def test_alias_rate_swaps_captions_for_aliases_at_that_rate_and_keeps_the_rest():
    import collections

    batch = {"caption": ["slice of pizza", "automobile", "rocket"], "aliases": ["pizza", "car; red car", ""]}
    torch.manual_seed(0)
    counts = collections.Counter(name for _ in range(2000)
                                 for name in DiffusionTask(alias_rate=0.5).with_aliases(batch)["caption"])
    assert counts["rocket"] == 2000                                   # no alias: always the caption
    assert 900 < counts["pizza"] < 1100 and 900 < counts["slice of pizza"] < 1100
    assert 400 < counts["car"] < 600 and 400 < counts["red car"] < 600 and counts["car"] + counts["red car"] + counts["automobile"] == 2000
    assert DiffusionTask().with_aliases(batch) is batch                # the default trains on captions only
    assert DiffusionTask(alias_rate=1.0).with_aliases({"caption": ["x"]}) == {"caption": ["x"]}  # no aliases field
    with pytest.raises(ValueError, match="probability"):
        DiffusionTask(alias_rate=1.5)
