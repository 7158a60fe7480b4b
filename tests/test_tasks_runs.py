"""Run directories: a latent run starts from a first-stage run, and its latent scale survives resume."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from torch.utils.data import Subset

from ldm_lab.tasks import get_target, load_run, read_run_record, run_config, train_target
from ldm_lab.tasks import runs as runs_module
from ldm_lab.tasks.runs import run_lineage
from ldm_lab.training import latest_checkpoint, list_checkpoints, load_weights
from ldm_lab.training.checkpoint import read_trainer_state

TRAIN_ITEMS = 8  # items each run trains on: lab-emoji and lab-shapes encode their whole training set at start


@pytest.fixture(scope="module", autouse=True)
def few_training_items():
    """Runs of a few steps see only the first items (a cached-latents target encodes all it is given)."""
    training_dataset = runs_module.training_dataset
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runs_module, "training_dataset",
                      lambda *args, **kwargs: Subset(training_dataset(*args, **kwargs), range(TRAIN_ITEMS)))
        yield


def tiny_config(name: str, steps: int):
    return replace(run_config(get_target(name), steps=steps, batch_size=2, device="cpu"), checkpoint_every=1,
                   keep_checkpoints=5, sample_every=0)


@pytest.fixture(scope="module")
def symmetric_run(tmp_path_factory):
    """A run of the first stage trained from scratch, whose encoder lab-autoencoder keeps."""
    run_dir = tmp_path_factory.mktemp("runs") / "ae-symmetric"
    train_target("lab-autoencoder-symmetric", run_dir, tiny_config("lab-autoencoder-symmetric", 1))
    return run_dir


@pytest.fixture(scope="module")
def first_stage_run(symmetric_run, tmp_path_factory):
    """lab-emoji's first stage: a wider decoder trained behind the symmetric run's frozen encoder."""
    run_dir = tmp_path_factory.mktemp("runs") / "ae"
    train_target("lab-autoencoder", run_dir, tiny_config("lab-autoencoder", 1), init_from=symmetric_run)
    return run_dir


def test_latent_scale_is_measured_once_and_survives_resume(first_stage_run, tmp_path):
    run_dir = tmp_path / "emoji"
    train_target("lab-emoji-large", run_dir, tiny_config("lab-emoji-large", 1), first_stage=first_stage_run)
    first = load_run(run_dir).model.latent_scale.item()
    assert 0 < first < float("inf")
    train_target("lab-emoji-large", run_dir, tiny_config("lab-emoji-large", 2), resume=True)
    steps = [step for step, _ in list_checkpoints(run_dir)]
    assert steps == [1, 2]
    # Step 2 trained on another batch: a scale re-measured after resuming would differ from the first.
    assert load_run(run_dir).model.latent_scale.item() == first
    assert read_run_record(run_dir) == {"target": "lab-emoji-large", "first_stage": str(first_stage_run),
                                        "init_from": None, "lineage": None, "freeze_encoder": False, "teacher": None}


def test_the_first_stage_weights_are_copied_into_the_latent_run(first_stage_run, tmp_path):
    run_dir = tmp_path / "emoji"
    train_target("lab-emoji-large", run_dir, tiny_config("lab-emoji-large", 1), first_stage=first_stage_run)
    autoencoder = load_run(first_stage_run).model.autoencoder
    latent = get_target("lab-emoji-large").build_model()
    load_weights(latent, run_dir)  # raw weights: the first stage is frozen, so EMA and raw agree
    for (name, theirs), ours in zip(autoencoder.state_dict().items(), latent.first_stage.state_dict().values()):
        torch.testing.assert_close(ours, theirs, msg=name)


def test_a_latent_target_without_a_first_stage_says_how_to_get_one(tmp_path):
    with pytest.raises(ValueError, match="ldm-lab train lab-autoencoder --out runs/lab-autoencoder"):
        train_target("lab-emoji-large", tmp_path / "emoji", tiny_config("lab-emoji-large", 1))


def test_a_pixel_target_refuses_a_first_stage(first_stage_run, tmp_path):
    with pytest.raises(ValueError, match=r"pixel space\); drop --first-stage"):
        train_target("lab-class", tmp_path / "class", tiny_config("lab-class", 1), first_stage=first_stage_run)


def test_training_into_an_existing_run_needs_resume(first_stage_run):
    with pytest.raises(FileExistsError, match="pass --resume"):
        train_target("lab-autoencoder", first_stage_run, tiny_config("lab-autoencoder", 1))


def test_shapes_target_trains_on_captioned_scenes_with_the_emoji_first_stage(first_stage_run, tmp_path):
    run_dir = tmp_path / "shapes"
    train_target("lab-shapes", run_dir, tiny_config("lab-shapes", 1), first_stage=first_stage_run)
    run = load_run(run_dir)
    assert run.target.dataset == "shapes" and run.model.condition_keys == ("caption",)


def assert_same_encoder(before, after) -> None:
    for part in ("encoder", "quant_conv"):
        for (name, old), new in zip(getattr(before.autoencoder, part).state_dict().items(),
                                    getattr(after.autoencoder, part).state_dict().values()):
            assert torch.equal(old, new), f"{part}.{name} changed"


def test_init_from_with_a_frozen_encoder_fine_tunes_the_decoder_only(symmetric_run, tmp_path):
    """SD's ft-MSE/ft-EMA decoders: start from a trained first stage, keep its encoder (the latent space)."""
    run_dir = tmp_path / "decoder"
    train_target("lab-autoencoder-symmetric", run_dir, tiny_config("lab-autoencoder-symmetric", 2),
                 init_from=symmetric_run, freeze_encoder=True)
    before, after = load_run(symmetric_run, ema=False).model, load_run(run_dir, ema=False).model
    assert_same_encoder(before, after)
    assert any(not torch.equal(old, new) for old, new in zip(before.autoencoder.decoder.state_dict().values(),
                                                             after.autoencoder.decoder.state_dict().values()))
    assert read_run_record(run_dir)["freeze_encoder"] is True
    # a resume freezes again (run.json remembers it): the encoder still does not move
    train_target("lab-autoencoder-symmetric", run_dir, tiny_config("lab-autoencoder-symmetric", 3), resume=True)
    assert_same_encoder(before, load_run(run_dir, ema=False).model)


