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
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from star.data.synthetic_frames import EMPLOYMENT, edge_frame, job_frame, member_frame, ts
from star.data.synthetic_frames import write_dir  # noqa: F401  (re-exported: star.data.synthetic.write_dir)
from star.data.synthetic_limits import check_size
from star.data.synthetic_drafts import TEXT_LENGTHS, node_frame, write_texts
from star.data.synthetic_text import CITIES, N_COMPANY_NAMES, company_name
from star.data.taxonomy import load_taxonomy
from star.errors import ConfigError, require_at_least

DAY, WEEK = 86_400, 7 * 86_400
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
T_APPLY, T_SAVE, T_VIEW, T_DISMISS, P_DISMISS, BEHAVIOUR_NOISE = 2.4, 2.05, 1.5, 0.6, 0.35, 0.35
STRATEGY_P = np.array([0.3, 0.15, 0.15, 0.15, 0.25])  # same occ, related occ, ISCO sub-major, city, random


@dataclass(frozen=True)
class SyntheticMarketplace:
    members: pd.DataFrame  # member_id, valid_from, seniority, location, occupation_group, experience_band, open_to_work
    jobs: pd.DataFrame  # job_id, valid_from, seniority, location, employment_type, occupation_group, remote, status
    texts: pd.DataFrame  # entity, entity_id, valid_from, text
    edges: pd.DataFrame  # src_type, src_id, relation, dst_type, dst_id, event_timestamp
    nodes: pd.DataFrame  # node_type, node_id, label
    truth: pd.DataFrame  # member_id, job_id, event_timestamp, utility, outcome


