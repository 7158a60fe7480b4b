"""Autoencoder weights to and from diffusers' AutoencoderKL and the original LDM/SGM layout (random weights)."""

from dataclasses import replace

import pytest
import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from safetensors.torch import save_file

from ldm_lab.convert.autoencoder import (autoencoder_from_diffusers, autoencoder_from_original,
                                         autoencoder_to_diffusers, config_from_original, describe,
                                         load_original_autoencoder, original_state_dict)
from ldm_lab.nn.autoencoder import NAMED_CONFIGS, VQ_F8, VQ_F16, Autoencoder, AutoencoderConfig, Regularizer

# Two levels of 32 and 64 channels; the second variant adds attention at the 16 px level (like KL_F16's).
TINY = AutoencoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, resolution=32)
TINY_ATTN = replace(TINY, attn_resolutions=(16,))


def random_autoencoder(config: AutoencoderConfig, seed: int = 0) -> Autoencoder:
    torch.manual_seed(seed)
    ae = Autoencoder(config).eval()
    with torch.no_grad():  # GroupNorm starts at weight 1 / bias 0: randomise it too, so a swap would show
        for name, p in ae.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return ae


def decode_gap(a, b, z: torch.Tensor) -> float:
    with torch.no_grad():
        out_a, out_b = a.decode(z), b.decode(z)
    out_a, out_b = (getattr(o, "sample", o) for o in (out_a, out_b))
    return (out_a - out_b).abs().max().item()


@pytest.mark.parametrize("config", [TINY, TINY_ATTN], ids=["mid-attention", "level-attention"])
def test_diffusers_parity_encode_and_decode(config):
    ours = random_autoencoder(config)
    theirs = autoencoder_to_diffusers(ours).eval()
    x, z = torch.randn(2, 3, 32, 32), torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        posterior, reference = ours.encode(x), theirs.encode(x).latent_dist
        assert (posterior.mean - reference.mean).abs().max() < 1e-4
        assert (posterior.logvar - reference.logvar).abs().max() < 1e-4
    assert decode_gap(ours, theirs, z) < 1e-4


def test_from_diffusers_round_trip_keeps_every_weight():
    theirs = autoencoder_to_diffusers(random_autoencoder(TINY_ATTN), scaling_factor=0.13025)
    assert theirs.config.scaling_factor == 0.13025
    ours = autoencoder_from_diffusers(theirs)
    assert ours.config == replace(TINY_ATTN, resolution=256, attn_resolutions=(128,))  # same levels, nominal 256
    again = autoencoder_to_diffusers(ours).state_dict()
    assert all(torch.equal(again[k], v) for k, v in theirs.state_dict().items())
    with torch.no_grad():
        next(ours.parameters()).add_(1.0)  # ours owns its weights
    assert not torch.equal(next(ours.parameters()), next(theirs.parameters()))


def test_vq_autoencoders_are_refused_by_diffusers_kl():
    with pytest.raises(ValueError, match="KL autoencoders"):
        autoencoder_to_diffusers(Autoencoder(replace(TINY, regularizer=Regularizer.VQ, codebook_size=8)))


def test_a_wider_deeper_decoder_converts_to_diffusers_asymmetric_vae_and_back():
    """Asymmetric VQGAN's decoder: diffusers' AsymmetricAutoencoderKL decodes alike without a mask."""
    config = replace(TINY, decoder_ch=64, decoder_num_res_blocks=2)
    ours = random_autoencoder(config)
    theirs = autoencoder_to_diffusers(ours).eval()
    assert type(theirs).__name__ == "AsymmetricAutoencoderKL"
    x, z = torch.randn(2, 3, 32, 32), torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        assert (ours.encode(x).mean - theirs.encode(x).latent_dist.mean).abs().max() < 1e-4
    assert decode_gap(ours, theirs, z) < 1e-4
    back = autoencoder_from_diffusers(theirs)
    assert back.config == replace(config, resolution=256)
    assert decode_gap(back, ours, z) < 1e-5
    with pytest.raises(ValueError, match="always has mid-block attention"):
        autoencoder_to_diffusers(Autoencoder(replace(config, mid_attention=False)))


def test_original_layout_agrees_with_diffusers_own_ldm_converter():
    ours = random_autoencoder(TINY)
    diffusers_config = dict(autoencoder_to_diffusers(ours).config)
    theirs = AutoencoderKL(**{k: v for k, v in diffusers_config.items() if not k.startswith("_")}).eval()
    theirs.load_state_dict(convert_ldm_vae_checkpoint(original_state_dict(ours), diffusers_config), strict=True)
    assert decode_gap(ours, theirs, torch.randn(1, 4, 16, 16)) < 1e-4


@pytest.mark.parametrize("config", [TINY_ATTN, replace(TINY, regularizer=Regularizer.VQ, codebook_size=16)],
                         ids=["kl", "vq"])
def test_original_round_trip_with_inferred_config(config):
    ours = random_autoencoder(config)
    loaded = autoencoder_from_original(original_state_dict(ours))
    # the nominal resolution is not stored in checkpoints: attention levels come back relative to 256 px
    assert loaded.config == replace(config, resolution=256,
                                    attn_resolutions=tuple(8 * r for r in config.attn_resolutions))
    assert decode_gap(ours, loaded, torch.randn(1, 4, 16, 16)) == 0


@pytest.mark.parametrize("name", list(NAMED_CONFIGS))
def test_every_named_config_is_recognised_from_its_checkpoint_shapes(name):
    with torch.device("meta"):
        state = original_state_dict(Autoencoder(NAMED_CONFIGS[name]), prefix="")
    assert describe(config_from_original(state)) == name


def test_shape_mismatch_names_the_key_and_the_config_that_fits():
    with torch.device("meta"):
        state = original_state_dict(Autoencoder(VQ_F8))
    with pytest.raises(ValueError, match=r"'encoder\.down\.1\.block\.0\.conv1\.weight'.*looks like VQ_F8"):
        autoencoder_from_original(state, replace(VQ_F16, attn_resolutions=()))
    with pytest.raises(ValueError, match="looks like VQ_F8"):
        autoencoder_from_original(state, VQ_F16)


def test_local_files_load_with_prefix_and_training_extras(tmp_path):
    ours = random_autoencoder(TINY)
    full = original_state_dict(ours) | {"loss.discriminator.main.0.weight": torch.zeros(1),
                                        "model.diffusion_model.out.2.bias": torch.zeros(4)}
    save_file(full, tmp_path / "sd.safetensors")
    torch.save({"state_dict": original_state_dict(ours, prefix="")}, tmp_path / "vae.ckpt")
    z = torch.randn(1, 4, 16, 16)
    assert decode_gap(ours, load_original_autoencoder(tmp_path / "sd.safetensors"), z) == 0
    assert decode_gap(ours, load_original_autoencoder(tmp_path / "vae.ckpt"), z) == 0


def test_a_diffusers_file_is_pointed_at_the_diffusers_loader(tmp_path):
    save_file(autoencoder_to_diffusers(random_autoencoder(TINY)).state_dict(), tmp_path / "vae.safetensors")
    with pytest.raises(KeyError, match="autoencoder_from_diffusers"):
        load_original_autoencoder(tmp_path / "vae.safetensors", TINY)
