"""Embedders (class, text, layout, segmentation, SDXL micro-conditioning) and the conditioner: shapes, declared
widths, unconditional inputs, dropout statistics, width checks and the limits on over-long inputs."""

import math

import pytest
import torch

from ldm_lab.conditioning import (
    ClassEmbedderConfig,
    Conditioner,
    ConditionerConfig,
    ConditionSpec,
    FourierEmbedderConfig,
    LayoutEmbedderConfig,
    Null,
    Output,
    SegmentationEmbedderConfig,
    TextEmbedderConfig,
    chunk_tokens,
    layout_tokens,
)
from ldm_lab.nn.embeddings import fourier_features
from ldm_lab.nn.text import TINY, TextEncoderConfig, tokenize
from ldm_lab.presets import CONDITIONERS, conditioner_config, count_parameters, get_preset

SMALL_TEXT = TextEmbedderConfig(TextEncoderConfig(width=32, num_layers=1, num_heads=2, projection_dim=16,
                                                  pad_token_id=0, return_pooled=True))


def outputs_match_declared(config, *inputs) -> dict:
    """Run an embedder and check its outputs are the kinds and widths its config declares."""
    torch.manual_seed(0)
    out = config.build()(*inputs)
    assert {kind: value.shape[1 if kind in (Output.VECTOR, Output.CONCAT) else -1]
            for kind, value in out.items() if kind is not Output.LABEL} == {
        kind: width for kind, width in config.outputs.items() if kind is not Output.LABEL}
    return out


# -- class ------------------------------------------------------------------------------------------------------

def test_class_embedder_gives_a_token_a_vector_or_the_labels():
    labels = torch.tensor([0, 3, 10])  # 10: the null class
    assert outputs_match_declared(ClassEmbedderConfig(10, 24), labels)[Output.CONTEXT].shape == (3, 1, 24)
    assert outputs_match_declared(ClassEmbedderConfig(10, 24, Output.VECTOR), labels)[Output.VECTOR].shape == (3, 24)
    passed = ClassEmbedderConfig(10, output=Output.LABEL).build()(labels)[Output.LABEL]
    assert torch.equal(passed, labels) and ClassEmbedderConfig(10, output=Output.LABEL).outputs == {Output.LABEL: 11}


def test_class_out_of_range_says_which_classes_exist():
    embedder = ClassEmbedderConfig(10, 8).build()
    with pytest.raises(ValueError, match=r"class 11 is out of range: this model has classes 0..9, and 10 means"):
        embedder(torch.tensor([1, 11]))
    with pytest.raises(ValueError, match="class -1 is out of range"):
        embedder([-1])


# -- text -------------------------------------------------------------------------------------------------------

def test_text_embedder_gives_context_and_pooled_vector_and_can_be_frozen():
    out = outputs_match_declared(SMALL_TEXT, ["a red circle", ""])
    assert out[Output.CONTEXT].shape == (2, 77, 32) and out[Output.VECTOR].shape == (2, 16)
    frozen = TextEmbedderConfig(TINY, trainable=False).build()
    assert not any(p.requires_grad for p in frozen.parameters())
    assert not frozen(["a cat"])[Output.CONTEXT].requires_grad
    assert TextEmbedderConfig(TINY).outputs == {Output.CONTEXT: 128}  # no pooled output unless the tower pools


def test_one_chunk_tokenises_as_the_text_encoder_does():
    prompts = ["a small red circle left of a large blue square", ""]
    torch.testing.assert_close(chunk_tokens(prompts)[:, 0], tokenize(prompts))


def test_a_long_prompt_is_truncated_with_a_warning_or_encoded_in_chunks():
    prompt = " ".join(["cat"] * 100)  # 100 tokens: 75 fit one window
    with pytest.warns(UserWarning, match="dropped the last 25"):
        one = chunk_tokens([prompt], chunks=1)
    assert (one[0, 0, 1:76] != 0).all() and one[0, 0, 76] == one.max()  # 75 tokens, then <end> last
    two = chunk_tokens([prompt], chunks=2)  # no warning: 150 places
    assert torch.equal(two[0, 0], one[0, 0]) and torch.equal(two[0, 1, 1:26], one[0, 0, 1:26])
    assert (two[0, 1, 27:] == 0).all()

    embedder = TextEmbedderConfig(SMALL_TEXT.encoder, chunks=2).build()
    torch.manual_seed(0)
    context = embedder([prompt, "a cat"])[Output.CONTEXT]
    assert context.shape == (2, 154, 32)
    single = TextEmbedderConfig(SMALL_TEXT.encoder).build()
    single.load_state_dict(embedder.state_dict())
    with pytest.warns(UserWarning):
        torch.testing.assert_close(context[:, :77], single([prompt, "a cat"])[Output.CONTEXT])


