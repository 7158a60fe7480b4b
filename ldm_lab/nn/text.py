"""CLIP text towers, read out the way each Stable Diffusion version reads them.

The towers are open_clip's :class:`~open_clip.transformer.TextTransformer`; what differs between models is
*which* hidden state the U-Net cross-attends to (LDM §3.3: the context ``tau_theta(y)``):

* SD 1.x: OpenAI CLIP ViT-L/14, last layer after the final LayerNorm;
* SD 2.x: OpenCLIP ViT-H/14, penultimate layer, then the final LayerNorm;
* SDXL (Podell et al. 2023, §2.1): CLIP ViT-L/14 *and* OpenCLIP ViT-bigG/14, both penultimate without the
  final LayerNorm, concatenated to 768 + 1280 = 2048 channels; plus bigG's pooled, projected end-of-text
  embedding as part of the vector condition ``y``.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, replace
from enum import Enum

import torch
from open_clip.tokenizer import SimpleTokenizer
from open_clip.transformer import QuickGELU, TextTransformer
from torch import Tensor, nn

VOCAB_SIZE = 49408  # size of CLIP's byte-pair vocabulary, bundled with open_clip
END_OF_TEXT = 49407  # id of <|endoftext|>; also Hugging Face's padding token


class Activation(Enum):
    """MLP non-linearity of the transformer blocks."""

    GELU = "gelu"  # OpenCLIP models
    QUICK_GELU = "quick_gelu"  # OpenAI CLIP: x * sigmoid(1.702 x)

    def module(self) -> type[nn.Module]:
        return {Activation.GELU: nn.GELU, Activation.QUICK_GELU: QuickGELU}[self]


@dataclass(frozen=True)
class TextEncoderConfig:
    """A CLIP text tower and the way its output is read. Defaults are SD 1.x's CLIP ViT-L/14."""

    width: int = 768  # channels of every token (d_model)
    num_layers: int = 12  # transformer blocks
    num_heads: int = 12  # attention heads per block (head width = width / num_heads)
    activation: Activation = Activation.QUICK_GELU
    projection_dim: int | None = None  # width of the pooled, projected embedding; None: no projection
    context_length: int = 77  # tokens per prompt, start and end markers included
    pad_token_id: int = END_OF_TEXT  # open_clip pads with 0, Hugging Face's tokenizer (SD1, SDXL CLIP-L) with 49407
    hidden_layer: int = -1  # which block's output is the context: -1 last, -2 penultimate (SD2, SDXL)
    final_norm: bool = True  # apply the final LayerNorm to that output (SD1, SD2: yes; SDXL: no)
    return_pooled: bool = False  # also return the pooled projected end-of-text embedding (SDXL's bigG)

    def __post_init__(self) -> None:
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}; "
                             "pick a head count that divides the width.")
        if not -self.num_layers <= self.hidden_layer <= -1:
            raise ValueError(f"hidden_layer={self.hidden_layer} must count back from the last block "
                             f"(-1 … -{self.num_layers}).")
        if self.return_pooled and self.projection_dim is None:
            raise ValueError("return_pooled needs a text projection: set projection_dim (e.g. to width).")

    @property
    def context_depth(self) -> int:
        """How many blocks the context passes through (num_layers for the last, one fewer for the penultimate)."""
        return self.num_layers + 1 + self.hidden_layer


# OpenAI CLIP ViT-L/14 as SD 1.x reads it; SD checkpoints keep no projection (123,060,480 parameters).
CLIP_L14 = TextEncoderConfig()
# The same tower as SDXL's first text encoder reads it: penultimate block, no final norm.
CLIP_L14_SDXL = replace(CLIP_L14, hidden_layer=-2, final_norm=False)
# OpenCLIP ViT-H/14 as SD 2.x reads it (354,032,640 parameters, projection included).
OPENCLIP_H14 = TextEncoderConfig(width=1024, num_layers=24, num_heads=16, activation=Activation.GELU,
                                 projection_dim=1024, pad_token_id=0, hidden_layer=-2)
# OpenCLIP ViT-bigG/14 as SDXL reads it (694,659,840 parameters, projection included).
OPENCLIP_BIGG14 = TextEncoderConfig(width=1280, num_layers=32, num_heads=20, activation=Activation.GELU,
                                    projection_dim=1280, pad_token_id=0, hidden_layer=-2, final_norm=False,
                                    return_pooled=True)
