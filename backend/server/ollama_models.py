"""The model-management half of Ollama's API: list, show, ps, pull, delete, create.

``/api/create`` makes a preset (a base model plus defaults, see ``backend/library/presets``),
never a new weights file; a Go TEMPLATE is kept for reference while the model's own template
is used, and the create status stream says so. ``/api/pull`` downloads ``owner/repo:QUANT``
(default Q4_K_M) through the ``DownloadManager``, reporting progress in Ollama's shape.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from backend.errors import BackendError, InvalidRequest, ModelNotFound
from backend.library import hub
from backend.library.catalog import find_entry
from backend.library.downloads import TERMINAL, DownloadManager, DownloadProgress
from backend.library.local import LocalModel, delete_model, list_models, resolve_model
from backend.library.modelfile import (
    IGNORED_PARAMETERS,
    Modelfile,
    coerce_parameter,
    parse_modelfile,
    render_modelfile,
)
from backend.library.presets import (
    build_preset,
    delete_preset,
    find_preset,
    list_presets,
    save_preset,
)
from backend.library.quants import pick_quant
from backend.server.context import ServerContext
from backend.server.ollama_schemas import (
    CreateBody,
    NamedBody,
    PullBody,
    created_at,
    details,
    digest_of,
    header_facts,
    model_entry,
    ndjson_response,
)
from backend.server.remote_models import remote_tag_entries

router = APIRouter()


def _ctx(request: Request) -> ServerContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


# --- the model list ----------------------------------------------------------------------------

def _tags() -> dict[str, Any]:
    models = list_models()
    entries = []
    for m in models:
        if m.path.exists() and m.usable:  # a damaged download is not a model a client can use
            st = m.path.stat()
            entries.append(model_entry(m.id, m, modified=st.st_mtime,
                                       digest=digest_of(m.path, st.st_size, st.st_mtime_ns)))
    for p in list_presets():
        try:
            base = resolve_model(p.base, allow_paths=True, models=models)
        except BackendError:
            continue  # its base model was deleted: nothing could run it
        entries.append(model_entry(p.name, base, modified=p.created_at, parent=base.id,
                                   digest=digest_of(p.name, p.created_at)))
    return {"models": entries}


@router.get("/tags")
async def tags(request: Request) -> dict[str, Any]:
    listing = await asyncio.to_thread(_tags)
    listing["models"] += await remote_tag_entries(_ctx(request))
    return listing


def _show(name: str) -> dict[str, Any]:
    preset = find_preset(name)
    model = resolve_model(name)
    facts = header_facts(model.path)
    arch = facts.get("architecture", "")
    template = (preset.chat_template if preset else None) or facts.get("chat_template") or ""
    params = preset.parameters if preset else {}
    lines = [f"{k:<30} {json.dumps(v) if isinstance(v, str) else v}"
             for k, values in params.items() for v in (values if isinstance(values, list)
                                                        else [values])]
    info: dict[str, Any] = {"general.architecture": arch} if arch else {}
    if facts:
        info |= {"general.parameter_count": facts["parameter_count"],
                 f"{arch}.context_length": facts["n_ctx_train"],
                 f"{arch}.block_count": facts["n_layer"]}
    out: dict[str, Any] = {
        "modelfile": preset.modelfile if preset else render_modelfile(model.id),
        "parameters": "\n".join(lines), "template": (preset.template if preset else None)
        or template, "details": details(model, model.id if preset else ""),
        "model_info": info, "modified_at": created_at(
            preset.created_at if preset else model.path.stat().st_mtime),
        "capabilities": ["completion", *(["tools"] if "tools" in template else [])]}
    if preset is not None:
        out |= {"system": preset.system or "", "license": preset.license or "",
                "messages": [{"role": m.role, "content": m.content} for m in preset.messages]}
    return out


@router.post("/show")
async def show(body: NamedBody) -> dict[str, Any]:
    return await asyncio.to_thread(_show, body.model)


@router.get("/ps")
async def ps(request: Request) -> dict[str, Any]:
    ctx = _ctx(request)
    hosted = ctx.host.current()
    if hosted is None:
        return {"models": []}
    info = hosted.info
    model = LocalModel(hosted.name, Path(info.path), "file")
    size = model.size_bytes if model.path.exists() else 0
    ttl_s = ctx.settings.idle_ttl_minutes * 60
    if ttl_s <= 0:
        expires = created_at(10_000_000_000)  # "never", as Ollama's keep_alive -1 reports it
    else:
        idle_since = time.time() - (0 if hosted.active_requests else
                                    time.monotonic() - hosted.last_used)
        expires = created_at(idle_since + ttl_s)
    on_gpu = min(1.0, info.n_gpu_layers / max(info.n_layer, 1))
    return {"models": [{
        "name": hosted.name, "model": hosted.name, "size": size,
        "digest": digest_of(info.path, size, hosted.loaded_at), "details": details(model),
        "expires_at": expires, "size_vram": int(size * on_gpu),
        "context_length": info.n_ctx}]}


# --- managing models: pull, delete, create ----------------------------------------------------

def _hub_name(name: str) -> tuple[str, str | None]:
    """(repo, quant or None for the default) for "owner/repo:Q4_K_M", "hf.co/…", an alias."""
    name = re.sub(r"^(https?://)?(hf\.co|huggingface\.co)/", "", name.strip())
    entry = find_entry(name)
    if entry is not None and entry.alias.lower() == name.lower():
        return entry.repo, entry.default_quant
    base, _, tag = name.partition(":")
    entry = find_entry(base)
    repo = entry.repo if entry else base
    if repo.count("/") != 1:
        raise ModelNotFound(f"'{name}' is not a model Hearth can pull: name a Hugging Face "
                            "GGUF repo as owner/repo, optionally with :QUANT (like "
                            "bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M).")
    return repo, None if tag.lower() in ("", "latest") else tag


def _downloads(request: Request) -> DownloadManager:
    # The context's manager when the app shares one with the GUI; else one for this server.
    shared = getattr(_ctx(request), "downloads", None)
    if shared is not None:
        return shared  # type: ignore[no-any-return]
    if getattr(request.app.state, "downloads", None) is None:
        request.app.state.downloads = DownloadManager()
    return request.app.state.downloads  # type: ignore[no-any-return]


async def _follow(manager: DownloadManager, repo: str, quant: str | None
                  ) -> AsyncIterator[DownloadProgress]:
    """Start the download and yield its progress until it ends (the last one is terminal)."""
    options = await asyncio.to_thread(hub.list_quants, repo)
    option = pick_quant(options, quant)
    if option is None:
        have = ", ".join(o.quant for o in options) or "none"
        raise ModelNotFound(f"'{repo}' has no {quant or 'GGUF'} file. Quants there: {have}.")
    async with manager.events() as events:  # subscribed before the download starts
        download_id = manager.add(repo, option)
        progress = manager.progress(download_id)
        yield progress
        while progress.state not in TERMINAL:
            event = await anext(events)
            if event.id == download_id:
                progress = event
                yield progress


@router.post("/pull")
async def pull(body: PullBody, request: Request) -> Response:
    repo, quant = _hub_name(body.model)
    progress = _follow(_downloads(request), repo, quant)
    first = await anext(progress)  # errors before any download (no such repo) are HTTP errors

    async def updates() -> AsyncIterator[DownloadProgress]:
        try:  # closed explicitly: a client that hangs up must not leave a subscriber behind
            p = first
            yield p
            while p.state not in TERMINAL:
                p = await anext(progress)
                yield p
        finally:
            await progress.aclose()

    async def lines() -> AsyncIterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        async for p in updates():
            if p.state == "verifying":
                yield {"status": "verifying sha256 digest"}
            elif p.state not in TERMINAL:
                digest = f"sha256:{digest_of(p.repo, *p.files)}"
                yield {"status": f"pulling {digest[7:19]}", "digest": digest,
                       "total": p.bytes_total, "completed": p.bytes_done}
            elif p.state != "completed":
                yield {"error": p.error.user_message if p.error else f"The download {p.state}."}
                return
        yield {"status": "writing manifest"}
        yield {"status": "success"}

    if body.stream:
        return ndjson_response(lines())
    async for p in updates():
        if p.state in TERMINAL and p.state != "completed":
            raise p.error or InvalidRequest(f"The download {p.state}.")
    return JSONResponse({"status": "success"})


@router.delete("/delete")
async def delete(body: NamedBody, request: Request) -> Response:
    if await asyncio.to_thread(delete_preset, body.model):
        return Response(status_code=200)
    ctx = _ctx(request)
    model = await asyncio.to_thread(resolve_model, body.model)
    hosted = ctx.host.current()
    if hosted is not None and model.deletable and Path(hosted.info.path) == model.path:
        await ctx.host.unload()  # Windows can't delete a mapped file; a busy model stays
    await asyncio.to_thread(delete_model, body.model)  # refuses built-in and in-place models
    return Response(status_code=200)


def _create_spec(body: CreateBody) -> Modelfile:
    if body.files or body.adapters:
        raise InvalidRequest("Creating a model from uploaded files or adapters is not "
                             "supported: pull the model (or put its GGUF in Hearth's models "
                             "folder), then create a preset FROM its name.")
    if body.quantize:
        raise InvalidRequest("Hearth doesn't quantize models; pull the quant you want "
                             "instead (owner/repo:Q4_K_M).")
    if body.modelfile:
        return parse_modelfile(body.modelfile)
    if not body.from_:
        raise InvalidRequest("Creating a preset needs 'from' (the base model) or a "
                             "'modelfile'.")
    params: dict[str, Any] = {}
    warnings = []
    for key, value in (body.parameters or {}).items():
        name = key.lower()
        if name in IGNORED_PARAMETERS:
            warnings.append(f"parameter {name} is not supported by Hearth and was ignored.")
        elif name == "stop":
            params["stop"] = [coerce_parameter(name, v)
                              for v in (value if isinstance(value, list) else [value])]
        elif value is not None:
            params[name] = coerce_parameter(name, value)
    if any(m.role == "tool" for m in body.messages or ()):
        raise InvalidRequest("A preset's messages are system, user or assistant turns.")
    license = "\n".join(body.license) if isinstance(body.license, list) else body.license
    return Modelfile(body.from_, body.system, body.template, license, params,
                     tuple((m.role, m.content) for m in body.messages or ()), tuple(warnings))


@router.post("/create")
async def create(body: CreateBody) -> Response:
    spec = _create_spec(body)
    preset, warnings = await asyncio.to_thread(build_preset, body.model, spec)
    await asyncio.to_thread(save_preset, preset)
    if not body.stream:
        return JSONResponse({"status": "success"} | ({"warnings": warnings} if warnings else {}))
    return ndjson_response([{"status": "parsing modelfile"},
                    {"status": f"using base model {preset.base}"},
                    *({"status": f"warning: {w}"} for w in warnings),
                    {"status": f"writing preset {preset.name}"}, {"status": "success"}])
