"""Frozen pretrained parts (lab-clip's text tower) are neither trained from random weights nor shipped twice."""

import torch

from ldm_lab.checkpoints import load_checkpoint
from ldm_lab.shipping.load import inference_weights
from ldm_lab.tasks.targets import get_target


def test_shipped_text_models_leave_out_the_frozen_text_tower_and_the_first_stage():
    target = get_target("lab-emoji")
    weights = inference_weights(target, target.build_model())
    assert any(key.startswith("unet.") for key in weights)
    assert not any(key.startswith(("conditioner.embedders.text.", "first_stage.")) for key in weights)


def test_a_fresh_run_starts_from_lab_clips_text_tower(tmp_path):
    from ldm_lab.tasks.runs import RunStart, _start

    target = get_target("lab-sdxl")
    model = target.build_model()
    first_stage = get_target(target.first_stage)
    first_stage_dir = tmp_path / "first"
    from ldm_lab.tasks.runs import train_target
    from ldm_lab.training import TrainConfig

    train_target(first_stage.name, first_stage_dir, TrainConfig(steps=1, batch_size=2, checkpoint_every=1,
                                                                 sample_every=0, device="cpu"))
    _start(tmp_path / "run", target, model, RunStart(first_stage=first_stage_dir))
    clip, _ = load_checkpoint("lab-clip")
    tower = model.conditioner.embedders["text"].encoder.tower
    torch.testing.assert_close(tower.token_embedding.weight, clip["token_embedding.weight"])
