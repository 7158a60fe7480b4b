"""Saved figures are 256-colour PNGs that look like the figure."""

import io

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from ldm_lab.plotting import save_png


def test_save_png_writes_a_small_palette_png_close_to_the_true_colour_figure(tmp_path):
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(2, 4, figsize=(6, 3))
    for ax in axes.flat:
        ax.imshow(rng.random((16, 16, 3)), interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
    true_colour = io.BytesIO()
    fig.savefig(true_colour, format="png", dpi=120, bbox_inches="tight")
    save_png(fig, tmp_path / "grid.png")
    plt.close(fig)

    saved = Image.open(tmp_path / "grid.png")
    reference = np.asarray(Image.open(true_colour).convert("RGB"), dtype=float)
    assert saved.mode == "P"
    assert (tmp_path / "grid.png").stat().st_size < 0.6 * true_colour.getbuffer().nbytes
    # uniform colour noise is the worst case for 256 colours: still within 4 % per channel on average
    assert np.abs(np.asarray(saved.convert("RGB"), dtype=float) - reference).mean() < 10.0  # of 255
