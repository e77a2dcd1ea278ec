"""Deterministic synthetic member<->job marketplace on the shipped ESCO / O*NET subset.

    taxonomy ─► occupations, skills, relatedness R[o, o'] (same 1 > related .6 > ISCO sub-major .35 > major .15)
       ├─► companies: size (power law), home city, focus occupations, hidden quality
       ├─► members:   occupation, seniority, city, employers, skills (edge / text-only); ~25 % change later
       ├─► jobs:      company, occupation, seniority, city, remote, skills; some edited, some closed
       ▼
    weekly loop: active members (power-law rates) are shown open jobs (targeted + random)
       utility = skill coverage (incl. text-only skills) + occupation relatedness + seniority fit
               + location + employer / colleagues-applied network + company quality + pair taste
       outcome = apply | save | view | none | dismiss from utility + behavioural noise;
       applies feed the colleague network of later weeks
       ▼
    SyntheticMarketplace(members, jobs, texts, edges, nodes, truth)

One numpy Generator seeded once drives everything (texts: one random.Random seeded from it), so a
seed gives identical frames; nothing depends on hash() or set order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from star.data.synthetic_text import CITIES, N_COMPANY_NAMES, company_name
from star.data.taxonomy import load_taxonomy

DAY, WEEK = 86_400, 7 * 86_400
LEVELS = np.array(["entry", "mid", "senior", "lead", "executive"], dtype=object)
BANDS = np.array(["0-2", "3-5", "6-10", "11-15", "16+"], dtype=object)
EMPLOYMENT = np.array(["full_time", "part_time", "contract", "temporary", "internship"], dtype=object)
REMOTE = np.array(["onsite", "hybrid", "remote"], dtype=object)
OUTCOMES = np.array(["none", "view", "save", "apply", "dismiss"], dtype=object)
CITY_P = 1.0 / np.arange(1, len(CITIES) + 1) ** 0.8
CITY_P /= CITY_P.sum()
# share of the labour market per ISCO major group (members and jobs are drawn from it)
MAJOR_SHARE = {1: 0.09, 2: 0.24, 3: 0.17, 4: 0.10, 5: 0.15, 6: 0.03, 7: 0.10, 8: 0.06, 9: 0.06}
ZONE_LEVEL = np.array([0, 0.4, 0.9, 1.4, 1.9, 2.3])  # mean seniority level by O*NET job zone
SEN_FIT = np.array([-0.5, 0.0, 0.35, 1.0, 0.6, 0.0, -0.5])  # by job level - member level, -3..+3
# hidden utility weights: skill coverage, occupation relatedness, seniority, location, worked at the
# company, colleagues applied there, company quality, pair taste
W_SKILL, W_OCC, W_SEN, W_LOC, W_DIRECT, W_COLLEAGUE, W_QUALITY, W_TASTE = 1.6, 1.0, 0.5, 0.5, 0.6, 0.6, 0.25, 0.3
# outcome thresholds on utility + member propensity + logistic(0, BEHAVIOUR_NOISE)
T_APPLY, T_SAVE, T_VIEW, T_DISMISS, P_DISMISS, BEHAVIOUR_NOISE = 2.3, 2.0, 1.45, 0.7, 0.5, 0.35
STRATEGY_P = np.array([0.3, 0.15, 0.15, 0.15, 0.25])  # same occ, related occ, ISCO sub-major, city, random


@dataclass(frozen=True)
class SyntheticMarketplace:
    members: pd.DataFrame  # member_id, valid_from, seniority, location, occupation_group, experience_band, open_to_work
    jobs: pd.DataFrame  # job_id, valid_from, seniority, location, employment_type, occupation_group, remote, status
    texts: pd.DataFrame  # entity, entity_id, valid_from, text
    edges: pd.DataFrame  # src_type, src_id, relation, dst_type, dst_id, event_timestamp
    nodes: pd.DataFrame  # node_type, node_id, label
    truth: pd.DataFrame  # member_id, job_id, event_timestamp, utility, outcome


@dataclass(frozen=True)
class _Tax:
    occ_id: np.ndarray
    major: np.ndarray
    major_label: np.ndarray
    sub: np.ndarray
    zone: np.ndarray
    rel: np.ndarray  # [O, O] float32 relatedness
    rel_ptr: np.ndarray  # CSR: related occupations of each occupation
    rel_idx: np.ndarray
    sk_ptr: np.ndarray  # CSR: skills of each occupation (essential, optional, technology)
    sk_idx: np.ndarray
    sk_kind: np.ndarray  # 0 essential, 1 optional, 2 technology
    skill_id: np.ndarray


@functools.lru_cache(maxsize=1)
def _tax_arrays() -> _Tax:
    tax = load_taxonomy()
    occ = tax.occupations
    o_pos = pd.Series(np.arange(len(occ)), index=occ["occ_id"])
    s_pos = pd.Series(np.arange(len(tax.skills)), index=tax.skills["skill_id"])
    major = occ["isco_major"].astype(int).to_numpy()
    sub = occ["isco_group"].str[:2].astype(int).to_numpy()
    ra = o_pos[tax.related_occupations["occ_id"]].to_numpy()
    rb = o_pos[tax.related_occupations["related_occ_id"]].to_numpy()
    rel = np.where(major[:, None] == major[None, :], 0.15, 0.0).astype(np.float32)
    rel[sub[:, None] == sub[None, :]] = 0.35
    rel[ra, rb] = rel[rb, ra] = 0.6
    np.fill_diagonal(rel, 1.0)
    os_ = tax.occupation_skills
    oa = o_pos[os_["occ_id"]].to_numpy()
    kind = os_["relation"].map({"essential": 0, "optional": 1, "technology": 2}).to_numpy()
    order = np.lexsort((kind, oa))  # per occupation: essential first
    ptr = np.searchsorted(oa[order], np.arange(len(occ) + 1))
    return _Tax(
        occ_id=occ["occ_id"].to_numpy(object), major=major, major_label=occ["isco_major_label"].to_numpy(object),
        sub=sub, zone=occ["job_zone"].to_numpy(), rel=rel,
        rel_ptr=np.searchsorted(ra, np.arange(len(occ) + 1)), rel_idx=rb,
        sk_ptr=ptr, sk_idx=s_pos[os_["skill_id"]].to_numpy()[order], sk_kind=kind[order],
        skill_id=tax.skills["skill_id"].to_numpy(object),
    )


def _pick_csr(rng, ptr, idx, rows, fallback):
    """One uniformly random entry of CSR row `rows[i]`, or fallback[i] where the row is empty."""
    n = ptr[rows + 1] - ptr[rows]
    pos = ptr[rows] + (rng.random(len(rows)) * n).astype(np.int64)
    return np.where(n > 0, idx[np.minimum(pos, len(idx) - 1)], fallback)


def _draw_skills(rng, tax, ent, occ, p_kind, cap):
    """(entity, skill, structured, in_text) rows: a Bernoulli draw over each occupation's skill list."""
    n = tax.sk_ptr[occ + 1] - tax.sk_ptr[occ]
    e = np.repeat(ent, n)
    pos = np.repeat(tax.sk_ptr[occ] - np.cumsum(n) + n, n) + np.arange(n.sum())
    first = pos == np.repeat(tax.sk_ptr[occ], n)
    keep = first | (rng.random(len(pos)) < p_kind[tax.sk_kind[pos]])
    e, s = e[keep], tax.sk_idx[pos[keep]]
    order = np.lexsort((rng.random(len(e)), e))
    e, s = e[order], s[order]
    rank = np.arange(len(e)) - np.searchsorted(e, e)
    return e[rank < cap], s[rank < cap]


