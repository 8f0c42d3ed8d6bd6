"""The Ollama-compatible API of a real `hearth serve`, hit by the unmodified `ollama` client
and by raw HTTP where the wire format itself is the point (NDJSON lines, error bodies).

Replies are kept to a few tokens: the machine running the tests may be slow and shared.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from tests.library.hub_server import MULTI_QUANTS, MULTI_REPO, Blob, HubServer, Repo, point_hub_at
from tests.server.conftest import (
    MODEL,
    HearthServer,
    free_port,
    hearth_command,
    start_hearth_server,
)

pytestmark = pytest.mark.slow

FINAL_FIELDS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                "eval_count", "eval_duration")
SHORT: dict[str, Any] = {"num_predict": 3, "temperature": 0}
HI = [{"role": "user", "content": "Hi"}]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client(hearth_server: HearthServer) -> ollama.Client:
    return ollama.Client(host=hearth_server.url, timeout=300)


def ndjson(url: str, path: str, body: dict[str, Any]
           ) -> tuple[httpx.Response, list[dict[str, Any]]]:
    with httpx.stream("POST", url + path, json=body, timeout=300) as response:
        lines = [json.loads(line) for line in response.iter_lines() if line.strip()]
    return response, lines


def test_version_list_show_and_ps(client: ollama.Client, hearth_server: HearthServer) -> None:
    assert httpx.get(f"{hearth_server.url}/api/version").json()["version"]
    listed = {m.model: m for m in client.list().models}
    assert listed[MODEL].details is not None and listed[MODEL].details.format == "gguf"
    assert listed[MODEL].size and listed[MODEL].details.quantization_level == "Q4_1"

    shown = client.show(MODEL)
    assert shown.modelinfo and shown.modelinfo["general.architecture"] == "llama"
    assert shown.template and "im_start" in shown.template
    assert shown.capabilities == ["completion"]
    assert shown.modelfile and shown.modelfile.startswith(f"FROM {MODEL}")

    running = client.ps().models
    assert [(m.model, m.context_length) for m in running] == [(MODEL, 2048)]
    assert running[0].expires_at is not None and running[0].size_vram == 0


def test_chat_non_stream_has_ollama_timings(client: ollama.Client) -> None:
    reply = client.chat(model=MODEL, messages=HI, options=SHORT)
    assert reply.message.role == "assistant" and reply.message.content
    assert reply.done and reply.done_reason in ("stop", "length")
    assert reply.eval_count is not None and 0 < reply.eval_count <= 3
    assert reply.prompt_eval_count and reply.prompt_eval_count > 5
    assert reply.total_duration and reply.total_duration >= (reply.eval_duration or 0) > 0


def test_chat_stream(client: ollama.Client) -> None:
    parts = list(client.chat(model=MODEL, messages=HI, options=SHORT, stream=True))
    assert len(parts) >= 2
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(p.message.content or "" for p in parts).strip()
    assert parts[-1].eval_count == 3 and parts[-1].message.content == ""


def test_generate_and_its_ndjson_wire_format(client: ollama.Client,
                                             hearth_server: HearthServer) -> None:
    reply = client.generate(model=MODEL, prompt="Hi", options=SHORT, system="Be brief.")
    assert reply.response and reply.context == [] and reply.done

    response, lines = ndjson(hearth_server.url, "/api/generate",
                             {"model": MODEL, "prompt": "Hi", "options": SHORT})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    *pieces, final = lines
    assert pieces and all(p["done"] is False and isinstance(p["response"], str)
                          and p["model"] == MODEL and p["created_at"].endswith("Z")
                          for p in pieces)
    assert final["done"] is True and final["done_reason"] == "length"
    assert final["context"] == [] and final["response"] == ""
    for field in FINAL_FIELDS:
        assert isinstance(final[field], int) and final[field] >= 0, field
    assert final["eval_count"] == 3


def test_raw_generate_skips_the_template(hearth_server: HearthServer) -> None:
    raw = httpx.post(f"{hearth_server.url}/api/generate", timeout=300, json={
        "model": MODEL, "prompt": "The capital of France is", "raw": True, "stream": False,
        "options": {"num_predict": 1, "temperature": 0}}).json()
    templated = httpx.post(f"{hearth_server.url}/api/generate", timeout=300, json={
        "model": MODEL, "prompt": "The capital of France is", "stream": False,
        "options": {"num_predict": 1, "temperature": 0}}).json()
    # The chat template wraps the prompt in role markers (and a default system turn).
    assert raw["prompt_eval_count"] + 10 < templated["prompt_eval_count"]


def test_format_json_schema_parses_and_json_mode_starts_an_object(client: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "boolean"}},
              "required": ["answer"]}
    reply = client.chat(model=MODEL, format=schema, options={"temperature": 0, "num_predict": 20},
                        messages=[{"role": "user", "content": "Is the sky blue? Answer as JSON."}])
    assert isinstance(json.loads(reply.message.content or "")["answer"], bool)
    assert reply.done_reason == "stop"  # the grammar closed the object, then the model stopped

    free_form = client.generate(model=MODEL, prompt="Give me JSON", format="json",
                                options={"num_predict": 2, "temperature": 0})
    assert free_form.response.lstrip().startswith("{")


def test_num_ctx_is_served_within_the_loaded_context(hearth_server: HearthServer) -> None:
    response = httpx.post(f"{hearth_server.url}/api/generate", timeout=300, json={
        "model": MODEL, "prompt": "Hi", "stream": False,
        "options": {"num_predict": 1, "num_ctx": 8192}})
    assert response.status_code == 200
    assert response.headers["x-hearth-context-length"] == "2048"


def test_empty_prompt_loads_and_form_encoded_bodies_are_refused(
        hearth_server: HearthServer) -> None:
    body = json.dumps({"model": MODEL, "stream": False})
    response = httpx.post(f"{hearth_server.url}/api/generate", content=body,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert response.json()["done_reason"] == "load"
    # `curl -d '{...}'` without -H sends a form content type, which is what a web page can
    # forge without a preflight: refused with the header to add (tests/server/
    # test_forged_requests.py covers every route).
    form = httpx.post(f"{hearth_server.url}/api/generate", content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415
    assert "-H 'Content-Type: application/json'" in form.json()["error"]


def test_errors_are_ollama_shaped(client: ollama.Client, hearth_server: HearthServer) -> None:
    url = hearth_server.url
    for method, path, body, status, words in [
        ("POST", "/api/chat", {"model": "no-such-model", "messages": HI}, 404, "no-such-model"),
        ("POST", "/api/generate", {"model": "/etc/passwd", "prompt": "x"}, 404, "passwd"),
        ("POST", "/api/show", {"model": "no-such-model"}, 404, "No model"),
        ("POST", "/api/chat", {"messages": HI}, 400, "model"),
        ("POST", "/api/chat", {"model": MODEL, "messages": HI, "format": "xml"}, 400, "format"),
        ("POST", "/api/chat", {"model": MODEL, "messages": HI,
                               "tools": [{"type": "function", "function": {"name": "f"}}]},
         400, "tools"),
        ("POST", "/api/generate", {"model": MODEL, "prompt": "x", "template": "{{ .Prompt }}"},
         400, "Go"),
        ("DELETE", "/api/delete", {"model": MODEL}, 400, "won't delete"),
        ("DELETE", "/api/delete", {"model": "no-such-model"}, 404, "no-such-model"),
        ("POST", "/api/pull", {"model": "not-a-repo"}, 404, "owner/repo"),
    ]:
        response = httpx.request(method, url + path, json=body, timeout=60)
        assert response.status_code == status, (path, body, response.text)
        error = response.json()["error"]
        assert isinstance(error, str) and words in error, (path, error)
        assert "Traceback" not in error

    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="no-such-model", messages=HI)
    assert caught.value.status_code == 404 and "no-such-model" in caught.value.error
    assert client.ps().models[0].model == MODEL  # an unknown name never unloads the model


def test_create_use_show_and_delete_a_preset(client: ollama.Client,
                                             hearth_server: HearthServer) -> None:
    name = "ollama-test-terse"
    status = client.create(model=name, from_=MODEL, system="Answer in one word.",
                           parameters={"num_predict": 2, "temperature": 0, "stop": ["\n"]},
                           messages=[{"role": "user", "content": "My name is Ada."},
                                     {"role": "assistant", "content": "Hello Ada."}])
    assert status.status == "success"
    try:
        assert name in {m.model for m in client.list().models}
        shown = client.show(name)
        assert shown.details and shown.details.parent_model == MODEL
        assert shown.parameters and "num_predict" in shown.parameters
        assert shown.modelfile and 'SYSTEM "Answer in one word."' in shown.modelfile

        same_system = [{"role": "system", "content": "Answer in one word."}, *HI]
        base = client.chat(model=MODEL, messages=same_system, options={"num_predict": 1})
        preset = client.chat(model=name, messages=HI)
        assert preset.eval_count is not None and preset.eval_count <= 2  # its num_predict
        # Its seeded turns come before the request's own.
        assert (preset.prompt_eval_count or 0) > (base.prompt_eval_count or 0) + 10
        explicit = client.chat(model=name, messages=HI, options={"num_predict": 1})
        assert explicit.eval_count == 1  # the request's own option wins

        # The same name works on the OpenAI side (resolved to its base model).
        v1 = httpx.post(f"{hearth_server.url}/v1/chat/completions", timeout=300, json={
            "model": name, "messages": HI, "max_tokens": 1})
        assert v1.status_code == 200, v1.text
    finally:
        assert client.delete(name).status == "success"
    assert name not in {m.model for m in client.list().models}
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model=name, messages=HI)
    assert caught.value.status_code == 404


def test_create_with_an_old_style_modelfile_body(hearth_server: HearthServer) -> None:
    url = hearth_server.url
    modelfile = ('FROM smollm2:135m\nPARAMETER stop "<|im_end|>"\nPARAMETER stop END\n'
                 'SYSTEM """\nLine one.\nLine two.\n"""\nTEMPLATE "{{ .Prompt }}"\n'
                 "ADAPTER ./lora.gguf\n")
    response, lines = ndjson(url, "/api/create",
                             {"name": "ollama-test-old", "modelfile": modelfile})
    assert response.status_code == 200
    statuses = [line["status"] for line in lines]
    assert statuses[0] == "parsing modelfile" and statuses[-1] == "success"
    warnings = [s for s in statuses if s.startswith("warning:")]
    assert len(warnings) == 2 and any("ADAPTER" in w for w in warnings)
    assert any("Go" in w for w in warnings)  # the TEMPLATE is kept, the model's own is used
    try:
        shown = httpx.post(f"{url}/api/show", json={"model": "ollama-test-old"}).json()
        assert shown["system"] == "Line one.\nLine two."
        assert shown["template"] == "{{ .Prompt }}"
        assert shown["parameters"].count("stop") == 2
    finally:
        assert httpx.request("DELETE", f"{url}/api/delete",
                             json={"model": "ollama-test-old"}).status_code == 200

    for body, status, words in [
        ({"model": "x-bad", "modelfile": "FROM smollm2:135m\nPARAMETR top_k 1"}, 400, "line 2"),
        ({"model": "x-bad", "from": "no-such-base"}, 404, "no-such-base"),
        ({"model": MODEL, "from": MODEL}, 400, "name of a model"),
        ({"model": "x-bad", "from": MODEL, "template": "{% for m in messages %}"}, 400,
         "template"),
        ({"model": "x-bad", "from": MODEL, "parameters": {"temperature": "hot"}}, 400,
         "temperature"),
        ({"model": "x-bad"}, 400, "'from'"),
    ]:
        response = httpx.post(f"{url}/api/create", json=body)
        assert response.status_code == status, (body, response.text)
        assert words in response.json()["error"], response.text


def test_cli_create_then_ps(hearth_server: HearthServer, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM smollm2:135m\nPARAMETER num_predict 1\nSYSTEM Be brief.\n")
    created = subprocess.run(hearth_command("create", "ollama-test-cli", "-f", str(modelfile)),
                             capture_output=True, text=True, timeout=120, cwd=REPO,
                             env={**os.environ, "HEARTH_HOME": str(hearth_server.home)})
    assert created.returncode == 0, created.stderr
    try:  # the running server sees it at once: presets are read on every request
        reply = httpx.post(f"{hearth_server.url}/api/generate", timeout=300, json={
            "model": "ollama-test-cli", "prompt": "Hi", "stream": False}).json()
        assert reply["eval_count"] == 1
    finally:
        httpx.request("DELETE", f"{hearth_server.url}/api/delete",
                      json={"model": "ollama-test-cli"})

    ps = subprocess.run(hearth_command("ps", "--url", hearth_server.url), capture_output=True,
                        text=True, timeout=60, cwd=REPO)
    assert ps.returncode == 0, ps.stderr
    assert MODEL in ps.stdout and "2048" in ps.stdout and "CPU" in ps.stdout
    nobody = f"http://127.0.0.1:{free_port()}"
    missing = subprocess.run(hearth_command("ps", "--url", nobody), capture_output=True,
                             text=True, timeout=60, cwd=REPO)
    assert missing.returncode == 1
    assert "no Hearth server is running" in missing.stderr and "Traceback" not in missing.stderr


def test_keep_alive_zero_unloads(hearth_server: HearthServer, client: ollama.Client) -> None:
    unloaded = client.generate(model=MODEL, keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert client.ps().models == []
    loaded = client.generate(model=MODEL)  # the other tests share this server: load it again
    assert loaded.done_reason == "load"
    assert [m.model for m in client.ps().models] == [MODEL]


@pytest.fixture
def pull_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[tuple[HearthServer, HubServer]]:
    """A server with no model loaded whose Hub is a loopback stand-in with small files."""
    files = {f"Multi-{q}.gguf": Blob.tiny_model(4096 * (i + 1), seed=i)
             for i, q in enumerate(MULTI_QUANTS)}
    hub = HubServer([Repo(MULTI_REPO, files)])
    point_hub_at(hub.url, monkeypatch)  # the environment the server process inherits
    server = start_hearth_server(tmp_path / "home", model=None)
    yield server, hub
    server.stop()
    hub.stop()


def test_pull_reports_progress_then_lists_and_deletes(
        pull_server: tuple[HearthServer, HubServer]) -> None:
    server, _ = pull_server
    response, lines = ndjson(server.url, "/api/pull", {"model": MULTI_REPO})
    assert response.status_code == 200
    assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
    progress = [line for line in lines if "digest" in line]
    assert progress and all(line["digest"].startswith("sha256:") for line in progress)
    assert progress[-1]["total"] == Blob.tiny_model(4096 * (MULTI_QUANTS.index("Q4_K_M") + 1),
                                                    seed=0).size
    assert not any("error" in line for line in lines)

    client = ollama.Client(host=server.url, timeout=120)
    assert client.pull(f"hf.co/{MULTI_REPO}:q8_0").status == "success"  # non-streaming
    names = {m.model for m in client.list().models}
    assert {f"{MULTI_REPO}:Q4_K_M", f"{MULTI_REPO}:Q8_0"} <= names

    assert client.delete(f"{MULTI_REPO}:Q4_K_M").status == "success"
    assert f"{MULTI_REPO}:Q4_K_M" not in {m.model for m in client.list().models}

    missing = httpx.post(f"{server.url}/api/pull", json={"model": f"{MULTI_REPO}:Q6_K"})
    assert missing.status_code == 404 and "Q4_K_M" in missing.json()["error"]
