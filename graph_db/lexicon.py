"""Word lists and the coarse part-of-speech tagger used by the rule-based caption chunker in `extract`.

The word lists are frozensets built once at import; tagging is a memoized set lookup per word plus one
context pass over the caption.
"""

from __future__ import annotations


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


DETERMINERS = _words(
    "a an the this that these those his her its their my your our some any each every another both all other one "
    "several many few multiple various numerous lots two three four five six seven eight nine ten eleven twelve "
    "twenty hundred dozens"
)
NEGATIONS = _words("no not never nobody nothing none without n't")
PRONOUNS = _words(
    "he she they it we i you him them us me someone somebody something everyone everybody everything "
    "anyone anything herself himself themselves itself myself yourself others"
)
# Auxiliaries and copulas, plus perception participles that only mark a following verb ("is seen pushing").
AUXILIARIES = _words(
    "is are was were be been am 's 're s re has have had do does did can could will would may might should must "
    "seen shown heard shall"
)
# Words that end a phrase and start a new clause (or join two).
CONJUNCTIONS = _words(
    "and or but while as then when where who which whose whom because so after before until whilst whereas "
    "if although though since once also meanwhile nor yet"
)
# Prepositions that introduce a place (the scene kind). "down"/"up" double as particles.
LOCATIVE = _words(
    "in on at inside outside near beside behind under underneath beneath over above across along through "
    "around into onto toward towards past between among amongst within throughout atop against down up "
    "amid beyond below off"
)
OTHER_PREPOSITIONS = _words("to with of for about from like by via without during than despite per including")
# Multi-word prepositions, matched on token tuples; value = number of tokens.
COMPOUND_LOCATIVES: dict[tuple[str, ...], int] = {
    ("in", "front", "of"): 3,
    ("next", "to"): 2,
    ("close", "to"): 2,
    ("on", "top", "of"): 3,
    ("in", "the", "middle", "of"): 4,
    ("on", "the", "side", "of"): 4,
    ("at", "the", "edge", "of"): 4,
    ("on", "the", "edge", "of"): 4,
    ("at", "the", "top", "of"): 4,
    ("at", "the", "bottom", "of"): 4,
    ("in", "the", "center", "of"): 4,
    ("out", "of"): 2,
    ("inside", "of"): 2,
    ("outside", "of"): 2,
    ("on", "the", "shore", "of"): 4,
    ("on", "the", "back", "of"): 4,
    ("in", "the", "back", "of"): 4,
    ("at", "the", "back", "of"): 4,
    ("at", "the", "end", "of"): 4,
}
# Verb particles: after a verb and not followed by a noun phrase they belong to the verb ("jumps up").
PARTICLES = _words("up down off out away back over around together apart forward backward backwards aside home forth")
ADVERBS = _words(
    "then also again just still now first finally suddenly very really quite too even already soon later "
    "here there almost only continuously repeatedly instead well forth together once twice always often never"
)
# Words ending in -ly that are not adverbs.
LY_NOT_ADVERB = _words(
    "family belly jelly fly holly bully lily rally ally reply supply apply july italy sally tally jolly silly "
    "ugly friendly lovely lonely curly early daily elderly hilly chilly lively oily smelly holy only butterfly "
    "firefly dragonfly assembly anomaly bubbly comply rely hourly weekly monthly yearly costly wooly woolly "
    "fully gully melancholy"
)
# -ing words that are nouns (or prepositions), never the head of an action.
ING_NOUNS = _words(
    "building buildings ceiling clothing evening evenings morning mornings wedding weddings thing things "
    "something anything nothing everything king ring rings string strings spring wing wings sibling siblings "
    "pudding stuffing icing frosting dressing seasoning seasonings topping toppings filling railing railings "
    "awning lightning bedding dumpling dumplings during ping sling swing sing bring sting fling cling wring "
    "ding bling ceiling earring earrings painting paintings drawing drawings beijing darjeeling viking "
    "clearing landing offering settings ending lining icing booking sibling pending "
    "housing parking herring ping-pong"
)
# Nouns that look like verbs; after a noun they stay nouns ("a bike race").
NOUNISH_VERBS = _words(
    "race races slide slides paint paints dress dresses sign signs park parks water face faces head heads "
    "hand hands place places top tops plant plants light lights drink drinks snack show shows stand stands "
    "dance dances game games book books ski skis skate skates board boards field fields man men work match "
    "matches bowl bowls pan pans rock rocks box boxes fish fence line lines wave display set film bike "
    "bikes boat boats ride house coat kayak canoe raft ice color colors shot shots tie brush slice slices cut "
    "cuts kick jump fire smoke "
    "swing run walk hike surf dive shower iron train mop rake hammer drill comb spray grill roast steam wrap kiss hug "
    "butter pet sled bow pitch pass score stroll paste puree"
)
# Participles that form compound adjectives after a noun: "a grass covered field", "a half eaten sandwich".
COMPOUND_PARTICIPLES = _words(
    "covered filled lined topped eaten capped packed lit made shaped colored coloured themed based sized "
    "styled powered fried baked cooked stuffed loaded controlled operated"
)
# Verbs whose particle comes before the object ("picks up the ball", "puts on a coat"); stems.
PARTICLE_VERBS = _words(
    "pick hold held take took put turn clean set fill wipe give gave cut tie sweep swept fold roll pull lift "
    "chop break broke throw threw hand hang hung light lit zip button wrap rip tear tore mess cover bring "
    "brought shake shook blow blew warm heat point show open close shut switch cool rub scoop dish pour "
    "measure pat peel squeeze tidy tighten loosen lay laid knock knocked kick push drop try tried fix "
    "mix stir beat whisk spread slice flatten roll smooth wash rinse dry pack sum write wrote draw drew"
)
# Verbs that only set up another verb: "begins cleaning", "starts to dance", "appears to be smiling".
ASPECT_VERBS = _words(
    "begin begins began begun start starts started continue continues continued keep keeps kept proceed "
    "proceeds proceeded appear appears appeared seem seems seemed go goes went get gets got finish finishes "
    "finished stop stops stopped resume resumes resumed complete completes completed"
)
# Verbs never emitted as actions on their own.
LIGHT_VERBS = _words(
    "is are be being been has have had get gets got go goes went come comes came show shows "
    "showed shown see sees saw seen appear appears seem seems look looks let lets become becomes "
    "wear wears wearing wore worn dressed exist exists there talk-show"
)
# Verbs that describe a mood rather than an action (their phrase is an atmosphere).
MOOD_VERBS = _words("enjoying enjoy enjoys enjoyed having savoring relishing celebrating")
MOOD_OBJECTS = _words(
    "time fun conversation conversations party blast chat discussion laugh laughs day moment moments "
    "ride process view scenery weather music meal break picnic stroll surroundings herself himself themselves "
    "itself atmosphere sunshine game performance show"
)
# Heads that never make a scene (body parts, media, abstract places, clothing).
# Clothing and colours: "in a red dress" describes a subject, not a place.
CLOTHING = _words(
    "shirt shirts dress dresses jacket jackets hat hats suit suits costume costumes uniform uniforms clothes "
    "clothing coat coats pants jeans shorts skirt sweater hoodie vest glasses sunglasses helmet helmets cap "
    "caps gear outfit outfits attire swimsuit bikini tie gown robe stripes tank t-shirt top tops boots shoes "
    "socks gloves mask makeup bra underwear pajamas scarf apron trunks jersey jerseys wetsuit sweatshirt "
    "black white red blue green yellow orange purple pink brown gray grey silver gold dark colors color"
)
# Heads that never make a scene: body parts, people, media, abstract or relative places, clothing.
NON_PLACE_HEADS = CLOTHING | _words(
    "hand hands head heads face faces arm arms leg legs foot feet mouth eye eyes hair lap shoulder shoulders "
    "back body finger fingers knee knees nose ear ears neck chest belly lip lips teeth tongue toes wrist "
    "work works task tasks computer computers laptop keyboard wheel piano guitar drums instrument "
    "camera cameras phone phones video videos clip clips frame frames picture pictures photo photos image "
    "images background foreground distance air way pace time moment order addition direction left right "
    "side end view shot shots scene tv television film movie footage mind fun it them him her "
    "each other hurry mood spirits focus man men woman women person people boy boys girl girls child "
    "children kid kids baby babies lady ladies guy guys player players someone turn turns motion "
    "slow-motion unison circle circles line lines row rows place middle center bottom front rear towel "
    "towels half pieces piece slices bits cubes strips close-up closeup detail details case fact general "
    "response reaction preparation attempt effort tandem sync pairs groups teams english spanish french "
    "chinese language languages sequence progress action"
)
# Atmosphere lexicon: light, weather, time of day, season, mood and camera/style words.
ATMOSPHERE_ADJECTIVES = _words(
    "dim dimly-lit lit sunlit moonlit candlelit well-lit brightly-lit dark darkened bright sunny shady "
    "shadowy neon glowing misty foggy hazy rainy snowy stormy cloudy overcast windy icy frosty wintry "
    "dusty smoky steamy gloomy murky starry moonless breezy humid raining snowing "
    "happy sad angry excited exciting cheerful joyful playful festive lively busy crowded bustling quiet "
    "calm peaceful serene tranquil relaxing relaxed romantic lonely mysterious eerie spooky scary creepy "
    "tense dramatic chaotic cozy cosy friendly fun funny hilarious intense energetic emotional nostalgic "
    "picturesque scenic majestic idyllic dreamy magical vibrant somber sombre sunlit deserted "
    "animated cartoon cinematic vintage retro blurry blurred grainy aerial panoramic slow-motion "
    "time-lapse timelapse black-and-white monochrome close-up closeup handheld"
)
ATMOSPHERE_ADVERBS = _words(
    "dimly brightly softly happily joyfully cheerfully playfully angrily sadly excitedly enthusiastically "
    "calmly peacefully gracefully nervously lazily energetically passionately eagerly merrily wildly "
    "frantically leisurely romantically"
)
# Nouns that are themselves an atmosphere ("at sunset", "the excitement of", "a sense of calm").
ATMOSPHERE_NOUNS = _words(
    "night nighttime night-time sunset sunsets sunrise dawn dusk twilight midnight daylight daytime "
    "moonlight sunlight sunshine darkness shadows shadow fog mist haze rain snowfall storm thunderstorm "
    "lightning wind winter summer autumn "
    "thrill excitement joy fun sense mood atmosphere tension chaos celebration festivity festivities "
    "spirits hurry silence ambience ambiance vibe vibes "
    "slow-motion motion time-lapse timelapse close-up closeup silhouette silhouettes"
)
# Nouns an atmosphere adjective is kept with ("a sunny day" -> "sunny day"; "a sunny beach" -> "sunny").
ATMOSPHERE_HEADS = _words(
    "day days night nights evening morning afternoon scenery weather atmosphere mood light lighting "
    "sky skies view views time conversation environment setting ambience ambiance vibe landscape "
    "motion sunset sunrise season scene event occasion"
)
# Time-of-day/weather heads that make a locative phrase an atmosphere ("at night", "in the rain").
TIME_WEATHER_HEADS = _words(
    "night nighttime night-time sunset sunrise dawn dusk twilight midnight day daytime morning evening "
    "afternoon rain snowfall storm fog mist dark darkness sunlight sunshine moonlight shade shadows "
    "winter summer autumn motion slow-motion"
)

