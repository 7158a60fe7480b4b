"""What a preset is: a named model's networks and its diffusion setup. Every family module of ``ldm_lab.presets``
fills in some; ``ldm_lab.presets`` collects them by name."""

from __future__ import annotations

from dataclasses import dataclass, field

from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.diffusion.schedules import Schedule, check_zero_terminal_snr
from ldm_lab.nn.autoencoder import AutoencoderConfig
from ldm_lab.nn.text import TextEncoderConfig
from ldm_lab.nn.unet import UNetConfig


@dataclass(frozen=True)
class Preset:
    """A named model: its networks and its diffusion setup. Diffusion fields matter only when ``unet`` is set."""

    name: str
    description: str                                  # one line, citing where the configuration comes from
    unet: UNetConfig | None = None                    # None: a first-stage-only preset
    autoencoder: AutoencoderConfig | None = None      # None: the U-Net works in pixel space
    text_encoders: dict[str, TextEncoderConfig] = field(default_factory=dict)  # by component name, in order
    text_weights: str | None = None                   # a shipped CLIP whose text tower the encoders load, frozen
                                                      # (SD's design); None: the towers train with the U-Net
    prediction: Prediction = Prediction.EPS
    schedule: Schedule = Schedule.SCALED_LINEAR
    num_train_timesteps: int = 1000
    zero_terminal_snr: bool = False                   # rescale the schedule so that SNR_T = 0, pure noise at the
                                                      # last step (Lin et al. 2023, Alg. 1); needs v-prediction
    latent_scale: float | None = None                 # z = scale * E(x); None: estimate as 1 / std (LDM App. G)
    resolution: tuple[int, int] = (512, 512)          # native image size (height, width) in pixels

    def __post_init__(self) -> None:
        if self.zero_terminal_snr:
            check_zero_terminal_snr(Prediction(self.prediction).value, f"preset {self.name!r}")

    @property
    def autoencoder_name(self) -> str:
        """``vae`` when the autoencoder serves a diffusion model, ``first_stage`` for a bare LDM first stage."""
        return "vae" if self.unet is not None else "first_stage"
