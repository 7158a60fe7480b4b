"""ldm-lab: the latent-diffusion family (LDM, SD 1.x/2.x, SDXL, SDXL-Turbo), readably re-implemented."""

__version__ = "0.1.0"
