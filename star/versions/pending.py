"""Work a killed job left on a family, finished by the next job or lifecycle command on it (which holds the
family's lock): a retire that did not reach its flip (star.versions.retire), views whose rows Feast does not serve
yet (config.online_pending; a new vintage waiting to be published once it does).
"""

from __future__ import annotations

from star import db
from star.config import DbTarget, Settings
from star.store.serving import apply_features, materialize


def serve_pending(target: DbTarget, families: list[str], settings: Settings | None) -> list[str]:
    """Apply and materialize the families' views whose rows Feast does not serve yet (online_pending: written by
    the running job, or left by a killed one); a new vintage is published by that materialize. Returns them."""
    from star.store import embeddings

    with db.connect(target) as conn:
        pending = embeddings.online_pending(conn, families)
    if pending:
        apply_features(target, settings)
        materialize(target, settings=settings, feature_views=pending)
    return pending


def finished_views(finished: list[dict]) -> list[str]:
    return [v for f in finished for v in f.get("feature_views", [])]


def finish_pending(target: DbTarget, families: list[str], settings: Settings | None = None) -> list[dict]:
    """Finish what killed jobs left of the families' lifecycle (the caller holds their locks): a retire that
    did not get to its end, then views published but not yet served by Feast. One dict per finished step."""
    from star.versions.retire import finish_retires  # retire finishes through this module too

    done = finish_retires(target, families, settings)
    served = serve_pending(target, families, settings)
    if served:
        done.append({"step": "serve", "feature_views": served})
    return done
