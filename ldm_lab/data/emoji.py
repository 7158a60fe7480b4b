"""Noto emoji (npm package ``emoji-datasource-google@16.0.0``, images Apache-2.0): our text-to-image dataset.

3,786 images, 64x64 RGBA — 1,911 base emoji and 1,875 skin-tone variants. Each record's caption is the emoji's
name with its skin tone spelled out ("waving hand: medium skin tone"); its class is one of 10 categories. The
train/val split is by *base* emoji, so the skin-tone variants of one emoji never straddle it (otherwise validation
scores would measure memory, not generalisation).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ldm_lab.data.batching import join_aliases
from ldm_lab.data.download import DatasetMissingError, has_checksum
from ldm_lab.data.shapes import covering_size, crop_corner  # Shapes scenes are photographed the same way
from ldm_lab.json_files import read_json
from ldm_lab.names import unknown_name_error
from ldm_lab.paths import cache_dir

PACKAGE = "emoji-datasource-google"
VERSION = "16.0.0"
TARBALL = f"{PACKAGE}-{VERSION}.tgz"
TARBALL_SHA256 = "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438"
TARBALL_ENV = "LDM_LAB_EMOJI_TARBALL"  # a tarball the user downloaded themselves (machines without npm)
NUM_IMAGES = 3786
IMAGE_DIR = "img/google/64"
HOW_TO_GET = (f"run `ldm-lab data fetch emoji` (needs npm: it runs `npm pack {PACKAGE}@{VERSION}`), "
              f"or set {TARBALL_ENV} to a copy of {TARBALL}")

# Unicode's order of the 10 categories; the class label is the index here.
CATEGORIES: tuple[str, ...] = (
    "Smileys & Emotion", "People & Body", "Component", "Animals & Nature", "Food & Drink",
    "Travel & Places", "Activities", "Objects", "Symbols", "Flags")
SKIN_TONES = {  # Fitzpatrick modifier -> the words Unicode uses in names
    "1F3FB": "light skin tone", "1F3FC": "medium-light skin tone", "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone", "1F3FF": "dark skin tone"}
SPLITS = ("train", "val", "all")
SPLIT_SIZES = {"train": 3432, "val": 354}  # with the default val_fraction 0.1 (tests recompute it from the data)


@dataclass(frozen=True)
class EmojiRecord:
    key: str                      # unified code points, e.g. "1F44B-1F3FD"
    base_key: str                 # the same emoji without skin tone: what the train/val split groups by
    image_file: str               # file name under img/google/64/
    caption: str                  # "waving hand: medium skin tone"
    short_names: tuple[str, ...]  # ("wave",)
    category: str                 # one of CATEGORIES
    subcategory: str              # e.g. "hand-fingers-open"
    skin_tones: tuple[str, ...]   # () for base emoji; one or two tones for variants

    @property
    def label(self) -> int:
        return CATEGORIES.index(self.category)

    @property
    def aliases(self) -> tuple[str, ...]:
        """Other names people type for this emoji: its short names as words ("pizza" for "slice of pizza", "sunny"
        for "black sun with rays"), with the skin tones spelled out as in the caption. Flags' short names are
        region codes ("flag-pt"), not names, so flags have none."""
        if self.category == "Flags":
            return ()
        words = (name.replace("_", " ") for name in self.short_names)
        return tuple(alias for alias in dict.fromkeys(_caption(word, self.skin_tones) for word in words)
                     if alias != self.caption)


# ----------------------------------------------------------------------------------------------- download
def _folder() -> Path:
    return cache_dir() / "emoji" / VERSION


def is_available() -> bool:
    return (_folder() / ".complete").is_file()


def _npm_pack(destination: Path) -> Path:
    if shutil.which("npm") is None:
        raise DatasetMissingError(f"npm is not installed; install Node.js, or set {TARBALL_ENV} to a copy of "
                                  f"{TARBALL}")
    result = subprocess.run(["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(destination)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise DatasetMissingError(f"`npm pack {PACKAGE}@{VERSION}` failed: {result.stderr.strip()[-500:]}; "
                                  f"{HOW_TO_GET}")
    return destination / TARBALL


def _verified_tarball() -> Path:
    """The package tarball in the cache, checked by SHA-256; a corrupt copy is deleted and fetched again."""
    tarball = cache_dir() / "emoji" / TARBALL
    tarball.parent.mkdir(parents=True, exist_ok=True)
    if has_checksum(tarball, TARBALL_SHA256):
        return tarball
    tarball.unlink(missing_ok=True)
    if os.environ.get(TARBALL_ENV):
        user_copy = Path(os.environ[TARBALL_ENV]).expanduser()
        if not has_checksum(user_copy, TARBALL_SHA256):
            raise DatasetMissingError(f"{TARBALL_ENV}={user_copy} is missing or is not {TARBALL} "
                                      f"(SHA-256 must be {TARBALL_SHA256})")
        shutil.copyfile(user_copy, tarball)
        return tarball
    fetched = _npm_pack(tarball.parent)
    if not has_checksum(fetched, TARBALL_SHA256):
        fetched.unlink(missing_ok=True)
        raise DatasetMissingError(f"the downloaded {TARBALL} fails its SHA-256 check (deleted); run the fetch again")
    return fetched


def damaged_files(folder: Path) -> list[str]:
    """What is wrong with an unpacked cache: ``emoji.json`` that does not parse, a wrong number of PNGs, PNGs that
    do not decode (truncated by a full disk or a copy cut short). Empty when all is well (decodes every image:
    about a second)."""
    try:
        json.loads((folder / "emoji.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return [f"emoji.json: {error}"]
    pngs = sorted((folder / IMAGE_DIR).glob("*.png"))
    problems = [] if len(pngs) == NUM_IMAGES else [f"{len(pngs)} PNGs instead of {NUM_IMAGES}"]
    for png in pngs:
        try:
            with Image.open(png) as image:
                image.load()
        except (OSError, SyntaxError) as error:  # PIL: truncated or not an image
            problems.append(f"{png.name}: {error}")
    return problems


def fetch() -> Path:
    """Fetch, verify and unpack ``emoji.json`` and the 64x64 PNGs into the cache; return that folder. A cache
    already unpacked is checked file by file (:func:`damaged_files`) and unpacked again if anything is damaged."""
    folder = _folder()
    if is_available():
        problems = damaged_files(folder)
        if not problems:
            return folder
        warnings.warn(f"the emoji cache {folder} is damaged ({len(problems)} problem(s), first: {problems[0]}); "
                      "unpacking it again", stacklevel=2)
        (folder / ".complete").unlink()
    tarball = _verified_tarball()
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers() if m.isfile() and (
                m.name == "package/emoji.json" or m.name.startswith(f"package/{IMAGE_DIR}/"))]
            archive.extractall(tmp, members=members, filter="data")
        unpacked = Path(tmp) / "package"
        if problems := damaged_files(unpacked):
            raise DatasetMissingError(f"{TARBALL} unpacked badly ({problems[0]}); delete {tarball} and run the "
                                      "fetch again")
        (unpacked / ".complete").touch()
        shutil.rmtree(folder, ignore_errors=True)
        unpacked.rename(folder)
    return folder


# ------------------------------------------------------------------------------------------------ records
def _caption(name: str, skin_tones: tuple[str, ...]) -> str:
    caption = name.lower()
    return f"{caption}: {', '.join(skin_tones)}" if skin_tones else caption


def _records_from_json(entries: list[dict]) -> list[EmojiRecord]:
    records = []
    for entry in sorted(entries, key=lambda e: e["sort_order"]):
        name = entry["name"] or entry["short_name"].replace("_", " ")
        common = dict(base_key=entry["unified"], short_names=tuple(entry["short_names"]),
                      category=entry["category"], subcategory=entry["subcategory"])
        if entry.get("has_img_google"):
            records.append(EmojiRecord(key=entry["unified"], image_file=entry["image"],
                                       caption=_caption(name, ()), skin_tones=(), **common))
        for modifiers, variant in entry.get("skin_variations", {}).items():
            if variant.get("has_img_google"):
                tones = tuple(dict.fromkeys(SKIN_TONES[m] for m in modifiers.split("-")))  # "1F3FB-1F3FB": one tone
                records.append(EmojiRecord(key=variant["unified"], image_file=variant["image"],
                                           caption=_caption(name, tones), skin_tones=tones, **common))
    return records


def load_records() -> tuple[EmojiRecord, ...]:
    """Every emoji with an image, in Unicode's sort order, skin-tone variants after their base."""
    if not is_available():
        raise DatasetMissingError(f"the emoji dataset is not in the cache ({_folder()}); {HOW_TO_GET}")
    return _records_in(_folder())


