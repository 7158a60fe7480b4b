"""SDXL's training tricks as lab pieces: the Tab. 2 and crop-conditioning data variants and targets, the refiner
trained on the lowest-noise timesteps, and the hand-off from base to refiner during sampling (SDXL §2.2-2.5)."""

import dataclasses
from dataclasses import fields, replace

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_lab.cli import main
from ldm_lab.data import build_dataset
from ldm_lab.data.sdxl_variants import HiddenConditions, LargeOriginals
from ldm_lab.data.shapes import Scene, Shape, ShapesConfig, ShapesDataset, render
from ldm_lab.diffusion import DiffusionLoss, ImageEdit, SamplingSettings, make_schedule, sample
from ldm_lab.diffusion.experts import Expert, refiner_steps, sample_experts
from ldm_lab.metrics.corruptions import blur
from ldm_lab.metrics.images import to_uint8
from ldm_lab.metrics.sharpness import detail_score
from ldm_lab.models import LatentDiffusion, LatentDiffusionConfig
from ldm_lab.presets import get_preset
from ldm_lab.presets.shapes import LAB_SDXL_REFINER, REFINER_TIMESTEPS
from ldm_lab.tasks import get_target, load_run
from ldm_lab.quality import sdxl as sdxl_scores
from ldm_lab.quality.sdxl import (BATCH, BUCKET_ARMS, CROP_ARMS, SIZE_ARMS, experiment_verdicts, geometry_scores,
                                  geometry_verdict, read_sdxl_table, refiner_scores, size_scores)
from ldm_lab.tasks.refiner import Handoff, LowNoiseTask, check_same_latent_space, generate_with_refiner
from ldm_lab.tasks.sdxl_experiments import (bucket_cases, crop_cases, geometry_prompts, geometry_table,
                                            original_size_sweep, shapes_draw)
from ldm_lab.tasks.targets.shapes import SDXL_ABLATION_BASE, SDXL_ABLATIONS, SDXL_BUCKET_STEPS

MULTISCALE = ShapesConfig(num_images=40, original_scale=(0.25, 2.0))


# -------------------------------------------------------------------------------------- the data variants
def test_large_originals_keep_only_originals_at_least_the_training_size():
    data = ShapesDataset("train", MULTISCALE)
    large = LargeOriginals(data)
    kept = [min(data.view(i)[0]) >= 64 for i in range(len(data))]
    assert len(large) == sum(kept) and 0 < len(large) < len(data)
    assert all(min(large[i]["original_size"]) >= 64 for i in range(3))
    assert large[0]["caption"] == data[large.indices[0]]["caption"]


def test_hidden_conditions_fix_the_size_or_the_crop_and_keep_the_image():
    data = ShapesDataset("train", MULTISCALE)
    index = next(i for i in range(len(data)) if data.view(i)[1] != (0, 0) and data.view(i)[0] != (64, 64))
    no_size, no_crop = HiddenConditions(data, ("original_size",)), HiddenConditions(data, ("crop_top_left",))
    item = data[index]
    assert no_size[index]["original_size"] == (64, 64) and no_size[index]["crop_top_left"] == item["crop_top_left"]
    assert no_crop[index]["crop_top_left"] == (0, 0) and no_crop[index]["original_size"] == item["original_size"]
    assert torch.equal(no_size[index]["image"], item["image"]) and torch.equal(no_crop[index]["image"], item["image"])
    with pytest.raises(ValueError, match="hide some of"):
        HiddenConditions(data, ("target_size",))


def test_registered_variants_see_the_same_scenes():
    plain = build_dataset("shapes_multiscale", "val", (64, 64))
    no_size = build_dataset("shapes_multiscale_no_size", "val", (64, 64))
    assert no_size[2]["caption"] == plain[2]["caption"] and no_size[2]["original_size"] == (64, 64)
    scored = build_dataset("shapes_multiscale_scored", "val", (64, 64))[2]
    assert 0 <= scored["aesthetic_score"] <= 10


