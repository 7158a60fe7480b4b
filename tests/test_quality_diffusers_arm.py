"""The diffusers arm of the time-to-quality benchmark, on tiny models and eight fake emoji."""

from __future__ import annotations

import time

import pytest
import torch

from ldm_lab.quality import diffusers_arm as da

# Every model a few thousand parameters (plus the text tower's 49,408-token table): 16x16 images, f = 4.
TINY = da.DiffusersArmConfig(
    resolution=16, vae_block_out_channels=(8, 8, 8), vae_norm_num_groups=4, text_hidden_size=16,
    text_intermediate_size=32, text_layers=1, text_heads=2, unet_block_out_channels=(8, 16),
    unet_layers_per_block=1, unet_attention_head_dim=2, unet_norm_num_groups=4, batch_size=4)
CAPTIONS = ["grinning face", "red apple", "thumbs up", "blue heart", "cat face", "rocket", "sun", "snowflake"]


class FakeEmoji(torch.utils.data.Dataset):
    """Eight {'image', 'caption'} items in [-1, 1], as training_dataset('emoji', ...) gives them."""

    def __init__(self, size: int = 16) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.rand(len(CAPTIONS), 3, size, size, generator=generator) * 2 - 1

    def __len__(self) -> int:
        return len(CAPTIONS)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "caption": CAPTIONS[index], "label": index}


@pytest.fixture(scope="module")
def trained() -> da.DiffusersArm:
    return da.train(FakeEmoji(), minutes=10, seed=0, progress=False, config=TINY, max_steps=3)


def test_default_models_are_the_benchmark_sizes():
    arm = da.build_arm()
    counts = da.parameter_counts(arm)
    assert 10e6 <= counts["unet"] <= 25e6
    assert arm.config.latent_size == 16 and arm.unet.config.sample_size == 16
    assert arm.unet.config.cross_attention_dim == arm.text_encoder.config.hidden_size
    latent = arm.vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean
    assert latent.shape == (1, 4, 16, 16)


def test_token_ids_are_clip_sequences_padded_with_end():
    ids = da.token_ids(["red apple"])
    assert ids.shape == (1, 77)
    assert ids[0, 0] == da.START_OF_TEXT
    body_end = (ids[0] == da.END_OF_TEXT).nonzero()[0].item()
    assert body_end > 1 and (ids[0, body_end:] == da.END_OF_TEXT).all()


def test_both_phases_run_the_asked_steps(trained):
    assert trained.steps == {"vae": 3, "unet": 3}
    assert all(trained.images_per_second[phase] > 0 for phase in da.PHASES)
    assert all(torch.isfinite(torch.tensor(trained.last_loss[phase])) for phase in da.PHASES)


def test_training_updates_all_three_models(trained):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        fresh = da.build_arm(TINY)
    for name in ("vae", "unet", "text_encoder"):
        before, after = getattr(fresh, name).state_dict(), getattr(trained, name).state_dict()
        assert any(not torch.equal(before[key], after[key]) for key in before), f"{name} did not train"


def test_generate_gives_images_in_range_that_follow_the_caption(trained):
    images = da.generate(trained, ["red apple", "grinning face"], seed=0, steps=3)
    assert images.shape == (2, 3, 16, 16)
    assert images.min() >= -1 and images.max() <= 1 and torch.isfinite(images).all()
    other = da.generate(trained, ["snowflake", "grinning face"], seed=0, steps=3)
    assert not torch.equal(images[0], other[0])      # same noise, other caption
    torch.testing.assert_close(images[1], other[1])  # same noise, same caption


def test_generate_does_not_depend_on_batch_size(trained):
    together = da.generate(trained, CAPTIONS[:3], seed=1, steps=2, batch_size=3)
    apart = da.generate(trained, CAPTIONS[:3], seed=1, steps=2, batch_size=1)
    torch.testing.assert_close(together, apart, atol=1e-5, rtol=1e-4)


def test_guidance_changes_the_images(trained):
    plain = da.generate(trained, ["sun"], seed=0, steps=2)
    guided = da.generate(trained, ["sun"], seed=0, steps=2, guidance_scale=3.0)
    assert not torch.equal(plain, guided)


def test_save_and_load_give_identical_images(trained, tmp_path):
    da.save(trained, tmp_path / "arm")
    loaded = da.load(tmp_path / "arm")
    assert loaded.config == trained.config and loaded.steps == trained.steps
    assert loaded.scheduler_config == trained.scheduler_config
    torch.testing.assert_close(da.generate(loaded, CAPTIONS[:2], seed=3, steps=2),
                               da.generate(trained, CAPTIONS[:2], seed=3, steps=2), atol=1e-5, rtol=1e-4)
    # (identical weights; float sums may run in another order across threads, ~4e-7 seen on 2 cores)


def test_load_of_a_wrong_folder_says_what_to_give(tmp_path):
    with pytest.raises(FileNotFoundError, match="save"):
        da.load(tmp_path)


def test_training_stops_at_the_deadline():
    began = time.perf_counter()
    arm = da.train(FakeEmoji(), minutes=0.02, seed=0, progress=False, config=TINY)
    wall = time.perf_counter() - began
    assert arm.steps["vae"] >= 1 and arm.steps["unet"] >= 1
    assert sum(arm.seconds.values()) < 0.02 * 60 + 1.0   # at most one step past each deadline
    assert wall < 0.02 * 60 + 10                          # plus building the models


def test_checkpoints_are_written_after_each_phase(tmp_path):
    arm = da.train(FakeEmoji(), minutes=10, progress=False, config=TINY, max_steps=1, checkpoint_dir=tmp_path)
    assert da.load(tmp_path).steps == arm.steps == {"vae": 1, "unet": 1}


def test_training_is_seeded_and_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = da.train(FakeEmoji(), minutes=10, seed=5, progress=False, config=TINY, max_steps=2)
    torch.testing.assert_close(torch.rand(3), expected)
    second = da.train(FakeEmoji(), minutes=10, seed=5, progress=False, config=TINY, max_steps=2)
    for key, value in first.unet.state_dict().items():
        torch.testing.assert_close(second.unet.state_dict()[key], value)


@pytest.mark.parametrize("minutes, vae_share", [(0, 0.2), (1, 0.0), (1, 1.0)])
def test_train_rejects_a_budget_without_both_phases(minutes, vae_share):
    with pytest.raises(ValueError, match="vae_share"):
        da.train(FakeEmoji(), minutes=minutes, vae_share=vae_share, progress=False, config=TINY)


def test_config_rejects_a_resolution_the_vae_cannot_halve():
    with pytest.raises(ValueError, match="divisible"):
        da.DiffusersArmConfig(resolution=30)
