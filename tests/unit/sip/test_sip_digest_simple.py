"""``_parse_params`` (the str-method split, else the character loop) reads a list as the
character loop alone does: the same dict, or the same error. Its time on large hostile
lists is bounded.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypbx.sip.digest import (
    DigestError,
    _parse_params,
    _parse_params_general,
    _parse_params_split,
    parse_credentials,
)

SIPP = (
    'Digest username="10001",realm="pypbx",cnonce="00003039",nc=00000001,qop=auth,'
    'uri="sip:127.0.0.1:5060",nonce="AAABjABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm",'
    'response="0123456789abcdef0123456789abcdef",algorithm=MD5,'
    'opaque="0123456789abcdef0123456789abcdef"'
)
LISTS = [
    SIPP,
    'Digest username="a", realm="r", nonce="n", uri="sip:a@b", response="x"',
    'Digest  username = "a" ,\trealm=r , nonce=""',
    'Digest Username="a",REALM="r"',
    'Digest username="a",username="b"',  # duplicate: the general error
    'Digest username="a",,realm="r"',  # empty element: tolerated by the other paths
    'Digest username="a\\"b",realm="r"',  # quoted-pair: the other paths
    'Digest username="a,b",realm="r=s"',
    'Digest username="a",realm="r",',
    'Digest username="a" realm="r"',
    "Digest username",
    'Digest username="unterminated',
    "Digest " + ",".join(f"p{i}=v" for i in range(32)),
    "Digest " + ",".join(f"p{i}=v" for i in range(33)),  # too many
]


def outcome(parse: object, text: str) -> object:
    try:
        return parse(text, 6)  # type: ignore[operator]
    except DigestError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize("text", LISTS)
def test_every_path_reads_a_list_alike(text: str) -> None:
    assert outcome(_parse_params, text) == outcome(_parse_params_general, text)


def test_the_usual_list_takes_the_split_reading() -> None:
    assert _parse_params_split(SIPP, 6) is not None
    creds = parse_credentials(SIPP)
    assert (creds.username, creds.nc, creds.qop, creds.uri) == (
        "10001",
        "00000001",
        "auth",
        "sip:127.0.0.1:5060",
    )


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='Digest abc=",\\ \t;:xyz-', max_size=80))
def test_random_lists_agree_with_the_general_parser(tail: str) -> None:
    text = "Digest " + tail
    assert outcome(_parse_params, text) == outcome(_parse_params_general, text)


@pytest.mark.parametrize(
    "unit", ["a", " ", "a=", 'a="', "a=b,", "a=b ", '"', ",", "a=b,,", "a=" + "b" * 40 + " "]
)
def test_large_hostile_lists_take_time_in_proportion(
    unit: str, best_of: Callable[[Callable[[], object]], float]
) -> None:
    """Linear, not quadratic: eight times the list takes about eight times as long, not
    sixty-four (best of several runs, so machine load does not decide it)."""
    small, large = (
        best_of(partial(outcome, _parse_params, text))
        for text in ("Digest " + unit * (size // len(unit)) + "x" for size in (4000, 32000))
    )
    assert large < 25 * small + 0.001, (unit, small, large)
