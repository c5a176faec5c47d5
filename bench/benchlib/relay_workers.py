"""The relay worker as the relay benchmarks drive it: from this tree or a git revision, its
bridges handed over directly (a stand-in for pypbx's `relay_offload`)."""

from __future__ import annotations

import socket
import subprocess
import time
import types
from pathlib import Path
from typing import Any

from pypbx.media import relay_worker
from pypbx.media.relay_wire import LegSetup


def worker_module(kind: str) -> types.ModuleType:
    """`worker`: the tree's relay_worker; `worker@REV`: relay_worker.py of git revision REV
    (run against this tree's other modules)."""
    if kind == "worker":
        return relay_worker
    revision = kind.split("@", 1)[1]
    source = subprocess.run(
        ["git", "show", f"{revision}:src/pypbx/media/relay_worker.py"],
        cwd=Path(__file__).parent,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    module = types.ModuleType(f"relay_worker_{revision}")
    exec(compile(source, kind, "exec"), module.__dict__)
    return module


def hand_over(worker: Any, legs: list[socket.socket], phones: list[Any]) -> None:
    """Bridge legs 0+1, 2+3, ... in `worker`, leg i latched on `phones[i]` (an address).

    The legs' descriptors go to the worker (detached here), as pypbx's do; PCMU with
    telephone-event 101, key presses forwarded, each leg's stream fed by the relay.
    """
    now = time.monotonic()
    for index in range(0, len(legs) - 1, 2):
        setups = [
            LegSetup(
                port=legs[index + n].getsockname()[1],
                source=phones[index + n],
                seen_at=now,
                quiet_period=2.0,
                payload_types=(0, 101),
                forward=(101,),
                codec=(0, "PCMU", 101),
                output=(index + n, 0, 0, now, True),
                direction=(None, 0, 0),
            ).to_json()
            for n in range(2)
        ]
        worker._add(index // 2, setups, [legs[index].detach(), legs[index + 1].detach()])