@lru_cache(maxsize=2)
def _records_in(folder: Path) -> tuple[EmojiRecord, ...]:
    entries = read_json(folder / "emoji.json", "Run `ldm-lab data fetch emoji` to unpack it again.")
    return tuple(_records_from_json(entries))


def in_val_split(base_key: str, val_fraction: float = 0.1) -> bool:
    """Deterministic, order-free assignment of a *base* emoji to validation (a hash, not a shuffle)."""
    bucket = int.from_bytes(hashlib.sha256(base_key.encode()).digest()[:4], "big") / 2**32
    return bucket < val_fraction


def split_records(split: str, val_fraction: float = 0.1) -> tuple[EmojiRecord, ...]:
    if split not in SPLITS:
        raise unknown_name_error("emoji split", split, SPLITS)
    records = load_records()
    if split == "all":
        return records
    want_val = split == "val"
    return tuple(r for r in records if in_val_split(r.base_key, val_fraction) == want_val)


def rgba_images() -> dict[str, np.ndarray]:
    """Record key -> its 64x64 RGBA picture, uint8 [64, 64, 4] (all 3,786 decoded once, about 60 MB)."""
    load_records()  # raises the helpful error when missing
    return _rgba_images_in(_folder())


@lru_cache(maxsize=1)
def _rgba_images_in(folder: Path) -> dict[str, np.ndarray]:
    return {r.key: _read_rgba(folder / IMAGE_DIR / r.image_file) for r in _records_in(folder)}


