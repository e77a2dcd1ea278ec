"""Work a killed job left on a family, finished by the next job or lifecycle command on it (which holds the
family's lock): a retire that did not reach its flip (star.versions.retire.finish_retires), views whose rows Feast
does not serve yet (star.store.serving.serve_pending; a new vintage waiting to be published once it does).
"""

from __future__ import annotations

from star.config import DbTarget, Settings
from star.store.serving import serve_pending
from star.versions.retire import finish_retires

__all__ = ["finish_pending", "finished_views", "serve_pending"]


def finished_views(finished: list[dict]) -> list[str]:
    return [v for f in finished for v in f.get("feature_views", [])]


def finish_pending(target: DbTarget, families: list[str], settings: Settings | None = None) -> list[dict]:
    """Finish what killed jobs left of the families' lifecycle (the caller holds their locks): a retire that
    did not get to its end, then views published but not yet served by Feast. One dict per finished step."""
    done = finish_retires(target, families, settings)
    served = serve_pending(target, families, settings)
    if served:
        done.append({"step": "serve", "feature_views": served})
    return done
