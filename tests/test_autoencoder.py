"""Autoencoders: shapes at every compression factor, the KL posterior, vector quantisation, exact sizes."""

import math
from dataclasses import replace

import pytest
import torch

from ldm_lab.nn.autoencoder import (KL_F4, KL_F8, KL_F16, KL_F32, VQ_F4, VQ_F4_NOATTN, VQ_F8, VQ_F16, Autoencoder,
                                    AutoencoderConfig, PixelAttention, Regularizer)
from ldm_lab.nn.distributions import DiagonalGaussian
from ldm_lab.nn.quantize import VectorQuantizer, code_usage

TINY = AutoencoderConfig(ch=32, ch_mult=(1, 1), num_res_blocks=1, z_channels=3, embed_dim=3)


def with_factor(factor: int, regularizer: Regularizer) -> AutoencoderConfig:
    levels = int(math.log2(factor)) + 1
    return replace(TINY, ch_mult=(1,) * levels, regularizer=regularizer,
                   codebook_size=16 if regularizer is Regularizer.VQ else None)


@pytest.mark.parametrize("factor", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("regularizer", list(Regularizer))
def test_latent_is_f_times_smaller_and_decodes_to_image_size(factor, regularizer):
    ae = Autoencoder(with_factor(factor, regularizer)).eval()
    x = torch.randn(2, 3, 32, 64)
    with torch.no_grad():
        encoded = ae.encode(x)
        z = encoded.sample() if regularizer is Regularizer.KL else encoded[0]
        assert ae.config.downsampling_factor == factor
        assert z.shape == (2, 3, 32 // factor, 64 // factor)
        assert ae.decode(z).shape == x.shape


def test_attention_is_placed_at_the_configured_resolutions():
    def attention_layers(config):
        with torch.device("meta"):
            return sum(isinstance(m, PixelAttention) for m in Autoencoder(config).modules())

    # KL_F32 attends at 16 and 8 px (levels 4 and 5 of a 256 px input): 2 encoder + 3 decoder blocks each, + 2 mid
    assert attention_layers(KL_F32) == 2 * (2 + 3) + 2
    assert attention_layers(KL_F8) == 2
    assert attention_layers(VQ_F4_NOATTN) == 0


@pytest.mark.parametrize(("config", "expected"), [
    (KL_F8, 83_653_863), (KL_F4, 55_312_063), (KL_F16, 69_610_963), (KL_F32, 103_880_131),
    (VQ_F4, 55_322_782), (VQ_F4_NOATTN, 53_219_486), (VQ_F8, 67_717_295), (VQ_F16, 69_593_371)])
def test_parameter_counts_match_the_official_configs(config, expected):
    with torch.device("meta"):
        assert sum(p.numel() for p in Autoencoder(config).parameters()) == expected


def test_a_wider_deeper_decoder_leaves_the_encoder_and_latent_unchanged():
    wide = replace(TINY, decoder_ch=64, decoder_num_res_blocks=2)
    assert TINY.symmetric and not wide.symmetric
    torch.manual_seed(0)
    ae, asymmetric = Autoencoder(TINY).eval(), Autoencoder(wide).eval()
    assert asymmetric.encoder.state_dict().keys() == ae.encoder.state_dict().keys()
    asymmetric.encoder.load_state_dict(ae.encoder.state_dict())      # same shapes: one encoder serves both
    asymmetric.quant_conv.load_state_dict(ae.quant_conv.state_dict())
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(asymmetric.encode(x).mean, ae.encode(x).mean)
        assert asymmetric(x, sample_posterior=False).reconstruction.shape == x.shape
    assert asymmetric.decoder.conv_out.in_channels == 64 and len(asymmetric.decoder.levels[0].blocks) == 3
    assert len(ae.decoder.levels[0].blocks) == 2   # LDM's decoder: one block more than the encoder


def test_config_errors_say_what_to_change():
    with pytest.raises(ValueError, match="codebook_size"):
        AutoencoderConfig(regularizer=Regularizer.VQ)
    with pytest.raises(ValueError, match=r"attn_resolutions \[48\]"):
        AutoencoderConfig(attn_resolutions=(48,))


# --- KL posterior ------------------------------------------------------------------------------------------

def test_posterior_kl_matches_torch_distributions():
    torch.manual_seed(0)
    posterior = DiagonalGaussian.from_moments(torch.randn(3, 8, 4, 4))
    normal = torch.distributions.Normal(posterior.mean, posterior.std)
    standard = torch.distributions.Normal(torch.zeros(()), torch.ones(()))
    expected = torch.distributions.kl_divergence(normal, standard).sum(dim=(1, 2, 3))
    torch.testing.assert_close(posterior.kl(), expected)
    assert posterior.kl().shape == (3,)


def test_posterior_sample_has_its_mean_and_std_and_mode_is_the_mean():
    mean, logvar = torch.full((1, 2, 64, 64), 1.5), torch.full((1, 2, 64, 64), math.log(0.25))
    posterior = DiagonalGaussian(mean, logvar)
    sample = posterior.sample(torch.Generator().manual_seed(0))
    assert abs(sample.mean().item() - 1.5) < 0.02 and abs(sample.std().item() - 0.5) < 0.02
    assert torch.equal(posterior.mode(), mean)
    assert torch.equal(sample, posterior.sample(torch.Generator().manual_seed(0)))
    assert DiagonalGaussian(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).kl().item() == 0


def test_log_variance_is_clamped():
    posterior = DiagonalGaussian.from_moments(torch.cat([torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), 99.0)], 1))
    assert posterior.logvar.item() == 20.0


