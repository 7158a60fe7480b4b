"""Parameter names of our U-Net in the two other layouts: LDM/SGM's ``openaimodel.UNetModel`` (the original
checkpoints, under ``model.diffusion_model.``) and diffusers' ``UNet2DConditionModel``.

Both maps are built from the U-Net itself: a table of *blocks* (our path -> their path, from the config's
layout) and, inside each block, a table of *leaves* (our sub-module -> theirs). A parameter key is a module
path plus ``.weight`` / ``.bias``, so mapping module paths maps every key.
"""

from __future__ import annotations

from torch import nn

from ldm_lab.nn.attention import SpatialTransformer
from ldm_lab.nn.resnet import ResBlock
from ldm_lab.nn.unet import UNet

ORIGINAL_PREFIX = "model.diffusion_model."

# Inside a ResBlock: openaimodel keeps Sequentials (in_layers = norm, SiLU, conv; out_layers = norm, SiLU,
# dropout, conv), so the indices skip the parameter-free layers.
RESBLOCK_ORIGINAL = {"norm1": "in_layers.0", "conv1": "in_layers.2", "emb_proj": "emb_layers.1",
                     "norm2": "out_layers.0", "conv2": "out_layers.3", "skip": "skip_connection"}
RESBLOCK_DIFFUSERS = {"norm1": "norm1", "conv1": "conv1", "emb_proj": "time_emb_proj",
                      "norm2": "norm2", "conv2": "conv2", "skip": "conv_shortcut"}

# Inside one transformer block; both other layouts use these names (to_out is a [Linear, Dropout] list there).
TRANSFORMER_BLOCK = {
    "norm_self": "norm1", "self_attn.to_q": "attn1.to_q", "self_attn.to_k": "attn1.to_k",
    "self_attn.to_v": "attn1.to_v", "self_attn.to_out": "attn1.to_out.0",
    "norm_cross": "norm2", "cross_attn.to_q": "attn2.to_q", "cross_attn.to_k": "attn2.to_k",
    "cross_attn.to_v": "attn2.to_v", "cross_attn.to_out": "attn2.to_out.0",
    "norm_ff": "norm3", "ff.geglu.proj": "ff.net.0.proj", "ff.out": "ff.net.2",
}


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _leaves(module: nn.Module, resblock_names: dict[str, str]) -> dict[str, str]:
    """Our sub-module path -> theirs, for the parameter-holding leaves of one block. Entries for leaves a
    block lacks (a skip conv, a cross-attention) are harmless: only existing keys are looked up."""
    if isinstance(module, ResBlock):
        return resblock_names
    if isinstance(module, SpatialTransformer):
        names = {"norm": "norm", "proj_in": "proj_in", "proj_out": "proj_out"}
        for i in range(len(module.blocks)):
            names.update({f"blocks.{i}.{ours}": f"transformer_blocks.{i}.{theirs}"
                          for ours, theirs in TRANSFORMER_BLOCK.items()})
        return names
    return {"": ""}  # a plain layer (conv, linear, norm, embedding) is its own leaf


