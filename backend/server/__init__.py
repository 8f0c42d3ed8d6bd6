"""The local API server: OpenAI- and Ollama-compatible routes over the shared engine."""
