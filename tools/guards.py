"""Guards on LLM output: a rewrite must keep the prompt's content, stay short, and read as a prompt."""

from __future__ import annotations

import re
from collections import Counter

from rapo.graph_db.lexicon import COLOURS

_WORD = re.compile(r"[a-z0-9]+")
# Function words a rewrite may drop or change; everything else in a prompt is content the user asked for.
STOPWORDS = frozenset(
    """a an the and or but nor so yet of in on at to from by with without into onto over under above below
    across along around through towards toward near beside behind between among against about up down off out
    is are was were be been being am has have had do does did will would can could should may might must shall
    it its it's this that these those there here their they them he him his she her we our you your i me my
    as than then while when where which who whom whose what how also very just some any each every all both
    one's s t""".split()
)
REPEAT_RATIO = 0.6
_NUMBERS = {
    w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve".split())
}
ARTEFACTS = re.compile(
    r"(<\||\|>|```|\*\*|^#|\b(?:sure|certainly|here is|here's|as an ai|i cannot|i can't|rewritten|"
    r"prompt:|caption:|detail:|assistant|user:|note:|i'm|i am|i will|i hope|let me|let's|feel free|hope you)\b)",
    re.IGNORECASE | re.MULTILINE,
)
# Words of the critics' reports, not of a scene: small models copy the feedback they were shown into the prompt
# ("A dog runs on the beach. Image quality is good, but the lighting is too bright. We want to enhance that.").
CRITIQUE = re.compile(
    r"\b(?:image quality|video quality|ssim|laplacian|gray levels|critics?|feedback|we want|the prompt|"
    r"scores?\s+(?:of\s+)?\d|[01]\.\d\d)\b",
    re.IGNORECASE,
)


# "X is a sweet, edible fruit that is often used in cooking": an encyclopedia's sentence, not a shot.
DEFINITION = re.compile(
    r"\b(?:is|are)\s+(?:a|an|the)\s+(?:[\w,-]+\s+){0,5}?(?:type|kind|species|breed|variety|member|form|genus)\s+of\b"
    r"|\b(?:known|famous|renowned|prized)\s+for\b|\bnative\s+to\b"
    r"|\b(?:often|commonly|typically|usually|widely|mostly|generally)\s+(?:used|found|eaten|served|grown|kept|seen|"
    r"made|considered|called|referred)\b",
    re.IGNORECASE,
)
# "The ball passes the ball", "The kite is flying a kite": a noun that acts on itself.
_TAUTOLOGY = re.compile(r"\b(?:the|a|an)\s+([a-z]+)\s+(?:is\s+|are\s+)?[a-z]+\s+(?:the|a|an)\s+([a-z]+)\b")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def stem(word: str) -> str:
    """A crude English stem, enough to match "runs", "running" and "run" or "puppies" and "puppy"."""
    word = _NUMBERS.get(word, word)
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)] + keep
            break
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
        word = word[:-1]  # running -> runn -> run
    return word


def content_words(text: str) -> list[str]:
    """The words of `text` that are not function words, lower case, in order, without repeats."""
    return list(dict.fromkeys(w for w in _WORD.findall(text.lower()) if w not in STOPWORDS))


def missing_words(source: str, candidate: str) -> list[str]:
    """The content words of `source` (nouns, numbers, colours, verbs) that `candidate` lacks."""
    have = {stem(w) for w in content_words(candidate)}
    return [w for w in content_words(source) if stem(w) not in have]


def faithfulness(source: str, candidate: str) -> float:
    """The share of `source`'s content words that `candidate` keeps (1.0 when there are none)."""
    words = content_words(source)
    return 1.0 - len(missing_words(source, candidate)) / len(words) if words else 1.0


def clean(text: str) -> str:
    """Strip what models wrap answers in: surrounding quotes and whitespace."""
    return text.strip().strip('"').strip("'").strip()


def trim_unfinished(text: str) -> str:
    """Cut a generation that hit its token limit back to its last complete sentence, if it has one."""
    end = max(text.rfind(". "), text.rfind("! "), text.rfind("? "))
    if text.endswith((".", "!", "?")) or end < 0:
        return text
    return text[: end + 1]


# What a video cannot show: "The air is filled with the scent of pine", "the sound of waves".
NON_VISUAL = re.compile(
    r"\b(?:scents?|smell(?:s|ing)?|aromas?|fragran(?:ce|t)|odou?rs?|tastes?|tasting|sounds?\s+of|hear(?:s|d|ing)?|"
    r"audible)\b",
    re.IGNORECASE,
)


