"""Prompts: a CLIP text tower (``ldm_lab.nn.text.TextEncoder``) as the conditioning encoder.

LDM §4.3 trains its text transformer from scratch together with the U-Net; Stable Diffusion freezes a pretrained
CLIP (SD 1.x: last layer; SD 2.x: penultimate; SDXL: penultimate of two towers, plus bigG's pooled embedding as
part of ``y``, Podell et al. 2023 §2.1). Which layer is read is the tower's ``TextEncoderConfig``.

A prompt has room for 75 tokens between <start> and <end>. Longer prompts are truncated with a warning, or, with
``chunks > 1``, encoded as several 77-token windows whose contexts are concatenated along the sequence (the
long-prompt trick of popular SD front ends; the U-Net's cross-attention takes any number of tokens).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from ldm_lab.checkpoints import load_checkpoint
from ldm_lab.conditioning.base import Embedder, Output
from ldm_lab.nn.text import TINY, TextEncoder, TextEncoderConfig, bpe_tokenizer


@dataclass(frozen=True)
class TextEmbedderConfig:
    """A text tower, whether it trains, and how many 77-token windows a prompt may fill."""

    encoder: TextEncoderConfig = TINY  # the tower and its readout (layer, final norm, pooled output)
    trainable: bool = True             # LDM trains its text transformer (§4.3); SD freezes CLIP (False)
    chunks: int = 1                    # windows per prompt; tokens beyond chunks x 75 are dropped with a warning
    pretrained: str | None = None      # a shipped CLIP (e.g. "lab-clip") whose text tower this is, loaded by
                                       # ``load_pretrained``; None: the tower starts from random weights

    def __post_init__(self) -> None:
        if self.chunks < 1:
            raise ValueError(f"chunks={self.chunks}: a prompt needs at least one 77-token window.")
        if self.pretrained is not None and self.trainable:
            raise ValueError(f"the {self.pretrained} text tower is used frozen, as SD uses CLIP: set trainable=False, "
                             "or drop pretrained to train a tower from scratch (LDM §4.3).")

    @property
    def outputs(self) -> dict[Output, int]:
        """The context (the tower's width) and, if the tower pools, the pooled vector (its projection width)."""
        pooled = {Output.VECTOR: self.encoder.projection_dim} if self.encoder.return_pooled else {}
        return {Output.CONTEXT: self.encoder.width, **pooled}

    def build(self) -> TextEmbedder:
        return TextEmbedder(self)


def chunk_tokens(prompts: list[str], chunks: int = 1, context_length: int = 77, pad_token_id: int = 0) -> Tensor:
    """Token ids (b, chunks, context_length): each window is <start>, up to context_length - 2 prompt tokens,
    <end>, padding. Tokens that fit in no window are dropped with a warning naming how many."""
    tokenizer, body_length = bpe_tokenizer(), context_length - 2
    ids = torch.full((len(prompts), chunks, context_length), pad_token_id, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        body = tokenizer.encode(prompt)
        dropped = len(body) - chunks * body_length
        if dropped > 0:
            warnings.warn(f"prompt {prompt[:40]!r}... has {len(body)} tokens, more than {chunks} x {body_length} "
                          f"fit: dropped the last {dropped}. Shorten the prompt, or encode it in more chunks "
                          "(TextEmbedderConfig.chunks).", stacklevel=3)
        for window in range(chunks):
            piece = body[window * body_length: (window + 1) * body_length]
            sequence = [tokenizer.sot_token_id, *piece, tokenizer.eot_token_id]
            ids[row, window, : len(sequence)] = torch.tensor(sequence)
    return ids


def token_strings(prompt: str, context_length: int = 77) -> list[str]:
    """A prompt's tokens as text, in context order: "<start>", its BPE pieces, "<end>", then "<pad>" up to
    ``context_length`` (labels for per-token cross-attention maps)."""
    tokenizer = bpe_tokenizer()
    pieces = [tokenizer.decoder[i].removesuffix("</w>") for i in tokenizer.encode(prompt)][: context_length - 2]
    return ["<start>", *pieces, "<end>"] + ["<pad>"] * (context_length - 2 - len(pieces))


class TextEmbedder(Embedder):
    """Prompts -> context (b, chunks x 77, width) [+ pooled (b, projection_dim) from the first window]."""

    def __init__(self, config: TextEmbedderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = TextEncoder(config.encoder).requires_grad_(config.trainable)
        # A frozen tower maps a prompt to the same embedding every time: remember each prompt's (77 x width floats:
        # 19 KiB a prompt for lab-clip's 64-wide tower, 231 KiB for CLIP-L's 768), so training and sampling run the
        # text tower once per distinct caption.
        self.memo: dict[str, dict[Output, Tensor]] = {}

    def tokenize(self, prompts: list[str]) -> Tensor:
        encoder = self.config.encoder
        return chunk_tokens(prompts, self.config.chunks, encoder.context_length, encoder.pad_token_id)

    def forward(self, prompts: list[str] | tuple[str, ...] | str) -> dict[Output, Tensor]:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if self.config.trainable:
            return self.encode(prompts)
        new = list(dict.fromkeys(p for p in prompts if p not in self.memo))
        if new:
            # At the tower's own precision: an embedding memoised under a bf16 autocast would be served in bf16
            # outside it too, where the U-Net's float32 cross-attention refuses it (autocast casts it back down).
            with torch.autocast(self.device.type, enabled=False):
                embeddings = self.encode(new)
            for row, prompt in enumerate(new):
                self.memo[prompt] = {kind: value[row].detach() for kind, value in embeddings.items()}
        return {kind: torch.stack([self.memo[p][kind] for p in prompts]) for kind in self.memo[prompts[0]]}

    def _apply(self, fn, recurse: bool = True):  # .to(), .half(), .cuda() ... move or cast: forget the memo
        self.memo = {}
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.memo = {}
        super()._load_from_state_dict(*args, **kwargs)

    def encode(self, prompts: list[str]) -> dict[Output, Tensor]:
        """Run the tower: context (b, chunks x 77, width) [+ pooled (b, projection_dim)]."""
        tokens = self.tokenize(prompts).to(self.device)
        with torch.set_grad_enabled(self.config.trainable and torch.is_grad_enabled()):
            embedding = self.encoder(rearrange(tokens, "b k n -> (b k) n"))
        context = rearrange(embedding.context, "(b k) n d -> b (k n) d", k=self.config.chunks)
        if embedding.pooled is None:
            return {Output.CONTEXT: context}
        pooled = rearrange(embedding.pooled, "(b k) d -> b k d", k=self.config.chunks)[:, 0]
        return {Output.CONTEXT: context, Output.VECTOR: pooled}

    def null_input(self, num: int) -> tuple[list[str]]:
        return ([""] * num,)

    @property
    def pretrained_from(self) -> str | None:
        return self.config.pretrained

    def load_pretrained(self) -> None:
        """Load the text tower of the shipped CLIP ``config.pretrained`` (checksum-verified). An open_clip
        ``CLIP`` keeps its text tower at the top level (token_embedding, transformer, ln_final, text_projection),
        our ``TextEncoder`` under ``tower.``; its image tower (``visual.``) and temperature are not needed."""
        if self.config.pretrained is None:
            return
        state, _ = load_checkpoint(self.config.pretrained)
        tower = {f"tower.{key}": value for key, value in state.items()
                 if not key.startswith("visual.") and key != "logit_scale"}
        try:
            self.encoder.load_state_dict(tower)
        except RuntimeError as error:
            raise ValueError(f"the {self.config.pretrained} checkpoint's text tower does not fit this embedder's "
                             f"TextEncoderConfig ({error}); build the preset's tower with the sizes of "
                             f"{self.config.pretrained}'s config.") from None
        self.encoder.requires_grad_(False)
        self.memo = {}
