"""Deterministic English sentences for the synthetic corpus: commands, numbers, dates, times, everyday talk.

Output is already normalised the way ``TextNormalizer`` would leave it: lowercase words separated by single
spaces, no punctuation, numbers spelled out. Sentences are short (3-12 words, about 1-4 s of speech).
"""

from __future__ import annotations

import random
from collections.abc import Callable


def _words(text: str) -> tuple[str, ...]:
    """Word lists are written as one string each: easier to read and extend than quoted lists."""
    return tuple(text.split())


_ONES = _words(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
)
_TENS = _words("_ _ twenty thirty forty fifty sixty seventy eighty ninety")
_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
    "twelve": "twelfth",
}  # fmt: skip
MONTHS = _words("january february march april may june july august september october november december")
WEEKDAYS = _words("monday tuesday wednesday thursday friday saturday sunday")

ROOMS = _words(
    "kitchen bedroom bathroom garage office hallway basement attic garden nursery study pantry porch "
    "balcony cellar library laundry lounge"
)
DEVICES = _words(
    "lights lamp heater fan radio television oven kettle dishwasher printer speaker projector "
    "computer charger camera alarm sprinkler blinds curtains"
)
FOODS = _words(
    "milk bread butter cheese eggs apples bananas oranges grapes lemons carrots potatoes onions tomatoes "
    "garlic pepper salt sugar flour rice pasta noodles beans soup coffee tea juice honey yogurt chicken "
    "fish bacon sausages cereal cookies chocolate peanuts almonds lettuce spinach cucumbers mushrooms "
    "strawberries blueberries pineapple melon peaches pears plums cherries olives vinegar"
)
ANIMALS = _words(
    "dog cat horse cow sheep goat pig rabbit mouse bird owl eagle duck goose chicken fox wolf bear deer "
    "lion tiger zebra giraffe monkey elephant whale dolphin shark turtle frog snake bee butterfly spider"
)
COLORS = _words("red blue green yellow orange purple pink brown black white gray silver golden")
ADJECTIVES = _words(
    "big small old new quiet loud warm cold bright dark early late quick slow happy tired busy lazy "
    "clean dirty empty heavy light soft hard cheap expensive fresh strange simple careful friendly "
    "gentle honest polite brave clever calm lucky famous modern ancient narrow wide shallow deep "
    "smooth rough sweet bitter sour spicy delicious wonderful terrible beautiful"
)
PLACES = _words(
    "station airport museum bakery pharmacy hospital school university park beach market supermarket "
    "restaurant cinema theater stadium bank post office church bridge harbor village mountain forest "
    "river lake island castle farm factory hotel library gallery zoo"
)
PEOPLE = _words(
    "mother father sister brother grandmother grandfather uncle aunt cousin neighbor friend teacher "
    "doctor nurse driver farmer baker painter pilot student manager engineer lawyer chef waiter "
    "gardener musician writer scientist"
)
NAMES = _words(
    "anna ben clara david emma frank grace henry isabel jack kate leo maria nora oscar paul rachel "
    "sam tom victor wendy alice peter lucy george helen james laura martin sophie"
)
OBJECTS = _words(
    "book letter umbrella bicycle ticket wallet key phone jacket hat scarf shoes glasses bottle cup "
    "plate bowl spoon knife fork chair table window door picture map newspaper magazine pencil "
    "notebook bag suitcase blanket pillow mirror clock basket box ladder hammer towel candle"
)
VERBS_PAST = _words(
    "found lost bought sold painted cleaned opened closed borrowed returned carried dropped fixed "
    "broke wrapped washed moved hid"
)
MUSIC = _words("jazz rock classical pop blues country reggae folk soul piano guitar")
WEATHER = _words("sunny cloudy rainy windy foggy snowy stormy")
UNITS = _words("minutes hours seconds days weeks")
TIME_OF_DAY = ("in the morning", "in the afternoon", "in the evening", "at night")