def test_a_wider_decoder_trains_behind_the_encoder_of_the_first_stage_it_starts_from(symmetric_run, first_stage_run,
                                                                                      tmp_path):
    """lab-autoencoder (Asymmetric VQGAN): the symmetric run's encoder, frozen, and a decoder of its own widths."""
    source, run = load_run(symmetric_run, ema=False).model, load_run(first_stage_run, ema=False).model
    assert_same_encoder(source, run)
    assert run.autoencoder.decoder.conv_out.in_channels == 2 * source.autoencoder.decoder.conv_out.in_channels
    assert read_run_record(first_stage_run)["freeze_encoder"] is True   # the target's, without --freeze-encoder
    train_target("lab-autoencoder", first_stage_run, tiny_config("lab-autoencoder", 2), resume=True)
    assert_same_encoder(source, load_run(first_stage_run, ema=False).model)
    with pytest.raises(ValueError, match="fine-tuned from a trained lab-autoencoder-symmetric.*--init-from"):
        train_target("lab-autoencoder", tmp_path / "fresh", tiny_config("lab-autoencoder", 1))


def test_init_from_refuses_a_run_of_another_target_and_freezing_a_diffusion_model(first_stage_run, tmp_path):
    with pytest.raises(ValueError, match="--init-from takes a run of the target being trained"):
        train_target("lab-kl-f4", tmp_path / "other", tiny_config("lab-kl-f4", 1), init_from=first_stage_run)
    with pytest.raises(ValueError, match="--freeze-encoder fine-tunes a first stage's decoder"):
        train_target("lab-emoji-large", tmp_path / "frozen", tiny_config("lab-emoji-large", 1),
                     first_stage=first_stage_run, freeze_encoder=True)


