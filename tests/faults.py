"""Fault injection and concurrent readers for tests/test_faults.py (issue #13).

    launch `star …` (own process group, PGAPPNAME tag) --poll the database every 20 ms--> SIGKILL at the observed
    step --> wait until its server backends are gone --> check: as it was, or finishable --> rerun --> check all
    readers (Feast / star.nearest / plain SQL threads) --answers--> each one all-before or all-after the step

Broken invariants are recorded in a Ledger, not raised, so one run reports every failure with where it happened;
each test asserts its own section is clean at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import psycopg
from psycopg import sql

from star import db
from star.common import ID_COLUMN
from star.config import REPO_ROOT

if TYPE_CHECKING:
    from tests.fault_probes import Probe

STAR = str(Path(sys.executable).with_name("star"))
KINDS = ("errors", "short", "stale_or_mixed", "duplicates", "building_visible", "unserved", "unfinished",
         "nearest_short", "partial")
SERVABLE = ("published", "deprecated", "retired")
COS = 0.9999


@dataclass
class Ledger:
    """Every kill, every read and every broken invariant (kind, where, detail) of the run."""

    kills: Counter = field(default_factory=Counter)
    reads: int = 0
    counts: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    kill_log: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail(self, kind: str, where: str, detail: str) -> None:
        assert kind in KINDS, kind
        with self.lock:
            self.counts[kind] += 1
            same = sum(f.startswith(f"{kind} @ {where}:") for f in self.failures)
            if same < 3:  # the first few of each kind and place, every one counted
                self.failures.append(f"{kind} @ {where}: {detail}")

    def read(self, n: int = 1) -> None:
        with self.lock:
            self.reads += n

    def since(self, mark: int) -> list[str]:
        return self.failures[mark:]

    def summary(self) -> dict:
        return {"kills": sum(self.kills.values()), "reads": self.reads, **{k: self.counts[k] for k in KINDS},
                "kills_by_command": dict(self.kills), "failures": self.failures,
                "kill_points": [f"{k['command']}: {k['point']} -> {k['state']}" for k in self.kill_log]}

    def line(self) -> str:
        s = self.summary()
        return "faults: " + " ".join(f"{k}={s[k]}" for k in ("kills", "reads", *KINDS))


# ---------------------------------------------------------------- reading the served state

def conn_of(target) -> psycopg.Connection:
    return db.connect(target, autocommit=True)


def vintages(conn, families: list[str] | None = None) -> list[dict]:
    rows = conn.execute(
        "SELECT family, version, entity, status, served_from, feature_view, config->>'fingerprint_hash', "
        "coalesce((config->>'online_pending')::boolean, false), "
        "array_to_string(ARRAY(SELECT k FROM jsonb_object_keys(config) k WHERE k IN "
        "('ready_as', 'retire_pending', 'repoint_pending')), '+'), "
        "coalesce(config->'retire_pending'->>'source', config->'repoint_pending'->>'source')::int "
        "FROM star.embedding_versions "
        "WHERE config->>'kind' IN ('text_embedding', 'graph_embedding') AND (%s::text[] IS NULL OR family = ANY(%s)) "
        "ORDER BY family, version", (families, families)).fetchall()
    keys = ("family", "version", "entity", "status", "served_from", "view", "fingerprint", "online_pending",
            "marks", "pending_source")
    return [dict(zip(keys, r)) for r in rows]


def exists(conn, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def is_table(conn, name: str) -> bool:
    """A real table (a retired vintage's name may live on as a view over its serving vintage)."""
    return conn.execute("SELECT coalesce((SELECT relkind = 'r' FROM pg_class WHERE oid = to_regclass(%s)), false)",
                        (name,)).fetchone()[0]


def _vectors(rows) -> dict[int, np.ndarray]:
    return {int(i): np.asarray(e, dtype=np.float32) for i, e in rows}


def native_rows(conn, family: str, version: int, entity: str) -> dict[int, np.ndarray] | None:
    """A vintage's own current rows (None when its table is gone)."""
    if not is_table(conn, f"star.{family}_v{version}"):
        return None
    return _vectors(conn.execute(sql.SQL("SELECT {k}, embedding::real[] FROM {t} WHERE is_current").format(
        k=sql.Identifier(ID_COLUMN[entity]), t=sql.Identifier("star", f"{family}_v{version}"))))


def served_rows(conn, v: dict) -> dict[int, np.ndarray]:
    """What a consumer of the vintage must get: its own current rows, or the serving vintage's mapped ones."""
    if v["served_from"] is None:
        return native_rows(conn, v["family"], v["version"], v["entity"]) or {}
    return _vectors(conn.execute(sql.SQL(
        "SELECT {k}, star.compat_apply(%s, %s, %s, embedding) FROM {t} WHERE is_current").format(
        k=sql.Identifier(ID_COLUMN[v["entity"]]), t=sql.Identifier("star", f"{v['family']}_v{v['served_from']}")),
        (v["family"], v["served_from"], v["version"])))


def feast_vectors(store, view: str, entity: str, ids) -> dict[int, np.ndarray | None]:
    key = ID_COLUMN[entity]
    out = store.get_online_features(features=[f"{view}:embedding"],
                                    entity_rows=[{key: int(i)} for i in ids]).to_dict()
    return {int(i): None if e is None else np.asarray(e, dtype=np.float32) for i, e in zip(out[key], out["embedding"])}


def same(a, b) -> bool:
    if a is None or b is None or len(a) != len(b):
        return False
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return na == nb
    return float(np.dot(a, b)) / (na * nb) >= COS


def matches(answer: dict, state: dict) -> bool:
    """Every id of the answer as in `state`: its vector when the state serves it, None when it does not."""
    return all(same(vec, state[i]) if i in state else vec is None for i, vec in answer.items())


def digest(vec) -> str:
    return hashlib.md5(np.asarray(vec, dtype=np.float32).tobytes()).hexdigest()


# ---------------------------------------------------------------- invariants

DUPLICATE_KEYS = {  # table -> the columns that identify one entity at one event time
    "star.member_history": "member_id, valid_from", "star.job_history": "job_id, valid_from",
    "star.text_snapshots": "entity, entity_id, valid_from", "star.id_features": "entity, entity_id, event_timestamp",
    "star.interactions": "member_id, job_id, relation, event_timestamp",
    "star.embedding_compat_rows": "family, from_version, to_version, i",
}


def check_duplicates(conn, ledger: Ledger, where: str) -> None:
    for table, key in DUPLICATE_KEYS.items():
        (n,) = conn.execute(f"SELECT count(*) - count(DISTINCT ({key})) FROM {table}").fetchone()
        if n:
            ledger.fail("duplicates", where, f"{table}: {n} rows repeat ({key})")
    for v in vintages(conn):
        table, key = f"star.{v['family']}_v{v['version']}", ID_COLUMN[v["entity"]]
        if not is_table(conn, table):
            continue
        n, cur = conn.execute(f"SELECT count(*) - count(DISTINCT ({key}, event_timestamp)), "
                              f"count(*) FILTER (WHERE is_current) - count(DISTINCT {key}) FILTER (WHERE is_current) "
                              f"FROM {table}").fetchone()
        if n or cur:
            ledger.fail("duplicates", where, f"{table}: {n} repeated (id, event time), {cur} extra current rows")
    alive = Counter((v["family"], v["fingerprint"]) for v in vintages(conn) if v["status"] != "retired")
    for (family, fp), n in alive.items():
        if n > 1:
            ledger.fail("duplicates", where, f"{family}: {n} live vintages from one model (fingerprint {fp})")
    for (table,) in conn.execute("SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
                                 "WHERE schemaname = 'feast_online'").fetchall():
        (n,) = conn.execute(f"SELECT count(*) - count(DISTINCT (entity_key, feature_name)) FROM {table}").fetchone()
        if n:
            ledger.fail("duplicates", where, f"{table}: {n} repeated (entity, feature) online rows")


def feast_state(target, families: list[str] | None = None) -> dict[str, dict]:
    """view -> {id: vector or None} as Feast serves it now, for every servable vintage Feast has."""
    from star.store.feast_repo import open_store

    store = open_store(target)
    have = {fv.name for fv in store.list_feature_views()}
    out = {}
    with conn_of(target) as conn:
        for v in vintages(conn, families):
            if v["status"] in SERVABLE and v["view"] in have:
                ids = sorted(served_rows(conn, v)) or sorted(native_rows(conn, v["family"], v["version"],
                                                                         v["entity"]) or {})
                out[v["view"]] = feast_vectors(store, v["view"], v["entity"], ids) if ids else {}
    return out


def check_world(target, ledger: Ledger, where: str, *, strict: bool = True, before: dict | None = None) -> None:
    """The consumers' invariants. strict (after a job finished): every servable vintage answers, through Feast, with
    the SQL row (native) or star.compat_apply of the serving vintage's row (retired) for every current entity; no
    building vintage, staging table, unfinished retire or pending materialization is left. Not strict (right after
    a kill): each view answers entirely as it did `before` the kill or entirely as SQL now says (as it was, or
    finished), and a vintage SQL serves must be served by Feast too."""
    from star.store.feast_repo import open_store

    store = open_store(target)
    have = {fv.name for fv in store.list_feature_views()}
    with conn_of(target) as conn:
        check_duplicates(conn, ledger, where)
        for v in vintages(conn):
            name = v["view"]
            if v["status"] == "building":
                if strict:
                    ledger.fail("unfinished", where, f"{name} is still building")
                if name in have and "ready_as" not in v["marks"]:
                    ledger.fail("building_visible", where, f"building {name} is a Feast feature view")
                elif name in have:  # applied just before it is published: answers nothing, or all of it
                    rows = native_rows(conn, v["family"], v["version"], v["entity"]) or {}
                    got = feast_vectors(store, name, v["entity"], sorted(rows)) if rows else {}
                    if not (matches(got, rows) or all(e is None for e in got.values())):
                        ledger.fail("building_visible", where, f"building {name} (ready_as) answers through Feast "
                                    f"for {sum(e is not None for e in got.values())} of {len(rows)} entities")
                try:
                    conn.execute("SELECT * FROM star.nearest(%s, %s, 1, 10)", (v["family"], v["version"]))
                    ledger.fail("building_visible", where, f"star.nearest answers for building {name}")
                except psycopg.Error:
                    pass
                continue
            if v["status"] not in SERVABLE:
                continue
            want = served_rows(conn, v)
            own = native_rows(conn, v["family"], v["version"], v["entity"]) if v["served_from"] else None
            if strict and own is not None:
                ledger.fail("unfinished", where, f"{name} is retired but its table star.{name} is still there")
            if strict and v["marks"]:
                ledger.fail("unfinished", where, f"{name} still marked {v['marks']}")
            if strict and v["online_pending"]:
                ledger.fail("unfinished", where, f"{name} is still marked online_pending")
            if name not in have:
                ledger.fail("unserved", where, f"{name} is {v['status']} in SQL but not a Feast feature view")
                continue
            got = feast_vectors(store, name, v["entity"], sorted(want)) if want else {}
            ok = matches(got, want)
            if not ok and not strict:
                mapped = served_rows(conn, {**v, "served_from": v["pending_source"]}) if v["pending_source"] else None
                ok = any(alt is not None and matches(got, alt) for alt in (own, mapped)) or (
                    before is not None and name in before and matches(got, before[name]))
            if not ok:
                missing = [i for i, e in got.items() if e is None]
                wrong = [i for i, e in got.items() if e is not None and not same(e, want[i])]
                kind = "short" if missing else "stale_or_mixed"
                ledger.fail(kind, where, f"{name} ({v['status']}, served_from={v['served_from']}) via Feast: "
                            f"{len(missing)} of {len(want)} current entities without a vector, {len(wrong)} differ "
                            f"from SQL (e.g. ids {(missing or wrong)[:3]})")
            if len(want) >= 11:
                for i in random.Random(v["version"]).sample(sorted(want), 3):
                    try:
                        n = len(conn.execute("SELECT * FROM star.nearest(%s, %s, %s, 10)",
                                             (v["family"], v["version"], i)).fetchall())
                    except psycopg.Error as exc:
                        ledger.fail("errors", where, f"star.nearest({name}, {i}): {str(exc).splitlines()[0]}")
                        continue
                    if n != 10:
                        ledger.fail("nearest_short", where, f"star.nearest({v['family']}, {v['version']}, {i}, 10) "
                                    f"gave {n} rows ({len(want)} current entities)")
        if strict:
            for (t,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'star' AND "
                                     "tablename LIKE '%\\_\\_staging'").fetchall():
                ledger.fail("unfinished", where, f"staging table star.{t} is left over")


def describe(target, families: list[str]) -> str:
    """A short picture of the job's state, for the kill log."""
    with conn_of(target) as conn:
        parts = []
        for v in vintages(conn, families):
            t = f"star.{v['view']}__staging"
            staged = conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] if exists(conn, t) else None
            parts.append(f"{v['view']}={v['status']}" + (f"+{staged} staged" if staged is not None else "")
                         + ("+online_pending" if v["online_pending"] else "") + (f"+{v['marks']}" if v["marks"] else "")
                         + ("+own table" if v["served_from"] and is_table(conn, f"star.{v['view']}") else ""))
        return ", ".join(parts) or "no vintage"