# ------------------------------------------------------------------------------------------------ targets
def test_every_ablation_is_the_small_lab_sdxl_with_one_change_at_equal_compute():
    base = SDXL_ABLATION_BASE
    assert base.model.preset == "lab-sdxl-small" and base.dataset == get_target("lab-sdxl").dataset
    changed = {}
    for target in SDXL_ABLATIONS:
        assert target.train == base.train and target.first_stage == base.first_stage   # equal compute
        assert target.steps == (SDXL_BUCKET_STEPS if target.starts_from else base.steps)
        assert target.task.guidance_scale == base.task.guidance_scale
        assert target.task == base.task or isinstance(target.task, LowNoiseTask)
        model_changes = {f.name for f in fields(base.model)
                         if getattr(target.model, f.name) != getattr(base.model, f.name)}
        changed[target.name] = (target.dataset if target.dataset != base.dataset else None, model_changes,
                                target.starts_from)
    assert changed == {
        "lab-sdxl-large-only": ("shapes_multiscale_large", set(), None),
        "lab-sdxl-no-size": ("shapes_multiscale_no_size", set(), None),
        "lab-sdxl-size": (None, set(), None),
        "lab-sdxl-no-crop": ("shapes_multiscale_no_crop", set(), None),
        # SDXL §2.3: multi-aspect training as a fine-tuning stage of the fixed-size model
        "lab-sdxl-buckets": ("shapes_buckets", {"multi_aspect"}, "lab-sdxl-size"),
        "lab-sdxl-square": ("shapes_square", {"multi_aspect"}, "lab-sdxl-size"),
        "lab-sdxl-centre-crop": ("shapes_centre_crop", {"multi_aspect"}, "lab-sdxl-size"),
        "lab-sdxl-refiner": ("shapes_multiscale_scored", {"preset", "timestep_range"}, None),
    }
    assert isinstance(get_target("lab-sdxl-refiner").task, LowNoiseTask)


def test_the_small_lab_sdxl_halves_the_parameters_at_nearly_the_same_compute():
    with torch.device("meta"):
        small, full = (LatentDiffusion(LatentDiffusionConfig(name)).unet for name in ("lab-sdxl-small", "lab-sdxl"))
    count = lambda unet: sum(p.numel() for p in unet.parameters())  # noqa: E731
    assert 2.5e6 < count(small) < 2.8e6 and count(full) > 1.9 * count(small)
    assert small.config.model_channels == full.config.model_channels  # the 16x16 and 8x8 levels unchanged


def test_the_refiner_is_conditioned_as_sdxls_refiner():
    refiner = LatentDiffusion(get_target("lab-sdxl-refiner").model)
    assert refiner.condition_keys == ("caption", "original_size", "crop_top_left", "aesthetic_score")
    assert refiner.preset.unet.y_dim == 128 + 5 * 256 and refiner.config.timestep_range == REFINER_TIMESTEPS
    cond = refiner.condition({"caption": ["a red circle"] * 2, "aesthetic_score": torch.tensor([6.0, 2.5])})
    assert cond["y"].shape == (2, 128 + 5 * 256) and not torch.equal(cond["y"][0], cond["y"][1])
    base = LatentDiffusion(get_target("lab-sdxl").model)
    assert refiner.first_stage.config == base.first_stage.config
    assert refiner.preset.unet.channel_mult == get_preset("lab-sdxl-small").unet.channel_mult


def test_the_detail_score_falls_when_an_image_is_blurred():
    images = torch.stack([build_dataset("shapes", "val", (64, 64))[i]["image"] for i in range(6)])
    sharp, blurred = detail_score(to_uint8(images)), detail_score(blur(to_uint8(images), 1.5))
    assert (blurred <= sharp).all() and ((0 <= sharp) & (sharp <= 10)).all()
    assert (blurred < sharp - 1)[sharp > 2].all() and (sharp > 2).sum() >= 3  # clipped at 0 below


# ------------------------------------------------------------------------------------- low-noise training
class RecordingModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight, self.timesteps = torch.nn.Parameter(torch.ones(())), []

    def forward(self, x, t, **cond):
        self.timesteps.append(t.detach().clone())
        return x * self.weight


