"""HTTP Digest authentication (RFC 7616, RFC 2617, RFC 3261 §22) for SIP, server and client side.

Sans-I/O: header values in and out as plain strings, time passed in as ``now`` (wall-clock
seconds, so that nonces survive a restart). Nonces are self-validating (issue time plus an HMAC),
so the only server state is the nonce-count memory that stops replays, and that is bounded.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal
from urllib.parse import quote, unquote

logger = logging.getLogger(__name__)

MAX_HEADER_LENGTH: Final = 8192
MAX_PARAMS: Final = 32

_HASHES: Final[Mapping[str, Callable[[bytes], str]]] = MappingProxyType(
    {
        "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
    }
)
_TOKEN_CLASS: Final = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"  # RFC 7230 tchar, as the regexes use it
_TOKEN_CHARS: Final = frozenset(c for c in map(chr, range(128)) if re.fullmatch(_TOKEN_CLASS, c))
_NC_RE: Final = re.compile(r"[0-9A-Fa-f]{8}")
_NONCE_RE: Final = re.compile(r"[A-Za-z0-9_-]{43}")
_NONCE_LABEL: Final = b"pypbx-digest-nonce\0"
_B64URL: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_CANONICAL_LAST: Final = frozenset(_B64URL[::4])  # sextets whose two low bits are zero
# base64url by binascii and a translation, as the base64 module does it, without the three
# Python-level wrappers around the two: every REGISTER issues one nonce and checks one.
_TO_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE: Final = bytes.maketrans(b"-_", b"+/")
_REQUIRED: Final = ("username", "realm", "nonce", "uri", "response")
_SCHEME_RE: Final = re.compile(f"{_TOKEN_CLASS}*")


class DigestError(ValueError):
    """An Authorization/Authenticate header that cannot be used; the message says why."""


@dataclass
class DigestCredentials:
    """The parameters of an ``Authorization``/``Proxy-Authorization`` header."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    cnonce: str | None = None
    nc: str | None = None
    qop: str | None = None
    opaque: str | None = None
    userhash: bool = False


# --- parsing ---------------------------------------------------------------------------------


def parse_credentials(value: str) -> DigestCredentials:
    params = _parse_digest_header(value)
    if "username*" in params:
        if "username" in params:
            raise DigestError("Both username and username* present")
        params["username"] = _decode_ext_value(params.pop("username*"))
    for name in _REQUIRED:
        if name not in params:
            raise DigestError(f"Missing required parameter {name!r}")
    qop = params.get("qop")
    nc = params.get("nc")
    if qop is not None:
        for name in ("cnonce", "nc"):
            if name not in params:
                raise DigestError(f"Missing required parameter {name!r} for qop={qop}")
    if nc is not None and not _NC_RE.fullmatch(nc):
        raise DigestError(f"Invalid nc value {nc[:20]!r}")
    userhash = params.get("userhash", "false").lower()
    if userhash not in ("true", "false"):
        raise DigestError(f"Invalid userhash value {userhash[:20]!r}")
    return DigestCredentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"],
        algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),
        cnonce=params.get("cnonce"),
        nc=nc,
        qop=qop,
        opaque=params.get("opaque"),
        userhash=userhash == "true",
    )


def parse_challenge(value: str) -> dict[str, str]:
    """Parameters of one ``WWW-Authenticate``/``Proxy-Authenticate`` Digest challenge.

    Names are lower-cased; values are unquoted.
    """
    params = _parse_digest_header(value)
    for name in ("realm", "nonce"):
        if name not in params:
            raise DigestError(f"Missing required parameter {name!r}")
    return params


def _parse_digest_header(value: str) -> dict[str, str]:
    if len(value) > MAX_HEADER_LENGTH:
        raise DigestError(f"Header value too long ({len(value)} characters)")
    text = value.strip()
    found = _SCHEME_RE.match(text)  # the token chars, scanned in C
    end = found.end() if found is not None else 0
    scheme = text[:end]
    if not scheme:
        raise DigestError("Missing authentication scheme")
    if scheme.lower() != "digest":
        raise DigestError(f"Unsupported authentication scheme {scheme[:20]!r}")
    if end < len(text) and text[end] not in " \t":
        raise DigestError("Malformed authentication scheme")
    return _parse_params(text, end)


