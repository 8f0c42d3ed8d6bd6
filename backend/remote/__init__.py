"""Remote engines: chat through OpenAI-compatible servers elsewhere (vLLM, TGI, Ollama…)."""
