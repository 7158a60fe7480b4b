"""Feature spaces for FID / KID / precision-recall, registered with torch-fidelity.

* ``fmnist-classifier``: the 128-d penultimate layer of our Fashion-MNIST classifier (grey 28x28 inputs).
* ``lab-clip``: the unit-norm image embedding of our small CLIP (RGB 64x64 inputs).
* ``inception-v3-compat``: torch-fidelity's port of the TF Inception-v3 used by the papers, when its weights are
  on this machine (never downloaded here).

Any input is converted to what the network expects (grey <-> RGB, resized), so every space accepts every dataset.
A number is only meaningful with its space's name next to it; ``FEATURE_SPACES`` lists them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ldm_lab.device import model_device, resolve_device
from ldm_lab.evaluation_models.classifier import load_classifier
from ldm_lab.evaluation_models.lab_clip import load_lab_clip
from ldm_lab.metrics.images import check_uint8, to_rgb, to_unit_range
from ldm_lab.names import unknown_name_error
from ldm_lab.paths import cache_dir

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity v0.2.0 release asset
# The whole SHA-256 of that asset (95,628,359 bytes; the name carries only its first 8 digits, torch.hub's
# convention). torch-fidelity unpickles the file, which can run code, so nothing short of this exact file is used.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_ENV = "LDM_LAB_INCEPTION_WEIGHTS"


class FeatureSpaceUnavailable(RuntimeError):
    """A feature space's network weights are not on this machine."""


@dataclass(frozen=True)
class FeatureSpace:
    """A registered torch-fidelity feature extractor and the layer our metrics read."""
    name: str          # torch-fidelity's extractor name
    layer: str         # the feature FID / KID / PRC use
    dim: int           # its width
    description: str


FEATURE_SPACES: dict[str, FeatureSpace] = {space.name: space for space in (
    FeatureSpace("fmnist-classifier", "penultimate", 128,
                 "penultimate layer of the shipped Fashion-MNIST CNN (grey 28x28)"),
    FeatureSpace("lab-clip", "embedding", 128,
                 "image embedding direction of the shipped lab-clip, times sqrt(128) (RGB 64x64)"),
    FeatureSpace("inception-v3-compat", "2048", 2048,
                 "pool3 of TF Inception-v3 (Heusel et al. 2017): the papers' FID; needs local weights"),
)}


class _ShippedModelFeatures(FeatureExtractorBase):
    """torch-fidelity's extractor protocol around one of our shipped models. ``feature_extractor_weights_path``
    (torch-fidelity's keyword) may name another checkpoints folder with its own manifest.json."""
    features: tuple[str, ...]                   # the features it provides; the first is the metrics' default
    load_model: Callable[..., nn.Module]        # the shipped model's loader (checks its checksum)

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 **kwargs):
        super().__init__(name, features_list)
        folder = Path(feature_extractor_weights_path) if feature_extractor_weights_path else None
        self.model = type(self).load_model(folder=folder)

    @classmethod
    def get_provided_features_list(cls) -> tuple[str, ...]:
        return cls.features

    @classmethod
    def get_default_feature_layer_for_metric(cls, metric: str) -> str:
        return cls.features[0]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> Tensor:
        return torch.zeros(1, 3, 64, 64, dtype=torch.uint8)

    def _select(self, computed: dict[str, Tensor]) -> tuple[Tensor, ...]:
        return tuple(computed[name].float() for name in self.features_list)


class ClassifierFeatures(_ShippedModelFeatures):
    """``fmnist-classifier``: features ``penultimate`` [N, 128] (the default) and ``logits`` [N, 10]."""
    features = ("penultimate", "logits")
    load_model = staticmethod(load_classifier)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        side = self.model.config.image_size
        features = self.model.features(to_unit_range(images, 1, side).to(model_device(self.model)))
        return self._select({"penultimate": features, "logits": self.model.head(features)})


