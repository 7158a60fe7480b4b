"""LatentDiffusion on the conditioner: every lab conditioning model trains and samples from data-batch conditions,
wrong requests are clear errors, and cross-attention maps are the layers' real attention probabilities."""

import pytest
import torch

from ldm_lab.conditioning import record_cross_attention, token_maps, token_strings
from ldm_lab.data import build_dataset, collate
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.nn.attention import Attention
from ldm_lab.tasks import DiffusionTask, cross_attention, generate, generate_like

ONE_STEP = SamplingSettings(steps=1)


def shapes_batch(n: int = 2) -> dict:
    data = build_dataset("shapes", "val", (64, 64))
    return collate([data[i] for i in range(n)])


@pytest.fixture(scope="module")
def batch():
    return shapes_batch()


def model(preset: str) -> LatentDiffusion:
    torch.manual_seed(0)
    ldm = LatentDiffusion(LatentDiffusionConfig(preset))
    ldm.latent_scale.fill_(1.0)
    return ldm


@pytest.mark.parametrize("preset, trained", [
    ("lab-layout", "conditioner.embedders.layout."),
    ("lab-sdxl", "unet.vector_embed."),  # its text tower is lab-clip's, frozen: y's MLP carries the gradient
    ("lab-seg", "unet.conv_in.")])
def test_a_training_step_reaches_the_condition(preset, trained, batch):
    ldm = model(preset)
    for p in ldm.unet.parameters():  # a fresh U-Net's zero-initialised outputs would block every gradient
        p.data.normal_(0, 0.05)
    torch.manual_seed(1)
    loss = DiffusionTask().loss(ldm, batch)
    loss.backward()
    assert loss.isfinite()
    grads = [p.grad for name, p in ldm.named_parameters() if name.startswith(trained)]
    assert grads and all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_sdxl_vector_is_pooled_text_and_six_fourier_scalars(batch):
    ldm = model("lab-sdxl")
    assert batch["original_size"].shape == (2, 2)
    y = ldm.condition(batch)["y"]
    assert y.shape == (2, 128 + 6 * 256)  # pooled lab-clip text 128 + 6 scalars x 256
    defaults = ldm.condition({"caption": batch["caption"]})["y"]  # sampling: original = target = 64x64, crop (0, 0)
    sized = dict(batch, original_size=torch.tensor([[64, 64]] * 2), crop_top_left=torch.zeros(2, 2))
    torch.testing.assert_close(defaults, ldm.condition(sized)["y"])


@pytest.mark.parametrize("preset", ["lab-layout", "lab-seg", "lab-sdxl"])
def test_generate_like_draws_one_image_per_item_with_its_conditions(preset, batch):
    images = generate_like(model(preset).eval(), batch, settings=SamplingSettings(steps=1, guidance_scale=2.0),
                           generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 64, 64) and images.abs().max() <= 1


def test_class_token_model_generates_from_labels():
    images = generate(model("lab-fmnist").eval(), labels=torch.tensor([0, 9, 10]),
                      settings=SamplingSettings(steps=1, guidance_scale=3.0))
    assert images.shape == (3, 1, 32, 32)


def test_wrong_requests_say_what_the_model_takes(batch):
    with pytest.raises(ValueError, match="lab-emoji takes no boxes: it is conditioned on a prompt"):
        generate(model("lab-emoji"), prompts=["a cat"], conditions={"boxes": batch["boxes"]}, settings=ONE_STEP)
    with pytest.raises(ValueError, match=r"lab-layout takes no prompts: it is conditioned on boxes"):
        generate(model("lab-layout"), prompts=["a cat"], settings=ONE_STEP)
    with pytest.raises(ValueError, match="lab-fmnist takes no segmentation maps: it is conditioned on a class label"):
        generate(model("lab-fmnist"), conditions={"segmentation": batch["segmentation"]}, settings=ONE_STEP)
    with pytest.raises(ValueError, match=r"lab-seg samples 64x64 images: pass maps of 64x64"):
        generate(model("lab-seg"), conditions={"segmentation": batch["segmentation"][:, :32, :32]},
                 settings=ONE_STEP)
    with pytest.raises(ValueError, match=r"built for \(3, 64, 64\)"):
        DiffusionTask().loss(model("lab-seg"), dict(batch, image=batch["image"][..., :32, :32]))