# Base verbs common in video/image captions; -s/-ed forms are derived in `_verb_forms`.
BASE_VERBS = _words(
    "add adjust aim apply arrange arrive ask assemble attach attack attempt bake balance bang bark bathe apply "
    "bat battle beat begin bend bite blend block blow board boil bounce bow bowl box braid break breathe "
    "brush build bump burn buy call calm carry carve cast catch celebrate change chase chat check "
    "cheer chew chase chop clap clean clear climb close coat collect comb compete complete cook cool cover reverse "
    "crack crash crawl create cross crouch crush cry cuddle cut dance deliver demonstrate describe dig dip "
    "discuss dive divide do drag drain draw dress drill drink drip drive drop dry dump dunk eat embrace "
    "enjoy enter examine exercise explain explore fall feed feel fetch fight fill film finish fish fix flip "
    "float flow fly fold follow fry gather gesture give glide grab grate graze greet grill grind grip grow "
    "guide hammer hand hang heat help hike hit hold hop hug hum hunt hurry insert interview iron jog join "
    "juggle jump kick kiss kneel knead knit knock laugh launch lay lead lean leap learn leave lick lie lift "
    "light line listen load lock look lower make marinate mash massage measure melt mix model mop move mow "
    "nod open operate order paddle paint park pass paste pat peel perform pet pick pinch pitch place plant "
    "play point polish pose pour practice practise prepare present press pretend pull pump punch push put "
    "race rake reach read relax release remove repair rest return ride rinse rip rise roast rock roll row "
    "rub run sail saute sauté scoop scrape scratch scream scrub season serve set sew shake shape shave "
    "shoot shop shout shovel show shred sift sing sip sit skate skateboard ski skip sled slice slide smash "
    "smell smile smoke snowboard soak speak spin splash split spray spread sprinkle squat squeeze stack "
    "stand stare steam stick stir stop stream stretch strike stroll struggle study stuff surf swim swing "
    "take talk tap taste teach tear tell throw tickle tie toss touch tow train transfer travel trim try "
    "tumble turn twirl twist type unwrap use vacuum wait wake walk wander warm wash watch water wave wear "
    "weld whip whisk win wipe work workout wrap wrestle write yell zoom sweep shine swirl sweat pray preach "
    "jam sketch drum dribble shuffle kayak canoe row skydive parachute bungee paraglide scuba snorkel "
    "tackle score wink cough sneeze yawn shiver sleep lounge perch rear graze bloom chirp purr growl sniff "
    "unload decorate fasten tighten loosen sand saw drizzle garnish simmer fold combine beat cream coat "
    "dice mince grease flatten cover transfer reduce preheat discard crumble toast chill freeze thaw appear seem "
    "locate situate surround focus continue keep proceed resume start go get come become fill fire giggle "
    "admire observe inspect reveal hover soar wade kayak pedal steer tilt rotate assist sort fit drape mount "
    "see watch hear think want need like love hate know believe tug exit enter approach slip round wrestle "
    "sprint dash race leap bounce swim paddle surf pull drag carry lift hold grab hug wrap shake stir pour "
    "scrub rinse wipe brush comb spray kneel lie crawl roll flip spin twirl jump hop climb descend ascend "
    "swap share hand offer receive accept refuse fall trip slip stumble collapse land dunk shoot pass "
    "block score tackle kick throw catch hit swing serve bat pitch bowl chase follow lead walk run jog "
    "ride drive park cross wave point clap cheer laugh smile cry shout sing dance play perform "
    "examine explain introduce interview host narrate announce talk speak demonstrate instruct "
    "blow puff inhale exhale chew bite lick swallow spit taste smell sniff peek glance gaze peer stare "
    "await grin frown nap doze snore rest stretch bend squat flex pose model dress undress tie untie "
    "button zip fasten buckle lace knot sew stitch knit weave braid curl straighten style trim shave wax "
    "dye bleach polish paint draw sketch color write type print fold cut tear glue tape staple pin "
    "hang mount install assemble build construct fix repair weigh sieve end raise fade capture record dismount "
    "pause let say avoid mark prevent "
    "bring engage include repeat find switch speed miss display smooth solve lose lasso wet slow vault "
    "alternate stay allow manage extend empty screw sharpen unscrew intend plug meet realize suck progress "
    "reappear fail smear stab jab sway lather scoot soap hurt secure navigate separate send strum succeed "
    "pierce dab notice disappear concentrate retrieve spend interact kill remember plan plunge address "
    "answer contain pout clench shift stroke cringe cause replace seat gather dismantle blink glare tumble "
    "prepare sit stand kneel lay flow splash rush hurry gallop trot leap dart flee escape emerge vanish "
    "hover orbit circle chase herd graze feed nurse groom lick pet stroke scratch bark howl roar chirp"
)
# Irregular past / participle forms (forms that are also common nouns are left out: ground, left, saw, found).
IRREGULAR_FORMS = _words(
    "ran sat stood rode ridden swam swum threw thrown held took taken made put cut ate eaten drank drunk "
    "drove driven fell fallen flew flown gave given gone hit laid lain led hung caught brought built "
    "bought came did done drew drawn fed felt fought grew grown heard kept knelt knew known met paid read "
    "rose risen said sold sent set shook shaken shot showed shown sang sung sank sunk slept slid spoke "
    "spoken spun split spread stole stolen stuck struck swung tore torn told thought woke woken wore worn "
    "won wrote written bit bitten blew blown broke broken chose chosen dug dove beat beaten began begun "
    "bent burnt dealt froze frozen hid hidden leapt lost meant shone shut swept wove woven lit"
)


