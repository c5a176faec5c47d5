"""Call-setup benchmark: SIPp UAC -> pypbx -> SIPp UAS, against SIPp UAC -> SIPp UAS direct.

Both runs use the same digest-challenged INVITE scenario, so the reference pays the same
message count; the difference is what pypbx adds (authentication against the store, the
B2BUA's second dialog, RTP port allocation and SDP rewriting, the history row).

For each offered rate it prints completed/failed calls, the INVITE->200 response time
(p50/p99, ms) of both runs, and pypbx's CPU time per call; each figure also goes out as a
JSON line on stdout for later comparison. Machines here are noisy: compare ratios from one
run, not absolute figures between runs.

    .venv/bin/python bench/call_setup.py [--rates 20,50,100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from peers.pbx import PbxProcess  # noqa: E402
from peers.ports import PortAllocator  # noqa: E402
from peers.sipp import Sipp, SippResult  # noqa: E402

UAC = str(HERE / "scenarios" / "uac_setup.xml")
HOLD_MS = 1000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks


def response_times(workdir: Path) -> list[float]:
    """INVITE->200 times (ms) from SIPp's -trace_rtt files."""
    samples: list[float] = []
    for path in workdir.glob("*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")  # date_ms;response_time_ms;rtd_no
            if len(parts) >= 2 and parts[1]:
                samples.append(float(parts[1]))
    return samples


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run_pair(
    workdir: Path,
    ports: PortAllocator,
    remote: str,
    *,
    rate: int,
    calls: int,
    register: str | None,
    challenge: bool,
) -> tuple[SippResult, list[float]]:
    uas_port = ports.port()
    if register is not None:
        reg = Sipp(
            workdir,
            "register",
            local_port=uas_port,
            control_port=ports.port(),
            remote=register,
            service="2000",
            auth=("2000", "pw-2000"),
            timeout=15,
        ).run()
        if not reg.ok:
            raise SystemExit(reg.describe())
    variables = (
        {"challenge": "yes", "auth_user": "1000", "auth_pass": "pw-1000"} if challenge else {}
    )
    uas = Sipp(
        workdir,
        "uas_answer",
        local_port=uas_port,
        control_port=ports.port(),
        calls=calls,
        variables=variables,
        timeout=calls / rate + 60,
        extra=["-max_socket", "2048"],
    ).start()
    uas.wait_until_listening()
    target = remote if register is not None else f"127.0.0.1:{uas_port}"
    uac = Sipp(
        workdir,
        UAC,
        local_port=ports.port(),
        control_port=ports.port(),
        remote=target,
        service="2000",
        auth=("1000", "pw-1000"),
        keys={"caller": "1000"},
        calls=calls,
        pause_ms=HOLD_MS,
        timeout=calls / rate + 60,
        extra=["-r", str(rate), "-rp", "1000", "-trace_rtt", "-rtt_freq", "1", "-l", "10000"],
    )
    result = uac.run()
    uas.stop()
    return result, response_times(workdir)


def counts(result: SippResult) -> tuple[int, int]:
    ok = failed = 0
    for line in result.screen.splitlines():
        if "Successful call" in line:
            ok = int(line.split("|")[2].split()[0])
        if "Failed call" in line:
            failed = int(line.split("|")[2].split()[0])
    return ok, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="20,50,100", help="calls per second to offer")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per step")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    ports = PortAllocator(worker=7)
    with tempfile.TemporaryDirectory(prefix="pypbx-bench-") as tmp:
        root = Path(tmp)
        pbx = PbxProcess(root / "pbx", ports, log_level="WARNING", rtp_port_count=1200).start()
        try:
            pbx.add_sip_extension("1000", "pw-1000")
            pbx.add_sip_extension("2000", "pw-2000")
            print(
                f"{'rate':>6} {'calls':>6} {'ok':>6} {'fail':>5} "
                f"{'p50 ms':>8} {'p99 ms':>8} {'ref p50':>8} {'ref p99':>8} {'cpu ms/call':>12}"
            )
            for rate in rates:
                calls = int(rate * args.seconds)
                ref, ref_rt = run_pair(
                    root / f"ref-{rate}",
                    ports,
                    "",
                    rate=rate,
                    calls=calls,
                    register=None,
                    challenge=True,
                )
                assert pbx.proc is not None
                cpu0 = cpu_seconds(pbx.proc.pid)
                res, rt = run_pair(
                    root / f"pbx-{rate}",
                    ports,
                    pbx.sip_address,
                    rate=rate,
                    calls=calls,
                    register=pbx.sip_address,
                    challenge=False,
                )
                cpu = cpu_seconds(pbx.proc.pid) - cpu0
                ok, failed = counts(res)
                ref_ok, ref_failed = counts(ref)
                figures = {
                    "bench": "call_setup",
                    "rate": rate,
                    "calls": calls,
                    "ok": ok,
                    "failed": failed,
                    "p50_ms": round(percentile(rt, 50), 2),
                    "p99_ms": round(percentile(rt, 99), 2),
                    "ref_p50_ms": round(percentile(ref_rt, 50), 2),
                    "ref_p99_ms": round(percentile(ref_rt, 99), 2),
                    "ref_ok": ref_ok,
                    "ref_failed": ref_failed,
                    "cpu_ms_per_call": round(1000 * cpu / max(ok, 1), 3),
                }
                print(
                    f"{rate:>6} {calls:>6} {ok:>6} {failed:>5} "
                    f"{figures['p50_ms']:>8} {figures['p99_ms']:>8} "
                    f"{figures['ref_p50_ms']:>8} {figures['ref_p99_ms']:>8} "
                    f"{figures['cpu_ms_per_call']:>12}"
                )
                print(json.dumps(figures), file=sys.stderr)
        finally:
            pbx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