def test_cross_attention_maps_are_the_layers_attention_probabilities(batch):
    ldm = model("lab-layout").eval()
    for p in ldm.unet.parameters():
        p.data.normal_(0, 0.05)
    cond = ldm.condition(batch)
    x = torch.randn(2, *ldm.latent_shape)
    layers = [m for name, m in ldm.unet.named_modules() if name.endswith("cross_attn")]
    outputs = []
    handles = [m.register_forward_hook(lambda m, i, o: outputs.append((i, o))) for m in layers]
    with torch.no_grad(), record_cross_attention(ldm.unet) as maps:
        ldm(x, torch.tensor([500, 500]), **cond)
    for h in handles:
        h.remove()
    assert len(maps) == len(layers) == len(outputs) > 0
    for attention_map, layer, ((queries, context), output) in zip(maps, layers, outputs):
        b, heads, pixels, tokens = attention_map.probs.shape
        assert (b, tokens) == (2, 92) and pixels == attention_map.size[0] * attention_map.size[1]
        torch.testing.assert_close(attention_map.probs.sum(-1), torch.ones(b, heads, pixels))
        values = layer.to_v(context).unflatten(-1, (heads, -1)).transpose(1, 2)  # (b, heads, tokens, d)
        mixed = (attention_map.probs @ values).transpose(1, 2).flatten(2)
        torch.testing.assert_close(layer.to_out(mixed), output, atol=1e-5, rtol=1e-4)
        assert attention_map.per_token().shape == (2, 92, *attention_map.size)
    assert not any(m._forward_hooks for m in ldm.modules() if isinstance(m, Attention))  # hooks removed
    averaged = token_maps(maps, (16, 16))
    assert averaged.shape == (2, 92, 16, 16)
    torch.testing.assert_close(averaged.sum(1), torch.ones(2, 16, 16))  # still a distribution over the tokens


def test_no_cross_attention_no_maps():
    with pytest.raises(ValueError, match="no cross-attention layers"), record_cross_attention(model("lab-seg").unet):
        pass


def test_per_token_attention_of_a_prompt_is_labelled_by_its_token_strings():
    ldm = model("lab-emoji").eval()
    for p in ldm.unet.parameters():
        p.data.normal_(0, 0.05)
    tokens = token_strings("red apple")
    assert tokens[:4] == ["<start>", "red", "apple", "<end>"] and set(tokens[4:]) == {"<pad>"} and len(tokens) == 77
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    maps = cross_attention(ldm, images, {"caption": ["red apple"]}, timestep=300,
                           generator=torch.Generator().manual_seed(0))
    assert maps.shape == (1, len(tokens), 64, 64)
    torch.testing.assert_close(maps.sum(1), torch.ones(1, 64, 64))
    other = cross_attention(ldm, images, {"caption": ["a blue car"]}, timestep=300,
                            generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(maps, other)  # the maps follow the prompt


def test_text_models_read_lab_clips_frozen_text_tower():
    """lab-emoji / lab-sdxl load the shipped lab-clip's text tower: the pooled prompt equals lab-clip's own text
    embedding, the tower is frozen, and shipped files leave it out (pretrained_prefixes)."""
    from ldm_lab.conditioning.base import Output
    from ldm_lab.evaluation_models.lab_clip import load_lab_clip, tokenize

    model = LatentDiffusion(LatentDiffusionConfig("lab-sdxl"))
    prompts = ["a large red circle", "rocket"]
    before = model.conditioner.embedders["text"](prompts)[Output.VECTOR]
    model.load_pretrained()
    pooled = model.conditioner.embedders["text"](prompts)[Output.VECTOR]
    expected = load_lab_clip().encode_text(tokenize(prompts))
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(before, expected, atol=1e-2)
    assert model.pretrained_prefixes == ("conditioner.embedders.text.",)
    assert not any(p.requires_grad for p in model.conditioner.parameters())


def test_a_pretrained_text_tower_cannot_be_trainable():
    from ldm_lab.conditioning.text import TextEmbedderConfig
    from ldm_lab.presets.lab import LAB_CLIP_TEXT

    with pytest.raises(ValueError, match="trainable=False"):
        TextEmbedderConfig(LAB_CLIP_TEXT, trainable=True, pretrained="lab-clip")
