"""The inference engine: one scheduler thread owns the llama.cpp model, context and samplers."""
