"""Everyday prompts: a drawing is named when its nearest emoji is one its prompt names."""

import pytest
import torch

from ldm_lab.checkpoints import read_manifest
from ldm_lab.data import build_dataset
from ldm_lab.quality import everyday
from ldm_lab.quality.everyday import (EVERYDAY_EMOJI, check_answers, emoji_references, everyday_ceiling,
                                     everyday_recognition, judge_named, nameable_count, thumbnails)
from ldm_lab.metrics import to_uint8
from ldm_lab.metrics.retrieval import nearest_reference_hits

needs_lab_clip = pytest.mark.skipif("lab-clip" not in read_manifest(), reason="needs the shipped lab-clip")
ANSWERS = {"sun": ("black sun with rays", "sun with face"), "pizza": ("slice of pizza",), "ghost": ("ghost",)}


def emoji_image(caption: str) -> torch.Tensor:
    for split in ("train", "val"):
        data = build_dataset("emoji", split, (64, 64))
        for index, record in enumerate(data.records):
            if record.caption == caption:
                return data[index]["image"]
    raise KeyError(caption)


def test_every_answer_is_a_caption_and_answers_one_prompt():
    captions = {r.caption for split in ("train", "val") for r in build_dataset("emoji", split, (64, 64)).records}
    check_answers(EVERYDAY_EMOJI, captions)
    with pytest.raises(ValueError, match="'sun' .* is no emoji's caption"):
        check_answers({"sun": ("sun",)}, captions)
    with pytest.raises(ValueError, match="answers both 'pizza' and 'food'"):
        check_answers({"pizza": ("slice of pizza",), "food": ("slice of pizza",)}, captions)


def test_thumbnails_average_pixels_down_to_the_judges_side():
    images = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    images[1, :, :32] = 255                                    # top half white
    vectors = thumbnails(images, side=4)
    assert vectors.shape == (2, 3 * 4 * 4)
    assert torch.allclose(vectors[0], torch.full((48,), -1.0))
    assert torch.allclose(vectors[1].view(3, 4, 4)[:, :2], torch.ones(3, 2, 4))
    with pytest.raises(ValueError, match="unknown judge 'eye'. Valid judges: thumbnail, lab-clip"):
        judge_named("eye")


def test_the_thumbnail_judge_names_a_slightly_blurred_emoji_as_itself():
    records, images, references = emoji_references(("val",), judge="thumbnail")
    picks = torch.arange(0, len(records), 97)                               # a spread of emoji
    blurred = torch.nn.functional.avg_pool2d(images[picks], 3, stride=1, padding=1, count_include_pad=False)
    labels = torch.arange(len(records))
    hits = nearest_reference_hits(thumbnails(to_uint8(blurred)), references, labels[picks], labels)
    assert hits.float().mean() > 0.9


def perfect(model, prompts, seed, *args):   # draws each prompt's first answer, or always a rocket
    return torch.stack([emoji_image(ANSWERS[p][0] if seed == 0 else "rocket") for p in prompts])


def test_drawings_of_the_answers_are_named_and_drawings_of_something_else_are_not(monkeypatch):
    monkeypatch.setattr(everyday, "prompt_images", perfect)
    table = everyday_recognition(None, ANSWERS, seeds=3)
    assert list(table["named"]) == [1, 1, 1] and not table["nameable"].any() and nameable_count(table) == 0
    assert list(table["taught"]) == [True, True, False]   # the ghost emoji is held out
    table = everyday_recognition(None, ANSWERS, seeds=1)
    assert nameable_count(table) == 3


@needs_lab_clip
def test_a_second_judge_names_the_same_drawings_in_columns_of_its_own(monkeypatch):
    monkeypatch.setattr(everyday, "prompt_images", perfect)
    table = everyday_recognition(None, ANSWERS, seeds=1, judges=("thumbnail", "lab-clip"))
    assert list(table["named_by_lab_clip"]) == [1, 1, 1] and table["nameable_by_lab_clip"].all()
    assert list(table["named"]) == [1, 1, 1]


class FirstStage(torch.nn.Module):
    """A stand-in with a first stage: encodes to the image itself and decodes it, or always to ``replacement``."""

    def __init__(self, replacement: torch.Tensor | None = None) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))  # gives the model a device
        self.replacement = replacement

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents if self.replacement is None else self.replacement.expand_as(latents)


def test_the_ceiling_names_each_answer_and_its_reconstruction_through_the_first_stage():
    table = everyday_ceiling(FirstStage(), ANSWERS)
    assert list(table["answer"]) == ["black sun with rays", "slice of pizza", "ghost"]
    assert table["emoji_named"].all() and table["reconstruction_named"].all()
    table = everyday_ceiling(FirstStage(replacement=emoji_image("rocket")), ANSWERS)
    assert table["emoji_named"].all() and not table["reconstruction_named"].any()
    # among the k nearest of all emoji, every answer is: with k that large anything is named
    assert everyday_ceiling(FirstStage(replacement=emoji_image("rocket")), ANSWERS, k=5000)["reconstruction_named"].all()
