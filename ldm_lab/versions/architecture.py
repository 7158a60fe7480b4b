"""The Stable Diffusion versions side by side, read off the presets (nothing typed): what each version's networks
are, how its text is read, what its U-Net predicts, and where its parameters sit.

    table = architecture_table()                   # one row per version; parameters counted on the meta device
    levels = level_parameters("sdxl-base")         # parameters per U-Net level, ResBlocks vs transformers
    plot_level_parameters(["sd15", "sd21", "sdxl-base"])

The lineage (Rombach et al. 2022; SD 2 release notes; Podell et al. 2023, Tab. 1): SD 1.x keeps LDM's U-Net and
cross-attends to CLIP ViT-L/14's last layer; 1.5-inpainting adds 5 input channels (mask + masked image's latent);
SD 2.x reads OpenCLIP ViT-H/14 at its penultimate layer with 64-wide heads and Linear token projections, and its
768x768 model predicts v; SDXL drops the deepest level, moves the transformers to the low-resolution levels (up
to 10 per block), concatenates two text towers (768 + 1280 = 2048) and adds a vector condition (pooled text and
size/crop scalars, 2816 wide).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure
from ldm_lab.nn.text import TextEncoderConfig
from ldm_lab.nn.unet import UNetConfig
from ldm_lab.plotting import save_png
from ldm_lab.presets import Preset, build_preset, count_parameters, get_preset

# The versions of notebook 05, in historical order, then the lab's own text-to-image models for scale.
SD_VERSIONS: tuple[str, ...] = ("sd15", "sd15-inpaint", "sd21", "sd21-v", "sdxl-base", "sdxl-refiner", "sdxl-turbo")
LAB_VERSIONS: tuple[str, ...] = ("lab-sd1-like", "lab-sd1-inpaint", "lab-sd2-like", "lab-sdxl-like", "lab-emoji", "lab-sdxl")
# Text towers known by their shape (width, blocks): the CLIP models the SD checkpoints ship.
KNOWN_TOWERS: dict[tuple[int, int], str] = {(768, 12): "CLIP ViT-L/14", (1024, 24): "OpenCLIP ViT-H/14",
                                            (1280, 32): "OpenCLIP ViT-bigG/14"}
# Where a U-Net parameter belongs, by the first part of its name outside the levels.
STEM = ("time_embed", "class_embed", "vector_embed", "conv_in", "norm_out", "conv_out")


def tower_name(config: TextEncoderConfig, pretrained: str | None = None) -> str:
    """The CLIP a tower's shape identifies, a shipped lab CLIP's name, or its shape."""
    if (config.width, config.num_layers) in KNOWN_TOWERS:
        return KNOWN_TOWERS[(config.width, config.num_layers)]
    shape = f"{config.width} wide, {config.num_layers} blocks"
    return f"{pretrained} ({shape})" if pretrained else f"tower ({shape})"


def layer_read(config: TextEncoderConfig) -> str:
    """Which hidden state becomes the context: last / penultimate block, with or without the final LayerNorm,
    and whether the pooled embedding is used too."""
    block = {-1: "last", -2: "penultimate"}.get(config.hidden_layer, f"block {config.context_depth}")
    norm = "final norm" if config.final_norm else "no final norm"
    return f"{block}, {norm}" + (", + pooled" if config.return_pooled else "")


def heads_description(config: UNetConfig) -> str:
    """SD 1 fixes the number of heads (their width grows with the level); SD 2 / SDXL fix the head width."""
    depths = (*config.transformer_depth, config.transformer_depth_middle)
    widths = sorted({w for w, d in zip((*config.level_widths, config.level_widths[-1]), depths) if d})
    if not widths:
        return "no attention"
    heads = [config.heads(w) for w in widths]
    if config.num_heads is not None:
        return f"{config.num_heads} heads, {'/'.join(str(d) for _, d in heads)} wide"
    return f"{'/'.join(str(n) for n, _ in heads)} heads, {config.head_dim} wide"


def depth_description(config: UNetConfig) -> str:
    """Transformer blocks per level, then the middle block's."""
    return f"{tuple(config.transformer_depth)} + middle {config.transformer_depth_middle}"


