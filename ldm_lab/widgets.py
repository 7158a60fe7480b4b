"""Interactive widgets for the notebooks. Each builds an ipywidgets box with defaults that render at once, so the
notebook shows a figure when executed headless as well."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from torch import Tensor

from ldm_lab.diffusion.parameterisation import add_noise
from ldm_lab.diffusion.schedules import NoiseSchedule
from ldm_lab.plotting import image_rows


def noise_level_scrubber(images: Tensor, schedule: NoiseSchedule, *, timestep: int = 250,
                         seed: int = 0) -> widgets.VBox:
    """A slider over t that redraws ``images`` [N, C, H, W] noised to x_t (the same noise at every t)."""
    images = images.float().cpu()
    eps = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    slider = widgets.IntSlider(value=timestep, min=0, max=schedule.num_train_timesteps - 1, step=1,
                               description="timestep t", continuous_update=False)
    output = widgets.Output()

    def redraw(t: int) -> None:
        # Set the Output's contents directly: capturing display() inside ``with output`` can stall headless runs.
        noised = add_noise(images, eps, schedule.alphas_cumprod[int(t)].float())
        fig = image_rows({"x_t": noised}, title=sigma_readout(schedule, int(t)))
        output.outputs = ()
        output.append_display_data(fig)
        plt.close(fig)

    slider.observe(lambda change: redraw(change["new"]), names="value")
    redraw(timestep)
    return widgets.VBox([slider, output])


def sigma_readout(schedule: NoiseSchedule, timestep: int) -> str:
    """One line describing the noise level at ``timestep``."""
    ab = float(schedule.alphas_cumprod[timestep])
    return (f"t={timestep}: alpha_bar={ab:.4f}, SNR={ab / max(1 - ab, 1e-12):.3g}, "
            f"sigma={float(schedule.sigma_at(torch.tensor(timestep))):.3g}")
