"""Yes/no questions about a prompt's objects, counts, attributes, spatial relations and actions, by simple rules.

Used by the VLM judge. Rules over `graph_db.lexicon.tag_words` tags (no model): noun phrases are runs of
determiners and nouns; a number word or digit in one gives a count question, a colour, size, material or age word
before its head an attribute question; "A <preposition> B" with a spatial preposition a relation question; a verb
form after a noun phrase an action question; "in/at <place>" a setting question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import zip_longest

from rapo.graph_db import lexicon as lx

_TOKEN = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*|[.,;:!?]")
_NUMBERS = {
    w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split()) if i
}
ATTRIBUTES = lx.COLOURS | frozenset(
    """big small large tiny huge little tall short long giant wooden metal metallic glass plastic stone golden
    silver paper old young new ancient fluffy furry striped spotted shiny wet dry empty full""".split()
)
# Multi-word spatial prepositions first; each maps to the wording used in the question.
_SPATIAL_PHRASES = (
    (("to", "the", "left", "of"), "to the left of"),
    (("on", "the", "left", "of"), "to the left of"),
    (("to", "the", "right", "of"), "to the right of"),
    (("on", "the", "right", "of"), "to the right of"),
    (("in", "front", "of"), "in front of"),
    (("on", "top", "of"), "on top of"),
    (("next", "to"), "next to"),
    (("left", "of"), "to the left of"),
    (("right", "of"), "to the right of"),
)
_PREPOSITION_STARTS = frozenset({("next", "to"), ("close", "to"), ("left", "of"), ("right", "of")})
SPATIAL = frozenset("on under above below behind beside near inside underneath beneath atop over".split())
SETTING = frozenset(("in", "at"))
_SKIP_HEADS = lx.SUBJECT_SKIP | frozenset(
    "left right front top middle side next background foreground distance".split()
)


@dataclass(frozen=True)
class _Phrase:
    """A noun phrase: its words, the head noun, a count (0 if none) and attribute words."""

    text: str
    head: str
    count: int
    attributes: tuple[str, ...]

    @property
    def plural(self) -> bool:
        return self.count > 1 or (self.head.endswith("s") and not self.head.endswith("ss"))

    @property
    def indefinite(self) -> str:
        """The phrase with "the" made indefinite: "the field" -> "a field", "the cars" -> "cars"."""
        if not self.text.startswith("the "):
            return self.text
        rest = self.text[4:]
        return rest if self.plural else ("an " if rest[0] in "aeiou" else "a ") + rest

    @property
    def the(self) -> str:
        return f"{'are' if self.plural else 'is'} the {self.head}"


def derive_questions(prompt: str, max_questions: int = 8) -> list[str]:
    """Questions a judge can answer from the frames, one kind at a time, always ending with an overall one.

    Args:
        prompt: the text-to-video prompt.
        max_questions: upper bound on the number of questions, at least 1.

    Returns:
        Distinct questions taken in turn from each kind (objects, attributes and counts, relations, actions,
        settings), e.g. for "two red cars parked next to a tall building": "Are there exactly two cars?",
        "Are the cars red?", "Are the cars next to a tall building?", "Are the cars parked next to a tall
        building?", "Is there a tall building?", "Is the building tall?", then "Overall, does the video show: two
        red cars parked next to a tall building?".
    """
    if max_questions < 1:
        raise ValueError(f"`max_questions` must be at least 1, got {max_questions}")
    words = _TOKEN.findall(prompt.lower().replace("\u2019", "'"))
    tags = lx.tag_words(words) if words else []
    phrases = _noun_phrases(words, tags)  # start -> (phrase, end)
    kinds: dict[str, list[str]] = {"object": [], "attribute": [], "relation": [], "action": [], "setting": []}
    subject: _Phrase | None = None
    starts = sorted(phrases)
    for k, start in enumerate(starts):
        phrase, end = phrases[start]
        link = _link(tags, phrases[starts[k - 1]][1] if k else 0, start)  # word indices joining it to the last one
        if subject is not None and phrase.head in lx.CLOTHING and {"in", "with", "wearing"} & {words[i] for i in link}:
            kinds["relation"].append(f"{subject.the.capitalize()} wearing {phrase.text}?")
        elif phrase.count > 1:
            kinds["object"].append(f"Are there exactly {_number(phrase.count)} {phrase.head}?")
        else:
            kinds["object"].append(f"{'Are' if phrase.plural else 'Is'} there {phrase.indefinite}?")
        kinds["attribute"] += [f"{phrase.the.capitalize()} {a}?" for a in phrase.attributes]
        if subject is None or not any(tags[i] in "LRVGE" for i in link):
            subject = phrase  # a new subject: first phrase, or after "and" / a comma, not after a verb or preposition
        following = starts[k + 1] if k + 1 < len(starts) else len(words)
        gap = _gap(words, tags, end, following, phrases)
        relation, after = _spatial(gap, end)
        target = phrases.get(after, (None, 0))[0] if relation else None
        if target is not None and relation in SETTING and target.head not in lx.CLOTHING:
            kinds["setting"].append(f"Does the scene take place {relation} {target.text}?")
        elif target is not None and relation not in SETTING:
            kinds["relation"].append(f"{subject.the.capitalize()} {relation} {target.text}?")
        verb = next((i for i in range(end, end + len(gap)) if tags[i] in "VGE"), -1)
        if verb >= 0:
            action = " ".join(
                [_base(words[verb]) if tags[verb] == "V" else words[verb], *words[verb + 1 : end + len(gap)]]
            )
            if following in phrases and end + len(gap) == following:
                action += " " + phrases[following][0].text  # "riding a bicycle", "runs across the field"
            asked = (
                f"Does the {subject.head} {action}?" if tags[verb] == "V" else f"{subject.the.capitalize()} {action}?"
            )
            kinds["action"].append(asked)
    overall = f"Overall, does the video show: {prompt.strip().rstrip('.!?')}?"
    ordered = [q for group in zip_longest(*kinds.values()) for q in group if q is not None]
    return [*list(dict.fromkeys(ordered))[: max_questions - 1], overall]


def _noun_phrases(words: list[str], tags: list[str]) -> dict[int, tuple[_Phrase, int]]:
    """Maximal runs of determiners and nouns (a determiner only first), keyed by start, with their end."""
    phrases: dict[int, tuple[_Phrase, int]] = {}
    i = 0
    while i < len(words):
        if tags[i] not in "DN":
            i += 1
            continue
        j = i + 1
        while j < len(words) and tags[j] == "N" and tuple(words[j : j + 2]) not in _PREPOSITION_STARTS:
            j += 1
        phrase = _phrase(words[i:j], tags[i:j])
        if phrase is not None:
            phrases[i] = (phrase, j)
        i = j
    return phrases


def _gap(words: list[str], tags: list[str], start: int, stop: int, phrases: dict) -> list[str]:
    """words[start:stop] up to the first punctuation or camera word: what links one phrase to the next."""
    gap = []
    for i in range(start, stop):
        if tags[i] == "." or words[i] in lx.SUBJECT_SKIP or (i > start and i in phrases):
            break
        gap.append(words[i])
    return gap


def _link(tags: list[str], start: int, stop: int) -> range:
    """Indices of the words between two phrases, after the last punctuation."""
    cut = max((i + 1 for i in range(start, stop) if tags[i] == "."), default=start)
    return range(cut, stop)


def _phrase(words: list[str], tags: list[str]) -> _Phrase | None:
    """A noun phrase from D/N words, or None when its head is not a visible object ("camera", "left")."""
    nouns = [w for w, t in zip(words, tags, strict=True) if t == "N" and w not in _NUMBERS and not w.isdigit()]
    if not nouns or nouns[-1] in _SKIP_HEADS or nouns[-1] in lx.TIME_WEATHER_HEADS:
        return None
    count = next((_NUMBERS.get(w, int(w) if w.isdigit() else 0) for w in words if w in _NUMBERS or w.isdigit()), 0)
    attributes = tuple(w for w in nouns[:-1] if w in ATTRIBUTES)
    return _Phrase(" ".join(words), nouns[-1], count, attributes)


def _spatial(gap: list[str], offset: int) -> tuple[str, int]:
    """The first spatial or setting preposition in `gap` and the word index after it, or ('', -1).

    `gap` starts at word index `offset` of the prompt.
    """
    for i in range(len(gap)):
        for pattern, wording in _SPATIAL_PHRASES:
            if tuple(gap[i : i + len(pattern)]) == pattern:
                return wording, offset + i + len(pattern)
        if gap[i] in SPATIAL or gap[i] in SETTING:
            return gap[i], offset + i + 1
    return "", -1


def _base(verb: str) -> str:
    """The base form of a third-person verb: "runs" -> "run", "flies" -> "fly", "watches" -> "watch"."""
    if verb.endswith("ies") and len(verb) > 4:
        return verb[:-3] + "y"
    if verb.endswith(("ches", "shes", "sses", "xes", "zes", "oes")):
        return verb[:-2]
    return verb[:-1] if verb.endswith("s") and not verb.endswith("ss") else verb


def _number(n: int) -> str:
    return next((w for w, i in _NUMBERS.items() if i == n), str(n))
