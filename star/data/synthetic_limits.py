"""How large a synthetic marketplace may be: refused before anything is allocated, not by a MemoryError half-way.

    members, jobs, months --estimate_bytes (measured per member, member-month and job)--> bytes
    bytes <= MEMORY_SHARE x memory available now (MemAvailable, within a cgroup limit)  else ConfigError naming the
    largest --members that fits

The generator and the load hold every frame (edges, truth, texts, their validated copies, the COPY buffers) at once.
Measured peak of `star seed --synthetic` (2 cores, 2026): 20k members / 4k jobs / 6 months 0.50 GB, 60k members
1.06 GB, 20k members / 18 months 0.73 GB, 60k jobs 0.58 GB; the constants below round those up by ~25 %.
Long texts (the default since issue #15) raised the peak of generate + validation at 20k members / 4k jobs from
0.43 to 0.57 GB (texts ~4.2 kB per member, 2.8 kB per job, vs 1.0 and 1.3 kB short); PER_MEMBER and PER_JOB carry
that difference x 1.5 for the load's copies.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from star.errors import ConfigError

BASE_BYTES = 250 * 2 ** 20  # interpreter, pandas, the taxonomy
PER_MEMBER = 16 * 2 ** 10  # member rows, texts, attribute edges, validation copies
PER_MEMBER_MONTH = 1.5 * 2 ** 10  # interactions and truth grow with the weeks simulated
PER_JOB = 12 * 2 ** 10
MEMORY_SHARE = 0.8  # leave the rest to PostgreSQL (the embedded server shares the machine) and the OS


def estimate_bytes(*, members: int, jobs: int, months: int) -> float:
    return BASE_BYTES + members * (PER_MEMBER + PER_MEMBER_MONTH * months) + jobs * PER_JOB


def available_bytes() -> float | None:
    """Memory this process can still take: MemAvailable, or less under a cgroup (container) limit; None unknown."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit, used = (Path("/sys/fs/cgroup", f).read_text().strip() for f in ("memory.max", "memory.current"))
        if limit.isdigit():
            found.append(int(limit) - int(used))
    except (OSError, ValueError):
        pass
    if not found and hasattr(os, "sysconf"):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return float(min(found)) if found else None


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:,.1f} GiB"


def check_size(*, members: int, jobs: int, months: int, start: pd.Timestamp,
               available: float | None = None, now: pd.Timestamp | None = None) -> None:
    """ConfigError unless the marketplace fits in memory and its months end by now (the load refuses later times)."""
    from star.data.format import FUTURE_TOLERANCE

    now = pd.Timestamp.now(tz="UTC") if now is None else now
    try:
        end = start + pd.DateOffset(months=months)
    except (OverflowError, ValueError):  # beyond pandas' times (2262): surely in the future
        end = pd.Timestamp.max.tz_localize("UTC")
    if end > now + FUTURE_TOLERANCE:
        fit = 0
        while start + pd.DateOffset(months=fit + 1) <= now + FUTURE_TOLERANCE:
            fit += 1
        raise ConfigError(f"star seed --synthetic: --months {months} from {start:%Y-%m-%d} ends {end:%Y-%m-%d}, in "
                          f"the future, and loads refuse future times (docs/data-format.md); pass --months at most "
                          f"{fit}")
    available = available_bytes() if available is None else available
    need = estimate_bytes(members=members, jobs=jobs, months=months)
    if available is None or need <= MEMORY_SHARE * available:
        return
    room = MEMORY_SHARE * available - BASE_BYTES - jobs * PER_JOB
    most = max(int(room // (PER_MEMBER + PER_MEMBER_MONTH * months)), 0)
    raise ConfigError(
        f"star seed --synthetic: --members {members} --jobs {jobs} --months {months} needs about {_gib(need)} of "
        f"memory (measured: {PER_MEMBER // 1024} KiB per member + {PER_MEMBER_MONTH / 1024:g} KiB per member-month "
        f"+ {PER_JOB // 1024} KiB per job), more than {MEMORY_SHARE:.0%} of the {_gib(available)} available; pass "
        + (f"--members at most {most}" if most else "fewer --jobs and --members")
        + " (or free memory / use a larger machine)")