def test_the_loss_trains_only_on_its_timestep_range():
    schedule, x0 = make_schedule("scaled_linear", 1000), torch.randn(512, 4, 2, 2)
    model = RecordingModel()
    DiffusionLoss(schedule, "v", timestep_range=(0, 200))(model, x0, generator=torch.Generator().manual_seed(0))
    t = model.timesteps[0]
    assert t.min() >= 0 and t.max() < 200 and t.float().std() > 40  # spread over the range, not one level
    # without a range the draws are the ones the loss always made
    full, plain = RecordingModel(), RecordingModel()
    DiffusionLoss(schedule, "v")(full, x0, generator=torch.Generator().manual_seed(1))
    DiffusionLoss(schedule, "v", timestep_range=(0, 1000))(plain, x0, generator=torch.Generator().manual_seed(1))
    expected = torch.randint(0, 1000, (512,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(full.timesteps[0], expected) and torch.equal(plain.timesteps[0], expected)
    with pytest.raises(ValueError, match=r"\(0, 200\)"):
        DiffusionLoss(schedule, timestep_range=(100, 1200))
    with pytest.raises(ValueError, match="0 <= low < high"):
        LatentDiffusion(LatentDiffusionConfig(LAB_SDXL_REFINER, timestep_range=(200, 200)))


# ------------------------------------------------------------------------------------------- the hand-off
def toy_model(scale: float):
    """A deterministic stand-in network: its eps prediction is a fixed function of x_t and t."""
    def model_fn(x, t, **cond):
        return scale * torch.tanh(x) + 1e-3 * t.view(-1, 1, 1, 1)
    return model_fn


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "euler_ancestral", "heun"])
def test_identical_base_and_refiner_equal_the_base_sampler_alone(sampler):
    noise, base = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), toy_model(0.5)
    settings = SamplingSettings(sampler=sampler, steps=10, seed=3)
    alone = sample(base, noise, settings, schedule="scaled_linear", prediction="eps", progress=False)
    experts = sample_experts(Expert(base), Expert(base), noise, settings, switch_timestep=200,
                             schedule="scaled_linear", prediction="eps")
    assert torch.equal(alone, experts)


def test_the_refiner_takes_exactly_the_levels_below_the_switch():
    schedule = make_schedule("scaled_linear", 1000)
    calls = {"base": [], "refiner": []}

    def recording(name):
        def model_fn(x, t, **cond):
            calls[name].append(float(t[0]))
            return torch.zeros_like(x)
        return model_fn

    settings = SamplingSettings(sampler="euler", steps=20)
    sample_experts(Expert(recording("base")), Expert(recording("refiner")), torch.randn(1, 4, 4, 4), settings,
                   switch_timestep=200, schedule=schedule, prediction="eps")
    assert len(calls["refiner"]) == refiner_steps(schedule, settings, 200) == 4  # the last 20 % of 20 steps
    assert max(calls["refiner"]) < 200 <= min(calls["base"])
    with pytest.raises(ValueError, match="switch_timestep"):
        sample_experts(Expert(recording("base")), Expert(recording("base")), torch.randn(1, 4, 4, 4), settings,
                       switch_timestep=1000, schedule=schedule)


def test_sdedit_refine_restarts_at_the_switch_level():
    # SGM's img2img refine of a finished latent runs the refiner's share of the steps on it
    schedule, settings = make_schedule("scaled_linear", 1000), SamplingSettings(sampler="euler", steps=20)
    latent = torch.randn(1, 4, 4, 4)
    strength = (refiner_steps(schedule, settings) + 0.5) / settings.steps
    steps = []
    sample(lambda x, t: steps.append(float(t[0])) or torch.zeros_like(x), torch.randn(1, 4, 4, 4), settings,
           schedule=schedule, edit=ImageEdit(latent, strength=strength), progress=False)
    assert len(steps) == 4 and max(steps) < 200


@pytest.fixture(scope="module")
def base_and_refiner():
    torch.manual_seed(0)
    base = LatentDiffusion(replace(get_target("lab-sdxl").model, multi_aspect=True)).eval()
    refiner = LatentDiffusion(get_target("lab-sdxl-refiner").model).eval()
    refiner.first_stage.load_state_dict(base.first_stage.state_dict())
    base.latent_scale.fill_(1.0)
    refiner.latent_scale.fill_(1.0)
    return base, refiner


@pytest.mark.parametrize("handoff", list(Handoff))
def test_generate_with_refiner_draws_images_both_ways(base_and_refiner, handoff):
    base, refiner = base_and_refiner
    images = generate_with_refiner(base, refiner, prompts=["a large red circle", "a small blue square"],
                                   settings=SamplingSettings(steps=5, guidance_scale=2.0, seed=0), handoff=handoff,
                                   size=(48, 80))
    assert images.shape == (2, 3, 48, 80) and torch.isfinite(images).all()


def test_a_refiner_in_another_latent_scale_is_refused(base_and_refiner):
    base, refiner = base_and_refiner
    refiner.latent_scale.fill_(1.2)
    try:
        with pytest.raises(ValueError, match="latent scale"):
            check_same_latent_space(base, refiner)
    finally:
        refiner.latent_scale.fill_(1.0)


