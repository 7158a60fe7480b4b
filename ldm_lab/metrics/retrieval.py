"""Cross-modal retrieval accuracy of a dual encoder (CLIP, Radford et al. 2021, §3.1.4 / Tab. 13 style).

Image -> text: for each image, rank the set's distinct captions by cosine similarity; a hit at k if its own caption
is among the top k. Text -> image: for each distinct caption, rank all images; a hit if one of its images is in the
top k. Captions equal as strings count as one (two shapes scenes may share a description). Image -> image
(``nearest_reference_hits``): for each generated image, rank a set of real ones; a hit if its own is in the top k.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def retrieval_accuracy(image_embeddings: Tensor, text_embeddings: Tensor, captions: Sequence[str],
                       ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """``{"image_to_text_top1": ..., "text_to_image_top1": ..., ...}`` from unit-norm embeddings ``[N, d]``
    of N (image, caption) pairs (``text_embeddings[i]`` embeds ``captions[i]``)."""
    distinct = list(dict.fromkeys(captions))
    caption_index = torch.tensor([distinct.index(c) for c in captions])                    # [N]
    first = torch.tensor([list(captions).index(c) for c in distinct])                      # [M]
    similarity = image_embeddings @ text_embeddings[first].T                                # [N images, M captions]
    owns = caption_index[:, None] == torch.arange(len(distinct))[None, :]                   # [N, M]
    result = {}
    for k in ks:
        top_texts = similarity.topk(min(k, len(distinct)), dim=1).indices                   # [N, k]
        result[f"image_to_text_top{k}"] = (top_texts == caption_index[:, None]).any(1).float().mean().item()
        top_images = similarity.topk(min(k, len(captions)), dim=0).indices                  # [k, M]
        hits = owns.gather(0, top_images).any(0)                                            # [M]
        result[f"text_to_image_top{k}"] = hits.float().mean().item()
    return result


def nearest_reference_hits(queries: Tensor, references: Tensor, query_labels: Tensor, reference_labels: Tensor,
                           k: int = 1) -> Tensor:
    """``[N]`` bool: whether one of the ``k`` references nearest to query ``i`` by cosine similarity carries its label
    (embeddings ``queries [N, d]``, ``references [M, d]``, normalised here; labels ``[N]`` and ``[M]``). For a drawing
    of a taught caption, labelled by its emoji: does it look more like its own emoji than like all the others?
    Labels let near-identical references count as one (an emoji's skin-tone variants share a base emoji)."""
    queries, references = (F.normalize(x.float(), dim=1) for x in (queries, references))
    nearest = (queries @ references.T).topk(min(k, len(references)), dim=1).indices        # [N, k]
    return (reference_labels.to(nearest.device)[nearest] == query_labels.to(nearest.device)[:, None]).any(dim=1)
