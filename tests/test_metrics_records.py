"""Result rows carry their provenance, and retrieval accuracy counts what it says."""

import pytest
import torch

from ldm_lab.metrics import (FidelityResult, ResultRecord, append_csv, fidelity_records, read_csv,
                             retrieval_accuracy, to_frame)


def test_records_carry_provenance_into_csv(tmp_path, monkeypatch):
    monkeypatch.setenv("LDM_LAB_PROFILE", "smoke")
    rows = [ResultRecord(metric="fid", value=12.5, feature_space="lab-clip", num_samples=500, value_ci_low=11.0,
                         value_ci_high=14.0, experiment="08_sample_size"),
            ResultRecord(metric="psnr", value=24.0, feature_space="pixels", num_samples=64, device="cpu")]
    frame = to_frame(rows)
    assert list(frame["metric"]) == ["fid", "psnr"]
    assert {"feature_space", "num_samples", "profile", "device", "git_commit", "timestamp"} <= set(frame.columns)
    assert frame["profile"].tolist() == ["smoke", "smoke"] and frame["git_commit"].str.len().min() >= 7
    path = append_csv(rows, "metrics_test", folder=tmp_path)
    append_csv(rows[:1], "metrics_test", folder=tmp_path)
    table = read_csv("metrics_test", folder=tmp_path)
    assert path.read_text().count("feature_space") == 1  # one header
    assert table["value"].tolist() == [12.5, 24.0, 12.5] and table["num_samples"].tolist() == [500, 64, 500]


def test_fidelity_result_becomes_one_row_per_number():
    result = FidelityResult("fmnist-classifier", num_real=1000, num_generated=500, fid=3.0, kid=0.01, kid_std=0.002,
                            precision=0.7, recall=0.6)
    frame = to_frame(fidelity_records(result, experiment="demo", device="cpu"))
    assert frame.set_index("metric")["value"].to_dict() == {"fid": 3.0, "kid": 0.01, "kid_std": 0.002,
                                                            "precision": 0.7, "recall": 0.6}
    assert set(frame["num_samples"]) == {500} and set(frame["feature_space"]) == {"fmnist-classifier"}


def test_nearest_reference_hits_by_hand():
    from ldm_lab.metrics.retrieval import nearest_reference_hits

    references = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])      # directions 0, 90 and 45 degrees
    queries = torch.tensor([[3.0, 0.2], [0.1, 1.0], [1.0, 0.1]])          # nearest: 0, 1, 0
    own, each = torch.tensor([0, 1, 2]), torch.arange(3)
    assert nearest_reference_hits(queries, references, own, each).tolist() == [True, True, False]
    assert nearest_reference_hits(queries, references, own, each, k=2).tolist() == [True, True, True]  # 2nd: 45 deg
    assert nearest_reference_hits(queries, references, own, each, k=9).all()  # k beyond the set: all references
    grouped = torch.tensor([0, 1, 0])                                         # references 0 and 2: one emoji
    assert nearest_reference_hits(queries, references, torch.tensor([0, 1, 0]), grouped).tolist() == [True] * 3


def test_retrieval_accuracy_by_hand():
    # Three pairs; image 2 is closest to caption 0. Captions 1 and 2 are the same string.
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    texts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    scores = retrieval_accuracy(images, texts, ["a", "b", "b"], ks=(1, 2))
    assert scores["image_to_text_top1"] == pytest.approx(2 / 3)   # image 2 picks "a", not its "b"
    assert scores["image_to_text_top2"] == 1.0                    # only two distinct captions
    assert scores["text_to_image_top1"] == 1.0                    # "a" -> image 0, "b" -> image 1