# -- layout -----------------------------------------------------------------------------------------------------

def test_boxes_become_corner_and_class_token_triples_then_padding():
    config = LayoutEmbedderConfig(num_classes=5, grid=4)  # positions 0..15, classes 16..20, padding 21
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.34, 0.66, 0.6, 0.99]])  # (top, left, bottom, right)
    tokens = layout_tokens(boxes, torch.tensor([2, 4]), config)
    #                                 top-left (row 0, col 0), bottom-right (3, 3), class 2; (1, 2), (2, 3), class 4
    assert tokens[:6].tolist() == [0 * 4 + 0, 3 * 4 + 3, 16 + 2, 1 * 4 + 2, 2 * 4 + 3, 16 + 4]
    assert (tokens[6:] == config.pad_token).all() and len(tokens) == 92


def test_more_than_92_layout_tokens_is_an_error_naming_the_limit():
    config = LayoutEmbedderConfig(num_classes=5)
    layout_tokens(torch.rand(30, 4), torch.zeros(30, dtype=torch.long), config)  # 90 tokens fit
    with pytest.raises(ValueError, match="31 boxes needs 93 tokens, more than the limit of 92.*at most 30 boxes"):
        layout_tokens(torch.rand(31, 4), torch.zeros(31, dtype=torch.long), config)


def test_layout_embedder_takes_ragged_batches_and_the_empty_layout():
    config = LayoutEmbedderConfig(num_classes=5, width=16, depth=1, num_heads=2)
    boxes = [torch.tensor([[0.1, 0.2, 0.5, 0.6]]), torch.zeros(0, 4)]
    labels = [torch.tensor([3]), torch.zeros(0, dtype=torch.long)]
    out = outputs_match_declared(config, boxes, labels)[Output.CONTEXT]
    assert out.shape == (2, 92, 16) and out.isfinite().all()
    assert not torch.allclose(out[0], out[1])  # the box changes the tokens


# -- segmentation -----------------------------------------------------------------------------------------------

def test_segmentation_is_one_hot_averaged_to_the_latent_size():
    segmentation = torch.zeros(1, 8, 8, dtype=torch.long)
    segmentation[0, :2, :4] = 3  # half of the top-left 4x4 cell is class 3
    out = outputs_match_declared(SegmentationEmbedderConfig(6, downsampling_factor=4), segmentation)[Output.CONCAT]
    assert out.shape == (1, 6, 2, 2)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(1, 2, 2))  # class fractions per latent cell
    assert out[0, 3, 0, 0] == 0.5 and out[0, 0, 0, 0] == 0.5 and out[0, 3, 1, 1] == 0
    with pytest.raises(ValueError, match="classes must be in 0..5"):
        SegmentationEmbedderConfig(6, 4).build()(segmentation + 3)


# -- micro-conditioning -----------------------------------------------------------------------------------------

def test_micro_conditioning_is_256_fourier_features_per_scalar():
    sizes = torch.tensor([[64, 48], [128, 128]])
    out = outputs_match_declared(FourierEmbedderConfig(2), sizes)[Output.VECTOR]
    torch.testing.assert_close(out, fourier_features(sizes.float(), 256))
    assert out.shape == (2, 512) and not torch.equal(out[0], out[1])
    assert FourierEmbedderConfig(1).build()([6.0, 2.5])[Output.VECTOR].shape == (2, 256)  # aesthetic score
    assert torch.equal(FourierEmbedderConfig(2, default=(64, 64)).build().default_input(3)[0],
                       torch.tensor([[64.0, 64.0]] * 3))


# -- the conditioner --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, context, vector", [("sdxl-base", 2048, 2816), ("sdxl-refiner", 1280, 2560)])
def test_sdxl_conditioners_build_the_paper_widths_on_the_meta_device(name, context, vector):
    preset = get_preset(name)
    config = conditioner_config(preset)
    assert config.widths() == {Output.CONTEXT: context, Output.VECTOR: vector}
    config.check(preset.unet, preset.autoencoder.embed_dim)
    with torch.device("meta"):
        conditioner = Conditioner(config)
    towers = {"sdxl-base": 123_060_480 + 694_659_840, "sdxl-refiner": 694_659_840}[name]  # CLIP-L + bigG (DESIGN §5)
    assert count_parameters(conditioner) == towers
    # SGM zeroes the base's unconditional text (force_uc_zero_embeddings=["txt"]); the refiner ("legacy") encodes
    # the negative prompt
    text_null = {"sdxl-base": Null.ZEROS, "sdxl-refiner": Null.NULL_INPUT}[name]
    assert [(s.dropped, s.null) for s in config.conditions if s.keys == ("caption",)] == [
        (text_null, text_null)] * len(preset.text_encoders)


