"""Typed tools for Plugboard in Python: a dataclass of arguments gives the JSON Schema the
model sees, and each call's arguments are checked against it before your function runs."""

import dataclasses
import json
import types as pytypes
import typing

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


class ToolFailure(Exception):
    """A failure, in words the model can act on."""


def _optional(hint):
    """The type inside `Optional[...]`/`X | None`, or None when `hint` is not optional."""
    if typing.get_origin(hint) in (typing.Union, pytypes.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) == 1 and len(typing.get_args(hint)) == 2:
            return rest[0]
    return None


def _schema_of(hint):
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint) or (str,)
        return {"type": "array", "items": _schema_of(item)}
    raise TypeError(f"unsupported argument type {hint!r}: use str, int, float, bool, list[...] or Optional[...]")


def schema(args_class):
    """The JSON Schema of a dataclass of arguments."""
    hints = typing.get_type_hints(args_class)
    properties, required = {}, []
    for f in dataclasses.fields(args_class):
        inner = _optional(hints[f.name])
        prop = _schema_of(inner if inner is not None else hints[f.name])
        if "description" in f.metadata:
            prop["description"] = f.metadata["description"]
        properties[f.name] = prop
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if inner is None and not has_default:
            required.append(f.name)
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _check(value, hint, path):
    inner = _optional(hint)
    if inner is not None:
        return None if value is None else _check(value, inner, path)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in _JSON_TYPES:
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ValueError(f"field `{path}`: expected {_JSON_TYPES[hint]}, got {json.dumps(value)}")
        return value
    if typing.get_origin(hint) is list:
        if not isinstance(value, list):
            raise ValueError(f"field `{path}`: expected an array, got {json.dumps(value)}")
        (item,) = typing.get_args(hint) or (str,)
        return [_check(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def parse(args_class, text):
    """The arguments of a call, checked against the dataclass: a wrong type, a missing or an
    unknown field is named."""
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"the arguments are not JSON: {e}")
    if not isinstance(data, dict):
        raise ValueError("the arguments must be a JSON object")
    hints = typing.get_type_hints(args_class)
    names = {f.name for f in dataclasses.fields(args_class)}
    for key in data:
        if key not in names:
            raise ValueError(f"unknown field `{key}`, expected one of {sorted(names)}")
    values = {}
    for f in dataclasses.fields(args_class):
        if f.name in data:
            values[f.name] = _check(data[f.name], hints[f.name], f.name)
        elif f.name in schema(args_class)["required"]:
            raise ValueError(f"missing field `{f.name}`")
    return args_class(**values)


def tool(description, name=None):
    """Marks `fn(args, context) -> str | types.ToolOutput` as a tool; its first parameter's
    annotation is the dataclass of its arguments."""

    def mark(fn):
        hints = typing.get_type_hints(fn)
        first = fn.__code__.co_varnames[0]
        fn.plugboard = (name or fn.__name__, description, hints[first])
        return fn

    return mark


def export(*tools):
    """The class componentize-py exports as `tool`: it lists `tools` and dispatches calls."""
    by_name = {fn.plugboard[0]: fn for fn in tools}

    class Tool(exports.Tool):
        def tools(self):
            return [
                types.ToolDefinition(name=n, description=d, parameters_schema=json.dumps(schema(a)))
                for (n, d, a) in (fn.plugboard for fn in tools)
            ]

        def call(self, name, arguments, context):
            fn = by_name.get(name)
            if fn is None:
                raise Err(types.ToolError_UnknownTool(name))
            try:
                args = parse(fn.plugboard[2], arguments)
            except ValueError as e:
                raise Err(types.ToolError_InvalidArguments(str(e)))
            try:
                out = fn(args, context)
            except ToolFailure as e:
                raise Err(types.ToolError_Failed(str(e)))
            except PermissionError as e:
                target = e.filename or ""
                denied = types.CapabilityDenied(kind=types.CapabilityKind.FILESYSTEM, target=str(target), reason=e.strerror or str(e))
                raise Err(types.ToolError_Denied(denied))
            except OSError as e:
                raise Err(types.ToolError_Failed(f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")))
            if isinstance(out, types.ToolOutput):
                return out
            return types.ToolOutput(text=str(out), title=None, metadata=None)

    return Tool
