"""Derive the compact taxonomy subset shipped in this folder from the raw ESCO / O*NET dumps.

Developer script, run by hand when the subset should change (the outputs are committed)::

    python -m star.data.taxonomy.build --shared /work/shared/data

    esco/*.zip ──► occupations (ISCO unit groups, labels, descriptions, skills)
                      │  title matching (preferred + alt labels vs O*NET alternate / reported titles)
    onet/*.txt ──► job zone, technology skills, core tasks, related occupations (SOC ─► ESCO)
                      ▼
    occupations / alt_titles / skills / occupation_skills / related_occupations / tasks  (.csv.gz)

Everything is ordered by stable keys (codes, labels, sha1 of URIs), never by hash() or set order,
so a rerun on the same inputs writes byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import re
import zipfile
from pathlib import Path

import pandas as pd

OUT_DIR = Path(__file__).resolve().parent

# How many occupations to keep per ISCO major group: roughly the shape of a general job
# marketplace, professionals and technicians over-represented, armed forces left out.
MAJOR_QUOTAS = {"1": 55, "2": 115, "3": 85, "4": 35, "5": 50, "6": 20, "7": 50, "8": 40, "9": 30}
PER_UNIT_GROUP = 3  # occupations per ISCO unit group, so "same ISCO group" is a real neighbourhood
MAX_OPTIONAL_SKILLS = 15
MAX_SKILL_ALT_LABELS = 4
MAX_ESCO_ALT_TITLES = 8
MAX_ONET_ALT_TITLES = 4
MAX_TECH_SKILLS = 8
MAX_TECH_POPULARITY = 200  # in how many SOCs a tool may be listed before it counts as ubiquitous
MAX_TASKS = 6
MAX_RELATED = 12
MAX_DESCRIPTION_CHARS = 420

# ISCO-08 major group -> O*NET-like job zone, used when no O*NET occupation matched.
ISCO_JOB_ZONE = {"1": 4, "2": 4, "3": 3, "4": 2, "5": 2, "6": 2, "7": 2, "8": 2, "9": 1}


def _stable_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _read_zip_csv(zip_path: Path, member: str) -> pd.DataFrame:
    with zipfile.ZipFile(zip_path) as zf, zf.open(member) as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False)


def _read_onet(onet_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(onet_dir / f"{name}.txt", sep="\t", dtype=str, keep_default_na=False)


def _split_labels(value: str) -> list[str]:
    # a few ESCO labels carry spreadsheet residue such as "+K64"; whitespace runs are also residue
    labels = (re.sub(r"\+K\d+$", "", " ".join(v.split())) for v in value.split("\n"))
    return [v for v in labels if v]


def _norm_title(title: str) -> str:
    title = re.sub(r"\(.*?\)", " ", title.lower())
    return re.sub(r"[^a-z0-9]+", " ", title).strip()


def _short_id(uri: str) -> str:
    return uri.rsplit("/", 1)[1][:8]


def _first_sentences(text: str, limit: int = MAX_DESCRIPTION_CHARS) -> str:
    text = " ".join(text.split())
    sentences = re.split(r"(?<=[.!?])\s+", text)
    out = sentences[0]
    for sentence in sentences[1:]:
        if len(out) + 1 + len(sentence) > limit:
            break
        out = f"{out} {sentence}"
    return out


def _slug(text: str) -> str:
    text = text.lower().replace("c++", "cplusplus").replace("c#", "csharp").replace("f#", "fsharp")
    text = text.replace("+", " plus ").replace("#", " sharp ").replace(".net", " dotnet ")
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def _onet_title_index(onet_dir: Path) -> dict[str, list[str]]:
    """Normalised O*NET title -> SOC codes, from occupation titles, alternate and reported titles."""
    occ = _read_onet(onet_dir, "Occupation Data")
    alt = _read_onet(onet_dir, "Alternate Titles")
    rep = _read_onet(onet_dir, "Sample of Reported Titles")
    pairs = pd.concat(
        [
            pd.DataFrame({"soc": occ["O*NET-SOC Code"], "title": occ["Title"].str.replace(r"s$", "", regex=True)}),
            pd.DataFrame({"soc": alt["O*NET-SOC Code"], "title": alt["Alternate Title"]}),
            pd.DataFrame({"soc": rep["O*NET-SOC Code"], "title": rep["Reported Job Title"]}),
        ]
    )
    pairs["norm"] = pairs["title"].map(_norm_title)
    pairs = pairs[pairs["norm"] != ""].drop_duplicates(["norm", "soc"]).sort_values(["norm", "soc"])
    return pairs.groupby("norm")["soc"].agg(list).to_dict()


_STOPWORDS = {"and", "the", "for", "other", "worker", "workers", "assistant"}
MIN_ALT_MATCH_OVERLAP = 0.6  # share of the ESCO label's word stems that must occur in the O*NET occupation text


def _stems(text: str) -> set[str]:
    return {w[:5] for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 3 and w not in _STOPWORDS}


def _onet_vocabulary(onet_dir: Path) -> dict[str, set[str]]:
    """SOC -> word stems of its title, description and alternate titles (to vet alt-label matches)."""
    occ = _read_onet(onet_dir, "Occupation Data")
    alt = _read_onet(onet_dir, "Alternate Titles")
    text = (occ["Title"] + " " + occ["Description"]).groupby(occ["O*NET-SOC Code"]).agg(" ".join)
    text = pd.concat([text, alt.groupby("O*NET-SOC Code")["Alternate Title"].agg(" ".join)])
    return {soc: _stems(t) for soc, t in text.groupby(level=0).agg(" ".join).items()}


def _match_soc(occupations: pd.DataFrame, index: dict[str, list[str]], vocab: dict[str, set[str]]) -> pd.DataFrame:
    """ESCO occupation -> one O*NET SOC code (or ""), and how it matched ("title", "alt_label", "").

    An exact preferred-label match wins; otherwise alt labels vote, and the winner is kept only if
    most words of the ESCO preferred label occur in that O*NET occupation's text (drops e.g.
    "government minister" -> Clergy, matched through the alt title "minister").
    """
    socs, how = [], []
    for pref, alts in zip(occupations["preferredLabel"], occupations["altLabels"]):
        exact = index.get(_norm_title(pref))
        if exact:
            socs.append(exact[0])
            how.append("title")
            continue
        votes: dict[str, int] = {}
        for alt in _split_labels(alts):
            for soc in index.get(_norm_title(alt), []):
                votes[soc] = votes.get(soc, 0) + 1
        best = min(votes, key=lambda s: (-votes[s], s)) if votes else ""
        words = _stems(pref)
        if best and len(words & vocab.get(best, set())) >= MIN_ALT_MATCH_OVERLAP * max(1, len(words)):
            socs.append(best)
            how.append("alt_label")
        else:
            socs.append("")
            how.append("")
    return pd.DataFrame({"soc": socs, "match": how}, index=occupations.index)


def _select(occ: pd.DataFrame) -> pd.DataFrame:
    occ = occ.copy()
    occ["major"] = occ["iscoGroup"].str[0]
    occ["score"] = (occ["soc"] != "").astype(int) * 2 + (occ["preferredLabel"].str.count(" ") <= 2).astype(int)
    occ["tie"] = occ["conceptUri"].map(_stable_key)
    occ = occ.sort_values(["iscoGroup", "score", "tie"], ascending=[True, False, True])
    occ = occ.groupby("iscoGroup", sort=False).head(PER_UNIT_GROUP)
    groups = occ.groupby("iscoGroup").agg(major=("major", "first"), best=("score", "max")).reset_index()
    groups["tie"] = groups["iscoGroup"].map(_stable_key)
    keep = []
    for major, quota in MAJOR_QUOTAS.items():
        ordered = groups[groups["major"] == major].sort_values(["best", "tie"], ascending=[False, True])
        taken = 0
        for code in ordered["iscoGroup"]:
            block = occ[occ["iscoGroup"] == code].head(quota - taken)
            keep.append(block)
            taken += len(block)
            if taken >= quota:
                break
    return pd.concat(keep).drop(columns=["score", "tie"])


def build(shared: Path, out_dir: Path = OUT_DIR) -> dict[str, pd.DataFrame]:
    esco_en = shared / "esco" / "esco-v1.1.1-classification-en-csv.zip"
    esco_rel = shared / "esco" / "esco-v1.1.1-relations-csv.zip"
    onet_dir = shared / "onet"

    occ = _read_zip_csv(esco_en, "occupations_en.csv")
    occ = occ[occ["status"] == "released"]
    occ = occ[occ["iscoGroup"].str.len() == 4]
    isco = _read_zip_csv(esco_en, "ISCOGroups_en.csv").set_index("code")["preferredLabel"]
    skills_raw = _read_zip_csv(esco_en, "skills_en.csv").set_index("conceptUri")
    occ_skill = _read_zip_csv(esco_rel, "occupationSkillRelations.csv")

    occ[["soc", "match"]] = _match_soc(occ, _onet_title_index(onet_dir), _onet_vocabulary(onet_dir))
    occ = _select(occ)
    occ["occ_id"] = "esco:occ:" + occ["conceptUri"].map(_short_id)
    assert occ["occ_id"].is_unique, "8-hex ESCO occupation ids collide; lengthen _short_id"

    zones = _read_onet(onet_dir, "Job Zones").set_index("O*NET-SOC Code")["Job Zone"].astype(int)
    zone = occ["soc"].map(zones)
    occupations = pd.DataFrame(
        {
            "occ_id": occ["occ_id"],
            "label": occ["preferredLabel"].map(lambda v: " ".join(v.split())),
            "isco_group": occ["iscoGroup"],
            "isco_group_label": occ["iscoGroup"].map(isco),
            "isco_major": occ["major"],
            "isco_major_label": occ["major"].map(isco),
            "job_zone": zone.fillna(occ["major"].map(ISCO_JOB_ZONE)).astype(int),
            "job_zone_source": zone.notna().map({True: "onet", False: "isco"}),
            "onet_soc": occ["soc"],
            "onet_match": occ["match"],
            "description": occ["description"].map(_first_sentences),
            "esco_uri": occ["conceptUri"],
        }
    ).sort_values("occ_id", ignore_index=True)
    uri_to_occ = dict(zip(occ["conceptUri"], occ["occ_id"]))

    # alternative titles: ESCO alt labels, then O*NET reported titles of the matched SOC
    alt_rows = []
    for uri, pref, alts in zip(occ["conceptUri"], occ["preferredLabel"], occ["altLabels"]):
        seen = {pref.lower()}
        picked = []
        for alt in sorted(_split_labels(alts), key=lambda a: (len(a), a)):
            if alt.lower() not in seen and "/" not in alt:
                seen.add(alt.lower())
                picked.append(alt)
        alt_rows += [(uri_to_occ[uri], a, "esco") for a in picked[:MAX_ESCO_ALT_TITLES]]
    reported = _read_onet(onet_dir, "Sample of Reported Titles")
    reported = reported.sort_values(["O*NET-SOC Code", "Shown in My Next Move", "Reported Job Title"],
                                    ascending=[True, False, True])
    rep_by_soc = reported.groupby("O*NET-SOC Code")["Reported Job Title"].agg(list).to_dict()
    for occ_id, soc, match in zip(occ["occ_id"], occ["soc"], occ["match"]):
        if match != "title":  # a SOC reached through alt labels is often broader than the occupation
            continue
        alt_rows += [(occ_id, t, "onet") for t in rep_by_soc.get(soc, [])[:MAX_ONET_ALT_TITLES]]
    alt_titles = (
        pd.DataFrame(alt_rows, columns=["occ_id", "title", "source"])
        .drop_duplicates(["occ_id", "title"])
        .sort_values(["occ_id", "source", "title"], ignore_index=True)
    )

    # ESCO skills: all essential, a capped number of optional ones
    rel = occ_skill[occ_skill["occupationUri"].isin(uri_to_occ)].copy()
    rel["occ_id"] = rel["occupationUri"].map(uri_to_occ)
    rel["tie"] = (rel["occupationUri"] + rel["skillUri"]).map(_stable_key)
    rel = rel.sort_values(["occ_id", "relationType", "tie"])
    rel = pd.concat(
        [rel[rel["relationType"] == "essential"],
         rel[rel["relationType"] == "optional"].groupby("occ_id").head(MAX_OPTIONAL_SKILLS)]
    )
    rel["skill_id"] = "esco:skill:" + rel["skillUri"].map(_short_id)
    esco_skill_uris = sorted(set(rel["skillUri"]))
    sk = skills_raw.loc[esco_skill_uris]
    alt_labels = []
    for pref, alts in zip(sk["preferredLabel"], sk["altLabels"]):
        cands = [a for a in _split_labels(alts) if a.lower() != pref.lower()]
        alt_labels.append("|".join(sorted(cands, key=lambda a: (len(a), a))[:MAX_SKILL_ALT_LABELS]))
    esco_skills = pd.DataFrame(
        {
            "skill_id": ["esco:skill:" + _short_id(u) for u in esco_skill_uris],
            "label": sk["preferredLabel"].map(lambda v: " ".join(v.split())).to_numpy(),
            "alt_labels": alt_labels,
            "skill_type": sk["skillType"].replace({"skill/competence": "skill", "": "skill"}).to_numpy(),
            "reuse_level": sk["reuseLevel"].to_numpy(),
            "source": "esco",
        }
    )
    assert esco_skills["skill_id"].is_unique, "8-hex ESCO skill ids collide; lengthen _short_id"

    # O*NET technology skills of the matched SOC (hot / in-demand first)
    tech = _read_onet(onet_dir, "Technology Skills")
    tech = tech.rename(columns={"O*NET-SOC Code": "soc"})
    # Office / e-mail / browser tools are listed for most SOCs and would make every pair of
    # occupations look alike; one-off vendor products are noise. Keep the recognisable middle.
    tech["popularity"] = tech.groupby("Example")["soc"].transform("nunique")
    tech = tech[tech["popularity"].between(2, MAX_TECH_POPULARITY)]
    tech["hot"] = (tech["Hot Technology"] == "Y").astype(int)
    tech = tech.sort_values(["soc", "hot", "popularity", "Example"], ascending=[True, False, False, True])
    tech = tech.groupby("soc").head(MAX_TECH_SKILLS)
    soc_occ = occ.loc[occ["soc"] != "", ["occ_id", "soc"]]
    tech = soc_occ.merge(tech, on="soc")
    tech["skill_id"] = "onet:tech:" + tech["Example"].map(_slug)
    tech_skills = (
        tech.drop_duplicates("skill_id")
        .assign(label=lambda d: d["Example"], alt_labels="", skill_type="technology",
                reuse_level=lambda d: d["Commodity Title"], source="onet")
        [["skill_id", "label", "alt_labels", "skill_type", "reuse_level", "source"]]
    )
    skills = pd.concat([esco_skills, tech_skills]).sort_values("skill_id", ignore_index=True)
    assert skills["skill_id"].is_unique

    occupation_skills = pd.concat(
        [
            rel[["occ_id", "skill_id", "relationType"]].rename(columns={"relationType": "relation"}),
            tech[["occ_id", "skill_id"]].assign(relation="technology"),
        ]
    ).drop_duplicates(["occ_id", "skill_id"]).sort_values(["occ_id", "relation", "skill_id"], ignore_index=True)

    # related occupations: O*NET related SOCs mapped back through the title match, plus same ISCO unit group
    related_onet = _read_onet(onet_dir, "Related Occupations")
    related_onet = related_onet.rename(columns={"O*NET-SOC Code": "soc_a", "Related O*NET-SOC Code": "soc_b"})
    related_onet["index"] = related_onet["Index"].astype(int)
    same_soc = soc_occ.rename(columns={"soc": "soc_a"}).assign(soc_b=lambda d: d["soc_a"], index=0)
    pairs = pd.concat([related_onet[["soc_a", "soc_b", "index"]], same_soc[["soc_a", "soc_b", "index"]]])
    pairs = (
        pairs.merge(soc_occ.rename(columns={"soc": "soc_a", "occ_id": "occ_id"}), on="soc_a")
        .merge(soc_occ.rename(columns={"soc": "soc_b", "occ_id": "related_occ_id"}), on="soc_b")
    )
    onet_rel = pairs.assign(source="onet")[["occ_id", "related_occ_id", "source", "index"]]
    unit = occupations[["occ_id", "isco_group"]]
    isco_rel = unit.merge(unit.rename(columns={"occ_id": "related_occ_id"}), on="isco_group")
    isco_rel = isco_rel.assign(source="isco_unit_group", index=50)[["occ_id", "related_occ_id", "source", "index"]]
    related = pd.concat([onet_rel, isco_rel])
    related = related[related["occ_id"] != related["related_occ_id"]]
    related = related.sort_values(["occ_id", "index", "related_occ_id"]).drop_duplicates(["occ_id", "related_occ_id"])
    related = related.groupby("occ_id").head(MAX_RELATED).reset_index(drop=True)
    related = related.rename(columns={"index": "rank"})
    related["rank"] = related.groupby("occ_id").cumcount() + 1

    # a few short core O*NET tasks per matched SOC (imperative sentences, used in text templates)
    tasks = _read_onet(onet_dir, "Task Statements").rename(columns={"O*NET-SOC Code": "soc"})
    tasks = tasks[(tasks["Task Type"] == "Core") & (tasks["Task"].str.len() <= 160)]
    tasks = tasks.assign(task_id=tasks["Task ID"].astype(int)).sort_values(["soc", "task_id"])
    tasks = tasks.groupby("soc").head(MAX_TASKS)
    tasks = soc_occ.merge(tasks, on="soc")[["occ_id", "task_id", "Task"]].rename(columns={"Task": "task"})
    tasks = tasks.sort_values(["occ_id", "task_id"], ignore_index=True)

    frames = {
        "occupations": occupations,
        "alt_titles": alt_titles,
        "skills": skills,
        "occupation_skills": occupation_skills,
        "related_occupations": related,
        "tasks": tasks,
    }
    for name, frame in frames.items():
        _write_csv_gz(frame, out_dir / f"{name}.csv.gz")
    return frames


def _write_csv_gz(frame: pd.DataFrame, path: Path) -> None:
    # mtime=0 and no file name in the gzip header: reruns are byte-identical
    data = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    path.write_bytes(buf.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, required=True, help="folder holding esco/ and onet/")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where to write the .csv.gz files")
    args = parser.parse_args(argv)
    frames = build(args.shared, args.out)
    for name, frame in frames.items():
        size = (args.out / f"{name}.csv.gz").stat().st_size
        print(f"{name:22s} {len(frame):7d} rows  {size / 1024:8.1f} KiB")


if __name__ == "__main__":
    main()
