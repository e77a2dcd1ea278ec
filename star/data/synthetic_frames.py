"""Assembling the synthetic marketplace's frames (members, jobs, edges) from the simulation's arrays, and
writing them as files in the input format (docs/data-format.md)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

from star.data.synthetic_text import CITIES

LEVELS = np.array(["entry", "mid", "senior", "lead", "executive"], dtype=object)
BANDS = np.array(["0-2", "3-5", "6-10", "11-15", "16+"], dtype=object)
EMPLOYMENT = np.array(["full_time", "part_time", "contract", "temporary", "internship"], dtype=object)
REMOTE = np.array(["onsite", "hybrid", "remote"], dtype=object)


def ts(seconds) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(seconds, dtype=np.int64), unit="s", utc=True)).as_unit("ns")


def _versioned(n, changed, at0, at1):
    """Row index, version and valid_from of entity histories: every entity at at0, changed ones again at at1."""
    idx = np.concatenate([np.arange(n), np.flatnonzero(changed)])
    ver = np.concatenate([np.zeros(n, np.int64), np.ones(int(changed.sum()), np.int64)])
    when = np.where(ver == 1, at1[idx], at0[idx])
    order = np.lexsort((when, idx))
    return idx[order], ver[order], when[order]


def member_frame(ctx):
    m, tax = ctx.m, ctx.tax
    i, v, when = _versioned(m.n, m.changed, m.signup, m.tau)
    def pick(pair):
        return np.where(v == 1, pair[1][i], pair[0][i])

    city = np.array(CITIES, dtype=object)[pick(m.city)]
    band = BANDS[np.digitize(pick(m.years), [3, 6, 11, 16])]
    return pd.DataFrame({
        "member_id": (i + 1).astype(np.int64), "valid_from": ts(when), "seniority": LEVELS[pick(m.level)],
        "location": np.where(m.miss_loc[i], None, city), "occupation_group": tax.major_label[pick(m.occ)],
        "experience_band": np.where(m.miss_band[i], None, band),
        "open_to_work": np.where(pick(m.open), "yes", "no").astype(object),
    })


def job_frame(ctx):
    j, tax = ctx.j, ctx.tax
    i, v, when = _versioned(j.n, j.edited, j.post, j.edit_t)
    closed = np.flatnonzero(j.closed)
    closed_v = (j.edit_t[closed] <= j.end[closed]).astype(np.int64)
    i, v, when = np.concatenate([i, closed]), np.concatenate([v, closed_v]), np.concatenate([when, j.end[closed]])
    status = np.where(np.arange(len(i)) >= len(i) - len(closed), "closed", "open").astype(object)
    order = np.lexsort((when, i))
    i, v, when, status = i[order], v[order], when[order], status[order]

    def pick(pair):
        return np.where(v == 1, pair[1][i], pair[0][i])

    return pd.DataFrame({
        "job_id": (i + 1).astype(np.int64), "valid_from": ts(when), "seniority": LEVELS[pick(j.level)],
        "location": np.array(CITIES, dtype=object)[j.city[i]], "employment_type": EMPLOYMENT[j.emp[i]],
        "occupation_group": tax.major_label[j.occ[i]], "remote": REMOTE[pick(j.remote)], "status": status,
    })


def edge_frame(ctx, sim):
    m, j, tax = ctx.m, ctx.j, ctx.tax
    member_id = np.arange(1, m.n + 1).astype(str).astype(object)
    job_id = np.arange(1, j.n + 1).astype(str).astype(object)
    blocks = []

    def add(src_type, src, relation, dst_type, dst, when):
        src_id = (member_id if src_type == "member" else job_id)[src]
        blocks.append(pd.DataFrame({"src_type": src_type, "src_id": src_id, "relation": relation, "dst_type": dst_type,
                                    "dst_id": dst, "event_timestamp": np.asarray(when, np.int64)}))

    for entity, relation, skills, since in (("member", "has_skill", m.skills, (m.signup, m.tau)),
                                            ("job", "requires_skill", j.skills, (j.post, j.edit_t))):
        for sk, at in zip(skills, since):  # version 0 at sign-up / posting, added skills at the change
            e = sk.e[sk.struct]
            add(entity, e, relation, "skill", tax.skill_id[sk.s[sk.struct]], at[e])
    titled = np.flatnonzero(m.title_mode != 2)  # free-form titles have no taxonomy match, hence no edge
    add("member", titled, "has_title", "title", tax.occ_id[m.occ[0][titled]], m.signup[titled])
    moved = titled[m.kind[titled] == 2]
    add("member", moved, "has_title", "title", tax.occ_id[m.occ[1][moved]], m.tau[moved])
    for slot in range(4):
        w = np.flatnonzero(m.slots[:, slot] >= 0)
        since = np.maximum(m.signup[w], m.since[w, slot])
        add("member", w, "works_at", "company", ctx.company_id[m.slots[w, slot]], since)
    jt = np.flatnonzero(j.title_mode != 2)
    add("job", jt, "has_title", "title", tax.occ_id[j.occ[jt]], j.post[jt])
    add("job", np.arange(j.n), "posted_by", "company", ctx.company_id[j.comp], j.post)
    mi, ji, t, _, oc = sim
    rng = np.random.default_rng(ctx.salt)  # own stream: delays must not shift the simulation's draws
    view = np.isin(oc, (1, 2, 3))  # a save or an apply is preceded by a view
    add("member", mi[view], "view", "job", job_id[ji[view]], t[view])
    for code, rel, lo, hi in ((2, "save", 30, 3600), (3, "apply", 120, 7200), (4, "dismiss", 0, 1)):
        s = oc == code
        at = np.minimum(t[s] + rng.integers(lo, hi, int(s.sum())), ctx.t1 - 1)
        add("member", mi[s], rel, "job", job_id[ji[s]], at)
    edges = pd.concat(blocks, ignore_index=True)
    edges["event_timestamp"] = ts(edges["event_timestamp"])
    return edges


def write_dir(market, path: str | Path, fmt: str = "parquet") -> Path:
    """Write one `<frame>.<fmt>` file per frame; CSV timestamps are ISO-8601 with offset, NaT empty."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"write_dir(fmt={fmt!r}): expected 'parquet' or 'csv'")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    for f in fields(market):
        frame = getattr(market, f.name)
        if fmt == "parquet":
            frame.to_parquet(out / f"{f.name}.parquet", index=False)
            continue
        frame = frame.copy()
        for col in frame.columns:
            if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
                frame[col] = frame[col].dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        frame.to_csv(out / f"{f.name}.csv", index=False)
    return out
