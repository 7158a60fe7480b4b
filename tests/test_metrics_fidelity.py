"""FID / KID / precision-recall in our feature spaces: zero against itself, growing with corruption, and the
same numbers through torch-fidelity's calculate_metrics as through our feature path."""

import pytest
import torch

from ldm_lab.checkpoints import read_manifest
from ldm_lab.data import fashion_mnist
from ldm_lab.evaluation_models.pairs import shapes_pairs
from ldm_lab.metrics import (FeatureSpaceUnavailable, add_noise, blur, extract_features, fid_from_features,
                             fidelity_metrics, inception_available, kid_from_features)

needs_classifier = pytest.mark.skipif(
    "fmnist-classifier" not in read_manifest() or not fashion_mnist.is_available(),
    reason="needs the shipped fmnist-classifier and Fashion-MNIST")
needs_lab_clip = pytest.mark.skipif("lab-clip" not in read_manifest(), reason="needs the shipped lab-clip")


@pytest.fixture(scope="module")
def fashion() -> torch.Tensor:
    images, _ = fashion_mnist.load_fashion_mnist("test")
    return images[:400].unsqueeze(1)  # uint8 [400, 1, 28, 28]


@pytest.fixture(scope="module")
def shapes() -> torch.Tensor:
    return shapes_pairs("val", 320).images  # uint8 [320, 3, 64, 64]


def distances(reference: torch.Tensor, corrupted: list[torch.Tensor], space: str) -> tuple[list, list]:
    """FID and KID of each corrupted set against the reference."""
    real = extract_features(reference, space, device="cpu")
    fids, kids = [], []
    for images in corrupted:
        fake = extract_features(images, space, device="cpu")
        fids.append(fid_from_features(real, fake))
        kids.append(kid_from_features(real, fake, subsets=20)[0])
    return fids, kids


def assert_increasing(values: list[float]) -> None:
    assert all(a < b for a, b in zip(values, values[1:])), values


# Heusel et al. 2017, Fig. 1: disturb the images themselves, more and more; level 0 is the set against itself.
@needs_classifier
@pytest.mark.parametrize("corrupt, levels", [(add_noise, (0, 16, 48, 96)), (blur, (0, 0.6, 1.0, 2.0))])
def test_classifier_space_grows_with_corruption(fashion, corrupt, levels):
    fids, kids = distances(fashion, [corrupt(fashion, level) for level in levels], "fmnist-classifier")
    assert fids[0] == pytest.approx(0, abs=1e-6)
    assert_increasing(fids)
    assert_increasing(kids)


@needs_lab_clip
@pytest.mark.parametrize("corrupt, levels", [(add_noise, (0, 16, 48, 96)), (blur, (0, 1.0, 2.0, 4.0))])
def test_lab_clip_space_grows_with_corruption(shapes, corrupt, levels):
    fids, kids = distances(shapes, [corrupt(shapes, level) for level in levels], "lab-clip")
    assert fids[0] == pytest.approx(0, abs=1e-4)
    assert_increasing(fids)
    assert_increasing(kids)


@pytest.mark.parametrize("space", [
    pytest.param("fmnist-classifier", marks=needs_classifier), pytest.param("lab-clip", marks=needs_lab_clip)])
def test_kid_is_near_zero_between_two_samples_of_one_distribution(shapes, space):
    # KID is unbiased: about 0 for two disjoint samples of one distribution (against the very same samples it
    # is slightly negative instead, from the estimator's paired terms), far below a visibly noisy sample's.
    images = fashion_mnist.load_fashion_mnist("test")[0][:2000].unsqueeze(1) if space == "fmnist-classifier" else shapes
    half = len(images) // 2
    first, second = (extract_features(part, space, device="cpu") for part in (images[:half], images[half:]))
    noisy = extract_features(add_noise(images[half:], 48), space, device="cpu")
    same_distribution = kid_from_features(first, second, subset_size=half // 2, subsets=50)[0]
    assert abs(same_distribution) < 0.1 * kid_from_features(first, noisy, subset_size=half // 2, subsets=50)[0]
    assert fid_from_features(first, second) < fid_from_features(first, noisy)


@needs_classifier
def test_calculate_metrics_agrees_with_the_feature_path(fashion):
    real, generated = fashion[:150], add_noise(fashion[150:300], 24)
    result = fidelity_metrics(real, generated, "fmnist-classifier", kid_subset_size=100, kid_subsets=20)
    real_features = extract_features(real, "fmnist-classifier", device="cpu")
    fake_features = extract_features(generated, "fmnist-classifier", device="cpu")
    assert result.fid == pytest.approx(fid_from_features(real_features, fake_features), rel=1e-3)
    assert result.kid == pytest.approx(kid_from_features(real_features, fake_features, 100, 20)[0], rel=1e-3)
    assert (result.feature_space, result.num_real, result.num_generated) == ("fmnist-classifier", 150, 150)
    assert 0 <= result.precision <= 1 and 0 <= result.recall <= 1


@needs_classifier
def test_recall_collapses_when_one_kind_of_image_is_generated(fashion):
    # Improved recall (Kynkaenniemi et al. 2019) measures coverage: generating only trousers covers few of the
    # real images' neighbourhoods, while precision (are the trousers realistic?) stays high.
    images, labels = fashion_mnist.load_fashion_mnist("test")
    trousers = images[labels == 1][:200].unsqueeze(1)
    real, held_out = fashion[:200], fashion[200:400]
    good = fidelity_metrics(real, held_out, "fmnist-classifier", kid_subsets=10)
    collapsed = fidelity_metrics(real, trousers, "fmnist-classifier", kid_subsets=10)
    assert collapsed.recall < 0.3 < 0.6 < good.recall
    assert collapsed.precision > 0.5 and good.precision > 0.6
    assert collapsed.fid > good.fid


def test_inputs_must_be_uint8():
    with pytest.raises(ValueError, match="to_uint8"):
        extract_features(torch.rand(4, 3, 8, 8), "lab-clip")


def test_unknown_feature_space_lists_the_choices():
    with pytest.raises(ValueError, match="fmnist-classifier"):
        extract_features(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), "dinov3")


@pytest.mark.skipif(inception_available(), reason="Inception weights are present on this machine")
def test_inception_without_weights_says_where_to_put_them():
    with pytest.raises(FeatureSpaceUnavailable, match="weights-inception-2015-12-05-6726825d.pth") as error:
        fidelity_metrics(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
                         "inception-v3-compat")
    assert "LDM_LAB_INCEPTION_WEIGHTS" in str(error.value)
