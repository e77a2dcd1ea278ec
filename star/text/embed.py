"""The text embedding job: embed member profiles and job postings into a versioned family.

    fingerprint(model dir, adapter checksum, config) --same as a version?--> continue it, else a new version
    text_snapshots --md5 differs from the version's row (or new)--> encode in batches --> staging (committed)
    --> publish: staging -> star.<family>_v<k> + HNSW index, status 'published' (one transaction)

Run twice with no change: the second run embeds nothing. Change 1 % of texts: it embeds about 1 %. Killed at any
point: the version stays 'building' (invisible to Feast and to `published` queries) and the next run finishes it.
With EngineConfig(engine='ray') the encode step runs in a Ray actor pool (star/text/embed_ray.py) that writes the
same staging table, so either engine finishes what the other left.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from star.cluster import EngineConfig, ray_session
from star.config import DbTarget
from star.db import connect
from star.errors import ConfigError, StarError, require_at_least

FAMILIES = {"member": "member_text_embedding", "job": "job_text_embedding"}


class EmptyTextError(StarError):
    """Some snapshots to embed are empty or whitespace only."""


@dataclass(frozen=True, kw_only=True)
class EmbedConfig:
    entities: tuple[str, ...] = field(default=("member", "job"), metadata={"help": "which families to embed"})
    batch_size: int = field(default=64, metadata={"help": "texts per forward pass"})
    commit_every: int = field(default=1024, metadata={"help": "texts per committed staging batch (kill-safe unit)"})
    skip_empty: bool = field(default=False, metadata={"help": "leave empty texts out instead of failing"})
    version: int | None = field(default=None, metadata={"help": "continue exactly this version (checked)"})
    candidate: bool = field(default=False, metadata={"help": "a new version becomes 'candidate' (publish it through "
                                                             "the gate: `star versions publish`)"})
    await_feast: bool = field(default=False, metadata={
        "help": "a new version stays 'building' until Feast serves it (pipeline: apply + materialize, then it "
                "becomes published or candidate); `star text|graph embed` set it"})
    hnsw_m: int = field(default=16, metadata={"help": "HNSW graph degree"})
    hnsw_ef_construction: int = field(default=64, metadata={"help": "HNSW build beam (FIELD-NOTES: 64 -> 23 s/100k)"})

    def __post_init__(self):
        wrong = [e for e in self.entities if e not in FAMILIES]
        if wrong or not self.entities:
            raise ConfigError(f"entities={self.entities!r}: choose from {', '.join(FAMILIES)} (e.g. --entity member)")
        require_at_least("EmbedConfig", 1, batch_size=self.batch_size, commit_every=self.commit_every,
                         version=self.version, hnsw_m=self.hnsw_m, hnsw_ef_construction=self.hnsw_ef_construction)


def _check_requested(conn, cfg: EmbedConfig, family: str, fingerprint: dict, dim: int) -> None:
    from star.errors import VersionError
    from star.store import registry
    from star.store.embeddings import fingerprint_hash

    if cfg.version is None:
        return
    v = registry.get(conn, family, cfg.version)
    if v.status == "retired":
        raise VersionError(f"{v.name} is retired: its rows are gone and it is served through a map, so nothing can "
                           "be embedded into it; omit --version (the model's own version is continued, or a new one "
                           "made)")
    if v.dim != dim:
        raise VersionError(f"{v.name} is registered with dim {v.dim} but the model gives {dim}-d vectors; "
                           "embed with the model that built it, or omit --version to make a new version")
    if v.fingerprint_hash != fingerprint_hash(fingerprint):
        raise VersionError(f"{v.name} was built by a different model, adapter or config; "
                           "omit --version to make a new version")


EMPTY = "SELECT entity_id FROM star.text_snapshots WHERE entity = %s AND btrim(text, E' \\t\\n\\r') = '' ORDER BY 1"


def _empty_ids(conn, entity: str, skip: bool) -> list[int]:
    """Entity ids with an empty snapshot: an error unless skipped (checked before anything is written)."""
    ids = [r[0] for r in conn.execute(EMPTY, (entity,))]
    if ids and not skip:
        shown = ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        raise EmptyTextError(f"{len(ids)} {entity} text snapshot(s) are empty or whitespace ({entity}_id {shown}); "
                             "fix the texts and `star seed` again, or pass --skip-empty to leave them out")
    return ids


def _encode_local(conn, encoder, v, todo, cfg: EmbedConfig, progress: bool) -> dict:
    """Encode `todo` in this process, one committed staging batch per commit_every texts; the summed stats."""
    from star.store import embeddings as store

    stats = {"texts": 0, "truncated": 0, "chunks": 0, "max_chunks": 0, "seconds": 0.0}
    with tqdm(total=len(todo), desc=f"embed {v.name}", unit="text", disable=not progress) as bar:
        for start in range(0, len(todo), cfg.commit_every):
            chunk = todo.iloc[start:start + cfg.commit_every]
            result = encoder.encode(chunk["text"].tolist(), v.entity, batch_size=cfg.batch_size)
            store.stage(conn, v, chunk, np.asarray(result.embeddings, dtype=np.float32))
            stats["texts"] += len(chunk)
            stats["truncated"] += int(result.truncated)
            stats["chunks"], stats["max_chunks"] = (stats["chunks"] + result.chunks,
                                                    max(stats["max_chunks"], result.max_chunks))
            stats["seconds"] += float(result.seconds)
            bar.update(len(chunk))
    return stats


def embed_family(target: DbTarget, encoder, entity: str, cfg: EmbedConfig, *, lineage: dict,
                 progress: bool = True, engine: EngineConfig = EngineConfig()) -> dict:
    """One family: pending snapshots -> staging (here, or on Ray with engine.engine == 'ray', inside ray_session)
    -> publish."""
    from star.store import embeddings as store
    from star.store.locks import family_lock

    started = time.time()
    family, fingerprint = FAMILIES[entity], encoder.fingerprint()
    with family_lock(target, [family]), connect(target) as conn:
        _check_requested(conn, cfg, family, fingerprint, encoder.dim)
        _empty_ids(conn, entity, cfg.skip_empty)
        with conn.transaction():
            v, created = store.find_or_create(conn, family=family, entity=entity, dim=encoder.dim,
                                              kind="text_embedding", fingerprint=fingerprint,
                                              model=lineage.get("adapter_dir") or str(fingerprint.get("model_dir")))
            store.ensure_staging(conn, v)
        todo, total = store.pending(conn, v)
        blank = todo["text"].str.strip() == ""  # only left when --skip-empty
        empty, todo = int(blank.sum()), todo[~blank]
        conn.commit()
        if engine.engine == "ray":
            from star.text.embed_ray import encode_and_stage

            stats = encode_and_stage(target, encoder, v, todo, batch_size=cfg.batch_size,
                                     commit_every=cfg.commit_every, engine=engine, progress=progress)
        else:
            stats = _encode_local(conn, encoder, v, todo, cfg, progress)
        seconds = stats["seconds"]
        run = {"embedded": len(todo), "skipped": total - len(todo) - empty, "empty_skipped": empty,
               "truncated": stats["truncated"], "chunks": stats["chunks"],
               "chunks_per_text": round(stats["chunks"] / len(todo), 2) if len(todo) else None,
               "max_chunks": stats["max_chunks"], "encode_seconds": round(seconds, 2),
               "texts_per_second": round(len(todo) / seconds, 1) if seconds else None,
               **engine.lineage()}
        if "wall_seconds" in stats:  # on Ray encode_seconds adds up the workers' time; this is the cluster's rate
            run["texts_per_second_wall"] = round(len(todo) / stats["wall_seconds"], 1)
        store.publish(conn, v, metrics={"last_run": run, "texts": total, **lineage},
                      hnsw_m=cfg.hnsw_m, hnsw_ef_construction=cfg.hnsw_ef_construction,
                      analyze=v.status == "building", status="candidate" if cfg.candidate else "published",
                      await_feast=cfg.await_feast)
    return {"family": family, "version": v.version, "feature_view": v.name, "new_version": created, "dim": v.dim,
            **run, "seconds": round(time.time() - started, 2)}


def embed_texts(target: DbTarget, encoder, cfg: EmbedConfig = EmbedConfig(), *, lineage: dict | None = None,
                progress: bool = True, engine: EngineConfig = EngineConfig()) -> list[dict]:
    """Embed every entity kind in `cfg.entities`; one result dict per family. A kind without any text snapshot is
    skipped (no empty version is made); none at all is an error. engine: where the encoding runs (the vintage's
    metrics record it: engine, workers)."""
    with connect(target) as conn:
        loaded = dict(conn.execute("SELECT entity, count(*) FROM star.text_snapshots GROUP BY entity").fetchall())
    if not any(loaded.get(e) for e in cfg.entities):
        raise EmptyTextError(f"no {' or '.join(cfg.entities)} texts are loaded: nothing to embed; add a texts.* file "
                             "to the marketplace (docs/data-format.md) and `star seed --from` it")
    with contextlib.ExitStack() as stack:
        info = stack.enter_context(ray_session(engine)) if engine.engine == "ray" else engine.lineage()
        return [embed_family(target, encoder, entity, cfg, lineage={**(lineage or {}), **info}, progress=progress,
                             engine=engine)
                if loaded.get(entity) else
                {"family": FAMILIES[entity], "version": None, "feature_view": None, "new_version": False,
                 "embedded": 0, "note": f"no {entity} texts are loaded: no version made"}
                for entity in cfg.entities]