def test_outputs_are_concatenated_as_sgm_does():
    config = ConditionerConfig((
        ConditionSpec("clip", ("caption",), TextEmbedderConfig(TextEncoderConfig(width=24, num_layers=1, num_heads=2,
                                                                                 pad_token_id=0))),
        ConditionSpec("bigg", ("caption",), SMALL_TEXT),
        ConditionSpec("size", ("original_size",), FourierEmbedderConfig(2, dim=8))))
    torch.manual_seed(0)
    conditioner = Conditioner(config)
    batch = {"caption": ["a cat", "a dog"], "original_size": torch.tensor([[64, 64], [32, 48]])}
    out = conditioner(batch, 2)
    assert out["context"].shape == (2, 77, 24 + 32) and out["y"].shape == (2, 16 + 16)
    bigg = conditioner.embedders["bigg"](batch["caption"])[Output.CONTEXT]
    torch.testing.assert_close(out["context"][..., 24:], bigg)
    torch.testing.assert_close(out["y"][:, 16:], fourier_features(batch["original_size"].float(), 8))


def test_unconditional_inputs_per_condition():
    config = ConditionerConfig((
        ConditionSpec("text", ("caption",), SMALL_TEXT, dropout=0.1),                 # empty prompt
        ConditionSpec("zeroed", ("caption",), SMALL_TEXT, unconditional=Null.ZEROS),  # SDXL's sampling
        ConditionSpec("size", ("original_size",), FourierEmbedderConfig(2, dim=8), dropped=Null.KEEP)))
    conditioner = Conditioner(config).eval()
    batch = {"caption": ["a cat", "a dog"], "original_size": torch.tensor([[64, 64], [32, 48]])}
    with torch.no_grad():
        cond, uncond = conditioner(batch, 2), conditioner.unconditional(batch, 2)
        empty = conditioner({"caption": ["", ""], "original_size": batch["original_size"]}, 2)
    torch.testing.assert_close(uncond["context"][..., :32], empty["context"][..., :32])
    assert (uncond["context"][..., 32:] == 0).all() and (uncond["y"][:, 16:32] == 0).all()
    torch.testing.assert_close(uncond["y"][:, 32:], cond["y"][:, 32:])  # size kept, as SDXL samples
    torch.testing.assert_close(uncond["y"][:, :16], empty["y"][:, :16])  # pooled empty prompt


def test_each_condition_drops_at_its_own_rate_independently():
    rates = (0.1, 0.3)
    config = ConditionerConfig(tuple(ConditionSpec(f"class{i}", (f"label{i}",), ClassEmbedderConfig(
        3, 4, Output.VECTOR), dropout=rate) for i, rate in enumerate(rates)))
    conditioner = Conditioner(config)
    n = 4000
    batch = {"label0": torch.zeros(n, dtype=torch.long), "label1": torch.zeros(n, dtype=torch.long)}
    torch.manual_seed(0)
    with torch.no_grad():
        y, null = conditioner(batch, n, dropout=True)["y"], conditioner.unconditional(batch, n)["y"]
    dropped = [(y[:, 4 * i: 4 * i + 4] == null[:, 4 * i: 4 * i + 4]).all(dim=1) for i in range(2)]
    for rate, drop in zip(rates, dropped):
        assert abs(drop.float().mean().item() - rate) < 4 * math.sqrt(rate * (1 - rate) / n)  # 4 sigma
    both = rates[0] * rates[1]
    assert abs((dropped[0] & dropped[1]).float().mean().item() - both) < 4 * math.sqrt(both * (1 - both) / n)
    assert not (conditioner(batch, n)["y"] == null).all(dim=1).any()  # without dropout every condition is kept


def test_the_refiner_is_guided_away_from_aesthetic_score_2_5_and_the_encoded_empty_or_negative_prompt():
    """SGM's refiner sampling (inference/api.py refiner(), scripts/demo/sampling.py apply_refiner): aesthetic score
    6.0, negative aesthetic score 2.5, the negative prompt encoded (no force_uc_zero_embeddings); sizes and crop
    the same in both branches. Built with lab-sdxl's small text tower in place of bigG."""
    torch.manual_seed(0)
    conditioner = Conditioner(CONDITIONERS["sdxl-refiner"](get_preset("lab-sdxl"), 0.1, False)).eval()
    batch = {"caption": ["a red circle", "a blue square"]}
    with torch.no_grad():
        cond, uncond = conditioner(batch, 2), conditioner.unconditional(batch, 2)
        empty = conditioner({"caption": ["", ""]}, 2)
        negative = conditioner.unconditional(batch, 2, negative={"caption": ["blurry", "blurry"]})
        blurry = conditioner({"caption": ["blurry", "blurry"]}, 2)
    score = slice(-256, None)   # the aesthetic score's Fourier features close y
    torch.testing.assert_close(cond["y"][:, score], fourier_features(torch.tensor([[6.0], [6.0]]), 256))
    torch.testing.assert_close(uncond["y"][:, score], fourier_features(torch.tensor([[2.5], [2.5]]), 256))
    torch.testing.assert_close(uncond["context"], empty["context"])          # the empty prompt, encoded
    torch.testing.assert_close(uncond["y"][:, :score.start], empty["y"][:, :score.start])  # pooled + size/crop
    assert uncond["context"].abs().sum() > 0
    torch.testing.assert_close(negative["context"], blurry["context"])
    torch.testing.assert_close(negative["y"][:, score], uncond["y"][:, score])


