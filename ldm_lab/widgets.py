"""Interactive widgets for the notebooks. Each builds an ipywidgets box with defaults that render at once, so the
notebook shows a figure when executed headless as well: the box's display carries that figure as a PNG beside the
live widget (a kernel-less viewer, a headless run or GitHub shows the picture; JupyterLab shows the controls)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from torch import Tensor

from ldm_lab.diffusion import SamplingSettings
from ldm_lab.diffusion.parameterisation import add_noise
from ldm_lab.diffusion.schedules import NoiseSchedule
from ldm_lab.metrics.reconstruction import psnr
from ldm_lab.plotting import image_rows, reconstruction_triplet

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ldm_lab.compression import Reconstructions


def show_figure(output: widgets.Output, fig: Figure) -> None:
    """Replace ``output``'s contents with ``fig`` as a PNG, and close the figure. The PNG is rendered here rather
    than by the kernel's display formatter, so it exists whatever matplotlib backend the kernel draws with.
    (Setting the Output's contents directly: capturing display() inside ``with output`` can stall headless runs.)"""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    output.outputs = ({"output_type": "display_data", "metadata": {},
                       "data": {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                                "text/plain": "<figure>"}},)


class FigureBox(widgets.VBox):
    """A VBox of controls and the Output they draw into, displayed as the live widget *and* a PNG of the Output's
    current figure: front ends with a widget manager show the widget, others (a saved notebook on GitHub, the
    executed copies ``ldm-lab notebooks`` writes) fall back to the picture."""

    def __init__(self, children: Sequence[widgets.Widget], figure: widgets.Output, **kwargs: Any) -> None:
        super().__init__(list(children), **kwargs)
        self.figure = figure

    def png(self) -> str | None:
        """The figure shown now, base64-encoded, or None before the first draw."""
        pngs = [item["data"]["image/png"] for item in self.figure.outputs if "image/png" in item.get("data", {})]
        return pngs[-1] if pngs else None

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs)
        png = self.png()
        if png is not None:
            bundle["image/png"] = png
        return bundle


Controls = dict[str, widgets.ValueWidget]  # keyword of the draw function -> the widget that sets it


def figure_controls(controls: Controls, draw_figure: Callable[..., Figure],
                    layout: Sequence[widgets.Widget] | None = None) -> FigureBox:
    """Controls and the figure ``draw_figure(**their values)`` makes, redrawn whenever a control changes, and
    drawn once now (so a headless run shows the defaults' figure). ``layout``: how the controls are arranged
    (default: one under the other)."""
    output = widgets.Output()

    def redraw(_: object = None) -> None:
        show_figure(output, draw_figure(**{name: control.value for name, control in controls.items()}))

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    return FigureBox([*(layout or controls.values()), output], output)


def noise_level_scrubber(images: Tensor, schedule: NoiseSchedule, *, timestep: int = 250,
                         seed: int = 0) -> widgets.VBox:
    """A slider over t that redraws ``images`` [N, C, H, W] noised to x_t (the same noise at every t)."""
    images = images.float().cpu()
    eps = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    slider = widgets.IntSlider(value=timestep, min=0, max=schedule.num_train_timesteps - 1, step=1,
                               description="timestep t", continuous_update=False)

    def noised_figure(t: int) -> Figure:
        noised = add_noise(images, eps, schedule.alphas_cumprod[int(t)].float())
        return image_rows({"x_t": noised}, title=sigma_readout(schedule, int(t)))

    return figure_controls({"t": slider}, noised_figure)


def sigma_readout(schedule: NoiseSchedule, timestep: int) -> str:
    """One line describing the noise level at ``timestep``."""
    ab = float(schedule.alphas_cumprod[timestep])
    return (f"t={timestep}: alpha_bar={ab:.4f}, SNR={ab / max(1 - ab, 1e-12):.3g}, "
            f"sigma={float(schedule.sigma_at(torch.tensor(timestep))):.3g}")


# ------------------------------------------------------------------------------------ conditioning (00, 04)
def image_controls(draw: Callable[..., Tensor], controls: Controls, *, title: str = "") -> widgets.VBox:
    """Controls above a picture: ``draw(**values)`` -> images ``[N, C, H, W]`` in [-1, 1], redrawn when a control
    changes (drawn once at build time, so a headless run shows the defaults' images)."""
    return figure_controls(controls, lambda **values: image_rows({"": draw(**values)}, title=title or None))


