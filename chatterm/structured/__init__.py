"""Structured output: a reply that is JSON matching a JSON Schema (`--schema`,
`--json`, `/schema`).

- `schema`: the schema as the user gives it (JSON text or a file), checked before a
  model loads, and the instruction the model is given;
- `validate`: whether a reply matches it, and where it does not.

llama.cpp keeps the reply to the schema with a grammar from its first token
(`engines.call_grammar.schema_gbnf`); a server is asked for it (`response_format`).
"""
