"""A model on an OpenAI-compatible server (`engine`), its streams read by `sse`."""