class LabClipFeatures(_ShippedModelFeatures):
    """``lab-clip``: features ``embedding`` [N, d] (the default) and ``raw_embedding`` (the projection output).

    ``embedding`` is the unit-norm direction CLIP compares (cosine), scaled by sqrt(d) so each coordinate has a
    spread of about 1: KID's kernel ``(x.y / d + 1)^3`` expects that scale and is nearly flat on unit vectors."""
    features = ("embedding", "raw_embedding")
    load_model = staticmethod(load_lab_clip)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        side = self.model.visual.image_size[0]
        raw = self.model.encode_image(to_unit_range(images, 3, side).to(self.model.logit_scale.device))
        direction = torch.nn.functional.normalize(raw, dim=-1)
        return self._select({"embedding": direction * raw.shape[-1] ** 0.5, "raw_embedding": raw})


def register_feature_extractors() -> None:
    """Make ``fmnist-classifier`` and ``lab-clip`` known to torch-fidelity (idempotent; done on import)."""
    for name, extractor in (("fmnist-classifier", ClassifierFeatures), ("lab-clip", LabClipFeatures)):
        if name not in FEATURE_EXTRACTORS_REGISTRY:
            register_feature_extractor(name, extractor)


register_feature_extractors()


# ------------------------------------------------------------------------------------------------ inception
def inception_candidates() -> list[Path]:
    """Where we look for the Inception weights, in order."""
    env = [Path(os.environ[INCEPTION_ENV]).expanduser()] if os.environ.get(INCEPTION_ENV) else []
    return env + [cache_dir() / "weights" / INCEPTION_FILE,
                  Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE]


def inception_weights() -> Path:
    """The local Inception-v3 weights, checked against their full SHA-256; never downloads.

    torch-fidelity reads this file with a full unpickle, so we only hand it the exact file it publishes."""
    for path in inception_candidates():
        if path.is_file():
            if (actual := _sha256_of_file(path)) != INCEPTION_SHA256:
                raise FeatureSpaceUnavailable(
                    f"{path} is not torch-fidelity's {INCEPTION_FILE}: its SHA-256 is {actual}, the release "
                    f"asset's is {INCEPTION_SHA256}. It is truncated or another file, and it is unpickled when "
                    "loaded, so it is refused; replace it with the original (or remove it and use another "
                    "feature space).")
            return path
    places = "\n  ".join(map(str, inception_candidates()))
    raise FeatureSpaceUnavailable(
        f"the inception-v3-compat feature space needs {INCEPTION_FILE} (torch-fidelity's v0.2.0 release asset), "
        f"which is not on this machine and is never downloaded here. Copy it to one of:\n  {places}\n"
        f"or set {INCEPTION_ENV} to its path. Until then use feature_space='fmnist-classifier' or 'lab-clip'.")


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def inception_available() -> bool:
    try:
        inception_weights()
    except FeatureSpaceUnavailable:
        return False
    return True


# ------------------------------------------------------------------------------------------------ extraction
def check_feature_space(name: str) -> FeatureSpace:
    if name not in FEATURE_SPACES:
        raise unknown_name_error("feature space", name, FEATURE_SPACES)
    return FEATURE_SPACES[name]


def extractor_kwargs(feature_space: str) -> dict:
    """The keywords torch-fidelity needs to build ``feature_space`` here (Inception: the local weights)."""
    if check_feature_space(feature_space).name == "inception-v3-compat":
        return {"feature_extractor_weights_path": str(inception_weights())}
    return {}


@lru_cache(maxsize=4)
def feature_extractor(feature_space: str, device: str = "cpu") -> FeatureExtractorBase:
    """The torch-fidelity extractor of ``feature_space`` (built once per device), reading its metric layer."""
    space = check_feature_space(feature_space)
    extractor = FEATURE_EXTRACTORS_REGISTRY[space.name](space.name, [space.layer], **extractor_kwargs(space.name))
    return extractor.requires_grad_(False).eval().to(device)


@torch.no_grad()
def extract_features(images: Tensor, feature_space: str, device: torch.device | str | None = None,
                     batch_size: int = 256) -> Tensor:
    """Features ``[N, dim]`` (float32, on the CPU) of uint8 images ``[N, C, H, W]`` in ``feature_space``."""
    images = to_rgb(images) if feature_space == "inception-v3-compat" else check_uint8(images)
    device = resolve_device(device)
    extractor = feature_extractor(feature_space, str(device))
    return torch.cat([extractor(images[i:i + batch_size].to(device))[0].cpu()
                      for i in range(0, len(images), batch_size)])
