"""Every registry answers an unknown name the same way: the name it probably meant, then every valid one."""

import pytest

from ldm_lab.data import build_dataset
from ldm_lab.diffusion.samplers import SAMPLERS, get_sampler
from ldm_lab.names import closest_names, unknown_name_error
from ldm_lab.presets import get_preset
from ldm_lab.profiles import check_profile
from ldm_lab.tasks.targets import get_target


def test_closest_names_prefers_what_the_name_begins_then_the_closest_spelling():
    assert closest_names("sdxl", ["sd15", "sdxl-base", "sdxl-refiner"]) == ["sdxl-base", "sdxl-refiner"]
    assert closest_names("sdxl-bse", ["sd15", "sdxl-base", "sdxl-refiner"]) == ["sdxl-base"]
    assert closest_names("zzz", ["sd15", "sdxl-base"]) == []
    assert closest_names("", ["sd15"]) == []


def test_unknown_name_error_lists_the_choices_and_the_advice():
    error = unknown_name_error("colour", "gren", ["red", "green"], advice="Add yours to COLOURS.")
    assert str(error) == "unknown colour 'gren'. Did you mean 'green'? Valid colours: red, green. Add yours to COLOURS."
    assert str(unknown_name_error("colour", "x", ["red"], listing="red (255, 0, 0)")) == (
        "unknown colour 'x'. Valid colours: red (255, 0, 0).")


@pytest.mark.parametrize(("lookup", "typo", "expected"), [
    (get_preset, "sdxl-bse", "unknown preset 'sdxl-bse'. Did you mean 'sdxl-base'? Valid presets: "),
    (get_target, "lab-clas", "unknown training target 'lab-clas'. Did you mean 'lab-class'? Valid training targets: "),
    (get_sampler, "eulr", "unknown sampler 'eulr'. Did you mean 'euler'? Valid samplers: "),
    (check_profile, "laptp", "unknown profile 'laptp'. Did you mean 'laptop'? Valid profiles: smoke, laptop, gpu."),
    (lambda name: build_dataset(name, "train", (32, 32)), "emojis",
     "unknown dataset 'emojis'. Did you mean 'emoji'? Valid datasets: emoji, emoji_base, emoji_multiscale, fashion_mnist, shapes"),
])
def test_every_registry_suggests_the_name_it_probably_meant(lookup, typo, expected):
    with pytest.raises(ValueError) as error:
        lookup(typo)
    assert str(error.value).startswith(expected)


def test_the_sampler_error_still_offers_an_update_rule():
    with pytest.raises(ValueError, match=r"Valid samplers: .*Or pass an update rule such as EulerAncestral"):
        get_sampler("nope")
    assert "euler" in SAMPLERS
