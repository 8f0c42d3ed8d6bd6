"""A stored conversation as the messages a model should see: one function for every front end.

The GUI's chats and ``hearth run``'s terminal chat keep their turns in the same history
(``backend/store``); both turn them into prompt messages here. The system prompt is not a
stored turn: it is the chat's setting, given to the request builder as
``RequestOptions.system_prompt``; the overflow policy is applied by the engine (it knows the
token counts).

Images attached to a user turn are read back from the data folder and sent with it as
``ImageInput`` on every later turn too (the engine's prompt cache, keyed by each image's
hash, keeps a follow-up from encoding them again). An image whose file was removed from the
data folder is left out: the turn's text still goes, and the chat stays usable.

Threading contract: pure but for reading image files; call it off the GUI thread when a chat
carries many large images (the GUI calls it in a reply's task; files are read in ms).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from backend.engine.types import ChatMessage, ImageInput
from backend.store.records import StoredImage, StoredMessage

#: Said between two user turns that are sent as one (a reply failed between them).
TURN_JOINER = "\n\n"
#: The result of a call that never ran to the end (Hearth closed during it).
NOT_RUN = "The call did not finish; it has no result."
#: Images a request may carry (``ImageSettings.max_images``'s ceiling): a chat's earlier images
#: are sent again with each turn, so a long chat sends only its latest ones.
MAX_IMAGES = 16
#: Said in place of an earlier image that is no longer sent.
IMAGE_LEFT_OUT = "[An earlier image, no longer shown to the model.]"


def prompt_messages(stored: Iterable[StoredMessage], *,
                    max_images: int = MAX_IMAGES) -> tuple[ChatMessage, ...]:
    """The stored turns the model should see: finished text only, roles alternating.

    Empty and non-chat turns are left out; a reply that failed or was interrupted before any
    text leaves two user turns in a row, which are sent as one (templates that insist on
    alternating roles would refuse them otherwise). A stopped or interrupted reply keeps the
    text it had: the person saw it, and the next turn may refer to it.

    Tool use is kept as the model made it: a reply that called tools (its calls in its
    ``stats``, see ``tool_records.py``) and then each call's result (a "tool" turn). A call
    whose result was never saved (Hearth closed mid-call) gets one saying so, since templates
    pair every call with an answer.

    Only the latest ``max_images`` images are sent (each older one becomes a note in its
    turn's text), so a chat that has seen many images stays usable instead of every later
    request being refused for carrying too many.
    """
    turns: list[ChatMessage] = []
    pending: dict[str, str] = {}  # call id → tool name, of calls not yet answered
    for message in stored:
        calls = stored_calls(message)
        if message.role == "tool":
            call_id = (message.stats or {}).get("tool_call_id")
            if call_id in pending:
                turns.append(ChatMessage("tool", message.content, tool_call_id=call_id,
                                         name=pending.pop(call_id)))
            continue
        _close_calls(turns, pending)
        if calls:
            turns.append(ChatMessage("assistant", message.content, tool_calls=calls))
            pending = {c["id"]: c["function"]["name"] for c in calls}
            continue
        images = image_inputs(message.images) if message.role == "user" else ()
        if message.role not in ("user", "assistant") or not (message.content.strip() or images):
            continue
        if turns and turns[-1].role == message.role == "user":
            joined = TURN_JOINER.join(t for t in (turns[-1].content, message.content) if t)
            turns[-1] = ChatMessage("user", joined, images=turns[-1].images + images)
            continue
        turns.append(ChatMessage(message.role, message.content,  # type: ignore[arg-type]
                                 images=images))
    _close_calls(turns, pending)
    return keep_latest_images(turns, max_images)


def keep_latest_images(turns: list[ChatMessage], limit: int) -> tuple[ChatMessage, ...]:
    """``turns`` with at most ``limit`` images, the latest; older ones said in words."""
    budget = limit
    out: list[ChatMessage] = []
    for turn in reversed(turns):
        if len(turn.images) <= budget:
            budget -= len(turn.images)
            out.append(turn)
            continue
        kept = turn.images[len(turn.images) - budget:] if budget else ()
        notes = "\n".join([IMAGE_LEFT_OUT] * (len(turn.images) - len(kept)))
        text = f"{notes}\n{turn.content}" if turn.content else notes
        out.append(ChatMessage(turn.role, text, images=kept, tool_calls=turn.tool_calls,
                               tool_call_id=turn.tool_call_id, name=turn.name))
        budget = 0
    return tuple(reversed(out))


def image_inputs(images: Iterable[StoredImage]) -> tuple[ImageInput, ...]:
    """The stored images' bytes as the engine takes them; a file that is gone is left out."""
    out = []
    for image in images:
        try:
            out.append(ImageInput(image.path.read_bytes(), image.media_type))
        except OSError:
            continue
    return tuple(out)


def stored_calls(message: StoredMessage) -> tuple[dict[str, Any], ...]:
    """The tool calls an assistant turn made, as chat templates read them (HF's shape: the
    arguments as an object)."""
    if message.role != "assistant" or not message.stats:
        return ()
    calls = message.stats.get("tool_calls")
    if not isinstance(calls, list):
        return ()
    out = []
    for call in calls:
        if isinstance(call, dict) and isinstance(call.get("id"), str) \
                and isinstance(call.get("name"), str):
            arguments = call.get("arguments")
            out.append({"id": call["id"], "type": "function", "function": {
                "name": call["name"],
                "arguments": arguments if isinstance(arguments, dict) else {}}})
    return tuple(out)


def _close_calls(turns: list[ChatMessage], pending: dict[str, str]) -> None:
    for call_id, name in pending.items():
        turns.append(ChatMessage("tool", NOT_RUN, tool_call_id=call_id, name=name))
    pending.clear()
