"""The layout embedder's position tokens start at sinusoidal features of their lattice point; its box maps give
the fraction of each latent cell a box covers."""

import pytest
import torch

from ldm_lab.conditioning.base import Output
from ldm_lab.conditioning.layout import (LayoutEmbedderConfig, box_coverage, box_maps, lattice_features,
                                         position_tokens)
from ldm_lab.presets import conditioner_config, get_preset


def test_lattice_features_order_rows_then_columns_and_grow_apart_with_distance():
    grid, width = 16, 64
    features = lattice_features(grid, width)
    assert features.shape == (grid * grid, width)
    token = position_tokens(torch.tensor([[0.5, 0.25]]), grid)[0]
    row, col = divmod(int(token), grid)
    assert torch.equal(features[token, : width // 2], features[row * grid, : width // 2])   # row half: the row's
    assert torch.equal(features[token, width // 2:], features[col, width // 2:])          # column half: the column's
    start = features[0]
    distances = [torch.dist(start, features[step * grid + step]) for step in (1, 4, 15)]  # along the diagonal
    assert distances[0] < distances[1] < distances[2]


def test_the_embedder_starts_its_position_tokens_there_unless_told_not_to():
    config = LayoutEmbedderConfig(num_classes=5, grid=8, width=32)
    embedder = config.build()
    assert torch.equal(embedder.token_embedding.weight[:64], lattice_features(8, 32))
    random_start = LayoutEmbedderConfig(num_classes=5, grid=8, width=32, sinusoidal_positions=False).build()
    assert not torch.allclose(random_start.token_embedding.weight[:64], lattice_features(8, 32))


def test_a_width_that_does_not_split_in_four_is_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        lattice_features(8, 30)


def test_box_coverage_is_the_covered_fraction_of_each_cell():
    # rows 0.125..0.5 and columns 0..0.125 on a 4 x 4 grid (cells 0.25 wide): half of row 0, all of row 1, half of
    # column 0
    coverage = box_coverage(torch.tensor([[0.125, 0.0, 0.5, 0.125]]), (4, 4))[0]
    expected = torch.zeros(4, 4)
    expected[0, 0], expected[1, 0] = 0.25, 0.5
    assert torch.allclose(coverage, expected)
    boxes = torch.rand(20, 2, 2).sort(dim=1).values  # (n, [start, end], [row, column])
    boxes = torch.stack([boxes[:, 0, 0], boxes[:, 0, 1], boxes[:, 1, 0], boxes[:, 1, 1]], dim=-1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert torch.allclose(box_coverage(boxes, (16, 8)).sum(dim=(1, 2)) / (16 * 8), area, atol=1e-6)


def test_box_maps_put_each_box_in_its_kind_s_channel():
    maps = box_maps(torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]), torch.tensor([3, 0]), 5, (2, 2))
    assert maps.shape == (5, 2, 2)
    assert maps[3, 0, 0] == 1 and maps[0, 1, 1] == 1 and maps.sum() == 2


def test_lab_layout_concatenates_box_maps_at_the_latent_size_and_none_for_the_empty_layout():
    preset = get_preset("lab-layout")
    config = conditioner_config(preset)
    config.check(preset.unet, preset.autoencoder.embed_dim)  # the U-Net takes the latent and the maps
    embedder = config.conditions[0].embedder.build()
    out = embedder([torch.tensor([[0.0, 0.0, 0.5, 0.25]])], [torch.tensor([2])])
    assert out[Output.CONCAT].shape == (1, 5, 16, 16)
    assert out[Output.CONCAT][0, 2].sum() == 8 * 4  # 32 of 64 rows x 16 of 64 columns = 8 x 4 latent cells
    empty = embedder(*embedder.null_input(2))
    assert empty[Output.CONCAT].shape == (2, 5, 16, 16) and not empty[Output.CONCAT].any()
