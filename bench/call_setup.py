"""Call-setup benchmark: SIPp UAC -> pypbx -> SIPp UAS at stepped call rates, beside references.

Targets, each driven by the same digest-challenged INVITE scenario (bench/scenarios/uac_setup.xml):

- `direct`: SIPp UAC -> SIPp UAS, the UAS challenging: the floor the others are measured over.
- `pypbx` (and `pypbx+uvloop` with --uvloop): pypbx challenges and authenticates the caller
  against its store, looks up the callee's registration, runs the B2BUA's second dialog,
  allocates RTP ports, rewrites SDP and writes the history row.
- `kamailio` (--reference): Kamailio 5.6 as stateful proxy with digest auth (db_text HA1) and
  a registrar lookup, one UDP worker.
- `sippy` (--reference): Sippy's b2bua_simple, the callee challenging through it.

For each rate and target it prints completed/failed calls, the authenticated INVITE->200
response time (p50/p99, ms), CPU per call and share of a core, and how pypbx compares with
the target (pypbx's value / the target's; pypbx runs first at each rate). Each row also goes
out as a JSON line on stderr.
A target that fails calls at one rate is not offered higher ones (--keep-going does).
The machine is noisy and shared: compare ratios from one run, not figures between runs.

    .venv/bin/python bench/call_setup.py [--rates 25,50,100,200] [--seconds 6]
        [--reference kamailio,sippy|none] [--uvloop off|on|both] [--py-spy DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchlib.common import (
    CALLEE,
    CALLER,
    BenchPbx,
    BenchPorts,
    BenchSipp,
    PySpy,
    Table,
    challenge_variables,
    emit,
    percentile,
    ratio,
    register_callee,
    response_times,
    scenario,
    sipp_counts,
    workspace,
)
from benchlib.references import (
    Kamailio,
    SippyB2bua,
    add_reference_argument,
    chosen_references,
)

from peers.ports import PortAllocator
from peers.sipp import SippResult

UAC = scenario("uac_setup.xml")
UAS = scenario("uas_answer.xml")
HOLD_MS = 1000
HEALTHY_P99_MS = 500.0  # past this, callers are already retransmitting their INVITEs


@dataclass
class Target:
    """Where the UAC sends, and what the UAS must do for calls to get through that way."""

    label: str
    remote: str | None  # None: straight to the UAS
    register: bool  # the UAS registers CALLEE at `remote` before the calls
    challenge: bool  # the UAS challenges the caller itself
    uas_port: int
    cpu: Callable[[], float] | None = None
    pid: int | None = None  # a Python server py-spy may sample
    max_ok_rate: int = 0
    max_healthy_rate: int = 0  # every call completed and p99 under HEALTHY_P99_MS
    stopped: bool = False
    results: dict[int, dict[str, float]] = field(default_factory=dict)


def run_pair(
    workdir: Path, ports: PortAllocator, target: Target, *, rate: int, calls: int
) -> tuple[SippResult, list[float]]:
    """One step: a UAS, then a UAC offering `calls` calls at `rate` per second."""
    if target.register:
        assert target.remote is not None
        register_callee(workdir, ports, target.remote, target.uas_port)
    uas = BenchSipp(
        workdir,
        UAS,
        local_port=target.uas_port,
        control_port=ports.port(),
        calls=calls,
        variables=challenge_variables(target.challenge),
        timeout=calls / rate + 60,
        extra=["-max_socket", "2048"],
    ).start()
    uas.wait_until_listening()
    remote = target.remote or f"127.0.0.1:{target.uas_port}"
    uac = BenchSipp(
        workdir,
        UAC,
        local_port=ports.port(),
        control_port=ports.port(),
        remote=remote,
        service=CALLEE[0],
        auth=CALLER,
        keys={"caller": CALLER[0]},
        calls=calls,
        pause_ms=HOLD_MS,
        timeout=calls / rate + 60,
        extra=["-r", str(rate), "-rp", "1000", "-trace_rtt", "-rtt_freq", "1", "-l", "10000"],
    )
    result = uac.run()
    uas.stop()
    return result, response_times(workdir)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="25,50,100,200", help="calls per second to offer")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds per step")
    parser.add_argument(
        "--uvloop",
        choices=("off", "on", "both"),
        default="off",
        help="run pypbx on uvloop's event loop (both: one pypbx of each kind)",
    )
    parser.add_argument("--keep-going", action="store_true", help="offer every rate to all")
    parser.add_argument("--py-spy", metavar="DIR", help="profile each pypbx step into DIR")
    add_reference_argument(parser, ("kamailio", "sippy"))
    parser.add_argument("--workdir", metavar="DIR", help="keep logs and configs in DIR")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    references = chosen_references(args.reference, ("kamailio", "sippy"))
    ports = BenchPorts()
    with workspace(args.workdir) as root:
        servers: list[BenchPbx | Kamailio | SippyB2bua] = []
        targets: list[Target] = []
        try:
            loops = {"off": [False], "on": [True], "both": [False, True]}[args.uvloop]
            for uvloop in loops:
                pbx = BenchPbx(root / f"pbx-{uvloop}", ports, uvloop=uvloop)
                pbx.start()
                servers.append(pbx)
                pbx.add_sip_extension(*CALLER)
                pbx.add_sip_extension(*CALLEE)
                targets.append(
                    Target(
                        pbx.label,
                        pbx.sip_address,
                        register=True,
                        challenge=False,
                        uas_port=ports.port(),
                        cpu=pbx.cpu_seconds,
                        pid=pbx.pid,
                    )
                )
            targets.append(Target("direct", None, False, True, ports.port()))
            if "kamailio" in references:
                kam = Kamailio(root / "kamailio", ports, [CALLER, CALLEE])
                kam.start()
                servers.append(kam)
                targets.append(
                    Target("kamailio", kam.sip_address, True, False, ports.port(), kam.cpu_seconds)
                )
            if "sippy" in references:
                uas_port = ports.port()
                sippy = SippyB2bua(root / "sippy", ports, f"127.0.0.1:{uas_port}")
                sippy.start()
                servers.append(sippy)
                targets.append(
                    Target("sippy", sippy.sip_address, False, True, uas_port, sippy.cpu_seconds)
                )
            run_steps(args, rates, root, ports, targets)
        finally:
            for server in servers:
                server.stop()
    return 0


def run_steps(
    args: argparse.Namespace,
    rates: list[int],
    root: Path,
    ports: PortAllocator,
    targets: list[Target],
) -> None:
    table = Table(
        [
            ("rate", 5),
            ("target", 12),
            ("calls", 6),
            ("ok", 6),
            ("fail", 5),
            ("p50 ms", 8),
            ("p99 ms", 8),
            ("cpu ms/call", 11),
            ("cpu %", 6),
            ("pypbx/x p50", 11),
            ("pypbx/x cpu", 11),
        ]
    )
    for rate in rates:
        calls = int(rate * args.seconds)
        for target in targets:
            if target.stopped:
                continue
            workdir = root / f"{target.label}-{rate}"
            spy = None
            if args.py_spy and target.pid is not None:
                out = Path(args.py_spy) / f"call_setup-{target.label}-{rate}.raw"
                spy = PySpy(target.pid, out).start()
            cpu0 = target.cpu() if target.cpu else 0.0
            res, rt = run_pair(workdir, ports, target, rate=rate, calls=calls)
            cpu = (target.cpu() - cpu0) if target.cpu else float("nan")
            ok, failed = sipp_counts(res)
            figures: dict[str, float] = {
                "ok": ok,
                "failed": failed,
                "p50_ms": round(percentile(rt, 50), 2),
                "p99_ms": round(percentile(rt, 99), 2),
                "cpu_ms_per_call": round(1000 * cpu / max(ok, 1), 3),
                # the UAC takes calls/rate s to start them all, plus the hold time
                "cpu_share": round(cpu / (calls / rate + HOLD_MS / 1000), 3),
            }
            target.results[rate] = figures
            if failed == 0 and ok == calls:
                target.max_ok_rate = rate
                if figures["p99_ms"] < HEALTHY_P99_MS:
                    target.max_healthy_rate = rate
            elif not args.keep_going:
                target.stopped = True
            line: dict[str, object] = {"bench": "call_setup", "target": target.label}
            line |= {"rate": rate, "calls": calls, **figures}
            pypbx = targets[0].results.get(rate)
            if spy is not None:
                spy.stop()
                line["py_spy"] = spy.report(f"{target.label} at {rate}/s")
            is_pypbx = target is targets[0]
            table.row(
                rate,
                target.label,
                calls,
                ok,
                failed,
                figures["p50_ms"],
                figures["p99_ms"],
                figures["cpu_ms_per_call"] if target.cpu else "-",
                f"{100 * figures['cpu_share']:.0f}" if target.cpu else "-",
                "-" if is_pypbx or pypbx is None else ratio(pypbx["p50_ms"], figures["p50_ms"]),
                "-"
                if is_pypbx or pypbx is None or not target.cpu
                else ratio(pypbx["cpu_ms_per_call"], figures["cpu_ms_per_call"]),
            )
            emit(line)
    print(
        "highest rate with every call completed (of those offered), "
        f"and with p99 also under {HEALTHY_P99_MS:.0f} ms:"
    )
    for target in targets:
        print(
            f"  {target.label:>12}: {target.max_ok_rate or 'none'} calls/s, "
            f"{target.max_healthy_rate or 'none'} calls/s"
        )
        emit(
            {
                "bench": "call_setup",
                "target": target.label,
                "max_ok_rate": target.max_ok_rate,
                "max_healthy_rate": target.max_healthy_rate,
            }
        )


if __name__ == "__main__":
    sys.exit(main())
