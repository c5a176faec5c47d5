"""Memory diagnostics on demand: `kill -USR1 <pid>` logs what grew since the last dump.

A PBX that runs for weeks must keep its memory flat, and a slow leak only shows under real
traffic, where a debugger cannot be attached. So the running process reports, at the
operator's signal: how often the collector ran per generation; what a full collection finds
unreachable, and a reference cycle through each of pypbx's types among it (garbage that
only the collector frees, and only once its generation is collected); which object types
gained instances and which big containers gained items since the previous signal; and,
when started with ``PYTHONTRACEMALLOC=<frames>``, which source lines gained allocated bytes.
The report's own full collection frees that garbage, so take two reports some minutes apart
and read the second.
"""

from __future__ import annotations

import collections
import gc
import logging
import time
import tracemalloc

logger = logging.getLogger(__name__)

TOP = 20
BIG = 500  # items in a container worth listing


def _describe(container: object, everything: list[object]) -> str:
    """Its type, a sample item, and what refers to it (the attribute's owner, if any)."""
    sample = ""
    if isinstance(container, dict) and container:
        key = next(iter(container))
        sample = f"{key!r:.60} -> {type(container[key]).__qualname__}"
    elif isinstance(container, set | list | collections.deque) and container:
        sample = f"{next(iter(container))!r:.60}"
    owners = [
        type(ref).__qualname__ for ref in gc.get_referrers(container) if ref is not everything
    ][:3]
    return f"{type(container).__qualname__} [{sample}] held by {', '.join(owners)}"


def _sample_cycles(garbage: list[object], kinds: int = 5, tries: int = 20) -> list[str]:
    """For a few of pypbx's own types among the garbage, one reference cycle through an
    instance, as the chain of types and attribute names: what to break so that plain
    reference counting frees it. At most `tries` types are searched (each search may walk
    all the garbage, and pypbx is paused meanwhile)."""
    members = {id(obj): obj for obj in garbage}
    seen_types: set[type] = set()
    lines = []
    for obj in garbage:
        kind = type(obj)
        if kind in seen_types or not kind.__module__.startswith("pypbx"):
            continue
        if len(seen_types) >= tries:
            break
        seen_types.add(kind)
        path = _cycle(obj, members)
        if path:  # a type merely reachable from a cycle has none of its own
            lines.append(f"  cycle: {' -> '.join(path)}")
            if len(lines) >= kinds:
                break
    return lines


def _cycle(start: object, members: dict[int, object]) -> list[str]:
    """Breadth-first over referents within the garbage, back to `start`."""
    parents: dict[int, tuple[int, str]] = {}
    queue = collections.deque([start])
    while queue:
        node = queue.popleft()
        for label, ref in _referents(node):
            if id(ref) not in members or id(ref) in parents:
                continue
            parents[id(ref)] = (id(node), f"{label}:{type(ref).__qualname__}")
            if ref is start:
                steps = []
                at = id(start)
                while True:
                    parent, step = parents[at]
                    steps.append(step)
                    at = parent
                    if at == id(start):
                        return [type(start).__qualname__, *reversed(steps)]
            queue.append(ref)
    return []


def _referents(node: object) -> list[tuple[str, object]]:
    """What `node` refers to, named by attribute or key where it has one. An instance's own
    __dict__ is looked through: get_referents() may build it afresh, outside the garbage."""
    own = getattr(node, "__dict__", None)
    found: list[tuple[str, object]] = []
    for ref in gc.get_referents(node):
        if ref is own and isinstance(own, dict):
            found += [(f".{key}", value) for key, value in own.items()]
        elif isinstance(node, dict):
            keys = [key for key, value in node.items() if value is ref]
            found.append((f"[{keys[0]!r:.30}]" if keys else "", ref))
        else:
            slots = getattr(type(node), "__slots__", ())
            names = [name for name in slots if getattr(node, name, None) is ref]
            found.append((f".{names[0]}" if names else "", ref))
    return found


def _collections_so_far() -> str:
    """How often each generation was collected: a generation that is never collected keeps
    whatever garbage reached it."""
    return "gc collections so far (collected, uncollectable): " + ", ".join(
        f"gen{i} {stats['collections']} ({stats['collected']}, {stats['uncollectable']})"
        for i, stats in enumerate(gc.get_stats())
    )


def _unreachable() -> list[str]:
    """A full collection that keeps what it finds, to say which objects form reference
    cycles: those outlive their use until a collection of their generation comes round."""
    pending = gc.get_count()
    flags = gc.get_debug()
    already = len(gc.garbage)  # uncollectable objects someone else may be looking at
    gc.set_debug(flags | gc.DEBUG_SAVEALL)
    started = time.perf_counter()
    try:
        freed = gc.collect()
    finally:
        gc.set_debug(flags)
    took = time.perf_counter() - started
    found = gc.garbage[already:]
    del gc.garbage[already:]
    kinds = _by_type(found)
    cycles = _sample_cycles(found)
    del found
    gc.collect()  # now for real
    lines = [
        f"a full collection found {freed} unreachable objects in {took * 1000:.0f} ms "
        f"(counts per generation were {pending})",
        "unreachable objects by type (in reference cycles)",
    ]
    return lines + kinds + cycles + _kept_garbage(already)