def test_an_unconditional_value_is_checked_and_a_missing_one_says_what_to_give():
    with pytest.raises(ValueError, match=r"unconditional \(2.5, 1.0\) has 2 values; give 1"):
        FourierEmbedderConfig(1, unconditional=(2.5, 1.0))
    with pytest.raises(ValueError, match=r"FourierEmbedderConfig\(unconditional=...\)"):
        FourierEmbedderConfig(1).build().null_input(1)


def drop_statistics(dropped: Null, n: int = 1000, rate: float = 0.3) -> tuple[float, float, float]:
    """Fractions of items whose context, pooled vector, and both were dropped, for one text condition."""
    config = ConditionerConfig((ConditionSpec("bigg", ("caption",), SMALL_TEXT, dropout=rate, dropped=dropped),))
    torch.manual_seed(0)
    conditioner = Conditioner(config).eval()
    batch = {"caption": ["a cat"] * n}
    with torch.no_grad():
        out, null = conditioner(batch, n, dropout=True), conditioner.unconditional(batch, n)
    context = (out["context"] == null["context"]).flatten(1).all(dim=1)
    pooled = (out["y"] == null["y"]).all(dim=1)
    return context.float().mean().item(), pooled.float().mean().item(), (context & pooled).float().mean().item()


def test_zero_dropout_draws_bigg_context_and_pooled_vector_separately_as_sgm():
    """SGM's GeneralConditioner multiplies each output of an embedder by its own Bernoulli(1 - ucg_rate) draw."""
    n, rate = 1000, 0.3
    context, pooled, both = drop_statistics(Null.ZEROS, n, rate)
    for fraction, p in ((context, rate), (pooled, rate), (both, rate**2)):
        assert abs(fraction - p) < 4 * math.sqrt(p * (1 - p) / n), (context, pooled, both)


def test_null_input_dropout_drops_all_outputs_together():
    """The empty prompt replaces the prompt (SGM's legacy_ucg_value): context and pooled vector go together."""
    context, pooled, both = drop_statistics(Null.NULL_INPUT)
    assert context == pooled == both and abs(context - 0.3) < 0.06


@pytest.mark.parametrize("name, dropped", [("sdxl-base", Null.ZEROS), ("sdxl-turbo", Null.ZEROS),
                                           ("sdxl-refiner", Null.NULL_INPUT), ("lab-sdxl", Null.NULL_INPUT)])
def test_sdxl_training_drops_the_prompt_to_what_sampling_uses(name, dropped):
    """sdxl-base samples with zeros for the unconditional text, so it trains with zeros; the refiner and the lab
    replica use the empty prompt in both."""
    config = CONDITIONERS[name](get_preset("lab-sdxl"), 0.1, False)
    text = [spec for spec in config.conditions if spec.keys == ("caption",)]
    assert text and all(spec.dropped is dropped and spec.null is dropped for spec in text)


@pytest.mark.parametrize("change, message", [
    ({"context_dim": 64}, r"context of width 128, but the U-Net expects 64.*Build the U-Net with context_dim=128"),
    ({"context_dim": None}, r"context of width 128, but the U-Net has no such input"),
    ({"y_dim": 100}, r"expects a vector condition y of width 100.*but no condition gives one"),
    ({"in_channels": 10}, r"takes 10 input channels, but the latent has 4 and the concat conditions add 5"),
])
def test_width_mismatches_say_what_to_change(change, message):
    preset = get_preset("lab-layout")  # 128-wide layout tokens
    with pytest.raises(ValueError, match=message):
        conditioner_config(preset).check(preset.unet.replace(**change), 4)


def test_a_missing_condition_names_the_batch_key():
    conditioner = Conditioner(conditioner_config(get_preset("lab-layout")))
    with pytest.raises(ValueError, match=r"'layout' needs 'boxes', 'box_labels' in the batch"):
        conditioner({"caption": ["a cat"]}, 1)


def test_class_labels_cannot_be_dropped_to_zeros():
    with pytest.raises(ValueError, match="zeros would be class 0"):
        ConditionSpec("class", ("label",), ClassEmbedderConfig(10, output=Output.LABEL), 0.1, Null.ZEROS)
