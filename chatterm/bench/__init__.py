"""`python -m chatterm.bench`: where chatterm's time goes, against its own engines and
llama.cpp's llama-bench, on this machine. Scripts that print figures, not timed tests.

Modules, one job each: `stats` (repeated runs), `terminal` (a pseudo terminal to render
into), `engine` (raw engine loops, the chat pipeline, multi-turn time to first token),
`renderer` (Markdown rendering throughput), `process` (whole-process timings against
minimal scripts), `llama_bench` (the reference), `report` (table, JSON, targets).
"""
