"""The one capability check: can the loaded model do what this request asks?

Run for every front end after the model is leased and before the engine sees the request, so
the OpenAI routes, the Ollama routes, the GUI and the CLI refuse the same requests with the
same sentence. Structured output (JSON mode, a JSON schema) needs no capability: the grammar
constrains any model.
"""

from __future__ import annotations

from backend.engine.types import GenerationRequest, LoadedModel
from backend.errors import InvalidRequest


def capabilities(loaded: LoadedModel | None, chat_template: str | None = None, *,
                 embedding_only: bool = False) -> tuple[str, ...]:
    """What a model can do, in Ollama's words (``/api/show``'s ``capabilities``): the loaded
    one (its template as the engine selected it), or one not loaded, judged by the chat
    template it would run with (its GGUF's, or a preset's). An embedding model (its header
    says so: ``GgufMetadata.embedding_only``) only embeds."""
    if embedding_only:
        return ("embedding",)
    found = ["completion"]  # (any of these can embed too; Ollama lists only "completion")
    if (loaded is not None and loaded.supports_tools) or "tools" in (chat_template or ""):
        found.append("tools")
    return tuple(found)


def check_can_chat(model_id: str, embedding_only: bool) -> None:
    """Refuse a reply from an embedding model, before it is loaded in the chat model's place."""
    if embedding_only:
        raise InvalidRequest(f"'{model_id}' is an embedding model: it turns text into vectors "
                             "(POST /v1/embeddings or /api/embed) and can't write replies. "
                             "Pick a chat model.")


def check_capabilities(request: GenerationRequest, loaded: LoadedModel) -> None:
    """Raise ``InvalidRequest`` when ``loaded`` can't serve ``request``."""
    if request.tools and "tools" not in capabilities(loaded, request.chat_template):
        # A preset's own Jinja template may add tool support to a model whose GGUF lacks it.
        raise InvalidRequest(
            f"The chat template of '{loaded.model_id}' has no support for tools, so it can't "
            "call them. Use a model trained for tool use (Qwen 2.5/3, Llama 3.1+, Mistral…) "
            "or send the request without tools.")
