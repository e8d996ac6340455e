"""Whether a value matches a JSON Schema: the keywords replies are held to (types,
properties, required, additionalProperties, items, enum, const, ranges, lengths,
pattern, anyOf/oneOf/allOf, local $ref). An answer from a server (no grammar there)
is checked with it; the first mismatch is said with where it is ($.items[2].name)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def problem(value: Any, schema: Any, root: Any = None, where: str = "$") -> str:
    """"" when `value` matches `schema`, else what does not and where."""
    root = schema if root is None else root
    if schema is True or schema == {}:
        return ""
    if schema is False:
        return f"{where}: nothing is allowed here"
    if not isinstance(schema, dict):
        return ""
    if "$ref" in schema:
        return problem(value, _resolve(root, schema["$ref"]), root, where)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is(value, k) for k in kinds):
            return f"{where}: {_name(value)} where {' or '.join(kinds)} is wanted"
    if "const" in schema and value != schema["const"]:
        return f"{where}: must be {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where}: {value!r} is not one of {schema['enum']}"
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            found = [problem(value, s, root, where) for s in schema[key]]
            matched = sum(1 for f in found if not f)
            if key == "allOf" and matched < len(found):
                return next(f for f in found if f)
            if key == "anyOf" and not matched:
                return found[0] if found else ""
            if key == "oneOf" and matched != 1:
                return f"{where}: matches {matched} of the oneOf schemas, not one"
    if isinstance(value, dict):
        return _object(value, schema, root, where)
    if isinstance(value, list):
        return _array(value, schema, root, where)
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return f"{where}: shorter than {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{where}: longer than {schema['maxLength']} characters"
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            return f"{where}: does not match {schema['pattern']!r}"
    if _is(value, "number"):
        for key, fails in (("minimum", lambda v, b: v < b), ("maximum", lambda v, b: v > b),
                           ("exclusiveMinimum", lambda v, b: v <= b), ("exclusiveMaximum", lambda v, b: v >= b)):
            if key in schema and isinstance(schema[key], (int, float)) and fails(value, schema[key]):
                return f"{where}: {value} is out of range ({key} {schema[key]})"
    return ""


def _object(value: dict, schema: dict, root: Any, where: str) -> str:
    for key in schema.get("required", []):
        if key not in value:
            return f"{where}: {key!r} is missing"
    properties = schema.get("properties", {})
    for key, item in value.items():
        if key in properties:
            found = problem(item, properties[key], root, f"{where}.{key}")
        else:
            extra = schema.get("additionalProperties", True)
            found = (f"{where}: {key!r} is not allowed" if extra is False
                     else problem(item, extra, root, f"{where}.{key}"))
        if found:
            return found
    return ""


def _array(value: list, schema: dict, root: Any, where: str) -> str:
    if len(value) < schema.get("minItems", 0):
        return f"{where}: fewer than {schema['minItems']} items"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return f"{where}: more than {schema['maxItems']} items"
    items = schema.get("items")
    for i, item in enumerate(value):
        found = problem(item, items, root, f"{where}[{i}]") if items is not None else ""
        if found:
            return found
    return ""


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)
                or (isinstance(value, float) and value.is_integer()))
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    wanted = _TYPES.get(kind)
    return wanted is not None and isinstance(value, wanted) and not (kind != "boolean" and isinstance(value, bool))


def _name(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number")


def _resolve(root: Any, ref: str) -> Any:
    node = root
    for part in ref.lstrip("#/").split("/") if ref.startswith("#") else []:
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node


CHECK_S = 2.0  # the most a check of an answer against a schema with patterns may take


def answer_problem(text: str, schema: Any, cancelled: Callable[[], bool] = lambda: False) -> str:
    """"" when the answer `text` is JSON matching `schema`, else one line saying why.
    A schema with a `pattern` is checked in a process of its own, ended after CHECK_S
    or at `cancelled`: a pattern can backtrack for ever (`^(a+)+$`), and a regular
    expression match holds the interpreter, signals included, until it ends."""
    if not _has_pattern(schema):
        return _answer_problem(text, schema)

    request = json.dumps({"text": text, "schema": schema}, ensure_ascii=False).encode("utf-8", "surrogatepass")
    proc = subprocess.Popen([sys.executable, "-I", "-m", "chatterm.structured.validate"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        out = _exchange(proc, request, cancelled, time.monotonic() + CHECK_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if out is None:
        return ("not checked against the schema: stopped" if cancelled() else
                f"not checked against the schema: its pattern took more than {CHECK_S:g} s")
    return out.decode("utf-8", "replace").strip()


def _exchange(proc: Any, request: bytes, cancelled: Callable[[], bool], deadline: float) -> bytes | None:
    """What the checking process answers (None: it ran past `deadline`, or was stopped)."""
    box: list[bytes] = []
    talk = threading.Thread(target=lambda: box.append(proc.communicate(request)[0]), daemon=True)
    talk.start()
    while talk.is_alive():
        if cancelled() or time.monotonic() > deadline:
            return None
        talk.join(0.05)
    return box[0] if box and proc.returncode == 0 else b"the answer could not be checked against the schema"


def _has_pattern(schema: Any) -> bool:
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str) or "patternProperties" in node:
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _answer_problem(text: str, schema: Any) -> str:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        return f"the answer is not JSON ({' '.join(str(e).split())[:120]})"
    try:
        found = problem(value, schema)
    except RecursionError:
        return "the answer nests too deep to check against the schema"
    except re.error as e:
        return f"the schema's pattern is not a regular expression ({e})"
    return f"the answer does not match the schema: {found}" if found else ""


if __name__ == "__main__":  # the checking process of `answer_problem`
    import json
    import sys

    asked = json.loads(sys.stdin.buffer.read().decode("utf-8", "surrogatepass"))
    sys.stdout.write(_answer_problem(asked["text"], asked["schema"]))