def test_fine_tuning_a_latent_run_keeps_the_first_stage_its_source_trained_on(first_stage_run, tmp_path, capsys):
    source, run_dir = tmp_path / "emoji", tmp_path / "fine-tuned"
    train_target("lab-emoji-large", source, tiny_config("lab-emoji-large", 1), first_stage=first_stage_run)
    train_target("lab-emoji-large", run_dir, tiny_config("lab-emoji-large", 1), init_from=source)  # no --first-stage
    assert read_run_record(run_dir)["first_stage"] == str(first_stage_run)
    assert f"was trained on the first stage {first_stage_run}" in capsys.readouterr().out
    expected = load_run(first_stage_run).model.autoencoder.state_dict()
    for name, value in load_run(run_dir, ema=False).model.first_stage.state_dict().items():
        torch.testing.assert_close(value, expected[name], msg=name)


def test_a_fine_tuning_run_records_the_training_behind_its_start_and_a_chain_adds_up(symmetric_run, tmp_path):
    start, first, second = symmetric_run, tmp_path / "first", tmp_path / "second"
    train_target("lab-autoencoder-symmetric", first, tiny_config("lab-autoencoder-symmetric", 2),
                 init_from=start)
    train_target("lab-autoencoder-symmetric", second, tiny_config("lab-autoencoder-symmetric", 3), init_from=first)
    seconds = {run: read_trainer_state(latest_checkpoint(run))[1]["elapsed_s"] for run in (start, first)}
    lineage = run_lineage(second)
    assert (lineage.source, lineage.steps) == (str(first), 1 + 2)
    assert lineage.training_seconds == pytest.approx(seconds[start] + seconds[first])
    assert lineage.description.startswith(f"lab-autoencoder-symmetric (run {first.name}: 2 steps") and \
        f"itself fine-tuned from lab-autoencoder-symmetric (run {start.name}: 1 steps" in lineage.description
    assert str(tmp_path) not in lineage.description   # no machine paths in a manifest
    assert run_lineage(start) is None
    # A run started before runs recorded their lineage: measured from its init_from when asked.
    record = json.loads((second / "run.json").read_text())
    del record["lineage"]
    (second / "run.json").write_text(json.dumps(record))
    assert run_lineage(second) == lineage


def one_step_run(tmp_path_factory, target: str, folder: str, **start) -> Path:
    """A fresh run of ``target`` trained for one step (``start``: first_stage, teacher, init_from)."""
    run_dir = tmp_path_factory.mktemp("runs") / folder
    train_target(target, run_dir, tiny_config(target, 1), **start)
    return run_dir


@pytest.fixture(scope="module")
def teacher_run(first_stage_run, tmp_path_factory):
    return one_step_run(tmp_path_factory, "lab-emoji-large", "teacher", first_stage=first_stage_run)


def test_a_distilled_run_starts_from_its_teacher_cut_to_its_widths_and_resumes_with_it(teacher_run, tmp_path):
    run_dir = tmp_path / "student"
    train_target("lab-emoji-distilled", run_dir, tiny_config("lab-emoji-distilled", 1), teacher=teacher_run)
    record = read_run_record(run_dir)
    assert record["teacher"] == str(teacher_run) and record["first_stage"] == str(first_stage_of(teacher_run))
    assert record["lineage"]["source"] == str(teacher_run)
    # The widths the student shares with the teacher (level 0: 64 channels) start as the teacher's; one Adam step
    # at warm-up's lr (2e-4 / 200) moves each weight by about 1e-6.
    teacher, student = load_run(teacher_run, ema=False).model, load_run(run_dir, ema=False).model
    torch.testing.assert_close(student.unet.conv_in.weight, teacher.unet.conv_in.weight, atol=1e-5, rtol=0)
    assert not torch.allclose(student.unet.conv_in.weight, teacher.unet.conv_in.weight, atol=1e-9, rtol=0)
    # resumed with the recorded teacher again
    train_target("lab-emoji-distilled", run_dir, tiny_config("lab-emoji-distilled", 2), resume=True)
    assert [step for step, _ in list_checkpoints(run_dir)] == [1, 2]


