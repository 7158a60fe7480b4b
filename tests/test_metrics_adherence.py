"""Layout, mask and text adherence: real Shapes scenes score high against their own ground truth, shuffled or
shifted requests score low, and the empty cases are defined."""

import numpy as np
import pytest
import torch

from ldm_lab.checkpoints import read_manifest
from ldm_lab.data.shapes import (COLOURS, KINDS, Scene, Shape, ShapesConfig, ShapesDataset, box, render,
                                 sample_scene)
from ldm_lab.metrics import to_uint8
from ldm_lab.metrics.adherence import (CHROMA_THRESHOLD, COLOUR_TOLERANCE, baseline_table, box_iou, box_ious,
                                       guidance_sweep, layout_adherence, layout_report, mask_adherence, mask_box,
                                       mask_ious, mask_report, object_pixels, palette_map, predicted_classes,
                                       shuffled)

NUM_CLASSES = len(KINDS) + 1  # background + one per kind, as Shapes' segmentation


def shapes_batch(size: tuple[int, int], num: int = 32):
    """Real Shapes items: uint8 images, boxes, each box's colour (from the scene) and segmentations."""
    data = ShapesDataset("val", ShapesConfig(size=size))
    items = [data[i] for i in range(num)]
    colours = [[data.scene(i).shapes[j - 1].colour for j in item["box_instances"].tolist()]
               for i, item in enumerate(items)]
    images = to_uint8(torch.stack([item["image"] for item in items]))
    return images, [item["boxes"] for item in items], colours, torch.stack([item["segmentation"] for item in items])


def one_shape_image(colour: str = "red", size=(64, 64)):
    """A square of ``colour`` whose box is (0.15, 0.15, 0.45, 0.45), on grey."""
    square = Shape("square", colour, "medium", center=(0.3, 0.3), radius=0.15 * np.sqrt(2), rotation=0.0)
    scene = Scene((square,), ((120, 120, 120), (130, 130, 130)), 0.0)
    assert np.allclose(np.array(box(square, size)) / 64, [0.15, 0.15, 0.45, 0.45])
    return torch.from_numpy(render(scene, size).image).permute(2, 0, 1).contiguous()


def grey_image(size=(64, 64), value=128):
    return torch.full((3, *size), value, dtype=torch.uint8)


# ------------------------------------------------------------------------------------------------- palette
def test_palette_map_finds_each_colour_within_the_tolerance_and_nothing_else():
    colours = torch.tensor(list(COLOURS.values()), dtype=torch.uint8)                      # [6, 3]
    image = colours.T.reshape(1, 3, 1, len(COLOURS))
    assert palette_map(image)[0, 0].tolist() == list(range(1, len(COLOURS) + 1))
    red = torch.tensor(COLOURS["red"], dtype=torch.float32)
    near = (red + torch.tensor([0.0, COLOUR_TOLERANCE - 2, 0.0])).to(torch.uint8).reshape(1, 3, 1, 1)
    far = (red + torch.tensor([0.0, COLOUR_TOLERANCE + 2, 0.0])).to(torch.uint8).reshape(1, 3, 1, 1)
    assert palette_map(near).item() == 1 and palette_map(far).item() == 0


def test_thresholds_separate_palette_colours_and_backgrounds():
    palette = np.array(list(COLOURS.values()), float)
    pairwise = np.linalg.norm(palette[:, None] - palette[None], axis=-1)
    assert pairwise[~np.eye(len(palette), dtype=bool)].min() > 2 * COLOUR_TOLERANCE
    rng = np.random.default_rng(0)
    ends = np.array([end for _ in range(500) for end in sample_scene(rng).background], np.uint8)  # [1000, 3]
    backgrounds = torch.from_numpy(ends.T.copy()).reshape(1, 3, 1, -1)
    assert (palette_map(backgrounds) == 0).all() and not object_pixels(backgrounds).any()
    colours = torch.tensor(list(COLOURS.values()), dtype=torch.uint8).T.reshape(1, 3, 1, -1)
    assert object_pixels(colours).all()
    above, below = 100 + int(CHROMA_THRESHOLD) + 1, 100 + int(CHROMA_THRESHOLD) - 1
    barely = torch.tensor([[100, above, 100], [100, below, 100]], dtype=torch.uint8)         # [2 pixels, RGB]
    assert object_pixels(barely.T.reshape(1, 3, 1, 2)).tolist() == [[[True, False]]]