def _flags(rng, n, p_struct, p_text_if_struct, p_text_if_not):
    struct = rng.random(n) < p_struct
    text = rng.random(n) < np.where(struct, p_text_if_struct, p_text_if_not)
    return struct, text


def _level(rng, tax, occ):
    mean = ZONE_LEVEL[tax.zone[occ]] + 0.7 * (tax.major[occ] == 1)
    return np.clip(np.rint(rng.normal(mean, 0.9)), 0, 4).astype(np.int64)


def _occ_weights(rng, tax):
    share = np.array([MAJOR_SHARE[g] for g in tax.major]) / np.bincount(tax.major)[tax.major]
    w = share * rng.lognormal(0, 0.6, len(share))
    return w / w.sum()


def _companies(rng, tax, n_jobs, occ_p):
    k = int(np.clip(n_jobs // 8, 8, 4000))
    size = rng.pareto(1.2, k) + 1
    focus = rng.choice(len(occ_p), k, p=occ_p)
    return dict(n=k, size_p=size / size.sum(), city=rng.choice(len(CITIES), k, p=CITY_P),
                quality=rng.normal(0, 1, k), focus=focus,
                name=np.array([company_name(int(c)) for c in rng.choice(N_COMPANY_NAMES, k, replace=False)], object))


def _members(rng, tax, co, n, t0, t1, occ_p):
    ids = np.arange(n)
    occ0 = rng.choice(len(occ_p), n, p=occ_p)
    late = rng.random(n) < 0.35
    signup = np.where(late, rng.uniform(t0, t1 - DAY, n), rng.uniform(t0 - 730 * DAY, t0)).astype(np.int64)
    rate = np.minimum(0.3 * (1 + rng.pareto(1.5, n)), 25.0) * (rng.random(n) >= 0.08)
    level0 = _level(rng, tax, occ0)
    years0 = np.clip(level0 * 4 + rng.gamma(2.0, 1.5, n) - 1, 0, 45).astype(np.int64)
    # employers: current one is usually a company hiring the member's kind of occupation
    by_focus = np.argsort(co["focus"], kind="stable")
    f_ptr = np.searchsorted(co["focus"][by_focus], np.arange(len(occ_p) + 1))
    random_co = rng.choice(co["n"], (n, 4), p=co["size_p"])
    slots = np.full((n, 4), -1, np.int64)
    slots[:, 0] = np.where(rng.random(n) < 0.6, _pick_csr(rng, f_ptr, by_focus, occ0, random_co[:, 0]), random_co[:, 0])
    n_past = rng.integers(0, 3, n)
    slots[:, 1] = np.where(n_past >= 1, random_co[:, 1], -1)
    slots[:, 2] = np.where(n_past >= 2, random_co[:, 2], -1)
    since = np.full((n, 4), np.iinfo(np.int64).min)
    lo, hi = np.maximum(signup, t0) + 7 * DAY, t1 - 7 * DAY
    changed = (lo < hi) & (rng.random(n) < 0.3)
    tau = np.where(changed, lo + rng.random(n) * np.maximum(hi - lo, 0), np.iinfo(np.int64).max).astype(np.int64)
    kind = np.where(changed, rng.choice(4, n, p=[0.55, 0.2, 0.1, 0.15]), -1)  # promotion, move, new occ, refresh
    level1 = np.where(kind == 0, np.minimum(level0 + 1, 4), level0)
    occ1 = np.where(kind == 2, _pick_csr(rng, tax.rel_ptr, tax.rel_idx, occ0, occ0), occ0)
    city0 = rng.choice(len(CITIES), n, p=CITY_P)
    city1 = np.where(kind == 1, (city0 + rng.integers(1, len(CITIES), n)) % len(CITIES), city0)
    new_job = (kind == 0) & (rng.random(n) < 0.4) | (kind == 2)
    slots[:, 3] = np.where(new_job, random_co[:, 3], -1)
    since[:, 3] = tau
    open0 = rng.random(n) < 0.35
    e0, s0 = _draw_skills(rng, tax, ids, occ0, np.array([0.55, 0.25, 0.4]), 30)
    ch = ids[changed]
    e1, s1 = _draw_skills(rng, tax, ch, occ1[ch], np.array([0.15, 0.1, 0.15]) + 0.4 * (kind[ch] == 2)[0:0].sum(), 4)
    new = ~np.isin(e1 * len(tax.skill_id) + s1, e0 * len(tax.skill_id) + s0)
    return dict(
        n=n, occ=(occ0, occ1), level=(level0, level1), city=(city0, city1), signup=signup, rate=rate,
        years=(years0, years0 + np.maximum(tau - np.maximum(signup, t0), 0) // (365 * DAY)),
        open=(open0, open0 ^ (changed & (rng.random(n) < 0.3))), changed=changed, tau=tau, kind=kind,
        slots=slots, since=since, bias=rng.normal(0, 0.3, n), relocate=rng.random(n) < 0.15,
        title_mode=rng.choice(3, n, p=[0.6, 0.3, 0.1]), miss_loc=rng.random(n) < 0.04,
        miss_band=rng.random(n) < 0.06, skills0=(e0, s0, *_flags(rng, len(e0), 0.6, 0.5, 0.9)),
        skills1=(e1[new], s1[new], *_flags(rng, int(new.sum()), 0.6, 0.6, 0.9)),
    )


def _jobs(rng, tax, co, n, t0, t1, occ_p):
    ids = np.arange(n)
    comp = rng.choice(co["n"], n, p=co["size_p"])
    focus = co["focus"][comp]
    occ = np.where(rng.random(n) < 0.4, focus, _pick_csr(rng, tax.rel_ptr, tax.rel_idx, focus, focus))
    occ = np.where(rng.random(n) < 0.3, rng.choice(len(occ_p), n, p=occ_p), occ)
    emp = rng.choice(len(EMPLOYMENT), n, p=[0.74, 0.08, 0.1, 0.05, 0.03])
    level0 = np.where(emp == 4, 0, _level(rng, tax, occ))
    remote0 = rng.choice(3, n, p=[0.55, 0.3, 0.15])
    post = np.where(rng.random(n) < 0.1, rng.uniform(t0 - 30 * DAY, t0, n), rng.uniform(t0, t1 - DAY, n))
    life = rng.uniform(21, 75, n) * DAY
    closed = rng.random(n) < 0.35
    end = (post + np.where(closed, rng.uniform(0.3, 1.0, n), 1.0) * life).astype(np.int64)
    edit_t = (post + rng.uniform(0.1, 0.6, n) * (end - post)).astype(np.int64)
    edited = (rng.random(n) < 0.15) & (edit_t < t1)
    level1 = np.where(edited & (rng.random(n) < 0.3), np.clip(level0 + rng.choice([-1, 1], n), 0, 4), level0)
    remote1 = np.where(edited & (rng.random(n) < 0.4), rng.choice(3, n, p=[0.3, 0.4, 0.3]), remote0)
    e0, s0 = _draw_skills(rng, tax, ids, occ, np.array([0.5, 0.15, 0.45]), 20)
    e1, s1 = _draw_skills(rng, tax, ids[edited], occ[edited], np.array([0.2, 0.2, 0.2]), 3)
    new = ~np.isin(e1 * len(tax.skill_id) + s1, e0 * len(tax.skill_id) + s0)
    return dict(
        n=n, comp=comp, occ=occ, emp=emp, level=(level0, level1), remote=(remote0, remote1),
        city=np.where(rng.random(n) < 0.75, co["city"][comp], rng.choice(len(CITIES), n, p=CITY_P)),
        post=post.astype(np.int64), end=end, closed=closed & (end < t1), edited=edited,
        edit_t=np.where(edited, edit_t, np.iinfo(np.int64).max), years=np.array([0, 2, 4, 7, 10])[level0],
        title_mode=rng.choice(3, n, p=[0.65, 0.27, 0.08]),
        skills0=(e0, s0, *_flags(rng, len(e0), 0.7, 0.6, 0.9)),
        skills1=(e1[new], s1[new], *_flags(rng, int(new.sum()), 0.7, 0.8, 0.9)),
    )


def generate(*, members: int, jobs: int, seed: int = 0, start: str = "2025-01-01", months: int = 6,
             progress: bool = False) -> SyntheticMarketplace:
    """Generate a marketplace of `members` members and `jobs` jobs over `months` months from `start` (UTC)."""
    if members < 1 or jobs < 1 or months < 1:
        raise ValueError(f"generate() needs members, jobs and months >= 1, got {members}, {jobs}, {months}")
    from star.data import _synthetic_sim as sim  # noqa: PLC0415  (see module note)

    return sim.run(members=members, jobs=jobs, seed=seed, start=start, months=months, progress=progress)
