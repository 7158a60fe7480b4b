"""Shipping: the plan (first stages first), the training subprocesses, run -> shipped file -> model, and the
manifest machinery the evaluation models share."""

import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ldm_lab import checkpoints as manifest
from ldm_lab.checkpoints import CheckpointError, entry_fields, read_manifest
from ldm_lab.data import fashion_mnist
from ldm_lab.nn.autoencoder import Autoencoder
from ldm_lab.paths import DATA_ENV, checkpoints_dir
from ldm_lab.shipping import ShipConfig, load_shipped, load_trained, plan_phases, ship, with_dependencies
from ldm_lab.shipping import jobs as jobs_module
from ldm_lab.shipping.export import export_run, shipped_file
from ldm_lab.shipping.jobs import TrainJob, run_jobs, train_argv
from ldm_lab.shipping.plan import NOT_SHIPPED, run_time_limit_s, shipped_targets
from ldm_lab.shipping.ship import missing_input
from ldm_lab.tasks import TARGETS, get_target, load_run, read_run_record, run_config, train_target
from ldm_lab.training import latest_checkpoint
from ldm_lab.training.checkpoint import read_trainer_state

needs_fmnist = pytest.mark.skipif(not fashion_mnist.is_available(), reason="needs Fashion-MNIST (ldm-lab data fetch)")
AE, LDM = "lab-fmnist-autoencoder", "lab-fmnist"   # the smallest latent pair: 32x32 grey, no perceptual loss


# ------------------------------------------------------------------------------------------------------ plan
def test_first_stages_train_first_and_are_added_unless_shipped():
    assert with_dependencies(["lab-fmnist", "lab-pixel"], shipped=set()) == ["lab-fmnist-autoencoder", "lab-fmnist",
                                                                           "lab-pixel"]
    assert with_dependencies(["lab-fmnist"], shipped={"lab-fmnist-autoencoder"}) == ["lab-fmnist"]
    assert plan_phases(["lab-fmnist", "lab-pixel", "lab-fmnist-autoencoder"]) == [["lab-fmnist-autoencoder"],
                                                                                 ["lab-fmnist", "lab-pixel"]]
    # The Shapes models share their own first stage, not lab-emoji's: it is added once, before them.
    assert with_dependencies(["lab-layout", "lab-seg"], shipped=set()) == ["lab-shapes-autoencoder", "lab-layout",
                                                                         "lab-seg"]
    assert plan_phases(with_dependencies(["lab-fmnist", "lab-layout"], shipped=set())) == [
        ["lab-fmnist-autoencoder", "lab-shapes-autoencoder"], ["lab-fmnist", "lab-layout"]]


def test_a_target_trains_after_the_models_it_learns_from_which_are_added_unless_shipped():
    assert with_dependencies(["lab-emoji-distilled"], shipped=set()) == [
        "lab-autoencoder-symmetric", "lab-autoencoder", "lab-emoji-large", "lab-emoji-distilled"]
    assert with_dependencies(["lab-emoji"], shipped={"lab-autoencoder"}) == [
        "lab-emoji-large", "lab-emoji-distilled", "lab-emoji"]
    assert with_dependencies(["lab-emoji"], shipped={"lab-autoencoder", "lab-emoji-large"}) == [
        "lab-emoji-distilled", "lab-emoji"]
    # lab-emoji's first stage is itself a decoder trained behind another first stage's encoder
    assert plan_phases(with_dependencies(["lab-emoji", "lab-layout"], shipped=set())) == [
        ["lab-autoencoder-symmetric", "lab-shapes-autoencoder"], ["lab-autoencoder", "lab-layout"],
        ["lab-emoji-large"], ["lab-emoji-distilled"], ["lab-emoji"]]


def test_a_target_without_its_first_stage_teacher_or_starting_model_is_skipped_with_the_reason(tmp_path):
    assert missing_input("lab-emoji-distilled", tmp_path, tmp_path) == \
        "its first stage lab-autoencoder was not shipped"
    assert missing_input("lab-emoji-distilled", tmp_path, checkpoints_dir()) == \
        "its teacher lab-emoji-large was neither trained nor shipped"
    assert missing_input("lab-emoji", tmp_path, checkpoints_dir()) == \
        "its starting point lab-emoji-distilled was neither trained nor shipped"
    assert missing_input("lab-emoji-large", tmp_path, checkpoints_dir()) is None
    argv = train_argv("lab-emoji-distilled", tmp_path / "run", steps=5, time_limit_s=60, device=None,
                      first_stage=None, teacher=tmp_path / "teacher")
    assert argv[-2:] == ("--teacher", str(tmp_path / "teacher"))
    argv = train_argv("lab-emoji", tmp_path / "run", steps=5, time_limit_s=60, device=None, first_stage=None,
                      init_from=tmp_path / "distilled")
    assert argv[-2:] == ("--init-from", str(tmp_path / "distilled"))