# --------------------------------------------------------------------------- one command per experiment
def train(name: str, out, first_stage=None, init_from=None) -> None:
    args = ["train", name, "--steps", "1", "--batch-size", "2", "--out", str(out), "--device", "cpu"]
    args += ["--first-stage", str(first_stage)] if first_stage else []
    assert main(args + (["--init-from", str(init_from)] if init_from else [])) == 0


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """One-step runs, each trained by one command: the Shapes first stage, lab-sdxl-size on it, lab-sdxl-buckets
    fine-tuned from that (SDXL §2.3) and lab-sdxl-refiner."""
    runs = tmp_path_factory.mktemp("sdxl_tricks")
    train("lab-shapes-autoencoder", runs / "first_stage")
    train("lab-sdxl-size", runs / "lab-sdxl-size", runs / "first_stage")
    train("lab-sdxl-buckets", runs / "lab-sdxl-buckets", init_from=runs / "lab-sdxl-size")
    train("lab-sdxl-refiner", runs / "lab-sdxl-refiner", runs / "first_stage")
    return runs


@pytest.mark.parametrize("name", ["lab-sdxl-size", "lab-sdxl-buckets", "lab-sdxl-refiner"])
def test_the_size_bucket_and_refiner_targets_train_with_one_command(name, tiny_runs):
    run = load_run(tiny_runs / name, ema=False)
    assert run.step == 1 and run.model.config == get_target(name).model


def test_every_sdxl_experiment_is_scored_into_one_table(tiny_runs, tmp_path, monkeypatch):
    size, buckets = tiny_runs / "lab-sdxl-size", tiny_runs / "lab-sdxl-buckets"
    models = {name: size for name in SIZE_ARMS + CROP_ARMS} | {name: buckets for name in BUCKET_ARMS}
    quick = SamplingSettings(steps=2, guidance_scale=5.0, seed=0)
    rows = size_scores(6, models, quick, num_resamples=10, table_folder=tmp_path)
    assert list(rows["model"]) == ["real (train split)", *SIZE_ARMS]
    eight = dataclasses.replace(quick, steps=8)   # trailing spacing: the last of 8 steps lies below timestep 200
    refined = refiner_scores(6, {"lab-sdxl-size": size, "lab-sdxl-refiner": tiny_runs / "lab-sdxl-refiner"}, eight,
                             num_resamples=10, table_folder=tmp_path)
    assert list(refined["model"])[1:] == ["base alone", "base + refiner (hand-off)", "base + SDEdit refine"]
    # one-step models draw no objects to measure: the rendered stand-in does, each batch of prompts its own draw
    monkeypatch.setattr(sdxl_scores, "shapes_draw", lambda model, prompts, settings: rendered_draw(1.0))
    geometry_scores(BATCH + 1, models, quick, num_resamples=10, table_folder=tmp_path)
    table = read_sdxl_table(tmp_path)
    assert table.groupby("experiment").size().to_dict() == {"size": 4, "refiner": 4, "crop": 2 * 3, "buckets": 3 * 5}
    scored = table[table["experiment"].isin(["size", "refiner"])]
    for metric in ("kid", "fid", "clip_score", "detail"):
        low, high = scored[f"{metric}_ci_low"], scored[f"{metric}_ci_high"]
        assert (low <= scored[metric]).all() and (scored[metric] <= high).all()
    # the same noise for the base alone and the hand-off: only the refiner's step differs
    assert not refined.iloc[1][["kid", "detail"]].equals(refined.iloc[2][["kid", "detail"]])
    assert set(table.loc[table["experiment"] == "buckets", "case"]) == set(bucket_cases())
    # verdicts by the one rule: the stand-in draws the same objects everywhere, so no crop differs from another
    crop = table[table["experiment"] == "crop"]
    same = geometry_verdict(crop, ("lab-sdxl-size", "crop (0, 0)"), ("lab-sdxl-size", "crop (0, 16)"),
                            "cut_off_fraction")
    assert same.metric == "cut_off_fraction" and same.holds is None
    assert "lab-sdxl-size @ crop (0, 16)" in same.evidence
    with pytest.raises(ValueError, match="cut_off_fraction or abs_log2_stretch"):
        geometry_verdict(crop, ("lab-sdxl-size", "crop (0, 0)"), ("lab-sdxl-size", "crop (0, 16)"), "stretch")
    size_verdicts = experiment_verdicts(table, "size", "lab-sdxl-size", "lab-sdxl-no-size")
    assert [v.metric for v in size_verdicts] == ["kid", "fid", "clip_score", "detail"]
    with pytest.raises(ValueError, match="sdxl-tricks"):
        experiment_verdicts(table.iloc[:0], "size", "a", "b")


def test_sdxl_tricks_command_says_how_to_name_a_run(capsys):
    assert main(["sdxl-tricks", "size", "--model", "build/runs/lab-sdxl-size"]) != 0
    assert "--model takes NAME=RUN_DIR" in capsys.readouterr().err
    assert main(["sdxl-tricks", "sizes"]) != 0
    assert "unknown experiment sizes: choose from size, refiner, geometry" in capsys.readouterr().err