def _verb_forms(base: str) -> tuple[str, str]:
    """Return the -s and -ed forms of a regular base verb (good enough for lookup)."""
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        third = base + "es"
    elif base.endswith("y") and base[-2:-1] not in "aeiou":
        third = base[:-1] + "ies"
    else:
        third = base + "s"
    if base.endswith("e"):
        past = base + "d"
    elif base.endswith("y") and base[-2:-1] not in "aeiou":
        past = base[:-1] + "ied"
    else:
        past = base + "ed"
    return third, past


def _build_verbs() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """Finite (base, -s, irregular past), participle (-ed) and third-person (-s) verb sets."""
    finite: set[str] = set(BASE_VERBS)
    participles: set[str] = set(IRREGULAR_FORMS)
    thirds: set[str] = set()
    for base in BASE_VERBS:
        third, past = _verb_forms(base)
        finite.add(third)
        thirds.add(third)
        participles.add(past)
        # short CVC verbs double their last consonant ("stop" -> "stopped"); add both spellings
        if len(base) <= 5 and base[-1] not in "aeiouwxy" and base[-2:-1] in set("aeiou"):
            participles.add(base + base[-1] + "ed")
    return frozenset(finite), frozenset(participles), frozenset(thirds)


FINITE_VERBS, PARTICIPLES, THIRD_PERSON = _build_verbs()

