"""HTTP API benchmark: ListActiveCalls with many calls up, and Hold/Unhold pairs.

SIPp sets up --calls calls through pypbx (caller: bench/scenarios/uac_setup.xml holding the
call, callee: bench/scenarios/uas_answer.xml; no RTP is sent, so pypbx's RTP timeout is
off) and keeps them up while the API is measured:

- ListActiveCalls latency (p50/p99 over --requests sequential requests, each on a new
  connection as a typical client makes them) with every call up, against the same command
  with no calls up in the same pypbx (the reference: what the HTTP and XML path costs alone);
- Hold then Unhold of one call (a "pair"), over --pairs pairs spread across the calls from
  --concurrency clients: pairs per second, and pair latency p50/p99, against a pair of
  cheap commands (ListExtensions with two extensions) at the same concurrency.

A Hold attaches hold music to both legs and Unhold takes it off again; pypbx sends no
re-INVITE for it. JSON lines on stderr; compare the ratios, the machine is shared.

    .venv/bin/python bench/http_api.py [--calls 1000] [--cps 30] [--requests 30]
        [--pairs 200] [--concurrency 4] [--uvloop]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchlib.common import (
    CALLEE,
    CALLER,
    BenchPbx,
    BenchPorts,
    BenchSipp,
    CpuMeter,
    Table,
    emit,
    percentile,
    ratio,
    register_callee,
    scenario,
    wait_until,
    workspace,
)

from peers.pbx import ApiResult, PbxProcess

UAC = scenario("uac_setup.xml")
UAS = scenario("uas_answer.xml")


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return 1000 * (time.perf_counter() - start)


def checked(pbx: PbxProcess, command: str, **params: str) -> None:
    api: Callable[..., ApiResult] = pbx.api  # params are str fields, never `auth`
    result = api(command, **params)
    if result.code != 200:
        raise RuntimeError(f"{command} {params}: {result.code} {result.message}")


def hold_pair(pbx: PbxProcess, call_id: str) -> Callable[[], None]:
    def pair() -> None:
        checked(pbx, "Hold", CallId=call_id)
        checked(pbx, "Unhold", CallId=call_id)

    return pair


def cheap_pair(pbx: PbxProcess) -> None:
    checked(pbx, "ListExtensions")
    checked(pbx, "ListExtensions")


def latency(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 50), 2),
        "p99_ms": round(percentile(samples, 99), 2),
    }


def list_calls(pbx: PbxProcess, requests: int) -> tuple[dict[str, float], int]:
    """ListActiveCalls `requests` times: latency figures and the number of calls listed."""
    counts: list[int] = []
    samples = [timed(lambda: counts.append(len(pbx.active_calls()))) for _ in range(requests)]
    return latency(samples), counts[-1]


def pairs(
    pbx: PbxProcess, work: list[Callable[[], None]], concurrency: int
) -> tuple[dict[str, float], float, int]:
    """Run the pairs from `concurrency` threads: latency, pairs per second, failures."""
    failures = 0

    def one(job: Callable[[], None]) -> float:
        nonlocal failures
        try:
            return timed(job)
        except RuntimeError:
            failures += 1
            return float("nan")

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        samples = list(pool.map(one, work))
    elapsed = time.perf_counter() - start
    good = [s for s in samples if s == s]
    return latency(good), len(good) / elapsed, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="active calls to list")
    parser.add_argument("--cps", type=int, default=30, help="call setup rate")
    parser.add_argument("--requests", type=int, default=30, help="ListActiveCalls requests")
    parser.add_argument("--pairs", type=int, default=200, help="Hold/Unhold pairs")
    parser.add_argument("--concurrency", type=int, default=4, help="API clients at once")
    parser.add_argument("--uvloop", action="store_true", help="run pypbx on uvloop")
    parser.add_argument("--workdir", metavar="DIR", help="keep logs and configs in DIR")
    args = parser.parse_args()
    ports = BenchPorts()
    with workspace(args.workdir) as root:
        pbx = BenchPbx(
            root / "pbx",
            ports,
            uvloop=args.uvloop,
            rtp_port_count=4 * args.calls + 100,  # two legs, RTP + RTCP each
            config={"media": {"rtp_timeout": 0}},
        )
        pbx.start()
        uas: BenchSipp | None = None
        uac: BenchSipp | None = None
        try:
            pbx.add_sip_extension(*CALLER)
            pbx.add_sip_extension(*CALLEE)
            idle, _ = list_calls(pbx, args.requests)
            cheap_work = [lambda: cheap_pair(pbx)] * args.pairs
            cheap, cheap_rate, _ = pairs(pbx, cheap_work, args.concurrency)
            uas_port = ports.port()
            register_callee(root, ports, pbx.sip_address, uas_port)
            ramp = args.calls / args.cps
            hold_s = ramp + 600
            uas = BenchSipp(
                root,
                UAS,
                local_port=uas_port,
                control_port=ports.port(),
                calls=args.calls,
                timeout=ramp + hold_s + 60,
                extra=["-max_socket", "4096"],
            )
            uas.start()
            uas.wait_until_listening()
            uac = BenchSipp(
                root,
                UAC,
                local_port=ports.port(),
                control_port=ports.port(),
                remote=pbx.sip_address,
                service=CALLEE[0],
                auth=CALLER,
                keys={"caller": CALLER[0]},
                calls=args.calls,
                pause_ms=int(hold_s * 1000),
                timeout=ramp + hold_s + 60,
                extra=["-r", str(args.cps), "-l", str(args.calls + 10), "-max_socket", "4096"],
            )
            uac.start()
            t0 = time.monotonic()
            up = wait_until(
                lambda: len(pbx.active_calls()) >= args.calls, timeout=ramp * 3 + 60, interval=2.0
            )
            calls = pbx.active_calls()
            print(
                f"{len(calls)} calls up in {time.monotonic() - t0:.0f} s"
                + ("" if up else f" (wanted {args.calls}: measuring with what is up)")
            )
            time.sleep(2.0)  # let the last ACKs and history rows settle
            loaded, listed = list_calls(pbx, args.requests)
            ids = [row["CallId"] for row in calls if row.get("CallState") == "InCall"]
            hold_work = [hold_pair(pbx, ids[i % len(ids)]) for i in range(args.pairs)]
            meter = CpuMeter(pbx.cpu_seconds)
            meter.start()
            held, hold_rate, hold_failures = pairs(pbx, hold_work, args.concurrency)
            meter.stop()
            report(args, idle, loaded, listed, cheap, cheap_rate, held, hold_rate, hold_failures)
            emit(
                {
                    "bench": "http_api",
                    "target": pbx.label,
                    "calls_up": listed,
                    "list_idle": idle,
                    "list_loaded": loaded,
                    "pairs": args.pairs,
                    "concurrency": args.concurrency,
                    "hold_pairs_per_s": round(hold_rate, 1),
                    "hold_pair": held,
                    "hold_failures": hold_failures,
                    "hold_cpu_share": round(meter.utilisation, 3),
                    "cheap_pairs_per_s": round(cheap_rate, 1),
                    "cheap_pair": cheap,
                }
            )
        finally:
            pbx.stop(timeout=30)
            for sipp in (uac, uas):
                if sipp is not None:
                    sipp.stop()
    return 0


def report(
    args: argparse.Namespace,
    idle: dict[str, float],
    loaded: dict[str, float],
    listed: int,
    cheap: dict[str, float],
    cheap_rate: float,
    held: dict[str, float],
    hold_rate: float,
    hold_failures: int,
) -> None:
    table = Table(
        [
            ("what", 34),
            ("p50 ms", 8),
            ("p99 ms", 8),
            ("per s", 7),
            ("x ref p50", 9),
            ("x ref p99", 9),
        ]
    )
    table.row("ListActiveCalls, 0 calls (ref)", idle["p50_ms"], idle["p99_ms"], "-", "-", "-")
    table.row(
        f"ListActiveCalls, {listed} calls",
        loaded["p50_ms"],
        loaded["p99_ms"],
        "-",
        ratio(loaded["p50_ms"], idle["p50_ms"]),
        ratio(loaded["p99_ms"], idle["p99_ms"]),
    )
    table.row(
        f"2x ListExtensions x{args.concurrency} (ref)",
        cheap["p50_ms"],
        cheap["p99_ms"],
        f"{cheap_rate:.0f}",
        "-",
        "-",
    )
    table.row(
        f"Hold+Unhold x{args.concurrency}"
        + (f" ({hold_failures} failed)" if hold_failures else ""),
        held["p50_ms"],
        held["p99_ms"],
        f"{hold_rate:.0f}",
        ratio(held["p50_ms"], cheap["p50_ms"]),
        ratio(held["p99_ms"], cheap["p99_ms"]),
    )


if __name__ == "__main__":
    sys.exit(main())