# ----------------------------------------------------------------------------- notebook 06's measurements
def rendered_draw(stretch: float):
    """A stand-in model: each case draws a red circle and a blue square, stretched horizontally by ``stretch``."""
    flat = Scene((Shape("circle", "red", "large", (0.5, 0.3), 0.2, 0.0),
                  Shape("square", "blue", "large", (0.5, 0.72), 0.15, 0.5)), ((120, 120, 120), (130, 130, 130)), 0.0)

    def draw(size=(64, 64), original_size=None, crop_top_left=None):
        image = Image.fromarray(render(flat, (size[0], round(size[1] / stretch))).image)
        pixels = torch.from_numpy(np.array(image.resize((size[1], size[0]), Image.Resampling.BICUBIC)))
        return (pixels.permute(2, 0, 1).float() / 127.5 - 1)[None].repeat(3, 1, 1, 1)

    return draw


def test_geometry_table_has_a_row_per_model_and_case_with_intervals():
    table = geometry_table({"undistorted": rendered_draw(1.0), "stretched": rendered_draw(1.5)},
                           bucket_cases(((64, 64), (48, 80))), num_resamples=20)
    assert list(table["model"]) == ["undistorted"] * 2 + ["stretched"] * 2
    assert list(table["case"]) == ["64x64", "48x80"] * 2
    stretch = table.set_index(["model", "case"])["log2_stretch"]
    assert abs(stretch["undistorted", "48x80"]) < 0.05
    assert stretch["stretched", "48x80"] == pytest.approx(np.log2(1.5), abs=0.1)
    assert (table["cut_off_fraction_ci_low"] <= table["cut_off_fraction"]).all()


def test_shapes_draw_passes_size_and_micro_conditions_to_the_model(base_and_refiner, monkeypatch):
    base, _ = base_and_refiner
    prompts = geometry_prompts(2, seed=1)
    assert all(p.split()[-1] in ("circle", "square") for p in prompts)
    seen, condition = [], base.condition
    monkeypatch.setattr(base, "condition", lambda batch, *args, **kwargs: seen.append(batch) or
                        condition(batch, *args, **kwargs))
    draw = shapes_draw(base, prompts, SamplingSettings(steps=2, seed=0))
    wide = draw(size=(48, 80), crop_top_left=(0, 16))
    assert wide.shape == (2, 3, 48, 80) and torch.equal(wide, draw(size=(48, 80), crop_top_left=(0, 16)))
    batch = seen[0]
    assert batch["caption"] == prompts and batch["crop_top_left"].tolist() == [[0, 16]] * 2
    assert batch["target_size"].tolist() == batch["original_size"].tolist() == [[48, 80]] * 2  # SDXL's defaults
    assert crop_cases([(0, 16)]) == {"crop (0, 16)": {"crop_top_left": (0, 16)}}


def test_the_refiners_sample_grid_refines_noised_validation_images(base_and_refiner):
    _, refiner = base_and_refiner
    task = LowNoiseTask(sample_num=2, guidance_scale=2.0)
    calls = []
    unet = refiner.unet.forward
    refiner.unet.forward = lambda x, t, **kw: calls.append(float(t[0])) or unet(x, t, **kw)
    try:
        grid = task.sample(refiner)
    finally:
        del refiner.unet.forward
    assert grid.shape == (2, 3, 64, 64) and torch.isfinite(grid).all()
    assert calls and max(calls) < 200  # only the levels it was trained on, twice each for guidance


def test_the_original_size_sweep_draws_the_same_noise_at_every_size(tiny_runs):
    model = load_run(tiny_runs / "lab-sdxl-size").model
    images, latents, drawn = original_size_sweep(model, ["a large red circle"] * 3, (16, 64),
                                                 SamplingSettings(steps=2, seed=0), num_resamples=10)
    assert list(images["original_size"]) == list(latents["original_size"]) == [16, 64] and set(drawn) == {16, 64}
    assert drawn[16].shape == (3, 3, 64, 64) and images["difference"].iloc[0] == 0  # paired with itself
    again, _, redrawn = original_size_sweep(model, ["a large red circle"] * 3, (16,), SamplingSettings(steps=2, seed=0))
    assert torch.equal(redrawn[16], drawn[16]) and again["sharpness"].iloc[0] == images["sharpness"].iloc[0]
    # a one-step model barely reads the condition, but the two sizes must not draw from different noise
    assert (drawn[64] - drawn[16]).abs().mean() < (drawn[16] - drawn[16].roll(1, 0)).abs().mean()