# Boilerplate clauses/prefixes of generated video captions, removed before chunking.
BOILERPLATE_PREFIXES = (
    r"(?:the |this |a )?(?:video|clip|footage|film|movie|scene|camera|shot|animation)(?: then| also| now)?"
    r" (?:shows|captures|depicts|features|displays|showcases|presents|highlights|is about|is of|focuses on"
    r"|zooms in on|zooms out to|pans to|pans over|cuts to|switches to|begins with|starts with|opens with"
    r"|ends with|transitions to|is showing|shows us)",
    r"(?:we|you|viewers) (?:can |then |also |now )?(?:see|watch|view|hear|get a view of|are shown)",
    r"(?:in|throughout) (?:this|the) (?:video|clip|footage|scene)",
    r"(?:there (?:is|are|was|were)|it is|it's) (?:also )?(?:a|an|some)? ?(?:video|clip|footage) of",
    r"(?:there (?:is|are|was|were)) (?:also )?",
    r"(?:a |an )?(?:video|clip|footage) (?:of|showing|shows|about)",
)

# Small sets used by the chunker's rules.
WH_WORDS = _words("how what why whether")
PRONOUN_CONTRACTIONS = _words("it's there's that's he's she's they're we're i'm")
SUBJECT_PRONOUNS = _words("he she it")
SUBJECT_PRONOUNS_ALL = _words("he she they we i")
SEEM_VERBS = _words("appear appears appeared seem seems seemed")
COLOURS = _words("black white red blue green yellow orange purple pink brown gray grey silver gold")
IRREGULAR_PLURALS = _words("people men women children mice geese feet teeth")
# Locative heads that make a mood/time phrase rather than a place ("in a hurry", "at night").
ATMOSPHERE_PP_HEADS = TIME_WEATHER_HEADS | _words("mood spirits hurry silence darkness")
# Noun-phrase heads that make the whole noun phrase an atmosphere ("the thrill and excitement of ...").
MOOD_NP_HEADS = _words("thrill excitement sense atmosphere joy tension chaos ambience")
SCREENS = _words("screen screens monitor tv television")
# "a close-up of a cat": the frame word is style, the noun after "of" is the subject.
FRAME_HEADS = _words("close-up closeup view picture photo image shot clip video footage photograph scene")
# People and animals: a base-form verb after one of them is a verb even in broken grammar ("a man eat banana").
AGENTS = _words(
    "man woman boy girl person baby child kid lady guy dog cat bird horse player someone people men women "
    "children kids puppy kitten animal monkey bear elephant chef athlete team crowd group couple family"
)
SUBJECT_SKIP = _words("video clip camera scene footage image picture photo view")

