"""Load U-Net weights from original LDM/SGM checkpoints and from diffusers, and export ours to diffusers.

    unet_from_diffusers(UNet2DConditionModel) -> UNet        unet_to_diffusers(UNet) -> UNet2DConditionModel
    load_diffusers_unet("folder/unet")       -> UNet        load_original_unet("sd15.safetensors", "sd15") -> UNet
    original_state_dict(UNet) -> {"model.diffusion_model.…": tensor}

Files are read with safetensors, or for ``.ckpt`` with ``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ldm_lab.convert.files import read_state_dict
from ldm_lab.convert.keys_unet import ORIGINAL_PREFIX, diffusers_key_map, original_key_map
from ldm_lab.json_files import read_json
from ldm_lab.nn.unet import UNet, UNetConfig
from ldm_lab.presets import PRESETS, get_preset

StateDict = Mapping[str, Tensor]


# --- files -------------------------------------------------------------------------------------------------

# --- weights -----------------------------------------------------------------------------------------------

class Layout(Enum):
    """Where a U-Net state dict comes from, and so how its keys are named."""

    ORIGINAL = "original LDM/SGM checkpoint"  # model.diffusion_model.input_blocks.1.0.in_layers.0.weight
    DIFFUSERS = "diffusers U-Net"              # down_blocks.0.resnets.0.norm1.weight

    @property
    def prefix(self) -> str:
        return ORIGINAL_PREFIX if self is Layout.ORIGINAL else ""

    def key_map(self, unet: UNet) -> dict[str, str]:
        """Our keys -> this layout's keys (prefix included)."""
        names = original_key_map(unet) if self is Layout.ORIGINAL else diffusers_key_map(unet)
        return {ours: self.prefix + theirs for ours, theirs in names.items()}


def _canonical(shape: torch.Size) -> tuple[int, ...]:
    """A shape with 1x1 conv kernels dropped, so conv and Linear token projections compare equal."""
    return tuple(shape[:2]) if len(shape) == 4 and tuple(shape[2:]) == (1, 1) else tuple(shape)


@functools.cache
def _preset_shapes(name: str, layout: Layout) -> dict[str, tuple[int, ...]]:
    """Key -> canonical shape of preset ``name``'s U-Net in ``layout`` (built on the meta device, cached)."""
    with torch.device("meta"):
        unet = UNet(get_preset(name).unet)
    names = layout.key_map(unet)
    return {names[k]: _canonical(v.shape) for k, v in unet.state_dict().items()}


def matching_presets(state: StateDict, layout: Layout) -> list[str]:
    """Names of the presets whose U-Net has exactly this state dict's keys and shapes."""
    shapes = {k: _canonical(v.shape) for k, v in state.items() if k.startswith(layout.prefix)}
    return [name for name, preset in PRESETS.items()
            if preset.unet is not None and _preset_shapes(name, layout) == shapes]


def _fit(tensor: Tensor, shape: torch.Size, key: str) -> Tensor:
    """``tensor`` in ``shape``: equal shapes, or a token projection stored as 1x1 conv on one side and as
    Linear on the other (the same map; SD2 checkpoints exist in both forms)."""
    if tensor.shape == shape:
        return tensor
    if _canonical(tensor.shape) == _canonical(shape):
        return tensor.reshape(shape)
    raise ValueError(f"shape mismatch at {key!r}: the checkpoint has {tuple(tensor.shape)}, this U-Net "
                     f"{tuple(shape)}")


def _first_problem(ours: StateDict, theirs: StateDict, names: Mapping[str, str], prefix: str) -> str | None:
    """The first missing, unexpected or mis-shaped key, described; None if the two fit."""
    present = {k for k in theirs if k.startswith(prefix)}
    missing, unexpected = sorted(set(names.values()) - present), sorted(present - set(names.values()))
    if missing:
        return f"{len(missing)} missing key(s), the first {missing[0]!r}"
    if unexpected:
        return f"{len(unexpected)} unexpected key(s), the first {unexpected[0]!r}"
    for our_key, their_key in names.items():
        try:
            _fit(theirs[their_key], ours[our_key].shape, their_key)
        except ValueError as error:
            return str(error)
    return None


def load_weights(unet: UNet, theirs: StateDict, layout: Layout) -> UNet:
    """Copy a state dict in ``layout`` into ``unet`` (a meta-device U-Net takes the tensors themselves).

    Every key must match; the error names the first that does not, and the presets that would fit.
    """
    ours, names = unet.state_dict(), layout.key_map(unet)
    problem = _first_problem(ours, theirs, names, layout.prefix)
    if problem:
        fits = matching_presets(theirs, layout)
        hint = (f"it fits preset(s) {', '.join(fits)}" if fits else
                "no preset fits it exactly: build a UNetConfig with its widths, depths and heads")
        raise ValueError(f"this {layout.value} does not fit the U-Net: {problem}; {hint}.")
    converted = {k: _fit(theirs[names[k]], ours[k].shape, names[k]) for k in ours}
    unet.load_state_dict(converted, assign=any(p.is_meta for p in ours.values()))
    return unet


