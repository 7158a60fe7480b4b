"""CLIP text towers: exact sizes, the tokenizer, each model's readout, and the checkpoint key maps
(checked against transformers' CLIPTextModel and open_clip's TextTransformer with random weights)."""

from dataclasses import replace

import pytest
import torch
from open_clip.transformer import TextTransformer
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from ldm_lab.convert.text import (SD1_TEXT, SDXL_TEXT, Layout, text_encoder_from_state_dict,
                                  text_encoders_from_original)
from ldm_lab.nn.text import (CLIP_L14, CLIP_L14_SDXL, END_OF_TEXT, OPENCLIP_BIGG14, OPENCLIP_H14, TINY, Activation,
                             TextEncoder, TextEncoderConfig, tokenize)

# A small tower with CLIP ViT-L/14's semantics (quick_gelu, Hugging Face padding, last layer + final norm).
SMALL = TextEncoderConfig(width=64, num_layers=3, num_heads=4, activation=Activation.QUICK_GELU, projection_dim=16)
PROMPTS = ["a red apple", "grinning face with big eyes and a small blue square on the left"]


def count(config: TextEncoderConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in TextEncoder(config).parameters())


@pytest.mark.parametrize(("config", "expected"), [
    (CLIP_L14, 123_060_480), (replace(CLIP_L14, projection_dim=768), 123_650_304),
    (OPENCLIP_H14, 354_032_640), (OPENCLIP_BIGG14, 694_659_840)])
def test_parameter_counts(config, expected):
    assert count(config) == expected


def test_openclip_counts_include_the_text_projection():
    for config in (OPENCLIP_H14, OPENCLIP_BIGG14):
        assert count(replace(config, projection_dim=None, return_pooled=False)) == (
            count(config) - config.width * config.projection_dim)


# --- tokenizer ---------------------------------------------------------------------------------------------

def test_tokenizer_is_bundled_and_pads_the_way_each_checkpoint_expects():
    open_clip_ids = tokenize(PROMPTS, pad_token_id=0)
    hf_ids = TextEncoder(replace(TINY, pad_token_id=END_OF_TEXT)).tokenize(PROMPTS)
    assert open_clip_ids.shape == hf_ids.shape == (2, 77)
    assert open_clip_ids[0, :5].tolist() == [49406, 320, 736, 3055, END_OF_TEXT]  # <start> a red apple <end>
    assert (open_clip_ids[0, 5:] == 0).all() and (hf_ids[0, 5:] == END_OF_TEXT).all()
    assert torch.equal(open_clip_ids[:, :5], hf_ids[:, :5])


def test_long_prompts_are_truncated_with_a_warning_that_counts_the_loss():
    prompt = " ".join(["apple"] * 80)  # 80 words, one token each, + <start> and <end> = 82 tokens
    with pytest.warns(UserWarning, match="dropped the last 5"):
        ids = tokenize(prompt)
    assert ids.shape == (1, 77) and ids[0, -1] == END_OF_TEXT


# --- readouts ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_encoder():
    torch.manual_seed(0)
    return TextEncoder(replace(SMALL, return_pooled=True)).eval()


def test_hidden_states_and_pooled_output_agree_with_open_clip(small_encoder):
    tokens = small_encoder.tokenize(PROMPTS)
    with torch.no_grad():
        states = small_encoder.hidden_states(tokens)
        reference = small_encoder.tower.forward_intermediates(tokens, output_fmt="NLC")
        for ours, theirs in zip(states[1:], reference["text_intermediates"], strict=True):
            torch.testing.assert_close(ours, theirs)
        torch.testing.assert_close(small_encoder(tokens).pooled, reference["text_features"])


@pytest.mark.parametrize(("hidden_layer", "final_norm"), [(-1, True), (-2, True), (-2, False)],
                         ids=["sd1", "sd2", "sdxl"])
def test_each_model_reads_its_own_layer(small_encoder, hidden_layer, final_norm):
    encoder = TextEncoder(replace(small_encoder.config, hidden_layer=hidden_layer, final_norm=final_norm))
    encoder.load_state_dict(small_encoder.state_dict())
    tokens = encoder.tokenize(PROMPTS)
    with torch.no_grad():
        state = encoder.hidden_states(tokens)[hidden_layer]
        expected = encoder.tower.ln_final(state) if final_norm else state
        torch.testing.assert_close(encoder(tokens).context, expected)
        other_layer = encoder.hidden_states(tokens)[-1 if hidden_layer == -2 else -2]
        assert not torch.allclose(encoder(tokens).context, other_layer)


