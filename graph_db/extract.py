"""Caption -> typed phrases (scenes, actions, atmospheres, subjects) with a small rule-based chunker.

Pure Python and deterministic: one regex tokenization, coarse word tags from `graph_db.lexicon.tag_words`
(see there for the tag letters), then one left-to-right pass that chunks noun phrases, locative phrases and
verb phrases into the four phrase kinds.
"""

from __future__ import annotations

import re

from rapo.graph_db import lexicon as lx
from rapo.graph_db.model import CaptionPhrases, normalize_phrase

_TOKEN = re.compile(r"[^\W_]+(?:['-][^\W_]+)*|[.,;:!?()\"]")
_BOILERPLATE = re.compile(r"(^|[.,;:!?]\s*|\band\s+|\bthen\s+)(?:" + "|".join(lx.BOILERPLATE_PREFIXES) + r")\b\s*")
_PUNCTUATION = frozenset(".,;:!?")
_MAX_WORDS = 8
_RECIPROCALS = (["each", "other"], ["one", "another"])
_COMPOUND_MAX = max(len(k) for k in lx.COMPOUND_LOCATIVES)
_COMPOUND_FIRST = frozenset(k[0] for k in lx.COMPOUND_LOCATIVES)
_ATMOSPHERE_WORDS = lx.ATMOSPHERE_ADJECTIVES | lx.ATMOSPHERE_ADVERBS


