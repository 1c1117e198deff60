"""The rules a request field can follow, each both a parser and an OpenAPI schema.

A request model (functions/request_models.py) is a frozen dataclass whose fields carry a rule
in their metadata (`rule(Id(...))`); `read` parses a request into one, `object_schema` and
`query_parameters` state it for the OpenAPI document. So a limit is written once and the
document says what the parser does (tests/functions/test_request_models.py probes each one).
Every id goes through models.rows.clean_id, the id rule of every validator.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields

from functions.body import BadRequest
from models.rows import MAX_ID_CHARS, clean_id

# One query-string value of an id list: longer lists go in a POST body (functions-framework
# runs gunicorn without its request-line limit, so this is the limit).
MAX_QUERY_CHARS = 4096


@dataclass(frozen=True)
class Limits:
    """The request limits that are settings (functions/settings.Settings of the same names);
    a rule names one of these fields where its bound is a setting."""

    max_k: int = 100
    max_events: int = 1000


def _bound(value: int | str, limits: Limits) -> int:
    return getattr(limits, value) if isinstance(value, str) else value


def _doc(schema: dict, doc: str) -> dict:
    return {**schema, "description": doc} if doc else schema


@dataclass(frozen=True)
class Id:
    """An id: a string or a number by the id rule of every validator (models.rows.clean_id),
    of at most `max_chars` characters; a blank string counts as absent, and so does a missing
    field (None), but not a null inside a list or an object."""

    doc: str = ""
    max_chars: int = MAX_ID_CHARS
    required: bool = False
    enum: tuple[str, ...] = ()
    in_query: bool = True

    def schema(self, limits: Limits) -> dict:
        if self.enum:
            return _doc({"type": "string", "enum": list(self.enum)}, self.doc)
        return _doc({"type": "string", "minLength": 1, "maxLength": self.max_chars}, self.doc)

    query_schema = schema

    def text(self, value, name: str) -> str:
        """The id as stripped text (12.0 -> "12"); "" for a blank string.

        Raises:
            BadRequest: not an id (clean_id's reason: None is "missing"), or longer than
                `max_chars`.
        """
        if isinstance(value, str) and not value.strip():
            return ""
        text, reason = clean_id(value, name)
        if text is None:
            raise BadRequest(reason)
        if len(text) > self.max_chars:
            raise BadRequest(f"{name} is longer than {self.max_chars} characters")
        return text

    def parse(self, value, name: str, limits: Limits) -> str:
        """`text`, "" if absent (None), and a BadRequest when absent or blank but required."""
        text = "" if value is None else self.text(value, name)
        if self.required and not text:
            raise BadRequest(f"{name} is required")
        return text

    def from_query(self, values: list[str], name: str):
        """The first of a query string's values of the field (None: none)."""
        return values[0] if values else None


@dataclass(frozen=True)
class Ids:
    """A list of ids: a JSON list, or one comma-separated string (a query string may repeat
    it); blank ids are dropped."""

    doc: str
    max_items: int
    in_query: bool = True
    required = False

    def schema(self, limits: Limits) -> dict:
        return {"description": f"{self.doc}: a JSON list, or a comma-separated string.",
                "oneOf": [{"type": "array", "items": Id().schema(limits),
                           "maxItems": self.max_items}, {"type": "string"}]}

    def query_schema(self, limits: Limits) -> dict:
        return {"type": "string", "maxLength": MAX_QUERY_CHARS,
                "description": f"{self.doc} (comma-separated)."}

    def parse(self, value, name: str, limits: Limits) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            parts = value.split(",")
        elif isinstance(value, list):
            parts = value
        else:
            raise BadRequest(f"{name} must be a list of ids or a comma-separated string")
        if len(parts) > self.max_items:
            raise BadRequest(f"{name} holds more than {self.max_items} ids")
        rule = Id()
        return tuple(t for t in (rule.text(p, name) for p in parts) if t)

    def from_query(self, values: list[str], name: str):
        """The query string's values joined into one comma-separated string (None: none)."""
        if any(len(v) > MAX_QUERY_CHARS for v in values):
            raise BadRequest(f"{name} is longer than {MAX_QUERY_CHARS} characters in the query "
                             "string: send long id lists in a POST body")
        return ",".join(values) if values else None


@dataclass(frozen=True)
class Integer:
    """An integer in [minimum, maximum] (a bound may name a Limits field); `default` if absent.
    A whole float (3.0) or a numeric string counts; a bool does not."""

    doc: str
    minimum: int
    maximum: int | str
    default: int
    in_query: bool = True
    required = False

    def schema(self, limits: Limits) -> dict:
        return _doc({"type": "integer", "minimum": self.minimum,
                     "maximum": _bound(self.maximum, limits), "default": self.default}, self.doc)

    query_schema = schema

    def parse(self, value, name: str, limits: Limits) -> int:
        if value is None:
            return self.default
        try:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number = int(value.strip() if isinstance(value, str) else value)
        except (TypeError, ValueError, OverflowError):
            raise BadRequest(f"{name} must be an integer, got {value!r:.40}") from None
        top = _bound(self.maximum, limits)
        if not self.minimum <= number <= top:
            raise BadRequest(f"{name} must be between {self.minimum} and {top}, got {number}")
        return number

    from_query = Id.from_query


@dataclass(frozen=True)
class Flag:
    """A boolean: JSON true/false, or in a query string `true`/`false`/`1`/`0`; False if
    absent."""

    doc: str
    in_query: bool = True
    required = False
    WORDS = {"true": True, "1": True, "false": False, "0": False}

    def schema(self, limits: Limits) -> dict:
        return _doc({"type": "boolean", "default": False}, self.doc)

    def query_schema(self, limits: Limits) -> dict:
        return _doc({"type": "string", "enum": list(self.WORDS), "default": "false"}, self.doc)

    def parse(self, value, name: str, limits: Limits) -> bool:
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in self.WORDS:
            return self.WORDS[value.strip().lower()]
        raise BadRequest(f"{name} must be true or false, got {value!r:.40}")

    from_query = Id.from_query


@dataclass(frozen=True)
class Text:
    """A string of at most `max_chars` characters; "" if absent. `what` says what it must be."""

    doc: str
    max_chars: int
    what: str
    in_query: bool = True
    required = False

    def schema(self, limits: Limits) -> dict:
        return _doc({"type": "string", "maxLength": self.max_chars}, self.doc)

    query_schema = schema

    def parse(self, value, name: str, limits: Limits) -> str:
        if value in (None, ""):
            return ""
        if not isinstance(value, str):
            raise BadRequest(f"{name} must be {self.what}")
        if len(value) > self.max_chars:
            raise BadRequest(f"{name} is longer than {self.max_chars} characters")
        return value

    from_query = Id.from_query


@dataclass(frozen=True)
class Scalars:
    """An object of at most `max_items` scalar values (string, number, boolean or null); only
    in a JSON body."""

    doc: str
    max_items: int
    in_query = False
    required = False

    def schema(self, limits: Limits) -> dict:
        return _doc({"type": "object", "maxProperties": self.max_items,
                     "additionalProperties": {"oneOf": [
                         {"type": "string"}, {"type": "number"}, {"type": "boolean"}]}},
                    self.doc)

    def parse(self, value, name: str, limits: Limits) -> dict:
        if value is None:
            return {}
        ok = isinstance(value, dict) and len(value) <= self.max_items and all(
            isinstance(v, str | int | float | bool) or v is None for v in value.values())
        if not ok:
            raise BadRequest(f"{name} must be an object of at most {self.max_items} scalar "
                             "values")
        return value


@dataclass(frozen=True)
class IdMap:
    """An object {key id: value id} of at most `max_items` entries, neither side blank; only
    in a JSON body."""

    doc: str
    max_items: int
    key: str  # the keys' name in messages, e.g. item_id
    value: str  # the values' name, e.g. category
    in_query = False
    required = False

    def schema(self, limits: Limits) -> dict:
        return _doc({"type": "object", "maxProperties": self.max_items,
                     "additionalProperties": Id().schema(limits)}, self.doc)

    def parse(self, value, name: str, limits: Limits) -> dict:
        value = value or {}
        if not isinstance(value, dict) or len(value) > self.max_items:
            raise BadRequest(f"{name} must be an object {{{self.key}: {self.value}}} of at "
                             f"most {self.max_items} entries")
        rule = Id()
        out = {rule.text(k, self.key): rule.text(v, self.value) for k, v in value.items()}
        if "" in out or "" in out.values():
            raise BadRequest(f"{name}: no {self.key} and no {self.value} may be blank")
        return out


@dataclass(frozen=True)
class Objects:
    """A list of `minimum`..`maximum` objects of `model`, each checked on its own by the
    caller (functions/params.py: event_batch)."""

    doc: str
    model: type
    item: str  # one object's name in messages, e.g. event
    minimum: int
    maximum: int | str
    in_query = False
    required = True

    def schema(self, limits: Limits) -> dict:
        return _doc({"type": "array", "minItems": self.minimum,
                     "maxItems": _bound(self.maximum, limits),
                     "items": object_schema(self.model, limits)}, self.doc)

    def parse(self, value, name: str, limits: Limits) -> list:
        if not isinstance(value, list) or len(value) < self.minimum:
            least = "one" if self.minimum == 1 else self.minimum
            raise BadRequest(f'body must be {{"{name}": [...]}} with at least {least} '
                             f"{self.item}")
        top = _bound(self.maximum, limits)
        if len(value) > top:
            raise BadRequest(f"at most {top} {name} per request, got {len(value)}")
        return value


@dataclass(frozen=True)
class Checked:
    """A field checked by models.rows.validate_interaction (the rule of every validator);
    here only its schema."""

    schema_: dict
    in_query = False
    required = False

    def schema(self, limits: Limits) -> dict:
        return self.schema_


def rule(r) -> dict:
    """A dataclass field whose metadata holds the rule `r`."""
    return field(metadata={"rule": r})


@functools.cache
def rules(model: type) -> dict:
    """{field name: its rule} of a request model, in declaration order (read once per model:
    `read` runs for every request and every event of a batch)."""
    return {f.name: f.metadata["rule"] for f in fields(model)}


def read(model: type, body: dict, args=None, limits: Limits = Limits()):
    """A `model` from a JSON object and, for the fields a query string may carry, the query
    string (`args`: a werkzeug MultiDict, or None); the body's fields win.

    Raises:
        BadRequest: the first field in declaration order that breaks its rule, named.
    """
    values = {}
    for name, rule in rules(model).items():
        if name in body:
            raw = body[name]
        elif args is not None and rule.in_query and name in args:  # (absent: from_query's
            raw = rule.from_query(args.getlist(name), name)          # None, without a getlist)
        else:
            raw = None
        values[name] = rule.parse(raw, name, limits)
    return model(**values)


def object_schema(model: type, limits: Limits = Limits()) -> dict:
    """The OpenAPI schema of `model` as a JSON object."""
    fields_ = rules(model)
    required = [name for name, rule in fields_.items() if rule.required]
    return {"type": "object", **({"required": required} if required else {}),
            "properties": {name: rule.schema(limits) for name, rule in fields_.items()}}


def query_parameters(model: type, limits: Limits = Limits()) -> list[dict]:
    """The OpenAPI query parameters of `model`'s fields that a query string may carry."""
    out = []
    for name, rule in rules(model).items():
        if rule.in_query:
            schema = rule.query_schema(limits)
            out.append({"name": name, "in": "query", "required": rule.required,
                        "description": schema.get("description", rule.doc),
                        "schema": {k: v for k, v in schema.items() if k != "description"}})
    return out
