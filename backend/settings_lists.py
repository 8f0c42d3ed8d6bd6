"""Lists of named entries inside settings (remote connections, MCP servers): one damaged or
duplicated entry is skipped and logged instead of failing the whole settings file, which
``load_settings`` would then set aside with every other setting in it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)


EntryT = TypeVar("EntryT", bound=BaseModel)


def keep_valid_entries(model: type[EntryT], what: str) -> Callable[[Any], Any]:
    """A pydantic ``BeforeValidator`` for a list of ``model``: entries that don't validate,
    and second entries of a name already seen, are dropped with a warning naming ``what``."""

    def drop_invalid(value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value  # not a list at all: let the field's own validation say so
        kept: list[EntryT] = []
        names: set[str] = set()
        for raw in value:
            try:
                entry = model.model_validate(raw)
            except ValidationError as exc:
                log.warning("ignoring an invalid %s in settings: %s", what, exc)
                continue
            name = getattr(entry, "name", None)
            if name in names:
                log.warning("ignoring a second %s named %r", what, name)
                continue
            if isinstance(name, str):
                names.add(name)
            kept.append(entry)
        return kept

    return drop_invalid
