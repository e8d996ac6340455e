"""Structured output: with a JSON Schema the reply is JSON that parses and validates,
on the real default model (llama.cpp's grammar) and from a server (asked, then checked)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from chatterm.errors import ConfigError
from chatterm.structured import schema as schemas
from chatterm.structured.validate import answer_problem, problem
from tests.fakeserver import DONE, FakeServer, event
from tests.helpers import one_line_error, run

SCHEMAS = [
    ("Who wrote Hamlet, and how old was he then?",
     {"type": "object", "properties": {"name": {"type": "string", "maxLength": 40},
                                       "age": {"type": "integer", "minimum": 0, "maximum": 120}},
      "required": ["name", "age"]}),
    ("Give a person's first and last name.",
     {"type": "object", "properties": {"person": {"type": "object", "properties": {
         "first": {"type": "string", "maxLength": 30}, "last": {"type": "string", "maxLength": 30}},
         "required": ["first", "last"]}}, "required": ["person"]}),
    ("Name some colours.",
     {"type": "object", "properties": {"colours": {"type": "array", "items": {"type": "string", "maxLength": 20},
                                                   "minItems": 2, "maxItems": 4}}, "required": ["colours"]}),
    ("Is the sky green?", {"type": "object", "properties": {"answer": {"enum": ["yes", "no", "maybe"]}},
                           "required": ["answer"]}),
    ("Rate pizza from 1 to 5.", {"type": "object", "properties": {"rating": {"type": "integer", "minimum": 1,
                                                                             "maximum": 5}}, "required": ["rating"]}),
    ("Is 7 prime? Give a confidence score.",
     {"type": "object", "properties": {"ok": {"type": "boolean"}, "score": {"type": "number"}},
      "required": ["ok", "score"]}),
    ("北京在哪个国家？", {"type": "object", "properties": {"城市": {"type": "string", "maxLength": 10},
                                                         "国家": {"enum": ["中国", "日本"]}}, "required": ["城市", "国家"]}),
    ("List up to three fruits with an id.",
     {"type": "object", "properties": {"items": {"type": "array", "minItems": 1, "maxItems": 3, "items": {
         "type": "object", "properties": {"id": {"type": "integer", "minimum": 1, "maximum": 9},
                                          "label": {"type": "string", "maxLength": 20}},
         "required": ["id", "label"]}}}, "required": ["items"]}),
    ("Three digits, please.", {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
                               "minItems": 3, "maxItems": 3}),
    ("Make up a short code.", {"type": "object", "properties": {"code": {"type": "string", "minLength": 3,
                                                                        "maxLength": 6}},
                               "required": ["code"], "additionalProperties": False}),
]


@pytest.mark.slow
def test_ten_schemas_with_the_default_model_always_parse_and_validate():
    from chatterm.loader import RunOptions
    from chatterm.sessions import Session
    from tests.helpers import converse

    chat = converse(RunOptions(engine="llama.cpp", threads=2))
    try:
        for question, schema in SCHEMAS:
            chat.open(Session(name="", messages=[]))
            chat.schema = schema
            chat.overrides = {"temperature": 0.8, "max_tokens": 300, "seed": 11}
            text = "".join(chat.send(question))
            value = json.loads(text)  # parses
            jsonschema.validate(value, schema)  # and validates, by an independent validator
            assert answer_problem(text, schema) == ""
    finally:
        chat.engine.close()


def test_a_piped_question_prints_the_json_alone():
    schema = json.dumps(SCHEMAS[3][1])
    r = run("--schema", schema, "--max-tokens", "60", stdin=b"Is the sky green?")
    assert r.returncode == 0, r.stderr
    value = json.loads(r.stdout.decode())
    assert value["answer"] in ("yes", "no", "maybe")
    anything = run("--json", "--temperature", "0", "--max-tokens", "80", "Describe a cat.")  # greedy: a seed may write past 80
    assert anything.returncode == 0 and isinstance(json.loads(anything.stdout.decode()), dict)


def test_a_schema_that_cannot_be_a_grammar_is_one_line_before_loading(tmp_path):
    assert "not JSON" in one_line_error(run("--schema", "{nope", "hi"))
    assert "no such file" in one_line_error(run("--schema", str(tmp_path / "missing.json"), "hi"))
    assert "--json any JSON object" in one_line_error(run("--schema", "{}", "--json", "hi"), code=1)
    with pytest.raises(ConfigError, match="cannot be turned into a grammar"):
        schemas.parse('{"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}')


def test_a_server_is_asked_for_the_schema_and_its_answer_checked(user_models_toml):
    schema = SCHEMAS[4][1]
    with FakeServer([event('{"rating": 9}'), DONE]) as fake:
        r = run("--base-url", fake.url, "--schema", json.dumps(schema), "Rate pizza.")
        body = next(q["json"] for q in fake.requests if q["path"].endswith("chat/completions"))
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema,
                                                                               "strict": True}}
    assert r.stdout.decode().strip() == '{"rating": 9}'
    line = one_line_error(r)
    assert "does not match the schema" in line and "$.rating" in line
    with FakeServer([event('{"rating": 4}'), DONE]) as fake:
        assert run("--base-url", fake.url, "--schema", json.dumps(schema), "Rate pizza.").returncode == 0


def test_a_server_without_schema_support_is_asked_for_a_json_object():
    refusal = (400, b'{"error": {"message": "response_format json_schema is not supported"}}')
    with FakeServer([event('{"rating": 3}'), DONE], refusals=[refusal]) as fake:
        r = run("--base-url", fake.url, "--schema", json.dumps(SCHEMAS[4][1]), "Rate pizza.")
        formats = [q["json"]["response_format"]["type"] for q in fake.requests if q["path"].endswith("chat/completions")]
    assert r.returncode == 0, r.stderr
    assert formats == ["json_schema", "json_object"] and json.loads(r.stdout.decode()) == {"rating": 3}
    assert "takes no JSON Schema" in r.stderr.decode()


@pytest.mark.parametrize("value, schema, where", [
    ({"a": 1}, {"type": "object", "required": ["b"]}, "'b' is missing"),
    ({"a": "x"}, {"properties": {"a": {"type": "integer"}}}, "$.a: a string where integer"),
    ([1, 2, 30], {"items": {"maximum": 9}}, "$[2]: 30 is out of range"),
    ({"x": 1}, {"additionalProperties": False}, "'x' is not allowed"),
    ("红", {"enum": ["中国"]}, "is not one of"),
    (True, {"type": "integer"}, "true/false where integer"),
])
def test_the_validator_says_where(value, schema, where):
    assert where in problem(value, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(value, schema)
