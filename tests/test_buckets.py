"""SDXL's aspect-ratio buckets (§2.3) scaled down: the rule, the nearest bucket, the one-bucket batch sampler, Shapes
at a bucket's size, and a multi-aspect model that trains and samples at them."""

import math
from collections import Counter
from dataclasses import replace

import pytest
import torch
from torch.utils.data import Subset

from ldm_lab.data import build_dataset, collate, held_out_batches, held_out_sample
from ldm_lab.data.buckets import (CENTRE_CROP, LAB_BUCKETS, LAB_RULE, SDXL_RULE, SQUARE_ONLY, BucketBatchSampler,
                                  BucketedShapes, BucketedShapesConfig, BucketRule, aspect, at_size, item_groups,
                                  nearest_bucket)
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.presets import get_preset
from ldm_lab.tasks import DiffusionTask, generate
from ldm_lab.tasks.latent_cache import MEAN, cache_latents
from ldm_lab.training.data import resumable_loader


# ------------------------------------------------------------------------------------------------- the rule
@pytest.mark.parametrize("rule", [LAB_RULE, SDXL_RULE, BucketRule(base=128, multiple=16)], ids=["lab", "sdxl", "128"])
def test_buckets_keep_the_pixel_count_in_multiples_within_the_aspect_range(rule):
    buckets = rule.buckets()
    assert (rule.base, rule.base) in buckets
    for height, width in buckets:
        assert height % rule.multiple == 0 and width % rule.multiple == 0
        assert abs(height * width / rule.base**2 - 1) <= rule.tolerance
        assert 1 / rule.max_aspect <= width / height <= rule.max_aspect
    assert [aspect(b) for b in buckets] == sorted(aspect(b) for b in buckets)
    assert set(buckets) == {(w, h) for h, w in buckets}  # every landscape bucket has its portrait twin
    # they span SDXL's range, 1:4 to 4:1
    assert aspect(buckets[0]) <= 0.26 and aspect(buckets[-1]) >= 3.9


def test_the_lab_buckets_are_five_sizes_a_lab_sdxl_latent_can_halve_twice():
    assert LAB_BUCKETS == ((128, 32), (80, 48), (64, 64), (48, 80), (32, 128))
    model = LatentDiffusion(LatentDiffusionConfig("lab-sdxl", multi_aspect=True))
    assert model.size_multiple == LAB_RULE.multiple == 16  # f 4 x the U-Net's two halvings
    for size in LAB_BUCKETS:
        channels, height, width = model.latent_shape_at(size)
        assert (height * 4, width * 4) == size and height % 4 == 0 and width % 4 == 0


def test_sdxls_rule_gives_the_resolutions_sdxl_recommends():
    buckets = set(SDXL_RULE.buckets())
    for size in [(1024, 1024), (896, 1152), (832, 1216), (768, 1344), (640, 1536)]:  # (height, width)
        assert size in buckets and size[::-1] in buckets


def test_a_rule_whose_square_is_no_bucket_is_refused():
    with pytest.raises(ValueError, match="multiple of 24"):
        BucketRule(base=64, multiple=24)


def test_nearest_bucket_is_nearest_in_log_aspect():
    assert LAB_BUCKETS[nearest_bucket(1.0, LAB_BUCKETS)] == (64, 64)
    assert LAB_BUCKETS[nearest_bucket(1.7, LAB_BUCKETS)] == (48, 80)
    assert LAB_BUCKETS[nearest_bucket(1 / 1.7, LAB_BUCKETS)] == (80, 48)
    assert LAB_BUCKETS[nearest_bucket(10.0, LAB_BUCKETS)] == (32, 128)
    # the boundary between 64x64 (1) and 48x80 (5/3) lies at their geometric mean
    middle = math.sqrt(5 / 3)
    assert nearest_bucket(middle * 0.99, LAB_BUCKETS) == 2 and nearest_bucket(middle * 1.01, LAB_BUCKETS) == 3
    with pytest.raises(ValueError, match="width / height"):
        nearest_bucket(0.0, LAB_BUCKETS)


