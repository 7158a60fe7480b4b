import numpy as np
import pytest
import torch
from PIL import Image

from ldm_lab.data import shapes
from ldm_lab.data.shapes import COLOURS, KINDS, ShapesConfig, ShapesDataset

CROPPED = ShapesConfig(size=(48, 64), original_scale=(0.3, 2.0), max_aspect_change=1.6)


def items(config=ShapesConfig(), split="train", count=24):
    data = ShapesDataset(split, config)
    return [data[i] for i in range(count)]


def test_deterministic_per_seed_and_split():
    a, b = items(count=4), items(count=4)
    for x, y in zip(a, b):
        assert torch.equal(x["image"], y["image"]) and x["caption"] == y["caption"]
    other_seed = items(ShapesConfig(seed=1), count=4)
    val = items(split="val", count=4)
    assert not torch.equal(a[0]["image"], other_seed[0]["image"])
    assert not torch.equal(a[0]["image"], val[0]["image"])
    # item i does not depend on which items were drawn before it
    assert torch.equal(ShapesDataset("train")[3]["image"], a[3]["image"])


@pytest.mark.parametrize("config", [ShapesConfig(), ShapesConfig(size=(40, 72)), CROPPED],
                         ids=["square", "wide", "cropped"])
def test_every_box_encloses_its_objects_pixels(config):
    data = ShapesDataset("train", config)
    for index in range(24):
        item, scene = data[index], data.scene(index)
        height, width = config.size
        visible = [k for k in range(1, len(scene.shapes) + 1) if (item["instances"] == k).any()]
        for box, kind, k in zip(item["boxes"], item["box_labels"], item["box_instances"]):
            rows, cols = torch.nonzero(item["instances"] == k, as_tuple=True)
            top, left, bottom, right = (box * torch.tensor([height, width, height, width])).tolist()
            assert KINDS[kind] == scene.shapes[k - 1].kind
            if len(rows):
                assert np.floor(top) <= rows.min() and rows.max() < np.ceil(bottom), (index, k)
                assert np.floor(left) <= cols.min() and cols.max() < np.ceil(right), (index, k)
        assert set(visible) <= set(item["box_instances"].tolist())


def test_segmentation_agrees_with_rendered_colours():
    data = ShapesDataset("train")
    for index in range(24):
        item, scene = data[index], data.scene(index)
        pixels = ((item["image"].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
        instances = item["instances"].numpy()
        # interior pixels (two pixels from any other instance) carry exactly the shape's colour
        padded = np.pad(instances, 2, mode="edge")
        same = np.ones_like(instances, bool)
        for dr in range(5):
            for dc in range(5):
                same &= padded[dr:dr + instances.shape[0], dc:dc + instances.shape[1]] == instances
        for k, shape in enumerate(scene.shapes, start=1):
            interior = same & (instances == k)
            assert (pixels[interior] == COLOURS[shape.colour]).all()
            assert (item["segmentation"].numpy()[instances == k] == 1 + KINDS.index(shape.kind)).all()
        assert (item["segmentation"].numpy()[instances == 0] == 0).all()


def test_edges_are_anti_aliased():
    rendering = shapes.render(ShapesDataset("train").scene(0), (64, 64))
    colours = {tuple(c) for c in COLOURS.values()}
    boundary = rendering.instances != np.roll(rendering.instances, 1, axis=1)
    edge_pixels = [tuple(p) for p in rendering.image[boundary]]
    assert sum(p not in colours for p in edge_pixels) > len(edge_pixels) // 4  # mixed, not hard-stepped


def test_crop_and_size_metadata_reproduce_the_pixels():
    data = ShapesDataset("train", CROPPED)
    seen_small = seen_crop = False
    for index in range(24):
        item, scene = data[index], data.scene(index)
        original, crop, target = item["original_size"], item["crop_top_left"], item["target_size"]
        assert target == (48, 64) and item["image"].shape == (3, 48, 64)
        # redo it by hand: render at the original size, resize to cover the target, crop at (top, left)
        resized = shapes.covering_size(original, target)
        assert (resized[0] == target[0] or resized[1] == target[1]) and min(resized[0] - target[0],
                                                                            resized[1] - target[1]) == 0
        photo = Image.fromarray(shapes.render(scene, original).image)
        if photo.size != (resized[1], resized[0]):
            photo = photo.resize((resized[1], resized[0]), Image.Resampling.BICUBIC)
        expected = np.asarray(photo)[crop[0]:crop[0] + target[0], crop[1]:crop[1] + target[1]]
        got = ((item["image"].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()
        assert np.array_equal(got, expected)
        seen_small |= min(original) < min(target)
        seen_crop |= crop != (0, 0)
    assert seen_small and seen_crop  # the config really exercises upscaling and cropping


def test_bad_crop_is_a_clear_error():
    scene = ShapesDataset("train").scene(0)
    with pytest.raises(ValueError, match="top must be in"):
        shapes.render_view(scene, (64, 64), (32, 32), (40, 0))


def test_captions_and_labels_follow_the_scene():
    data = ShapesDataset("train")
    for index in range(24):
        item, scene = data[index], data.scene(index)
        for shape in scene.shapes:
            assert f"{shape.size} {shape.colour} {shape.kind}" in item["caption"]
        assert KINDS[item["label"]] == max(scene.shapes, key=lambda s: s.radius).kind
    two = next(data.scene(i) for i in range(100) if len(data.scene(i).shapes) == 2)
    assert any(word in shapes.caption(two) for word in ("left of", "right of", "above", "below"))


def test_batches_keep_ragged_boxes_as_lists():
    from torch.utils.data import DataLoader

    from ldm_lab.data import collate

    batch = next(iter(DataLoader(ShapesDataset("train", CROPPED), batch_size=8, collate_fn=collate)))
    assert batch["image"].shape == (8, 3, 48, 64) and batch["label"].shape == (8,)
    assert batch["original_size"].shape == (8, 2) and batch["crop_top_left"].dtype == torch.int64
    assert isinstance(batch["boxes"], list) and all(b.shape[-1] == 4 for b in batch["boxes"])
    assert isinstance(batch["caption"], list) and len(batch["caption"]) == 8


def test_build_dataset_maps_val_to_the_held_out_split_and_checks_the_size():
    from ldm_lab.data import build_dataset

    data = build_dataset("shapes", "val", (32, 48))
    assert data.split == "val" and data[0]["image"].shape == (3, 32, 48)
    with pytest.raises(ValueError, match="square"):
        build_dataset("fashion_mnist", "train", (28, 32))
    with pytest.raises(ValueError, match="Valid datasets: emoji, emoji_base, emoji_multiscale, fashion_mnist, shapes"):
        build_dataset("cifar", "train", (32, 32))
