"""U-Net conversion: numerical parity with diffusers (random weights, tiny widths, fp32), round trips, and the
original LDM/SGM checkpoint layout (checked against a key list built from openaimodel's own construction
rules, and against diffusers' independent single-file converter)."""

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

from ldm_lab.convert import (from_diffusers, load_diffusers_unet, load_original_unet, original_state_dict,
                             to_diffusers)
from ldm_lab.convert.unet import unet_config_from_diffusers, unet_config_from_original, unet_config_to_diffusers
from ldm_lab.nn.embeddings import fourier_features
from ldm_lab.nn.unet import UNet, UNetConfig
from ldm_lab.presets import get_preset


TOLERANCE = 1e-4
TINY = dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=24, sample_size=8)
SD1_LIKE = dict(TINY, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=4)  # 4 heads everywhere
SD2_LIKE = dict(TINY, down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=(2, 4),
                use_linear_projection=True)  # head width 16 everywhere
SDXL_LIKE = dict(TINY, block_out_channels=(32, 64, 64), layers_per_block=2,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 attention_head_dim=(2, 4, 4), transformer_layers_per_block=(1, 1, 2), use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=16 + 6 * 8)
CASES = {"sd1": SD1_LIKE, "sd2": SD2_LIKE, "sdxl": SDXL_LIKE}


def fourier_width(kwargs: dict) -> dict:
    """SDXL's per-scalar Fourier width is the conditioner's business, so export needs to be told it."""
    return {"micro_conditioning_dim": kwargs["addition_time_embed_dim"]} if "addition_time_embed_dim" in kwargs else {}


