"""A first stage shipped again with the same encoder (a new decoder behind it) keeps the models trained on it
loadable; one with another encoder does not."""

from dataclasses import replace

import torch

from ldm_lab.checkpoints import ManifestEntry, read_manifest, save_checkpoint
from ldm_lab.shipping.export import encodes_alike, repoint_dependents


def entry(name: str, first_stage: str | None = None, first_stage_sha256: str | None = None) -> ManifestEntry:
    return ManifestEntry(file=f"{name}.safetensors", sha256="", size_bytes=0, command=f"ldm-lab ship {name}",
                         git_commit="abc", data="test", metrics={}, config={}, training_seconds=1.0, device="cpu",
                         target=name, steps=1, first_stage=first_stage, first_stage_sha256=first_stage_sha256)


def first_stage(seed: int, decoder_width: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {"encoder.conv_in.weight": torch.randn(8, 3, 3, 3), "quant_conv.weight": torch.randn(8, 8, 1, 1),
            "decoder.conv_out.weight": torch.randn(3, decoder_width, 3, 3)}


def test_same_encoder_and_quant_conv_encode_alike_whatever_the_decoder():
    old = {key: value.half() for key, value in first_stage(0, 4).items()}   # as shipped: fp16
    assert encodes_alike(old, first_stage(0, 16))                            # a wider decoder, same encoder
    assert not encodes_alike(old, first_stage(1, 4))                         # another encoder
    other_quant = {**first_stage(0, 4), "quant_conv.weight": torch.zeros(8, 8, 1, 1)}
    assert not encodes_alike(old, other_quant)
    assert not encodes_alike(old, {"decoder.conv_out.weight": torch.zeros(3, 4, 3, 3)})  # no encoder to compare


def test_models_trained_on_the_old_file_are_repointed_to_the_new_one_and_no_others(tmp_path):
    old = save_checkpoint("ae", first_stage(0, 4), entry("ae"), tmp_path)
    save_checkpoint("ldm", {"w": torch.zeros(2)}, entry("ldm", "ae", old.sha256), tmp_path)
    save_checkpoint("stale", {"w": torch.zeros(2)}, entry("stale", "ae", "an-older-file"), tmp_path)
    save_checkpoint("other", {"w": torch.zeros(2)}, entry("other", "other-ae", old.sha256), tmp_path)
    new = save_checkpoint("ae", first_stage(0, 16), entry("ae"), tmp_path)
    assert repoint_dependents("ae", old.sha256, new.sha256, tmp_path) == ["ldm"]
    manifest = read_manifest(tmp_path)
    assert manifest["ldm"] == replace(entry("ldm", "ae", new.sha256), sha256=manifest["ldm"].sha256,
                                      size_bytes=manifest["ldm"].size_bytes)
    assert manifest["stale"].first_stage_sha256 == "an-older-file"    # trained on another file: not vouched for
    assert manifest["other"].first_stage_sha256 == old.sha256