def original_blocks(unet: UNet) -> dict[str, str]:
    """Our block paths -> openaimodel's (input_blocks.N.M, middle_block.M, output_blocks.N.M, out.K)."""
    names = {"time_embed.linear_1": "time_embed.0", "time_embed.linear_2": "time_embed.2",
             "class_embed": "label_emb", "vector_embed.linear_1": "label_emb.0.0",
             "vector_embed.linear_2": "label_emb.0.2", "conv_in": "input_blocks.0.0",
             "norm_out": "out.0", "conv_out": "out.2"}
    n = 1  # input_blocks[0] is conv_in; then one entry per step and per downsample
    for level, down in enumerate(unet.down):
        for j in range(len(down.blocks)):
            names[f"down.{level}.blocks.{j}.res"] = f"input_blocks.{n}.0"
            names[f"down.{level}.blocks.{j}.attn"] = f"input_blocks.{n}.1"
            n += 1
        if down.downsample is not None:
            names[f"down.{level}.downsample.conv"] = f"input_blocks.{n}.0.op"
            n += 1
    # SGM keeps index 2 for the last ResBlock even when the transformer is disabled (an Identity at index 1)
    names.update({"middle.res_in": "middle_block.0", "middle.attn": "middle_block.1",
                  "middle.res_out": "middle_block.2"})
    n = 0
    for u, up in enumerate(unet.up):
        for j in range(len(up.blocks)):
            names[f"up.{u}.blocks.{j}.res"] = f"output_blocks.{n}.0"
            names[f"up.{u}.blocks.{j}.attn"] = f"output_blocks.{n}.1"
            n += 1
        if up.upsample is not None:  # appended to the level's last output block, after its transformer
            has_attn = up.blocks[-1].attn is not None
            names[f"up.{u}.upsample.conv"] = f"output_blocks.{n - 1}.{2 if has_attn else 1}.conv"
    return names


def diffusers_blocks(unet: UNet) -> dict[str, str]:
    """Our block paths -> UNet2DConditionModel's (down_blocks.L.resnets.J, mid_block, up_blocks, ...)."""
    names = {"time_embed.linear_1": "time_embedding.linear_1", "time_embed.linear_2": "time_embedding.linear_2",
             "class_embed": "class_embedding", "vector_embed.linear_1": "add_embedding.linear_1",
             "vector_embed.linear_2": "add_embedding.linear_2", "conv_in": "conv_in",
             "norm_out": "conv_norm_out", "conv_out": "conv_out",
             "middle.res_in": "mid_block.resnets.0", "middle.attn": "mid_block.attentions.0",
             "middle.res_out": "mid_block.resnets.1"}
    for i, level in enumerate(unet.down):
        for j in range(len(level.blocks)):
            names[f"down.{i}.blocks.{j}.res"] = f"down_blocks.{i}.resnets.{j}"
            names[f"down.{i}.blocks.{j}.attn"] = f"down_blocks.{i}.attentions.{j}"
        names[f"down.{i}.downsample.conv"] = f"down_blocks.{i}.downsamplers.0.conv"
    for i, level in enumerate(unet.up):  # both lists run deepest level first
        for j in range(len(level.blocks)):
            names[f"up.{i}.blocks.{j}.res"] = f"up_blocks.{i}.resnets.{j}"
            names[f"up.{i}.blocks.{j}.attn"] = f"up_blocks.{i}.attentions.{j}"
        names[f"up.{i}.upsample.conv"] = f"up_blocks.{i}.upsamplers.0.conv"
    return names


def key_map(unet: UNet, blocks: dict[str, str], resblock_names: dict[str, str]) -> dict[str, str]:
    """Every key of ``unet.state_dict()`` -> its name in the other layout."""
    modules = {}
    for path, module in unet.named_modules():
        if path in blocks:
            for ours, theirs in _leaves(module, resblock_names).items():
                modules[_join(path, ours)] = _join(blocks[path], theirs)
    keys = {}
    for key in unet.state_dict():
        path, param = key.rsplit(".", 1)
        if path not in modules:
            raise RuntimeError(f"no name in the other layout for {key!r}; the key tables in "
                               "ldm_lab/convert/keys_unet.py are missing a block of this U-Net")
        keys[key] = f"{modules[path]}.{param}"
    return keys


def original_key_map(unet: UNet) -> dict[str, str]:
    """Our keys -> openaimodel keys (without the ``model.diffusion_model.`` prefix)."""
    return key_map(unet, original_blocks(unet), RESBLOCK_ORIGINAL)


def diffusers_key_map(unet: UNet) -> dict[str, str]:
    """Our keys -> ``UNet2DConditionModel`` keys."""
    return key_map(unet, diffusers_blocks(unet), RESBLOCK_DIFFUSERS)


__all__ = ["ORIGINAL_PREFIX", "original_key_map", "diffusers_key_map", "original_blocks", "diffusers_blocks"]
