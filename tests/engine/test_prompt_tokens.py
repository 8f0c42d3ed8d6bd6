"""Tokenizing only a prompt's new tail gives exactly the tokens of tokenizing it whole.

Real vocabularies: SmolLM2's (BPE, ChatML specials) and Gemma 3's (SPM, <start_of_turn>
specials, and runs of newlines, spaces and tabs that are user-defined tokens). Random chats
grow turn by turn, get edited in the middle, shrink, and carry text that looks like special
tokens; every prompt must tokenize as ``model.tokenize`` would.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest

from backend.engine.native import NativeModel
from backend.engine.prompt_tokens import PromptTokenizer, common_prefix_length

PIECES = ["Hello", " world", "!", "\n", "\n\n", "\n\n\n", "   ", "\t", "\t\t", " ", "é", "日本語",
          "🙂", "<", ">", "<|im_", "im_end|>", "<|im_end|>", "<|im_start|>", "<start_of",
          "_turn>", "<start_of_turn>", "<end_of_turn>", "<bos>", "model", "user", "```py\n",
          "def f(x):\n    return x\n", "1,234", "’", "  \n  ", "end"]

Render = Callable[[list[tuple[str, str]], bool], str]


def chatml(messages: list[tuple[str, str]], generation_prompt: bool) -> str:
    text = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in messages)
    return text + ("<|im_start|>assistant\n" if generation_prompt else "")


def gemma(messages: list[tuple[str, str]], generation_prompt: bool) -> str:
    text = "".join(f"<start_of_turn>{'model' if role == 'assistant' else role}\n{content}"
                   "<end_of_turn>\n" for role, content in messages)
    return text + ("<start_of_turn>model\n" if generation_prompt else "")


@pytest.fixture(scope="module", params=["smollm2", "gemma"])
def model(request: pytest.FixtureRequest) -> Iterator[NativeModel]:
    loaded = NativeModel(request.getfixturevalue(f"{request.param}_path"))
    yield loaded
    loaded.close()


def whole(model: NativeModel, text: str) -> list[int]:
    return model.tokenize(text, add_bos=model.add_bos, parse_special=True)


def content(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 40)))


@pytest.mark.parametrize("render", [chatml, gemma], ids=["chatml", "gemma-turns"])
def test_growing_edited_and_shrinking_chats_tokenize_as_a_whole(model: NativeModel,
                                                                render: Render) -> None:
    rng = random.Random(7)
    prompts = PromptTokenizer(model, capacity=4)
    reused = 0
    for _ in range(25):
        messages = [("system", "You are a helpful assistant. " + content(rng))]
        for _turn in range(rng.randint(2, 6)):
            messages.append(("user", content(rng)))
            text = render(messages, True)
            assert prompts.tokenize(text) == whole(model, text)
            reused += prompts.reused_tokens
            messages.append(("assistant", content(rng)))
        if rng.random() < 0.5:  # an edit in the middle, then the rest again
            i = rng.randrange(1, len(messages))
            messages[i] = (messages[i][0], content(rng))
        if rng.random() < 0.5:  # back to an earlier point (regenerate, delete)
            messages = messages[: rng.randrange(1, len(messages))]
        text = render(messages, rng.random() < 0.5)
        assert prompts.tokenize(text) == whole(model, text)
        assert prompts.tokenize(text) == whole(model, text)  # the same text again
    assert reused > 0  # the point of it: follow-up turns reuse what was tokenized


def test_raw_text_with_special_lookalikes_tokenizes_as_a_whole(model: NativeModel) -> None:
    rng = random.Random(11)
    prompts = PromptTokenizer(model)
    text = "Start " * 20
    for _ in range(200):
        text += content(rng)
        if rng.random() < 0.1:
            text = text[: rng.randrange(len(text) + 1)]
        assert prompts.tokenize(text) == whole(model, text), text[-200:]


def test_a_cut_is_refused_where_a_longer_special_token_could_cover_it(
        model: NativeModel) -> None:
    prompts = PromptTokenizer(model)
    specials = model.special_texts()
    by_text = {text: token for token, text in specials.items()}
    # Chat markers, whitespace runs and a sample of the rest (Gemma has 6,414 of them).
    checked = [t for t in by_text if "turn" in t or "im_" in t or not t.strip()][:60]
    checked += random.Random(5).sample(sorted(by_text), min(40, len(by_text)))
    for text in checked:
        token = by_text[text]
        covered = any(other != text and len(other) >= len(text) and (
            text in other[:-1] or any(other.startswith(text[j:]) for j in range(1, len(text))))
            for other in specials.values())
        if covered or text in ("<|im_end|>", "<end_of_turn>"):
            assert prompts._safe_cut(token) is not covered, text
    if "\n\n" in by_text:  # Gemma: "\n\n\n" contains "\n\n" with more after it
        assert not prompts._safe_cut(by_text["\n\n"])


@pytest.mark.parametrize(("a", "b", "n"), [("", "", 0), ("abc", "abc", 3), ("abc", "abd", 2),
                                          ("ab", "abc", 2), ("x" * 5000 + "y", "x" * 5001, 5000),
                                          ("é🙂a", "é🙂b", 2)])
def test_common_prefix_length(a: str, b: str, n: int) -> None:
    assert common_prefix_length(a, b) == n
