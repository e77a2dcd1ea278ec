"""Drafting the synthetic marketplace's texts from the generator's state (star.data.synthetic), then writing them
with a Writer (short texts, star.data.synthetic_text) or a LongWriter (long texts, star.data.synthetic_long).

    generator state (occupations, levels, cities, skills with and without an edge, changes)
        --MemberDraft / JobDraft per text snapshot--> Writer.member / Writer.job --> texts frame
    edges --node_frame--> every attribute node they reference, with its human label
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pandas as pd

from star.data.synthetic_long import LongWriter
from star.data.synthetic_text import CITIES, EMPLOYMENT_TEXT, REMOTE_TEXT, JobDraft, MemberDraft, SkillMention, Writer
from star.data.taxonomy import load_taxonomy

_MODES = ("canonical", "synonym", "freeform")
_EMP, _REMOTE = tuple(EMPLOYMENT_TEXT), tuple(REMOTE_TEXT)  # same order as synthetic_frames.EMPLOYMENT / REMOTE
_MEMBER_SKILLS, _JOB_SKILLS = 12, 14
_LONG_MEMBER_SKILLS, _LONG_JOB_SKILLS = 30, 20  # long texts have room for every skill the text mentions


@functools.lru_cache(maxsize=1)
def _tables() -> SimpleNamespace:
    tax = load_taxonomy()
    occ_ids = tax.occupations["occ_id"].tolist()
    alt = tax.alt_titles.groupby("occ_id")["title"].agg(tuple)
    row = {o: k for k, o in enumerate(occ_ids)}
    rel = tax.related_occupations.sort_values(["occ_id", "rank"], kind="stable")
    related = rel.groupby("occ_id")["related_occ_id"].agg(lambda r: tuple(row[o] for o in r if o in row))
    tasks = tax.tasks.groupby("occ_id")["task"].agg(tuple)
    sk = tax.skills
    return SimpleNamespace(
        label=tax.occupations["label"].tolist(), description=tax.occupations["description"].tolist(),
        alt=[alt.get(o, ()) for o in occ_ids], tasks=[tasks.get(o, ()) for o in occ_ids],
        related=[related.get(o, ()) for o in occ_ids],
        skills=[SkillMention(labels=(lab, *[a for a in alts.split("|") if a]), kind=kind)
                for lab, alts, kind in zip(sk["label"], sk["alt_labels"], sk["skill_type"])],
    )


def _year(epoch_s: int) -> int:
    return 1970 + int(epoch_s // 31_556_952)  # mean Gregorian year; a position's year, not a timestamp


def _mention_lists(rows, n: int) -> list[list[int]]:
    """Per entity, the skills its text mentions: those without an edge first (they must make it in)."""
    e, s, struct = rows.e[rows.text], rows.s[rows.text], rows.struct[rows.text]
    order = np.lexsort((struct, e))
    ptr = np.searchsorted(e[order], np.arange(n + 1))
    s = s[order].tolist()
    return [s[a:b] for a, b in zip(ptr[:-1].tolist(), ptr[1:].tolist())]


TEXT_LENGTHS = ("long", "short")


def write_texts(ctx: SimpleNamespace, seed: int, text_length: str = "long") -> pd.DataFrame:
    """Member profile and job posting snapshots: (entity, entity_id, valid_from [epoch s], text).

    text_length "short": the first texts (40..250 words); "long": real-like lengths (star.data.synthetic_long)."""
    tb, m, j = _tables(), ctx.m, ctx.j
    long = text_length == "long"
    w = LongWriter(seed, tb) if long else Writer(seed)
    n_member, n_job = (_LONG_MEMBER_SKILLS, _LONG_JOB_SKILLS) if long else (_MEMBER_SKILLS, _JOB_SKILLS)
    name = ctx.co.name.tolist()
    rows: list[tuple[str, int, int, str]] = []
    base, added = _mention_lists(m.skills[0], m.n), _mention_lists(m.skills[1], m.n)
    occ, level, city, years, opn = ([a.tolist(), b.tolist()] for a, b in (m.occ, m.level, m.city, m.years, m.open))
    slots, kind = m.slots.tolist(), m.kind.tolist()
    for i, (mode, signup, tau) in enumerate(zip(m.title_mode.tolist(), m.signup.tolist(), m.tau.tolist())):
        for v, when in ((0, signup), (1, tau))[: 1 + bool(m.changed[i])]:
            o, sl = occ[v][i], slots[i]
            now = sl[3] if v == 1 and sl[3] >= 0 else sl[0]
            past = tuple(name[c] for c in (sl[:3] if now == sl[3] else sl[1:3]) if c >= 0)
            skills = ((added[i] if v else []) + base[i])[:n_member]
            draft = MemberDraft(
                title=w.title(tb.label[o], tb.alt[o], _MODES[mode]), level=level[v][i], years=years[v][i],
                city=CITIES[city[v][i]], company=name[now], past_companies=past, description=tb.description[o],
                tasks=tb.tasks[o], skills=tuple(tb.skills[s] for s in w.shuffled(skills)), open_to_work=opn[v][i],
                change_note=("promotion", "relocation", "new_occupation", "refresh")[kind[i]] if v else "",
                occ=o, year=_year(when),
            )
            rows.append(("member", i + 1, when, w.member(draft)))
    base, added = _mention_lists(j.skills[0], j.n), _mention_lists(j.skills[1], j.n)
    struct = set((j.skills[0].e[j.skills[0].struct] * len(tb.skills) + j.skills[0].s[j.skills[0].struct]).tolist())
    level = [a.tolist() for a in j.level]
    job_rows = zip(j.occ.tolist(), j.title_mode.tolist(), j.post.tolist(), j.edit_t.tolist())
    for i, (o, mode, post, edit_t) in enumerate(job_rows):
        for v, when in ((0, post), (1, edit_t))[: 1 + bool(j.edited[i])]:
            skills = ((added[i] if v else []) + base[i])[:n_job]
            n_struct = sum(i * len(tb.skills) + s in struct for s in skills)
            posting = JobDraft(
                title=w.title(tb.label[o], tb.alt[o], _MODES[mode]), level=level[v][i], years=int(j.years[i]),
                city=CITIES[int(j.city[i])], company=name[int(j.comp[i])], description=tb.description[o],
                tasks=tuple(w.shuffled(tb.tasks[o])), skills=tuple(tb.skills[s] for s in skills),
                n_required=max(n_struct, (len(skills) + n_struct) // 2), employment_type=_EMP[int(j.emp[i])],
                remote=_REMOTE[int(j.remote[v][i])], edited=bool(v),
            )
            rows.append(("job", i + 1, when, w.job(posting)))
    out = pd.DataFrame(rows, columns=["entity", "entity_id", "valid_from", "text"])
    return out.astype({"entity_id": np.int64, "valid_from": np.int64})


def node_frame(ctx: SimpleNamespace, edges: pd.DataFrame) -> pd.DataFrame:
    """Every attribute node the edges reference, with its human label."""
    tax = load_taxonomy()
    labels = {"skill": dict(zip(tax.skills["skill_id"], tax.skills["label"])),
              "title": dict(zip(tax.occupations["occ_id"], tax.occupations["label"])),
              "company": dict(zip(ctx.company_id, ctx.co.name))}
    used = edges.loc[edges["dst_type"] != "job", ["dst_type", "dst_id"]].drop_duplicates()
    nodes = used.rename(columns={"dst_type": "node_type", "dst_id": "node_id"}).sort_values(["node_type", "node_id"])
    nodes["label"] = [labels[t][i] for t, i in zip(nodes["node_type"], nodes["node_id"])]
    return nodes.reset_index(drop=True)