class _Chunker:
    """One caption's chunking state; `run` fills the four phrase lists."""

    __slots__ = ("w", "t", "n", "scenes", "actions", "atmospheres", "subjects", "keys", "mood", "head", "has_atm")

    def __init__(self, words: list[str], tags: list[str]) -> None:
        self.w, self.t, self.n = words, tags, len(words)
        self.scenes: list[str] = []
        self.actions: list[str] = []
        self.atmospheres: list[str] = []
        self.subjects: list[str] = []
        self.keys: set[str] = set()  # subjects without determiners: "a man" and "the man" are one subject
        self.mood = False  # whether the last verb phrase went to the atmospheres
        self.head = 0  # head-noun index of the last noun phrase np_end parsed
        self.has_atm = not _ATMOSPHERE_WORDS.isdisjoint(words)  # most captions have none: skip the scans

    def np_end(self, i: int) -> int:
        """End of the noun phrase at i (i when there is none); sets `head` (the noun before any "of")."""
        w, t, n = self.w, self.t, self.n
        j = i
        while j < n:
            tag = t[j]
            if tag == "N":
                if w[j] in ("next", "close") and j + 1 < n and w[j + 1] == "to":
                    break  # compound preposition "next to"
                j += 1
            elif (tag == "D" and (j == i or t[j - 1] == "D")) or (tag == "B" and j + 1 < n and t[j + 1] in "NE"):
                j += 1 + (tag == "B" and t[j + 1] == "E")  # "brightly coloured"
            elif w[j] in ("and", "or") and j > i and w[j - 1] in lx.COLOURS and j + 1 < n and w[j + 1] in lx.COLOURS:
                j += 1  # "a blue and white uniform"
            else:
                break
        if j == i:
            return i
        head = j - 1
        if j + 1 < n and w[j] == "of" and t[j + 1] in "DN":  # "a group of people", "some of the flour"
            k = self.np_end(j + 1)
            if k > j + 1:
                self.head = head
                return k
        if t[head] == "D":
            return i
        self.head = head
        return j

    def coordinated_np_end(self, j: int, worn: bool = False) -> int:
        """Extend a noun phrase ending at j over "and NP" unless that NP starts a new clause.

        Bare conjuncts of clothing (`worn`) never start one: "wearing a suit and tie playing".
        """
        t, n = self.t, self.n
        while j + 1 < n and self.w[j] in ("and", "or") and t[j + 1] in "DN":
            k = self.np_end(j + 1)
            stops = "" if worn and t[j + 1] == "N" else "VGA"
            if k == j + 1 or (k < n and t[k] in stops):
                break
            if stops and k + 1 < n and t[k] in "LR" and t[k + 1] in "DN":
                after = self.np_end(k + 1)
                if after < n and t[after] in "VA":
                    break  # "... and the man on the right wins"
            j = k
        return j

    def locative_at(self, i: int) -> int:
        """Length of the (possibly multi-word) locative preposition at i, 0 when there is none."""
        if self.w[i] in _COMPOUND_FIRST:
            for size in range(_COMPOUND_MAX, 1, -1):
                if tuple(self.w[i : i + size]) in lx.COMPOUND_LOCATIVES:
                    return size
        return 1 if self.t[i] == "L" else 0

    def emit(self, bucket: list[str], start: int, end: int, min_words: int = 2) -> None:
        if min_words <= end - start <= _MAX_WORDS:
            phrase = " ".join(self.w[start:end])  # tokens are lower case, unpunctuated: already normalized
            if phrase not in bucket:
                bucket.append(phrase)

    def emit_subject(self, start: int, end: int) -> None:
        w = self.w
        key = " ".join(x for x in w[start:end] if x not in lx.DETERMINERS)
        if key and key not in self.keys and w[end - 1] not in lx.SUBJECT_SKIP:
            self.keys.add(key)
            self.emit(self.subjects, start, end, min_words=1)

    def place_phrase(self, i: int) -> tuple[int, str]:
        """Parse a locative phrase at i: (end, kind), kind one of "scene", "atmosphere", "other", ""."""
        size = self.locative_at(i)
        end = self.np_end(i + size) if size and i + size < self.n else i + size
        if end == i + size:
            return i, ""
        head = self.w[self.head]
        if head in lx.ATMOSPHERE_PP_HEADS:
            return end, "atmosphere"  # "at night", "in slow motion", "in a playful mood"
        if head in lx.NON_PLACE_HEADS or head in lx.ATMOSPHERE_NOUNS or (head in lx.SCREENS and self.w[i] == "on"):
            return end, "other"  # "in her hand", "in a red dress", "on the screen"
        return end, "scene"

    def action(self, i: int) -> int:
        """Parse the verb phrase headed at i, emit it, and return its end."""
        w, t, n = self.w, self.t, self.n
        while w[i] in lx.ASPECT_VERBS and i + 1 < n:  # "begins cleaning", "starts to dance"
            if t[i + 1] == "G":
                i += 1
            elif w[i + 1] == "to" and i + 2 < n and t[i + 2] in "VA":
                if w[i + 2] == "be" and w[i] in lx.SEEM_VERBS:
                    return self.seem_predicate(i + 3)
                i += 2
            else:
                break
        verb = w[i]
        if not (verb == "being" and i + 1 < n and t[i + 1] == "E") and (verb in lx.LIGHT_VERBS or t[i] not in "VGE"):
            if verb in ("wearing", "wears", "wore", "dressed") and i + 1 < n:  # appearance, not an action
                return self.coordinated_np_end(self.np_end(i + 1 + (w[i + 1] == "in")), worn=True)
            return i + 1
        end = self.complements(i)
        bucket = self.actions
        if verb in lx.MOOD_VERBS and (verb.startswith("enjoy") or not lx.MOOD_OBJECTS.isdisjoint(w[i + 1 : end])):
            bucket = self.atmospheres  # "enjoying the ride", "having a good time"
        self.emit(bucket, i, end, min_words=1 if t[i] in "VG" else 2)
        self.mood = bucket is self.atmospheres
        return end

    def complements(self, i: int) -> int:
        """End of the verb phrase headed at i: particles, object, non-place PPs; one place PP if intransitive."""
        w, t, n = self.w, self.t, self.n
        j = i + 2 if w[i] == "being" else i + 1  # "being poured"
        while j + 1 < n and w[j] in ("and", "or") and t[j + 1] == t[i] and t[i] in "VG":
            j += 2  # bare coordination: "singing and playing the guitar"
        has_object = has_place = False
        good = j  # end of the last complete complement
        while j < n:
            if j - i > _MAX_WORDS:
                return good  # never cut a phrase in the middle
            good = j
            word, tag = w[j], t[j]
            if word in lx.PARTICLES and (
                j + 1 >= n or t[j + 1] not in "DNP" or not has_object and lx.particle_verb(w[i])
            ):
                j += 1  # "jumps up", "picks up the ball"
            elif tag == "L" or (word in _COMPOUND_FIRST and self.locative_at(j)):
                end, kind = self.place_phrase(j)
                if not kind or kind == "atmosphere":
                    break
                if kind == "scene":
                    if has_object or has_place:
                        break  # "riding a bicycle | on a deserted road": the main loop emits the scene
                    has_place = True  # "standing in a parking lot"
                    self.emit(self.scenes, j, end)
                else:
                    has_object = True  # "working on a pottery wheel | in a studio"
                j = end
            elif tag in "DNP" and not has_object:
                k = j + 2 if w[j : j + 2] in _RECIPROCALS else (j + 1 if tag == "P" else self.np_end(j))
                if tag == "P" and word.startswith(("some", "any", "every")) and k < n and t[k] in "NG":
                    k += 1  # "telling something interesting"
                if k == j:
                    break
                coordinated = self.coordinated_np_end(k)
                j, has_object = (coordinated if coordinated - i <= _MAX_WORDS else k), True
            elif tag == "R" and j + 1 < n:
                after = t[j + 1]
                if (word == "to" and after == "V") or after == "G":
                    j = self.complements(j + 1)  # "trying to get it out", "by shaping and molding the clay"
                elif after == "W" and j + 3 < n and w[j + 2] == "to" and t[j + 3] == "V":
                    j = self.complements(j + 3)  # "talking about how to make a cake"
                elif after in "DNP" and w[j + 1] not in lx.SUBJECT_PRONOUNS_ALL:
                    k = j + 2 if after == "P" else self.np_end(j + 1)
                    k = j + 3 if w[j + 1 : j + 3] in _RECIPROCALS else k
                    if k == j + 1:
                        break
                    j, has_object = k, True  # "posing for a picture | on the beach"
                else:
                    break
            elif tag == "W" and j + 2 < n and w[j + 1] == "to" and t[j + 2] == "V":
                j = self.complements(j + 2)  # "explaining how to fold a shirt"
            else:
                break
        return good if j - i > _MAX_WORDS else j

    def seem_predicate(self, i: int) -> int:
        """After "seems/appears to be": a verb is an action, anything else an atmosphere ("in good spirits")."""
        t, n = self.t, self.n
        if i >= n:
            return i
        if t[i] in "GE":
            return self.action(i)
        if t[i] in "LDNB":
            end, kind = self.place_phrase(i) if t[i] == "L" else (self.np_end(i), "np")
            if kind == "np" and i < end < n and t[end] == "L":
                end = max(end, self.place_phrase(end)[0])  # "a busy day in the city"
            if t[i] == "B" and end == i and i + 1 < n:
                end = i + 2 if t[i + 1] in "NE" else i + 1  # "dimly lit"
            if end > i and kind:
                self.emit(self.atmospheres, i, end, min_words=1)
                self.mood = True
                return end
        return i + 1

    def atmosphere_word(self, i: int) -> None:
        """Emit the atmosphere word at i with its adverb ("dimly lit") and atmospheric head ("sunny day")."""
        w, t, n = self.w, self.t, self.n
        word = w[i]
        nxt = w[i + 1] if i + 1 < n else ""
        if word in lx.ATMOSPHERE_ADVERBS:
            if nxt not in lx.ATMOSPHERE_ADJECTIVES:  # else the adjective emits "dimly lit"
                self.emit(self.atmospheres, i, i + 1 + nxt.endswith("ed"), min_words=1)  # "brightly colored"
            return
        start = i - 1 if i > 0 and w[i - 1] in lx.ATMOSPHERE_ADVERBS else i
        if nxt in lx.CLOTHING or (word == "lit" and start == i):
            return  # "a dark blue shirt", "lit a candle"
        end = i + 1 + (nxt in lx.ATMOSPHERE_HEADS)
        if end == i + 1 and start > 0 and t[start - 1] == "A":
            head = self.clause_subject_head(start - 1)
            if head is not None and w[head] in lx.ATMOSPHERE_HEADS:  # "the scenery is picturesque"
                phrase = normalize_phrase(f"{' '.join(w[start:end])} {w[head]}")
                if phrase not in self.atmospheres:
                    self.atmospheres.append(phrase)
                return
        self.emit(self.atmospheres, start, end, min_words=1)

    def scan_atmosphere(self, start: int, end: int) -> None:
        """Emit the atmosphere adjectives and adverbs among words[start:end]."""
        if self.has_atm:
            w = self.w
            for k in range(start, end):
                if w[k] in _ATMOSPHERE_WORDS:
                    self.atmosphere_word(k)

    def clause_subject_head(self, i: int) -> int | None:
        """Index of the head noun of the clause's leading noun phrase, looking back from i."""
        k = i
        while k > 0 and self.t[k - 1] not in ".C":
            k -= 1
        return self.head if self.np_end(k) > k else None

    def subject_modifiers(self, end: int) -> int:
        """Extend a subject over appearance modifiers: "wearing a hat", "in a red dress", "with a beard"."""
        w, t, n = self.w, self.t, self.n
        if end + 1 < n and w[end] in ("wearing", "with") and t[end + 1] in "DN":
            k = self.coordinated_np_end(self.np_end(end + 1), worn=w[end] == "wearing")
            return k if k > end + 1 else end
        if end + 1 < n and w[end] == "in" and t[end + 1] in "DN":
            k = self.np_end(end + 1)
            if k > end + 1 and w[k - 1] in lx.NON_PLACE_HEADS and w[k - 1] not in ("background", "distance"):
                return self.coordinated_np_end(k, worn=True)
        return end

    def run(self) -> None:
        """Chunk the caption left to right."""
        w, t, n = self.w, self.t, self.n
        clause_start = True
        i = 0
        while i < n:
            tag, word = t[i], w[i]
            if tag == "." or (tag == "C" and word not in ("and", "or")):
                clause_start = True
                i += 1
            elif tag == "L" or (word in _COMPOUND_FIRST and self.locative_at(i)):
                end, kind = self.place_phrase(i)
                if kind == "scene":
                    self.emit(self.scenes, i, end)
                if kind == "atmosphere":
                    self.emit(self.atmospheres, i, end)
                else:
                    self.scan_atmosphere(i, end)
                i = max(end, i + 1)
            elif tag in "DN":
                end, head = self.np_end(i), self.head
                if end == i:
                    i += 1
                elif w[head] in lx.MOOD_NP_HEADS:  # "the thrill and excitement of snowboarding"
                    end = self.coordinated_np_end(end)
                    self.emit(self.atmospheres, i, end, min_words=1)
                    i = end
                elif head < end - 2 and w[head] in lx.FRAME_HEADS and w[head + 1] == "of":
                    self.scan_atmosphere(i, head + 1)  # "a close-up of a cat": the cat is the subject
                    i = head + 2
                else:
                    if clause_start or (end < n and t[end] in "VGA" and (i == 0 or t[i - 1] not in "AVGE")):
                        modified = self.subject_modifiers(end)
                        self.emit_subject(i, modified if modified - i <= _MAX_WORDS else end)
                        end = modified
                    self.scan_atmosphere(i, end)
                    i = end
            elif tag in "VGE":
                clause_start = self.mood = False
                end = self.action(i)
                if not self.mood:
                    self.scan_atmosphere(i, end)
                i = max(end, i + 1)
            elif tag == "R" and i + 1 < n and t[i + 1] in "DN":
                end = max(self.np_end(i + 1), i + 1)  # a prepositional object is no subject
                self.scan_atmosphere(i, end)
                i = end
            else:
                clause_start = clause_start and tag not in "AP"
                self.scan_atmosphere(i, i + 1)
                i += 1