def diffusers_unet(kwargs: dict, seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(**kwargs).eval()


def inputs(kwargs: dict, seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    batch = dict(x=torch.randn(2, 4, 8, 8, generator=generator), t=torch.tensor([3.0, 801.0]),
                 context=torch.randn(2, 5, kwargs["cross_attention_dim"], generator=generator))
    if kwargs.get("addition_embed_type") == "text_time":
        batch["text_embeds"] = torch.randn(2, 16, generator=generator)
        batch["time_ids"] = torch.tensor([[512.0, 384, 0, 16, 512, 512], [64, 64, 8, 0, 256, 128]])
    return batch


@torch.no_grad()
def run_diffusers(model: UNet2DConditionModel, batch: dict) -> torch.Tensor:
    extra = {k: batch[k] for k in ("text_embeds", "time_ids") if k in batch}
    return model(batch["x"], batch["t"], batch["context"], added_cond_kwargs=extra or None).sample


@torch.no_grad()
def run_ours(unet: UNet, batch: dict) -> torch.Tensor:
    y = None
    if "time_ids" in batch:  # SDXL: y = pooled text ‖ Fourier features of the six size/crop scalars
        y = torch.cat([batch["text_embeds"], fourier_features(batch["time_ids"], dim=8)], dim=1)
    return unet(batch["x"], batch["t"], batch["context"], y=y)


@pytest.mark.parametrize("name", CASES)
def test_from_diffusers_matches_diffusers_outputs(name):
    model = diffusers_unet(CASES[name])
    batch = inputs(CASES[name])
    ours = from_diffusers(model).eval()
    expected = run_diffusers(model, batch)
    assert expected.abs().max() > 1e-2  # a non-trivial output
    assert (run_ours(ours, batch) - expected).abs().max() < TOLERANCE


@pytest.mark.parametrize("name", CASES)
def test_to_diffusers_round_trips_weights_and_outputs(name):
    model = diffusers_unet(CASES[name])
    back = to_diffusers(from_diffusers(model), **fourier_width(CASES[name])).eval()
    original, returned = model.state_dict(), back.state_dict()
    assert original.keys() == returned.keys()
    assert all(torch.equal(original[k], returned[k]) for k in original)
    batch = inputs(CASES[name])
    assert torch.equal(run_diffusers(back, batch), run_diffusers(model, batch))


@pytest.mark.parametrize("name", ["sd15", "sd15-inpaint", "sd21", "sdxl-base", "sdxl-refiner", "lab-emoji"])
def test_preset_configs_survive_diffusers_config_and_counts(name):
    config = get_preset(name).unet.replace(context_description="", y_description="")
    kwargs = unet_config_to_diffusers(config)
    back = unet_config_from_diffusers(kwargs)
    # diffusers stores head counts per level: where every attention level is as wide (lab-emoji: 128), a head
    # count and a head width say the same thing, and the count comes back. The heads themselves must agree.
    depths = config.transformer_depth if isinstance(config.transformer_depth, tuple) else \
        (config.transformer_depth,) * len(config.channel_mult)
    widths = sorted({config.model_channels * m for m, depth in zip(config.channel_mult, depths) if depth})
    assert [back.heads(w) for w in widths] == [config.heads(w) for w in widths]
    assert back.replace(num_heads=config.num_heads, head_dim=config.head_dim) == config
    with torch.device("meta"):
        counts = [sum(p.numel() for p in m.parameters()) for m in (UNet2DConditionModel(**kwargs), UNet(config))]
    assert counts[0] == counts[1]


def test_unsupported_diffusers_options_are_named():
    with pytest.raises(ValueError, match="resnet_time_scale_shift='scale_shift'"):
        unet_config_from_diffusers({**SD1_LIKE, "resnet_time_scale_shift": "scale_shift"})
    with pytest.raises(ValueError, match="transformer_depth_middle > 0"):
        unet_config_to_diffusers(get_preset("lab-pixel").unet)


def test_from_diffusers_copies_the_weights():
    model = diffusers_unet(SD1_LIKE)
    ours = from_diffusers(model)
    with torch.no_grad():
        ours.conv_in.weight.zero_()
    assert model.conv_in.weight.abs().sum() > 0


def test_conversion_rejects_other_modules():
    with pytest.raises(TypeError, match="UNet2DConditionModel"):
        from_diffusers(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="UNet and Autoencoder"):
        to_diffusers(torch.nn.Linear(2, 2))


def test_diffusers_folder_loads_without_diffusers(tmp_path):
    model = diffusers_unet(SD2_LIKE)
    model.save_pretrained(tmp_path)  # config.json + diffusion_pytorch_model.safetensors
    batch = inputs(SD2_LIKE)
    assert (run_ours(load_diffusers_unet(tmp_path), batch) - run_diffusers(model, batch)).abs().max() < TOLERANCE


def test_a_damaged_diffusers_config_is_a_one_line_error_naming_the_file(tmp_path):
    save_file({"conv_in.weight": torch.zeros(1)}, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    (tmp_path / "config.json").write_text('{"sample_size": 64, "block_out_')   # cut short
    with pytest.raises(ValueError, match=r"config.json is not valid JSON \(.* at line 1.*Copy the U-Net folder"):
        load_diffusers_unet(tmp_path)


# --- the original layout -----------------------------------------------------------------------------------

def openaimodel_keys(model_channels=320, channel_mult=(1, 2, 4, 4), num_res_blocks=2, attention_resolutions=(4, 2, 1),
                     transformer_depth=1, use_linear=False, context_dim=768):
    """The parameter names of LDM's ``openaimodel.UNetModel`` with a spatial transformer, following its
    constructor (input_block_chans, ds, attention_resolutions as downsampling factors). Returns {name: shape}."""
    keys = {}

    def res(prefix, ch_in, ch_out):
        keys.update({f"{prefix}.in_layers.0.weight": (ch_in,), f"{prefix}.in_layers.0.bias": (ch_in,),
                     f"{prefix}.in_layers.2.weight": (ch_out, ch_in, 3, 3), f"{prefix}.in_layers.2.bias": (ch_out,),
                     f"{prefix}.emb_layers.1.weight": (ch_out, 4 * model_channels),
                     f"{prefix}.emb_layers.1.bias": (ch_out,),
                     f"{prefix}.out_layers.0.weight": (ch_out,), f"{prefix}.out_layers.0.bias": (ch_out,),
                     f"{prefix}.out_layers.3.weight": (ch_out, ch_out, 3, 3), f"{prefix}.out_layers.3.bias": (ch_out,)})
        if ch_in != ch_out:
            keys.update({f"{prefix}.skip_connection.weight": (ch_out, ch_in, 1, 1),
                         f"{prefix}.skip_connection.bias": (ch_out,)})

    def transformer(prefix, ch):
        proj = (ch, ch) if use_linear else (ch, ch, 1, 1)
        keys.update({f"{prefix}.norm.weight": (ch,), f"{prefix}.norm.bias": (ch,),
                     f"{prefix}.proj_in.weight": proj, f"{prefix}.proj_in.bias": (ch,),
                     f"{prefix}.proj_out.weight": proj, f"{prefix}.proj_out.bias": (ch,)})
        for d in range(transformer_depth):
            block = f"{prefix}.transformer_blocks.{d}"
            for attn, kv_dim in (("attn1", ch), ("attn2", context_dim)):
                keys.update({f"{block}.{attn}.to_q.weight": (ch, ch), f"{block}.{attn}.to_k.weight": (ch, kv_dim),
                             f"{block}.{attn}.to_v.weight": (ch, kv_dim),
                             f"{block}.{attn}.to_out.0.weight": (ch, ch), f"{block}.{attn}.to_out.0.bias": (ch,)})
            for norm in ("norm1", "norm2", "norm3"):
                keys.update({f"{block}.{norm}.weight": (ch,), f"{block}.{norm}.bias": (ch,)})
            keys.update({f"{block}.ff.net.0.proj.weight": (8 * ch, ch), f"{block}.ff.net.0.proj.bias": (8 * ch,),
                         f"{block}.ff.net.2.weight": (ch, 4 * ch), f"{block}.ff.net.2.bias": (ch,)})

    def conv(name, ch_in, ch_out):
        keys.update({f"{name}.weight": (ch_out, ch_in, 3, 3), f"{name}.bias": (ch_out,)})

    ted = 4 * model_channels
    keys.update({"time_embed.0.weight": (ted, model_channels), "time_embed.0.bias": (ted,),
                 "time_embed.2.weight": (ted, ted), "time_embed.2.bias": (ted,)})
    conv("input_blocks.0.0", 4, model_channels)
    ch, ds, n, input_block_chans = model_channels, 1, 1, [model_channels]
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            res(f"input_blocks.{n}.0", ch, mult * model_channels)
            ch = mult * model_channels
            if ds in attention_resolutions:
                transformer(f"input_blocks.{n}.1", ch)
            input_block_chans.append(ch)
            n += 1
        if level != len(channel_mult) - 1:
            conv(f"input_blocks.{n}.0.op", ch, ch)
            input_block_chans.append(ch)
            ds, n = ds * 2, n + 1
    res("middle_block.0", ch, ch)
    transformer("middle_block.1", ch)
    res("middle_block.2", ch, ch)
    n = 0
    for level, mult in list(enumerate(channel_mult))[::-1]:
        for i in range(num_res_blocks + 1):
            res(f"output_blocks.{n}.0", ch + input_block_chans.pop(), model_channels * mult)
            ch = model_channels * mult
            layers = 1
            if ds in attention_resolutions:
                transformer(f"output_blocks.{n}.1", ch)
                layers += 1
            if level and i == num_res_blocks:
                conv(f"output_blocks.{n}.{layers}.conv", ch, ch)
                ds //= 2
            n += 1
    keys.update({"out.0.weight": (ch,), "out.0.bias": (ch,)})
    conv("out.2", ch, 4)
    return {"model.diffusion_model." + k: torch.Size(v) for k, v in keys.items()}


# unet_config / network_config params of the official YAMLs (CompVis v1-inference.yaml, SGM configs/inference).
ORIGINAL_PARAMS = {
    "sd15": dict(in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                 num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_heads=8, use_spatial_transformer=True,
                 transformer_depth=1, context_dim=768, use_checkpoint=True, legacy=False),
    "sd21": dict(in_channels=4, out_channels=4, model_channels=320, attention_resolutions=[4, 2, 1],
                 num_res_blocks=2, channel_mult=[1, 2, 4, 4], num_head_channels=64,
                 use_linear_in_transformer=True, transformer_depth=1, context_dim=1024),
    "sdxl-base": dict(adm_in_channels=2816, num_classes="sequential", in_channels=4, out_channels=4,
                      model_channels=320, attention_resolutions=[4, 2], num_res_blocks=2, channel_mult=[1, 2, 4],
                      num_head_channels=64, use_spatial_transformer=True, use_linear_in_transformer=True,
                      transformer_depth=[1, 2, 10], context_dim=2048, legacy=False),
    "sdxl-refiner": dict(adm_in_channels=2560, num_classes="sequential", in_channels=4, out_channels=4,
                         model_channels=384, attention_resolutions=[4, 2], num_res_blocks=2,
                         channel_mult=[1, 2, 4, 4], num_head_channels=64, use_linear_in_transformer=True,
                         transformer_depth=4, context_dim=[1280, 1280, 1280, 1280]),
}


@pytest.mark.parametrize("name", ORIGINAL_PARAMS)
def test_original_yaml_params_give_the_preset_config(name):
    expected = get_preset(name).unet.replace(context_description="", y_description="")
    assert unet_config_from_original(ORIGINAL_PARAMS[name]) == expected


def test_original_yaml_options_we_do_not_model_are_named():
    with pytest.raises(ValueError, match="use_scale_shift_norm=True"):
        unet_config_from_original({**ORIGINAL_PARAMS["sd15"], "use_scale_shift_norm": True})
    with pytest.raises(ValueError, match="AttentionBlock"):
        unet_config_from_original({**ORIGINAL_PARAMS["sd15"], "use_spatial_transformer": False})


def meta_checkpoint(shapes: dict) -> dict:
    return {k: torch.empty(shape, device="meta") for k, shape in shapes.items()}


def test_original_sd15_checkpoint_maps_onto_the_sd15_preset():
    shapes = openaimodel_keys()
    assert len(shapes) == 686  # SD 1.5's U-Net has 686 tensors
    unet = load_original_unet(meta_checkpoint(shapes), "sd15")  # raises on any missing / unexpected key
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    assert original_state_dict(unet).keys() == shapes.keys()


def test_original_checkpoint_picks_its_preset_and_mismatches_name_the_key():
    sd2 = meta_checkpoint(openaimodel_keys(use_linear=True, context_dim=1024))
    assert load_original_unet(sd2).config == get_preset("sd21").unet  # preset guessed from the shapes
    with pytest.raises(ValueError, match=r"attn2\.to_k\.weight.*fits preset\(s\) sd21, sd21-v"):
        load_original_unet(sd2, "sd15")


def test_original_checkpoint_with_conv_projections_loads_into_linear_ones():
    """Some SD2 checkpoints store the token projections as 1x1 convs; they are the same map."""
    sd2_conv = meta_checkpoint(openaimodel_keys(use_linear=False, context_dim=1024))
    assert load_original_unet(sd2_conv, "sd21").config.use_linear_projection


@pytest.mark.parametrize("name", CASES)
def test_original_export_agrees_with_diffusers_single_file_converter(name):
    """Our original-layout names, read by diffusers' own LDM converter, give the same network."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    model = diffusers_unet(CASES[name])
    ours = from_diffusers(model)
    converted = convert_ldm_unet_checkpoint(original_state_dict(ours), model.config)
    fresh = diffusers_unet(CASES[name], seed=123)
    fresh.load_state_dict(converted)
    batch = inputs(CASES[name])
    assert (run_diffusers(fresh, batch) - run_ours(ours.eval(), batch)).abs().max() < TOLERANCE


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_original_checkpoint_files_load(tmp_path, suffix):
    config = UNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, transformer_depth=(1, 0),
                        num_heads=2, context_dim=16, num_classes=5)
    torch.manual_seed(0)
    unet = UNet(config)
    with torch.no_grad():
        for p in unet.parameters():
            p.normal_()
    state = original_state_dict(unet)
    assert "model.diffusion_model.label_emb.weight" in state
    path = tmp_path / f"model{suffix}"
    if suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save({"state_dict": state, "global_step": 10}, path)
    loaded = load_original_unet(path, config).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in unet.state_dict().items())