# ---------------------------------------------------------------------------------------------- the sampler
GROUPS = [0] * 7 + [1] * 12 + [2] * 3 + [3] * 9


def batches(sampler, count):
    stream = iter(sampler)
    return [next(stream) for _ in range(count)]


def test_a_batch_never_mixes_buckets_and_an_epoch_sees_every_item_once():
    sampler = BucketBatchSampler(GROUPS, batch_size=4, seed=0)
    assert sampler.batches_per_epoch == 2 + 3 + 1 + 3
    for epoch in range(3):
        drawn = sampler.epoch(epoch)
        assert all(len({GROUPS[i] for i in batch}) == 1 and 1 <= len(batch) <= 4 for batch in drawn)
        assert sorted(i for batch in drawn for i in batch) == list(range(len(GROUPS)))
    assert batches(sampler, 2 * sampler.batches_per_epoch) == sampler.epoch(0) + sampler.epoch(1)
    assert sampler.epoch(0) != sampler.epoch(1)  # reshuffled every epoch
    # buckets alternate: the first epoch does not draw one bucket's batches in a row
    assert len({GROUPS[batch[0]] for batch in sampler.epoch(0)[:4]}) > 1


def test_the_sampler_is_deterministic_resumable_and_split_over_processes():
    def stream(**kwargs):
        return batches(BucketBatchSampler(GROUPS, 4, seed=3, **kwargs), 12)

    assert stream() == stream() and stream() != batches(BucketBatchSampler(GROUPS, 4, seed=4), 12)
    # resuming after 5 batches (20 samples at the nominal batch size) continues the same stream
    assert batches(BucketBatchSampler(GROUPS, 4, seed=3, start=20), 7) == stream()[5:12]
    # two processes take alternate batches of the one global stream
    rank0, rank1 = stream(rank=0, world_size=2), stream(rank=1, world_size=2)
    single = batches(BucketBatchSampler(GROUPS, 4, seed=3), 24)
    assert rank0 == single[0::2] and rank1 == single[1::2]


# ---------------------------------------------------------------------------------------------- the dataset
def test_bucketed_shapes_render_each_item_at_its_bucket_with_the_originals_aspect():
    data = BucketedShapes("train", BucketedShapesConfig(num_images=200))
    groups = item_groups(data)
    assert set(groups) == set(range(len(LAB_BUCKETS)))  # every bucket is used
    for index in range(12):
        item, bucket = data[index], LAB_BUCKETS[groups[index]]
        assert tuple(item["image"].shape[1:]) == item["target_size"] == bucket
        original = item["original_size"]
        assert nearest_bucket(original[1] / original[0], LAB_BUCKETS) == groups[index]
        assert abs(original[0] * original[1] / (bucket[0] * bucket[1]) - 1) < 0.1  # about the bucket's pixels
    # the scenes are Shapes' own: item i shows the caption of Shapes' item i
    assert data[3]["caption"] == build_dataset("shapes", "train", (64, 64))[3]["caption"]
    assert torch.equal(data[5]["image"], BucketedShapes("train", BucketedShapesConfig(num_images=200))[5]["image"])


