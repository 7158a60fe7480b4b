"""Can a reader name what a text-to-emoji model draws for everyday prompts ("sun", "pizza", "red heart")?

A reader who sees a drawing for "sun" names it a sun when it looks like one of the emoji that show a sun. Measured
here the same way: a drawing is *named* when its nearest emoji, of all of them (training and held-out) in lab-clip's
image space, is one its prompt names (``EVERYDAY_EMOJI``), and a prompt is drawn nameably when most of its drawings
(one per seed) are named. Everyday words are not always the dataset's captions ("pizza" is "slice of pizza", "red
heart" is Unicode's "heavy black heart", a held-out emoji): the table says which prompts the model was taught.

    table = everyday_recognition(load_shipped("lab-emoji"), seeds=4)
    print(f"{nameable_count(table)} of {len(table)} everyday prompts drawn nameably")
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import torch
from torch import Tensor

from ldm_lab.data import build_dataset, collate
from ldm_lab.device import model_device
from ldm_lab.metrics import extract_features, to_uint8
from ldm_lab.metrics.retrieval import nearest_reference_hits
from ldm_lab.models import LatentDiffusion
from ldm_lab.quality.arms import prompt_images

FEATURE_SPACE = "lab-clip"
# Everyday prompt -> the emoji (by caption) a reader would name it as; no emoji answers two prompts.
EVERYDAY_EMOJI: dict[str, tuple[str, ...]] = {
    "red apple": ("red apple",),
    "grinning face": ("grinning face",),
    "red heart": ("heavy black heart",),          # Unicode's name for the red heart, a held-out emoji
    "sun": ("black sun with rays", "sun with face"),
    "blue heart": ("blue heart",),
    "green apple": ("green apple",),
    "cat face": ("cat face",),
    "pizza": ("slice of pizza",),
    "dog face": ("dog face",),
    "rocket": ("rocket",),
    "fire": ("fire",),
    "banana": ("banana",),
    "house": ("house building", "house with garden"),
    "star": ("white medium star", "glowing star"),
    "ghost": ("ghost",),                          # held out
    "tree": ("deciduous tree", "evergreen tree", "palm tree"),
}


def emoji_references(splits: tuple[str, ...] = ("train", "val")) -> tuple[list, Tensor, Tensor]:
    """The emoji of ``splits`` a drawing is compared with: their records, their images ``[M, 3, 64, 64]`` and their
    lab-clip image features ``[M, d]``."""
    data = [build_dataset("emoji", split, (64, 64)) for split in splits]
    records = [record for split in data for record in split.records]
    images = torch.cat([collate([split[i] for i in range(len(split))])["image"] for split in data])
    return records, images, extract_features(to_uint8(images), FEATURE_SPACE)


def base_labels(records: list, label_of: Mapping[str, int] | None = None) -> Tensor:
    """``[M]`` a label per record that its skin-tone variants share: ``label_of[base_key]`` where given, else one
    label of its own per base emoji (numbered after those of ``label_of``)."""
    label_of = label_of or {}
    start = max(label_of.values(), default=-1) + 1
    own = {key: start + i for i, key in enumerate(dict.fromkeys(r.base_key for r in records))}
    return torch.tensor([label_of.get(r.base_key, own[r.base_key]) for r in records])


def check_answers(answers: Mapping[str, tuple[str, ...]], captions: set[str]) -> None:
    """Every answer is an emoji's caption, and none answers two prompts (a drawing is named as one thing)."""
    seen: dict[str, str] = {}
    for prompt, emoji in answers.items():
        for caption in emoji:
            if caption not in captions:
                raise ValueError(f"{caption!r} (for {prompt!r}) is no emoji's caption; `ldm-lab data info emoji` "
                                 "lists the captions.")
            if caption in seen:
                raise ValueError(f"{caption!r} answers both {seen[caption]!r} and {prompt!r}; give it to one.")
            seen[caption] = prompt


def answer_labels(records: list, answers: Mapping[str, tuple[str, ...]]) -> Tensor:
    """``[M]`` labels of ``records`` for naming drawings: each emoji that answers a prompt carries the prompt's index
    (its skin-tone variants too); every other base emoji a label of its own."""
    check_answers(answers, {record.caption for record in records})
    answer_of = {caption: index for index, emoji in enumerate(answers.values()) for caption in emoji}
    return base_labels(records, {r.base_key: answer_of[r.caption] for r in records if r.caption in answer_of})


@torch.no_grad()
def everyday_recognition(model: LatentDiffusion, answers: Mapping[str, tuple[str, ...]] = EVERYDAY_EMOJI,
                         seeds: int = 4, guidance_scale: float = 3.0, sampling_steps: int = 20, k: int = 1,
                         ) -> pd.DataFrame:
    """One row per prompt: its drawings (one per seed: seeds 0 .. seeds-1), how many are named (one of the ``k``
    nearest emoji is an answer; skin-tone variants count as their base emoji), whether it was drawn nameably (most
    named), and whether the model saw any of its answers in training."""
    records, _, references = emoji_references()
    labels = answer_labels(records, answers)
    prompts = list(answers)
    named = torch.stack([
        nearest_reference_hits(extract_features(to_uint8(prompt_images(model, prompts, seed, guidance_scale,
                                                                        sampling_steps).cpu()), FEATURE_SPACE),
                               references, torch.arange(len(prompts)), labels, k)
        for seed in range(seeds)], dim=1)                                                  # [prompts, seeds]
    taught = {record.caption for record in build_dataset("emoji", "train", (64, 64)).records}
    return pd.DataFrame({"prompt": prompts, "answers": [", ".join(emoji) for emoji in answers.values()],
                         "taught": [any(caption in taught for caption in emoji) for emoji in answers.values()],
                         "drawings": seeds, "named": named.sum(dim=1).tolist(),
                         "nameable": (2 * named.sum(dim=1) > seeds).tolist()})


def nameable_count(table: pd.DataFrame) -> int:
    """How many prompts of an ``everyday_recognition`` table were drawn nameably."""
    return int(table["nameable"].sum())


@torch.no_grad()
def everyday_ceiling(model: LatentDiffusion, answers: Mapping[str, tuple[str, ...]] = EVERYDAY_EMOJI, k: int = 1,
                     ) -> pd.DataFrame:
    """What the measure can give a model that decodes through ``model``'s first stage: one row per prompt, whether
    its (first) answer emoji is named, as a drawing would be (one of the ``k`` nearest emoji is an answer), and
    whether the first stage's reconstruction of it is.
    A drawing of an emoji looks no more like it than the emoji's own reconstruction does, in practice, so the count of
    named reconstructions is the ceiling of :func:`everyday_recognition` on this first stage."""
    records, images, references = emoji_references()
    labels = answer_labels(records, answers)
    index_of = {record.caption: i for i, record in enumerate(records)}
    emoji = images[[index_of[captions[0]] for captions in answers.values()]].to(model_device(model))   # [P, 3, H, W]
    reconstructions = model.decode(model.encode(emoji)).clamp(-1, 1)
    prompt_labels = torch.arange(len(answers))
    named = {column: nearest_reference_hits(extract_features(to_uint8(x.cpu()), FEATURE_SPACE), references,
                                            prompt_labels, labels, k).tolist()
             for column, x in (("emoji_named", emoji), ("reconstruction_named", reconstructions))}
    return pd.DataFrame({"prompt": list(answers), "answer": [captions[0] for captions in answers.values()], **named})
