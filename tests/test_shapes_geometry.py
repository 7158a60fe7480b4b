"""Cut-off and distortion measures on rendered Shapes scenes whose ground truth is known."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_lab.data.shapes import Scene, Shape, ShapesConfig, ShapesDataset, render, render_view
from ldm_lab.metrics.images import to_uint8
from ldm_lab.metrics.shapes_geometry import (cut_off_fraction, distortion, find_objects, geometry_row,
                                             objects_per_image)

BACKGROUND = ((120, 120, 120), (140, 135, 130))


def scene(*shapes: Shape) -> Scene:
    return Scene(shapes=shapes, background=BACKGROUND, gradient_angle=0.3)


def circle(colour: str, center: tuple[float, float], radius: float = 0.15) -> Shape:
    return Shape("circle", colour, "medium", center, radius, 0.0)


def square(colour: str, center: tuple[float, float], radius: float = 0.15, rotation: float = 0.4) -> Shape:
    return Shape("square", colour, "medium", center, radius, rotation)


def as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


TWO_OBJECTS = scene(circle("red", (0.5, 0.2)), square("blue", (0.5, 0.62)))


def test_whole_objects_are_found_once_with_their_colours_and_are_not_cut():
    objects = find_objects(as_tensor(render(TWO_OBJECTS, (64, 64)).image))
    assert sorted(o.colour for o in objects) == ["blue", "red"]
    assert not any(o.cut for o in objects)
    for found in objects:  # regular shapes: isotropic second moments
        assert abs(math.log2(found.stretch)) < 0.05


def test_a_crop_through_an_object_is_seen_as_cut():
    # The scene photographed at 64x96 and cropped to 64x64 at the left: the blue square (centre at 0.62 of the
    # width) is cut by the right edge, the red circle is whole.
    image, instances = render_view(TWO_OBJECTS, (64, 96), (64, 64), (0, 0))
    objects = {o.colour: o for o in find_objects(as_tensor(image))}
    assert objects["blue"].cut and not objects["red"].cut
    # ground truth: the instance map shows the square on the frame
    assert (instances[:, -1] == 2).sum() >= 2 and not (instances[:, [0, -1]] == 1).any()


def test_a_horizontally_stretched_scene_measures_its_stretch():
    flat = scene(circle("red", (0.5, 0.3), 0.18), square("green", (0.5, 0.72), 0.15, rotation=1.1))
    image = Image.fromarray(render(flat, (64, 64)).image).resize((96, 64), Image.Resampling.BICUBIC)  # 1.5 x wider
    result = distortion([find_objects(as_tensor(np.asarray(image)))] * 4, num_resamples=50)
    assert result["log2_stretch"].estimate == pytest.approx(math.log2(1.5), abs=0.06)
    undistorted = distortion([find_objects(as_tensor(render(flat, (64, 64)).image))] * 4, num_resamples=50)
    assert abs(undistorted["log2_stretch"].estimate) < 0.05


def test_cut_off_fraction_is_near_zero_on_uncropped_scenes_and_high_on_cropped_ones():
    count = 30
    whole = ShapesDataset("train", ShapesConfig(num_images=count))
    # originals up to 2.5 x wider or taller than the square crop: much of each scene is cut away
    cropped = ShapesDataset("train", ShapesConfig(num_images=count, original_scale=(1.0, 1.0), max_aspect_change=2.5))
    whole_images = to_uint8(torch.stack([whole[i]["image"] for i in range(count)]))
    cropped_images = to_uint8(torch.stack([cropped[i]["image"] for i in range(count)]))
    low, high = cut_off_fraction(whole_images, num_resamples=200), cut_off_fraction(cropped_images, num_resamples=200)
    assert low.estimate < 0.05 and high.estimate > 0.25
    assert low.high < high.low  # intervals apart
    # the measure agrees with the ground truth of the crops: the share of visible instances on the frame
    truth = []
    for i in range(count):
        instances = cropped[i]["instances"].numpy()
        frame = np.concatenate([instances[[0, -1]].ravel(), instances[:, [0, -1]].ravel()])
        visible = [k for k in np.unique(instances) if k > 0 and (instances == k).sum() >= 6]
        truth += [int((frame == k).sum() >= 2) for k in visible]
    assert high.estimate == pytest.approx(np.mean(truth), abs=0.08)


def test_geometry_row_reports_estimates_intervals_and_counts():
    images = torch.stack([as_tensor(render(TWO_OBJECTS, (48, 80)).image)] * 3)
    row = geometry_row(images, num_resamples=20)
    assert row["num_images"] == 3 and row["num_objects"] == 6
    assert row["cut_off_fraction"] == 0 and row["cut_off_fraction_ci_low"] <= 0 <= row["cut_off_fraction_ci_high"]
    assert {"log2_stretch", "abs_log2_stretch_ci_high"} <= set(row)


def test_images_without_objects_are_an_error_that_says_what_to_do():
    grey = torch.full((3, 3, 32, 32), 128, dtype=torch.uint8)
    assert objects_per_image(grey) == [[], [], []]
    with pytest.raises(ValueError, match="draw more images"):
        cut_off_fraction(grey)
