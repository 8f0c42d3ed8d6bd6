"""``hearth run``: one reply, or a chat in the terminal kept in the window's history.

    hearth run MODEL "prompt"      one reply (a local model, a preset, a .gguf path,
    hearth run MODEL               CONNECTION/MODEL, or --url URL MODEL); without a prompt,
                                   a chat until /bye or the end of input
    hearth run M.gguf --mmproj P   the model seeing images through projector P (this run)

Every kind of model goes the same way: the flags given become ``RequestOptions`` (a flag left
out is not an option: saved settings and the model's preset decide it, by the one request
builder's order) and ``Hearth.generate`` starts the reply. A chat is saved to the same history
as the window's, turn by turn (``ReplyRecorder``), and each turn's prompt is built from that
history (``prompt_messages``), so it reads in the window like a chat started there. Each
``hearth run`` starts a new conversation: continuing an old one is the window's job, where it
can be seen. A one-shot reply is not saved: it is what scripts and pipes use, and a history
filled with them would bury the conversations people had.

Threading: everything runs on the command's ``asyncio.run`` loop; stdin is read in a worker
thread so a reply being recorded never waits for typing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from backend.api import (
    STARTER_ID,
    ChatMessage,
    ChatStore,
    Finished,
    Generation,
    GenerationEvent,
    Grounding,
    Hearth,
    ImageInput,
    LoadedModel,
    LoadFinished,
    OverflowPolicy,
    PresetBook,
    ReplyRecorder,
    RequestOptions,
    SettingsStore,
    TextDelta,
    ToolChatRecorder,
    UrlModel,
    prompt_messages,
)
from backend.cli_docs import add_docs_flag, ground, print_sources
from backend.cli_library import add_mmproj_flag, model_for_run
from backend.cli_remote import add_remote_run_flags, remote_target
from backend.cli_tools import print_tool_reply, tool_chat
from backend.errors import BackendError, HistoryUnavailable, InvalidRequest

EXIT_ERROR = 1
# A reply's finish reason → its state in the history (as the window records it).
STATE_FOR_REASON = {"stop": "complete", "length": "complete", "cancelled": "stopped",
                    "error": "error"}


def add_run_command(sub: Any) -> None:
    run = sub.add_parser("run", help="chat with a model in the terminal")
    run.add_argument("model", help=f"a model name such as {STARTER_ID}, or a path to a .gguf")
    run.add_argument("prompt", nargs="?", help="one message; omit for an interactive chat")
    run.add_argument("--system", help="system prompt")
    run.add_argument("--ctx", type=int, default=None, help="context length (tokens; default: "
                     "the preset's num_ctx, else the saved setting, 4096 unless changed)")
    run.add_argument("--threads", type=int, default=None, help="CPU threads (default: cores)")
    run.add_argument("--gpu-layers", type=int, default=None, help="layers to offload to the "
                     "GPU (default: the planner's choice for this machine)")
    run.add_argument("--max-tokens", type=int, default=None)
    run.add_argument("--temperature", type=float, default=None, help="default: the preset's, "
                     "else the saved setting")
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--overflow", choices=[p.value for p in OverflowPolicy], default=None,
                     help="what to do when the chat outgrows the context (default: the saved "
                     "setting, truncate_middle unless changed)")
    run.add_argument("--verbose", action="store_true", help="print speed figures after replies")
    run.add_argument("--tools", action="store_true", help="let the model call the tools of "
                     "the enabled MCP servers (`hearth mcp`); each call asks you first")
    run.add_argument("--image", action="append", metavar="FILE", default=None,
                     help="an image the model sees with the prompt (or a chat's first turn): "
                     "PNG, JPEG, WebP or GIF; repeat for more; needs a vision model")
    add_mmproj_flag(run)
    add_speculative_flag(run)
    add_remote_run_flags(run)
    add_docs_flag(run)


def add_speculative_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speculative", metavar="{auto,off,ngram,draft:MODEL}", default=None,
                        help="speculative decoding: auto (default: when it pays), off, ngram "
                        "(guesses from the chat's own text) or draft:MODEL (a small model of "
                        "the same family drafts)")


def speculative_settings(value: str | None) -> dict[str, Any]:
    """The engine settings ``--speculative`` stands for (none when not given)."""
    if value is None:
        return {}
    mode, _, draft = value.partition(":")
    if mode not in ("auto", "off", "ngram", "draft") or (mode == "draft") != bool(draft):
        raise InvalidRequest(f"--speculative takes auto, off, ngram or draft:MODEL, not "
                             f"{value!r}.")
    return {"speculative": mode, "draft_model": draft or None}


def say_speculation(info: LoadedModel) -> None:
    """Why speculation or the draft model asked for is not in use, said once after a load."""
    if info.speculation_note:
        print(f"warning: {info.speculation_note}", file=sys.stderr)


def request_options(args: argparse.Namespace) -> RequestOptions:
    """The flags that were given, and only those: the rest is the request builder's to fill."""
    return RequestOptions(
        temperature=args.temperature, seed=args.seed, max_tokens=args.max_tokens,
        overflow=OverflowPolicy(args.overflow) if args.overflow else None,
        system_prompt=args.system or None)


