"""Fuzz the parsers that read network input, for minutes rather than the test suite's seconds.

Targets: the SIP message parser and stream framer, the SDP parser, the RTP packet parser,
RFC 4733 telephone-event decoding (and the receiver fed with it), Digest header parsing (and
the verifier fed with it).  For each, an input may only produce a result or the parser's
documented error (SipParseError, SdpError, RtpError, DtmfError, DigestError); anything else,
or a round trip that changes the value (parse, serialise, parse again), is a crash.  Its input
is saved in bench/fuzz-crashes/ with the traceback beside it.  Any single input slower than
100 ms (re-timed three times outside the fuzzer, best kept) is flagged as a hang.

Engines: `atheris` (pip install "atheris>=2.3"): coverage-guided libFuzzer, one subprocess
per parser, inputs up to 16 KiB; `mutate`: a mutation fuzzer seeded from the RFC 4475/5118
torture corpus and typical messages (bit flips, truncation, line duplication, huge values up
to each parser's size ceiling, splices, boundary numbers).  By default both run, half the time
each, when atheris is importable, else `mutate` alone.  The budget is split evenly between
the parsers.

Prints a table, and one JSON line per parser on stderr.  Exit status 1 if anything was found.

    .venv/bin/python bench/fuzz.py [--seconds 300] [--parsers sip,sdp,rtp,dtmf,digest]
        [--engine auto|atheris|mutate] [--seed N]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import heapq
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CRASH_DIR = ROOT / "bench" / "fuzz-crashes"
TORTURE = ROOT / "tests" / "unit" / "sip" / "torture"
PARSERS = ("sip", "sdp", "rtp", "dtmf", "digest")
SLOW_SECONDS = 0.100
# Largest input per parser: just above each parser's own ceiling (64 KiB SIP and SDP, 8 KiB
# Digest values) so the limits themselves are exercised; an MTU for RTP and its payloads.
MAX_INPUT = {"sip": 70_000, "sdp": 70_000, "digest": 9_000, "rtp": 1_500, "dtmf": 1_500}

Check = Callable[[bytes], None]


# -- targets -----------------------------------------------------------------------------------


def load_targets() -> dict[str, Check]:
    """Import the parsers here, not at module level, so atheris can instrument the imports."""
    from pypbx.media.dtmf import DIGITS, DtmfError, DtmfEventReceiver, decode_event, encode_event
    from pypbx.media.rtp import RtpError, RtpPacket, is_rtcp
    from pypbx.sip.digest import (
        Challenge,
        DigestError,
        DigestVerifier,
        NonceManager,
        build_authorization,
        compute_ha1,
        parse_challenge,
        parse_credentials,
        select_challenge,
    )
    from pypbx.sip.framing import StreamFramer
    from pypbx.sip.message import SipParseError, make_response, parse_message
    from pypbx.sip.sdp import SdpError, SessionDescription

    views = ("vias", "contacts", "routes", "record_routes", "max_forwards", "expires")

    def sip_one(data: bytes) -> None:
        try:
            message = parse_message(data)
        except SipParseError as exc:
            assert exc.reason, "SipParseError without a reason"
            if exc.request is not None:
                make_response(exc.request, exc.status, exc.reason).serialize()
            return
        for view in views:
            with contextlib.suppress(SipParseError):
                getattr(message, view)
        _ = (message.call_id, message.cseq, message.from_addr, message.to_addr)
        again = parse_message(message.serialize())
        assert again == message, "serialize/parse round trip changed the message"

    def check_sip(data: bytes) -> None:
        sip_one(data)
        framer = StreamFramer()
        cut = len(data) // 3
        try:
            frames = framer.feed(data[:cut]) + framer.feed(data[cut:])
        except SipParseError:
            return
        for frame in frames:
            sip_one(frame)

    def check_sdp(data: bytes) -> None:
        try:
            sdp = SessionDescription.parse(data)
        except SdpError:
            return
        sdp.audio_endpoint()
        for media in sdp.media:
            sdp.effective_direction(media)
        try:
            wire = sdp.serialize()
        except SdpError:
            return
        assert SessionDescription.parse(wire) == sdp, "serialize/parse round trip changed SDP"

    def check_rtp(data: bytes) -> None:
        is_rtcp(data)
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            return
        assert RtpPacket.parse(packet.serialize()) == packet, "RTP round trip changed"

    def check_dtmf(data: bytes) -> None:
        try:
            event = decode_event(data)
        except DtmfError:
            pass
        else:
            again = encode_event(event.event, event.end, event.volume, event.duration)
            assert again == bytes([data[0], data[1] & 0xBF]) + data[2:4], "event round trip"
        receiver = DtmfEventReceiver()
        for offset in range(0, min(len(data), 64 * 9) - 8, 9):  # a burst of up to 64 packets
            chunk = data[offset : offset + 9]
            timestamp = int.from_bytes(chunk[:4], "big")
            for digit in receiver.feed(timestamp, chunk[5:], bool(chunk[4] & 1), offset / 1000):
                assert digit.digit in DIGITS

    nonces = NonceManager(b"fuzz-secret-0123456789")
    verifier = DigestVerifier("fuzz.example", nonces)
    ha1 = compute_ha1("alice", "fuzz.example", "secret")

    def check_digest(data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        nonces.validate(text, 0.0)
        try:
            creds = parse_credentials(text)
        except DigestError:
            pass
        else:
            verdict = verifier.verify(creds, "REGISTER", ha1, 0.0)
            assert verdict in ("ok", "stale", "failed")
        select_challenge([text])
        try:
            challenge = Challenge.parse(text)
            params = parse_challenge(text)
        except DigestError:
            return
        if not challenge.supported:
            return
        try:
            answer = build_authorization(
                text, username="alice", password="secret", method="INVITE", uri="sip:b@c"
            )
        except DigestError:
            return
        creds = parse_credentials(answer)
        assert (creds.realm, creds.nonce) == (params["realm"], params["nonce"]), "quoting"

    return {
        "sip": check_sip,
        "sdp": check_sdp,
        "rtp": check_rtp,
        "dtmf": check_dtmf,
        "digest": check_digest,
    }


# -- seeds -------------------------------------------------------------------------------------


def seeds(parser: str) -> list[bytes]:
    """Valid (and RFC-invalid) inputs to mutate from."""
    corpus = sorted(TORTURE.glob("*.dat"))
    messages = [path.read_bytes() for path in corpus]
    if parser == "sip":
        return messages + [m.replace(b"\r\n", b"\n") for m in messages[:5]]
    if parser == "sdp":
        bodies = []
        for message in messages:
            for separator in (b"\r\n\r\n", b"\n\n"):
                _, found, body = message.partition(separator)
                if found and body.startswith(b"v=0"):
                    bodies.append(body)
                    break
        return [*bodies, TYPICAL_SDP]
    if parser == "rtp":
        return RTP_SEEDS
    if parser == "dtmf":
        return DTMF_SEEDS
    return DIGEST_SEEDS


TYPICAL_SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\ns=-\r\nc=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\nb=AS:64\r\nm=audio 49172 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\na=sendrecv\r\nm=video 0 RTP/AVP 31\r\n"
)
RTP_SEEDS = [
    bytes.fromhex("80 00 00 01 00 00 00 a0 de ad be ef") + b"\xff" * 160,
    bytes.fromhex("92 e5 12 34 00 01 00 00 00 00 00 01 00 00 00 02 00 00 00 03") + b"\x00" * 4,
    bytes.fromhex("b0 08 ff ff ff ff ff ff 01 02 03 04 be de 00 02 11 22 33 44 55 66 77 88")
    + b"payload"
    + b"\x00\x00\x03",
    bytes.fromhex("81 c9 00 07 00 00 00 01"),
]
DTMF_SEEDS = [
    bytes.fromhex("05 0a 00 a0"),
    bytes.fromhex("05 8a 03 20 05 8a 03 20 05 8a 03 20"),
    bytes.fromhex("0b 3f ff ff 10 00 00 00"),
    bytes(range(36)),
]
DIGEST_SEEDS = [
    b'Digest realm="fuzz.example", nonce="abc", opaque="x", algorithm=SHA-256, qop="auth"',
    b'Digest realm="r", nonce="n", qop="auth,auth-int", algorithm=MD5-sess, stale=true',
    b'Digest username="alice", realm="fuzz.example", nonce="n", uri="sip:a@b", '
    b'response="0123456789abcdef0123456789abcdef", algorithm=MD5, cnonce="c", qop=auth, '
    b'nc=00000001, opaque="o"',
    b'Digest username*=UTF-8\'\'%C3%A4lice, realm="r", nonce="n", uri="sip:a@b", '
    b'response="r", userhash=false',
    b'Digest realm="a\\"b\\\\c", nonce="\\\\"',
    b"NoOneKnowsThisScheme opaque-data=here",
]


# -- mutation engine ---------------------------------------------------------------------------

SPECIAL = b'\r\n\t :;,<>"\\@[]?=/%\x00\x7f\xff'
NUMBERS = [b"0", b"-1", b"65535", b"65536", b"2147483648", b"4294967296", b"9" * 30, b"00001"]


def mutate(data: bytes, pool: list[bytes], rng: random.Random, limit: int) -> bytes:
    """One to four random edits; the length is capped at ``limit``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(11)
        at = rng.randint(0, len(out))
        if kind == 0 and out:  # bit flip
            at = min(at, len(out) - 1)
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:  # interesting byte
            out[min(at, len(out) - 1)] = rng.choice(SPECIAL)
        elif kind == 2:  # insertion
            out[at:at] = bytes([rng.choice(SPECIAL) if rng.random() < 0.7 else rng.randrange(256)])
        elif kind == 3:  # deletion
            del out[at : at + rng.randint(1, 16)]
        elif kind == 4:  # truncation
            del out[at:]
        elif kind in (5, 6):  # duplicate or swap lines
            lines = bytes(out).split(b"\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            if kind == 5:
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            out = bytearray(b"\n".join(lines))
        elif kind == 7:  # huge value
            unit = rng.choice([b"a", b"9", b" ", b",", b";", b'"', b"\\", b"\r\n ", b"<", b"%"])
            out[at:at] = unit * rng.choice([64, 1000, 9000, 30000, limit])
        elif kind == 8 and pool:  # splice from another seed
            other = rng.choice(pool)
            start = rng.randint(0, len(other))
            out[at:at] = other[start : start + rng.randint(1, 200)]
        elif kind == 9:  # boundary number over a run of digits
            numbers = [m.span() for m in re.finditer(rb"\d+", out)]
            if numbers:
                start, end = rng.choice(numbers)
                out[start:end] = rng.choice(NUMBERS)
        elif kind == 10:  # line-end style
            out = bytearray(
                bytes(out).replace(b"\r\n", b"\n")
                if rng.random() < 0.5
                else bytes(out).replace(b"\n", b"\r\n")
            )
        del out[limit:]
    return bytes(out)


# -- bookkeeping -------------------------------------------------------------------------------


@dataclass
class Result:
    parser: str
    engine: str
    seconds: float = 0.0
    inputs: int = 0
    crashes: dict[str, str] = field(default_factory=dict)  # signature -> saved file
    slow: list[str] = field(default_factory=list)
    slowest: float = 0.0

    def line(self) -> dict[str, Any]:
        return {
            "parser": self.parser,
            "engine": self.engine,
            "seconds": round(self.seconds, 1),
            "inputs": self.inputs,
            "crashes": len(self.crashes),
            "hangs": len(self.slow),
            "slowest_ms": round(self.slowest * 1000, 2),
            "files": sorted(self.crashes.values()) + self.slow,
        }


def make_crash_dir() -> None:
    """Findings are for a human to look at and turn into tests, not to commit as they are."""
    CRASH_DIR.mkdir(parents=True, exist_ok=True)
    (CRASH_DIR / ".gitignore").write_text("*\n")


def save(parser: str, data: bytes, kind: str, detail: str) -> str:
    make_crash_dir()
    digest = hashlib.sha1(data).hexdigest()[:16]
    path = CRASH_DIR / f"{parser}-{kind}-{digest}.bin"
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(detail)
    return str(path.relative_to(ROOT))


def signature(exc: BaseException) -> str:
    """Type and innermost frame: one entry per distinct bug, not per input."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {where}"


def best_time(check: Check, data: bytes, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        with contextlib.suppress(Exception):
            check(data)
        best = min(best, time.perf_counter() - start)
    return best


def run_one(check: Check, data: bytes, result: Result) -> float:
    """Run one input, record a crash; returns its wall time."""
    start = time.perf_counter()
    try:
        check(data)
    except Exception as exc:  # anything undocumented is the finding
        sig = signature(exc)
        if sig not in result.crashes:
            detail = "".join(traceback.format_exception(exc))
            result.crashes[sig] = save(result.parser, data, "crash", detail)
    return time.perf_counter() - start


def fuzz_mutate(parser: str, check: Check, seconds: float, seed: int) -> Result:
    result = Result(parser, "mutate")
    rng = random.Random(seed)
    pool = seeds(parser)
    queue = list(pool)
    limit = MAX_INPUT[parser]
    slowest: list[tuple[float, int, bytes]] = []  # min-heap of the ten slowest inputs
    started = time.monotonic()
    deadline = started + seconds
    while time.monotonic() < deadline:
        for _ in range(50):
            roll = rng.random()
            if roll < 0.05:
                data = rng.randbytes(rng.randint(0, min(limit, 300)))
            else:
                data = mutate(rng.choice(queue), pool, rng, limit)
            elapsed = run_one(check, data, result)
            result.inputs += 1
            if len(slowest) < 10:
                heapq.heappush(slowest, (elapsed, result.inputs, data))
            elif elapsed > slowest[0][0]:
                heapq.heapreplace(slowest, (elapsed, result.inputs, data))
            if roll > 0.98 and len(data) < 4096:
                queue.append(data)  # let mutations stack up a little
        del queue[len(pool) + 2000 :]
    result.seconds = time.monotonic() - started
    retime(parser, check, [data for _, _, data in slowest], result)
    return result


def retime(parser: str, check: Check, inputs: list[bytes], result: Result) -> None:
    """Re-time the slowest candidates without the fuzzer's overhead; flag those over 100 ms."""
    for data in inputs:
        elapsed = best_time(check, data)
        result.slowest = max(result.slowest, elapsed)
        if elapsed > SLOW_SECONDS:
            detail = f"{elapsed * 1000:.1f} ms for {len(data)} bytes (best of 3)\n"
            result.slow.append(save(parser, data, "slow", detail))


# -- atheris engine ----------------------------------------------------------------------------


def atheris_worker(parser: str, seconds: float, seed: int, out: Path) -> None:
    """Runs in a subprocess: libFuzzer ends it by exit(), so state goes to files as it comes."""
    import atheris  # type: ignore[import-not-found,unused-ignore]

    with atheris.instrument_imports(include=["pypbx"]):
        check = load_targets()[parser]
    result = Result(parser, "atheris")
    slowest: list[tuple[float, bytes]] = []
    state = {"flushed": 0.0, "dirty": False}

    def flush() -> None:
        (out / "stats.json").write_text(json.dumps({"crashes": result.crashes}))
        for index, (_, data) in enumerate(slowest):
            (out / f"slow-{index}.bin").write_bytes(data)
        state["flushed"], state["dirty"] = time.monotonic(), False

    def one_input(data: bytes) -> None:
        crashes = len(result.crashes)
        elapsed = run_one(check, data, result)
        if len(slowest) < 5 or elapsed > slowest[-1][0]:
            slowest.append((elapsed, data))
            slowest.sort(key=lambda item: -item[0])
            del slowest[5:]
            state["dirty"] = True
        if len(result.crashes) != crashes:
            flush()  # rare, and must not be lost to libFuzzer's exit()
        elif state["dirty"] and time.monotonic() - state["flushed"] > 0.5:
            flush()

    corpus = out / "corpus"
    corpus.mkdir()
    for index, data in enumerate(seeds(parser)):
        (corpus / f"seed-{index}").write_bytes(data)
    max_len = {"sip": 16384, "sdp": 16384, "digest": 9000}.get(parser, 1500)
    argv = [
        sys.argv[0],
        f"-max_total_time={max(1, int(seconds))}",
        f"-seed={seed}",
        f"-max_len={max_len}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
        f"-artifact_prefix={CRASH_DIR}/{parser}-libfuzzer-",
        str(corpus),
    ]
    make_crash_dir()
    atheris.Setup(argv, one_input)
    atheris.Fuzz()  # never returns: libFuzzer exit()s at -max_total_time


def fuzz_atheris(parser: str, check: Check, seconds: float, seed: int) -> Result:
    result = Result(parser, "atheris")
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{parser}-") as tmp:
        out = Path(tmp)
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", parser, "--seconds", str(seconds),
             "--seed", str(seed), "--out", str(out)],
            capture_output=True, text=True, timeout=seconds + 120, check=False,
        )  # fmt: skip
        result.seconds = time.monotonic() - started
        stats = re.search(r"stat::number_of_executed_units:\s*(\d+)", proc.stderr)
        result.inputs = int(stats.group(1)) if stats else 0
        stats_file = out / "stats.json"
        if stats_file.exists():
            result.crashes.update(json.loads(stats_file.read_text())["crashes"])
        if proc.returncode != 0:  # libFuzzer itself stopped: timeout, OOM or a C-level crash
            tail = "\n".join(proc.stderr.splitlines()[-40:])
            result.crashes[f"libFuzzer exit {proc.returncode}"] = save(
                parser, tail.encode(), "libfuzzer", tail
            )
        retime(parser, check, [p.read_bytes() for p in sorted(out.glob("slow-*.bin"))], result)
    return result


