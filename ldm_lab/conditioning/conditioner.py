"""The conditioner: named embedders, each reading its keys of the data batch, assembled into the U-Net's inputs
(SGM's ``GeneralConditioner``; LDM §3.3's tau_theta generalised to several conditions at once).

    conditioner = Conditioner(conditioner_config(get_preset("lab-sdxl")))
    cond = conditioner(batch, num=8, dropout=True)   # {"context": (8, 77, 128), "y": (8, 1664)}
    uncond = conditioner.unconditional(batch, num=8)  # the same, each condition replaced by its null

Outputs of one kind are concatenated as SGM does: context tokens along the feature axis (SDXL: 768 + 1280 =
2048), vectors and concat channels along dim 1. During training each condition is independently replaced by
"no condition" with its own probability (SGM's ``ucg_rate``), so the one network also learns the unconditional
model classifier-free guidance needs (Ho & Salimans 2022, Alg. 1). As in SGM's ``GeneralConditioner``, a
condition dropped to zeros draws each of its outputs separately (bigG's context and its pooled vector are zeroed
independently: SGM multiplies every output by its own Bernoulli draw), while a condition dropped to its null
input (the empty prompt; SGM's ``legacy_ucg_value``) drops all its outputs together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ldm_lab.conditioning.base import Embedder, Null, Output
from ldm_lab.nn.unet import UNetConfig


class EmbedderConfig(Protocol):
    """What every embedder config provides: its outputs and widths, and the module it builds."""

    @property
    def outputs(self) -> dict[Output, int]: ...

    def build(self) -> Embedder: ...


@dataclass(frozen=True)
class ConditionSpec:
    """One named condition: its embedder, the batch keys it reads, and how it is dropped."""

    name: str                        # module name inside the conditioner (and in checkpoints)
    keys: tuple[str, ...]            # batch keys passed to the embedder, in order (e.g. ("boxes", "box_labels"))
    embedder: EmbedderConfig
    dropout: float = 0.0             # training: probability that an item's condition is replaced by ``dropped``
    dropped: Null = Null.NULL_INPUT  # what a dropped condition becomes (text: the empty prompt; SGM else: zeros);
                                     # zeros are drawn per output, a null input for all outputs at once
    unconditional: Null | None = None  # CFG's unconditional branch; None: the same as ``dropped``. The null input
                                       # is the embedder's (the empty prompt, the refiner's aesthetic score 2.5)

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"condition {self.name!r}: dropout {self.dropout} is a probability in [0, 1); 0.1 is "
                             "LDM/SD's usual value, 0 trains no unconditional model for this condition.")
        if Output.LABEL in self.embedder.outputs and Null.ZEROS in (self.dropped, self.unconditional):
            raise ValueError(f"condition {self.name!r}: zeros would be class 0, a real class; use Null.NULL_INPUT "
                             "(the null class) for class labels.")

    @property
    def null(self) -> Null:
        return self.dropped if self.unconditional is None else self.unconditional


@dataclass(frozen=True)
class ConditionerConfig:
    """The conditions of a model, in the order their outputs are concatenated."""

    conditions: tuple[ConditionSpec, ...] = ()
    description: str = ""  # one line for error messages, e.g. "prompt + SDXL size/crop"

    def widths(self) -> dict[Output, int]:
        """Total width per output kind (context and vector widths add up, as they are concatenated)."""
        total: dict[Output, int] = {}
        for spec in self.conditions:
            for kind, width in spec.embedder.outputs.items():
                total[kind] = total.get(kind, 0) + width
        return total

    @property
    def keys(self) -> tuple[str, ...]:
        """Every batch key some condition reads."""
        return tuple(dict.fromkeys(key for spec in self.conditions for key in spec.keys))

    def check(self, unet: UNetConfig, latent_channels: int) -> None:
        """Raise, saying what to change, when these conditions do not fit ``unet``."""
        widths = self.widths()
        if Output.LABEL in widths and Output.VECTOR in widths:
            raise ValueError("class labels for the U-Net's table and a y vector both need the U-Net's y input; "
                             "give the class embedder Output.VECTOR (its vector joins y) or Output.CONTEXT.")
        _check_width("context", widths.get(Output.CONTEXT), unet.context_dim, "context_dim", unet.context_description)
        _check_width("vector condition y", widths.get(Output.VECTOR), unet.y_dim, "y_dim", unet.y_description)
        _check_width("class table", widths.get(Output.LABEL), unet.num_classes, "num_classes",
                     "real classes + the null class")
        concat = widths.get(Output.CONCAT, 0)
        if latent_channels + concat != unet.in_channels:
            raise ValueError(f"the U-Net takes {unet.in_channels} input channels, but the latent has {latent_channels} "
                             f"and the concat conditions add {concat}. Build the U-Net with in_channels="
                             f"{latent_channels + concat}, or change the concat conditions.")


def _check_width(what: str, given: int | None, expected: int | None, field_name: str, made_of: str) -> None:
    if given == expected:
        return
    made_of = f" ({made_of})" if made_of else ""
    if expected is None:
        raise ValueError(f"the conditions give a {what} of width {given}, but the U-Net has no such input "
                         f"({field_name}=None). Build the U-Net with {field_name}={given}, or drop those conditions.")
    if given is None:
        raise ValueError(f"the U-Net expects a {what} of width {expected}{made_of}, but no condition gives one. "
                         f"Add that condition, or build the U-Net with {field_name}=None.")
    raise ValueError(f"the conditions give a {what} of width {given}, but the U-Net expects {expected}{made_of}. "
                     f"Build the U-Net with {field_name}={given}, or change the embedders' widths.")


class Conditioner(nn.Module):
    """Embedders by name; ``forward(batch, num, dropout)`` -> the U-Net's keywords ``context`` / ``y`` / ``concat``."""

    def __init__(self, config: ConditionerConfig) -> None:
        super().__init__()
        self.config = config
        self.embedders = nn.ModuleDict({spec.name: spec.embedder.build() for spec in config.conditions})
        self.register_buffer("anchor", torch.empty(0), persistent=False)  # follows the module's device

    def forward(self, batch: Mapping[str, Any], num: int, dropout: bool = False) -> dict[str, Tensor]:
        """The U-Net inputs for ``num`` items; ``dropout``: drop each condition with its training rate."""
        parts = []
        for spec in self.config.conditions:
            embedding = self.embed(spec, batch, num)
            if dropout and spec.dropout > 0:
                embedding = self.drop(spec, embedding, num)
            parts.append(embedding)
        return assemble(parts)

    def drop(self, spec: ConditionSpec, embedding: dict[Output, Tensor], num: int) -> dict[Output, Tensor]:
        """Replace each item's condition by ``spec.dropped`` with probability ``spec.dropout`` (SGM's ucg_rate).
        Zeros: one draw per output, as SGM's GeneralConditioner; a null input: one draw for the condition."""
        null = self.null(spec, spec.dropped, embedding, num)
        # drawn on the CPU: the same draws on every device
        if spec.dropped is Null.ZEROS:   # SGM multiplies every output by its own Bernoulli draw
            keeps = {kind: torch.rand(num) >= spec.dropout for kind in embedding}
        else:                            # the null input replaces the condition: all its outputs go together
            keeps = dict.fromkeys(embedding, torch.rand(num) >= spec.dropout)
        return {kind: _where(keeps[kind], value, null[kind]) for kind, value in embedding.items()}

    def unconditional(self, batch: Mapping[str, Any], num: int,
                      negative: Mapping[str, Any] | None = None) -> dict[str, Tensor]:
        """CFG's unconditional inputs: each condition replaced by its ``unconditional`` null. ``negative`` holds
        batch fields for this branch (SGM's ``batch_uc``), e.g. ``{"caption": [negative prompt] * num}``: a
        condition whose keys it holds embeds them instead, whatever its null (as diffusers encodes a given
        negative prompt even where the empty one is zeros)."""
        negative = negative or {}
        parts = []
        for spec in self.config.conditions:
            if all(key in negative for key in spec.keys):
                parts.append(self.embed(spec, negative, num))
            else:
                parts.append(self.null(spec, spec.null, self.embed(spec, batch, num), num))
        return assemble(parts)

    def embed(self, spec: ConditionSpec, batch: Mapping[str, Any], num: int) -> dict[Output, Tensor]:
        """One condition's embedding of the batch (its default input when the batch lacks its keys)."""
        embedder = self.embedders[spec.name]
        if all(key in batch for key in spec.keys):
            inputs = tuple(batch[key] for key in spec.keys)
        else:
            inputs = embedder.default_input(num)
            if inputs is None:
                missing = [key for key in spec.keys if key not in batch]
                raise ValueError(f"the condition {spec.name!r} needs {', '.join(map(repr, missing))} in the batch; "
                                 f"this model is conditioned on {', '.join(self.config.keys)}.")
        return self._on_device(embedder(*inputs))

    def null(self, spec: ConditionSpec, null: Null, embedding: dict[Output, Tensor], num: int) -> dict[Output, Tensor]:
        """"No condition" for ``num`` items, given the condition's own ``embedding``."""
        if null is Null.KEEP:
            return embedding
        if null is Null.ZEROS:
            return {kind: torch.zeros_like(value) for kind, value in embedding.items()}
        embedder = self.embedders[spec.name]
        one = self._on_device(embedder(*embedder.null_input(1)))  # one null item: the same for every row
        return {kind: value.expand(num, *value.shape[1:]) for kind, value in one.items()}

    def pretrained(self) -> dict[str, Embedder]:
        """The embedders whose weights come from another shipped model (a frozen CLIP text tower), by name."""
        return {name: embedder for name, embedder in self.embedders.items()
                if embedder.pretrained_from is not None}

    def load_pretrained(self) -> None:
        """Load every pretrained embedder's weights from its shipped model (a fresh model has random ones)."""
        for embedder in self.pretrained().values():
            embedder.load_pretrained()

    def _on_device(self, embedding: dict[Output, Tensor]) -> dict[Output, Tensor]:
        return {kind: value.to(self.anchor.device) for kind, value in embedding.items()}


