"""The layout embedder's position tokens start at sinusoidal features of their lattice point."""

import pytest
import torch

from ldm_lab.conditioning.layout import LayoutEmbedderConfig, lattice_features, position_tokens


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
