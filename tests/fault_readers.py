"""Concurrent consumers for tests/test_faults.py: threads reading the served vintages while a lifecycle step runs.

    Feast threads   get_online_features(view:embedding) for 40 ids, one FeatureStore per thread
    nearest threads SELECT * FROM star.nearest(family, v, id, 10): exactly 10 distinct ids
    select threads  one REPEATABLE READ transaction: the vintage's registry row, then all its current rows (native,
                    or star.compat_apply of the serving vintage's rows)

Each answer must be entirely the state before the step or entirely the state after it (cosine >= 0.9999 for Feast,
the same float32 bytes for SQL); an answer begun after the step returned must be the state after it.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

import psycopg

from tests.faults import Ledger, conn_of, digest, feast_vectors, matches, served_rows, vintages

SAMPLE = 40
PAUSE = {"_feast": 0.03, "_nearest": 0.03, "_select": 0.2}  # seconds between a reader's answers: the step needs
# the two cores too (unthrottled, nine readers made a 10 s text embed take 110 s)


@dataclass(frozen=True)
class Answer:
    kind: str
    view: str
    t0: float
    t1: float
    value: dict


def _row(conn, family: str, version: int) -> dict:
    return next(v for v in vintages(conn, [family]) if v["version"] == version)


class Readers:
    """Reader threads over `views` (family, version) of `target`; `step()` runs a lifecycle step among them."""

    def __init__(self, target, ledger: Ledger, views: list[tuple[str, int]], *, feast: int = 3, nearest: int = 3,
                 select: int = 3):
        from star.store.feast_repo import open_store

        self.target, self.ledger, self.views = target, ledger, views
        self.stores = [open_store(target) for _ in range(feast)]
        self.n_nearest, self.n_select = nearest, select

    def state(self) -> dict[tuple[str, int], dict]:
        with conn_of(self.target) as conn:
            return {(f, k): {"row": (r := _row(conn, f, k)), "vectors": served_rows(conn, r)} for f, k in self.views}

    def step(self, label: str, run, *, settle: float = 1.0) -> dict:
        """Run `run()` while every reader loops; classify every answer; return the step's counts."""
        before = self.state()
        ids = {key: sorted(s["vectors"]) for key, s in before.items()}
        stop, answers, lock = threading.Event(), [], threading.Lock()
        mark = dict(self.ledger.counts)

        def record(a: Answer) -> None:
            with lock:
                answers.append(a)
            self.ledger.read()

        def guarded(body, seed):
            rng, pause = random.Random(seed), PAUSE[body.__name__]
            conn = None
            while not stop.is_set():
                try:
                    if conn is None and body.__name__ != "_feast":
                        conn = conn_of(self.target)
                        if body.__name__ == "_select":  # one snapshot per answer
                            conn.autocommit = False
                            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                    body(rng, conn, ids, record, seed)
                    time.sleep(pause)
                except Exception as exc:  # noqa: BLE001 (every failed read counts)
                    self.ledger.read()
                    self.ledger.fail("errors", f"{label} / {body.__name__.strip('_')} reader",
                                     f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                    if conn is not None:
                        conn.close()
                        conn = None
                    time.sleep(0.05)
            if conn is not None:
                conn.close()

        threads = ([threading.Thread(target=guarded, args=(self._feast, i)) for i in range(len(self.stores))]
                   + [threading.Thread(target=guarded, args=(self._nearest, 100 + i)) for i in range(self.n_nearest)]
                   + [threading.Thread(target=guarded, args=(self._select, 200 + i)) for i in range(self.n_select)])
        for t in threads:
            t.start()
        time.sleep(0.3)  # readers are up before the step starts
        start = time.monotonic()
        run()
        end = time.monotonic()
        after = self.state()
        time.sleep(settle)  # answers begun after the step returned: only the new state
        stop.set()
        for t in threads:
            t.join()
        self._classify(label, answers, before, after, end)
        for key, state in before.items():  # a lifecycle step never takes entities away from a served vintage
            lost = sorted(set(state["vectors"]) - set(after[key]["vectors"]))
            if lost:
                self.ledger.fail("short", f"{label} / {key[0]}_v{key[1]}", f"served {len(state['vectors'])} "
                                 f"entities before, {len(lost)} of them not after (e.g. ids {lost[:3]})")
        return {"step": label, "seconds": round(end - start, 2), "answers": len(answers),
                **{k: self.ledger.counts[k] - mark.get(k, 0) for k in self.ledger.counts}}

    # ------------------------------------------------------------ the three kinds of reader

    def _feast(self, rng, conn, ids, record, seed):
        key = rng.choice(self.views)
        view = f"{key[0]}_v{key[1]}"
        chosen = rng.sample(ids[key], min(SAMPLE, len(ids[key])))
        entity = "member" if key[0].startswith("member") else "job"
        t0 = time.monotonic()
        value = feast_vectors(self.stores[seed], view, entity, chosen)
        record(Answer("feast", view, t0, time.monotonic(), value))

    def _nearest(self, rng, conn, ids, record, seed):
        family, version = key = rng.choice(self.views)
        entity = rng.choice(ids[key])
        t0 = time.monotonic()
        rows = conn.execute("SELECT id FROM star.nearest(%s, %s, %s, 10)", (family, version, entity)).fetchall()
        record(Answer("nearest", f"{family}_v{version}", t0, time.monotonic(),
                      {"n": len(rows), "distinct": len({r[0] for r in rows}), "of": len(ids[key]), "id": entity}))

    def _select(self, rng, conn, ids, record, seed):
        family, version = rng.choice(self.views)
        t0 = time.monotonic()
        try:
            vectors = served_rows(conn, _row(conn, family, version))
        finally:
            conn.rollback()
        record(Answer("select", f"{family}_v{version}", t0, time.monotonic(),
                      {i: digest(e) for i, e in vectors.items()}))

    # ------------------------------------------------------------ before / after

    def _classify(self, label, answers, before, after, end) -> None:
        by_view = {f"{f}_v{k}": key for key in before for f, k in [key]}
        sql = {w: {key: {i: digest(e) for i, e in s[key]["vectors"].items()} for key in s}
               for w, s in (("before", before), ("after", after))}
        for a in answers:
            key = by_view[a.view]
            states = ("after",) if a.t0 > end else ("before", "after")
            where = f"{label} / {a.kind} reader / {a.view}" + (" (begun after the step)" if a.t0 > end else "")
            if a.kind == "nearest":
                if a.value["distinct"] != a.value["n"]:
                    self.ledger.fail("duplicates", where, f"star.nearest for id {a.value['id']} repeated an id")
                if a.value["of"] >= 11 and a.value["n"] != 10:
                    self.ledger.fail("nearest_short", where, f"star.nearest(id {a.value['id']}, 10) gave "
                                     f"{a.value['n']} rows ({a.value['of']} current entities)")
                continue
            if a.kind == "select":
                options = [sql[w][key] for w in states]
                if any(a.value == o for o in options):
                    continue
                if len(a.value) < min(len(o) for o in options):
                    self.ledger.fail("short", where, f"{len(a.value)} current rows, expected "
                                     f"{' or '.join(str(len(o)) for o in options)}")
                else:
                    n = {w: sum(sql[w][key].get(i) == d for i, d in a.value.items()) for w in states}
                    self.ledger.fail("stale_or_mixed", where, f"{len(a.value)} rows, matching before/after: {n}")
                continue
            options = [(before if w == "before" else after)[key]["vectors"] for w in states]
            if any(matches(a.value, o) for o in options):
                continue
            present = [i for i in a.value if all(i in o for o in options)]
            if any(a.value[i] is None for i in present):
                self.ledger.fail("short", where, f"{sum(a.value[i] is None for i in present)} of {len(a.value)} "
                                 "ids without a vector though the vintage serves them")
            else:
                n = {w: sum(matches({i: e}, (before if w == 'before' else after)[key]["vectors"])
                            for i, e in a.value.items()) for w in states}
                self.ledger.fail("stale_or_mixed", where, f"{len(a.value)} ids, matching before/after: {n}")
