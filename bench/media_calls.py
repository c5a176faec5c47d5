"""Media relay benchmark: N concurrent calls, each with G.711 20 ms RTP through pypbx both ways.

SIPp sets the calls up (caller: bench/scenarios/uac_media.xml, callee: SIPp with -rtp_echo)
and bench/benchlib/rtp_load.py, a separate process, sends one 50 packet/s stream per call
to pypbx's caller-side port; pypbx relays it to the callee leg, SIPp echoes it, and pypbx
relays it back, so each packet crosses pypbx in both directions before rtp_load receives
it and measures loss and delay itself (pypbx's own counters are not used). The `direct`
reference runs the same load against the SIPp echo with no pypbx in between.

Per N: calls answered, packets sent in the measuring window, loss, round-trip delay p50,
added jitter (each packet's round trip over the best of its stream) p50/p99, pypbx's CPU
share during the window and per call. The goal: every call answered, loss < 0.1 % and p99
added jitter < 5 ms (over two passes through pypbx); the largest N meeting it is reported.
N steps on past the goal (to show the curve) until calls fail or loss reaches 1 %.
`send lag` is how late rtp_load itself sent (its own health: if that is high, the machine
is saturated and the step says little about pypbx). Compare ratios with `direct` only.

    .venv/bin/python bench/media_calls.py [--calls 50,100,200,400] [--window 8] [--cps 30]
        [--uvloop off|on|both] [--relay-worker off|on|both] [--py-spy DIR] [--keep-going]

`--relay-worker` (default both): pypbx with its relay worker process taking calls over (after
0.5 s here), and pypbx relaying everything on its event loop, side by side. pypbx's CPU
includes the worker's (every process of its session).
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib.common import (
    BENCH,
    CALLEE,
    CALLER,
    BenchPbx,
    BenchPorts,
    BenchSipp,
    CpuMeter,
    PySpy,
    Table,
    challenge_variables,
    emit,
    ratio,
    register_callee,
    scenario,
    sipp_counts,
    workspace,
)

from peers.ports import PortAllocator

UAC = scenario("uac_media.xml")
UAS = scenario("uas_answer.xml")
MAX_LOSS_PCT = 0.1
MAX_JITTER_P99_MS = 5.0
STOP_LOSS_PCT = 1.0  # a target losing this much (or failing calls) is offered no larger N


@dataclass
class Target:
    label: str
    remote: str | None  # None: the caller talks to the SIPp echo directly
    uas_port: int
    cpu: Callable[[], float] | None = None
    pid: int | None = None
    max_calls: int = 0
    stopped: bool = False
    results: dict[int, dict[str, Any]] = field(default_factory=dict)


def run_step(
    workdir: Path,
    ports: PortAllocator,
    target: Target,
    calls: int,
    args: argparse.Namespace,
    spy_path: Path | None,
) -> dict[str, Any]:
    cps = args.cps if target.remote else max(args.cps, 100)
    # the callee re-registers from the same port at every step: a new port would leave the
    # old binding behind, and pypbx would fork each call to a SIPp that is gone
    uas_port = target.uas_port
    echo_port = ports.block(4)  # SIPp binds the audio port and the video one (+2)
    rtp_port = ports.block(2)  # rtp_load's RTP and RTCP
    direct = target.remote is None
    if target.remote is not None:
        register_callee(workdir, ports, target.remote, uas_port)
    ramp = calls / cps
    hold_ms = int(1000 * (ramp + args.settle + args.window + 4.0))
    timeout = ramp * 2 + hold_ms / 1000 + 60
    uas = BenchSipp(
        workdir,
        UAS,
        local_port=uas_port,
        control_port=ports.port(),
        media_port=echo_port,
        rtp_echo=True,
        calls=calls,
        variables=challenge_variables(direct),
        timeout=timeout,
        extra=["-max_socket", "4096"],
    ).start()
    uas.wait_until_listening()
    ports_log = workdir / "far-ports.log"
    out = workdir / "rtp_load.json"
    load = subprocess.Popen(
        [
            sys.executable,
            str(BENCH / "benchlib" / "rtp_load.py"),
            "--port",
            str(rtp_port),
            "--ports-log",
            str(ports_log),
            "--expect",
            str(calls),
            "--settle",
            str(args.settle),
            "--window",
            str(args.window),
            "--timeout",
            str(ramp + 30),
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    uac = BenchSipp(
        workdir,
        UAC,
        local_port=ports.port(),
        control_port=ports.port(),
        remote=target.remote or f"127.0.0.1:{uas_port}",
        service=CALLEE[0],
        auth=CALLER,
        keys={"caller": CALLER[0]},
        variables={"rtp_port": str(rtp_port)},
        calls=calls,
        pause_ms=hold_ms,
        timeout=timeout,
        extra=[
            *("-r", str(cps), "-l", str(calls + 10), "-max_socket", "4096"),
            *("-trace_logs", "-log_file", str(ports_log)),
        ],
    ).start()
    meter = CpuMeter(target.cpu or (lambda: 0.0))
    spy = None
    assert load.stdout is not None
    for line in load.stdout:
        if line.strip() == "START":
            meter.start()
            if spy_path is not None and target.pid is not None:
                spy = PySpy(target.pid, spy_path).start()
        elif line.strip() == "END":
            meter.stop()
            if spy is not None:
                spy.stop()
    load.wait()
    result = uac.wait()
    uas.stop()
    ok, failed = sipp_counts(result)
    figures: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    figures |= {"calls": calls, "answered": ok, "failed": failed}
    if target.cpu is not None:
        figures["cpu_share"] = round(meter.utilisation, 3)
        figures["cpu_pct_per_call"] = round(100 * meter.utilisation / calls, 4)
    figures["passed"] = bool(
        ok == calls
        and figures.get("streams") == calls
        and figures.get("loss_pct", 100) < MAX_LOSS_PCT
        and figures.get("jitter_p99_ms", 1e9) < MAX_JITTER_P99_MS
    )
    if spy is not None:
        figures["py_spy"] = spy.report(f"{target.label} with {calls} calls")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="50,100,200,400", help="concurrent calls per step")
    parser.add_argument("--window", type=float, default=8.0, help="seconds measured per step")
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds before measuring (the relay worker takes calls over after 0.5-1.5 s)",
    )
    parser.add_argument("--cps", type=int, default=30, help="call setup rate through pypbx")
    parser.add_argument("--uvloop", choices=("off", "on", "both"), default="off")
    parser.add_argument(
        "--relay-worker",
        choices=("off", "on", "both"),
        default="both",
        help="calls relayed by pypbx's relay worker process, by its event loop, or both",
    )
    parser.add_argument("--keep-going", action="store_true", help="step on past a failure")
    parser.add_argument("--py-spy", metavar="DIR", help="profile each pypbx window into DIR")
    parser.add_argument("--no-direct", action="store_true", help="skip the direct reference")
    parser.add_argument("--workdir", metavar="DIR", help="keep logs and configs in DIR")
    args = parser.parse_args()
    steps = [int(n) for n in args.calls.split(",")]
    ports = BenchPorts()
    with workspace(args.workdir) as root:
        servers: list[BenchPbx] = []
        targets: list[Target] = []
        try:
            modes = {"off": [False], "on": [True], "both": [False, True]}
            for uvloop, worker in itertools.product(modes[args.uvloop], modes[args.relay_worker]):
                # four RTP ports per call (two legs, RTP + RTCP), with room to spare
                pbx = BenchPbx(
                    root / f"pbx-{uvloop}-{worker}",
                    ports,
                    uvloop=uvloop,
                    rtp_port_count=4 * max(steps) + 200,
                    relay_worker=worker,
                )
                pbx.start()
                servers.append(pbx)
                pbx.add_sip_extension(*CALLER)
                pbx.add_sip_extension(*CALLEE)
                targets.append(
                    Target(pbx.label, pbx.sip_address, ports.port(), pbx.cpu_seconds, pbx.pid)
                )
            if not args.no_direct:
                targets.append(Target("direct", None, ports.port()))
            run_steps(args, steps, root, ports, targets)
        finally:
            for server in servers:
                server.stop()
    return 0


def run_steps(
    args: argparse.Namespace,
    steps: list[int],
    root: Path,
    ports: PortAllocator,
    targets: list[Target],
) -> None:
    table = Table(
        [
            ("calls", 5),
            ("target", 12),
            ("answered", 8),
            ("packets", 8),
            ("loss %", 7),
            ("rtt p50", 7),
            ("jit p50", 7),
            ("jit p99", 7),
            ("send lag", 8),
            ("cpu %", 5),
            ("cpu %/call", 10),
            ("ok", 3),
            ("pypbx/x jit99", 13),
        ]
    )
    pypbx_stopped = False
    for calls in steps:
        if pypbx_stopped:
            break
        for target in targets:
            if target.stopped:
                continue
            spy_path = None
            if args.py_spy and target.pid is not None:
                spy_path = Path(args.py_spy) / f"media_calls-{target.label}-{calls}.raw"
            workdir = root / f"{target.label}-{calls}"
            workdir.mkdir(parents=True)
            fig = run_step(workdir, ports, target, calls, args, spy_path)
            target.results[calls] = fig
            if fig["passed"]:
                target.max_calls = calls
            # past the goal, keep stepping to show the curve, until clearly past capacity
            overloaded = fig["answered"] < calls or fig.get("loss_pct", 100) >= STOP_LOSS_PCT
            if overloaded and not args.keep_going and target.cpu is not None:
                target.stopped = True
            first = targets[0].results.get(calls)
            table.row(
                calls,
                target.label,
                fig["answered"],
                fig.get("sent", 0),
                fig.get("loss_pct", "-"),
                fig.get("rtt_p50_ms", "-"),
                fig.get("jitter_p50_ms", "-"),
                fig.get("jitter_p99_ms", "-"),
                fig.get("send_lag_p99_ms", "-"),
                f"{100 * fig['cpu_share']:.0f}" if "cpu_share" in fig else "-",
                fig.get("cpu_pct_per_call", "-"),
                "yes" if fig["passed"] else "no",
                "-"
                if target is targets[0] or first is None
                else ratio(first.get("jitter_p99_ms", 0.0), fig.get("jitter_p99_ms", 0.0)),
            )
            emit({"bench": "media_calls", "target": target.label, **fig})
        pypbx_stopped = all(t.stopped for t in targets if t.cpu is not None)
    goal = f"loss < {MAX_LOSS_PCT} %, p99 added jitter < {MAX_JITTER_P99_MS} ms"
    print(f"largest N with every call answered, {goal}:")
    for target in targets:
        line = f"  {target.label:>12}: {target.max_calls or 'none'}"
        best = target.results.get(target.max_calls)
        if best is not None and "cpu_pct_per_call" in best:
            per_call = best["cpu_pct_per_call"]
            line += f" calls, {per_call:.3f} % of a core per call"
            if per_call > 0:
                line += f" (~{100 / per_call:.0f} calls per core at that cost)"
        print(line)
        emit({"bench": "media_calls", "target": target.label, "max_calls": target.max_calls})


if __name__ == "__main__":
    sys.exit(main())