@functools.lru_cache(maxsize=1)
def _tax_arrays() -> SimpleNamespace:
    """Taxonomy as arrays: occupation attributes, relatedness [O, O], CSR of related occupations and skills."""
    tax = load_taxonomy()
    occ = tax.occupations
    o_pos = pd.Series(np.arange(len(occ)), index=occ["occ_id"])
    s_pos = pd.Series(np.arange(len(tax.skills)), index=tax.skills["skill_id"])
    major = occ["isco_major"].astype(int).to_numpy()
    sub = occ["isco_group"].str[:2].astype(int).to_numpy()
    ra = o_pos[tax.related_occupations["occ_id"]].to_numpy()
    rb = o_pos[tax.related_occupations["related_occ_id"]].to_numpy()
    by_a = np.argsort(ra, kind="stable")
    ra, rb = ra[by_a], rb[by_a]
    rel = np.where(major[:, None] == major[None, :], 0.15, 0.0).astype(np.float32)
    rel[sub[:, None] == sub[None, :]] = 0.35
    rel[ra, rb] = rel[rb, ra] = 0.6
    np.fill_diagonal(rel, 1.0)
    os_ = tax.occupation_skills
    oa = o_pos[os_["occ_id"]].to_numpy()
    kind = os_["relation"].map({"essential": 0, "optional": 1, "technology": 2}).to_numpy()
    order = np.lexsort((kind, oa))  # per occupation: essential first
    ptr = np.searchsorted(oa[order], np.arange(len(occ) + 1))
    return SimpleNamespace(
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


def _pick_group(rng, items, keys, targets, fallback):
    """A uniformly random item whose key equals targets[i], or fallback[i] if none has it."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    a, b = np.searchsorted(sk, targets), np.searchsorted(sk, targets, "right")
    pos = np.minimum(a + (rng.random(len(targets)) * (b - a)).astype(np.int64), len(sk) - 1)
    return np.where(b > a, items[order[pos]], fallback)


def _skills(rng, tax, ent, occ, p_kind, cap, p_struct, p_text_if_struct, base=None, boost=None):
    """Skill rows (entity, skill, has an edge, mentioned in text), sorted by entity: a Bernoulli draw over
    each occupation's skill list (its first essential skill always), at most `cap` each, minus `base` rows."""
    n = tax.sk_ptr[occ + 1] - tax.sk_ptr[occ]
    start = np.repeat(tax.sk_ptr[occ], n)
    pos = start + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    p = p_kind[tax.sk_kind[pos]] * (1.0 if boost is None else np.repeat(boost, n))
    keep = (pos == start) | (rng.random(len(pos)) < p)
    e, s = np.repeat(ent, n)[keep], tax.sk_idx[pos[keep]]
    order = np.lexsort((rng.random(len(e)), e))
    e, s = e[order], s[order]
    first = np.arange(len(e)) - np.searchsorted(e, e) < cap
    e, s = e[first], s[first]
    if base is not None:
        new = ~np.isin(e * len(tax.skill_id) + s, base.e * len(tax.skill_id) + base.s)
        e, s = e[new], s[new]
    struct = rng.random(len(e)) < p_struct
    return SimpleNamespace(e=e, s=s, struct=struct, text=rng.random(len(e)) < np.where(struct, p_text_if_struct, 0.9))


def _level(rng, tax, occ):
    mean = ZONE_LEVEL[tax.zone[occ]] + 0.7 * (tax.major[occ] == 1)
    return np.clip(np.rint(rng.normal(mean, 0.9)), 0, 4).astype(np.int64)


def _occ_weights(rng, tax):
    share = np.array([MAJOR_SHARE[g] for g in tax.major]) / np.bincount(tax.major)[tax.major]
    w = share * rng.lognormal(0, 0.6, len(share))
    return w / w.sum()


def _companies(rng, n_jobs, occ_p):
    k = int(np.clip(n_jobs // 8, 8, 4000))
    size = rng.pareto(1.2, k) + 1
    codes = rng.choice(N_COMPANY_NAMES, k, replace=False)
    return SimpleNamespace(n=k, size_p=size / size.sum(), city=rng.choice(len(CITIES), k, p=CITY_P),
                           quality=rng.normal(0, 1, k), focus=rng.choice(len(occ_p), k, p=occ_p),
                           name=np.array([company_name(int(c)) for c in codes], dtype=object))


def _members(rng, tax, co, n, t0, t1, occ_p):
    ids, big = np.arange(n), np.iinfo(np.int64).max
    occ0 = rng.choice(len(occ_p), n, p=occ_p)
    late = rng.random(n) < 0.35  # join inside the window
    signup = np.where(late, rng.uniform(t0, t1 - DAY, n), rng.uniform(t0 - 730 * DAY, t0)).astype(np.int64)
    rate = np.minimum(0.3 * (1 + rng.pareto(1.5, n)), 25.0) * (rng.random(n) >= 0.08)  # exposures / week
    level0 = _level(rng, tax, occ0)
    years0 = np.clip(level0 * 4 + rng.gamma(2.0, 1.5, n) - 1, 0, 45).astype(np.int64)
    # employers: the current one usually hires the member's kind of occupation; slot 3 = a later move
    by_focus = np.argsort(co.focus, kind="stable")
    f_ptr = np.searchsorted(co.focus[by_focus], np.arange(len(occ_p) + 1))
    any_co = rng.choice(co.n, (n, 4), p=co.size_p)
    slots = np.full((n, 4), -1, np.int64)
    slots[:, 0] = np.where(rng.random(n) < 0.6, _pick_csr(rng, f_ptr, by_focus, occ0, any_co[:, 0]), any_co[:, 0])
    n_past = rng.integers(0, 3, n)
    slots[:, 1:3] = np.where(n_past[:, None] > np.arange(2), any_co[:, 1:3], -1)
    lo, hi = np.maximum(signup, t0) + 7 * DAY, t1 - 7 * DAY
    changed = (lo < hi) & (rng.random(n) < 0.3)
    tau = np.where(changed, lo + (rng.random(n) * np.maximum(hi - lo, 0)).astype(np.int64), big)
    kind = np.where(changed, rng.choice(4, n, p=[0.55, 0.2, 0.1, 0.15]), -1)  # promotion, move, new occ, refresh
    occ1 = np.where(kind == 2, _pick_csr(rng, tax.rel_ptr, tax.rel_idx, occ0, occ0), occ0)
    city0 = rng.choice(len(CITIES), n, p=CITY_P)
    slots[:, 3] = np.where(((kind == 0) & (rng.random(n) < 0.4)) | (kind == 2), any_co[:, 3], -1)
    for k in range(1, 4):  # an employer appears once
        slots[(slots[:, :k] == slots[:, k : k + 1]).any(axis=1), k] = -1
    since = np.full((n, 4), np.iinfo(np.int64).min)
    since[:, 3] = tau
    open0 = rng.random(n) < 0.35
    sk0 = _skills(rng, tax, ids, occ0, np.array([0.55, 0.25, 0.4]), 30, 0.6, 0.5)
    ch = ids[changed]
    sk1 = _skills(rng, tax, ch, occ1[ch], np.array([0.12, 0.1, 0.15]), 8, 0.6, 0.6, base=sk0,
                  boost=np.where(kind[ch] == 2, 4.0, 1.0))
    return SimpleNamespace(
        n=n, occ=(occ0, occ1), level=(level0, np.where(kind == 0, np.minimum(level0 + 1, 4), level0)),
        city=(city0, np.where(kind == 1, (city0 + rng.integers(1, len(CITIES), n)) % len(CITIES), city0)),
        years=(years0, years0 + np.maximum(tau - np.maximum(signup, t0), 0) // (365 * DAY)),
        open=(open0, open0 ^ (changed & (rng.random(n) < 0.3))), signup=signup, rate=rate, changed=changed,
        tau=tau, kind=kind, slots=slots, since=since, bias=rng.normal(0, 0.3, n),
        relocate=rng.random(n) < 0.15, title_mode=rng.choice(3, n, p=[0.6, 0.3, 0.1]),
        miss_loc=rng.random(n) < 0.04, miss_band=rng.random(n) < 0.06, skills=(sk0, sk1),
    )


def _jobs(rng, tax, co, n, t0, t1, occ_p):
    ids = np.arange(n)
    comp = rng.choice(co.n, n, p=co.size_p)
    focus = co.focus[comp]
    occ = np.where(rng.random(n) < 0.4, focus, _pick_csr(rng, tax.rel_ptr, tax.rel_idx, focus, focus))
    occ = np.where(rng.random(n) < 0.3, rng.choice(len(occ_p), n, p=occ_p), occ)
    emp = rng.choice(len(EMPLOYMENT), n, p=[0.74, 0.08, 0.1, 0.05, 0.03])
    level0 = np.where(emp == 4, 0, _level(rng, tax, occ))
    remote0 = rng.choice(3, n, p=[0.55, 0.3, 0.15])
    post = np.where(rng.random(n) < 0.1, rng.uniform(t0 - 30 * DAY, t0, n), rng.uniform(t0, t1 - DAY, n))
    life = rng.uniform(21, 75, n) * DAY  # then the posting goes stale
    closed = rng.random(n) < 0.35
    end = (post + np.where(closed, rng.uniform(0.3, 1.0, n), 1.0) * life).astype(np.int64)
    edit_t = (post + rng.uniform(0.1, 0.6, n) * (end - post)).astype(np.int64)
    edited = (rng.random(n) < 0.15) & (edit_t < t1)
    sk0 = _skills(rng, tax, ids, occ, np.array([0.5, 0.15, 0.45]), 20, 0.7, 0.6)
    sk1 = _skills(rng, tax, ids[edited], occ[edited], np.array([0.2, 0.2, 0.2]), 3, 0.7, 0.8, base=sk0)
    return SimpleNamespace(
        n=n, comp=comp, occ=occ, emp=emp, post=post.astype(np.int64), end=end, closed=closed & (end < t1),
        level=(level0, np.where(edited & (rng.random(n) < 0.3),
                                np.clip(level0 + rng.choice([-1, 1], n), 0, 4), level0)),
        remote=(remote0, np.where(edited & (rng.random(n) < 0.4), rng.choice(3, n, p=[0.3, 0.4, 0.3]), remote0)),
        city=np.where(rng.random(n) < 0.75, co.city[comp], rng.choice(len(CITIES), n, p=CITY_P)),
        edited=edited, edit_t=np.where(edited, edit_t, np.iinfo(np.int64).max),
        years=np.array([0, 2, 4, 7, 10])[level0], title_mode=rng.choice(3, n, p=[0.65, 0.27, 0.08]), skills=(sk0, sk1),
    )


def _skill_keys(n, sk, changed, n_skills):
    """Sorted keys (2 * entity + version) * n_skills + skill, and CSR row pointers over 2 * entity + version.

    Version 1 (after a profile change / job edit) holds the version-0 skills plus the added ones."""
    s0, s1 = sk
    base1 = changed[s0.e]
    keys = np.concatenate([(2 * s0.e) * n_skills + s0.s, (2 * s0.e[base1] + 1) * n_skills + s0.s[base1],
                           (2 * s1.e + 1) * n_skills + s1.s])
    keys.sort()
    return keys, np.searchsorted(keys // n_skills, np.arange(2 * n + 1))


def _pair_taste(keys, salt):
    """Stable N(0, 1) per (member, job) pair: splitmix64 of the pair key, then Box-Muller."""
    x = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    u1 = ((x >> np.uint64(32)).astype(np.float64) + 0.5) / 2**32
    u2 = ((x & np.uint64(0xFFFFFFFF)).astype(np.float64) + 0.5) / 2**32
    return np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)


def _at(pair, idx, version):
    """Per row, the value of `pair` (version 0, version 1) at that row's version."""
    return np.where(version, pair[1][idx], pair[0][idx])


def _utility(ctx, mi, ji, t):
    tax, co, m, j = ctx.tax, ctx.co, ctx.m, ctx.j
    vm, vj = (m.tau[mi] <= t).astype(np.int64), (j.edit_t[ji] <= t).astype(np.int64)
    # skill coverage: share of the job's skills (edges and text-only) the member has at time t
    jv = 2 * ji + vj
    cnt = ctx.j_ptr[jv + 1] - ctx.j_ptr[jv]
    pair = np.repeat(np.arange(len(mi)), cnt)
    pos = np.repeat(ctx.j_ptr[jv] - np.cumsum(cnt) + cnt, cnt) + np.arange(cnt.sum())
    q = (2 * mi + vm)[pair] * ctx.n_skills + ctx.j_keys[pos] % ctx.n_skills
    hit = ctx.m_keys[np.minimum(np.searchsorted(ctx.m_keys, q), len(ctx.m_keys) - 1)] == q
    cover = np.bincount(pair, hit, minlength=len(mi)) / np.maximum(cnt, 1)
    occ = tax.rel[_at(m.occ, mi, vm), j.occ[ji]]
    sen = SEN_FIT[np.clip(_at(j.level, ji, vj) - _at(m.level, mi, vm), -3, 3) + 3]
    reachable = (_at(m.city, mi, vm) == j.city[ji]) | (_at(j.remote, ji, vj) == 2)
    loc = np.where(reachable, 1.0, np.where(m.relocate[mi], 0.3, -0.5))
    c = j.comp[ji]
    slots = m.slots[mi]
    valid = (slots >= 0) & (m.since[mi] <= t[:, None])
    direct = (valid & (slots == c[:, None])).any(axis=1)
    # share of each employer's staff that applied to the job's company: size-free, so scale-stable
    share = np.where(valid, ctx.net[np.maximum(slots, 0), c[:, None]] / ctx.staff[np.maximum(slots, 0)], 0.0)
    colleague = 1.0 - np.exp(-4.0 * share.sum(axis=1))
    return (W_SKILL * cover + W_OCC * occ + W_SEN * sen + W_LOC * loc + W_DIRECT * direct
            + W_COLLEAGUE * colleague + W_QUALITY * co.quality[c]
            + W_TASTE * _pair_taste(mi * j.n + ji, ctx.salt))


def _simulate(rng, ctx, t0, t1, bar):
    m, j, tax = ctx.m, ctx.j, ctx.tax
    final = np.empty(0, np.int64)  # pairs already applied to or dismissed: not shown again
    out = []
    for ws in range(t0, t1, WEEK):
        we = min(ws + WEEK, t1)
        bar.update()
        frac = np.clip((we - np.maximum(ws, m.signup)) / WEEK, 0, 1)
        mi = np.repeat(np.arange(m.n), rng.poisson(m.rate * frac))
        open_ = np.flatnonzero((j.post < we) & (j.end > ws))
        if len(mi) == 0 or len(open_) == 0:
            continue
        v = m.tau[mi] <= (ws + we) // 2
        occ_m, city_m = _at(m.occ, mi, v), _at(m.city, mi, v)
        strategy = rng.choice(len(STRATEGY_P), len(mi), p=STRATEGY_P)
        ji = open_[rng.integers(0, len(open_), len(mi))]
        related = _pick_csr(rng, tax.rel_ptr, tax.rel_idx, occ_m, occ_m)
        targets = ((j.occ, occ_m), (j.occ, related), (tax.sub[j.occ], tax.sub[occ_m]), (j.city, city_m))
        for s, (keys, target) in enumerate(targets):
            sel = strategy == s
            ji[sel] = _pick_group(rng, open_, keys[open_], target[sel], ji[sel])
        lo = np.maximum(np.maximum(j.post[ji], m.signup[mi]), ws) + 1
        hi = np.minimum(j.end[ji], we)
        t = lo + (rng.random(len(mi)) * np.maximum(hi - lo, 0)).astype(np.int64)
        key = mi * j.n + ji
        first = np.sort(np.unique(key, return_index=True)[1])
        first = first[(lo[first] < hi[first]) & ~np.isin(key[first], final)]
        mi, ji, t, key = mi[first], ji[first], t[first], key[first]
        u = _utility(ctx, mi, ji, t)
        z = u + m.bias[mi] + rng.logistic(0, BEHAVIOUR_NOISE, len(mi))
        oc = np.select([z > T_APPLY, z > T_SAVE, z > T_VIEW], [3, 2, 1], 0)
        oc[(z < T_DISMISS) & (rng.random(len(mi)) < P_DISMISS)] = 4
        # colleagues' network: every employer of an applicant counts one application to the job's company
        app = oc == 3
        slots = m.slots[mi[app]]
        valid = (slots >= 0) & (m.since[mi[app]] <= t[app][:, None])
        np.add.at(ctx.net, (slots[valid], np.broadcast_to(j.comp[ji[app]][:, None], slots.shape)[valid]), 1.0)
        final = np.union1d(final, key[app | (oc == 4)])
        out.append((mi, ji, t, u, oc))
    if not out:
        return [np.empty(0, np.int64)] * 3 + [np.empty(0), np.empty(0, np.int64)]
    return [np.concatenate(x) for x in zip(*out)]


def check_text_length(text_length: object) -> None:
    """ConfigError unless text_length is one of TEXT_LENGTHS (the CLI checks before touching the database)."""
    if text_length not in TEXT_LENGTHS:
        raise ConfigError(f"star seed --synthetic: text_length={text_length!r} is not one of "
                          f"{', '.join(TEXT_LENGTHS)}; "
                          "pass --text-length long (real-like profiles and postings) or --text-length short")


def generate(*, members: int, jobs: int, seed: int = 0, start: str = "2025-01-01", months: int = 6,
             text_length: str = "long", progress: bool = False) -> SyntheticMarketplace:
    """Generate `members` members and `jobs` jobs interacting over `months` months from `start` (UTC).

    text_length: "long" (real-like profiles and postings) or "short" (the first 40..250-word texts); only the
    texts differ, the simulation is the same for a seed."""
    require_at_least("star seed --synthetic", 1, members=members, jobs=jobs, months=months)
    check_text_length(text_length)
    begin = pd.Timestamp(start)
    begin = begin.tz_localize("UTC") if begin.tzinfo is None else begin.tz_convert("UTC")
    check_size(members=members, jobs=jobs, months=months, start=begin)  # before allocating anything
    rng = np.random.default_rng(seed)
    t0, t1 = int(begin.timestamp()), int((begin + pd.DateOffset(months=months)).timestamp())
    n_weeks = -(-(t1 - t0) // WEEK)
    with tqdm(total=n_weeks + 4, desc="synthetic marketplace", disable=not progress) as bar:
        tax = _tax_arrays()
        occ_member_p, occ_job_p = _occ_weights(rng, tax), _occ_weights(rng, tax)  # supply and demand differ
        co = _companies(rng, jobs, occ_job_p)
        m = _members(rng, tax, co, members, t0, t1, occ_member_p)
        j = _jobs(rng, tax, co, jobs, t0, t1, occ_job_p)
        m_keys, _ = _skill_keys(m.n, m.skills, m.changed, len(tax.skill_id))
        j_keys, j_ptr = _skill_keys(j.n, j.skills, j.edited, len(tax.skill_id))
        ctx = SimpleNamespace(tax=tax, co=co, m=m, j=j, m_keys=m_keys, j_keys=j_keys, j_ptr=j_ptr,
                              n_skills=len(tax.skill_id), net=np.zeros((co.n, co.n), np.float32),
                              staff=np.maximum(np.bincount(m.slots[m.slots >= 0], minlength=co.n), 1),
                              salt=int(rng.integers(0, 2**63)), t1=t1,
                              company_id=np.array([f"c{c:04d}" for c in range(co.n)], dtype=object))
        bar.update()
        sim = _simulate(rng, ctx, t0, t1, bar)
        texts = write_texts(ctx, seed=int(rng.integers(0, 2**63)), text_length=text_length)
        texts["valid_from"] = ts(texts["valid_from"])
        bar.update()
        edges = edge_frame(ctx, sim)
        bar.update()
        mi, ji, t, u, oc = sim
        order = np.lexsort((ji, mi, t))
        truth = pd.DataFrame({"member_id": mi[order] + 1, "job_id": ji[order] + 1, "event_timestamp": ts(t[order]),
                              "utility": u[order].astype(np.float64), "outcome": OUTCOMES[oc[order]]})
        market = SyntheticMarketplace(members=member_frame(ctx), jobs=job_frame(ctx), texts=texts, edges=edges,
                                      nodes=node_frame(ctx, edges), truth=truth)
        bar.update()
    return market