def _where(keep: Tensor, value: Tensor, null: Tensor) -> Tensor:
    """Per item: the value where ``keep`` (b,) is true, the null elsewhere."""
    return torch.where(keep.to(value.device).reshape(-1, *[1] * (value.ndim - 1)), value, null)


CONCAT_DIM = {Output.CONTEXT: 2, Output.VECTOR: 1, Output.LABEL: 0, Output.CONCAT: 1}  # SGM's KEY2CATDIM


def assemble(parts: list[dict[Output, Tensor]]) -> dict[str, Tensor]:
    """Concatenate the conditions' outputs per kind and name them by ``UNet.forward`` keyword."""
    by_kind: dict[Output, list[Tensor]] = {}
    for part in parts:
        for kind, value in part.items():
            by_kind.setdefault(kind, []).append(value)
    if len(by_kind.get(Output.CONTEXT, [])) > 1 and len({t.shape[1] for t in by_kind[Output.CONTEXT]}) > 1:
        counts = [t.shape[1] for t in by_kind[Output.CONTEXT]]
        raise ValueError(f"context embeddings with {counts} tokens cannot be concatenated along the feature axis "
                         "(as SDXL joins its two text towers); give every context condition the same token count.")
    return {kind.unet_keyword: values[0] if kind is Output.LABEL else torch.cat(values, dim=CONCAT_DIM[kind])
            for kind, values in by_kind.items()}