def _open_hearth(args: argparse.Namespace) -> Hearth:
    """A Hearth loading with one slot (one person chatting), the context the flags or the
    preset ask for, and the flags' threads and GPU layers over the saved engine settings."""
    settings = SettingsStore.open()
    if args.mmproj:  # the pairing is this run's, like the other flags: never saved
        settings = SettingsStore.in_memory(settings.snapshot())
    preset = PresetBook(settings).find(args.model)
    engine = settings.snapshot().engine
    n_ctx = args.ctx or (preset.parameters.get("num_ctx") if preset else None) or engine.n_ctx
    flags = {"threads": args.threads, "gpu_layers": args.gpu_layers}
    return Hearth(settings, engine_settings=engine.model_copy(update={
        "n_ctx": n_ctx, "parallel": 1, **{k: v for k, v in flags.items() if v is not None},
        **speculative_settings(args.speculative)}))


async def run_command(args: argparse.Namespace) -> int:
    hearth = _open_hearth(args)
    try:
        # Read first: a missing or unreadable image is said before a model loads.
        images = tuple(hearth.images.from_file(p) for p in args.image or ())
        target = remote_target(args, hearth)
        if target is not None and args.mmproj:
            raise InvalidRequest("--mmproj pairs a projector with a model on this machine; a "
                                 "remote model sees images (or not) through its own server. "
                                 "Drop --mmproj, or run a local model.")
        preset: str | None = None
        if target is None:  # a local model: loaded first, so a missing or broken file is
            # said before any prompt, with this run's load settings (not the server's JIT)
            local = model_for_run(hearth, args.model, args.mmproj)
            info = await hearth.load(local)
            say_speculation(info)
            finished = hearth.load_events.last
            if args.verbose and isinstance(finished, LoadFinished):
                print(finished.summary, file=sys.stderr)
            # The loaded model answers to its id; the name typed may be a preset of it.
            target, preset, shown = local.id, args.model, info.model_id
        else:
            shown = target.model if isinstance(target, UrlModel) else target
        reply = Replier(hearth, target, preset, request_options(args), args.verbose,
                        tools=args.tools, docs=tuple(args.docs or ()), images=images)
        if args.prompt is not None:
            return 0 if await reply.once(args.prompt) else EXIT_ERROR
        return await chat_loop(reply, _history(hearth), shown)
    finally:
        hearth.close()


def _history(hearth: Hearth) -> ChatStore:
    try:
        return hearth.history
    except HistoryUnavailable as exc:  # chatting matters more than keeping the chat
        print(f"warning: {exc.user_message} This chat won't be saved.", file=sys.stderr)
        return ChatStore(Path(":memory:"))