def test_a_student_fine_tuned_from_a_source_keeps_its_weights_and_still_learns_from_the_teacher(teacher_run,
                                                                                              tmp_path, capsys):
    source, run_dir = tmp_path / "student", tmp_path / "again"
    train_target("lab-emoji-distilled", source, tiny_config("lab-emoji-distilled", 1), teacher=teacher_run)
    assert "tensors cut to its widths" in capsys.readouterr().out
    train_target("lab-emoji-distilled", run_dir, tiny_config("lab-emoji-distilled", 1), teacher=teacher_run,
                 init_from=source)
    assert "tensors cut to its widths" not in capsys.readouterr().out    # the source's weights, not the teacher's
    record = read_run_record(run_dir)
    source_target = read_run_record(source)["target"]
    assert record["teacher"] == str(teacher_run)
    assert record["lineage"]["description"].startswith(f"{source_target} (run {source.name}:")


def first_stage_of(run_dir):
    return read_run_record(run_dir)["first_stage"]


def test_a_distilled_target_without_a_trained_teacher_says_how_to_train_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="ldm-lab train lab-emoji-large --out runs/lab-emoji-large"):
        train_target("lab-emoji-distilled", tmp_path / "student", tiny_config("lab-emoji-distilled", 1))


def test_a_teacher_of_another_target_and_a_teacher_for_an_undistilled_target_are_refused(first_stage_run,
                                                                                         teacher_run, tmp_path):
    with pytest.raises(ValueError, match="is distilled from lab-emoji-large"):
        train_target("lab-emoji-distilled", tmp_path / "a", tiny_config("lab-emoji-distilled", 1),
                     teacher=first_stage_run)
    with pytest.raises(ValueError, match="not distilled from a teacher; drop --teacher"):
        train_target("lab-emoji-large", tmp_path / "b", tiny_config("lab-emoji-large", 1),
                     first_stage=first_stage_run, teacher=teacher_run)


@pytest.fixture(scope="module")
def distilled_run(teacher_run, tmp_path_factory):
    return one_step_run(tmp_path_factory, "lab-emoji-distilled", "distilled", teacher=teacher_run)


def test_a_fine_tuned_target_starts_from_a_run_of_its_source_target_and_records_it(distilled_run, tmp_path):
    run_dir = tmp_path / "objects"
    train_target("lab-emoji", run_dir, tiny_config("lab-emoji", 1), init_from=distilled_run)
    record = read_run_record(run_dir)
    assert record["init_from"] == str(distilled_run) and record["teacher"] is None
    assert record["first_stage"] == first_stage_of(distilled_run)
    lineage = record["lineage"]   # the distilled run's step and its teacher's
    assert lineage["steps"] == 2
    assert lineage["description"].startswith(f"lab-emoji-distilled (run {distilled_run.name}:")
    assert "distilled from" in lineage["description"]
    # Started from the source's weights: one Adam step at warm-up's lr moves each weight by about 1e-6.
    source, tuned = load_run(distilled_run, ema=False).model, load_run(run_dir, ema=False).model
    torch.testing.assert_close(tuned.unet.conv_in.weight, source.unet.conv_in.weight, atol=1e-5, rtol=0)


def test_a_fine_tuned_target_without_its_source_or_from_another_target_says_what_to_pass(first_stage_run,
                                                                                         teacher_run, tmp_path):
    with pytest.raises(ValueError, match="fine-tuned from a trained lab-emoji-distilled.*--init-from "
                                         "runs/lab-emoji-distilled"):
        train_target("lab-emoji", tmp_path / "a", tiny_config("lab-emoji", 1), first_stage=first_stage_run)
    with pytest.raises(ValueError, match="trained lab-emoji-large, not lab-emoji or lab-emoji-distilled"):
        train_target("lab-emoji", tmp_path / "b", tiny_config("lab-emoji", 1), init_from=teacher_run)