def test_kl_autoencoder_forward_samples_or_takes_the_mean():
    torch.manual_seed(0)
    ae = Autoencoder(TINY)
    x = torch.randn(1, 3, 16, 16)
    out = ae(x)
    assert out.reconstruction.shape == x.shape and out.quantizer is None
    with torch.no_grad():
        assert torch.allclose(ae(x, sample_posterior=False).reconstruction, ae.decode(ae.encode(x).mean))
        assert not torch.allclose(ae(x).reconstruction, ae(x).reconstruction)


# --- vector quantisation -----------------------------------------------------------------------------------

def test_quantizer_picks_the_nearest_code():
    torch.manual_seed(0)
    vq = VectorQuantizer(num_codes=10, dim=3)
    z = torch.randn(2, 3, 4, 5)
    z_q, info = vq(z)
    pixels = z.permute(0, 2, 3, 1).reshape(-1, 1, 3)
    brute_force = ((pixels - vq.codebook.weight) ** 2).sum(-1).argmin(-1)
    assert torch.equal(info.indices.flatten(), brute_force)
    torch.testing.assert_close(z_q.detach(), vq.lookup(info.indices))  # up to z + (e - z) rounding


def test_straight_through_gradient_reaches_the_encoder_unchanged():
    vq = VectorQuantizer(num_codes=8, dim=4)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    z_q, _ = vq(z)
    (z_q * torch.arange(4.0)[:, None, None]).sum().backward()
    assert torch.equal(z.grad, torch.arange(4.0)[:, None, None].expand_as(z))
    assert vq.codebook.weight.grad is None  # the codes learn from the loss only


def test_commitment_loss_value_and_where_its_gradients_go():
    torch.manual_seed(0)
    beta = 0.25
    vq = VectorQuantizer(num_codes=8, dim=4, beta=beta, legacy=False)  # VQ-VAE eq. 3
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    _, info = vq(z)
    codes = vq.lookup(info.indices).detach()
    torch.testing.assert_close(info.loss, (1 + beta) * ((codes - z) ** 2).mean())
    info.loss.backward()
    # the encoder is pulled towards its code by the commitment term only: beta * d/dz mean((z - e)^2)
    torch.testing.assert_close(z.grad, beta * 2 * (z - codes).detach() / z.numel())
    assert vq.codebook.weight.grad.abs().sum() > 0


def test_code_usage_statistics():
    perplexity, usage = code_usage(torch.tensor([0, 0, 1, 1]), num_codes=8)
    torch.testing.assert_close(perplexity, torch.tensor(2.0))
    assert usage.item() == 2 / 8
    perplexity, usage = code_usage(torch.arange(8), num_codes=8)
    torch.testing.assert_close(perplexity, torch.tensor(8.0))
    assert usage.item() == 1.0


def test_vq_autoencoder_reports_statistics_and_decode_snaps_to_the_codebook():
    torch.manual_seed(0)
    ae = Autoencoder(replace(TINY, regularizer=Regularizer.VQ, codebook_size=32)).eval()
    out = ae(torch.randn(2, 3, 16, 16))
    assert out.posterior is None and out.quantizer.indices.shape == (2, 8, 8)
    assert 1.0 <= out.quantizer.perplexity.item() <= 32 and 0 < out.quantizer.usage.item() <= 1
    with torch.no_grad():
        z = torch.randn(1, 3, 8, 8)
        snapped = ae.quantizer.lookup(ae.quantizer.nearest_code(z))
        torch.testing.assert_close(ae.decode(z), ae.decode(snapped))
