"""Models before an engine runs them.

- `catalog`: models.toml (chatterm's and the user's): names, files, settings;
- `engine_names`, `chat_templates`: the engines and chat-template presets an entry may name;
- `gguf`: reading a GGUF file's header and metadata (bounded, untrusted);
- `hardware`: the CPU, RAM and GPUs of this machine;
- `fit`: how much of a model fits in RAM and VRAM;
- `hub`: downloading catalogue models (`chatterm pull`).
"""
