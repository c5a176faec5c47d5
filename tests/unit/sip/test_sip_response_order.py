"""make_response copies Via, From, To, Call-ID and CSeq in that order, whatever the
request's order, Vias in theirs: the same fields a stable sort of the request's gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pypbx.sip.message import Headers, Request, SipURI, make_response

ORDER = {"via": 0, "from": 1, "to": 2, "call-id": 3, "cseq": 4}
FIELDS = [
    ("Via", "SIP/2.0/UDP a.example.com;branch=z9hG4bK1"),
    ("Via", "SIP/2.0/UDP b.example.com;branch=z9hG4bK2"),
    ("Via", "SIP/2.0/UDP c.example.com;branch=z9hG4bK3"),
    ("From", "<sip:a@example.com>;tag=1"),
    ("To", "<sip:b@example.com>"),
    ("Call-ID", "order-1"),
    ("CSeq", "1 OPTIONS"),
    ("Max-Forwards", "70"),
    ("Contact", "<sip:a@192.0.2.1>"),
    ("Timestamp", "54"),
]


@settings(max_examples=400, deadline=None)
@given(st.permutations(FIELDS), st.sampled_from([100, 180, 200, 401, 486]))
def test_the_copied_fields_are_a_stable_sort_of_the_requests(
    fields: list[tuple[str, str]], status: int
) -> None:
    request = Request("OPTIONS", SipURI(host="example.com"), Headers(fields))
    response = make_response(request, status)
    copied = [field for field in request.headers._fields if field[0] in ORDER]
    expected = sorted(copied, key=lambda field: ORDER[field[0]])
    if status == 100:
        expected += [field for field in request.headers._fields if field[0] == "timestamp"]
    assert response.headers._fields == expected
