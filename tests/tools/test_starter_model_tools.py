"""Tools on the starter model, end to end: the lazy grammar makes SmolLM2-135M write a valid
call once it starts one (its template comes from a Modelfile, ``notetaker.Modelfile``), and
``hearth run --tools`` and ``hearth mcp`` work as a person types them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from backend.api import (
    ChatMessage,
    ChatStore,
    Hearth,
    RequestOptions,
    TextDelta,
    ToolCallFinished,
    ToolCallRequested,
    ToolTurn,
)
from backend.paths import hearth_paths
from tests.tools.conftest import SERVERS, stdio_server

MODELFILE = Path(__file__).parent / "notetaker.Modelfile"
ASK = "Save a note that says: buy milk."


def hearth_cli(*args: str, stdin: str = "", timeout: float = 240
               ) -> subprocess.CompletedProcess[str]:
    # HEARTH_HOME is the test's own (tests/conftest.py sets it in os.environ).
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_the_grammar_makes_the_starter_model_call_validly(tmp_path: Path) -> None:
    """Unconstrained, this model starts ``<tool_`` and wanders off (``<tool_buy_milk>``);
    with the grammar the call it starts is one the notes server accepts."""
    notes = tmp_path / "notes.json"
    hearth = Hearth()
    try:
        hearth.settings.update(engine={"threads": 2, "n_ctx": 2048}, tools={"max_steps": 2})
        hearth.presets.create("notetaker", MODELFILE.read_text(encoding="utf-8"))
        hearth.tools.add(stdio_server("notes", NOTES_FILE=str(notes)), confirmed=True)

        async def allow(_request: ToolCallRequested) -> str:
            return "once"

        async def chat() -> list[object]:
            events: list[object] = []
            async with hearth.chat_with_tools(
                    "notetaker", messages=[ChatMessage("user", ASK)],
                    options=RequestOptions(max_tokens=80, temperature=0),
                    approve=allow, load_if_needed=True) as tool_chat:  # type: ignore[arg-type]
                async for event in tool_chat:
                    events.append(event)
            return events

        events = asyncio.run(chat())
    finally:
        hearth.close()
    turn = next(e for e in events if isinstance(e, ToolTurn))
    assert turn.calls[0]["name"] == "add_note"
    done = next(e for e in events if isinstance(e, ToolCallFinished))
    assert done.status == "ok" and done.result.startswith("Saved note 1:")
    assert "milk" in json.loads(notes.read_text())[0]
    shown = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "<tool_call>" not in shown and shown.strip()  # the call was a card, then an answer


def test_hearth_run_tools_end_to_end(tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    created = hearth_cli("create", "notetaker", "-f", str(MODELFILE))
    assert created.returncode == 0, created.stderr
    added = hearth_cli("mcp", "add", "notes", "--env", f"NOTES_FILE={notes}", "--",
                       sys.executable, str(SERVERS / "notes.py"))
    assert added.returncode == 0, added.stderr
    assert f"will run `{sys.executable} {SERVERS / 'notes.py'}` with your rights" in \
        added.stdout
    # Interactive: the question, "y" to the card, then /bye.
    run = hearth_cli("run", "--tools", "notetaker", "--max-tokens", "80", "--threads", "2",
                     stdin=f"{ASK}\ny\n/bye\n")
    assert run.returncode == 0, run.stderr
    assert '[tool] notes: add_note {"text": "buy milk' in run.stderr
    assert "→ ok" in run.stderr and "Saved note 1:" in run.stderr
    assert "<tool_call>" not in run.stdout and "milk" in json.loads(notes.read_text())[0]
    # The calls and results are in the history, and in its exports.
    store = ChatStore.open_default()
    try:
        conv = store.list_conversations()[0]
        roles = [m.role for m in store.messages(conv.id)]
        assert roles == ["user", "assistant", "tool", "assistant"]
        assert "## Tool: add_note (notes)" in store.export_markdown(conv.id)
    finally:
        store.close()


def test_hearth_mcp_commands(tmp_path: Path) -> None:
    server = {"command": sys.executable, "args": [str(SERVERS / "notes.py")],
              "env": {"NOTES_FILE": str(tmp_path / "n.json"), "NOTES_TOKEN": "s3cret"}}
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"first": server, "second": server}}))
    # Asked per server: yes to the first, no to the second.
    imported = hearth_cli("mcp", "import", str(config), stdin="y\nn\n")
    assert imported.returncode == 0, imported.stderr
    assert f"first runs, with your rights:\n    {sys.executable} " in imported.stdout
    assert "Added first." in imported.stdout and "Skipped second." in imported.stdout
    assert "1 of 2 servers added." in imported.stdout
    listed = hearth_cli("mcp", "list")
    assert "first" in listed.stdout and "connected, 2 tools" in listed.stdout, listed.stderr
    assert "s3cret" not in (hearth_paths().config_dir / "settings.json").read_text()
    tools = hearth_cli("mcp", "tools", "first")
    assert "add_note" in tools.stdout and "search_notes" in tools.stdout
    assert hearth_cli("mcp", "import", str(config), "--yes").stdout.endswith(
        "2 of 2 servers added.\n")
    assert hearth_cli("mcp", "rm", "second").returncode == 0
    gone = hearth_cli("mcp", "tools", "second")
    assert gone.returncode != 0 and "no MCP server named 'second'" in gone.stderr
    bad = hearth_cli("mcp", "add", "x y", "--", "true")
    assert bad.returncode != 0 and "server name" in bad.stderr

