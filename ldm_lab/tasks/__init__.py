"""Training tasks on the trainer (``ldm_lab.training``): the diffusion objective on pixels or latents, and the
first-stage objective (reconstruction + perceptual + PatchGAN + KL/VQ); the named targets ``ldm-lab train``
runs, and the run directories it writes.

    from ldm_lab.tasks import get_target, run_config, train_target, load_run, generate

    train_target("lab-class", "build/runs/lab-class", run_config(get_target("lab-class"), steps=2000))
    images = generate(load_run("build/runs/lab-class").model, labels=torch.arange(10),
                      settings=SamplingSettings(guidance_scale=3.0))      # ldm_lab.diffusion.SamplingSettings
"""

from ldm_lab.tasks.autoencoder import AutoencoderGAN, AutoencoderLossConfig, AutoencoderTask
from ldm_lab.tasks.diffusion import DiffusionTask, conditions_of, cross_attention, generate, generate_like
from ldm_lab.tasks.gan import PatchDiscriminator, adaptive_weight, discriminator_loss, generator_loss
from ldm_lab.tasks.perceptual import LabClipPerceptual
from ldm_lab.tasks.runs import Run, load_run, read_run_record, run_config, train_target
from ldm_lab.tasks.targets import TARGETS, AutoencoderTarget, DiffusionTarget, get_target

__all__ = [
    "TARGETS", "AutoencoderGAN", "AutoencoderLossConfig", "AutoencoderTarget", "AutoencoderTask",
    "DiffusionTarget", "DiffusionTask", "LabClipPerceptual", "PatchDiscriminator", "Run", "adaptive_weight",
    "conditions_of", "cross_attention", "discriminator_loss", "generate", "generate_like", "generator_loss",
    "get_target", "load_run", "read_run_record", "run_config", "train_target",
]
