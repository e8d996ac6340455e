"""The user interface: the interactive chat (`repl`, its slash `commands`), the one-shot
answer (`oneshot`), and what both print through: `render` (streaming Markdown or plain
text), `sanitize` (model text made inert) and `interrupt` (Ctrl-C)."""
