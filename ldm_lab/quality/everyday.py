"""Can a reader name what a text-to-emoji model draws for everyday prompts ("sun", "pizza", "red heart")?

A reader who sees a drawing for "sun" names it a sun when it looks like one of the emoji that show a sun. Measured
here the same way: a drawing is *named* when its nearest emoji, of all of them (training and held-out), is one its
prompt names (``EVERYDAY_EMOJI``), and a prompt is drawn nameably when most of its drawings (one per seed) are named.
Everyday words are not always the dataset's captions ("pizza" is "slice of pizza", "red heart" is Unicode's "heavy
black heart", a held-out emoji): the table says which prompts the model was taught.

"Nearest" needs a judge, the space drawings and emoji are compared in (``JUDGES``). ``thumbnail`` compares 16x16
thumbnails, the shape and colours a reader takes in at a glance; ``lab-clip`` compares lab-clip's image embeddings.
Checked against a reader on 64 drawings of lab-emoji (the 16 prompts, 4 seeds, named by eye before either judge
ran; 2026-12-03): the thumbnail judge agreed on 62, lab-clip's on 52 (it named every red apple a kiss mark and every
cat face a large yellow circle: its embedding, trained to match captions, does not keep apart emoji that differ
in a few strokes). Thumbnails are the default.

    table = everyday_recognition(load_shipped("lab-emoji"), seeds=4)
    print(f"{nameable_count(table)} of {len(table)} everyday prompts drawn nameably")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ldm_lab.conditioning.findings import autoencoded
from ldm_lab.data import build_dataset, collate
from ldm_lab.device import model_device
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.metrics import extract_features, to_uint8
from ldm_lab.metrics.retrieval import nearest_reference_hits
from ldm_lab.models import LatentDiffusion
from ldm_lab.names import unknown_name_error
from ldm_lab.quality.arms import SCORED_SAMPLING, prompt_images

FEATURE_SPACE = "lab-clip"
THUMBNAIL_SIDE = 16  # the thumbnail judge's side (8, 16, 32 and 64 named the same 64 drawings within one)
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


def thumbnails(images: Tensor, side: int = THUMBNAIL_SIDE) -> Tensor:
    """``[N, 3 * side * side]``: uint8 images ``[N, 3, H, W]`` averaged down to ``side`` x ``side`` pixels (in
    [-1, 1]) and flattened, compared by cosine like any embedding."""
    pixels = images.float() / 127.5 - 1.0
    return F.interpolate(pixels, size=(side, side), mode="area").flatten(1)


def lab_clip_embeddings(images: Tensor) -> Tensor:
    """``[N, d]``: lab-clip's image embeddings of uint8 images (the FID / KID feature space)."""
    return extract_features(images, FEATURE_SPACE)


Judge = Callable[[Tensor], Tensor]  # uint8 images [N, 3, H, W] -> vectors [N, d], nearest by cosine
JUDGES: dict[str, Judge] = {"thumbnail": thumbnails, "lab-clip": lab_clip_embeddings}


def judge_named(name: str) -> Judge:
    """The judge called ``name`` in ``JUDGES``, or an error naming the valid ones."""
    if name not in JUDGES:
        raise unknown_name_error("judge", name, JUDGES)
    return JUDGES[name]


def emoji_references(splits: tuple[str, ...] = ("train", "val"), judge: str = "lab-clip",
                     ) -> tuple[list, Tensor, Tensor]:
    """The emoji of ``splits`` a drawing is compared with: their records, their images ``[M, 3, 64, 64]`` and their
    vectors ``[M, d]`` by ``judge`` (a name in ``JUDGES``)."""
    data = [build_dataset("emoji", split, (64, 64)) for split in splits]
    records = [record for split in data for record in split.records]
    images = torch.cat([collate([split[i] for i in range(len(split))])["image"] for split in data])
    return records, images, judge_named(judge)(to_uint8(images))


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
                         seeds: int = 4, settings: SamplingSettings = SCORED_SAMPLING, k: int = 1,
                         judges: tuple[str, ...] = ("thumbnail",)) -> pd.DataFrame:
    """One row per prompt: its drawings (one per seed: seeds 0 .. seeds-1, drawn with ``settings``; a few-step
    student passes its own sampler, ``ldm_lab.distill.student_sampling``), how many are named (one of the ``k``
    nearest emoji is an answer; skin-tone variants count as their base emoji), whether it was drawn nameably (most
    named), and whether the model saw any of its answers in training. With several ``judges`` the first gives
    ``named`` and ``nameable``, each other one ``named_by_<judge>`` and ``nameable_by_<judge>`` (``-`` as ``_``)
    from the same drawings."""
    prompts = list(answers)
    drawings = [to_uint8(prompt_images(model, prompts, seed, settings).cpu())
                for seed in range(seeds)]                                              # seeds x [P, 3, H, W]
    taught = {record.caption for record in build_dataset("emoji", "train", (64, 64)).records}
    table = pd.DataFrame({"prompt": prompts, "answers": [", ".join(emoji) for emoji in answers.values()],
                          "taught": [any(caption in taught for caption in emoji) for emoji in answers.values()],
                          "drawings": seeds})
    for index, judge in enumerate(judges):
        records, _, references = emoji_references(judge=judge)
        labels = answer_labels(records, answers)
        named = torch.stack([nearest_reference_hits(judge_named(judge)(images), references,
                                                    torch.arange(len(prompts)), labels, k)
                             for images in drawings], dim=1).sum(dim=1)                # [P]
        suffix = "" if index == 0 else f"_by_{judge.replace('-', '_')}"
        table[f"named{suffix}"] = named.tolist()
        table[f"nameable{suffix}"] = (2 * named > seeds).tolist()
    return table


def nameable_count(table: pd.DataFrame) -> int:
    """How many prompts of an ``everyday_recognition`` table were drawn nameably."""
    return int(table["nameable"].sum())


@torch.no_grad()
def everyday_ceiling(model: LatentDiffusion, answers: Mapping[str, tuple[str, ...]] = EVERYDAY_EMOJI, k: int = 1,
                     judge: str = "thumbnail") -> pd.DataFrame:
    """What the measure can give a model that decodes through ``model``'s first stage: one row per prompt, whether
    its (first) answer emoji is named, as a drawing would be (one of the ``k`` nearest emoji is an answer), and
    whether the first stage's reconstruction of it is (the posterior sampled with seed 0, so the count is the same
    every run, as in ``recognition_scores``' ceiling).
    A drawing of an emoji looks no more like it than the emoji's own reconstruction does, in practice, so the count of
    named reconstructions is the ceiling of :func:`everyday_recognition` on this first stage."""
    records, images, references = emoji_references(judge=judge)
    labels = answer_labels(records, answers)
    index_of = {record.caption: i for i, record in enumerate(records)}
    emoji = images[[index_of[captions[0]] for captions in answers.values()]]                 # [P, 3, H, W]
    reconstructions = autoencoded(model, emoji.to(model_device(model)))
    prompt_labels = torch.arange(len(answers))
    named = {column: nearest_reference_hits(judge_named(judge)(to_uint8(x.cpu())), references, prompt_labels,
                                            labels, k).tolist()
             for column, x in (("emoji_named", emoji), ("reconstruction_named", reconstructions))}
    return pd.DataFrame({"prompt": list(answers), "answer": [captions[0] for captions in answers.values()], **named})