def _parse_params(text: str, pos: int) -> dict[str, str]:
    """auth-param list: ``name=token`` or ``name="quoted \\"string\\""``, comma separated.

    The str-method split reads the list as every client writes it; anything else (a comma
    or backslash inside quotes, an empty element, an error) goes the character way, which
    accepts the same lists and words the errors. Compiled (scripts/compile_core.py), the
    character way costs about twice the split (15 against 7 µs for SIPp's header), so the
    regex readings that once sat between the two no longer earn their keep.
    """
    split = _parse_params_split(text, pos)
    return split if split is not None else _parse_params_general(text, pos)


def _parse_params_general(text: str, pos: int) -> dict[str, str]:
    """Every list _parse_params accepts, and the one that words the errors."""
    params: dict[str, str] = {}
    length = len(text)
    while True:
        while pos < length and text[pos] in " \t,":
            pos += 1
        if pos >= length:
            return params
        start = pos
        while pos < length and text[pos] in _TOKEN_CHARS:
            pos += 1
        name = text[start:pos].lower()
        if not name:
            raise DigestError(f"Malformed parameter at position {start}")
        pos = _skip_space(text, pos)
        if pos >= length or text[pos] != "=":
            raise DigestError(f"Expected '=' after parameter {name[:20]!r}")
        pos = _skip_space(text, pos + 1)
        if pos < length and text[pos] == '"':
            param, pos = _read_quoted(text, pos + 1)
        else:
            start = pos
            # Tolerate unquoted values that are not strict tokens (e.g. uri=sip:a@b).
            while pos < length and text[pos] not in ' \t,"':
                pos += 1
            param = text[start:pos]
            if not param:
                raise DigestError(f"Missing value for parameter {name[:20]!r}")
        pos = _skip_space(text, pos)
        if pos < length and text[pos] != ",":
            raise DigestError(f"Expected ',' after parameter {name[:20]!r}")
        if name in params:
            raise DigestError(f"Duplicate parameter {name[:20]!r}")
        if len(params) >= MAX_PARAMS:
            raise DigestError(f"Too many parameters (limit {MAX_PARAMS})")
        params[name] = param


def _parse_params_split(text: str, pos: int) -> dict[str, str] | None:
    """What _parse_params returns for the list every client sends, by str methods alone;
    None for anything else (a comma or backslash inside quotes, a name that is not a plain
    word, an empty element, a name twice, ...), which the character way decides.

    Why: an Authorization header is half a dozen to ten parameters, read for every REGISTER.
    """
    if "\\" in text:
        return None
    pieces = text[pos:].split(",")
    if len(pieces) > MAX_PARAMS:
        return None
    params: dict[str, str] = {}
    for piece in pieces:
        name, eq, value = piece.partition("=")
        name = name.strip(" \t")
        value = value.strip(" \t")
        if not (eq and value and name.isalnum() and name.isascii()):
            return None
        if value[0] == '"':
            if len(value) < 2 or value[-1] != '"':
                return None  # unbalanced: a comma inside quotes splits them
            value = value[1:-1]
            if '"' in value:
                return None
        elif '"' in value or " " in value or "\t" in value:
            return None
        name = name.lower()
        if name in params:
            return None
        params[name] = value
    return params


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    return pos


def _read_quoted(text: str, pos: int) -> tuple[str, int]:
    chars: list[str] = []
    while pos < len(text):
        ch = text[pos]
        if ch == "\\" and pos + 1 < len(text):
            chars.append(text[pos + 1])
            pos += 2
        elif ch == '"':
            return "".join(chars), pos + 1
        else:
            chars.append(ch)
            pos += 1
    raise DigestError("Unterminated quoted string")