def _read_rgba(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGBA"))
    except (OSError, SyntaxError) as error:
        raise DatasetMissingError(f"{path} is damaged ({error}); run `ldm-lab data fetch emoji`, which checks "
                                  "every file and unpacks damaged ones again") from None


def composite(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """Alpha-composite an RGBA uint8 image ``[H, W, 4]`` over a solid background; uint8 ``[H, W, 3]``."""
    alpha = rgba[..., 3:].astype(np.float32) / 255
    rgb = rgba[..., :3] * alpha + np.asarray(background, np.float32) * (1 - alpha)
    return np.round(rgb).astype(np.uint8)


def info() -> dict:
    return {"num_images": NUM_IMAGES, "splits": dict(SPLIT_SIZES), "num_classes": len(CATEGORIES),
            "available": is_available(), "how_to_get": HOW_TO_GET}


class EmojiDataset(Dataset):
    """Items ``{"image": float [3, R, R] in [-1, 1], "caption", "aliases", "label" (category index), "category",
    "subcategory", "key"}``; RGBA is composited onto ``background`` and resized to ``resolution``. ``aliases``
    holds the record's other names as one string (``ldm_lab.data.batching.join_aliases``). ``skin_tones=False``
    keeps the base emoji only (one item per emoji)."""

    def __init__(self, split: str = "train", resolution: int = 64,
                 background: tuple[int, int, int] = (255, 255, 255), val_fraction: float = 0.1,
                 skin_tones: bool = True):
        if resolution < 1:
            raise ValueError(f"resolution must be a positive number of pixels, not {resolution}")
        records = split_records(split, val_fraction)
        # Without the skin-tone variants, each base emoji is one item: half the training set is people in five
        # tones, near-duplicates that took half of every epoch (``emoji_base``).
        self.records = records if skin_tones else [record for record in records if not record.skin_tones]
        self.resolution = resolution
        self.background = tuple(background)

    def __len__(self) -> int:
        return len(self.records)

    def image(self, index: int) -> Image.Image:
        """The composited, resized RGB picture of item ``index``."""
        rgb = Image.fromarray(composite(rgba_images()[self.records[index].key], self.background))
        if rgb.size != (self.resolution, self.resolution):
            rgb = rgb.resize((self.resolution, self.resolution), Image.Resampling.LANCZOS)
        return rgb

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        pixels = torch.from_numpy(np.asarray(self.image(index), dtype=np.float32)).permute(2, 0, 1)
        return {"image": pixels / 127.5 - 1, "caption": record.caption,
                "aliases": join_aliases(record.aliases), "label": record.label,
                "category": record.category, "subcategory": record.subcategory, "key": record.key}


class MultiscaleEmoji(EmojiDataset):
    """Emoji "photographed" as SDXL's web images are (Podell et al. 2023, §2.2): each item's emoji is drawn at an
    original size whose shorter side is ``original_scale`` x the training size (16-64 pixels for 64x64, so most are
    upscaled and look it), on a canvas up to ``max_aspect_change`` times wider or taller than square (white
    margins), resized to cover the training size and cropped at a random corner (so wide originals lose an edge of
    their emoji). Items carry ``original_size``, ``crop_top_left`` and ``target_size``, the micro-conditions;
    each item's view is fixed by its index, so an item is the same image in every epoch (a latent cache holds)."""

    def __init__(self, split: str = "train", resolution: int = 64, skin_tones: bool = False,
                 original_scale: tuple[float, float] = (0.25, 1.0), max_aspect_change: float = 1.5,
                 seed: int = 0) -> None:
        super().__init__(split, resolution=resolution, skin_tones=skin_tones)
        if not 0 < original_scale[0] <= original_scale[1]:
            raise ValueError(f"original_scale {original_scale} must be (low, high) with 0 < low <= high, as "
                             "multiples of the training size (SDXL's data: (0.25, 2.0)).")
        self.original_scale, self.max_aspect_change, self.seed = original_scale, max_aspect_change, seed

    def view(self, index: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The ``original_size`` (height, width) and ``crop_top_left`` of item ``index``."""
        rng = np.random.default_rng([self.seed, index])
        target = (self.resolution, self.resolution)
        short = rng.uniform(*self.original_scale) * self.resolution
        aspect = rng.uniform(1, self.max_aspect_change) ** rng.choice([-1, 1])  # width / height
        original = (max(1, round(short * max(1, 1 / aspect))), max(1, round(short * max(1, aspect))))
        return original, crop_corner(original, target, rng)

    def image(self, index: int) -> Image.Image:
        (height, width), (top, left) = self.view(index)
        side = min(height, width)
        emoji = Image.fromarray(composite(rgba_images()[self.records[index].key], self.background))
        canvas = Image.new("RGB", (width, height), self.background)
        canvas.paste(emoji.resize((side, side), Image.Resampling.LANCZOS), ((width - side) // 2, (height - side) // 2))
        covered = covering_size((height, width), (self.resolution, self.resolution))
        resized = canvas.resize((covered[1], covered[0]), Image.Resampling.LANCZOS)
        return resized.crop((left, top, left + self.resolution, top + self.resolution))

    def __getitem__(self, index: int) -> dict:
        original, crop = self.view(index)
        return {**super().__getitem__(index), "original_size": original, "crop_top_left": crop,
                "target_size": (self.resolution, self.resolution)}
