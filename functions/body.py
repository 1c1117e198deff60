"""Request bodies: read within a size limit, parsed as JSON, checked for what JSON parsers let
through. Every problem is a BadRequest (HTTP 400; TooLarge, 413) naming where it is.

`read_body` never reads past the limit, with or without Content-Length (chunked); `json_body`
also refuses nesting deeper than MAX_DEPTH, text UTF-8 cannot carry (lone surrogates such as
"\\ud800", which json.loads accepts) and NaN/Infinity (which Python's json reads).
"""

from __future__ import annotations

import json

import flask
from werkzeug.exceptions import RequestEntityTooLarge

MAX_DEPTH = 8  # levels of JSON nesting in a body; the deepest valid one, /events, has 3
SURROGATE = ("holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not "
             "text: send valid Unicode")


class BadRequest(ValueError):
    """The request is malformed; the message names the field and what is expected."""

    status = 400


class TooLarge(BadRequest):
    """The body is over the size limit (HTTP 413)."""

    status = 413


class _NotJSON:
    """Stands for NaN, Infinity or -Infinity, which Python's json reads but JSON does not
    allow; `problem` names where one is."""

    def __init__(self, text: str):
        self.text = text


def unicode_ok(text: str) -> bool:
    """False for a string UTF-8 cannot encode (it holds a lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def problem(value, max_depth: int = MAX_DEPTH, where: str = "") -> str | None:
    """What makes a parsed JSON value unusable, naming where it is, or None if nothing.

    Args:
        value: a value from json.loads.
        max_depth: the deepest nesting of lists and objects allowed (0: a scalar).
        where: the value's name in the message ("" for the whole body).
    """
    stack = [(value, where, 0)]
    while stack:
        v, at, depth = stack.pop()
        if isinstance(v, str):
            if not unicode_ok(v):
                return f"{at or 'body'} {SURROGATE}"
        elif isinstance(v, _NotJSON):
            return f"{at or 'body'} is {v.text}, which JSON does not allow: send a finite number"
        elif isinstance(v, dict | list):
            if depth >= max_depth:
                return f"{at or 'body'} nests deeper than {max_depth} levels of lists and objects"
            for k, x in v.items() if isinstance(v, dict) else enumerate(v):
                if isinstance(k, str) and not unicode_ok(k):
                    return f"a key of {at or 'the body'} {SURROGATE}"
                name = f"{at}[{k}]" if isinstance(k, int) else f"{at}.{k}" if at else k
                stack.append((x, name if len(name) <= 80 else name[:77] + "...", depth + 1))
    return None


def read_body(request: flask.Request, limit: int) -> bytes:
    """The request's body, read once (then cached) and never past `limit` bytes.

    Also bounds what functions-framework reads after the answer (its `read_request`), since
    that reads through the same limited stream.

    Raises:
        TooLarge: the body (declared or streamed, e.g. chunked) is longer than `limit`.
    """
    request.max_content_length = limit + 1  # what the stream may give: one byte past the limit
    environ = request.environ
    if environ.get("CONTENT_LENGTH", "0") in ("", "0") and \
            "HTTP_TRANSFER_ENCODING" not in environ:
        # No Content-Length and no Transfer-Encoding: HTTP/1.1 framing says there is no body
        # (RFC 9112 6.3; gunicorn reads nothing either), so the usual GET skips building
        # and draining werkzeug's limited stream (~10 us of a cached answer's CPU).
        return b""
    too_large = TooLarge(f"the body is larger than {limit} bytes; send less per request "
                         "(docs/SERVING.md, limits)")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise too_large from None
    if len(raw) > limit:
        raise too_large
    return raw


def json_body(request: flask.Request, limit: int, check: bool = True):
    """The parsed JSON body (any type) of at most `limit` bytes.

    Args:
        check: also refuse nesting past MAX_DEPTH and lone surrogates anywhere (False: the
            caller checks the parts it uses with `problem`, e.g. per event).

    Raises:
        TooLarge: the body is longer than `limit`.
        BadRequest: not JSON, not UTF-8, or (check) too deep or holding a lone surrogate.
    """
    raw = read_body(request, limit)
    if not request.is_json:
        raise BadRequest("send the body as JSON with the header Content-Type: application/json")
    try:
        body = json.loads(raw.decode(), parse_constant=_NotJSON)
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    except RecursionError:
        raise BadRequest(f"the body nests deeper than {MAX_DEPTH} levels of lists and "
                         "objects") from None
    except json.JSONDecodeError as e:
        raise BadRequest(f"the body is not valid JSON: {e.msg} at line {e.lineno} column "
                         f"{e.colno}") from None
    reason = problem(body) if check else None
    if reason:
        raise BadRequest(reason)
    return body
