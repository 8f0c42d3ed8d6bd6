from __future__ import annotations

import pytest

from backend.engine.stop_strings import StopMatcher


def run_chunks(stops: list[str], chunks: list[str]) -> tuple[str, bool, list[str]]:
    """Feed ``chunks``; return (all emitted text, stopped, each emitted piece)."""
    m = StopMatcher(stops)
    pieces: list[str] = []
    stopped = False
    for chunk in chunks:
        out, stopped = m.feed(chunk)
        pieces.append(out)
        if stopped:
            break
    if not stopped:
        pieces.append(m.flush())
    return "".join(pieces), stopped, pieces


def chunked(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


CASES = [
    # (stops, full text, expected output, stopped)
    (["</s>"], "hello world</s>ignored", "hello world", True),
    (["</s>"], "hello < world </", "hello < world </", False),
    (["User:", "\n\n"], "answer\n\nUser: hi", "answer", True),
    (["User:", "\n\n"], "ans User: x\n\n", "ans ", True),
    (["abcd", "bc"], "xxabcd", "xxa", True),  # "bc" completes before "abcd" does
    (["abc", "bc"], "xabcy", "x", True),  # both complete together: the earlier start wins
    (["bc", "abc"], "xabcy", "x", True),
    (["aab"], "aaab", "a", True),  # overlapping prefix: held "aa" must slide correctly
    ([], "anything </s> goes", "anything </s> goes", False),
    (["", "</s>"], "a</s>b", "a", True),  # empty stop ignored
    (["🛑"], "héllo wörld 🛑 gone", "héllo wörld ", True),
    (["終わり"], "日本語の終わ", "日本語の終わ", False),
    (["終わり"], "日本語の終わりです", "日本語の", True),
    (["STOP"], "", "", False),
]


@pytest.mark.parametrize(("stops", "text", "expected", "stopped"), CASES)
@pytest.mark.parametrize("size", [1, 2, 3, 5, 1000])
def test_chunkings_agree(
    stops: list[str], text: str, expected: str, stopped: bool, size: int
) -> None:
    out, did_stop, _ = run_chunks(stops, chunked(text, size))
    assert (out, did_stop) == (expected, stopped)


@pytest.mark.parametrize(("stops", "text", "expected", "stopped"), CASES)
def test_partial_stop_never_emitted(
    stops: list[str], text: str, expected: str, stopped: bool
) -> None:
    # Whatever has been emitted so far must be a prefix of the final answer: nothing is taken
    # back, so no piece of a stop string that later completes was ever shown.
    emitted = ""
    m = StopMatcher(stops)
    for ch in text:
        out, did_stop = m.feed(ch)
        emitted += out
        assert expected.startswith(emitted)
        if did_stop:
            break


def test_stop_split_across_deltas() -> None:
    m = StopMatcher(["<|im_end|>"])
    assert m.feed("Sure thing<|im") == ("Sure thing", False)
    assert m.feed("_en") == ("", False)
    assert m.feed("d|>more") == ("", True)
    assert m.stopped


def test_held_text_released_when_it_diverges() -> None:
    m = StopMatcher(["<|im_end|>"])
    assert m.feed("a <|im") == ("a ", False)
    assert m.feed("ag") == ("<|imag", False)


def test_flush_returns_held_text() -> None:
    m = StopMatcher(["###"])
    assert m.feed("result ##") == ("result ", False)
    assert m.flush() == "##"
    assert m.flush() == ""


def test_after_stop_feed_returns_nothing() -> None:
    m = StopMatcher(["X"])
    assert m.feed("abXcd") == ("ab", True)
    assert m.feed("more") == ("", True)
    assert m.flush() == ""


def test_no_stops_emits_immediately() -> None:
    m = StopMatcher([])
    assert m.feed("abc") == ("abc", False)
    assert m.flush() == ""


def test_multiple_stops_earliest_wins_across_chunks() -> None:
    m = StopMatcher(["world", "o w"])
    assert m.feed("hello") == ("hell", False)
    assert m.feed(" world") == ("", True)  # "o w" starts in the held-back "o"


def test_pending_stays_bounded() -> None:
    # Only the tail that could start a stop string is held, however long the reply grows.
    m = StopMatcher(["<end>"])
    for _ in range(1000):
        m.feed("<en")
        assert len(m._pending) < len("<end>")
