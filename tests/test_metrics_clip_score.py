"""CLIP score with the shipped lab-clip: the documented scale, and matching captions above shuffled ones."""

import pytest
import torch
import torch.nn.functional as F

from ldm_lab.checkpoints import read_manifest
from ldm_lab.data import emoji
from ldm_lab.evaluation_models.pairs import emoji_pairs, shapes_pairs
from ldm_lab.metrics import CLIP_SCORE_SCALE, clip_score, clip_scores, lab_clip_encoder

pytestmark = pytest.mark.skipif("lab-clip" not in read_manifest(), reason="needs the shipped lab-clip")


@pytest.fixture(scope="module")
def encoder():
    return lab_clip_encoder("cpu")


def test_scale_is_100_times_the_clipped_cosine(encoder):
    pairs = shapes_pairs("val", 8)
    images = pairs.images.float() / 127.5 - 1
    with torch.no_grad():
        cosine = F.cosine_similarity(encoder.model.encode_image(images),
                                     encoder.model.encode_text(encoder.tokenize(pairs.captions)))
    assert CLIP_SCORE_SCALE == 100
    assert clip_scores(pairs.images, pairs.captions, encoder).tolist() == pytest.approx(
        (100 * cosine.clamp(min=0)).tolist(), abs=1e-3)


@pytest.mark.parametrize("dataset", ["shapes", "emoji"])
def test_matching_captions_score_above_shuffled_ones(encoder, dataset):
    if dataset == "emoji" and not emoji.is_available():
        pytest.skip("the emoji dataset is not in the cache")
    pairs = shapes_pairs("val", 96) if dataset == "shapes" else emoji_pairs("val")
    shuffled = pairs.captions[1:] + pairs.captions[:1]
    matched = clip_scores(pairs.images, pairs.captions, encoder)
    mismatched = clip_scores(pairs.images, shuffled, encoder)
    assert matched.mean() > mismatched.mean() + 2
    assert (matched > mismatched).float().mean() > 0.6
    assert clip_score(pairs.images, pairs.captions, encoder) == pytest.approx(matched.mean().item(), rel=1e-5)


def test_counts_must_match(encoder):
    with pytest.raises(ValueError, match="captions"):
        clip_scores(torch.zeros(2, 3, 64, 64, dtype=torch.uint8), ["one caption"], encoder)


def test_openclip_path_loads_local_weights_and_agrees(encoder, tmp_path):
    # Describe lab-clip as an open_clip model config, save its weights as a user's local checkpoint, and load it
    # through the OpenCLIP path: same scores, no network.
    import json

    import open_clip
    from safetensors.torch import save_file

    from ldm_lab.evaluation_models.lab_clip import LabClipConfig
    from ldm_lab.metrics import openclip_encoder

    c = LabClipConfig(**{k: v for k, v in read_manifest()["lab-clip"].config.items()})
    config = {"embed_dim": c.embed_dim,
              "vision_cfg": {"image_size": c.image_size, "layers": c.vision_layers, "width": c.vision_width,
                             "head_width": c.vision_head_width, "patch_size": c.patch_size},
              "text_cfg": {"context_length": c.context_length, "vocab_size": 49408, "width": c.text_width,
                           "heads": c.text_heads, "layers": c.text_layers}}
    (tmp_path / "lab-clip-as-openclip.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "lab-clip-as-openclip.json")
    save_file(encoder.model.state_dict(), str(tmp_path / "weights.safetensors"))
    loaded = openclip_encoder("lab-clip-as-openclip", tmp_path / "weights.safetensors", device="cpu",
                              preprocess={"mean": (0.5,) * 3, "std": (0.5,) * 3})
    assert (loaded.image_size, loaded.mean, loaded.std) == (64, (0.5,) * 3, (0.5,) * 3)
    pairs = shapes_pairs("val", 8)
    assert clip_scores(pairs.images, pairs.captions, loaded).tolist() == pytest.approx(
        clip_scores(pairs.images, pairs.captions, encoder).tolist(), abs=1e-3)
    with pytest.raises(FileNotFoundError, match="lab_clip_encoder"):
        openclip_encoder("lab-clip-as-openclip", tmp_path / "absent.safetensors")