def _tokens(caption: str) -> list[str]:
    """Lower-cased tokens without boilerplate prefixes ("the video shows") and without negated clauses.

    A punctuation-delimited clause with a negation describes what is absent ("there are no other people
    visible"), so it is dropped whole.
    """
    text = caption.lower().replace("\u2019", "'").replace(" 's ", "'s ").replace("close up", "close-up")
    text = _BOILERPLATE.sub(_keep_lead, text)
    words = _TOKEN.findall(text)
    if lx.NEGATIONS.isdisjoint(words) and "n't" not in text:
        return words
    kept: list[str] = []
    start = 0
    for end, word in enumerate([*words, "."]):
        if word in _PUNCTUATION:
            clause = words[start : end + 1]
            if lx.NEGATIONS.isdisjoint(clause) and not any(x.endswith("n't") for x in clause):
                kept.extend(clause)
            start = end + 1
    return kept


def _keep_lead(match: re.Match[str]) -> str:
    return match.group(1)


def extract_phrases(caption: str) -> CaptionPhrases:
    """Extract scene, action, atmosphere and subject phrases from one caption.

    Args:
        caption: Free text, typically one to three sentences describing an image or a video.

    Returns:
        Normalized (`normalize_phrase`), de-duplicated phrases per kind in order of appearance; scenes
        have 2-8 words, the other kinds 1-8. Empty or punctuation-only input gives an empty `CaptionPhrases`.
    """
    words = _tokens(caption)
    if not words:
        return CaptionPhrases()
    chunker = _Chunker(words, lx.tag_words(words))
    chunker.run()
    return CaptionPhrases(
        scenes=tuple(chunker.scenes),
        actions=tuple(chunker.actions),
        atmospheres=tuple(chunker.atmospheres),
        subjects=tuple(chunker.subjects),
    )
