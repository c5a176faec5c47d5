"""The str-method reading of an auth-param list (``_parse_params_split``) agrees with the
general parser wherever it answers, and leaves every unusual list to the other paths."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypbx.sip.digest import (
    DigestError,
    _parse_params_general,
    _parse_params_split,
)

SIPP = (
    'Digest username="10001",realm="pypbx",cnonce="00003039",nc=00000001,qop=auth,'
    'uri="sip:127.0.0.1:5060",nonce="AAABjABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm",'
    'response="0123456789abcdef0123456789abcdef",algorithm=MD5,'
    'opaque="0123456789abcdef0123456789abcdef"'
)
LINPHONE = (
    'Digest realm="pypbx", nonce="abc", algorithm=MD5, opaque="x", username="1000",  '
    'uri="sip:pbx.example.com", response="d41d8cd98f00b204e9800998ecf8427e", cnonce="Y", '
    "nc=00000001, qop=auth"
)


def general(text: str) -> object:
    try:
        return _parse_params_general(text, 6)
    except DigestError as exc:
        return ("error", str(exc))


@pytest.mark.parametrize(
    "text",
    [
        SIPP,
        LINPHONE,
        'Digest Username="a",REALM=r',
        'Digest  username = "a" ,\trealm=r , nonce=""',
        'Digest uri="sip:a@b;x=y",response=abc',
    ],
)
def test_the_usual_lists_are_read_by_splitting(text: str) -> None:
    split = _parse_params_split(text, 6)
    assert split is not None
    assert split == general(text)


@pytest.mark.parametrize(
    "text",
    [
        'Digest username="a,b",realm="r"',  # a comma inside quotes
        'Digest username="a\\"b",realm="r"',  # a quoted-pair
        'Digest username="a",username="b"',  # a name twice: the general error
        'Digest username="a",,realm="r"',  # an empty element
        'Digest username="a",realm="r",',
        'Digest username="a" realm="r"',
        'Digest username="a"b',
        'Digest username="',
        'Digest username=" ',
        "Digest username=a b",
        "Digest user-name=a",  # a token, but not a plain word
        "Digest username",
        "Digest ",
        "Digest username=",
        "Digest é=a",
        "Digest " + ",".join(f"p{i}=v" for i in range(33)),  # too many
    ],
)
def test_unusual_lists_are_left_to_the_other_paths(text: str) -> None:
    assert _parse_params_split(text, 6) is None


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet='Digest abc=",\\ \t;:xyz-é\r', max_size=80))
def test_random_lists_agree_with_the_general_parser(tail: str) -> None:
    text = "Digest " + tail
    split = _parse_params_split(text, 6)
    if split is not None:
        assert split == general(text)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True),
            st.sampled_from(["", " ", "\t", "  "]),
            st.sampled_from(["", " ", "\t"]),
            st.one_of(
                st.from_regex(r'"[^"\\]{0,12}"', fullmatch=True),
                st.from_regex(r'[^ \t,"]{1,12}', fullmatch=True),
            ),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_well_formed_lists_agree_with_every_path(
    params: list[tuple[str, str, str, str]],
) -> None:
    text = "Digest " + ",".join(
        f"{sp1}{name}{sp2}={sp1}{value}{sp2}" for name, sp1, sp2, value in params
    )
    split = _parse_params_split(text, 6)
    expected = general(text)
    if split is None:  # a comma or quote inside quotes, a name twice: not for splitting
        return
    assert split == expected


@pytest.mark.parametrize("unit", ["a", " ", "a=", 'a="', "a=b,", '"', ",", "a=" + "b" * 40 + " "])
def test_large_hostile_lists_take_time_in_proportion(
    unit: str, best_of: Callable[[Callable[[], object]], float]
) -> None:
    small, large = (
        best_of(partial(_parse_params_split, "Digest " + unit * (size // len(unit)) + "x", 6))
        for size in (4000, 32000)
    )
    assert large < 25 * small + 0.001, (unit, small, large)
