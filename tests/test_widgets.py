"""The widgets share one redraw: figure_controls draws once at build time and again on every control change."""

from __future__ import annotations

import inspect

import ipywidgets
import matplotlib.pyplot as plt
import torch

from ldm_lab import widgets


def test_one_redraw_serves_every_widget():
    source = inspect.getsource(widgets)
    assert source.count("def redraw") == 1 and source.count(".observe(") == 1


def test_figure_controls_draw_at_once_and_on_every_change_with_all_values():
    calls = []

    def draw_figure(a: int, b: str):
        calls.append((a, b))
        return plt.figure()

    first, second = ipywidgets.IntSlider(value=1, min=0, max=5), ipywidgets.Dropdown(options=["x", "y"], value="x")
    box = widgets.figure_controls({"a": first, "b": second}, draw_figure)
    assert calls == [(1, "x")] and box.png() is not None and list(box.children[:2]) == [first, second]
    first.value, second.value = 3, "y"
    assert calls == [(1, "x"), (3, "x"), (3, "y")]


def test_image_controls_pass_the_controls_values_to_the_draw_function():
    seen = []

    def draw(prompt: str, steps: int, guidance_scale: float, seed: int) -> torch.Tensor:
        seen.append((prompt, steps, guidance_scale, seed))
        return torch.zeros(1, 3, 8, 8)

    controls = widgets.prompt_controls("red apple", steps=4, guidance_scale=2.0, seed=1)
    box = widgets.image_controls(draw, controls)
    controls["steps"].value = 6
    assert seen == [("red apple", 4, 2.0, 1), ("red apple", 6, 2.0, 1)] and box.png() is not None


def test_inpainting_controls_pass_image_mask_edges_prompt_and_sampling():
    seen = []

    def draw(index, top, left, bottom, right, prompt, steps, guidance_scale, seed) -> torch.Tensor:
        seen.append((index, top, left, bottom, right, prompt, steps, seed))
        return torch.zeros(1, 3, 8, 8)

    controls = widgets.inpainting_controls(["cat face", "sun"], "a cat", steps=4, seed=2)
    widgets.image_controls(draw, controls)
    controls["index"].value, controls["top"].value = 1, 0.5
    assert seen == [(0, 0.25, 0.25, 0.75, 0.75, "a cat", 4, 2), (1, 0.25, 0.25, 0.75, 0.75, "a cat", 4, 2),
                    (1, 0.5, 0.25, 0.75, 0.75, "a cat", 4, 2)]
