"""The model-management half of Ollama's API: list, show, ps, delete, create (pull: in
``ollama_pull``).

``/api/create`` makes a preset (a base model plus defaults) through ``Hearth.presets``, never a
new weights file; a Go TEMPLATE is kept for reference while the model's own template is used,
and the create status stream says so.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from backend.api import (
    IGNORED_PARAMETERS,
    Hearth,
    LocalModel,
    Modelfile,
    capabilities,
    coerce_parameter,
    parse_modelfile,
    render_modelfile,
)
from backend.errors import BackendError, InvalidRequest
from backend.server import ollama_pull
from backend.server.access_log import hearth_of, log_model
from backend.server.ollama_schemas import (
    CreateBody,
    CreateRequest,
    NamedBody,
    created_at,
    details,
    digest_of,
    header,
    model_entry,
    ndjson_response,
)
from backend.server.remote_models import remote_tag_entries

router = APIRouter()
router.include_router(ollama_pull.router)


# --- the model list ----------------------------------------------------------------------------

def _tags(hearth: Hearth) -> dict[str, Any]:
    models = hearth.models()
    entries = []
    for m in models:
        if m.path.exists() and m.usable:  # a damaged download is not a model a client can use
            st = m.path.stat()
            entries.append(model_entry(m.id, m, header(hearth, m), modified=st.st_mtime,
                                       digest=digest_of(m.path, st.st_size, st.st_mtime_ns)))
    by_id = {m.id: m for m in models}
    for p in hearth.presets.all():
        try:  # a preset's base is a model id (or the path of a file used in place)
            base = by_id.get(p.base) or hearth.find_model(p.base, allow_paths=True)
        except BackendError:
            continue  # its base model was deleted: nothing could run it
        entries.append(model_entry(p.name, base, header(hearth, base), modified=p.created_at,
                                   parent=base.id, digest=digest_of(p.name, p.created_at)))
    return {"models": entries}


@router.get("/tags")
async def tags(request: Request) -> dict[str, Any]:
    listing = await asyncio.to_thread(_tags, hearth_of(request))
    listing["models"] += await remote_tag_entries(request)
    return listing


def _capabilities(hearth: Hearth, model: LocalModel, template: str,
                  embedding_only: bool) -> list[str]:
    loaded = hearth.loaded
    same = loaded is not None and Path(loaded.path) == model.path
    return list(capabilities(loaded if same else None, template,
                             embedding_only=embedding_only, vision=model.mmproj is not None))


def _show(hearth: Hearth, name: str) -> dict[str, Any]:
    preset = hearth.presets.find(name)
    model = hearth.find_model(name)
    meta = header(hearth, model)
    arch = meta.architecture if meta else ""
    template = (preset.chat_template if preset else None) or \
        (meta.chat_template if meta else None) or ""
    params = preset.parameters if preset else {}
    lines = [f"{k:<30} {json.dumps(v) if isinstance(v, str) else v}"
             for k, values in params.items() for v in (values if isinstance(values, list)
                                                        else [values])]
    info: dict[str, Any] = {"general.architecture": arch} if arch else {}
    if meta:
        info |= {"general.parameter_count": meta.parameter_count,
                 f"{arch}.context_length": meta.n_ctx_train,
                 f"{arch}.block_count": meta.n_layer}
    out: dict[str, Any] = {
        "modelfile": preset.modelfile if preset else render_modelfile(model.id),
        "parameters": "\n".join(lines), "template": (preset.template if preset else None)
        or template, "details": details(model, meta, model.id if preset else ""),
        "model_info": info, "modified_at": created_at(
            preset.created_at if preset else model.path.stat().st_mtime),
        "capabilities": _capabilities(hearth, model, template,
                                      bool(meta and meta.embedding_only))}
    if model.mmproj is not None:  # as Ollama shows a vision model's projector
        out["projector_info"] = {"general.architecture": "clip",
                                 "general.file": model.mmproj.name}
    if preset is not None:
        out |= {"system": preset.system or "", "license": preset.license or "",
                "messages": [{"role": m.role, "content": m.content} for m in preset.messages]}
    return out


@router.post("/show")
async def show(body: NamedBody, request: Request) -> dict[str, Any]:
    log_model(request, body.model)
    return await asyncio.to_thread(_show, hearth_of(request), body.model)


def _ps(hearth: Hearth) -> dict[str, Any]:
    hosted = hearth.hosted()
    if hosted is None:
        return {"models": []}
    info = hosted.info
    model = LocalModel(hosted.name, Path(info.path), "file")
    size = model.size_bytes if model.path.exists() else 0
    ttl_s = hearth.settings.snapshot().server.idle_ttl_minutes * 60
    if ttl_s <= 0:
        expires = created_at(10_000_000_000)  # "never", as Ollama's keep_alive -1 reports it
    else:
        idle_since = time.time() - (0 if hosted.active_requests else
                                    time.monotonic() - hosted.last_used)
        expires = created_at(idle_since + ttl_s)
    on_gpu = min(1.0, info.n_gpu_layers / max(info.n_layer, 1))
    return {"models": [{
        "name": hosted.name, "model": hosted.name, "size": size,
        "digest": digest_of(info.path, size, hosted.loaded_at),
        "details": details(model, header(hearth, model)), "expires_at": expires,
        "size_vram": int(size * on_gpu), "context_length": info.n_ctx}]}


@router.get("/ps")
async def ps(request: Request) -> dict[str, Any]:
    return await asyncio.to_thread(_ps, hearth_of(request))  # the header: read once, cached


# --- managing models: delete, create ----------------------------------------------------------

@router.delete("/delete")
async def delete(body: NamedBody, request: Request) -> Response:
    hearth = hearth_of(request)
    log_model(request, body.model)
    if await asyncio.to_thread(hearth.presets.delete, body.model):
        return Response(status_code=200)
    model = await asyncio.to_thread(hearth.find_model, body.model)
    if model.source == "file":  # taking it off the list is the user's call, not a client's
        raise InvalidRequest(f"'{model.id}' is a file added to Hearth by hand, not a "
                             "downloaded model, so Hearth won't delete it. Remove it from the "
                             "library in Hearth, or delete the file yourself.")
    hosted = hearth.hosted()
    if hosted is not None and model.deletable and Path(hosted.info.path) == model.path:
        await hearth.unload()  # Windows can't delete a mapped file; a busy model stays
    # Refuses built-in and in-place models, with a sentence saying why.
    await asyncio.to_thread(hearth.library.delete, body.model)
    return Response(status_code=200)


def _create_spec(body: CreateRequest) -> Modelfile:
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
async def create(body: CreateBody, request: Request) -> Response:
    log_model(request, body.model)
    spec = _create_spec(body)
    preset, warnings = await asyncio.to_thread(hearth_of(request).presets.create, body.model,
                                               spec)
    if not body.stream:
        return JSONResponse({"status": "success"} | ({"warnings": warnings} if warnings else {}))
    return ndjson_response([{"status": "parsing modelfile"},
                            {"status": f"using base model {preset.base}"},
                            *({"status": f"warning: {w}"} for w in warnings),
                            {"status": f"writing preset {preset.name}"}, {"status": "success"}])