# --------------------------------------------------------------------------------------------------- boxes
def test_box_iou_and_mask_box():
    assert box_iou((0, 0, 0.5, 0.5), (0, 0, 0.5, 0.5)) == pytest.approx(1)
    assert box_iou((0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1)) == 0
    assert box_iou((0, 0, 0.5, 1), (0, 0.5, 0.5, 1)) == pytest.approx(0.5)       # one box inside the other
    assert box_iou((0, 0, 0.5, 1), (0, 0.5, 1, 1)) == pytest.approx(1 / 3)
    mask = np.zeros((4, 8), bool)
    mask[1, 2] = True
    assert mask_box(mask) == (0.25, 0.25, 0.5, 0.375)
    assert mask_box(np.zeros((4, 4), bool)) is None


@pytest.mark.parametrize("size, floor", [((64, 64), 0.75), ((128, 128), 0.85)])
def test_real_scenes_match_their_own_layout_and_not_others(size, floor):
    images, boxes, colours, _ = shapes_batch(size)
    own = layout_adherence(images, boxes, colours)
    assert own.mean() > floor and len(own) == sum(len(b) for b in boxes)
    assert layout_adherence(images, boxes).mean() > floor - 0.05                        # any object colour
    shuffled = boxes[1:] + boxes[:1], colours[1:] + colours[:1]
    assert layout_adherence(images, *shuffled).mean() < 0.1
    assert layout_adherence(images, shuffled[0]).mean() < 0.2


def test_shifted_box_wrong_colour_and_empty_image_score_zero():
    image = one_shape_image("red")
    assert box_ious(image, torch.tensor([[0.15, 0.15, 0.45, 0.45]]), ["red"]).item() > 0.9
    assert box_ious(image, torch.tensor([[0.6, 0.6, 0.9, 0.9]]), ["red"]).item() == 0              # moved away
    assert box_ious(image, torch.tensor([[0.15, 0.15, 0.45, 0.45]]), ["blue"]).item() == 0         # wrong colour
    assert box_ious(grey_image(), torch.tensor([[0.15, 0.15, 0.45, 0.45]])).item() == 0            # nothing drawn
    partly = box_ious(image, torch.tensor([[0.15, 0.30, 0.45, 0.60]]), ["red"]).item()            # half overlap
    assert 0.25 < partly < 0.45


def test_empty_layouts_give_no_scores_and_counts_must_match():
    image = one_shape_image()
    assert box_ious(image, torch.zeros(0, 4)).shape == (0,)
    assert layout_adherence(image.unsqueeze(0), [torch.zeros(0, 4)]).shape == (0,)
    with pytest.raises(ValueError, match="one colour"):
        box_ious(image, torch.zeros(2, 4), ["red"])
    with pytest.raises(ValueError, match="one .*layout per image"):
        layout_adherence(image.unsqueeze(0), [])
    with pytest.raises(ValueError, match="unknown Shapes colour 'pink'.*Valid Shapes colours: red"):
        box_ious(image, torch.zeros(1, 4), ["pink"])


# ---------------------------------------------------------------------------------------------------- masks
def test_real_scenes_match_their_own_masks_and_not_others():
    images, _, _, masks = shapes_batch((64, 64))
    own = mask_adherence(images, masks, NUM_CLASSES)
    rolled = mask_adherence(images, masks.roll(1, 0), NUM_CLASSES)
    assert own["foreground_iou"].mean() > 0.9 and own["mean_iou"].mean() > 0.9
    assert rolled["foreground_iou"].mean() < 0.2 and rolled["mean_iou"].mean() < 0.5


def test_object_pixels_take_the_nearest_requested_class():
    requested = np.zeros((1, 9), np.int64)
    requested[0, 0], requested[0, 8] = 2, 5
    objects = np.ones((1, 9), bool)
    objects[0, 4] = False
    assert predicted_classes(objects, requested).tolist() == [[2, 2, 2, 2, 0, 5, 5, 5, 5]]
    assert (predicted_classes(objects, np.zeros_like(requested)) == np.where(objects, -1, 0)).all()  # unasked