# -- tagging -------------------------------------------------------------------------------------------
_MAX_WORD_CACHE = 200_000
# First matching word set gives the context-free tag; order matters ("her" is D before P).
_TAG_SETS: tuple[tuple[frozenset[str], str], ...] = (
    (DETERMINERS, "D"),
    (NEGATIONS, "X"),
    (PRONOUNS | PRONOUN_CONTRACTIONS, "P"),
    (AUXILIARIES, "A"),
    (CONJUNCTIONS, "C"),
    (LOCATIVE, "L"),
    (OTHER_PREPOSITIONS, "R"),
    (WH_WORDS, "W"),
    (ADVERBS, "B"),
    (FINITE_VERBS, "V"),
    (PARTICIPLES, "E"),
    (frozenset('.,;:!?()"'), "."),
)
_word_tags: dict[str, str] = {}  # memo: the caption vocabulary is finite, and bounded by _MAX_WORD_CACHE


def lexical_tag(word: str) -> str:
    """The context-free tag of a word (see `tag_words`), memoized."""
    tag = _word_tags.get(word)
    if tag is None:
        tag = next((t for words, t in _TAG_SETS if word in words), "N")
        if tag == "N":
            if word.endswith("n't"):
                tag = "X"
            elif word.endswith("ly") and len(word) > 4 and word not in LY_NOT_ADVERB:
                tag = "B"
            elif word.endswith("ing") and len(word) > 4 and word not in ING_NOUNS:
                tag = "G"
        if len(_word_tags) < _MAX_WORD_CACHE:
            _word_tags[word] = tag
    return tag


