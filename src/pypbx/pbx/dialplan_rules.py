"""The dial plan rule (spec notifications 9.2) and who may use it (`From`).

A `Rule` checks its own invariants when built, whatever built it (TOML, ConfigXML, code),
and reports a problem as a `RuleFieldError` carrying the attribute name, so that each front
end can name the field in its own spelling (`ring_time` in TOML, `RingTime` in ConfigXML).

`From` text form (shared by TOML and ConfigXML):

* `Any` (or empty): everyone;
* `ext:1000,1001`: calls placed by these extensions (SIP, API, ...);
* `line:voipservice1,voipservice2`: calls arriving on these outside lines;
* `num:<pattern>`: callers whose number matches a `Pattern` (`num:+36.`, `num:re:\\+3620\\d+`).

The prefixes are case-insensitive; IDs and line names are compared exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from pypbx.pbx.dialplan_patterns import DialPlanError, NumberPattern, normalise_number
from pypbx.pbx.dialplan_time import TimeCondition

__all__ = [
    "ANY_CALLER",
    "DEFAULT_RING_TIME",
    "MAX_RING_TIME",
    "NEXT",
    "AnyCaller",
    "Caller",
    "CallerMatch",
    "FromExtensions",
    "FromLines",
    "FromNumber",
    "Kind",
    "Rule",
    "RuleFieldError",
    "format_caller_match",
    "parse_caller_match",
]

NEXT = "Next"
DEFAULT_RING_TIME = 90
MAX_RING_TIME = 3600
MAX_STRIP_DIGITS = 64
MAX_TEXT_LENGTH = 128
_PREFIX = re.compile(r"[0-9+*#]{0,32}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RuleFieldError(DialPlanError):
    """One field of a rule is wrong; `field` is the Rule attribute (`ring_time`, `from_`)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Kind(StrEnum):
    """What a rule routes: calls, or messages sent through SMS connections / e-mail providers."""

    CALL = "Call"
    SMS = "SMS"
    EMAIL = "Email"

    @classmethod
    def parse(cls, text: str) -> Kind:
        """Case-insensitive, as every enumerated value of the Ozeki API (spec 0)."""
        folded = text.strip().casefold()
        for kind in cls:
            if kind.value.casefold() == folded:
                return kind
        raise DialPlanError(f"must be Call, SMS or Email, got {text!r}")


@dataclass(frozen=True)
class Caller:
    """Who is calling: an extension, an outside line (with the external number), or neither."""

    extension_id: str | None
    line: str | None
    number: str


@dataclass(frozen=True)
class AnyCaller:
    def matches(self, caller: Caller) -> bool:
        return True


@dataclass(frozen=True)
class FromExtensions:
    ids: tuple[str, ...]

    def matches(self, caller: Caller) -> bool:
        return caller.extension_id is not None and caller.extension_id in self.ids


@dataclass(frozen=True)
class FromLines:
    names: tuple[str, ...]

    def matches(self, caller: Caller) -> bool:
        return caller.line is not None and caller.line in self.names


@dataclass(frozen=True)
class FromNumber:
    pattern: NumberPattern

    def matches(self, caller: Caller) -> bool:
        return self.pattern.match(caller.number)


CallerMatch = AnyCaller | FromExtensions | FromLines | FromNumber
ANY_CALLER = AnyCaller()


def parse_caller_match(text: str) -> CallerMatch:
    """Parse the `From` text form; DialPlanError without the field name."""
    text = text.strip()
    if not text or text.casefold() == "any":
        return ANY_CALLER
    prefix, colon, rest = text.partition(":")
    prefix = prefix.strip().casefold()
    if not colon or prefix not in ("ext", "line", "num"):
        raise DialPlanError(f"must be Any, ext:<ids>, line:<names> or num:<pattern>, got {text!r}")
    if prefix == "num":
        return FromNumber(NumberPattern.compile(rest))
    items = tuple(item.strip() for item in rest.split(","))
    if not all(items):
        raise DialPlanError(f"empty name in {text!r}")
    if len(set(items)) != len(items):
        raise DialPlanError(f"duplicate name in {text!r}")
    return FromExtensions(items) if prefix == "ext" else FromLines(items)


def format_caller_match(match: CallerMatch) -> str:
    """The canonical `From` text: `parse_caller_match(format_caller_match(m)) == m`."""
    if isinstance(match, AnyCaller):
        return "Any"
    if isinstance(match, FromExtensions):
        return "ext:" + ",".join(match.ids)
    if isinstance(match, FromLines):
        return "line:" + ",".join(match.names)
    return f"num:{match.pattern.text}"


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One dial plan rule; the defaults are those of spec 9.2.

    `on_*` hold a destination, `NEXT` ("continue with the following rules") or None (end the
    call with that outcome). `caller_id` None leaves the caller ID unchanged.
    """

    order: int
    pattern: NumberPattern
    destination: str
    enabled: bool = True
    name: str = ""
    kind: Kind = Kind.CALL
    from_: CallerMatch = field(default=ANY_CALLER)
    strip_digits: int = 0
    add_prefix: str = ""
    caller_id: str | None = None
    ring_time: int = DEFAULT_RING_TIME
    on_busy: str | None = None
    on_no_answer: str | None = None
    on_not_found: str | None = None
    on_error: str | None = None
    time_condition: TimeCondition | None = None

    def __post_init__(self) -> None:
        if self.order < 0:
            raise RuleFieldError("order", f"must not be negative, got {self.order}")
        _check_text("name", self.name, required=False)
        _check_destination("destination", self.destination, allow_next=False)
        if not 0 <= self.strip_digits <= MAX_STRIP_DIGITS:
            raise RuleFieldError(
                "strip_digits", f"must be between 0 and {MAX_STRIP_DIGITS}, got {self.strip_digits}"
            )
        if not _PREFIX.fullmatch(self.add_prefix):
            raise RuleFieldError(
                "add_prefix",
                f"must be at most 32 of the characters 0-9 + * #, got {self.add_prefix!r}",
            )
        if self.caller_id is not None:
            _check_text("caller_id", self.caller_id, required=True)
        if not 1 <= self.ring_time <= MAX_RING_TIME:
            raise RuleFieldError(
                "ring_time",
                f"must be between 1 and {MAX_RING_TIME} seconds, got {self.ring_time}",
            )
        for name in ("on_busy", "on_no_answer", "on_not_found", "on_error"):
            target = getattr(self, name)
            if target is not None:
                _check_destination(name, target, allow_next=True)

    def rewrite(self, dialed: str) -> str:
        """The number sent on: normalised, `strip_digits` characters cut, `add_prefix` put in front.

        Stripping more characters than the number has leaves just the prefix.
        """
        return self.add_prefix + normalise_number(dialed)[self.strip_digits :]


def _check_text(name: str, value: str, *, required: bool) -> None:
    if required and not value.strip():
        raise RuleFieldError(name, "must not be empty")
    if value != value.strip():
        raise RuleFieldError(name, f"must not start or end with spaces, got {value!r}")
    if len(value) > MAX_TEXT_LENGTH:
        raise RuleFieldError(name, f"longer than {MAX_TEXT_LENGTH} characters")
    if _CONTROL.search(value):
        raise RuleFieldError(name, "must not contain control characters")


def _check_destination(name: str, value: str, *, allow_next: bool) -> None:
    _check_text(name, value, required=True)
    if value.casefold() == NEXT.casefold() and not (allow_next and value == NEXT):
        problem = f"write Next, not {value!r}" if allow_next else "Next is not a destination"
        raise RuleFieldError(name, problem)
