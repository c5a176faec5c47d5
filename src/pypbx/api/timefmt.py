"""Date/time and duration formats of the two dialects (spec 3.4, 8.12)."""

from __future__ import annotations

from datetime import datetime, tzinfo


def _local(moment: datetime, zone: tzinfo | None) -> datetime:
    # astimezone(None) converts to the host's local zone, which is what Ozeki shows.
    return moment.astimezone(zone)


def xe_timestamp(moment: datetime, zone: tzinfo | None) -> str:
    """ISO 8601 local time with fraction and offset: `2013-07-01T10:49:07.9558+02:00`.

    Like .NET's `FFFFFFF` specifier the fraction has trailing zeros removed, and is left
    out entirely when zero.
    """
    local = _local(moment, zone)
    fraction = f"{local.microsecond:06d}0".rstrip("0")
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "")
    offset = local.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    hours, mins = divmod(abs(minutes), 60)
    return f"{text}{sign}{hours:02d}:{mins:02d}"


def plain_timestamp(moment: datetime, zone: tzinfo | None) -> str:
    """`yyyy-MM-dd HH:mm:ss` in local time."""
    return _local(moment, zone).strftime("%Y-%m-%d %H:%M:%S")


def xe_seconds(seconds: float) -> str:
    """Whole seconds, truncated (XE: `956`)."""
    return str(int(max(seconds, 0.0)))


def o10_seconds(seconds: float) -> str:
    """Seconds with three decimals (O10: `0.749`)."""
    return f"{max(seconds, 0.0):.3f}"