# -- main --------------------------------------------------------------------------------------


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="total, split by parser")
    parser.add_argument("--parsers", default=",".join(PARSERS))
    parser.add_argument(
        "--engine",
        choices=("auto", "atheris", "mutate", "both"),
        default="auto",
        help="auto: both (half the time each) when atheris is importable, else mutate",
    )
    parser.add_argument("--seed", type=int, default=int(os.environ.get("FUZZ_SEED", "4475")))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        atheris_worker(args.worker, args.seconds, args.seed, Path(args.out))
        return 0
    names = [name.strip() for name in args.parsers.split(",") if name.strip()]
    unknown = set(names) - set(PARSERS)
    if unknown:
        parser.error(f"unknown parsers: {', '.join(sorted(unknown))}")
    engine = args.engine
    if engine == "auto":
        engine = "both" if have_atheris() else "mutate"
    engines = (
        [fuzz_atheris, fuzz_mutate]
        if engine == "both"
        else [fuzz_atheris if engine == "atheris" else fuzz_mutate]
    )
    targets = load_targets()
    share = args.seconds / len(names) / len(engines)
    results = []
    for index, name in enumerate(names):
        for run in engines:
            result = run(name, targets[name], share, args.seed + index)
            results.append(result)
            print(json.dumps(result.line()), file=sys.stderr, flush=True)
    header = f"{'parser':8} {'engine':8} {'seconds':>8} {'inputs':>10} {'inputs/s':>9} "
    header += f"{'crashes':>8} {'hangs':>6} {'slowest ms':>11}"
    print(header)
    for r in results:
        rate = r.inputs / r.seconds if r.seconds else 0.0
        print(
            f"{r.parser:8} {r.engine:8} {r.seconds:8.1f} {r.inputs:10d} {rate:9.0f} "
            f"{len(r.crashes):8d} {len(r.slow):6d} {r.slowest * 1000:11.2f}"
        )
    for r in results:
        for sig, path in sorted(r.crashes.items()):
            print(f"  {r.parser}: {sig} -> {path}")
        for path in r.slow:
            print(f"  {r.parser}: slow input -> {path}")
    return 1 if any(r.crashes or r.slow for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