def test_all_means_every_target_but_those_kept_out_of_the_repository():
    assert set(shipped_targets()) == set(TARGETS) - NOT_SHIPPED and "lab-emoji" in shipped_targets()
    assert "lab-emoji-large" not in shipped_targets()  # lab-emoji's teacher: 31 MiB
    assert "lab-emoji-distilled" not in shipped_targets()  # lab-emoji is fine-tuned from it and ships instead


def test_a_phase_time_limit_counts_waves_start_up_and_exports():
    config = ShipConfig(jobs=4, startup_s=20, export_s=5)
    # 6 runs on 4 slots: two waves; 200 s less 6 exports = 170 s, 85 s a wave, 65 s of training.
    assert run_time_limit_s(200, 6, config) == pytest.approx(65)
    assert run_time_limit_s(200, 4, config) == pytest.approx(160)
    assert run_time_limit_s(10, 4, config) == 5.0  # never nothing


# ------------------------------------------------------------------------------------------------------ jobs
def python_job(name: str, code: str, tmp_path: Path, timeout_s: float = 60) -> TrainJob:
    return TrainJob(name, (sys.executable, "-c", code), tmp_path / name, tmp_path / f"{name}.log", timeout_s)


def test_a_failing_or_hanging_job_stops_only_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs_module, "STOP_GRACE_S", 5)
    jobs = [python_job("fails", "raise SystemExit(3)", tmp_path), python_job("works", "print('trained')", tmp_path),
            python_job("hangs", "import time; time.sleep(60)", tmp_path, timeout_s=1)]
    lines = []
    results = run_jobs(jobs, concurrency=3, env={}, report=lines.append, heartbeat_s=0.5)
    assert [(r.name, r.returncode) for r in results] == [("fails", 3), ("works", 0), ("hangs", -15)]
    assert "trained" in (tmp_path / "works.log").read_text()
    assert any("fails: FAILED (exit 3" in line for line in lines)


# ------------------------------------------------------------------------------------ run -> file -> model
def tiny(name: str, steps: int = 1):
    return replace(run_config(get_target(name), steps=steps, batch_size=2, device="cpu"), checkpoint_every=1,
                   keep_checkpoints=5, sample_every=0)


@pytest.fixture(scope="module")
def shipped_pair(tmp_path_factory):
    """lab-fmnist-autoencoder and lab-fmnist (trained on the shipped first stage), shipped into a folder."""
    if not fashion_mnist.is_available():
        pytest.skip("needs Fashion-MNIST")
    root = tmp_path_factory.mktemp("ship")
    folder = root / "checkpoints"
    folder.mkdir()
    train_target(AE, root / "ae", tiny(AE))
    export_run(root / "ae", f"ldm-lab ship {AE}", "cpu (test)", folder)
    train_target(LDM, root / "ldm", tiny(LDM, steps=2), first_stage=folder / shipped_file(AE), loader=load_trained)
    export_run(root / "ldm", f"ldm-lab ship {LDM}", "cpu (test)", folder)
    return root, folder


def test_a_shipped_autoencoder_is_its_runs_ema_autoencoder_in_fp16_without_discriminator(shipped_pair):
    root, folder = shipped_pair
    stored = load_file(folder / shipped_file(AE))
    assert stored and all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    assert not any(key.startswith("discriminator") for key in stored)
    model = load_shipped(AE, "cpu", folder)
    assert isinstance(model, Autoencoder) and not model.training
    expected = load_run(root / "ae").model.autoencoder.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key].half().float(), msg=key)


def test_a_latent_model_ships_without_its_first_stage_and_loads_it_from_the_first_stages_file(shipped_pair):
    root, folder = shipped_pair
    entry = read_manifest(folder)[LDM]
    assert (entry.target, entry.first_stage, entry.steps) == (LDM, AE, 2)
    assert entry.first_stage_sha256 == read_manifest(folder)[AE].sha256
    assert not any(key.startswith("first_stage.") for key in load_file(folder / entry.file))
    model, run = load_shipped(LDM, "cpu", folder), load_run(root / "ldm")
    first_stage = load_shipped(AE, "cpu", folder)
    for key, value in model.first_stage.state_dict().items():
        torch.testing.assert_close(value, first_stage.state_dict()[key], msg=key)
    x, t = torch.randn(2, *model.latent_shape), torch.tensor([10, 500])
    cond = model.condition({"label": torch.tensor([1, 7])}, 2)
    torch.testing.assert_close(model(x, t, **cond), run.model(x, t, **cond), atol=2e-2, rtol=2e-2)


def test_the_manifest_entry_says_how_the_model_came_to_be(shipped_pair):
    _, folder = shipped_pair
    entry = read_manifest(folder)[LDM]
    assert entry.command == f"ldm-lab ship {LDM}" and entry.device == "cpu (test)"
    assert set(entry.metrics) == {"train_loss_final", "val_loss"}
    assert entry.config["model"]["preset"] == LDM and entry.config["train"]["steps"] == 2
    assert "fashion_mnist train" in entry.data and entry.training_seconds > 0
    assert set(read_manifest(folder)[AE].metrics) == {"train_loss_final", "val_psnr", "val_ssim"}


