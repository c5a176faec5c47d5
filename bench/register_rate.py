"""Registration benchmark: digest-authenticated REGISTERs from many users at stepped rates.

Each "call" of bench/scenarios/register_users.xml is one user (SIPp -inf injection, users
provisioned beforehand: in pypbx through the HTTP API's AddConfig, in Kamailio's db_text
subscriber table): REGISTER, 401, REGISTER with credentials, 200. Rates step up per target
until one fails; a step is sustained when every registration completed and SIPp kept up
with the offered rate (finished within 2 s of the planned duration).

Per rate and target: completed/failed, the challenge time (REGISTER->401) p50, the
authenticated REGISTER->200 time p50/p99 (ms), CPU per registration and the share of a
core, and pypbx's figures over the target's. References: `kamailio` (5.6, auth_db on
db_text, usrloc in memory, one UDP worker). JSON lines on stderr; compare ratios only.

    .venv/bin/python bench/register_rate.py [--rates 10,25,50,100,...,3200]
        [--seconds 5] [--users 1000] [--reference kamailio|none] [--uvloop off|on|both]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchlib.common import (
    BenchPbx,
    BenchPorts,
    BenchSipp,
    Table,
    emit,
    percentile,
    provision_sip_extensions,
    ratio,
    response_times,
    scenario,
    sipp_counts,
    workspace,
)
from benchlib.references import Kamailio, add_reference_argument, chosen_references

from peers.ports import PortAllocator

SCENARIO = scenario("register_users.xml")
HEALTHY_P99_MS = 500.0  # past this, phones are already retransmitting their REGISTERs


@dataclass
class Target:
    label: str
    address: str
    cpu: Callable[[], float]
    max_rate: int = 0
    max_healthy_rate: int = 0  # sustained, and p99 under HEALTHY_P99_MS
    cpu_share_at_max: float = float("nan")
    stopped: bool = False
    results: dict[int, dict[str, float]] = field(default_factory=dict)


def users(count: int) -> list[tuple[str, str]]:
    return [(str(10000 + i), f"pw-{10000 + i}") for i in range(count)]


def write_injection(path: Path, accounts: list[tuple[str, str]]) -> Path:
    # SIPp expands [authentication ...] from an injected field, but not fields inside it
    lines = (f"{u};{p};[authentication username={u} password={p}]\n" for u, p in accounts)
    path.write_text("SEQUENTIAL\n" + "".join(lines))
    return path


def step(
    workdir: Path, ports: PortAllocator, target: Target, inf: Path, rate: int, seconds: float
) -> dict[str, float]:
    count = int(rate * seconds)
    uac = BenchSipp(
        workdir,
        SCENARIO,
        local_port=ports.port(),
        control_port=ports.port(),
        remote=target.address,
        calls=count,
        timeout=seconds + 40,
        extra=[
            *("-r", str(rate), "-rp", "1000", "-inf", str(inf), "-l", "20000"),
            *("-trace_rtt", "-rtt_freq", "1", "-max_socket", "2048"),
        ],
    )
    cpu0, wall0 = target.cpu(), time.monotonic()
    result = uac.run()
    wall = time.monotonic() - wall0
    cpu = target.cpu() - cpu0
    ok, failed = sipp_counts(result)
    challenge = response_times(workdir, "1")
    authed = response_times(workdir, "2")
    return {
        "registrations": count,
        "ok": ok,
        "failed": failed,
        "wall_s": round(wall, 2),
        "kept_up": int(wall <= seconds + 2.0),
        "challenge_p50_ms": round(percentile(challenge, 50), 2),
        "p50_ms": round(percentile(authed, 50), 2),
        "p99_ms": round(percentile(authed, 99), 2),
        "cpu_ms_per_registration": round(1000 * cpu / max(ok, 1), 3),
        "cpu_share": round(cpu / wall, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rates", default="10,25,50,100,200,400,800,1600,3200", help="REGISTERs per second"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per step")
    parser.add_argument("--users", type=int, default=1000, help="distinct users to register")
    parser.add_argument("--uvloop", choices=("off", "on", "both"), default="off")
    parser.add_argument("--keep-going", action="store_true", help="offer every rate to all")
    add_reference_argument(parser, ("kamailio",))
    parser.add_argument("--workdir", metavar="DIR", help="keep logs and configs in DIR")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    references = chosen_references(args.reference, ("kamailio",))
    accounts = users(args.users)
    ports = BenchPorts()
    with workspace(args.workdir) as root:
        inf = write_injection(root / "users.csv", accounts)
        servers: list[BenchPbx | Kamailio] = []
        targets: list[Target] = []
        try:
            for uvloop in {"off": [False], "on": [True], "both": [False, True]}[args.uvloop]:
                pbx = BenchPbx(root / f"pbx-{uvloop}", ports, uvloop=uvloop)
                pbx.start()
                servers.append(pbx)
                t0 = time.monotonic()
                provision_sip_extensions(pbx, accounts)
                print(
                    f"{pbx.label}: {len(accounts)} extensions added through AddConfig "
                    f"in {time.monotonic() - t0:.1f} s"
                )
                targets.append(Target(pbx.label, pbx.sip_address, pbx.cpu_seconds))
            if "kamailio" in references:
                kam = Kamailio(root / "kamailio", ports, accounts)
                kam.start()
                servers.append(kam)
                targets.append(Target("kamailio", kam.sip_address, kam.cpu_seconds))
            run_steps(args, rates, root, ports, inf, targets)
        finally:
            for server in servers:
                server.stop()
    return 0


def run_steps(
    args: argparse.Namespace,
    rates: list[int],
    root: Path,
    ports: PortAllocator,
    inf: Path,
    targets: list[Target],
) -> None:
    table = Table(
        [
            ("rate", 5),
            ("target", 12),
            ("regs", 6),
            ("ok", 6),
            ("fail", 5),
            ("401 p50", 7),
            ("p50 ms", 7),
            ("p99 ms", 7),
            ("cpu ms/reg", 10),
            ("cpu %", 5),
            ("pypbx/x p99", 11),
            ("pypbx/x cpu", 11),
        ]
    )
    for rate in rates:
        for target in targets:
            if target.stopped:
                continue
            figures = step(root / f"{target.label}-{rate}", ports, target, inf, rate, args.seconds)
            target.results[rate] = figures
            sustained = figures["failed"] == 0 and figures["ok"] == figures["registrations"]
            if sustained and figures["kept_up"]:
                target.max_rate = rate
                target.cpu_share_at_max = figures["cpu_share"]
                if figures["p99_ms"] < HEALTHY_P99_MS:
                    target.max_healthy_rate = rate
            elif not args.keep_going:
                target.stopped = True
            first = targets[0].results.get(rate)
            mine = target is targets[0] or first is None
            table.row(
                rate,
                target.label,
                figures["registrations"],
                figures["ok"],
                figures["failed"],
                figures["challenge_p50_ms"],
                figures["p50_ms"],
                figures["p99_ms"],
                figures["cpu_ms_per_registration"],
                f"{100 * figures['cpu_share']:.0f}",
                "-" if mine or first is None else ratio(first["p99_ms"], figures["p99_ms"]),
                "-"
                if mine or first is None
                else ratio(first["cpu_ms_per_registration"], figures["cpu_ms_per_registration"]),
            )
            emit({"bench": "register_rate", "target": target.label, "rate": rate, **figures})
    print(
        "highest sustained rate (zero failures, kept up), CPU at that rate, and the highest "
        f"with p99 also under {HEALTHY_P99_MS:.0f} ms:"
    )
    for target in targets:
        share = target.cpu_share_at_max
        cpu = "-" if share != share else f"{100 * share:.0f}% of a core"
        at_max = target.results.get(target.max_rate, {})
        print(
            f"  {target.label:>12}: {target.max_rate or 'none'} REGISTER/s, {cpu}, "
            f"p50 {at_max.get('p50_ms', '-')} ms, p99 {at_max.get('p99_ms', '-')} ms; "
            f"{target.max_healthy_rate or 'none'} REGISTER/s with p99 < {HEALTHY_P99_MS:.0f} ms"
        )
        emit(
            {
                "bench": "register_rate",
                "target": target.label,
                "max_rate": target.max_rate,
                "max_healthy_rate": target.max_healthy_rate,
                "cpu_share_at_max": share,
            }
        )
    if len(targets) > 1 and targets[-1].max_rate:
        versus = ratio(targets[0].max_rate, targets[-1].max_rate)
        print(f"  pypbx/{targets[-1].label} max rate: {versus}")


if __name__ == "__main__":
    sys.exit(main())