# --- original LDM / SGM layout -----------------------------------------------------------------------------

def _single(value: Any, what: str) -> Any:
    """An original config value that may be given once or per level; all levels must agree."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(set(values)) != 1:
        raise ValueError(f"{what}={values} differs between levels; ldm_lab's UNetConfig keeps one value")
    return values[0]


def unet_config_from_original(params: Mapping[str, Any]) -> UNetConfig:
    """The UNetConfig of an original YAML's ``unet_config.params`` / ``network_config.params``.

    Reads openaimodel's conventions: ``attention_resolutions`` are downsampling factors (level i is at 2^i);
    ``transformer_depth`` is one int or one per level; ``num_head_channels: -1`` means ``num_heads`` is the
    count, otherwise the width (with spatial transformers ``legacy`` changes nothing, as ch // (ch // w) = w);
    ``num_classes: sequential`` means a vector condition of ``adm_in_channels``.
    """
    unsupported = {"use_scale_shift_norm": False, "resblock_updown": False, "conv_resample": True,
                   "disable_self_attentions": None, "num_attention_blocks": None, "disable_middle_self_attn": False}
    for key, value in unsupported.items():
        if params.get(key, value) != value:
            raise ValueError(f"{key}={params[key]!r} is not supported (ldm_lab's U-Net corresponds to {value!r})")
    if params.get("use_spatial_transformer") is False and params.get("attention_resolutions"):
        raise ValueError("use_spatial_transformer=False (LDM's plain AttentionBlock U-Nets) is not supported; "
                         "ldm_lab's U-Net attends with spatial transformers")
    mult = tuple(params.get("channel_mult", (1, 2, 4, 4)))
    depth = params.get("transformer_depth", 1)
    depth = [depth] * len(mult) if isinstance(depth, int) else list(depth)
    attention = set(params.get("attention_resolutions", ()))
    num_classes = params.get("num_classes")
    if num_classes not in (None, "sequential") and not isinstance(num_classes, int):
        raise ValueError(f"num_classes={num_classes!r} is not supported: use an int (labels) or 'sequential'")
    by_width = params.get("num_head_channels", -1) != -1
    return UNetConfig(
        in_channels=params["in_channels"], out_channels=params["out_channels"],
        model_channels=params["model_channels"], channel_mult=mult,
        num_res_blocks=_single(params.get("num_res_blocks", 2), "num_res_blocks"),
        transformer_depth=tuple(d if 2**level in attention else 0 for level, d in enumerate(depth)),
        transformer_depth_middle=0 if params.get("disable_middle_transformer") else
        params.get("transformer_depth_middle") or depth[-1],
        num_heads=None if by_width else params["num_heads"],
        head_dim=params["num_head_channels"] if by_width else None,
        context_dim=_single(params["context_dim"], "context_dim") if params.get("context_dim") else None,
        use_linear_projection=params.get("use_linear_in_transformer", False),
        num_classes=num_classes if isinstance(num_classes, int) else None,
        y_dim=params["adm_in_channels"] if num_classes == "sequential" else None,
        dropout=params.get("dropout", 0.0))


def load_original_unet(checkpoint: str | Path | StateDict, config: str | UNetConfig | None = None) -> UNet:
    """Our U-Net with the weights of an original LDM/SGM checkpoint (keys ``model.diffusion_model.*``).

    ``config`` is a preset name (``"sd15"``, ``"sdxl-base"``, ...), a UNetConfig, or None to pick the preset
    whose shapes match. Bare U-Net state dicts (no prefix) are accepted too.
    """
    state = read_state_dict(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
    if not any(k.startswith(ORIGINAL_PREFIX) for k in state):
        state = {ORIGINAL_PREFIX + k: v for k, v in state.items()}
    if config is None:
        fits = matching_presets(state, Layout.ORIGINAL)
        if not fits:
            raise ValueError("no preset matches this checkpoint's U-Net shapes; pass config=UNetConfig(...)")
        config = fits[0]
    if isinstance(config, str):
        config = get_preset(config).unet
    with torch.device("meta"):
        unet = UNet(config)
    return load_weights(unet, state, Layout.ORIGINAL)


def original_state_dict(unet: UNet) -> dict[str, Tensor]:
    """Our weights under the original names (``model.diffusion_model.input_blocks.1.0.in_layers.0.weight``…)."""
    names = Layout.ORIGINAL.key_map(unet)
    return {names[k]: v for k, v in unet.state_dict().items()}


# --- diffusers ---------------------------------------------------------------------------------------------

def _one_value(values: Any, what: str) -> int:
    """A diffusers per-level setting that we keep as one number: all levels must agree."""
    if isinstance(values, int):
        return values
    if len(set(values)) != 1:
        raise ValueError(f"{what} differs between levels ({list(values)}); ldm_lab's UNetConfig keeps one value")
    return values[0]


def _per_level(value: int | tuple[int, ...] | list[int], n: int) -> list[int]:
    return [value] * n if isinstance(value, int) else list(value)


def _check_supported(cfg: Mapping[str, Any]) -> None:
    """Diffusers options the original LDM/SGM U-Nets never use, which UNetConfig therefore does not model."""
    expected = {"flip_sin_to_cos": True, "freq_shift": 0, "act_fn": "silu", "norm_num_groups": 32,
                "norm_eps": 1e-5, "conv_in_kernel": 3, "conv_out_kernel": 3, "resnet_time_scale_shift": "default",
                "time_embedding_type": "positional", "class_embed_type": None, "encoder_hid_dim": None,
                "time_cond_proj_dim": None, "center_input_sample": False, "dual_cross_attention": False,
                "only_cross_attention": False, "class_embeddings_concat": False,
                "reverse_transformer_layers_per_block": None, "downsample_padding": 1,
                "mid_block_scale_factor": 1, "resnet_out_scale_factor": 1.0, "time_embedding_dim": None}
    for key, value in expected.items():
        if key in cfg and cfg[key] != value:
            raise ValueError(f"diffusers U-Net option {key}={cfg[key]!r} is not supported (ldm_lab's U-Net is "
                             f"LDM/SGM's, which corresponds to {key}={value!r})")
    if cfg.get("addition_embed_type") not in (None, "text_time"):
        raise ValueError(f"addition_embed_type={cfg['addition_embed_type']!r} is not supported; "
                         "only SDXL's 'text_time' maps onto our vector condition y")


def _heads_from_diffusers(widths: list[int], counts: list[int]) -> tuple[int | None, int | None]:
    """(num_heads, head_dim), one of them None, from the head counts diffusers stores per attention level."""
    if any(w % c for w, c in zip(widths, counts)):
        raise ValueError(f"attention widths {widths} do not split into {counts} heads")
    if len(set(counts)) <= 1:
        return (counts[0] if counts else 8), None  # SD1: the same count everywhere (8 when there is no attention)
    if len({w // c for w, c in zip(widths, counts)}) == 1:
        return None, widths[0] // counts[0]  # SD2 / SDXL: the same width (64) everywhere
    raise ValueError(f"head counts {counts} at widths {widths} fix neither the count nor the width of the "
                     "heads; ldm_lab's UNetConfig needs one of the two")


def unet_config_from_diffusers(cfg: Mapping[str, Any]) -> UNetConfig:
    """The UNetConfig of a ``UNet2DConditionModel`` config (its ``.config``, or a config.json as a dict)."""
    _check_supported(cfg)
    widths = list(cfg["block_out_channels"])
    n = len(widths)
    if any(w % widths[0] for w in widths):
        raise ValueError(f"block_out_channels {widths} are not multiples of the first level's width")
    with_attn = [t.startswith("CrossAttn") for t in cfg["down_block_types"]]
    layers = _per_level(cfg.get("transformer_layers_per_block", 1), n)
    if cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn") != "UNetMidBlock2DCrossAttn":
        raise ValueError(f"mid_block_type={cfg['mid_block_type']!r} is not supported: LDM/SGM U-Nets have "
                         "'UNetMidBlock2DCrossAttn' (ResBlock, transformer, ResBlock)")
    # diffusers' attention_head_dim is (for historical reasons) the head *count* unless num_attention_heads is set
    heads = _per_level(cfg.get("num_attention_heads") or cfg["attention_head_dim"], n)
    attn_levels = [i for i in range(n) if with_attn[i]] + [n - 1]  # the middle block attends at the last width
    num_heads, head_dim = _heads_from_diffusers([widths[i] for i in attn_levels], [heads[i] for i in attn_levels])
    y_dim = cfg.get("projection_class_embeddings_input_dim") if cfg.get("addition_embed_type") else None
    return UNetConfig(
        in_channels=cfg["in_channels"], out_channels=cfg["out_channels"], model_channels=widths[0],
        channel_mult=tuple(w // widths[0] for w in widths),
        num_res_blocks=_one_value(cfg["layers_per_block"], "layers_per_block"),
        transformer_depth=tuple(layers[i] if with_attn[i] else 0 for i in range(n)),
        transformer_depth_middle=layers[-1],
        num_heads=num_heads, head_dim=head_dim,
        context_dim=_one_value(cfg["cross_attention_dim"], "cross_attention_dim"),
        use_linear_projection=cfg.get("use_linear_projection", False),
        num_classes=cfg.get("num_class_embeds"), y_dim=y_dim, dropout=cfg.get("dropout", 0.0))


def unet_config_to_diffusers(config: UNetConfig, micro_conditioning_dim: int = 256) -> dict[str, Any]:
    """Keyword arguments for ``UNet2DConditionModel`` equal to ``config``.

    A vector condition becomes SDXL's ``text_time`` embedding; ``micro_conditioning_dim`` is its per-scalar
    Fourier width (256), which matters only to diffusers' forward, not to the weights.
    """
    with_attn = [d > 0 for d in config.transformer_depth]
    if config.context_dim is None or config.transformer_depth_middle == 0:
        raise ValueError("diffusers' UNet2DConditionModel always cross-attends in its middle block; only U-Nets "
                         "with context_dim set and transformer_depth_middle > 0 can be exported")
    middle_layers = config.transformer_depth_middle
    layers = [d if d else 1 for d in config.transformer_depth]
    if middle_layers != layers[-1]:
        if with_attn[-1]:
            raise ValueError(f"diffusers takes the middle block's depth from the last level's, but this U-Net "
                             f"has {config.transformer_depth[-1]} and {middle_layers}")
        layers[-1] = middle_layers  # the last level has no attention, so its entry only sets the middle's depth
    return dict(
        in_channels=config.in_channels, out_channels=config.out_channels,
        block_out_channels=config.level_widths, layers_per_block=config.num_res_blocks,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in with_attn),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(with_attn)),
        mid_block_type="UNetMidBlock2DCrossAttn",
        transformer_layers_per_block=tuple(layers),
        attention_head_dim=tuple(config.num_heads or max(1, w // config.head_dim) for w in config.level_widths),
        cross_attention_dim=config.context_dim, use_linear_projection=config.use_linear_projection,
        num_class_embeds=config.num_classes, dropout=config.dropout,
        **(dict(addition_embed_type="text_time", addition_time_embed_dim=micro_conditioning_dim,
                projection_class_embeddings_input_dim=config.y_dim) if config.y_dim else {}))


def unet_from_diffusers(model: Any) -> UNet:
    """Our U-Net with (a copy of) the weights of a diffusers ``UNet2DConditionModel``, same dtype and device."""
    config = unet_config_from_diffusers(model.config)
    with torch.device("meta"):
        unet = UNet(config)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}  # ours must not alias theirs
    return load_weights(unet, weights, Layout.DIFFUSERS)


def unet_to_diffusers(unet: UNet, micro_conditioning_dim: int = 256) -> Any:
    """A diffusers ``UNet2DConditionModel`` with our weights (needs the ``diffusers`` package).
    ``micro_conditioning_dim``: Fourier features per SDXL size/crop scalar, which diffusers' forward computes."""
    from diffusers import UNet2DConditionModel

    weight = next(unet.parameters())
    with torch.device(weight.device):
        model = UNet2DConditionModel(**unet_config_to_diffusers(unet.config, micro_conditioning_dim))
    names = diffusers_key_map(unet)
    model.load_state_dict({names[k]: v for k, v in unet.state_dict().items()})
    return model if weight.dtype == torch.float32 else model.to(weight.dtype)


def load_diffusers_unet(folder: str | Path) -> UNet:
    """Our U-Net from a diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``), without
    importing diffusers."""
    folder = Path(folder)
    config_file = folder / "config.json"
    weights = sorted(folder.glob("diffusion_pytorch_model*.safetensors"))
    if not config_file.is_file() or not weights:
        raise FileNotFoundError(f"{folder} is not a diffusers U-Net folder: it needs config.json and "
                                "diffusion_pytorch_model.safetensors (pass the pipeline's unet/ subfolder)")
    damaged = "Copy the U-Net folder again from where it came (its config.json is damaged)."
    config = unet_config_from_diffusers(read_json(config_file, damaged))
    state = {k: v for file in weights for k, v in read_state_dict(file).items()}
    with torch.device("meta"):
        unet = UNet(config)
    return load_weights(unet, state, Layout.DIFFUSERS)


__all__ = ["Layout", "matching_presets", "load_weights", "load_original_unet",
           "unet_config_from_original", "original_state_dict", "unet_config_from_diffusers",
           "unet_config_to_diffusers", "unet_from_diffusers", "unet_to_diffusers", "load_diffusers_unet"]
