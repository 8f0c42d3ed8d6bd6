"""Models on disk and built in: resolving a model name to a GGUF file."""