def test_a_changed_or_missing_file_says_how_to_ship_it_again(shipped_pair, tmp_path):
    _, folder = shipped_pair
    copy = tmp_path / "checkpoints"
    copy.mkdir()
    for path in folder.iterdir():
        copy.joinpath(path.name).write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError, match="ldm-lab ship lab-emoji"):
        load_shipped("lab-emoji", "cpu", copy)
    with open(copy / shipped_file(LDM), "r+b") as file:
        file.seek(-4, 2)
        file.write(b"\0\0\0\0")
    with pytest.raises(CheckpointError, match=f"checksum mismatch.*ldm-lab ship {LDM}"):
        load_shipped(LDM, "cpu", copy)


def test_a_reshipped_first_stage_is_refused_by_the_models_trained_on_the_old_one(shipped_pair, tmp_path):
    _, folder = shipped_pair
    data = json.loads((folder / "manifest.json").read_text())
    data[LDM]["first_stage_sha256"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    for name in (shipped_file(AE), shipped_file(LDM)):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(CheckpointError, match=f"Ship both again: `ldm-lab ship {AE} {LDM}`"):
        load_shipped(LDM, "cpu", tmp_path)


def test_shipped_names_work_where_run_directories_do(shipped_pair, monkeypatch):
    root, folder = shipped_pair
    monkeypatch.setattr(manifest, "checkpoints_dir", lambda: folder)
    monkeypatch.setattr("ldm_lab.shipping.load.checkpoints_dir", lambda: folder)
    run = load_trained(AE)
    assert run.target.name == AE and run.ema and run.step == 1
    assert run.model.autoencoder.config == get_target(AE).autoencoder
    assert load_trained(folder / shipped_file(AE)).model.autoencoder.config == run.model.autoencoder.config
    assert load_trained(root / "ae").run_dir == root / "ae"
    with pytest.raises(FileNotFoundError, match="load_trained"):  # the tasks layer knows run directories only
        load_run(AE)


# ------------------------------------------------------------------------------------------------- manifest
def test_the_evaluation_models_entries_are_written_back_unchanged():
    path = manifest.checkpoints_dir() / manifest.MANIFEST_FILE
    if not path.is_file():
        pytest.skip("no manifest")
    on_disk = json.loads(path.read_text())
    for name in ("fmnist-classifier", "lab-clip"):
        if name in on_disk:
            assert entry_fields(read_manifest()[name]) == on_disk[name]


# ------------------------------------------------------------------------------------------------ the command
@needs_fmnist
def test_ship_trains_in_a_subprocess_and_ships_with_a_summary(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "cache"))  # no materialised copies: the run reads the IDX files
    lines = []
    config = ShipConfig(device="cpu", profile="smoke", steps=1, jobs=1, budget_s=60, materialise=False,
                        checkpoints=tmp_path / "checkpoints", runs=tmp_path / "runs")
    config.checkpoints.mkdir()
    rows = ship([AE], config, report=lines.append)
    assert [(row.name, row.status, row.steps) for row in rows] == [(AE, "shipped", 1)]
    assert load_shipped(AE, "cpu", config.checkpoints).config == get_target(AE).autoencoder
    assert (config.runs / f"{AE}.log").is_file() and (config.runs / "ship_summary.json").is_file()
    assert any(line.startswith("target") and "held-out" in line for line in "\n".join(lines).splitlines())


def test_fine_tuning_a_shipped_model_trains_on_its_first_stage_and_ships_with_its_lineage(shipped_pair, tmp_path,
                                                                                            capsys):
    root, shared = shipped_pair
    folder = tmp_path / "checkpoints"  # a copy: the fine-tuned model is shipped over its source
    shutil.copytree(shared, folder)
    source = read_manifest(folder)[LDM]
    run_dir = tmp_path / "fine-tuned"
    train_target(LDM, run_dir, tiny(LDM), init_from=folder / shipped_file(LDM), loader=load_trained)
    assert read_run_record(run_dir)["first_stage"] == str(folder / shipped_file(AE))
    assert f"was trained on the first stage {folder / shipped_file(AE)}" in capsys.readouterr().out
    own_seconds = read_trainer_state(latest_checkpoint(run_dir))[1]["elapsed_s"]
    entry = export_run(run_dir, f"ldm-lab train {LDM} --init-from {LDM}", "cpu (test)", folder)
    assert entry.steps == 1 + source.steps == 3
    assert entry.training_seconds == pytest.approx(own_seconds + source.training_seconds, abs=0.1)
    assert entry.fine_tuned_from == f"{LDM} (shipped: 2 steps, {source.training_seconds:,.0f} s)"
    assert read_manifest(folder)[LDM] == entry
    # Shipped again, it is not counted twice: the run recorded its source when it started.
    assert export_run(run_dir, "again", "cpu (test)", folder).training_seconds == entry.training_seconds