def _decode_ext_value(value: str) -> str:
    """RFC 8187 ``UTF-8''percent-encoded``, how RFC 7616 carries non-ASCII user names."""
    charset, sep, rest = value.partition("'")
    _language, sep2, encoded = rest.partition("'")
    if not (sep and sep2) or charset.lower() != "utf-8":
        raise DigestError("Malformed username* value")
    try:
        return unquote(encoded, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise DigestError("Malformed username* value") from None


def _quote(value: str) -> str:
    if any(ch in value for ch in "\r\n\0"):
        raise DigestError("Invalid character in parameter value")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- computation -----------------------------------------------------------------------------


def _canonical_algorithm(algorithm: str) -> str:
    """Spell known algorithms the RFC way; unknown ones pass through to be rejected later."""
    upper = algorithm.upper()
    base = upper.removesuffix("-SESS")
    if base in _HASHES:
        return base + ("-sess" if upper != base else "")
    return algorithm


def _hash_for(algorithm: str) -> tuple[Callable[[bytes], str], bool]:
    upper = algorithm.upper()
    base = upper.removesuffix("-SESS")
    hash_fn = _HASHES.get(base)
    if hash_fn is None:
        raise DigestError(f"Unsupported algorithm {algorithm[:20]!r}")
    return hash_fn, upper != base


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password): what a server should store instead of the password.

    ``-sess`` variants share this value; the session key is derived in compute_response.
    """
    hash_fn, _ = _hash_for(algorithm)
    return hash_fn(f"{username}:{realm}:{password}".encode())


def compute_response(
    *,
    ha1: str,
    method: str,
    uri: str,
    nonce: str,
    algorithm: str = "MD5",
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The request-digest; ``qop=None`` gives the RFC 2069 form old clients still send."""
    hash_fn, session = _hash_for(algorithm)
    if session:
        if cnonce is None:
            raise DigestError("cnonce is required for -sess algorithms")
        ha1 = hash_fn(f"{ha1}:{nonce}:{cnonce}".encode())
    if qop is None:
        ha2 = hash_fn(f"{method}:{uri}".encode())
        return hash_fn(f"{ha1}:{nonce}:{ha2}".encode())
    qop = qop.lower()
    if qop == "auth":
        ha2 = hash_fn(f"{method}:{uri}".encode())
    elif qop == "auth-int":
        ha2 = hash_fn(f"{method}:{uri}:{hash_fn(body)}".encode())
    else:
        raise DigestError(f"Unsupported qop {qop[:20]!r}")
    if nc is None or cnonce is None:
        raise DigestError("nc and cnonce are required with qop")
    return hash_fn(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())


# --- server side -----------------------------------------------------------------------------


NonceState = Literal["ok", "stale", "invalid"]