def version_row(name: str | Preset) -> dict[str, object]:
    """One version's architecture, every entry read from the preset (parameters counted on the meta device)."""
    preset = get_preset(name) if isinstance(name, str) else name
    unet = preset.unet
    if unet is None:
        raise ValueError(f"preset {preset.name!r} has no U-Net (a first stage alone); the version table compares "
                         "diffusion models: pass one of " + ", ".join(SD_VERSIONS + LAB_VERSIONS) + ".")
    modules = build_preset(preset, device="meta")
    towers = preset.text_encoders
    f = preset.autoencoder.downsampling_factor if preset.autoencoder else 1
    latent_channels = preset.autoencoder.embed_dim if preset.autoencoder else unet.out_channels
    height, width = preset.resolution
    return {
        "version": preset.name,
        "unet_parameters": count_parameters(modules["unet"]),
        "vae_parameters": count_parameters(modules[preset.autoencoder_name]) if preset.autoencoder else 0,
        "text_parameters": sum(count_parameters(modules[n]) for n in towers),
        "text_towers": " + ".join(tower_name(c, preset.text_weights) for c in towers.values()) or "none",
        "layer_read": " | ".join(layer_read(c) for c in towers.values()) or "-",
        "context_width": unet.context_dim or 0,
        "heads": heads_description(unet),
        "projection": "linear" if unet.use_linear_projection else "1x1 conv",
        "transformer_depth": depth_description(unet),
        "vector_width": unet.y_dim or 0,
        "input_channels": unet.in_channels,
        "prediction": preset.prediction.value,
        "resolution": f"{height}x{width}",
        "latent": f"{latent_channels}x{height // f}x{width // f}",
        "latent_scale": preset.latent_scale if preset.latent_scale is not None else float("nan"),
    }


def architecture_table(versions: Sequence[str] = SD_VERSIONS + LAB_VERSIONS) -> pd.DataFrame:
    """One row per version (index: preset name). ``latent_scale`` NaN: measured as 1 / std when training starts
    (LDM App. G), so it lives in the checkpoint, not the preset."""
    return pd.DataFrame([version_row(v) for v in versions]).set_index("version")


def _level_of(name: str, levels: int) -> tuple[str, str]:
    """(level label, part) of a U-Net parameter: the level is the down level i together with its mirror up level
    (``up`` runs deepest first); the part is ``transformer`` for attention blocks, ``convolution`` for ResBlocks
    and resampling."""
    parts = name.split(".")
    if parts[0] in STEM:
        return "stem", "convolution"
    part = "transformer" if "attn" in parts else "convolution"
    if parts[0] == "middle":
        return "middle", part
    index = int(parts[1]) if parts[0] == "down" else levels - 1 - int(parts[1])
    return f"level {index}", part


def level_parameters(name: str | Preset) -> pd.DataFrame:
    """Parameters per U-Net level (down and up together), middle block and stem (time/vector embedding, conv in
    and out), split into convolution (ResBlocks, resampling) and transformer (spatial transformers). Columns:
    ``convolution``, ``transformer``, ``total``, ``width`` (channels) and ``side`` (latent side at the native
    resolution); rows in U-Net order, stem last. The totals sum to the U-Net's parameter count."""
    preset = get_preset(name) if isinstance(name, str) else name
    config = preset.unet
    if config is None:
        raise ValueError(f"preset {preset.name!r} has no U-Net; pass a diffusion model's preset.")
    unet = build_preset(preset, device="meta")["unet"]
    levels = len(config.channel_mult)
    rows = [f"level {i}" for i in range(levels)] + ["middle", "stem"]
    counts = pd.DataFrame(0, index=rows, columns=["convolution", "transformer"], dtype="int64")
    for key, parameter in unet.named_parameters():
        row, part = _level_of(key, levels)
        counts.loc[row, part] += parameter.numel()
    counts["total"] = counts.sum(axis=1)
    f = preset.autoencoder.downsampling_factor if preset.autoencoder else 1
    side = preset.resolution[0] // f
    counts["width"] = [*config.level_widths, config.level_widths[-1], config.model_channels]
    counts["side"] = [side // 2**i for i in range(levels)] + [side // 2 ** (levels - 1), side]
    return counts



def plot_level_parameters(versions: Sequence[str] = ("sd15", "sd21", "sdxl-base"), *,
                          save: str | Path | None = None) -> Figure:
    """Where the U-Net's parameters sit: one panel per version, a bar per level (down + up), middle block and
    stem, stacked convolution vs transformer, in millions, on one shared axis."""
    fig, axes = plt.subplots(1, len(versions), figsize=(4.2 * len(versions), 3.6), sharey=True, squeeze=False)
    for ax, version in zip(axes[0], versions):
        table = level_parameters(version)
        labels = [f"{row}\n{w}ch {s}²" if row.startswith("level") else row
                  for row, w, s in zip(table.index, table["width"], table["side"])]
        conv, attn = table["convolution"] / 1e6, table["transformer"] / 1e6
        ax.bar(labels, conv, label="convolution (ResBlocks, resampling)", color="#4c72b0")
        ax.bar(labels, attn, bottom=conv, label="transformer blocks", color="#dd8452")
        ax.set_title(f"{version}: {table['total'].sum() / 1e6:,.0f} M")
        ax.tick_params(axis="x", labelsize=8)
    axes[0][0].set_ylabel("parameters (millions)")
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    if save is not None:
        save_png(fig, save)
    return fig


__all__ = ["SD_VERSIONS", "LAB_VERSIONS", "architecture_table", "version_row", "level_parameters",
           "plot_level_parameters", "tower_name", "layer_read", "heads_description"]
