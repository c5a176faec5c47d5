"""Dialled-number patterns of the dial plan (spec notifications 9.2) and number normalisation (8.2).

Wildcard patterns are matched by a hand-written, linear-time matcher rather than by
translating them into regular expressions: a dial plan is evaluated for every call, and a
pattern must never be able to cost more than one pass over the number.

Wildcard syntax (Asterisk-like, without Asterisk's leading `_`):

* digits, `*`, `#` and `+` match themselves (`*`/`#` occur in feature codes, `+` in
  international numbers);
* `X` matches 0-9, `Z` 1-9, `N` 2-9 (letters case-insensitive);
* `[...]` matches one character of a set of digits, `*`, `#`, `+` and digit ranges
  (`[1-5]`, `[13579]`, `[0-36-9*]`);
* `.` (one or more further characters) and `!` (zero or more) may only end a pattern: they
  are about "the rest of the number", and Asterisk's treatment of characters after them is
  a classic source of surprises.

`re:<regex>` patterns are full-matched with Python's `re`. Because that engine backtracks,
a regex is only accepted when it cannot blow up: at most `MAX_REGEX_LENGTH` characters, no
variable repetition of a group that itself repeats or alternates (`(a+)+`, `(0|00)*`: write
`0+` or a character class instead), and an estimated number of ways to try a number of at
most 2**`MAX_REGEX_LOG2_COST` (two `\\d+`, or one `\\d+` and ten two-way alternatives).
Numbers longer than `MAX_NUMBER_LENGTH` never match a regex. The estimate is a loose upper
bound for repetitions and exact for alternatives; phone-number regexes stay far below it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

__all__ = [
    "MAX_NUMBER_LENGTH",
    "MAX_PATTERN_LENGTH",
    "MAX_REGEX_LENGTH",
    "MAX_REGEX_LOG2_COST",
    "DialPlanError",
    "NumberPattern",
    "normalise_number",
]

MAX_PATTERN_LENGTH = 64
MAX_REGEX_LENGTH = 128
MAX_REGEX_LOG2_COST = 16.0
MAX_NUMBER_LENGTH = 64

_SEPARATORS = re.compile(r"[\s\-.()]")
_DIGITS = frozenset("0123456789")
_LITERALS = frozenset("0123456789*#+")
_CLASSES = {"X": _DIGITS, "Z": frozenset("123456789"), "N": frozenset("23456789")}
_BRACES = re.compile(r"\{(\d*)(,(\d*))?\}")


class DialPlanError(ValueError):
    """A dial plan rule, pattern or ring group is malformed; the message says where."""


def normalise_number(number: str) -> str:
    """`number` without spaces, `-`, `.`, `(` and `)` (spec 8.2); a leading `+` is kept.

    Only these separators go: anything else (letters of a SIP user part, `*`, `#`) is part
    of what was dialled and must stay visible to the patterns.
    """
    return _SEPARATORS.sub("", number)


@dataclass(frozen=True)
class NumberPattern:
    """A compiled `Pattern` (or `From` caller-number pattern); equal when the text is equal."""

    text: str
    _tokens: tuple[frozenset[str], ...] = field(init=False, repr=False, compare=False)
    _tail: str = field(init=False, repr=False, compare=False)
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        text = self.text.strip()
        object.__setattr__(self, "text", text)
        if text[:3].casefold() == "re:":
            regex = _compile_regex(text, text[3:])
            object.__setattr__(self, "_regex", regex)
            object.__setattr__(self, "_tokens", ())
            object.__setattr__(self, "_tail", "")
            return
        tokens, tail = _parse_wildcards(text)
        object.__setattr__(self, "_regex", None)
        object.__setattr__(self, "_tokens", tokens)
        object.__setattr__(self, "_tail", tail)

    @classmethod
    def compile(cls, text: str) -> NumberPattern:
        """Parse `text`; raises DialPlanError naming the pattern and the problem."""
        return cls(text)

    @property
    def is_regex(self) -> bool:
        return self._regex is not None

    def match(self, number: str) -> bool:
        """Whether the normalised `number` matches the whole pattern."""
        digits = normalise_number(number)
        if self._regex is not None:
            return len(digits) <= MAX_NUMBER_LENGTH and self._regex.fullmatch(digits) is not None
        size = len(self._tokens)
        if self._tail == "":
            fits = len(digits) == size
        elif self._tail == ".":
            fits = len(digits) > size
        else:
            fits = len(digits) >= size
        return fits and all(
            ch in allowed for ch, allowed in zip(digits[:size], self._tokens, strict=True)
        )

    def __str__(self) -> str:
        return self.text


def _parse_wildcards(text: str) -> tuple[tuple[frozenset[str], ...], str]:
    if not text:
        raise DialPlanError("pattern is empty")
    if len(text) > MAX_PATTERN_LENGTH:
        raise DialPlanError(f"pattern {text!r}: longer than {MAX_PATTERN_LENGTH} characters")
    tokens: list[frozenset[str]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in _LITERALS:
            tokens.append(frozenset(ch))
        elif ch.upper() in _CLASSES:
            tokens.append(_CLASSES[ch.upper()])
        elif ch == "[":
            charset, i = _parse_set(text, i)
            tokens.append(charset)
        elif ch in ".!":
            if i != len(text) - 1:
                raise DialPlanError(f"pattern {text!r}: {ch!r} must be the last character")
            return tuple(tokens), ch
        else:
            raise DialPlanError(f"pattern {text!r}: invalid character {ch!r} at position {i + 1}")
        i += 1
    return tuple(tokens), ""


def _parse_set(text: str, start: int) -> tuple[frozenset[str], int]:
    """The set opening at `start` and the index of its closing `]`."""
    end = text.find("]", start + 1)
    if end < 0:
        raise DialPlanError(f"pattern {text!r}: unclosed '[' at position {start + 1}")
    body = text[start + 1 : end]
    if not body:
        raise DialPlanError(f"pattern {text!r}: empty set at position {start + 1}")
    members: set[str] = set()
    i = 0
    while i < len(body):
        ch = body[i]
        if i + 1 < len(body) and body[i + 1] == "-":
            hi = body[i + 2] if i + 2 < len(body) else ""
            if ch not in _DIGITS or hi not in _DIGITS or ch > hi:
                raise DialPlanError(
                    f"pattern {text!r}: invalid range {body[i : i + 3]!r} in the set at "
                    f"position {start + 1}"
                )
            members.update(str(d) for d in range(int(ch), int(hi) + 1))
            i += 3
            continue
        if ch not in _LITERALS:
            raise DialPlanError(
                f"pattern {text!r}: invalid character {ch!r} in the set at position {start + 1}"
            )
        members.add(ch)
        i += 1
    return frozenset(members), end


def _compile_regex(text: str, regex: str) -> re.Pattern[str]:
    if not regex:
        raise DialPlanError(f"pattern {text!r}: the regular expression is empty")
    if len(regex) > MAX_REGEX_LENGTH:
        raise DialPlanError(
            f"pattern {text!r}: the regular expression is longer than {MAX_REGEX_LENGTH} characters"
        )
    try:
        compiled = re.compile(regex)
    except re.error as exc:
        raise DialPlanError(f"pattern {text!r}: invalid regular expression: {exc}") from None
    hazard = _regex_hazard(regex)
    if hazard:
        raise DialPlanError(f"pattern {text!r}: {hazard}")
    return compiled


@dataclass
class _Group:
    """What the hazard scan knows about one group (or the whole regex) so far."""

    repeats: bool = False  # contains a variable repetition
    branches: int = 1  # alternatives at this level
    log_cost: float = 0.0  # log2 of the ways to try, for the current alternative

    def total(self) -> float:
        """Upper bound on log2 of the ways through the group: every branch costs at most all."""
        return self.log_cost + math.log2(self.branches)


def _quantifier(regex: str, i: int) -> tuple[str, int, int] | None:
    """(kind, count, length) of a quantifier at `i`; kind is fixed, optional or many."""
    ch = regex[i]
    if ch == "?":
        return "optional", 1, 1
    if ch in "*+":
        return "many", 1, 1
    if ch != "{":
        return None
    braces = _BRACES.match(regex, i)
    if braces is None or (not braces.group(1) and not braces.group(3)):
        return None  # Python reads such a brace literally
    low = int(braces.group(1) or "0")
    length = braces.end() - i
    if braces.group(2) is None:
        return "fixed", low, length
    if not braces.group(3):
        return "many", low, length
    high = int(braces.group(3))
    if high == low:
        return "fixed", low, length
    return ("optional" if high <= 1 else "many"), high, length


def _regex_hazard(regex: str) -> str | None:
    """Why `regex` (already known to compile) could backtrack catastrophically, or None.

    The cost is an upper bound on the ways a backtracking matcher may try a number of
    `MAX_NUMBER_LENGTH` characters: a variable repetition multiplies it by that length, an
    optional item by 2, a group by its number of alternatives, `{n}` of a group raises the
    group's cost to the n-th power.
    """
    stack: list[_Group] = [_Group()]
    closed: _Group | None = None  # the group that ended just before the current position
    per_repeat = math.log2(MAX_NUMBER_LENGTH)
    i = 0
    while i < len(regex):
        ch = regex[i]
        quantifier = _quantifier(regex, i)
        if quantifier is not None:
            kind, count, length = quantifier
            inner = closed.total() if closed is not None else 0.0
            if kind == "many":
                if closed is not None and (closed.repeats or closed.branches > 1):
                    return "nested repetition in the regular expression (catastrophic backtracking)"
                stack[-1].log_cost += per_repeat - inner
            elif kind == "optional":
                stack[-1].log_cost += 1.0
            else:
                stack[-1].log_cost += inner * (count - 1)
            if kind != "fixed":
                stack[-1].repeats = True
            i += length
            if i < len(regex) and regex[i] in "?+":
                i += 1  # lazy or possessive modifier
            closed = None
            continue
        closed = None
        if ch == "\\":
            i += 2
        elif ch == "[":
            i = _skip_class(regex, i)
        elif ch == "(":
            stack.append(_Group())
            i = _skip_group_prefix(regex, i + 1)
        elif ch == ")":
            inner_group = stack.pop() if len(stack) > 1 else _Group()
            stack[-1].repeats |= inner_group.repeats
            stack[-1].log_cost += inner_group.total()
            closed = inner_group
            i += 1
        else:
            if ch == "|":
                stack[-1].branches += 1
            i += 1
    if stack[0].total() > MAX_REGEX_LOG2_COST:
        return "too many repetitions or alternatives in the regular expression"
    return None


def _skip_class(regex: str, i: int) -> int:
    """Index just after the character class opening at `i`."""
    j = i + 1
    if j < len(regex) and regex[j] == "^":
        j += 1
    if j < len(regex) and regex[j] == "]":
        j += 1
    while j < len(regex) and regex[j] != "]":
        j += 2 if regex[j] == "\\" else 1
    return j + 1


def _skip_group_prefix(regex: str, i: int) -> int:
    """Index of a group's first atom, past `?:`, `?P<name>`, `?=`, `?i:` and the like.

    The `?` there is syntax, not a quantifier. A group without an atom of its own
    (`(?i)`, `(?P=name)`, `(?#...)`) is skipped up to its `)`, which then closes it.
    """
    if i >= len(regex) or regex[i] != "?":
        return i
    j = i + 1
    if regex.startswith("P<", j):
        return regex.index(">", j) + 1
    if regex.startswith(("<=", "<!"), j):
        return j + 2
    if j < len(regex) and regex[j] in ":=!>":
        return j + 1
    if regex.startswith(("P=", "#"), j):
        return regex.index(")", j)
    while j < len(regex) and (regex[j].isalpha() or regex[j] == "-"):
        j += 1
    return j + 1 if j < len(regex) and regex[j] == ":" else j
