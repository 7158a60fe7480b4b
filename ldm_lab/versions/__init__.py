"""The Stable Diffusion versions side by side (notebook 05): as architectures read off the presets
(``architecture``), and as miniatures trained here and measured (``miniature``: the three versions, eps vs v
brightness, the v1.x lineage; ``inpainting``: the 9-channel model against mask blending)."""

from ldm_lab.versions.architecture import (KNOWN_TOWERS, LAB_VERSIONS, SD_VERSIONS, architecture_table,
                                           depth_description, heads_description, layer_read, level_parameters,
                                           plot_level_parameters, tower_name, version_row)

__all__ = ["KNOWN_TOWERS", "LAB_VERSIONS", "SD_VERSIONS", "architecture_table", "depth_description",
           "heads_description", "layer_read", "level_parameters", "plot_level_parameters", "tower_name",
           "version_row"]
