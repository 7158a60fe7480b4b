"""Metrics, each reported with the feature space it was measured in.

* ``fidelity``: FID, KID, precision/recall through torch-fidelity.
* ``features``: the feature spaces (``fmnist-classifier``, ``lab-clip``, ``inception-v3-compat``).
* ``clip_score``: CLIP score with lab-clip or a local OpenCLIP.
* ``reconstruction``: PSNR, SSIM, rFID for autoencoders.
* ``retrieval``: image <-> text retrieval accuracy of a dual encoder.
* ``adherence``: layout and mask adherence on Shapes (box / mask IoU), FID vs CLIP score per guidance scale.
* ``bootstrap``: confidence intervals; ``records``: result rows for ``data/results/``.
* ``corruptions``: noise and blur, to check that a metric responds.
"""

from ldm_lab.metrics.adherence import guidance_sweep, layout_adherence, mask_adherence
from ldm_lab.metrics.bootstrap import Interval, bootstrap_interval, mean_interval, recentred_interval
from ldm_lab.metrics.clip_score import (CLIP_SCORE_SCALE, DualEncoder, clip_score, clip_scores, lab_clip_encoder,
                                        openclip_encoder)
from ldm_lab.metrics.corruptions import add_noise, blur
from ldm_lab.metrics.features import (FEATURE_SPACES, FeatureSpace, FeatureSpaceUnavailable, extract_features,
                                      inception_available, inception_weights, register_feature_extractors)
from ldm_lab.metrics.fidelity import (FidelityResult, fid_from_features, fid_interval, fidelity_metrics,
                                      kid_from_features, precision_recall_from_features)
from ldm_lab.metrics.images import UInt8Images, to_uint8
from ldm_lab.metrics.reconstruction import psnr, rfid, ssim
from ldm_lab.metrics.records import ResultRecord, append_csv, fidelity_records, read_csv, to_frame
from ldm_lab.metrics.retrieval import retrieval_accuracy

__all__ = [
    "CLIP_SCORE_SCALE", "DualEncoder", "FEATURE_SPACES", "FeatureSpace", "FeatureSpaceUnavailable",
    "FidelityResult", "Interval", "ResultRecord", "UInt8Images", "add_noise", "append_csv", "blur",
    "bootstrap_interval", "clip_score", "clip_scores", "extract_features", "fid_from_features", "fid_interval",
    "fidelity_metrics", "fidelity_records", "guidance_sweep", "inception_available", "inception_weights",
    "kid_from_features", "lab_clip_encoder", "layout_adherence", "mask_adherence",
    "mean_interval", "recentred_interval", "openclip_encoder", "precision_recall_from_features", "psnr", "read_csv",
    "register_feature_extractors", "retrieval_accuracy", "rfid", "ssim", "to_frame", "to_uint8",
]