def test_named_configs_read_the_layers_the_papers_use():
    assert (CLIP_L14.hidden_layer, CLIP_L14.final_norm) == (-1, True)  # SD 1.x
    assert (OPENCLIP_H14.hidden_layer, OPENCLIP_H14.final_norm) == (-2, True)  # SD 2.x
    assert (CLIP_L14_SDXL.hidden_layer, CLIP_L14_SDXL.final_norm) == (-2, False)  # SDXL
    big_g = OPENCLIP_BIGG14
    assert (big_g.hidden_layer, big_g.final_norm, big_g.return_pooled) == (-2, False, True)
    assert CLIP_L14_SDXL.width + OPENCLIP_BIGG14.width == 2048  # SDXL's context width


def test_config_errors_say_what_to_change():
    with pytest.raises(ValueError, match="projection_dim"):
        TextEncoderConfig(return_pooled=True)
    with pytest.raises(ValueError, match="num_heads"):
        TextEncoderConfig(width=100, num_heads=12)


# --- key maps ----------------------------------------------------------------------------------------------

def hf_clip(config: TextEncoderConfig) -> CLIPTextModelWithProjection:
    torch.manual_seed(1)
    return CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=49408, hidden_size=config.width, intermediate_size=4 * config.width,
        num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads, max_position_embeddings=77,
        hidden_act="quick_gelu", projection_dim=config.projection_dim)).eval()


def test_sd1_layout_gives_hugging_face_clip_hidden_states():
    reference = hf_clip(SMALL)
    checkpoint = {SD1_TEXT[0].prefix + k: v for k, v in reference.state_dict().items()}
    ours = text_encoder_from_state_dict(checkpoint, replace(SMALL, return_pooled=True), Layout.HF_CLIP,
                                        SD1_TEXT[0].prefix)
    tokens = ours.tokenize(PROMPTS)
    with torch.no_grad():
        theirs = reference(tokens, output_hidden_states=True)
        embedding = ours(tokens)
        torch.testing.assert_close(embedding.context, theirs.last_hidden_state, atol=1e-4, rtol=0)
        torch.testing.assert_close(embedding.pooled, theirs.text_embeds, atol=1e-4, rtol=0)
        for ours_state, their_state in zip(ours.hidden_states(tokens), theirs.hidden_states, strict=True):
            torch.testing.assert_close(ours_state, their_state, atol=1e-4, rtol=0)
        sdxl = text_encoder_from_state_dict(checkpoint, replace(SMALL, hidden_layer=-2, final_norm=False),
                                            Layout.HF_CLIP, SD1_TEXT[0].prefix)
        torch.testing.assert_close(sdxl(tokens).context, theirs.hidden_states[-2], atol=1e-4, rtol=0)


def test_open_clip_layout_loads_an_open_clip_tower():
    torch.manual_seed(2)
    config = replace(TINY, num_layers=2, return_pooled=True)
    reference = TextTransformer(width=config.width, heads=config.num_heads, layers=config.num_layers,
                                output_dim=config.projection_dim).eval()
    prefix = "cond_stage_model.model."
    checkpoint = {prefix + k: v for k, v in reference.state_dict().items()} | {prefix + "logit_scale": torch.ones(())}
    ours = text_encoder_from_state_dict(checkpoint, config, Layout.OPEN_CLIP, prefix)
    tokens = ours.tokenize(PROMPTS)
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens).pooled, reference(tokens))


def test_sdxl_checkpoints_are_recognised_and_mismatches_named():
    with torch.device("meta"):
        # (transformers 5's CLIPTextModel drops the "text_model." that SD/SDXL checkpoints have; this class keeps it)
        clip_l = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=768, intermediate_size=3072,
                                                            num_hidden_layers=12, num_attention_heads=12))
        big_g = TextTransformer(width=1280, heads=20, layers=32, output_dim=1280)
    checkpoint = ({SDXL_TEXT[0].prefix + k: v for k, v in clip_l.state_dict().items() if k != "text_projection.weight"}
                  | {SDXL_TEXT[1].prefix + k: v for k, v in big_g.state_dict().items()})
    first, second = text_encoders_from_original(checkpoint)
    assert (first.config, second.config) == (CLIP_L14_SDXL, OPENCLIP_BIGG14)
    with pytest.raises(ValueError, match=r"resblocks\.31"):
        text_encoder_from_state_dict(checkpoint, replace(OPENCLIP_BIGG14, num_layers=31), Layout.OPEN_CLIP,
                                     SDXL_TEXT[1].prefix)
