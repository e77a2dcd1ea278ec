"""Work a killed job left on a family, finished by the next job or lifecycle command on it (which holds the
family's lock): a retire that did not reach its flip (star.versions.retire), views whose rows Feast does not serve
yet (config.online_pending; a new vintage waiting to be published once it does).
"""

from __future__ import annotations

from star import db
from star.config import DbTarget, Settings
from star.store.serving import apply_features, materialize


def serve_written(target: DbTarget, results: list[dict], settings: Settings | None) -> list[str]:
    """Apply and materialize the views an embedding job wrote, and those of its families an earlier, killed run
    left unserved (online_pending); a new vintage is published by that materialize. Returns the views."""
    from star.store import embeddings

    with db.connect(target) as conn:
        pending = embeddings.online_pending(conn, sorted({r["family"] for r in results if r.get("family")}))
    wrote = [r["feature_view"] for r in results if r["embedded"] or r["new_version"]]
    changed = wrote + [v for v in pending if v not in wrote]
    if changed:
        apply_features(target, settings)
        materialize(target, settings=settings, feature_views=changed)
    return changed


def finished_views(finished: list[dict]) -> list[str]:
    return [v for f in finished for v in f.get("feature_views", [])]


def finish_pending(target: DbTarget, families: list[str], settings: Settings | None = None) -> list[dict]:
    """Finish what killed jobs left of the families' lifecycle (the caller holds their locks): a retire that
    did not get to its end, then views published but not yet served by Feast. One dict per finished step."""
    from star.store import embeddings
    from star.versions.retire import finish_retires  # retire finishes through this module too

    done = finish_retires(target, families, settings)
    with db.connect(target) as conn:
        pending = embeddings.online_pending(conn, families)
    if pending:
        apply_features(target, settings)
        materialize(target, settings=settings, feature_views=pending)
        done.append({"step": "serve", "feature_views": pending})
    return done
