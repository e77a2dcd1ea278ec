"""Long member profiles and job postings (`generate(text_length="long")`, the default).

Real profiles and postings are long and uneven. Each text draws a verbosity v (lognormal, median 1) that sets how
many positions, bullets and filler lines it gets, so lengths have a long tail. The evidence is spread through the
text: skills are dealt to the summary, the current position, past positions and a closing "Additional skills"
list; the location often appears only near the end; seniority wording sits in the position titles.

    MemberDraft -> headline, About, Experience (current + past positions: title, company, years, description,
                   task and achievement bullets, dealt skills), Education, Languages, Additional skills, closing
    JobDraft    -> title, company intro, About the role, Responsibilities, Requirements, Nice to have,
                   What we offer, Location and contract, How to apply
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace

from star.data import synthetic_phrases as ph
from star.data.synthetic_text import (EMPLOYMENT_TEXT, ORG_ADJ, ORG_WORDS, REMOTE_TEXT, JobDraft, MemberDraft,
                                      SkillMention, Writer, _article, _bullets, _cap, _join, _years)

# log-spread of verbosity (profiles, postings); the fixed parts of a text narrow the spread of its length
SIGMA_MEMBER, SIGMA_JOB = 1.0, 1.4
# where a member's skills land: summary, current position, past positions, the closing list
DEAL_P = (0.12, 0.33, 0.35, 0.20)
DEAL_CUM = tuple(sum(DEAL_P[: i + 1]) for i in range(len(DEAL_P)))


class LongWriter(Writer):
    """Writer of real-like long texts; needs the taxonomy tables for past positions' occupations."""

    def __init__(self, seed: int, tables: SimpleNamespace) -> None:
        super().__init__(seed)
        self.tb = tables

    def verbosity(self, sigma: float) -> float:
        """exp(sigma * N(0, 1)) from random() only (Box-Muller), clipped to [0.15, 8]."""
        z = math.sqrt(-2.0 * math.log(1.0 - self._rand())) * math.cos(2.0 * math.pi * self._rand())
        return min(max(math.exp(sigma * z), 0.15), 8.0)

    def count(self, mean: float, cap: int) -> int:
        """A whole number around `mean` (stochastic rounding), at most cap."""
        return min(int(mean + self._rand()), cap)

    def some(self, items: Sequence[str], k: int) -> list[str]:
        """k distinct items in random order: the first k steps of a Fisher-Yates shuffle."""
        out, n = list(items), len(items)
        for i in range(min(k, n)):
            j = i + int(self._rand() * (n - i))
            out[i], out[j] = out[j], out[i]
        return out[:k]

    def fill(self, template: str, year: int | None = None) -> str:
        """The template with a percentage {n}, a small count {k} and a year {y} (`year`, or 1960..2019)."""
        return template.format(n=5 + int(self._rand() * 40), k=2 + int(self._rand() * 8),
                               y=1960 + int(self._rand() * 60) if year is None else year)

    # -- member profile -------------------------------------------------------------------------
    def member(self, d: MemberDraft) -> str:
        v = self.verbosity(SIGMA_MEMBER)
        title = self.with_level(d.title, d.level)
        city = self.city(d.city)
        labels = [self.skill_label(s) for s in d.skills]
        positions = self._positions(d, title, v)
        deal: list[list[int]] = [[] for _ in range(2 + len(positions))]  # summary, positions..., closing list
        for k in range(len(labels)):
            u = self._rand()
            if u < DEAL_CUM[0]:
                deal[0].append(k)
            elif u < DEAL_CUM[1]:
                deal[1].append(k)
            elif u < DEAL_CUM[2] and len(positions) > 1:  # a past position
                deal[2 + int(self._rand() * (len(positions) - 1))].append(k)
            else:
                deal[-1].append(k)
        city_early = self.chance(0.4)
        head = self.pick((f"{title} at {d.company}", f"{title} | {self.pick(ph.TAGLINES)}", self.pick(ph.TAGLINES),
                          f"{d.title} · {self.pick(ph.TAGLINES)}"))
        out = [head + (f"\n{city}" if city_early else "")]
        about = [self.pick((f"{_years(d.years)} of experience, currently at {d.company}.",
                            f"I have spent {_years(d.years)} working in this field.",
                            "A short introduction to who I am and what I do."))]
        if d.change_note:
            about.append(self._change_sentence(d, title, city))
        about += self.some(ph.SUMMARY, self.count(1.5 * v, 7))
        if d.description and self.chance(0.35):
            about.append(self.pick(("What my work is about: ", "In short: ")) + d.description)
        about += self._skill_sentences([labels[k] for k in deal[0]], [d.skills[k] for k in deal[0]])
        out.append(self.pick(("About", "Summary", "About me")) + "\n" + " ".join(about))
        blocks = [self._position(p, labels, d.skills, deal[1 + n], v, d.occ) for n, p in enumerate(positions)]
        out.append("Experience\n" + "\n\n".join(blocks))
        out += self._background(d, v)
        rest = deal[-1]
        if rest:
            lines = self._skill_sentences([labels[k] for k in rest], [d.skills[k] for k in rest])
            out.append(self.pick(("Additional skills", "Other skills", "Skills")) + "\n" + "\n".join(lines))
        tail = [] if city_early else [self.pick((f"Location: {city}", f"Based in {city}.", f"Living in {city}."))]
        if d.open_to_work:
            tail.append(self.pick((f"Open to new opportunities in {city} or remote.",
                                   "Actively looking for my next challenge.",
                                   "Open to work - feel free to reach out.")))
        elif self.chance(0.3):
            tail.append("Not actively looking, but happy to connect.")
        tail.append(self.pick(ph.CLOSINGS))
        out.append("\n".join(t for t in tail if t))
        return "\n\n".join(s for s in out if s)

    def _positions(self, d: MemberDraft, title: str, v: float) -> list[SimpleNamespace]:
        """Current position first, then the past companies, then early jobs for the long-tail CVs."""
        extra = self.count(v * min(d.years, 24) / 7, 6) if d.years > 2 else 0
        employers = list(d.past_companies) + [self.pick(ph.EARLY_EMPLOYERS) for _ in range(extra)]
        n_pos = 1 + len(employers)
        # spans add up to about the member's years of experience, a year at least each
        spans = [1 + int(self._rand() * 2 * max(d.years - n_pos, 0) / n_pos) for _ in range(n_pos)]
        out, end, level = [], d.year, d.level
        for n, company in enumerate([d.company] + employers):
            occ, name = d.occ, title
            if n:
                if self.chance(0.45) and self.tb.related[d.occ]:
                    occ = self.pick(self.tb.related[d.occ])
                level = max(level - (self._rand() < 0.6), 0)  # earlier positions, lower or equal seniority
                mode = "synonym" if self.chance(0.3) else "canonical"
                name = self.with_level(self.title(self.tb.label[occ], self.tb.alt[occ], mode), level)
            start = end - spans[n]
            out.append(SimpleNamespace(title=name, company=company, start=start, end=None if n == 0 else end, occ=occ,
                                       generic=n > len(d.past_companies)))
            end = start
        return out

    def _position(self, p: SimpleNamespace, labels: list[str], skills: Sequence[SkillMention], dealt: list[int],
                  v: float, current_occ: int) -> str:
        years = (p.end or p.start + 1) - p.start
        when = f"{p.start} - {'present' if p.end is None else p.end} · {_years(years)}"
        heads = (f"{p.title} — {p.company}",) if p.generic else (
            f"{p.title} — {p.company}", f"{p.title} at {p.company}", f"{p.company}\n{p.title}")
        lines = [self.pick(heads), when]
        desc = self.tb.description[p.occ]
        if desc and self.chance(0.75 if p.end is None or p.occ != current_occ else 0.25):
            lines.append(self.pick(("", "Role: ", "The job: ")) + desc)
        bullets = [_cap(t) for t in self.some(self.tb.tasks[p.occ], self.count((3.0 if p.end is None else 1.8) * v, 6))]
        bullets += [self.fill(a, year=(p.end or p.start + 1) - 1) for a in self.some(ph.ACHIEVEMENTS,
                                                                                    self.count(0.8 * v, 6))]
        if dealt:
            if self.chance(0.5):
                bullets.append(self.pick(("Skills used: ", "Key skills: ", "In this role: ")) + _join(
                    [labels[k] for k in dealt]) + ".")
            else:
                lines += self._skill_sentences([labels[k] for k in dealt], [skills[k] for k in dealt])
        return "\n".join(lines) + _bullets(self.shuffled(bullets))

    def _background(self, d: MemberDraft, v: float) -> list[str]:
        edu = [f"{self.pick(ph.EDUCATION)}, {self.pick(ph.SCHOOLS)}, {d.year - d.years - 1 - int(self._rand() * 4)}"
               for _ in range(1 + self.count(0.4 * v, 2))]
        out = ["Education\n" + "\n".join(edu)]
        langs = self.some(ph.LANGUAGES, 1 + self.count(0.8 * v, 3))
        out.append("Languages: " + ", ".join(f"{lang} ({self.pick(ph.FLUENCY)})" for lang in langs))
        if self.chance(0.6):
            out.append("Certifications\n" + "\n".join(self.some(ph.CERTIFICATES, 1 + self.count(0.7 * v, 3))))
        if self.chance(0.5):
            out.append("Interests: " + ", ".join(self.some(ph.INTERESTS, 2 + self.count(v, 4))))
        return out

    # -- job posting ----------------------------------------------------------------------------
    def job(self, d: JobDraft) -> str:
        v = self.verbosity(SIGMA_JOB)
        title = self.with_level(d.title, d.level)
        emp = EMPLOYMENT_TEXT[d.employment_type]
        head = self.pick((f"{title} ({emp})", f"We're hiring: {title}", f"{title} - {self.city(d.city)}",
                          f"{d.company} is looking for {_article(title)} {title}"))
        adj = self.pick(ORG_ADJ)
        intro = [self.pick((f"{d.company} is {_article(adj)} {adj} {self.pick(ORG_WORDS)}.",
                            f"Join {d.company}, {_article(adj)} {adj} {self.pick(ORG_WORDS)}.",
                            f"At {d.company} we build great teams."))]
        intro += [self.fill(s) for s in self.some(ph.COMPANY_MORE, 1 + self.count(1.2 * v, 7))]
        out = [head, self.pick(("About us", "Who we are", "The company")) + "\n" + " ".join(intro)]
        role = [d.description] if d.description else []
        role += [self.fill(s) for s in self.some(ph.ROLE_MORE, self.count(1.2 * v, 6))]
        if role:
            out.append(self.pick(("About the role", "The role", "Your role")) + "\n" + " ".join(role))
        duties = [_cap(t) for t in d.tasks[: self.count(3.5 * v, 6)]]
        duties += self.some(ph.DUTIES_MORE, self.count(1.2 * v, 6))
        if duties:
            out.append(self.pick(("What you will do:", "Responsibilities:", "Your tasks:")) + _bullets(duties))
        nice = [self.skill_label(s) for s in d.skills[d.n_required:]]
        reqs = [f"{d.years}+ years of relevant experience"] + [self._requirement(s) for s in d.skills[: d.n_required]]
        reqs += self.some(ph.REQUIREMENTS_MORE, self.count(1.2 * v, 6))
        out.append(self.pick(("What we look for:", "Requirements:", "You bring:")) + _bullets(reqs))
        if nice:
            out.append(self.pick(("Nice to have:", "Bonus points for:", "Also great:")) + _bullets(nice))
        offer = [self.fill(b) for b in self.some(ph.BENEFITS, 2 + self.count(2.5 * v, 13))]
        first = self.some(ph.FIRST_MONTHS, self.count(1.5 * v - 1.5, 6))
        if first:
            out.append(self.pick(("Your first months:", "What to expect:")) + _bullets(first))
        out.append(self.pick(("What we offer:", "Benefits:", "Why join us:")) + _bullets(offer))
        values = self.some(ph.VALUES, self.count(1.5 * v - 1.5, 7))
        if values:
            out.append(self.pick(("Our values", "How we work")) + "\n" + " ".join(values))
        city = self.city(d.city)
        out.append(self.pick((f"Location: {city}. This is a {emp} position, {self.pick(REMOTE_TEXT[d.remote])}.",
                              f"Contract: {emp}. Work mode: {self.pick(REMOTE_TEXT[d.remote])}. Office: {city}.")))
        if d.edited:
            out.append("Update: we have refreshed the requirements for this role.")
        steps = self.some(ph.APPLY, 1 + self.count(v, 3))
        out.append(self.pick(("How to apply", "Next steps", "Application")) + "\n" + " ".join(steps))
        if self.chance(0.5):
            out.append(self.pick(ph.EQUAL))
        return "\n\n".join(out)

    def _requirement(self, skill: SkillMention) -> str:
        label = self.skill_label(skill)
        lead = {"skill": ("Proven ability to ", "Able to ", ""),
                "knowledge": ("Solid knowledge of ", "Background in ", ""),
                "technology": ("Hands-on experience with ", "Working knowledge of ", "")}[skill.kind]
        return _cap(self.pick(lead) + label)