def number_words(n: int) -> str:
    """Spell out ``0 <= n < 1_000_000`` in words ("four hundred and twelve")."""
    if not 0 <= n < 1_000_000:
        raise ValueError(f"number_words supports 0 <= n < 1000000, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = "" if n % 100 == 0 else " and " + number_words(n % 100)
        return _ONES[n // 100] + " hundred" + rest
    rest = "" if n % 1000 == 0 else (" and " if n % 1000 < 100 else " ") + number_words(n % 1000)
    return number_words(n // 1000) + " thousand" + rest


def plural(noun: str) -> str:
    """English plural of a noun from the word lists ("box" -> "boxes", "knife" -> "knives")."""
    irregular = {"knife": "knives", "mouse": "mice", "sheep": "sheep", "fish": "fish", "deer": "deer"}
    if noun in irregular:
        return irregular[noun]
    if noun.endswith("s"):  # already plural: glasses, shoes
        return noun
    if noun.endswith(("x", "ch", "sh")):
        return noun + "es"
    return noun + "s"


def ordinal_words(n: int) -> str:
    """Spell out an ordinal, ``1 <= n < 100`` ("twenty first")."""
    words = number_words(n).split()
    last = words[-1]
    if last in _ORDINALS:
        words[-1] = _ORDINALS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year_words(year: int) -> str:
    """Spell a year the way it is spoken ("nineteen eighty four", "two thousand and nine")."""
    if 2000 <= year < 2010:
        return number_words(year)
    high, low = divmod(year, 100)
    if low == 0:
        return number_words(high) + " hundred"
    return number_words(high) + " " + (number_words(low) if low >= 10 else "oh " + number_words(low))


def time_words(hour: int, minute: int) -> str:
    """Spoken clock time ("seven thirty", "ten o clock", "five past nine")."""
    if minute == 0:
        return f"{number_words(hour)} o clock"
    if minute == 15:
        return f"quarter past {number_words(hour)}"
    if minute < 10:
        return f"{number_words(minute)} past {number_words(hour)}"
    return f"{number_words(hour)} {number_words(minute)}"


def _command(r: random.Random) -> str:
    options = (
        lambda: f"turn {r.choice(['on', 'off'])} the {r.choice(ROOMS)} {r.choice(DEVICES)}",
        lambda: f"set a timer for {number_words(r.randint(1, 90))} {r.choice(UNITS)}",
        lambda: f"play some {r.choice(MUSIC)} music in the {r.choice(ROOMS)}",
        lambda: f"set the temperature to {number_words(r.randint(15, 30))} degrees",
        lambda: f"set the volume to {number_words(r.randint(1, 10))}",
        lambda: f"remind me to call my {r.choice(PEOPLE)} {r.choice(['today', 'tomorrow', 'tonight'])}",
        lambda: f"add {r.choice(FOODS)} and {r.choice(FOODS)} to my shopping list",
        lambda: f"{r.choice(['open', 'close', 'lock', 'unlock'])} the {r.choice(ROOMS)} door please",
        lambda: f"dim the {r.choice(ROOMS)} lights to {number_words(r.randrange(10, 100, 10))} percent",
        lambda: f"how do i get to the {r.choice(PLACES)}",
    )
    return r.choice(options)()


def _numbers(r: random.Random) -> str:
    options = (
        lambda: f"my number is {' '.join(number_words(r.randint(0, 9)) for _ in range(r.randint(4, 7)))}",
        lambda: f"it costs {number_words(r.randint(2, 999))} dollars",
        lambda: f"there were {number_words(r.randint(2, 5000))} people at the {r.choice(PLACES)}",
        lambda: f"we need {number_words(r.randint(2, 40))} {plural(r.choice(OBJECTS))} for the party",
        lambda: f"room {number_words(r.randint(100, 999))} is on the {ordinal_words(r.randint(1, 12))} floor",
    )
    return r.choice(options)()


def _date_or_time(r: random.Random) -> str:
    day = f"the {ordinal_words(r.randint(1, 28))} of {r.choice(MONTHS)}"
    clock = time_words(r.randint(1, 12), r.choice([0, 5, 10, 15, 20, 30, 45, 50]))
    options = (
        lambda: f"the meeting is on {r.choice(WEEKDAYS)} at {clock}",
        lambda: f"she was born on {day} {year_words(r.randint(1920, 2023))}",
        lambda: f"wake me up at {clock} {r.choice(TIME_OF_DAY)}",
        lambda: f"the {r.choice(['train', 'bus', 'flight'])} leaves at {clock}",
        lambda: f"my appointment is on {day}",
        lambda: f"what will the weather be like on {r.choice(WEEKDAYS)}",
    )
    return r.choice(options)()


def _everyday(r: random.Random) -> str:
    options = (
        lambda: f"{r.choice(NAMES)} {r.choice(VERBS_PAST)} the {r.choice(ADJECTIVES)} {r.choice(OBJECTS)}",
        lambda: f"the {r.choice(ADJECTIVES)} {r.choice(ANIMALS)} is sleeping near the {r.choice(PLACES)}",
        lambda: f"i need to buy some {r.choice(FOODS)} and {r.choice(FOODS)}",
        lambda: f"my {r.choice(PEOPLE)} has a {r.choice(COLORS)} {r.choice(OBJECTS)}",
        lambda: f"it will be {r.choice(WEATHER)} and {r.choice(ADJECTIVES)} {r.choice(TIME_OF_DAY)}",
        lambda: f"we walked to the {r.choice(PLACES)} with {r.choice(NAMES)}",
        lambda: f"the {r.choice(PEOPLE)} said the {r.choice(FOODS)} was {r.choice(ADJECTIVES)}",
        lambda: f"have you seen my {r.choice(COLORS)} {r.choice(OBJECTS)}",
        lambda: f"{r.choice(NAMES)} and {r.choice(NAMES)} are visiting the {r.choice(PLACES)}",
        lambda: f"a {r.choice(COLORS)} {r.choice(ANIMALS)} ran across the {r.choice(ADJECTIVES)} road",
    )
    return r.choice(options)()


_GENERATORS: tuple[tuple[Callable[[random.Random], str], float], ...] = (
    (_command, 0.3),
    (_numbers, 0.15),
    (_date_or_time, 0.2),
    (_everyday, 0.35),
)


def generate_sentences(count: int, seed: int = 0) -> list[str]:
    """``count`` sentences, identical for the same ``seed``.

    Args:
        count: number of sentences.
        seed: seed of the private ``random.Random``.

    Returns:
        Normalised sentences (lowercase words, no digits or punctuation).
    """
    r = random.Random(seed)
    functions = [f for f, _ in _GENERATORS]
    weights = [w for _, w in _GENERATORS]
    return [r.choices(functions, weights)[0](r) for _ in range(count)]


def vocabulary(num_sentences: int = 20000, seed: int = 0) -> set[str]:
    """Distinct words in ``num_sentences`` generated sentences (the generator's effective vocabulary)."""
    return {word for sentence in generate_sentences(num_sentences, seed) for word in sentence.split()}
