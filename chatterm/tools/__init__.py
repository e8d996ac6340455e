"""Tools the model calls on the user's approval.

- `calls`: a call and its result, the events a reply gains when tools are on;
- `markup`: calls out of the reply's text, in each model family's syntax, as it streams;
- `builtin`: chatterm's own tools (run, python, read_file, list_files, write_file);
- `runner`: a tool's program in its own process group, timed and capped;
- `toolbox`: the tools enabled, the approvals, the per-turn limit;
- `prompting`: tools and calls in a chat template's terms, or in a system prompt for a
  template that has no tool syntax.

Nothing here is imported while tools are off.
"""
