"""The U-Net and its parts: exact parameter counts of the real models (on the meta device), shapes, the
conditioning paths, error messages, and the building blocks checked against independent formulas."""

import math

import pytest
import torch
from torch import nn

from ldm_lab.nn.attention import Attention, SpatialTransformer
from ldm_lab.nn.embeddings import fourier_features, timestep_embedding
from ldm_lab.nn.resnet import Downsample, ResBlock, Upsample
from ldm_lab.nn.unet import UNet, UNetConfig


# DESIGN.md section 5, measured from the official configs.
SD15 = UNetConfig()
SD2 = UNetConfig(num_heads=None, head_dim=64, context_dim=1024, use_linear_projection=True)
SDXL_BASE = UNetConfig(channel_mult=(1, 2, 4), transformer_depth=(0, 2, 10), transformer_depth_middle=10,
                       num_heads=None, head_dim=64, context_dim=2048, use_linear_projection=True, y_dim=2816)
SDXL_REFINER = UNetConfig(model_channels=384, transformer_depth=(0, 4, 4, 0), transformer_depth_middle=4,
                          num_heads=None, head_dim=64, context_dim=1280, use_linear_projection=True, y_dim=2560)

TINY = UNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, transformer_depth=(1, 1),
                  num_heads=2, context_dim=16)


def count(config: UNetConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in UNet(config).parameters())


@pytest.mark.parametrize("config, expected", [(SD15, 859_520_964), (SD2, 865_910_724),
                                              (SDXL_BASE, 2_567_463_684), (SDXL_REFINER, 2_259_526_660)],
                         ids=["sd15", "sd2", "sdxl-base", "sdxl-refiner"])
def test_parameter_counts_match_the_official_models(config, expected):
    assert count(config) == expected


def randomised(unet: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh U-Nets output zeros (zero-initialised branch ends); give every weight a random value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return unet.eval()


def test_fresh_unet_predicts_zero_like_ldm_zero_module():
    out = UNet(TINY)(torch.randn(1, 4, 8, 8), 10, context=torch.randn(1, 3, 16))
    assert out.abs().max() == 0


@pytest.mark.parametrize("height, width", [(16, 16), (15, 9), (8, 24)])
def test_output_has_the_input_size_including_odd_sizes(height, width):
    config = TINY.replace(channel_mult=(1, 1, 2), transformer_depth=(0, 1, 1))
    unet = randomised(UNet(config))
    out = unet(torch.randn(2, 4, height, width), torch.tensor([1, 900]), context=torch.randn(2, 5, 16))
    assert out.shape == (2, 4, height, width)
    assert torch.isfinite(out).all()


def test_context_and_timestep_change_the_output():
    unet = randomised(UNet(TINY))
    x, context = torch.randn(1, 4, 8, 8), torch.randn(1, 3, 16)
    with torch.no_grad():
        base = unet(x, 10, context)
        assert not torch.allclose(base, unet(x, 10, context + 1))
        assert not torch.allclose(base, unet(x, 500, context))
        assert torch.allclose(base, unet(x, torch.tensor([10.0]), context))  # scalar and (b,) timesteps agree


def test_every_parameter_gets_a_gradient():
    config = TINY.replace(use_linear_projection=True, num_heads=None, head_dim=16, y_dim=12)
    unet = randomised(UNet(config)).train()
    out = unet(torch.randn(2, 4, 8, 8), torch.tensor([3, 700]), torch.randn(2, 3, 16), y=torch.randn(2, 12))
    out.square().mean().backward()
    unused = [name for name, p in unet.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert unused == []


def test_class_labels_select_a_learned_embedding():
    unet = randomised(UNet(TINY.replace(num_classes=3, context_dim=None, transformer_depth=(0, 1))))
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        a, b = unet(x, 5, y=torch.tensor([0, 1])), unet(x, 5, y=torch.tensor([0, 2]))
    assert torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])


def test_concat_conditioning_is_the_same_as_wider_input():
    unet = randomised(UNet(TINY.replace(in_channels=9)))
    x, extra, context = torch.randn(1, 4, 8, 8), torch.randn(1, 5, 8, 8), torch.randn(1, 3, 16)
    with torch.no_grad():
        assert torch.equal(unet(x, 3, context, concat=extra), unet(torch.cat([x, extra], 1), 3, context))
    with pytest.raises(ValueError, match="9.*concat"):
        unet(x, 3, context)


