"""Cached latents (ldm_lab.tasks.latent_cache): the training set encoded once by the frozen first stage, each item
keeping its posterior's mean and std, from which every step draws a fresh z0 as encoding the image would."""

import weakref
from dataclasses import replace

import pytest
import torch
from torch.utils.data import Dataset, Subset

from ldm_lab.compression import ablation_target
from ldm_lab.data import collate
from ldm_lab.data.sdxl_variants import HiddenConditions
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.tasks import DiffusionTask, get_target, load_run, run_config, train_target
from ldm_lab.tasks import runs as runs_module
from ldm_lab.tasks import latent_cache
from ldm_lab.tasks.latent_cache import (MEAN, STD, CacheFile, LatentCache, cache_key, latent_moments, sample_latents,
                                        stored_key)

CAPTIONS = ["red apple", "a cat", "grinning face", "red apple", "a dog", "a tree"]
TRAIN_ITEMS = 4  # the training runs below see this many emoji: the cache is built twice, at every start


def emoji_model(seed: int = 0) -> LatentDiffusion:
    """lab-emoji's networks with its target's training config (random weights: only E matters here)."""
    torch.manual_seed(seed)
    return LatentDiffusion(get_target("lab-emoji-large").model)


def fake_emoji(n: int = len(CAPTIONS)) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    return [{"image": torch.rand(3, 64, 64, generator=generator) * 2 - 1, "caption": CAPTIONS[i % len(CAPTIONS)],
             "label": i} for i in range(n)]


def test_cache_holds_each_items_posterior_and_keeps_every_field_but_the_image():
    model, data = emoji_model(), fake_emoji()
    cache = LatentCache(model, data, batch_size=4, progress=False)  # two encoder batches: 4 + 2
    posterior = model.first_stage.eval().encode(torch.stack([item["image"] for item in data]))
    torch.testing.assert_close(cache.mean, posterior.mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cache.std, posterior.std, rtol=1e-5, atol=1e-5)
    assert cache.mean.shape == (len(data), *model.latent_shape) and (cache.std > 0).all()
    assert len(cache) == len(data)
    for index, item in enumerate(data):
        cached = cache[index]
        assert set(cached) == {"caption", "label", MEAN, STD}
        assert (cached["caption"], cached["label"]) == (item["caption"], item["label"])
        assert torch.equal(cached[MEAN], cache.mean[index]) and torch.equal(cached[STD], cache.std[index])


def test_an_unmeasured_latent_scale_is_measured_from_the_cache_and_a_measured_one_is_kept():
    model, data = emoji_model(), fake_emoji()
    assert model.needs_latent_scale
    torch.manual_seed(3)
    cache = LatentCache(model, data, scale_items=4, progress=False)
    torch.manual_seed(3)  # the same draws: scale = 1 / std(z) of latents sampled from the first 4 posteriors
    first = {MEAN: cache.mean[:4], STD: cache.std[:4]}
    expected = 1.0 / sample_latents(first, torch.tensor(1.0)).std().item()
    assert model.latent_scale.item() == pytest.approx(expected, rel=1e-6)
    assert sample_latents(first, model.latent_scale).std().item() == pytest.approx(1.0, abs=0.05)

    measured = emoji_model()
    measured.latent_scale.fill_(0.5)
    LatentCache(measured, data, progress=False)
    assert measured.latent_scale.item() == 0.5


