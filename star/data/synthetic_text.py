"""Text writing for the synthetic marketplace: member profiles and job postings.

The texts deliberately carry signal that the structured rows and edges miss (STAR paper, Table 1):
skills that have no edge, synonyms (alt labels) instead of preferred labels, ambiguous seniority
wording ("Managing Director", "Staff", "III") and free-form titles with no taxonomy match.

Only `random.Random.random()` is used for choices: Python guarantees its sequence across versions,
unlike `choice`/`shuffle`, so a seed gives the same texts everywhere.

    Writer (short texts) <- LongWriter (star.data.synthetic_long, long texts) <- write_texts
    (star.data.synthetic_drafts: drafts from the generator's state, written by either)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

MIN_WORDS, MAX_WORDS = 40, 250

CITIES = (
    "London", "Berlin", "Paris", "Madrid", "Amsterdam", "Warsaw", "Milan", "Dublin", "Stockholm",
    "Munich", "Barcelona", "Vienna", "Prague", "Lisbon", "Brussels", "Copenhagen", "Manchester",
    "Lyon", "Rotterdam", "Helsinki", "New York", "Chicago", "Toronto", "Austin",
)
# how people write a city when a form field is not forcing them to
CITY_VARIANTS = {"London": "Greater London", "New York": "NYC", "Munich": "München", "Milan": "Milano",
                 "Prague": "Praha", "Lisbon": "Lisboa", "Warsaw": "Warszawa", "Vienna": "Wien"}

SENIORITY_TITLE = (
    ("Junior {t}", "Trainee {t}", "Graduate {t}", "{t} apprentice", "Entry-level {t}"),
    ("{t}", "{t}", "{t} II", "Associate {t}"),
    ("Senior {t}", "Sr. {t}", "{t} III", "Experienced {t}"),
    ("Lead {t}", "Principal {t}", "{t} team lead", "Staff {t}"),
    ("Head of {t}s", "Managing Director, {t}", "VP {t}", "{t} (Director)"),
)
QUIRKY = ("Ninja", "Rockstar", "Wizard", "Guru", "Hero", "Evangelist", "Whisperer", "Champion",
          "Magician", "Jedi", "Alchemist", "Superstar")
FREEFORM = ("Ninja Data Wrangler", "Chief Happiness Officer", "Growth Hacker", "Jack of All Trades",
            "Head of Making Things Happen", "Problem Solver", "Customer Hero", "Swiss Army Knife",
            "Chief Everything Officer", "Get-Stuff-Done Specialist", "Vibe Curator", "Dream Builder")
EMPLOYMENT_TEXT = {"full_time": "full-time", "part_time": "part-time", "contract": "fixed-term contract",
                   "temporary": "temporary", "internship": "internship"}
REMOTE_TEXT = {"onsite": ("on site", "office-based", "in the office five days a week"),
               "hybrid": ("hybrid", "two days a week in the office", "flexible between home and office"),
               "remote": ("fully remote", "remote-first", "work from anywhere in the time zone")}
ORG_WORDS = ("company", "scale-up", "group", "family business", "employer", "organisation", "start-up")
ORG_ADJ = ("fast-growing", "well-established", "award-winning", "international", "friendly", "mission-driven")


@dataclass(frozen=True)
class SkillMention:
    labels: tuple[str, ...]  # preferred label first, then alt labels (synonyms)
    kind: str  # skill | knowledge | technology


@dataclass(frozen=True)
class MemberDraft:
    title: str  # already rendered (canonical, synonym or free-form), without seniority
    level: int  # 0..4
    years: int
    city: str
    company: str
    past_companies: tuple[str, ...]
    description: str
    tasks: tuple[str, ...]
    skills: tuple[SkillMention, ...]
    open_to_work: bool
    change_note: str  # "" or e.g. "promotion", "relocation", "new_occupation", "refresh"
    occ: int = -1  # occupation row in the taxonomy tables (long texts pick past positions' occupations from it)
    year: int = 2025  # calendar year of the snapshot (long texts date the positions)


@dataclass(frozen=True)
class JobDraft:
    title: str
    level: int
    years: int
    city: str
    company: str
    description: str
    tasks: tuple[str, ...]
    skills: tuple[SkillMention, ...]  # required first
    n_required: int
    employment_type: str
    remote: str
    edited: bool


class Writer:
    """Deterministic text writer driven by one `random.Random` stream."""

    def __init__(self, seed: int) -> None:
        self._rand = random.Random(seed).random

    # -- choice helpers, built on random() only -------------------------------------------------
    def pick(self, items: Sequence[str]) -> str:
        return items[int(self._rand() * len(items))]

    def chance(self, p: float) -> bool:
        return self._rand() < p

    def shuffled(self, items: Sequence) -> list:
        out = list(items)
        for i in range(len(out) - 1, 0, -1):
            j = int(self._rand() * (i + 1))
            out[i], out[j] = out[j], out[i]
        return out

    # -- pieces ---------------------------------------------------------------------------------
    def title(self, label: str, alt_titles: Sequence[str], mode: str) -> str:
        """mode: canonical | synonym | freeform."""
        if mode == "synonym" and alt_titles:
            return self.pick(alt_titles)
        if mode == "freeform":
            head = label.split()[-1].capitalize()
            first = label.split()[0].capitalize()
            return self.pick((f"{self.pick(QUIRKY)} {head}", f"{first} {self.pick(QUIRKY)}", self.pick(FREEFORM)))
        return label

    def with_level(self, title: str, level: int) -> str:
        return _cap(self.pick(SENIORITY_TITLE[level]).format(t=title))

    def skill_label(self, skill: SkillMention) -> str:
        if len(skill.labels) > 1 and self.chance(0.4):
            return self.pick(skill.labels[1:])
        return skill.labels[0]

    def city(self, city: str) -> str:
        return CITY_VARIANTS.get(city, city) if self.chance(0.3) else city

    # -- member profile -------------------------------------------------------------------------
    def member(self, d: MemberDraft) -> str:
        title = self.with_level(d.title, d.level)
        city = self.city(d.city)
        labels = [self.skill_label(s) for s in d.skills]
        head = self.pick((f"{title} at {d.company}", f"{title} | {city}", f"{title} · {d.company} · {city}",
                          f"{title} with {_years(d.years)} of experience"))
        intro = self.pick((
            f"I am {_article(title)} {title.lower()} based in {city} with {_years(d.years)} in the field.",
            f"{_years(d.years)} of experience, currently at {d.company} in {city}.",
            f"Currently working at {d.company} as {title}.",
            f"Based in {city}. I have spent {_years(d.years)} working as {_article(d.title)} {d.title}.",
        ))
        body = [intro]
        if d.change_note:
            body.append(self._change_sentence(d, title, city))
        if d.tasks and self.chance(0.7):
            for task in self.shuffled(d.tasks)[: 1 + int(self._rand() * 3)]:
                body.append(self.pick(("Day to day I ", "I ", "In my current role I ")) + _lower_first(task))
        if d.description and self.chance(0.5):
            body.append(self.pick(("What the job is about: ", "In short: ", "")) + d.description)
        body += self._skill_sentences(labels, d.skills)
        if d.past_companies:
            body.append(self.pick(("Previously at ", "Before that I worked for ", "Past employers: "))
                        + _join(d.past_companies) + ".")
        if d.open_to_work:
            body.append(self.pick((f"Open to new opportunities in {city} or remote.",
                                   "Actively looking for my next challenge.",
                                   "Open to work - feel free to reach out.")))
        elif self.chance(0.3):
            body.append("Not actively looking, but happy to connect.")
        return _fit([head] + body[:1] + self.shuffled(body[1:]), filler=d.description)

    def _change_sentence(self, d: MemberDraft, title: str, city: str) -> str:
        return {
            "promotion": self.pick((f"Recently promoted to {title}.", f"Excited to have stepped up as {title}!")),
            "relocation": self.pick((f"Just relocated to {city}.", f"New chapter: moved to {city} this year.")),
            "new_occupation": f"After a career change I now work as {_article(d.title)} {d.title}.",
        }.get(d.change_note, "Updated my profile with a few new skills.")

    def _skill_sentences(self, labels: list[str], skills: Sequence[SkillMention]) -> list[str]:
        tech = [lab for lab, s in zip(labels, skills) if s.kind == "technology"]
        know = [lab for lab, s in zip(labels, skills) if s.kind == "knowledge"]
        rest = [lab for lab, s in zip(labels, skills) if s.kind == "skill"]
        out = []
        if rest:
            out.append(self.pick(("Skills: ", "Core skills: ", "What I bring: ", "I am good at: ")) + _join(rest) + ".")
        if know:
            out.append(self.pick(("Solid knowledge of ", "Background in ", "Familiar with ")) + _join(know) + ".")
        if tech:
            out.append(self.pick(("Tools: ", "Software I use: ", "Hands-on with ")) + _join(tech) + ".")
        return out

    # -- job posting ----------------------------------------------------------------------------
    def job(self, d: JobDraft) -> str:
        title = self.with_level(d.title, d.level)
        city = self.city(d.city)
        emp = EMPLOYMENT_TEXT[d.employment_type]
        head = self.pick((f"{title} ({emp})", f"We're hiring: {title}", f"{title} - {city}",
                          f"{d.company} is looking for {_article(title)} {title}"))
        adj = self.pick(ORG_ADJ)
        parts = [self.pick((f"{d.company} is {_article(adj)} {adj} {self.pick(ORG_WORDS)} based in {city}.",
                            f"Join {d.company} in {city}.",
                            f"At {d.company} we build great teams in {city} and beyond."))]
        if d.description:
            parts.append(self.pick(("About the role: ", "The role: ", "")) + d.description)
        duties = [_cap(t) for t in d.tasks[:4]]
        req = [self.skill_label(s) for s in d.skills[: d.n_required]]
        nice = [self.skill_label(s) for s in d.skills[d.n_required:]]
        if duties:
            parts.append(self.pick(("What you will do:", "Responsibilities:", "Your tasks:")) + _bullets(duties))
        if req:
            parts.append(self.pick(("What we look for:", "Requirements:", "You bring:"))
                         + _bullets([f"{d.years}+ years of relevant experience"] + req[:8]))
        if nice:
            parts.append(self.pick(("Nice to have: ", "Bonus points for ", "Also great: ")) + _join(nice[:6]) + ".")
        parts.append(self.pick((f"This is a {emp} position, {self.pick(REMOTE_TEXT[d.remote])}.",
                                f"Contract: {emp}. Work mode: {self.pick(REMOTE_TEXT[d.remote])}.")))
        if d.edited:
            parts.append("Update: we have refreshed the requirements for this role.")
        parts.append(self.pick(("Apply today!", "We look forward to your application.",
                                "Sounds like you? Apply now.", "")))
        return _fit([head] + parts, filler=d.description)


def _fit(sentences: list[str], filler: str) -> str:
    """Join sentences, padding short texts and cutting long ones to MIN_WORDS..MAX_WORDS words."""
    sentences = [s for s in sentences if s]
    words = sum(len(s.split()) for s in sentences)
    while words < MIN_WORDS and filler:
        sentences.append(filler)
        words += len(filler.split())
    while words > MAX_WORDS and len(sentences) > 2:
        words -= len(sentences.pop(-2).split())
    text = "\n".join(sentences)
    if words > MAX_WORDS:
        text = " ".join(text.split(" ")[:MAX_WORDS])
    return text


def _bullets(items: Sequence[str]) -> str:
    return "".join(f"\n- {item}" for item in items)


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _years(n: int) -> str:
    return "less than a year" if n == 0 else "1 year" if n == 1 else f"{n} years"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


# -- company names --------------------------------------------------------------------------------
_CO_A = ("Northwind", "Bluepeak", "Silverline", "Ironbridge", "Greenfield", "Redwood", "Brightwater", "Stonegate",
         "Clearview", "Oakridge", "Westbrook", "Eastgate", "Highland", "Lakeside", "Riverbend", "Sunrise", "Evergreen",
         "Horizon", "Summit", "Keystone", "Pinecrest", "Harbor", "Crescent", "Meridian", "Atlas", "Orion", "Vertex",
         "Nimbus", "Polar", "Quantum", "Cobalt", "Granite", "Maple", "Cedar", "Falcon", "Beacon", "Pioneer", "Anchor",
         "Compass", "Lighthouse", "Willow", "Aurora", "Vega", "Nova", "Zenith", "Apex", "Sterling", "Copper", "Emerald",
         "Sapphire", "Juniper", "Birch", "Alder", "Fjord", "Tundra", "Delta", "Canyon", "Prairie", "Coral", "Tidal")
_CO_B = ("Logistics", "Health", "Analytics", "Foods", "Energy", "Construction", "Robotics", "Media", "Retail",
         "Finance", "Insurance", "Labs", "Systems", "Motors", "Textiles", "Hospitality", "Pharma", "Engineering",
         "Consulting", "Software", "Telecom", "Farms", "Security", "Education", "Aviation", "Marine", "Mining",
         "Chemicals", "Studios", "Travel", "Care", "Manufacturing", "Properties", "Recycling", "Water", "Clinics",
         "Bakeries", "Transport", "Solutions", "Partners")
_CO_FORM = ("{a} {b}", "{a} {b} Group", "{a} {b} Ltd", "{a} {b} GmbH")
N_COMPANY_NAMES = len(_CO_A) * len(_CO_B) * len(_CO_FORM)


def company_name(code: int) -> str:
    """The code-th of N_COMPANY_NAMES distinct company names."""
    a, rest = code % len(_CO_A), code // len(_CO_A)
    return _CO_FORM[rest // len(_CO_B)].format(a=_CO_A[a], b=_CO_B[rest % len(_CO_B)])
