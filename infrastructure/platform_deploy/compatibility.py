"""Can a reader read every event a writer may send? A check of two JSON Schemas.

The verdict is a subschema check (jsonsubschema): the writer's schema must be within
the reader's, so every event it allows is valid for the reader. When it is not, the
schemas are walked field by field, with the same check on each field, to name what
breaks: a field the reader requires that the writer does not always send, a changed
type, a value outside a narrowed enum or `schema_version`, a field sent to a reader that
forbids unknown ones (pydantic's extra="forbid").

A service's events are pydantic models serialised whole: every field is sent, and no
other. `as_sent` says so of a producer's schema (pydantic marks a field with a default
as optional, and leaves unknown fields allowed) before it is compared.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonref
from jsonsubschema import is_subschema

Schema = dict[str, Any]
COMPONENTS = "#/components/schemas/"
NESTED = ("items", "additionalProperties", "not", "if", "then", "else", "contains")
LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
ANNOTATIONS = ("title", "description", "examples", "default", "readOnly", "writeOnly")


def self_contained(schema: Schema, components: dict[str, Schema]) -> Schema:
    """`schema` with the AsyncAPI document's components as its own `$defs`."""
    text = json.dumps({**schema, "$defs": components}).replace(f'"{COMPONENTS}', '"#/$defs/')
    result: Schema = json.loads(text)
    return result


def as_sent(schema: Schema) -> Schema:
    """A producer's schema as its events are sent: every property present, none other."""
    closed = copy.deepcopy(schema)
    _close(closed)
    return closed


def _close(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _close(item)
        return
    if not isinstance(node, dict):
        return
    if isinstance(node.get("properties"), dict):
        node["required"] = list(node["properties"])
        node.setdefault("additionalProperties", False)
    for key in ("properties", "$defs", "definitions"):
        for value in node.get(key, {}).values():
            _close(value)
    for key in (*NESTED, *LISTS):
        if key in node:
            _close(node[key])


def resolved(schema: Schema) -> Schema:
    """The schema with every `$ref` replaced by what it points at, annotations dropped."""
    inlined = jsonref.replace_refs(schema, proxies=False, lazy_load=False)
    plain: Schema = _without_annotations(inlined)
    plain.pop("$defs", None)
    return plain


def _without_annotations(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_annotations(item) for item in node]
    if not isinstance(node, dict):
        return node
    plain = {}
    for key, value in node.items():
        if key in ("enum", "const"):
            plain[key] = value
        elif key == "properties" and isinstance(value, dict):  # field names, not keywords
            plain[key] = {name: _without_annotations(field) for name, field in value.items()}
        elif key not in ANNOTATIONS:
            plain[key] = _without_annotations(value)
    return plain


def within(writer: Schema, reader: Schema) -> bool:
    """Is every instance of `writer` valid for `reader`?"""
    return bool(is_subschema(writer, reader))


def problems(writer: Schema, reader: Schema, writer_name: str, reader_name: str) -> list[str]:
    """One line per way an event `writer` allows is rejected by `reader` (none: compatible)."""
    writer, reader = resolved(writer), resolved(reader)
    try:
        if within(writer, reader):  # the checker leaves `format` out: a UUID, a date-time
            return _formats(writer, reader, "", writer_name, reader_name)
        found = _walk(writer, reader, "", writer_name, reader_name)
    except Exception as error:  # the checker refuses some schemas (recursive ones, say)
        return [f"field '(the event)': cannot compare the schemas ({type(error).__name__})"]
    return found or [
        f"field '(the event)': {writer_name} may send events {reader_name} rejects "
        f"({_summary(writer)} is not within {_summary(reader)})"
    ]


def _walk(writer: Schema, reader: Schema, path: str, w: str, r: str) -> list[str]:
    """The fields of two object schemas that break; [] when the break is not in a field."""
    if not (_is_object(writer) and _is_object(reader)):
        return []
    found = []
    sent, w_required = writer.get("properties", {}), set(writer.get("required", []))
    read = reader.get("properties", {})
    for name in reader.get("required", []):
        if name not in w_required:
            found.append(_line(path, name, f"{r} requires it, {w} does not always send it"))
    if reader.get("additionalProperties") is False:
        if writer.get("additionalProperties", True) is not False:
            found.append(_line(path, "*", f"{w} may send any field, {r} forbids unknown ones"))
        for name in sent:
            if name not in read:
                detail = f"{w} sends it, {r} forbids fields it does not know (extra='forbid')"
                found.append(_line(path, name, detail))
    for name, schema in sent.items():
        if name in read and not within(schema, read[name]):
            deeper = _walk(schema, read[name], _join(path, name), w, r)
            found += deeper or [_line(path, name, _difference(schema, read[name], w, r))]
    return found


def _formats(writer: Schema, reader: Schema, path: str, w: str, r: str) -> list[str]:
    """Fields whose string format the reader checks (pydantic does) and the writer lacks."""
    found = []
    read = reader.get("properties", {})
    for name, schema in writer.get("properties", {}).items():
        wanted = read.get(name, {}).get("format")
        if wanted and schema.get("format") != wanted:
            found.append(_line(path, name, f"{w} sends any string, {r} accepts only a {wanted}"))
        elif name in read:
            found += _formats(schema, read[name], _join(path, name), w, r)
    return found


def _difference(writer: Schema, reader: Schema, w: str, r: str) -> str:
    w_values, r_values = _values(writer), _values(reader)
    if w_values is not None and r_values is not None:
        extra = [value for value in w_values if value not in r_values]
        return f"{w} may send {_json(extra)}, {r} accepts only {_json(r_values)}"
    w_types, r_types = _types(writer), _types(reader)
    if w_types and r_types and not w_types <= r_types:
        return f"{w} sends {_names(w_types)}, {r} accepts {_names(r_types)}"
    if r_values is not None:
        return f"{w} sends any {_names(w_types) or 'value'}, {r} accepts only {_json(r_values)}"
    return f"{w} sends {_summary(writer)}, {r} accepts {_summary(reader)}"


def _values(schema: Schema) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    enum = schema.get("enum")
    return list(enum) if isinstance(enum, list) else None


def _types(schema: Schema) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return set(kind)
    return set().union(*(_types(option) for option in schema.get("anyOf", [])))


def _is_object(schema: Schema) -> bool:
    return schema.get("type") == "object" or "properties" in schema


def _line(path: str, name: str, detail: str) -> str:
    return f"field '{_join(path, name)}': {detail}"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _names(types: set[str]) -> str:
    return " or ".join(sorted(types))


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _summary(schema: Schema) -> str:
    text = _json(schema)
    return text if len(text) <= 80 else text[:79] + "…"
