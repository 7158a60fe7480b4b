"""A frozen text tower memoises each prompt's embedding (ldm_lab.conditioning.text.TextEmbedder.memo): served
embeddings equal the tower's own, the memo is forgotten when the weights move, change dtype or are loaded, and a
trainable tower never memoises (its gradients must flow)."""

from dataclasses import replace

import torch

from ldm_lab.conditioning import Output
from ldm_lab.conditioning.text import TextEmbedder, TextEmbedderConfig
from ldm_lab.nn.text import TINY

POOLED_TINY = replace(TINY, num_layers=2, return_pooled=True)  # context and pooled vector: both are memoised


def embedder(trainable: bool, seed: int = 0) -> TextEmbedder:
    torch.manual_seed(seed)
    return TextEmbedderConfig(POOLED_TINY, trainable=trainable).build().eval()


def assert_same_embeddings(served: dict, expected: dict) -> None:
    assert served.keys() == expected.keys() == {Output.CONTEXT, Output.VECTOR}
    for kind in expected:
        assert served[kind].dtype == expected[kind].dtype
        # Equal up to float32 summation order: the tower ran on another batch (its distinct new prompts).
        torch.testing.assert_close(served[kind], expected[kind], rtol=1e-5, atol=1e-5)


def test_frozen_embedder_serves_what_the_tower_computes_for_repeated_and_mixed_prompts():
    text = embedder(trainable=False)
    first = ["red apple", "a cat", "red apple"]
    with torch.no_grad():
        assert_same_embeddings(text(first), text.encode(first))
        assert set(text.memo) == {"red apple", "a cat"}  # each distinct prompt once
        mixed = ["a dog", "a cat", "", "red apple", "a dog"]  # memoised and new prompts, in any order
        assert_same_embeddings(text(mixed), text.encode(mixed))
        assert_same_embeddings(text("a cat"), text.encode(["a cat"]))
    assert set(text.memo) == {"red apple", "a cat", "a dog", ""}


def test_frozen_embedder_runs_the_tower_once_per_distinct_prompt(monkeypatch):
    text = embedder(trainable=False)
    encoded = []
    encode = text.encode
    monkeypatch.setattr(text, "encode", lambda prompts: encoded.append(list(prompts)) or encode(prompts))
    text(["a cat", "a cat", "red apple"])
    text(["red apple", "a dog", "a cat"])
    assert encoded == [["a cat", "red apple"], ["a dog"]]


def test_memo_is_forgotten_when_the_weights_move_or_are_loaded():
    text = embedder(trainable=False)
    text(["a cat"])
    text.to(torch.float64)
    assert text.memo == {}
    assert text(["a cat"])[Output.CONTEXT].dtype == torch.float64  # re-encoded with the cast weights
    text.float()
    text(["a cat"])
    other = embedder(trainable=False, seed=1)
    text.load_state_dict(other.state_dict())
    assert text.memo == {}
    with torch.no_grad():
        assert_same_embeddings(text(["a cat"]), other.encode(["a cat"]))  # the loaded weights', not the old ones


def test_memo_made_under_autocast_serves_full_precision_outside_it():
    text = embedder(trainable=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        text(["a cat"])
    with torch.no_grad():
        assert_same_embeddings(text(["a cat"]), text.encode(["a cat"]))  # float32, as the float32 U-Net needs


def test_trainable_embedder_does_not_memoise_and_its_gradients_flow():
    text = embedder(trainable=True).train()
    for _ in range(2):
        context = text(["a cat", "a cat"])[Output.CONTEXT]
        assert context.requires_grad
    assert text.memo == {}
    context.sum().backward()
    tower = text.encoder.tower
    assert tower.token_embedding.weight.grad.abs().sum() > 0  # through every block, down to the embedding


def test_frozen_embedder_gives_no_gradients_to_its_tower():
    text = embedder(trainable=False)
    assert not any(p.requires_grad for p in text.parameters())
    assert not text(["a cat"])[Output.CONTEXT].requires_grad