def sampling_controls(*, steps: int = SamplingSettings.steps, guidance_scale: float = 3.0, seed: int = 0,
                      max_steps: int = 100) -> Controls:
    """Sampler steps (default: the package's, ``SamplingSettings``), classifier-free guidance scale (1: no
    guidance) and the noise seed: the fields of a ``SamplingSettings`` a draw function builds."""
    return {"steps": widgets.IntSlider(value=steps, min=1, max=max_steps, description="steps",
                                       continuous_update=False),
            "guidance_scale": widgets.FloatSlider(value=guidance_scale, min=1.0, max=12.0, step=0.5,
                                                  description="guidance", continuous_update=False),
            "seed": widgets.IntText(value=seed, description="seed")}


def prompt_controls(prompt: str, **sampling) -> Controls:
    """A prompt box (applied on Enter) and ``sampling_controls(**sampling)``."""
    prompt_box = widgets.Text(value=prompt, description="prompt", continuous_update=False)
    return {"prompt": prompt_box, **sampling_controls(**sampling)}


def class_controls(class_names: Sequence[str], label: int = 0, **sampling) -> Controls:
    """A class picker (its value is the class index) and ``sampling_controls(**sampling)``."""
    options = [(name, index) for index, name in enumerate(class_names)]
    picker = widgets.Dropdown(options=options, value=label, description="class")
    return {"label": picker, **sampling_controls(**sampling)}


def box_controls(kinds: Sequence[str], kind: int = 0, box: tuple[float, float, float, float] = (0.2, 0.2, 0.6, 0.6),
                 **sampling) -> Controls:
    """One box to place: its kind (index into ``kinds``) and its (top, left, bottom, right) edges in [0, 1];
    then ``sampling_controls(**sampling)``."""
    edges = {name: widgets.FloatSlider(value=value, min=0.0, max=1.0, step=0.05, description=name,
                                       continuous_update=False)
             for name, value in zip(("top", "left", "bottom", "right"), box)}
    options = [(name, index) for index, name in enumerate(kinds)]
    return {"kind": widgets.Dropdown(options=options, value=kind, description="kind"), **edges,
            **sampling_controls(**sampling)}


def inpainting_controls(held_out_names: Sequence[str], prompt: str, index: int = 0,
                        mask: tuple[float, float, float, float] = (0.25, 0.25, 0.75, 0.75), **sampling) -> Controls:
    """An image to inpaint (its value is the index into ``held_out_names``), the mask's (top, left, bottom, right)
    edges in [0, 1], the prompt (applied on Enter), then ``sampling_controls(**sampling)`` (notebook 05)."""
    options = [(name, i) for i, name in enumerate(held_out_names)]
    edges = {name: widgets.FloatSlider(value=value, min=0.0, max=1.0, step=0.0625, description=name,
                                       continuous_update=False)
             for name, value in zip(("top", "left", "bottom", "right"), mask)}
    return {"index": widgets.Dropdown(options=options, value=index, description="image"), **edges,
            "prompt": widgets.Text(value=prompt, description="prompt", continuous_update=False),
            **sampling_controls(**sampling)}


# ------------------------------------------------------------------------------ autoencoders (notebook 02)
def first_stage_explorer(reconstructions: Mapping[tuple[str, int], Reconstructions], *, regularizer: str = "kl",
                         f: int = 8, index: int = 0) -> widgets.VBox:
    """Pick a regularizer, a downsampling factor f and an image: the image, its reconstruction by that first stage
    and the error. ``reconstructions[(regularizer, f)]`` is ``ldm_lab.compression.reconstruct``'s result."""
    keys = list(reconstructions)
    pick_regularizer = widgets.Dropdown(options=sorted({r for r, _ in keys}), value=regularizer,
                                        description="regularizer")
    pick_f = widgets.Dropdown(options=sorted({f for _, f in keys}), value=f, description="f")
    num_images = min(len(result.originals) for result in reconstructions.values())
    pick_image = widgets.IntSlider(value=index, min=0, max=num_images - 1, description="image", continuous_update=False)

    def reconstruction_figure(regularizer: str, f: int, image: int) -> Figure:
        result = reconstructions[(regularizer, f)]
        x, y = result.originals[image], result.reconstructions[image]
        title = f"{regularizer.upper()} f={f}, image {image}: PSNR {psnr(x[None], y[None]).item():.1f} dB"
        return image_rows({"": reconstruction_triplet(x, y)}, column_titles=["image", "reconstruction", "|error| x4"],
                          title=title)

    return figure_controls({"regularizer": pick_regularizer, "f": pick_f, "image": pick_image}, reconstruction_figure,
                           layout=[widgets.HBox([pick_regularizer, pick_f]), pick_image])
