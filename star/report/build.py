"""The `star report` job: collect, plot, write; one summary for the command's JSON line."""

from __future__ import annotations

import time
from pathlib import Path

from star.config import DbTarget, Settings
from star.errors import ConfigError


def write_report(target: DbTarget, out: Path = Path("report"), *, settings: Settings | None = None,
                 bench: Path | None = None) -> dict:
    """out/index.html and its plots; which sections had data and which say what to run."""
    from star.report.collect import collect
    from star.report.html import render

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory; pass a directory for index.html and its plots "
                          "(e.g. --out report)")
    started = time.time()
    data = collect(target, settings=settings, bench=bench)
    path = render(data, out)
    sections = {"text_runs": len(data.text_runs), "graph_runs": len(data.graph_runs), "vintages": len(data.vintages),
                "maps": len(data.maps), "gate_reports": len(data.gates), "serving": data.serving is not None}
    return {"job": "report", "path": str(path.resolve()), **sections, "seconds": round(time.time() - started, 2)}
