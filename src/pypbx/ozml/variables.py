"""`$variable` substitution (spec 5.5), applied when a verb runs, never at parse time.

Why at run time: a `Var` earlier in the script, the `$item` of an enclosing ForEach, or the
values of a received alarm decide what `$name` means at that moment, and a GoTo target starts
with the variables of the script that jumped.

Rules [R]: names match case-insensitively (OzML names are case-insensitive everywhere), the
longest defined name wins (`$balance2` prefers `balance2` over `balance`), an unknown `$word`
stays as written, and `$$` is a literal `$`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """`text` with every `$name` of `variables` (keys in any case) replaced by its value."""
    if "$" not in text:
        return text
    names = sorted(
        ((key.lower(), value) for key, value in variables.items() if key),
        key=lambda pair: len(pair[0]),
        reverse=True,
    )
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        dollar = text.find("$", i)
        if dollar < 0:
            out.append(text[i:])
            break
        out.append(text[i:dollar])
        if text.startswith("$$", dollar):
            out.append("$")
            i = dollar + 2
            continue
        rest = text[dollar + 1 : dollar + 1 + (len(names[0][0]) if names else 0)].lower()
        for name, value in names:
            if rest.startswith(name):
                out.append(value)
                i = dollar + 1 + len(name)
                break
        else:
            out.append("$")
            i = dollar + 1
    return "".join(out)


def resolve(verb: T, variables: Mapping[str, str]) -> T:
    """A copy of the verb dataclass with its string fields (and tuples of strings) substituted.

    Nested verb bodies are left alone: they are resolved when they run, under the variables
    of that moment.
    """
    if not variables or not dataclasses.is_dataclass(verb) or isinstance(verb, type):
        return verb
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(verb):
        current = getattr(verb, field.name)
        if isinstance(current, str):
            new: Any = substitute(current, variables)
        elif isinstance(current, tuple) and current and all(isinstance(x, str) for x in current):
            new = tuple(substitute(x, variables) for x in current)
        else:
            continue
        if new != current:
            changes[field.name] = new
    return dataclasses.replace(verb, **changes) if changes else verb