class NonceManager:
    """Issues and checks nonces of the form base64url(issued_ms | salt | HMAC).

    Any server holding the secret can validate a nonce, so restarts and (later) several
    workers need no shared state; only nonce counts are remembered, in a bounded LRU. When a
    nonce falls out of that LRU its issue time becomes a watermark: older untracked nonces are
    answered 'stale' rather than trusted afresh, so eviction cannot reopen a replay window.
    """

    def __init__(self, secret: bytes, lifetime: float = 300.0, max_tracked: int = 100_000) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        if lifetime <= 0 or max_tracked < 1:
            raise ValueError("lifetime and max_tracked must be positive")
        self._secret = secret
        # HMAC-SHA256 with the key already absorbed (RFC 2104's inner and outer pads): each
        # MAC copies two hash states instead of setting up an HMAC, a third of the cost.
        block = secret if len(secret) <= 64 else hashlib.sha256(secret).digest()
        block = block.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block) + _NONCE_LABEL)
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self.lifetime = lifetime
        self._max_tracked = max_tracked
        # nonce -> issue time (ms) << 32 | last count: one int, not a tuple of two, for each
        # of up to max_tracked nonces (see transaction._Completed on why fewer objects).
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._watermark_ms = -1

    def issue(self, now: float) -> str:
        stamp = struct.pack(">Q", max(0, int(now * 1000)))
        body = stamp + os.urandom(8)  # what secrets.token_bytes reads
        raw = body + self._mac(body)
        encoded = binascii.b2a_base64(raw, newline=False).translate(_TO_URLSAFE)
        return encoded.rstrip(b"=").decode("ascii")

    def validate(self, nonce: str, now: float) -> NonceState:
        """Signature and age only; records nothing, so it is safe before the response is known."""
        return self._validate(nonce, now)[0]

    def _validate(self, nonce: str, now: float) -> tuple[NonceState, int]:
        """``validate`` plus the issue time it read (-1 for an invalid nonce)."""
        issued_ms = self._issued_ms(nonce)
        if issued_ms is None:
            return "invalid", -1
        age = now - issued_ms / 1000
        # A correctly signed nonce from the future means our clock stepped back: not an attack.
        return ("ok" if -1.0 <= age <= self.lifetime else "stale"), issued_ms

    def check(
        self, nonce: str, nc: str | None, now: float
    ) -> Literal["ok", "stale", "invalid", "replay"]:
        """Validate and, for ``nc`` (8 hex digits), require it to exceed the last one seen."""
        state, issued_ms = self._validate(nonce, now)
        if state != "ok" or nc is None:
            return state
        return self._count(nonce, nc, issued_ms)

    def _count(
        self, nonce: str, nc: str, issued_ms: int
    ) -> Literal["ok", "stale", "invalid", "replay"]:
        """The nonce-count half of ``check``, for a nonce ``_validate`` found 'ok'."""
        if not _NC_RE.fullmatch(nc):
            return "invalid"
        count = int(nc, 16)
        tracked = self._counts.get(nonce)
        if tracked is None:
            if issued_ms <= self._watermark_ms:
                return "stale"
            tracked = issued_ms << 32
        else:
            self._counts.move_to_end(nonce)
        if count <= tracked & 0xFFFFFFFF:
            return "replay"
        self._counts[nonce] = tracked >> 32 << 32 | count
        if len(self._counts) > self._max_tracked:
            _, evicted = self._counts.popitem(last=False)
            self._watermark_ms = max(self._watermark_ms, evicted >> 32)
        return "ok"

    def _mac(self, body: bytes) -> bytes:
        """HMAC-SHA256(secret, label | body), truncated to 16 bytes."""
        inner = self._inner.copy()
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:16]

    def _issued_ms(self, nonce: str) -> int | None:
        if not _NONCE_RE.fullmatch(nonce):
            return None
        # 43 characters carry 258 bits; insist on the one canonical spelling of the 256: the
        # last character's two low bits, which decoding drops, must be zero.
        if nonce[-1] not in _CANONICAL_LAST:
            return None
        raw = binascii.a2b_base64((nonce + "=").encode("ascii").translate(_FROM_URLSAFE))
        body, mac = raw[:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        issued_ms: int = struct.unpack(">Q", body[:8])[0]
        return issued_ms


class DigestVerifier:
    """Checks credentials against a stored HA1, challenging with every configured algorithm.

    ``ha1`` passed to :meth:`verify` must be the one for ``creds.algorithm`` without ``-sess``
    (MD5 and SHA-256 HA1 differ, so a store keeps one per algorithm).
    """

    def __init__(
        self,
        realm: str,
        nonces: NonceManager,
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        *,
        allow_rfc2069: bool = False,
    ) -> None:
        if not algorithms:
            raise ValueError("at least one algorithm is required")
        for algorithm in algorithms:
            _hash_for(algorithm)
        self.realm = realm
        self.nonces = nonces
        self.algorithms = tuple(_canonical_algorithm(a) for a in algorithms)
        # Without qop there is no nc, so a captured request replays until the nonce expires.
        self.allow_rfc2069 = allow_rfc2069
        self.opaque = hashlib.sha256(b"pypbx-opaque\0" + realm.encode()).hexdigest()[:32]
        # The fixed parts of each challenge, either side of the nonce.
        self._templates = [
            (
                f"Digest realm={_quote(realm)}, nonce=",
                f', opaque={_quote(self.opaque)}, algorithm={algorithm}, qop="auth"',
            )
            for algorithm in self.algorithms
        ]
        # Unknown users are checked against a random HA1 so they cost the same as a bad password.
        filler = secrets.token_hex(16)
        self._dummy_ha1 = {a: compute_ha1(filler, realm, filler, a) for a in self.algorithms}

    def challenges(self, now: float, *, stale: bool = False) -> list[str]:
        nonce = self.nonces.issue(now)  # base64url: nothing in it to escape
        suffix = ", stale=true" if stale else ""
        return [f'{head}"{nonce}"{tail}{suffix}' for head, tail in self._templates]

    def verify(
        self,
        creds: DigestCredentials,
        method: str,
        ha1: str | None,
        now: float,
        *,
        body: bytes = b"",
    ) -> Literal["ok", "stale", "failed"]:
        """'stale' means the password was right but the nonce is old: re-challenge, don't count.

        Checks that do not depend on the user (realm, algorithm, qop, nonce signature) may
        return early; from there on a known and an unknown user take the same path.
        """
        algorithm = _canonical_algorithm(creds.algorithm)
        if creds.realm != self.realm or algorithm not in self.algorithms:
            return "failed"
        qop = creds.qop.lower() if creds.qop is not None else None
        if qop is None and not self.allow_rfc2069:
            return "failed"
        if qop is not None and (qop not in ("auth", "auth-int") or creds.nc is None):
            return "failed"
        if creds.opaque is not None and creds.opaque != self.opaque:
            return "failed"
        nonce_state, issued_ms = self.nonces._validate(creds.nonce, now)
        if nonce_state == "invalid":
            return "failed"
        try:
            expected = compute_response(
                ha1=ha1 if ha1 is not None else self._dummy_ha1[algorithm],
                method=method,
                uri=creds.uri,
                nonce=creds.nonce,
                algorithm=algorithm,
                qop=qop,
                nc=creds.nc,
                cnonce=creds.cnonce,
                body=body,
            )
        except DigestError:
            return "failed"
        given = creds.response.lower().encode("utf-8", "replace")
        matched = hmac.compare_digest(expected.encode("ascii"), given)
        if not matched or ha1 is None:
            return "failed"
        if nonce_state == "stale":
            return "stale"
        # Counted only now, so forged requests cannot burn a legitimate client's nonce counts.
        # A replayed count gets a fresh nonce rather than a failure: a replayer gains nothing
        # from it, and clients that wrongly reuse nc recover instead of looking locked out.
        if creds.nc is not None and self.nonces._count(creds.nonce, creds.nc, issued_ms) != "ok":
            return "stale"
        return "ok"


# --- client side -----------------------------------------------------------------------------


def build_authorization(
    challenge: str,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    nc: int = 1,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """An Authorization/Proxy-Authorization value answering one Digest challenge."""
    params = parse_challenge(challenge)
    realm, nonce = params["realm"], params["nonce"]
    algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
    _hash_for(algorithm)
    offered = [q.strip().lower() for q in params["qop"].split(",")] if "qop" in params else None
    qop: str | None = None
    if offered is not None:
        if "auth" in offered:
            qop = "auth"
        elif "auth-int" in offered:
            qop = "auth-int"
        else:
            raise DigestError(f"No supported qop in {params['qop'][:40]!r}")
    if not 0 < nc <= 0xFFFFFFFF:
        raise DigestError(f"Invalid nonce count {nc}")
    nc_text = f"{nc:08x}"
    if cnonce is None and (qop is not None or algorithm.endswith("-sess")):
        cnonce = secrets.token_hex(16)
    ha1 = compute_ha1(username, realm, password, algorithm)
    response = compute_response(
        ha1=ha1,
        method=method,
        uri=uri,
        nonce=nonce,
        algorithm=algorithm,
        qop=qop,
        nc=nc_text if qop is not None else None,
        cnonce=cnonce,
        body=body,
    )
    userhash = params.get("userhash", "").lower() == "true"
    if userhash:
        hash_fn, _ = _hash_for(algorithm)
        user_param = f"username={_quote(hash_fn(f'{username}:{realm}'.encode()))}"
    elif username.isascii():
        user_param = f"username={_quote(username)}"
    else:
        user_param = f"username*=UTF-8''{quote(username, safe='')}"
    parts = [
        user_param,
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm}",
    ]
    if cnonce is not None:
        parts.append(f"cnonce={_quote(cnonce)}")
    if qop is not None:
        parts.extend([f"qop={qop}", f"nc={nc_text}"])
    if "opaque" in params:
        parts.append(f"opaque={_quote(params['opaque'])}")
    if userhash:
        parts.append("userhash=true")
    return "Digest " + ", ".join(parts)


# --- client side: choosing a challenge -------------------------------------------------------

# Preference when a server offers several challenges (RFC 7616 §3.7: strongest first).
_ALGORITHM_PREFERENCE: Final = ("SHA-256", "SHA-256-sess", "MD5", "MD5-sess")


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate``/``Proxy-Authenticate`` Digest challenge, as a client reads it.

    ``raw`` is the header value it came from, so the answer is built from exactly what the
    server sent (opaque, userhash, ...). ``qop`` lists the offered options lower-cased, empty
    for an RFC 2069 challenge.
    """

    raw: str
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, value: str) -> Challenge:
        params = parse_challenge(value)
        qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
        return cls(
            raw=value,
            realm=params["realm"],
            nonce=params["nonce"],
            algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
        )

    @property
    def supported(self) -> bool:
        """Whether build_authorization can answer it (algorithm known, qop usable)."""
        if self.algorithm not in _ALGORITHM_PREFERENCE:
            return False
        return not self.qop or "auth" in self.qop or "auth-int" in self.qop


def select_challenge(values: list[str]) -> Challenge | None:
    """The challenge to answer among a response's header values: the strongest supported one.

    Values that are not Digest, malformed, or use an algorithm we lack (SHA-512-256, AKA)
    are skipped rather than failing the whole response: a server may offer several.
    """
    usable: list[Challenge] = []
    for value in values:
        try:
            challenge = Challenge.parse(value)
        except DigestError as exc:
            logger.debug("ignoring challenge %r: %s", value[:80], exc)
            continue
        if challenge.supported:
            usable.append(challenge)
    if not usable:
        return None
    return min(usable, key=lambda c: _ALGORITHM_PREFERENCE.index(c.algorithm))