def test_errors_explain_the_expected_widths():
    config = TINY.replace(y_dim=12, y_description="pooled text 4 + 2 scalars x 4")
    unet = UNet(config)
    x, context = torch.randn(1, 4, 8, 8), torch.randn(1, 3, 16)
    with pytest.raises(ValueError, match=r"width 13.*expects 12 \(pooled text 4 \+ 2 scalars x 4\)"):
        unet(x, 1, context, y=torch.randn(1, 13))
    with pytest.raises(ValueError, match="pass y"):
        unet(x, 1, context)
    with pytest.raises(ValueError, match="context has width 8, but this U-Net expects 16"):
        unet(x, 1, torch.randn(1, 3, 8), y=torch.randn(1, 12))
    with pytest.raises(ValueError, match="no class or vector condition"):
        UNet(TINY)(x, 1, context, y=torch.randn(1, 12))


@pytest.mark.parametrize("changes, message", [
    (dict(num_heads=8, head_dim=64), "exactly one of num_heads"),
    (dict(num_heads=None, head_dim=None), "exactly one of num_heads"),
    (dict(transformer_depth=(1, 1, 1)), "one entry per level"),
    (dict(num_heads=3), "does not split into heads"),
    (dict(num_classes=10, y_dim=12), "not both"),
])
def test_config_errors_say_what_to_change(changes, message):
    with pytest.raises(ValueError, match=message):
        TINY.replace(**changes)


def test_heads_follow_count_or_width():
    assert SD15.heads(1280) == (8, 160)
    assert SD2.heads(1280) == (20, 64)


def test_timestep_embedding_is_the_transformer_encoding():
    t, dim = torch.tensor([0.0, 7.0, 999.0]), 8
    expected = torch.tensor([[math.cos(v * 10_000 ** (-i / 4)) for i in range(4)] +
                             [math.sin(v * 10_000 ** (-i / 4)) for i in range(4)] for v in t.tolist()])
    assert torch.allclose(timestep_embedding(t, dim), expected, atol=1e-4)
    assert timestep_embedding(t, 7).shape == (3, 7)


def test_fourier_features_embed_each_scalar_separately():
    values = torch.tensor([[1024.0, 0.0, 512.0], [64.0, 32.0, 16.0]])
    features = fourier_features(values, dim=6)
    assert features.shape == (2, 18)
    assert torch.equal(features[1, 6:12], timestep_embedding(values[1, 1:2], 6)[0])


def test_attention_is_softmax_qk_v_per_head():
    torch.manual_seed(0)
    attn = Attention(query_dim=8, num_heads=2, head_dim=4, context_dim=6).eval()
    x, context = torch.randn(1, 5, 8), torch.randn(1, 3, 6)
    q, k, v = attn.to_q(x), attn.to_k(context), attn.to_v(context)
    heads = []
    for h in range(2):
        s = slice(4 * h, 4 * h + 4)
        weights = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 2.0, dim=-1)  # sqrt(head_dim) = 2
        heads.append(weights @ v[..., s])
    assert torch.allclose(attn(x, context), attn.to_out(torch.cat(heads, -1)), atol=1e-6)


def test_conv_and_linear_token_projections_are_the_same_map():
    torch.manual_seed(0)
    conv = SpatialTransformer(32, 2, 16, context_dim=8, use_linear_projection=False).eval()
    linear = SpatialTransformer(32, 2, 16, context_dim=8, use_linear_projection=True).eval()
    linear.load_state_dict({k: v.reshape(linear.state_dict()[k].shape) for k, v in conv.state_dict().items()})
    with torch.no_grad():
        conv.proj_out.weight.normal_()
        linear.proj_out.weight.copy_(conv.proj_out.weight[:, :, 0, 0])
    x, context = torch.randn(2, 32, 4, 4), torch.randn(2, 3, 8)
    assert torch.allclose(conv(x, context), linear(x, context), atol=1e-5)


def test_resblock_skip_paths_and_resampling():
    assert isinstance(ResBlock(32, 32, 8).skip, nn.Identity)
    assert ResBlock(32, 64, 8).skip.kernel_size == (1, 1)
    assert ResBlock(32, 64, None, skip_kernel_size=3).skip.kernel_size == (3, 3)
    assert ResBlock(32, 64, None).emb_proj is None
    x = torch.randn(1, 32, 8, 8)
    assert Downsample(32)(x).shape == Downsample(32, asymmetric_padding=True)(x).shape == (1, 32, 4, 4)
    assert Upsample(32, 64)(x).shape == (1, 64, 16, 16)
    assert Upsample(32)(x, size=(15, 17)).shape == (1, 32, 15, 17)
