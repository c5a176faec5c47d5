"""In-process micro-benchmark of one digest registration, the way the server runs it.

Why in process: the SIPp benchmark (register_rate.py) says how many registrations a second
pypbx sustains, not where the CPU goes; this one feeds the bytes SIPp sends
(bench/scenarios/register_users.xml) into the real `UdpTransport.datagram_received` of a
started `Pbx` (SQLite store in a temp dir, the registrar, digest check, message router,
write-behind), with a fake datagram transport that captures what would be sent. One
registration is REGISTER -> 401, REGISTER with Authorization -> 200.

Figures: µs of CPU per registration on the server side (the process's CPU, the store's
writer thread included, minus the main-thread CPU the fake phone spent building requests
and reading the 401), the main thread's share of it, the garbage collector's CPU by
generation, and a cProfile of the server side (top 25 by cumulative and by own time).
Transactions linger 32 s after their final response (Timer J): a run shorter than that,
like the default one, leaves out their ends and the collections a full table brings;
`--count 40000` or more shows the steady state of a long registration storm.

    .venv/bin/python bench/register_path.py [--count 20000] [--users 1000]
        [--uvloop on|off] [--profile N | --no-profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import hashlib
import io
import pstats
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib.common import _one_benchmark_at_a_time

from pypbx.config import SecuritySettings
from pypbx.media.endpoint import MediaManager
from pypbx.net.stack import SipStack
from pypbx.net.transport import UdpTransport
from pypbx.pbx.messages import MessageRouter
from pypbx.pbx.security import protection
from pypbx.pbx.service import Pbx
from pypbx.sip.digest import compute_ha1
from pypbx.store import ExtensionRecord, Store

REALM = "pypbx"
PHONE_IP = "127.0.0.1"
PHONE_PORT = 61999
_NONCE_RE = re.compile(rb'nonce="([^"]+)"')
_OPAQUE_RE = re.compile(rb'opaque="([^"]+)"')
_STATUS_RE = re.compile(rb"SIP/2\.0 (\d{3}) ")


class GcPauses:
    """Collector CPU per generation, from gc.callbacks (a long pause stalls the loop)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.thread_time()
        else:
            self.pauses[info["generation"]].append(time.thread_time() - self._start)

    def summary(self) -> str:
        parts = []
        for generation, pauses in self.pauses.items():
            if pauses:
                parts.append(
                    f"gen{generation} {len(pauses)}x total {sum(pauses) * 1e3:.0f} ms "
                    f"max {max(pauses) * 1e3:.1f} ms"
                )
        return "; ".join(parts) or "none"