class Replier:
    """Starts replies from one model with the command's options, and prints them."""

    def __init__(self, hearth: Hearth, model: str | UrlModel, preset: str | None,
                 options: RequestOptions, verbose: bool, *, tools: bool = False,
                 docs: tuple[str, ...] = (), images: tuple[ImageInput, ...] = ()) -> None:
        self._hearth = hearth
        self._images = images  # go with the prompt, or the chat's first turn
        self._model = model
        self._preset = preset
        self._options = options
        self._verbose = verbose
        self._tools = tools
        self._docs = docs  # knowledge collections the answers draw on (--docs)
        self._grounding: Grounding | None = None  # the last question's sources

    async def _start(self, messages: tuple[ChatMessage, ...]) -> Generation:
        if self._docs:  # the question goes with its best passages; the history keeps it bare
            name = self._model.model if isinstance(self._model, UrlModel) else self._model
            self._grounding = await ground(self._hearth, name, messages, self._docs)
            messages = self._grounding.messages
        return await self._hearth.generate(self._model, messages=messages,
                                           options=self._options, preset=self._preset,
                                           load_if_needed=True)

    async def once(self, prompt: str) -> bool:
        """One reply, printed; whether it ended without an error."""
        if self._tools:
            chat = tool_chat(self._hearth, self._model, self._preset,
                             (ChatMessage("user", prompt, images=self._images),),
                             self._options)
            async with chat:
                ended = await print_tool_reply(chat)
            return ended is not None and ended.error is None
        generation = await self._start((ChatMessage("user", prompt, images=self._images),))
        async with generation:
            final = await print_reply(generation, self._verbose)
        if self._grounding is not None:
            print_sources(self._grounding.citations)
        return final is not None and final.error is None

    async def turn(self, store: ChatStore, conversation_id: int, text: str, model: str
                   ) -> None:
        """Add ``text`` to the conversation, then stream and record the reply to it. A turn
        refused before any text (too long, a bad key…) is taken back out and raised."""
        sent = store.add_message(conversation_id, "user", text,
                                 images=[image.data for image in self._images])
        if self._tools:
            self._images = ()  # kept in the history from now on
            return await self._tool_turn(store, conversation_id, sent.id, model)
        try:
            generation = await self._start(prompt_messages(store.messages(conversation_id)))
        except BaseException:
            store.delete_message(sent.id)
            raise
        self._images = ()  # kept in the history from now on
        placeholder = store.add_message(conversation_id, "assistant", "", state="streaming")
        recorder = ReplyRecorder(store, placeholder.id)
        state = "error"  # unless it ends properly, or is stopped
        stats: dict[str, Any] | None = None
        try:
            async with generation:
                final = await print_reply(generation, self._verbose, recorder.append)
            if final is not None:
                state = STATE_FOR_REASON.get(final.finish_reason, "complete")
                stats = reply_stats(final, model)
                if self._grounding is not None:  # the history keeps the reply's sources
                    stats |= self._grounding.stats()
        except (asyncio.CancelledError, KeyboardInterrupt):  # Ctrl+C: the person stopped it
            state = "stopped"
            raise
        finally:
            recorder.finish(state, stats)


    async def _tool_turn(self, store: ChatStore, conversation_id: int, sent_id: int,
                         model: str) -> None:
        """A turn whose reply may call tools; calls and results are saved with it."""
        chat = tool_chat(self._hearth, self._model, self._preset,
                         prompt_messages(store.messages(conversation_id)), self._options)
        recorder = ToolChatRecorder(store, conversation_id, model)
        try:
            async with chat:
                await print_tool_reply(chat, recorder)
        except BackendError:
            if store.messages(conversation_id)[-1].id == sent_id:  # refused before a reply
                store.delete_message(sent_id)
            raise


def reply_stats(final: Finished, model: str) -> dict[str, Any]:
    """What the window keeps with a reply (its footer shows them)."""
    usage = final.usage
    stats: dict[str, Any] = {
        "model": model, "finish_reason": final.finish_reason,
        "prompt_tokens": usage.prompt_tokens, "cached_prompt_tokens": usage.cached_prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "time_to_first_token_s": usage.time_to_first_token_s,
        "decode_tokens_per_s": usage.decode_tokens_per_s,
        "messages_dropped": usage.messages_dropped,
        "draft_tokens": usage.draft_tokens, "draft_accepted": usage.draft_accepted}
    if final.error is not None:
        stats["error"] = final.error.user_message
    return stats


async def print_reply(events: AsyncIterator[GenerationEvent], verbose: bool,
                      on_text: Callable[[str], None] | None = None) -> Finished | None:
    """Print a reply as it streams (each piece also to ``on_text``); returns how it ended."""
    final: Finished | None = None
    async for event in events:
        if isinstance(event, TextDelta):
            if on_text is not None:
                on_text(event.text)
            sys.stdout.write(event.text)
            sys.stdout.flush()
        elif isinstance(event, Finished):
            final = event
            sys.stdout.write("\n")
            if event.error is not None:
                print(f"error: {event.error.user_message}", file=sys.stderr)
            if verbose:
                u = event.usage
                drafts = (f"{u.draft_accepted}/{u.draft_tokens} drafted tokens accepted, "
                          if u.draft_tokens else "")
                print(f"[{u.completion_tokens} tokens, {u.decode_tokens_per_s:.1f} tok/s, "
                      f"first token {u.time_to_first_token_s * 1000:.0f} ms, "
                      f"{u.cached_prompt_tokens}/{u.prompt_tokens} prompt tokens cached, "
                      f"{drafts}{event.finish_reason}]", file=sys.stderr)
    return final


async def chat_loop(reply: Replier, store: ChatStore, model: str) -> int:
    """Until /bye or the end of input. The conversation is made with the first turn that
    is answered, so a chat left (or refused) at once leaves nothing behind."""
    interactive = sys.stdin.isatty()
    conversation_id: int | None = None
    while True:
        if interactive:
            sys.stdout.write(">>> ")
            sys.stdout.flush()
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line or line.strip() == "/bye":
            return 0
        if not line.strip():
            continue
        if conversation_id is None:
            conversation_id = store.create_conversation(model).id
        try:
            await reply.turn(store, conversation_id, line.rstrip("\n"), model)
        except BackendError as exc:  # say so, keep chatting
            print(f"error: {exc.user_message}", file=sys.stderr)
            if not store.messages(conversation_id):
                store.delete_conversation(conversation_id)
                conversation_id = None