def test_the_baselines_train_on_squares():
    centre = BucketedShapes("train", replace(CENTRE_CROP, num_images=50))
    square = BucketedShapes("train", replace(SQUARE_ONLY, num_images=50))
    for index in range(8):
        item = centre[index]
        assert item["target_size"] == (64, 64) and item["image"].shape[1:] == (64, 64)
        original, crop = item["original_size"], item["crop_top_left"]
        slack = [max(0, round(s * 64 / min(original)) - 64) for s in original]
        assert all(abs(c - s // 2) <= 1 for c, s in zip(crop, slack))  # centred
        assert square[index]["original_size"] == (64, 64) and square[index]["crop_top_left"] == (0, 0)
    assert item_groups(square) == [0] * 50


def test_registered_bucket_datasets_follow_the_training_size():
    assert build_dataset("shapes_buckets", "train", (32, 32)).config.buckets == ((64, 16), (40, 24), (32, 32),
                                                                                   (24, 40), (16, 64))
    assert build_dataset("shapes_square", "val", (32, 32)).config.buckets == ((32, 32),)
    with pytest.raises(ValueError, match="square training size"):
        at_size(CENTRE_CROP, (48, 80))


def test_the_trainers_loader_draws_one_bucket_per_batch_also_from_a_subset():
    data = Subset(BucketedShapes("train", BucketedShapesConfig(num_images=60)), list(range(0, 60, 2)))
    loader = resumable_loader(data, batch_size=4, seed=0, start=0, rank=0, world_size=1, collate_fn=collate)
    stream = iter(loader)
    for _ in range(5):
        batch = next(stream)
        assert isinstance(batch["image"], torch.Tensor)  # stacked: one size
        assert len({tuple(size) for size in batch["target_size"].tolist()}) == 1
        assert tuple(batch["image"].shape[-2:]) == tuple(batch["target_size"][0].tolist())


# ------------------------------------------------------------------------------------------ a bucketed model
def test_only_a_multi_aspect_model_takes_other_sizes():
    fixed = LatentDiffusion(LatentDiffusionConfig("lab-sdxl"))
    with pytest.raises(ValueError, match="multi_aspect=True"):
        fixed.latent_shape_at((48, 80))
    bucketed = LatentDiffusion(LatentDiffusionConfig("lab-sdxl", multi_aspect=True))
    with pytest.raises(ValueError, match="multiples of 16"):
        bucketed.latent_shape_at((40, 88))
    assert bucketed.latent_shape_at((48, 80)) == (4, 12, 20)
    assert get_preset("lab-sdxl").resolution == (64, 64)


def test_a_bucketed_model_trains_at_every_bucket_and_samples_at_any():
    torch.manual_seed(0)
    model = LatentDiffusion(LatentDiffusionConfig("lab-sdxl", multi_aspect=True))
    model.latent_scale.fill_(1.0)
    data = BucketedShapes("train", BucketedShapesConfig(num_images=40))
    loader = resumable_loader(data, batch_size=2, seed=0, start=0, rank=0, world_size=1, collate_fn=collate)
    seen = Counter()
    for batch, _ in zip(loader, range(4)):
        loss = DiffusionTask().loss(model, batch)
        assert torch.isfinite(loss)
        seen[tuple(batch["image"].shape[-2:])] += 1
    assert len(seen) > 1
    images = generate(model, prompts=["a large red circle"], size=(48, 80),
                      settings=SamplingSettings(steps=2, seed=0))
    assert images.shape == (1, 3, 48, 80)


def test_a_latent_cache_of_bucketed_data_caches_each_bucket_and_keeps_the_groups():
    model = LatentDiffusion(LatentDiffusionConfig("lab-sdxl", multi_aspect=True))
    data = BucketedShapes("train", BucketedShapesConfig(num_images=12))
    cache = cache_latents(model, Subset(data, list(range(10))), progress=False)
    assert len(cache) == 10 and item_groups(cache) == item_groups(data)[:10]
    assert not model.needs_latent_scale  # measured on the first bucket's items
    for index in range(10):
        item, cached = data[index], cache[index]
        assert tuple(cached[MEAN].shape[-2:]) == tuple(side // 4 for side in item["target_size"])
        assert cached["caption"] == item["caption"] and cached["target_size"] == item["target_size"]


def test_held_out_batches_of_a_bucketed_dataset_never_mix_sizes():
    batches = list(held_out_batches("shapes_buckets", (64, 64), 40, batch_size=8))
    assert sum(len(batch["image"]) for batch in batches) == 40
    assert all(isinstance(batch["image"], torch.Tensor) for batch in batches)   # stacked: one size per batch
    plain = held_out_sample("shapes_buckets", (64, 64), 40)
    assert sorted(c for batch in batches for c in batch["caption"]) == sorted(plain["caption"])  # the same items
    square = list(held_out_batches("shapes", (64, 64), 20, batch_size=8))
    assert [len(batch["image"]) for batch in square] == [8, 8, 4]