# A small tower for the lab models trained here (same tokenizer, hence the full vocabulary).
TINY = TextEncoderConfig(width=128, num_layers=4, num_heads=4, activation=Activation.GELU,
                         projection_dim=128, pad_token_id=0)


@dataclass
class TextEmbedding:
    """What the conditioner hands the U-Net."""

    context: Tensor  # (batch, tokens, width): cross-attention keys and values
    pooled: Tensor | None = None  # (batch, projection_dim): pooled end-of-text embedding, if requested


@functools.cache
def bpe_tokenizer() -> SimpleTokenizer:
    """CLIP's byte-pair tokenizer, bundled with open_clip (works offline)."""
    return SimpleTokenizer()


def tokenize(prompts: str | list[str], context_length: int = 77, pad_token_id: int = 0) -> Tensor:
    """Token ids ``(batch, context_length)``: <start>, the prompt, <end>, then padding.

    Prompts that do not fit are truncated (keeping <end> last) with a warning saying how much was lost.
    """
    prompts = [prompts] if isinstance(prompts, str) else prompts
    tokenizer = bpe_tokenizer()
    ids = torch.full((len(prompts), context_length), pad_token_id, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        body = tokenizer.encode(prompt)
        dropped = len(body) + 2 - context_length
        if dropped > 0:
            warnings.warn(f"prompt {prompt[:40]!r}… has {len(body) + 2} tokens; dropped the last {dropped} "
                          f"to fit the {context_length}-token context. Shorten the prompt to keep them.",
                          stacklevel=2)
            body = body[: context_length - 2]
        sequence = [tokenizer.sot_token_id, *body, tokenizer.eot_token_id]
        ids[row, : len(sequence)] = torch.tensor(sequence)
    return ids


class TextEncoder(nn.Module):
    """A CLIP text tower (open_clip's ``TextTransformer``) with a Stable-Diffusion readout."""

    def __init__(self, config: TextEncoderConfig = CLIP_L14) -> None:
        super().__init__()
        self.config = config
        self.tower = TextTransformer(
            context_length=config.context_length, vocab_size=VOCAB_SIZE, width=config.width,
            heads=config.num_heads, layers=config.num_layers, output_dim=config.projection_dim,
            act_layer=config.activation.module())

    def tokenize(self, prompts: str | list[str]) -> Tensor:
        """Token ids for this tower, padded the way its checkpoint was trained."""
        return tokenize(prompts, self.config.context_length, self.config.pad_token_id)

    def hidden_states(self, tokens: Tensor, num_blocks: int | None = None) -> list[Tensor]:
        """The embedded tokens followed by the output of each block, all ``(batch, tokens, width)``.

        ``num_blocks`` stops early (e.g. to skip the last block when only the penultimate is needed).
        """
        tower = self.tower
        x = tower.token_embedding(tokens) + tower.positional_embedding[: tokens.shape[1]]
        mask = tower.attn_mask[: tokens.shape[1], : tokens.shape[1]]  # causal: token i sees tokens <= i
        states = [x]
        for block in tower.transformer.resblocks[:num_blocks]:
            x = block(x, attn_mask=mask)
            states.append(x)
        return states

    def pool(self, last_hidden: Tensor, tokens: Tensor) -> Tensor:
        """CLIP's text embedding: the final-normed end-of-text token, projected. <end> has the largest id, so
        argmax finds it (the first one, when Hugging Face padding repeats it)."""
        end_of_text = last_hidden[torch.arange(tokens.shape[0], device=tokens.device), tokens.argmax(dim=-1)]
        return self.tower.ln_final(end_of_text) @ self.tower.text_projection

    def forward(self, tokens: Tensor) -> TextEmbedding:
        """Context (and optionally pooled) embedding of token ids ``(batch, tokens)``."""
        config = self.config
        states = self.hidden_states(tokens, config.num_layers if config.return_pooled else config.context_depth)
        context = states[config.context_depth]
        if config.final_norm:
            context = self.tower.ln_final(context)
        pooled = self.pool(states[-1], tokens) if config.return_pooled else None
        return TextEmbedding(context, pooled)

    def encode(self, prompts: str | list[str]) -> TextEmbedding:
        """Tokenise and embed prompts on this module's device."""
        device = self.tower.token_embedding.weight.device
        return self(self.tokenize(prompts).to(device))
