"""The compression ablation (LDM §4.1, Tab. 8, Fig. 6, Tab. 6): how the downsampling factor f of the first stage
trades reconstruction quality against the diffusion model's speed and sample quality.

The models are presets and training targets: first stages ``lab-kl-f{f}`` / ``lab-vq-f{f}``
(``ldm_lab.presets.compression.lab_first_stage``; targets ``first_stage_target(regularizer, f)``) and LDM-f
``lab-ldm-{f}`` (``lab_ldm_unet``; targets ``ablation_target(f)``, ``ldm_lab.tasks.targets.compression``), for f in
``COMPRESSION_FACTORS``.
This package measures them:

* ``first_stages``: PSNR / SSIM / rFID, latent std and scale factor, VQ code use -> ``FirstStageRow``
  (``data/results/autoencoders.csv``).
* ``ablation``: FID / KID with bootstrap intervals per checkpoint, train / sample throughput -> ``AblationRow``
  (``data/results/compression_ablation.csv``: the curve of Fig. 6, recorded from the runs by ``curve``).
* ``tradeoff``: FID against sampling time at DDIM {10 ... 200} steps -> ``TradeoffRow`` (Fig. 7,
  ``data/results/compression_sampling.csv``).
* ``verdicts``: the paper's conclusions checked against those tables, in plain words, by one rule (95 %
  intervals apart: holds / does not hold; overlapping: undecided).
* ``latents``: what the diffusion model sees (latents as images, decoded noised latents); ``checkpoints``:
  which shipped (or retrained) weights a notebook loads; real-vs-real rows calibrate every FID table.
"""

from ldm_lab.compression.ablation import (FIG6_SAMPLING, AblationRow, SampleQuality, ablation_models, ablation_row,
                                          cycle_batch, generate_images, measure_throughput, real_vs_real,
                                          sample_quality, training_sample, validation_batch)
from ldm_lab.compression.checkpoints import shipped_table, weights_folder
from ldm_lab.compression.first_stages import (FirstStageRow, Reconstructions, discriminator_start,
                                              evaluate_first_stage, first_stage_row, latent_scale, paper_table8,
                                              real_vs_real_rfid, reconstruct, rfid_interval)
from ldm_lab.compression.latents import decoded_noised_latents, encode_mean, latents_as_images
from ldm_lab.compression.rows import (AUTOENCODERS_TABLE, COMPRESSION_CURVE_TABLE, SHIPPED_ABLATION_TABLE, Measured,
                                      append_rows, recorded_table, rows_frame, save_table)
from ldm_lab.compression.tradeoff import (COMPRESSION_SAMPLING_TABLE, FIG7_SAMPLER_STEPS, FIG7_SAMPLING, TradeoffRow,
                                          retimed, sampling_times, tradeoff_rows)
from ldm_lab.compression.verdicts import (Verdict, at_common_step, best_balance, check_conclusions, kl_ahead_of_vq,
                                          large_factor_stalls, order, pixel_model_behind, pixel_model_slow,
                                          reconstruction_falls_with_f)
from ldm_lab.presets.compression import COMPRESSION_FACTORS, lab_first_stage, lab_ldm_unet
from ldm_lab.tasks.targets.compression import ablation_target, first_stage_target

__all__ = [
    "AUTOENCODERS_TABLE", "COMPRESSION_CURVE_TABLE", "COMPRESSION_FACTORS", "COMPRESSION_SAMPLING_TABLE",
    "FIG6_SAMPLING", "FIG7_SAMPLER_STEPS", "FIG7_SAMPLING", "SHIPPED_ABLATION_TABLE", "TradeoffRow", "retimed", "sampling_times",
    "tradeoff_rows",
    "AblationRow",
    "FirstStageRow", "Measured", "Reconstructions", "SampleQuality", "Verdict", "ablation_models", "ablation_row",
    "ablation_target",
    "append_rows", "at_common_step", "best_balance", "check_conclusions", "cycle_batch", "decoded_noised_latents",
    "discriminator_start",
    "encode_mean", "evaluate_first_stage", "latents_as_images", "paper_table8", "real_vs_real", "real_vs_real_rfid",
    "recorded_table", "save_table", "shipped_table", "training_sample", "weights_folder",
    "first_stage_row", "first_stage_target", "generate_images", "kl_ahead_of_vq", "lab_first_stage", "lab_ldm_unet",
    "large_factor_stalls", "latent_scale", "measure_throughput", "order", "pixel_model_behind", "pixel_model_slow",
    "reconstruct", "reconstruction_falls_with_f", "rfid_interval", "rows_frame", "sample_quality", "validation_batch",
]