def particle_verb(verb: str) -> bool:
    """Whether a verb form puts its particle before the object ("picks up the ball", "putting on a coat")."""
    stems = PARTICLE_VERBS
    # picks/tied, pushes/pushed, picking, taking, putting
    return any(x in stems for x in (verb, verb[:-1], verb[:-2], verb[:-3], verb[:-3] + "e", verb[:-4]))


def _plural(word: str) -> bool:
    return (word.endswith("s") and not word.endswith("ss")) or word in IRREGULAR_PLURALS


def _agrees_as_noun(verb: str, before: str) -> bool:
    """Whether a noun-like verb form fails to agree with the word before it: "a bike race", "flips and kicks"."""
    return verb in NOUNISH_VERBS and (verb in THIRD_PERSON) == _plural(before)


def tag_words(words: list[str]) -> list[str]:
    """Tag words with one letter each, resolving noun/verb ambiguity from the neighbouring words.

    Tags: D determiner, P pronoun, A auxiliary, C conjunction, L locative preposition, R other preposition,
    B adverb, W wh-word, X negation, V finite verb, E participle, G -ing verb, N noun/adjective/number,
    "." punctuation.

    Args:
        words: Lower-cased tokens.

    Returns:
        One tag per word.
    """
    get = _word_tags.get
    lex = [get(word) or lexical_tag(word) for word in words]
    lex.append(".")  # lookahead sentinel
    tags: list[str] = []
    prev, before = ".", ""
    np_open = False  # after a determiner, before the first noun: "a leisurely stroll", "the dancing girl"
    for i, word in enumerate(words):
        tag, nxt = lex[i], lex[i + 1]
        if tag == "A" and word in ("do", "does", "did") and nxt in "DN":
            tag = "V"  # main-verb "do": "does a kickflip"
        elif tag == "D" and word == "her" and nxt in "LRC.PGAX":
            tag = "P"  # object "her": "behind her", "hugs her"
        elif tag == "C" and prev == "D":
            tag = "N"  # "for a while"
        elif tag == "N":
            if prev == "A" and word in ING_NOUNS:
                tag = "G"  # "is building a sand castle"
            elif ((nxt == "D" and prev in ".C") or (before == "to" and nxt in "DP")) and word not in SUBJECT_SKIP:
                tag = "V"  # unknown verb with an object: "weigh the cabbage", "to avoid the fallen biker"
            elif (
                len(word) > 3
                and word[-1] == "s"
                and word[-2] not in "sui"
                and ((prev == "P" and before in SUBJECT_PRONOUNS) or (prev == "N" and nxt in "DP"))
            ):
                tag = "V"  # unknown -s verb after a subject: "she pauses", "the man dismounts the horse"
        if tag in "VEG":
            if np_open or (tag in "VG" and prev in "VG" and before not in ASPECT_VERBS):
                tag = "N"  # "a walk", "the fried rice", "taking place", "wearing boxing gloves"
            elif tag == "V" and (nxt == "A" or (prev in "LR" and before != "to")):
                tag = "N"  # "the city lights can be seen", "on board", "of water"
            elif tag == "G" and before == "of":
                tag = "N"  # "the thrill of snowboarding"
            elif tag == "V" and prev == "N" and nxt not in "DP" and _agrees_as_noun(word, before):
                tag = "N"  # "a bike race", "street lights" (but "the girl dances", "people dance")
            elif tag == "V" and prev == "N" and nxt not in "DPC" and i > 1 and tags[i - 2] in "DN":
                if (
                    word not in THIRD_PERSON
                    and not _plural(before)
                    and before not in AGENTS
                    and word not in ASPECT_VERBS
                ):
                    tag = "N"  # inside a noun phrase: "a baseball bat", "a ski lift", "a front flip"
            elif tag == "V" and before in ("and", "or") and i > 1 and tags[i - 2] == "N":
                if _agrees_as_noun(word, words[i - 2]):
                    tag = "N"  # "a suit and tie", "flips and kicks" (but "grabs the ball and kicks it")
            elif tag == "E" and nxt == "N" and (prev in ".CLRVG" or word in COMPOUND_PARTICIPLES):
                tag = "N"  # "chopped onions", "a grass covered field"
        np_open = tag == "D" or (np_open and tag == "B")
        tags.append(tag)
        prev, before = tag, word
    return tags
