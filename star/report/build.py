"""The `star report` job: collect, plot, write; one summary for the command's JSON line."""

from __future__ import annotations

import time
from pathlib import Path

from star.config import DbTarget, Settings


def write_report(target: DbTarget, out: Path = Path("report"), *, settings: Settings | None = None,
                 bench: Path | None = None) -> dict:
    """out/index.html and its plots; which sections had data and which say what to run."""
    from star.report.collect import collect
    from star.report.html import render

    started = time.time()
    data = collect(target, settings=settings, bench=bench)
    path = render(data, Path(out))
    sections = {"text_runs": len(data.text_runs), "graph_runs": len(data.graph_runs), "vintages": len(data.vintages),
                "maps": len(data.maps), "gate_reports": len(data.gates), "serving": data.serving is not None}
    return {"job": "report", "path": str(path.resolve()), **sections, "seconds": round(time.time() - started, 2)}