def drop_non_visual(text: str, keep: str = "") -> str:
    """`text` without its sentences about smell, taste or sound (a video model renders none); `keep` always stays."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    kept, length = [], 0
    for sentence in sentences:
        if length >= len(keep) and NON_VISUAL.search(sentence):
            continue
        kept.append(sentence)
        length += len(sentence) + 1
    return " ".join(kept)


def trim_to_words(text: str, max_words: int, keep: str = "") -> str:
    """`text` cut back to whole sentences within `max_words` words; never shorter than `keep`, its forced start.

    A last sentence cut off mid-way (a generation that hit its token limit) goes too when an earlier one ends.
    """
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    kept: list[str] = []
    for sentence in sentences:
        candidate = " ".join([*kept, sentence])
        if len(candidate.split()) > max_words and len(" ".join(kept)) >= len(keep):
            break
        kept.append(sentence)
    out = " ".join(kept)
    if not out.endswith((".", "!", "?")) and len(kept) > 1 and len(" ".join(kept[:-1])) >= len(keep):
        out = " ".join(kept[:-1])
    return out


def check(source: str, candidate: str, max_words: int, must_add: str = "") -> str | None:
    """Why `candidate` is not an acceptable rewrite of `source`, or None when it is.

    Args:
        source: the prompt being rewritten; every content word of it must survive.
        candidate: the model's answer, already cleaned.
        max_words: the length bound.
        must_add: a phrase the rewrite was asked to add; more than half its content words must appear.
    """
    words = _WORD.findall(candidate.lower())
    if not words:
        return "empty"
    if ARTEFACTS.search(candidate):
        return f"chat artefact {ARTEFACTS.search(candidate).group(0)!r}"
    if critique := CRITIQUE.search(candidate):
        return f"critic's words {critique.group(0)!r}"
    if len(words) > max_words:
        return f"too long: {len(words)} words > {max_words}"
    if dropped := missing_words(source, candidate):
        return "drops " + ", ".join(repr(w) for w in dropped)
    if must_add and faithfulness(must_add, candidate) <= 0.5:
        return f"does not add {must_add!r}"
    grams = Counter(zip(words, words[1:], words[2:], words[3:], strict=False))
    if grams and grams.most_common(1)[0][1] >= 3:
        return "repetitive: " + " ".join(grams.most_common(1)[0][0]) + " x3"
    if reason := incoherence(source, candidate):
        return reason
    stems = [stem(w) for w in _WORD.findall(candidate.lower()) if w not in STOPWORDS]
    if len(stems) >= 6 and len(set(stems)) < REPEAT_RATIO * len(stems):
        # Small models pad with sentences that restate the prompt ("The dog is running. The dog runs.").
        return f"repetitive: only {len(set(stems))} of its {len(stems)} content words are distinct"
    return None


def incoherence(source: str, candidate: str) -> str | None:
    """What a reader would call nonsense in `candidate` (a rewrite of `source`), or None.

    Rules, each with its reason: a noun acting on itself ("the ball passes the ball"); a sentence beyond the
    prompt's own that adds no content word to it ("A dog runs on the beach. The dog is running."); a 5-word
    sequence said twice (three times when it is the prompt's); a dictionary definition ("a carrot is a root
    vegetable often used in soups"); a count or a colour that contradicts the prompt ("two dogs" -> "three dogs",
    "a red car" -> "the blue car").
    """
    lower = candidate.lower()
    for match in _TAUTOLOGY.finditer(lower):
        if match.group(1) not in STOPWORDS and stem(match.group(1)) == stem(match.group(2)):
            return f"tautology {match.group(0)!r}"
    prompt_stems = {stem(w) for w in content_words(source)}
    skip = len(_SENTENCE.split(source.strip()))  # the rewrite may start with the prompt's own sentences
    for sentence in _SENTENCE.split(candidate.strip())[skip:]:
        stems = {stem(w) for w in content_words(sentence)}
        if stems and stems <= prompt_stems:
            return f"restates the prompt: {sentence.strip()!r}"
    asked = set(_five_grams(source))  # once in the prompt, once where the rewrite restates it, is not a loop
    for gram, count in Counter(_five_grams(candidate)).items():
        if count > 1 + (gram in asked):
            return "repetitive: " + " ".join(gram) + f" x{count}"
    if definition := DEFINITION.search(candidate):
        return f"a definition, not a scene: {definition.group(0)!r}"
    return _contradiction(source, candidate)


def _five_grams(text: str) -> list[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return list(zip(words, words[1:], words[2:], words[3:], words[4:], strict=False))


def _attributes(text: str, words: frozenset[str] | dict[str, str]) -> dict[str, set[str]]:
    """Noun stem -> the attribute words (counts or colours) right before it, at most one adjective between."""
    tokens = _WORD.findall(text.lower())
    found: dict[str, set[str]] = {}
    for i, token in enumerate(tokens):
        if token not in words:
            continue
        for j in (i + 1, i + 2):
            if j < len(tokens) and tokens[j] not in STOPWORDS and tokens[j] not in words:
                found.setdefault(stem(tokens[j]), set()).add(_NUMBERS.get(token, token))
                if j == i + 1 or tokens[i + 1] in COLOURS:
                    break
    return found


def _contradiction(source: str, candidate: str) -> str | None:
    counts = {**{w: w for w in _NUMBERS}, **{str(i): str(i) for i in range(13)}}
    # What the rewrite adds: after the prompt itself where the rewrite starts with it (the distilled rewriter's does).
    start = " ".join(_WORD.findall(source.lower()))
    added = " ".join(_WORD.findall(candidate.lower()))
    added = added[len(start) :] if added.startswith(start) else added
    for table, what in ((counts, "count"), (COLOURS, "colour")):
        asked = _attributes(source, table)
        for noun, said in _attributes(added, table).items():
            if noun not in asked:
                continue
            # A count must be one the prompt gave the noun; no colour may be one it did not ("red yellow bicycle")
            other = said - asked[noun] if what == "colour" else set() if said & asked[noun] else said
            if other:
                return f"contradicts the prompt's {what}: {sorted(other)[0]} {noun} (asked {sorted(asked[noun])[0]})"
    return None