class CaptureTransport:
    """Stands in for the datagram transport: keeps the last datagram sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class Phone:
    """The fake SIPp side: builds the two REGISTERs like register_users.xml does."""

    def __init__(self, server: str) -> None:
        self.server = server

    def first(self, user: str, n: int) -> bytes:
        return self._register(user, n, 1, "")

    def second(self, user: str, password: str, n: int, challenge: bytes) -> bytes:
        nonce = _search(_NONCE_RE, challenge)
        opaque = _search(_OPAQUE_RE, challenge)
        uri = f"sip:{self.server}"
        cnonce = f"{n:08x}"
        ha1 = compute_ha1(user, REALM, password)
        ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
        digest = hashlib.md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}".encode()).hexdigest()
        auth = (
            f'Authorization: Digest username="{user}",realm="{REALM}",cnonce="{cnonce}",'
            f'nc=00000001,qop=auth,uri="{uri}",nonce="{nonce}",response="{digest}",'
            f'algorithm=MD5,opaque="{opaque}"\r\n'
        )
        return self._register(user, n, 2, auth)

    def _register(self, user: str, n: int, cseq: int, auth: str) -> bytes:
        server = self.server
        local = f"{PHONE_IP}:{PHONE_PORT}"
        return (
            f"REGISTER sip:{server} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local};branch=z9hG4bK-{n}-{cseq}-bench;rport\r\n"
            f"From: <sip:{user}@{server}>;tag=4242SIPpReg{n}\r\n"
            f"To: <sip:{user}@{server}>\r\n"
            f"Call-ID: {n}-4242@{PHONE_IP}\r\n"
            f"CSeq: {cseq} REGISTER\r\n"
            f"Contact: <sip:{user}@{local};transport=UDP>\r\n"
            f"{auth}"
            "Expires: 3600\r\n"
            "Max-Forwards: 70\r\n"
            "User-Agent: SIPp\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()


def _search(regex: re.Pattern[bytes], data: bytes) -> str:
    match = regex.search(data)
    if match is None:
        raise SystemExit(f"no {regex.pattern!r} in the challenge:\n{data.decode()}")
    return match.group(1).decode()


def _status(data: bytes) -> int:
    match = _STATUS_RE.match(data)
    return int(match.group(1)) if match else 0


async def start_pbx(workdir: Path, users: int) -> tuple[Pbx, Store, UdpTransport, CaptureTransport]:
    store = await Store.open(f"sqlite+aiosqlite:///{workdir / 'pypbx.db'}")
    for i in range(users):
        ext = str(10000 + i)
        password = f"pw-{ext}"
        await store.add_extension(
            ExtensionRecord(
                ext,
                "SIP",
                user_id=f"user{ext}",
                username=ext,
                authorization_name=ext,
                password=password,
                ha1_md5=compute_ha1(ext, REALM, password, "MD5"),
                ha1_sha256=compute_ha1(ext, REALM, password, "SHA-256"),
            )
        )
    stack = SipStack("127.0.0.1", 0, advertised="127.0.0.1", tcp=False)
    media = MediaManager("127.0.0.1", 40000, 40100, advertised_address="127.0.0.1")
    guard = protection(SecuritySettings())
    pbx = Pbx(
        stack,
        store,
        media,
        realm=REALM,
        nonce_secret=await Pbx.nonce_secret(store),
        digest_algorithms=("MD5",),
        auth_bans=guard.sip_bans,
        flood_limits=guard.flood,
        call_limits=guard.calls,
    )
    # as enable_media does: after_register looks for messages waiting for the phone
    pbx.messages = MessageRouter(stack, store, pbx.registrar, pbx.auth, None)
    await pbx.start()
    protocol = stack._udp
    assert protocol is not None and protocol.transport is not None
    protocol.transport.close()
    capture = CaptureTransport()
    protocol.transport = capture  # type: ignore[assignment]
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)  # as pypbx.app does after start-up
    return pbx, store, protocol, capture


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="pypbx-regpath-") as tmp:
        pbx, store, protocol, capture = await start_pbx(Path(tmp), args.users)
        server = f"127.0.0.1:{pbx.stack.port}"
        phone = Phone(server)
        accounts = [(str(10000 + i), f"pw-{10000 + i}") for i in range(args.users)]
        source = (PHONE_IP, PHONE_PORT)

        async def server_side(data: bytes) -> bytes:
            protocol.datagram_received(data, source)
            while pbx._tasks:
                for task in list(pbx._tasks):
                    await task
            return capture.sent[-1][0]

        async def one(n: int, profiler: cProfile.Profile | None) -> float:
            """One registration; returns the main-thread CPU the phone side spent."""
            user, password = accounts[n % len(accounts)]
            t0 = time.thread_time()
            first = phone.first(user, n)
            client = time.thread_time() - t0
            if profiler is not None:
                profiler.enable()
            challenge = await server_side(first)
            if profiler is not None:
                profiler.disable()
            t0 = time.thread_time()
            if _status(challenge) != 401:
                raise SystemExit(f"expected 401, got:\n{challenge.decode()}")
            second = phone.second(user, password, n, challenge)
            client += time.thread_time() - t0
            if profiler is not None:
                profiler.enable()
            answer = await server_side(second)
            if profiler is not None:
                profiler.disable()
            if _status(answer) != 200:
                raise SystemExit(f"expected 200, got:\n{answer.decode()}")
            capture.sent.clear()
            return client

        # Every registration below has numbers of its own: one that reused a warm-up's
        # branch would be answered as a retransmission, from the completed transaction.
        warm = min(2000, args.count)
        for n in range(warm):  # warm-up: caches, first bindings
            await one(n, None)
        await store.registrations.flush()

        client_cpu = 0.0
        pauses = GcPauses()
        gc.callbacks.append(pauses)
        cpu0, main0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
        for n in range(args.count):
            client_cpu += await one(warm + n, None)
            if n % 200 == 199:
                await asyncio.sleep(0)  # let timers and the write-behind task run
        await store.registrations.flush()
        cpu = time.process_time() - cpu0
        main = time.thread_time() - main0
        wall = time.perf_counter() - wall0
        gc.callbacks.remove(pauses)
        per = (cpu - client_cpu) / args.count * 1e6
        main_per = (main - client_cpu) / args.count * 1e6
        print(
            f"{args.count} registrations ({args.users} users, {args.loop}): "
            f"{per:.0f} µs CPU per registration (main thread {main_per:.0f} µs, "
            f"phone side {client_cpu / args.count * 1e6:.0f} µs excluded), "
            f"wall {wall / args.count * 1e6:.0f} µs each"
        )
        print(f"live transactions at the end: {len(pbx.stack.layer)}; GC: {pauses.summary()}")

        if args.profile:
            profiler = cProfile.Profile()
            base = warm + args.count
            for n in range(args.profile):
                await one(base + n, profiler)
            await store.registrations.flush()
            for key in ("cumulative", "tottime"):
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out)
                stats.sort_stats(key).print_stats(25)
                print(f"--- cProfile, server side of {args.profile} registrations, by {key}")
                print(_trim(out.getvalue()))
        await pbx.stop()
        await store.close()


def _trim(text: str) -> str:
    """pstats output without its preamble lines."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("ncalls"):
            return "\n".join(lines[i - 2 :])
    return text


def main() -> None:
    lock = _one_benchmark_at_a_time()  # CPU figures: not beside another benchmark
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20000, help="registrations timed")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--uvloop", choices=("on", "off"), default="on")
    parser.add_argument("--profile", type=int, default=3000, help="registrations profiled")
    parser.add_argument("--no-profile", dest="profile", action="store_const", const=0)
    args = parser.parse_args()
    args.loop = "uvloop" if args.uvloop == "on" else "asyncio"
    if args.uvloop == "on":
        import uvloop

        runner: Any = uvloop.run
    else:
        runner = asyncio.run
    runner(run(args))
    lock.close()


if __name__ == "__main__":
    sys.exit(main())