def test_mask_ious_empty_cases_and_size_check():
    empty = torch.zeros(64, 64, dtype=torch.int64)
    nothing = mask_ious(grey_image(), empty, NUM_CLASSES)
    assert nothing["foreground_iou"] == 1 and nothing["mean_iou"] == 1                 # both agree: background
    assert np.isnan(nothing["per_class"][1:]).all()
    unasked = mask_ious(one_shape_image(), empty, NUM_CLASSES)
    assert unasked["foreground_iou"] == 0 and unasked["mean_iou"] < 1
    missing = mask_ious(grey_image(), torch.ones(64, 64, dtype=torch.int64), NUM_CLASSES)
    assert missing["foreground_iou"] == 0 and missing["mean_iou"] == 0
    with pytest.raises(ValueError, match="nearest-neighbour"):
        mask_ious(grey_image(), torch.zeros(32, 32, dtype=torch.int64), NUM_CLASSES)


def test_baseline_table_separates_real_from_shuffled_with_intervals():
    images, _, _, masks = shapes_batch((64, 64), num=16)
    scores = {"own mask": mask_adherence(images, masks, NUM_CLASSES)["foreground_iou"],
              "shuffled masks": mask_adherence(images, masks.roll(1, 0), NUM_CLASSES)["foreground_iou"]}
    table = baseline_table(scores, "foreground IoU", num_resamples=200).set_index("condition")
    assert list(table.index) == ["own mask", "shuffled masks"] and (table["num_samples"] == 16).all()
    assert table.loc["own mask", "mean_ci_low"] > table.loc["shuffled masks", "mean_ci_high"]
    assert ((table["mean_ci_low"] <= table["mean"]) & (table["mean"] <= table["mean_ci_high"])).all()
    assert table.loc["own mask", "mean"] == pytest.approx(scores["own mask"].mean().item(), rel=1e-5)


def test_reports_put_real_images_on_top_and_shuffled_conditions_at_chance():
    images, boxes, _, masks = shapes_batch((64, 64), num=16)
    blank = torch.full_like(images, 128)                                 # a "model" that draws nothing
    assert shuffled([1, 2, 3]) == [2, 3, 1]
    layout = layout_report(blank, images, boxes).set_index("condition")["mean"]
    assert layout["real images"] > 0.75 and layout["generated"] == 0 == layout["generated, shuffled layouts"]
    masked = mask_report(images, images, masks, NUM_CLASSES)             # a "model" that copies the real images
    objects = masked[masked["metric"] == "object IoU"].set_index("condition")["mean"]
    assert objects["generated"] == objects["real images"] > 0.9 > 0.2 > objects["generated, shuffled masks"]
    assert set(masked["metric"]) == {"object IoU", "mean IoU"}


# ----------------------------------------------------------------------------------------------------- text
@pytest.mark.skipif("lab-clip" not in read_manifest(), reason="needs the shipped lab-clip")
def test_guidance_sweep_orders_a_fake_model_by_how_much_of_the_prompt_it_keeps():
    from ldm_lab.metrics import lab_clip_encoder

    data = ShapesDataset("val", ShapesConfig(size=(64, 64)))
    items = [data[i] for i in range(48)]
    real, prompts = torch.stack([item["image"] for item in items[:24]]), [item["caption"] for item in items[:24]]
    reference = to_uint8(torch.stack([item["image"] for item in items[24:]]))
    noise = torch.randn(real.shape, generator=torch.Generator().manual_seed(0))

    def draw(captions, scale):  # "guidance" here: how much of the true image survives the noise
        keep = scale / (1 + scale)
        return (keep * real + (1 - keep) * noise).clamp(-1, 1)

    table = guidance_sweep(draw, prompts, reference, [0.25, 4.0], lab_clip_encoder("cpu"), num_resamples=5)
    assert list(table["guidance_scale"]) == [0.25, 4.0]
    low, high = table.iloc[0], table.iloc[1]
    assert high["fid"] < low["fid"] and high["clip_score"] > low["clip_score"]
    assert (table["clip_score_ci_low"] <= table["clip_score"]).all()
    assert (table["clip_score"] <= table["clip_score_ci_high"]).all()
    assert set(table["feature_space"]) == {"lab-clip"} and set(table["num_samples"]) == {24}