def test_loss_on_a_cached_batch_is_the_loss_on_its_images():
    """Encoding an image draws z = mean + std * eps with one randn of the latent's shape, as the cache does: with
    the same seed both paths draw the same z0, t, noise and condition dropout, so the losses agree."""
    model, data = emoji_model().train(), fake_emoji(4)
    model.latent_scale.fill_(0.8)
    cached = collate([item for item in LatentCache(model, data, progress=False)])
    images = collate(data)
    task = DiffusionTask()
    losses = []
    for batch in (images, cached):
        torch.manual_seed(7)
        losses.append(task.loss(model, batch).item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    torch.manual_seed(8)  # another draw: another loss, so the agreement above is not a constant
    assert task.loss(model, cached).item() != pytest.approx(losses[1], rel=1e-3)


def test_latents_drawn_from_the_cache_have_the_posteriors_scaled_mean_and_std():
    model = emoji_model()
    model.latent_scale.fill_(0.8)
    cached = collate([item for item in LatentCache(model, fake_emoji(1), progress=False)])
    torch.manual_seed(0)
    draws = torch.stack([DiffusionTask.clean_latents(model, cached)[0] for _ in range(4000)])
    mean, std = 0.8 * cached[MEAN][0], 0.8 * cached[STD][0]
    # 4,000 draws: the sample mean is within 4 standard errors, the sample std within 10 % of the true ones.
    assert ((draws.mean(0) - mean).abs() <= 4 * std / 4000 ** 0.5 + 1e-6).float().mean() > 0.999
    torch.testing.assert_close(draws.std(0), std, rtol=0.1, atol=1e-6)


def test_a_vq_first_stage_caches_its_pre_quantisation_latent_with_std_zero():
    torch.manual_seed(0)
    model = LatentDiffusion(get_target(ablation_target(4)).model)  # LDM-4: on the VQ-f4 first stage
    state = {k: v.clone() for k, v in model.first_stage.state_dict(keep_vars=False).items()}
    idle = model.first_stage.quantizer.idle.clone()
    data = fake_emoji(32)  # 8,192 latent pixels: more than its idle limit, 8 x 512 codes
    cache = LatentCache(model, data, progress=False)
    images = torch.stack([item["image"] for item in data])
    with torch.no_grad():
        expected = model.first_stage.quant_conv(model.first_stage.encoder(images))
    torch.testing.assert_close(cache.mean, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(cache.std, torch.zeros_like(cache.mean))
    # Encoding is read-only: the frozen codebook (its idle-code restarts are for first-stage training) is untouched.
    for key, value in model.first_stage.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert torch.equal(model.first_stage.quantizer.idle, idle)


def scenes(n: int = 5) -> list[dict]:
    """Items with the field types of a Shapes scene: ragged boxes, a map, size tuples, a float score."""
    generator = torch.Generator().manual_seed(2)
    return [{"image": torch.rand(3, 64, 64, generator=generator) * 2 - 1, "caption": CAPTIONS[i], "label": i,
             "boxes": torch.rand(i % 3 + 1, 4, generator=generator), "segmentation": torch.randint(0, 5, (64, 64)),
             "original_size": (64, 60 + i), "aesthetic_score": 0.25 * i} for i in range(n)]


def test_a_stored_cache_is_loaded_instead_of_encoded_again_with_every_field_as_it_was(tmp_path, monkeypatch,
                                                                                       capsys):
    model, data = emoji_model(), scenes()
    store = CacheFile(tmp_path / "latent_cache.safetensors", "shapes train 64x64")
    encoded = LatentCache(model, data, batch_size=2, progress=False, store=store)
    assert store.path.is_file() and not list(tmp_path.glob(".tmp-*"))
    scale = model.latent_scale.item()
    monkeypatch.setattr(latent_cache, "latent_moments", lambda *args: pytest.fail("encoded again"))
    model.latent_scale.fill_(float("nan"))  # unmeasured again: measured from the loaded latents, as from encoded ones
    loaded = LatentCache(model, data, batch_size=2, progress=False, store=store)
    assert "5 items loaded" in capsys.readouterr().out
    assert torch.equal(loaded.mean, encoded.mean) and torch.equal(loaded.std, encoded.std)
    assert model.latent_scale.item() == pytest.approx(scale, rel=0.2)
    for ours, theirs in zip(loaded, encoded, strict=True):
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            assert type(ours[key]) is type(value), key
            assert torch.equal(ours[key], value) if isinstance(value, torch.Tensor) else ours[key] == value, key


def test_a_run_finds_the_cache_another_run_shared_and_a_condition_view_applies_over_it(tmp_path, monkeypatch,
                                                                                         capsys):
    model = emoji_model()
    data = [{**item, "target_size": (64, 64), "crop_top_left": (3, 5)} for item in scenes()]
    shared = tmp_path / "shared"
    first = CacheFile(tmp_path / "a" / "latent_cache.safetensors", "shapes train 64x64", shared_dir=shared)
    first.path.parent.mkdir()
    encoded = LatentCache(model, data, batch_size=2, progress=False, store=first)
    key = cache_key(model, data, first.dataset)
    assert first.shared(key).is_file() and first.shared(key).stat().st_ino == first.path.stat().st_ino  # a link
    monkeypatch.setattr(latent_cache, "latent_moments", lambda *args: pytest.fail("encoded again"))
    second = CacheFile(tmp_path / "b" / "latent_cache.safetensors", "shapes train 64x64", shared_dir=shared)
    loaded = LatentCache(model, data, batch_size=2, progress=False, store=second)
    assert f"loaded from {first.shared(key)}" in capsys.readouterr().out
    assert torch.equal(loaded.mean, encoded.mean)
    # a run keeps in memory only the fields it reads; the shared file keeps them all
    kept = LatentCache(model, data, batch_size=2, progress=False, store=second, keep=("caption", "target_size"))
    assert set(kept[0]) == {"caption", "target_size", MEAN, STD} and "boxes" in loaded[0]
    # the no-size ablation's items: the same latents, the original size hidden
    hidden = HiddenConditions(data, ("original_size",)).over(loaded)
    assert [item["original_size"] for item in hidden] == [(64, 64)] * len(data)
    assert hidden[2]["crop_top_left"] == (3, 5) and torch.equal(hidden[2][MEAN], encoded.mean[2])


def test_a_stored_cache_from_another_first_stage_dataset_or_items_is_encoded_again_saying_why(tmp_path, capsys):
    model, data = emoji_model(), scenes(4)
    store = CacheFile(tmp_path / "latent_cache.safetensors", "shapes train 64x64")
    LatentCache(model, data, progress=False, store=store)
    with torch.no_grad():
        next(model.first_stage.encoder.parameters()).add_(0.01)  # the first stage changed
    changed = LatentCache(model, data, progress=False, store=store)
    assert "first stage's weights differ" in capsys.readouterr().out
    images = torch.stack([item["image"] for item in data])
    torch.testing.assert_close(changed.mean, latent_moments(model, images)[0], rtol=0, atol=0)
    assert stored_key(store.path) == cache_key(model, data, "shapes train 64x64")  # the new one is stored
    LatentCache(model, Subset(data, [0, 2]), progress=False, store=store)
    assert "other items" in capsys.readouterr().out
    LatentCache(model, Subset(data, [0, 2]), progress=False, store=replace(store, dataset="shapes train 32x32"))
    assert "another dataset, split or resolution" in capsys.readouterr().out
    store.path.write_bytes(b"not a safetensors file")
    assert len(LatentCache(model, data, progress=False, store=store)) == 4
    assert "unreadable: encoding again" in capsys.readouterr().out


class GeneratedImages(Dataset):
    """Makes each image when asked, as the Shapes dataset does, and keeps a weak reference to know which live."""

    def __init__(self, n: int) -> None:
        self.n, self.images = n, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(index)) * 2 - 1
        self.images.append(weakref.ref(image))
        return {"image": image, "caption": CAPTIONS[index % len(CAPTIONS)]}

    def alive(self) -> int:
        return sum(reference() is not None for reference in self.images)


def test_the_cache_holds_one_batch_of_images_at_a_time(monkeypatch):
    data, alive = GeneratedImages(12), []
    moments = latent_cache.latent_moments
    monkeypatch.setattr(latent_cache, "latent_moments", lambda model, images: alive.append(data.alive()) or
                        moments(model, images))
    cache = LatentCache(emoji_model(), data, batch_size=4, progress=False)
    assert alive == [4, 4, 4] and len(cache) == 12  # not all 12 images (50,000 Shapes scenes: 2.4 GB)
    assert [item["caption"] for item in cache] == [CAPTIONS[i % len(CAPTIONS)] for i in range(12)]


def test_a_pixel_model_or_a_dataset_without_images_is_refused():
    with pytest.raises(ValueError, match="pixel space.*Train it on the images themselves"):
        LatentCache(LatentDiffusion(LatentDiffusionConfig("lab-class")), fake_emoji(), progress=False)
    with pytest.raises(ValueError, match="'image' field"):
        LatentCache(emoji_model(), [{"caption": "a cat"}], progress=False)
    with pytest.raises(ValueError, match="this one is empty"):
        LatentCache(emoji_model(), [], progress=False)


# ------------------------------------------------------------------------------------------- runs
def tiny_config(name: str, steps: int):
    return replace(run_config(get_target(name), steps=steps, batch_size=2, device="cpu"), checkpoint_every=1,
                   keep_checkpoints=5, sample_every=0)


@pytest.fixture
def few_emoji(monkeypatch):
    """The runs train on the first emoji only, and every LatentCache they build is kept for the test to read."""
    training_dataset = runs_module.training_dataset
    monkeypatch.setattr(runs_module, "training_dataset",
                        lambda *args, **kwargs: Subset(training_dataset(*args, **kwargs), range(TRAIN_ITEMS)))
    caches, init = [], LatentCache.__init__

    def recorded_init(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        caches.append(self)

    monkeypatch.setattr(LatentCache, "__init__", recorded_init)
    return caches


def train_first_stage(run_dir) -> None:
    """lab-emoji's first stage, one step each: the symmetric first stage, then lab-autoencoder behind its encoder."""
    symmetric = run_dir.with_name(run_dir.name + "-symmetric")
    train_target("lab-autoencoder-symmetric", symmetric, tiny_config("lab-autoencoder-symmetric", 1))
    train_target("lab-autoencoder", run_dir, tiny_config("lab-autoencoder", 1), init_from=symmetric)


def test_a_resumed_run_caches_latents_with_its_own_first_stage(few_emoji, tmp_path):
    assert get_target("lab-emoji-large").cache_latents
    first_stage, run_dir = tmp_path / "ae", tmp_path / "emoji"
    train_first_stage(first_stage)
    train_target("lab-emoji-large", run_dir, tiny_config("lab-emoji-large", 1), first_stage=first_stage)
    scale = load_run(run_dir, ema=False).model.latent_scale.item()
    train_target("lab-emoji-large", run_dir, tiny_config("lab-emoji-large", 2), resume=True)
    assert len(few_emoji) == 2 and load_run(run_dir, ema=False).step == 2

    trained = load_run(run_dir, ema=False).model
    # the fresh run's cache (1 step: the 2 items it can see) and the resumed run's (2 steps: all 4), both encoded by
    # the run's own first stage
    for cache, steps in zip(few_emoji, (1, 2), strict=True):
        items = runs_module.items_a_run_sees(runs_module.training_dataset("emoji", (64, 64)),
                                             tiny_config("lab-emoji-large", steps))
        images = collate([items[i] for i in range(len(items))])["image"]
        mean, std = latent_moments(trained, images)
        torch.testing.assert_close(cache.mean, mean, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cache.std, std, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(cache.mean, latent_moments(emoji_model(seed=1), images)[0], atol=1e-3)
    assert trained.latent_scale.item() == scale  # measured once, from the first cache, and resumed


def test_a_resumed_run_loads_the_latent_cache_it_stored_instead_of_encoding_again(few_emoji, tmp_path, monkeypatch):
    first_stage, run_dir = tmp_path / "ae", tmp_path / "emoji"
    train_first_stage(first_stage)
    # 2 x 2: every item
    train_target("lab-emoji-large", run_dir, tiny_config("lab-emoji-large", 2), first_stage=first_stage)
    assert (run_dir / runs_module.LATENT_CACHE_FILE).is_file()
    encoded = []
    moments = latent_cache.latent_moments
    monkeypatch.setattr(latent_cache, "latent_moments", lambda *args: encoded.append(1) or moments(*args))
    train_target("lab-emoji-large", run_dir, tiny_config("lab-emoji-large", 3), resume=True)
    assert encoded == [] and load_run(run_dir, ema=False).step == 3
    torch.testing.assert_close(few_emoji[1].mean, few_emoji[0].mean, rtol=0, atol=0)


def test_a_run_shorter_than_an_epoch_caches_only_the_items_it_can_see():
    from torch.utils.data import TensorDataset

    from ldm_lab.tasks.runs import items_a_run_sees
    from ldm_lab.training import TrainConfig

    data = TensorDataset(torch.arange(100))
    short = items_a_run_sees(data, TrainConfig(steps=3, batch_size=4, grad_accum_steps=2, seed=1))
    assert len(short) == 24 and len({int(short[i][0]) for i in range(24)}) == 24   # distinct items
    again = items_a_run_sees(data, TrainConfig(steps=3, batch_size=4, grad_accum_steps=2, seed=1))
    assert [int(again[i][0]) for i in range(24)] == [int(short[i][0]) for i in range(24)]  # a resume draws the same
    assert items_a_run_sees(data, TrainConfig(steps=50, batch_size=4)) is data
