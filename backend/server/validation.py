"""What every request body must be before a route sees it: the edge's own checks.

Both APIs' schemas build on ``RequestModel`` (whole bodies) and ``LenientModel`` (their
parts): unknown fields are accepted (clients send many), floats must be finite (JSON has no
NaN, but Python's parser accepts one), and every string anywhere in the body, however deeply
nested, must be encodable as UTF-8: a JSON escape such as ``"\\ud800"`` decodes to a lone
surrogate, which no tokenizer, file or log can take. Numeric bounds live on each field
(``Field(ge=, le=)``); the engine checks its own limits again (``backend/engine/prepare.py``),
so no front end depends on this one.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

# llama.cpp takes counts as C ints; a bound that size also keeps Python from building huge
# values out of them.
MAX_INT32 = 2**31 - 1
# Seeds are 64-bit in the OpenAI API (llama.cpp keeps the low 32 bits).
MIN_INT64, MAX_UINT64 = -(2**63), 2**64 - 1
_MAX_DEPTH = 64  # JSON nesting any real request stays far below
# Images one body may carry, whatever the settings allow (at most 16): a body with hundreds
# is refused here, before any of them is decoded.
MAX_BODY_IMAGES = 16


class LenientModel(BaseModel):
    """Part of a request body."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class RequestModel(LenientModel):
    """A whole request body: its text is checked once, at the top."""

    @model_validator(mode="before")
    @classmethod
    def _text_is_utf8(cls, data: Any) -> Any:
        check_text(data)
        return data


def check_text(data: Any) -> None:
    """Raise ValueError naming the first string that can't be encoded as UTF-8, or the place
    nested too deep. Iterative, so a deeply nested body can't exhaust the stack."""
    stack: list[tuple[Any, str, int]] = [(data, "the body", 0)]
    while stack:
        value, where, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise ValueError(f"{where} is nested more than {_MAX_DEPTH} levels deep; send a "
                             "flatter body")
        if isinstance(value, str):
            if not value.isascii() and not _encodes(value):
                raise ValueError(f"the text at {where} is not valid Unicode (it holds a lone "
                                 "surrogate such as \\ud800); send UTF-8 text")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and not key.isascii() and not _encodes(key):
                    raise ValueError(f"a key in {where} is not valid Unicode (it holds a lone "
                                     "surrogate such as \\ud800); send UTF-8 text")
                stack.append((item, f"{where}.{key}" if depth else str(key), depth + 1))
        elif isinstance(value, list | tuple):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_Body = TypeVar("_Body", bound=BaseModel)


def json_body(model: type[_Body]) -> Any:
    """A route parameter that is the request body parsed as ``model``, in one pass of
    pydantic's own JSON parser for every route of both APIs: a body that is not JSON at all
    (cut short, not UTF-8, nested absurdly deep) is a 400 like any other invalid body, with
    where it broke. The security middleware has already made sure it was declared JSON."""

    async def parse(request: Request) -> _Body:
        # A UTF-8 byte order mark is allowed before the text (RFC 8259 §8.1): Windows
        # tools (PowerShell 5's Out-File, Notepad) write one, and the body is still UTF-8.
        body = (await request.body()).removeprefix(b"\xef\xbb\xbf")
        try:
            return model.model_validate_json(body or b"{}")
        except ValidationError as exc:
            raise RequestValidationError(exc.errors(include_url=False)) from None

    return Depends(parse)


def check_image_count(count: int) -> None:
    """Raise ValueError (a 400 naming the limit) for a body with too many images."""
    if count > MAX_BODY_IMAGES:
        raise ValueError(f"the request carries {count} images; Hearth takes at most "
                         f"{MAX_BODY_IMAGES} in one request")