# ---------------------------------------------------------------- killing real `star` processes

def command_of(args: list[str]) -> str:
    return " ".join(args[:1] if args[0] == "seed" else args[:2])


def star_env(target, home: Path, app: str = "star-test") -> dict:
    return {**os.environ, "STAR_DATABASE_URL": target.sqlalchemy_url(), "STAR_HOME": str(home), "PGAPPNAME": app,
            "PYTHONPATH": str(REPO_ROOT)}


def wait_backends_gone(conn, app: str, timeout: float = 20.0) -> None:
    """A SIGKILLed client's server backends roll back and exit when they notice; wait for that (its advisory locks
    go with them)."""
    deadline = time.monotonic() + timeout
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchone()[0]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"backends of the killed {app} still there after {timeout} s")
        time.sleep(0.05)


def run_star(target, home: Path, args: list[str], ledger: Ledger, where: str, timeout: float = 300) -> bool:
    """Run `star ARGS` to the end; a non-zero exit is an error of `where`."""
    done = subprocess.run([STAR, *args], env=star_env(target, home), cwd=home, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode:
        ledger.fail("errors", where, f"`star {' '.join(args)}` exit {done.returncode}: "
                    f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
    return done.returncode == 0


def _poll(probe: Probe, conn, app: str, fallback):
    """The probe's value; a table the job drops between our existence check and our count reads as `fallback`."""
    try:
        return probe.value(conn, app)
    except psycopg.errors.UndefinedTable:
        return fallback


def kill_run(target, home: Path, args: list[str], probe: Probe, ledger: Ledger, families: list[str],
             timeout: float = 240) -> bool:
    """Launch `star ARGS`, SIGKILL its process group when the probe fires; True if killed (False: it finished
    first, which is then checked like any finished run)."""
    app = f"star-fault-{uuid.uuid4().hex[:10]}"
    log = home / f"{app}.log"
    with conn_of(target) as conn, open(log, "w") as out:
        base = _poll(probe, conn, app, None)
        proc = subprocess.Popen([STAR, *args], env=star_env(target, home, app), cwd=home, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.monotonic()
        while proc.poll() is None:
            if probe.fires(base, _poll(probe, conn, app, base), time.monotonic() - t0):
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                break
            if time.monotonic() - t0 > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise TimeoutError(f"`star {' '.join(args)}` neither reached '{probe.label}' nor ended in {timeout} s")
            time.sleep(0.02)
        killed = proc.returncode == -signal.SIGKILL
        wait_backends_gone(conn, app)
    seconds = round(time.monotonic() - t0, 2)
    if not killed:
        if proc.returncode:
            tail = log.read_text().strip().splitlines()[-1:] or [""]
            ledger.fail("errors", f"star {' '.join(args)}", f"exit {proc.returncode} before '{probe.label}': {tail[0]}")
        ledger.kill_log.append({"command": command_of(args), "point": f"(ended before '{probe.label}')",
                                "seconds": seconds, "state": describe(target, families)})
        return False
    ledger.kills[command_of(args)] += 1
    ledger.kill_log.append({"command": command_of(args), "point": probe.label, "seconds": seconds,
                            "state": describe(target, families)})
    return True


def finish(ledger: Ledger, where: str, fn: Callable, *args, **kwargs):
    """Rerun a killed job in-process (what the CLI calls); an exception means the kill left it unfinishable."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 (any failure to finish is the finding)
        ledger.fail("unfinished", where, f"rerun {getattr(fn, '__name__', fn)} failed: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}")
        return None


def write_summary(ledger: Ledger, path: Path) -> None:
    path.write_text(json.dumps(ledger.summary(), indent=1, default=str))