def _kept_garbage(count: int) -> list[str]:
    """What gc.garbage already held: objects the collector could not free, or, when pypbx
    runs with gc.DEBUG_SAVEALL from the start (tests that hunt reference cycles do), every
    cycle collected since then, which the report's own collection would not see."""
    if not count:
        return []
    kept = gc.garbage[:count]
    lines = [f"kept in gc.garbage by type ({count} objects)", *_by_type(kept)]
    lines += _sample_cycles(kept)
    del kept
    return lines


def _by_type(objects: list[object]) -> list[str]:
    """Counts per type, the TOP most common and then any of pypbx's own types among the
    rest: those are the ones whose cycles pypbx can break."""
    kinds = collections.Counter(type(obj) for obj in objects)
    common = kinds.most_common()
    shown = common[:TOP] + [
        (kind, n) for kind, n in common[TOP:] if kind.__module__.startswith("pypbx")
    ]
    return [f"  {n:8d} {kind.__qualname__}" for kind, n in shown]


class GcPauses:
    """How long the collector stopped everything, per generation, since the last report: a
    full collection walks every live call's objects, and while it runs no RTP is relayed
    on the event loop, so its pauses are what to compare with the relay's added jitter."""

    def __init__(self) -> None:
        self._started = 0.0
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]

    def install(self) -> None:
        gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.count[generation] += 1
        self.total[generation] += took
        self.longest[generation] = max(self.longest[generation], took)

    def report(self) -> str:
        """The pauses since the last report, which starts the next period."""
        text = "gc pauses since the last report (collections, total ms, longest ms): " + ", ".join(
            f"gen{i} {self.count[i]} ({self.total[i] * 1000:.0f}, {self.longest[i] * 1000:.1f})"
            for i in range(3)
        )
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        return text


class MemoryReport:
    """Remembers the previous counts so each dump shows growth, not totals."""

    def __init__(self, pauses: GcPauses | None = None) -> None:
        self._pauses = pauses
        self._types: collections.Counter[str] = collections.Counter()
        self._snapshot: tracemalloc.Snapshot | None = None
        self._sizes: dict[int, int] = {}

    def dump(self) -> str:
        """One log-ready text block; the first call reports totals instead of growth."""
        lines = [_collections_so_far()]
        if self._pauses is not None:
            lines.append(self._pauses.report())  # before the report's own collections
        # pypbx freezes what it built at start (app.py), and frozen objects are invisible to
        # get_objects() and get_referrers(); the long-lived containers a leak grows are
        # among them, so they are thawed for the report and frozen again after it
        was_frozen = gc.get_freeze_count() > 0
        gc.unfreeze()
        try:
            lines += _unreachable()
            objects = gc.get_objects()
            lines.insert(0, f"gc: {len(objects)} tracked objects, garbage {len(gc.garbage)}")
            lines += self._types_grown(objects)
            lines += self._containers(objects)
            del objects
        finally:
            if was_frozen:
                gc.freeze()
        if tracemalloc.is_tracing():
            lines += self._allocations_grown()
        if self._pauses is not None:
            self._pauses.report()  # the report's own collections are not pypbx's pauses
        return "\n".join(lines)

    def _types_grown(self, objects: list[object]) -> list[str]:
        types = collections.Counter(type(obj).__qualname__ for obj in objects)
        grown = types - self._types if self._types else types
        lines = ["object types that grew" if self._types else "object types"]
        lines += [
            f"  {count:+8d} {name} (now {types[name]})" for name, count in grown.most_common(TOP)
        ]
        self._types = types
        return lines

    def _allocations_grown(self) -> list[str]:
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
        )
        lines = []
        if self._snapshot is not None:
            lines.append("allocation sites that grew")
            for stat in snapshot.compare_to(self._snapshot, "traceback")[:TOP]:
                lines.append(f"  {stat.size_diff:+10d} B {stat.count_diff:+7d} blocks")
                lines += [f"      {line}" for line in stat.traceback.format(limit=6)]
        self._snapshot = snapshot
        return lines

    def _containers(self, objects: list[object]) -> list[str]:
        """The dicts, sets, lists and deques of BIG or more items that grew most since the
        last report: a leak into a container of strings shows here, as str and bytes are
        not tracked by the gc. (Kept by id: a container freed and another made at its
        address reads as one that changed size.)"""
        big = {
            id(obj): obj
            for obj in objects
            if isinstance(obj, dict | set | list | collections.deque) and len(obj) >= BIG
        }
        sizes = {key: len(obj) for key, obj in big.items()}
        before = self._sizes

        def growth(key: int) -> int:
            return sizes[key] - before.get(key, 0)

        lines = [f"containers of {BIG} or more items, most grown first"]
        for key in sorted(sizes, key=growth, reverse=True)[:TOP]:
            grown = f"{growth(key):+d}" if key in before else "new"
            lines.append(f"  {sizes[key]:8d} ({grown}) {_describe(big[key], objects)}")
        self._sizes = sizes
        return lines

    def log(self) -> None:
        logger.warning("memory report (SIGUSR1)\n%s", self.dump())
