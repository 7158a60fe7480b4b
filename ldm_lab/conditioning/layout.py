"""Layouts: bounding boxes as token triples for cross-attention (LDM's layout-to-image model, App. / Tab. 17).

Each box becomes three tokens, (l, b, c): its quantised top-left position, its quantised bottom-right position
and its class. A position (row, column) in [0, 1]^2 is rounded onto a ``grid x grid`` lattice and numbered
``row_index * grid + column_index`` (as taming-transformers' coordinate tokens); classes come after the
positions in the vocabulary, and one padding token after them fills the sequence up to ``max_tokens`` (92 in
LDM Tab. 17, so at most 30 boxes). A transformer encoder turns the tokens into the context. A layout without
boxes is all padding: the unconditional layout.

Cosmetic differences with the official code: LDM's layout models tokenise with taming-transformers'
``ObjectsBoundingBoxConditionalBuilder``, which orders each triple (c, l, b), class first, and can append two
tokens of the crop window after the objects; ours keeps the paper's (l, b, c) order and has no crop tokens (Shapes
scenes are never cropped). The encoder learns its position embeddings, so the order within a triple only
renames what it learns.

Box maps (``raster_cells``), a lab addition: besides the tokens, each box can also be drawn into its class's
channel as the fraction of every latent cell it covers, and those maps concatenated to the latent, as segmentation
maps are (LDM §4.3.2). LDM's layout model has the tokens only, and must learn from data where each of 1,024
lattice tokens lies; on a CPU budget (15 minutes, 1,766 steps) the token-only lab model placed objects at chance
(box IoU 0.115 vs 0.109 for shuffled boxes), while concatenated maps let the convolutions see the position
directly (lab-seg reached 94 % of its ceiling in 12 minutes). Later layout models condition spatially the same
way (GLIGEN's grounding tokens plus, in its follow-ups and ControlNet, spatial maps).

Boxes are (top, left, bottom, right) in [0, 1], as the Shapes dataset gives them; a batch holds a list of
(n_i, 4) boxes and a list of (n_i,) labels (``ldm_lab.data.collate`` keeps ragged fields as lists).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ldm_lab.conditioning.base import Embedder, Output


@dataclass(frozen=True)
class LayoutEmbedderConfig:
    """The layout vocabulary and the transformer encoder over it."""

    num_classes: int         # object classes (Shapes: 5 kinds)
    grid: int = 32           # positions are rounded onto grid x grid points (32 x 32 = 1024 position tokens)
    max_tokens: int = 92     # sequence length, 3 tokens per box (LDM Tab. 17: 92)
    width: int = 128         # token width = the U-Net's context_dim
    depth: int = 2           # transformer encoder layers
    num_heads: int = 4       # attention heads per layer
    sinusoidal_positions: bool = True  # start each lattice point's token at 2-D sinusoidal features of its (row,
                             # column), learned from there on, so that nearby points start out alike. LDM's position
                             # tokens start random and must learn the lattice's geometry from data: 1,024 of them,
                             # each seen a few dozen times in the minutes a CPU gives, stayed at chance.
    raster_cells: tuple[int, int] | None = None  # the latent's (h, w): also draw the boxes as per-class maps of
                             # the fraction of each latent cell they cover, concatenated to the latent; None: tokens only

    @property
    def max_boxes(self) -> int:
        return self.max_tokens // 3

    @property
    def pad_token(self) -> int:
        return self.grid**2 + self.num_classes

    @property
    def vocab_size(self) -> int:
        return self.pad_token + 1

    @property
    def outputs(self) -> dict[Output, int]:
        if self.raster_cells is None:
            return {Output.CONTEXT: self.width}
        return {Output.CONTEXT: self.width, Output.CONCAT: self.num_classes}

    def build(self) -> LayoutEmbedder:
        return LayoutEmbedder(self)


def position_tokens(points: Tensor, grid: int) -> Tensor:
    """(n, 2) positions (row, column) in [0, 1] -> (n,) ids row_index * grid + column_index on the lattice."""
    index = (points.clamp(0, 1) * (grid - 1)).round().long()
    return index[:, 0] * grid + index[:, 1]


def lattice_features(grid: int, width: int) -> Tensor:
    """(grid * grid, width) features of the lattice points in token order (row_index * grid + column_index):
    sin and cos of each coordinate in [0, 1] at width / 4 frequencies from 1/2 to grid/2 cycles, row features in
    the first half of the width, column features in the second (the 2-D form of the Transformer's encoding)."""
    if width % 4:
        raise ValueError(f"sinusoidal lattice features need a width divisible by 4, got {width}.")
    cycles = torch.logspace(-1, torch.log2(torch.tensor(grid / 2)).item(), width // 4, base=2.0)  # [width/4]
    coords = torch.linspace(0, 1, grid)
    angles = 2 * torch.pi * coords[:, None] * cycles[None]                     # [grid, width/4]
    axis = torch.cat([angles.sin(), angles.cos()], dim=-1)                      # [grid, width/2]
    rows, cols = axis[:, None].expand(grid, grid, -1), axis[None].expand(grid, grid, -1)
    return torch.cat([rows, cols], dim=-1).reshape(grid * grid, width)


def layout_tokens(boxes: Tensor, labels: Tensor, config: LayoutEmbedderConfig) -> Tensor:
    """One layout's boxes (n, 4) (top, left, bottom, right) and labels (n,) -> ids (max_tokens,): (l, b, c)
    per box, then padding."""
    if 3 * len(boxes) > config.max_tokens:
        raise ValueError(f"a layout of {len(boxes)} boxes needs {3 * len(boxes)} tokens, more than the limit of "
                         f"{config.max_tokens} (LDM Tab. 17); at most {config.max_boxes} boxes fit. Drop boxes, "
                         "or build the embedder with a larger max_tokens.")
    if len(labels) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels: give one label per box.")
    if ((labels < 0) | (labels >= config.num_classes)).any():
        raise ValueError(f"box labels must be in 0..{config.num_classes - 1}, got {labels.tolist()}.")
    triples = torch.stack([position_tokens(boxes[:, :2], config.grid), position_tokens(boxes[:, 2:], config.grid),
                           config.grid**2 + labels.long()], dim=-1)  # (n, 3): (l, b, c)
    tokens = torch.full((config.max_tokens,), config.pad_token, dtype=torch.long)
    tokens[: triples.numel()] = triples.reshape(-1)
    return tokens


def box_coverage(boxes: Tensor, cells: tuple[int, int]) -> Tensor:
    """(n, 4) boxes (top, left, bottom, right) in [0, 1] -> (n, h, w): the fraction of each of the h x w cells that
    each box covers. Exact for axis-aligned boxes: the row overlap times the column overlap, each in cell units."""
    def overlap(start: Tensor, end: Tensor, num: int) -> Tensor:  # (n,), (n,) -> (n, num)
        edges = torch.arange(num + 1, dtype=boxes.dtype, device=boxes.device) / num
        low, high = edges[:-1], edges[1:]
        return ((torch.minimum(end[:, None], high) - torch.maximum(start[:, None], low)).clamp(min=0) * num)
    top, left, bottom, right = boxes.clamp(0, 1).unbind(-1)
    return torch.einsum("nh,nw->nhw", overlap(top, bottom, cells[0]), overlap(left, right, cells[1]))


def box_maps(boxes: Tensor, labels: Tensor, num_classes: int, cells: tuple[int, int]) -> Tensor:
    """One layout -> (num_classes, h, w): each class channel holds the coverage of its boxes (the largest where
    boxes of one class overlap, so values stay in [0, 1])."""
    maps = boxes.new_zeros(num_classes, *cells)
    for coverage, label in zip(box_coverage(boxes, cells), labels.tolist(), strict=True):
        maps[label] = torch.maximum(maps[label], coverage)
    return maps


class LayoutEmbedder(Embedder):
    """Boxes and labels -> context (b, max_tokens, width): token + position embedding, transformer encoder."""

    def __init__(self, config: LayoutEmbedderConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        if config.sinusoidal_positions:
            with torch.no_grad():
                self.token_embedding.weight[: config.grid**2] = lattice_features(config.grid, config.width)
        self.position_embedding = nn.Parameter(torch.randn(config.max_tokens, config.width) * 0.02)
        layer = nn.TransformerEncoderLayer(config.width, config.num_heads, 4 * config.width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.depth, norm=nn.LayerNorm(config.width),
                                             enable_nested_tensor=False)

    def tokenize(self, boxes: list[Tensor], labels: list[Tensor]) -> Tensor:
        """Ragged boxes and labels of a batch -> ids (b, max_tokens)."""
        return torch.stack([layout_tokens(torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4).cpu(),
                                          torch.as_tensor(c, dtype=torch.long).reshape(-1).cpu(), self.config)
                            for b, c in zip(boxes, labels, strict=True)])

    def forward(self, boxes: list[Tensor], labels: list[Tensor]) -> dict[Output, Tensor]:
        tokens = self.tokenize(boxes, labels).to(self.device)
        # Padding is a learned token, not masked out: an empty layout must still give finite attention.
        outputs = {Output.CONTEXT: self.encoder(self.token_embedding(tokens) + self.position_embedding)}
        if self.config.raster_cells is not None:  # tokenize has checked the boxes and labels
            outputs[Output.CONCAT] = torch.stack([
                box_maps(torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4).cpu(),
                         torch.as_tensor(c, dtype=torch.long).reshape(-1).cpu(), self.config.num_classes,
                         self.config.raster_cells)
                for b, c in zip(boxes, labels, strict=True)]).to(self.device)  # (b, num_classes, h, w)
        return outputs

    def null_input(self, num: int) -> tuple[list[Tensor], list[Tensor]]:
        return [torch.zeros(0, 4)] * num, [torch.zeros(0, dtype=torch.long)] * num
