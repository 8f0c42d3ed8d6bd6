"""The one capability check: can the loaded model do what this request asks (tools, images)?

Run for every front end after the model is leased and before the engine sees the request, so
the OpenAI routes, the Ollama routes, the GUI and the CLI refuse the same requests with the
same sentence. Structured output (JSON mode, a JSON schema) needs no capability: the grammar
constrains any model.
"""

from __future__ import annotations

from collections.abc import Sequence

from backend.engine.types import GenerationRequest, LoadedModel
from backend.errors import InvalidRequest, VisionUnsupported


def capabilities(loaded: LoadedModel | None, chat_template: str | None = None, *,
                 embedding_only: bool = False, vision: bool = False) -> tuple[str, ...]:
    """What a model can do, in Ollama's words (``/api/show``'s ``capabilities``): the loaded
    one (its template as the engine selected it), or one not loaded, judged by the chat
    template it would run with (its GGUF's, or a preset's). An embedding model (its header
    says so: ``GgufMetadata.embedding_only``) only embeds. ``vision``: a projector is paired
    with it (``LocalModel.mmproj``), so it reads images."""
    if embedding_only:
        return ("embedding",)
    found = ["completion"]  # (any of these can embed too; Ollama lists only "completion")
    if (loaded is not None and loaded.supports_tools) or "tools" in (chat_template or ""):
        found.append("tools")
    if vision or (loaded is not None and loaded.vision):
        found.append("vision")
    return tuple(found)


def has_images(request: GenerationRequest) -> bool:
    return any(m.images for m in request.messages or ())


def check_vision(model_id: str, can_see: bool, vision_models: Sequence[str]) -> None:
    """Refuse images for a model without a projector, naming the installed ones that can."""
    if can_see:
        return
    if vision_models:
        shown = ", ".join(vision_models[:6]) + (" …" if len(vision_models) > 6 else "")
        hint = f"Installed models that can: {shown}."
    else:
        hint = ("No installed model can: pull a vision model (one whose repository has an "
                "mmproj file), or import one with `hearth import MODEL.gguf --mmproj "
                "PROJ.gguf`.")
    raise VisionUnsupported(f"'{model_id}' can't see images: it has no vision projector. "
                            f"Send text only, or pick a model that reads images. {hint}")


def check_can_chat(model_id: str, embedding_only: bool) -> None:
    """Refuse a reply from an embedding model, before it is loaded in the chat model's place."""
    if embedding_only:
        raise InvalidRequest(f"'{model_id}' is an embedding model: it turns text into vectors "
                             "(POST /v1/embeddings or /api/embed) and can't write replies. "
                             "Pick a chat model.")


def check_capabilities(request: GenerationRequest, loaded: LoadedModel,
                       vision_models: Sequence[str] = ()) -> None:
    """Raise ``InvalidRequest`` (``VisionUnsupported`` for images) when ``loaded`` can't
    serve ``request``."""
    if has_images(request):
        check_vision(loaded.model_id, loaded.vision, vision_models)
    if request.tools and "tools" not in capabilities(loaded, request.chat_template):
        # A preset's own Jinja template may add tool support to a model whose GGUF lacks it.
        raise InvalidRequest(
            f"The chat template of '{loaded.model_id}' has no support for tools, so it can't "
            "call them. Use a model trained for tool use (Qwen 2.5/3, Llama 3.1+, Mistral…) "
            "or send the request without tools.")
