"""Sentence patterns of the synthetic corpus, each tagged with its domain and whether training sees it.

A pattern is a function of a random source and a :class:`Slots` (which words it may draw). Patterns are
split once, here, by hand: training text uses the ``train`` patterns only; the held-out ones phrase the
same domains (digits, times, dates, alarms, devices, amounts) differently, or are open-vocabulary
statements, questions and requests the training grammar never produces.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from seq2seq.data.synthetic import numbers as n
from seq2seq.data.synthetic.lexicon import Lexicon


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ROOMS = _words(
    "kitchen bedroom bathroom garage office hallway basement attic garden nursery study pantry porch "
    "balcony cellar library laundry lounge living dining"
)
DEVICES = _words(
    "lights lamp heater fan radio television oven kettle dishwasher printer speaker projector computer "
    "charger camera sprinkler blinds curtains thermostat microwave fridge dryer washer router doorbell"
)
NAMES = _words(
    "anna ben clara david emma frank grace henry isabel jack kate leo maria nora oscar paul rachel sam tom "
    "victor wendy alice peter lucy george helen james laura martin sophie olivia liam noah ava mia ethan "
    "lucas amelia harper elijah logan chloe zoe mason aiden priya arjun wei mei hiroshi yuki carlos sofia "
    "diego lena omar fatima ahmed amir leila ivan olga katya pierre marie hans ingrid sven astrid kofi "
    "amara tariq nadia rosa mateo valentina jasmine tyler brandon megan kevin susan linda karen michael "
    "robert william richard joseph thomas charles daniel matthew anthony steven andrew joshua brian"
)
SURNAMES = _words(
    "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez wilson "
    "anderson taylor moore jackson white harris clark lewis walker young allen king wright scott green "
    "baker adams nelson hill campbell mitchell roberts carter phillips evans turner parker collins "
    "edwards stewart morris murphy cook rogers morgan cooper peterson reed bailey kelly howard ward cox "
    "patel kim nguyen chen wang singh khan ali schmidt muller rossi silva novak kowalski"
)
PEOPLE = _words(
    "mother father sister brother grandmother grandfather uncle aunt cousin neighbor friend teacher doctor "
    "nurse driver farmer baker painter pilot student manager engineer lawyer chef waiter gardener musician "
    "writer scientist boss colleague landlord dentist plumber"
)
BASE_VERBS = _words(
    "find buy sell paint clean open close borrow return carry drop fix break wrap wash move hide bring "
    "take make send read write call visit check order book cancel answer finish start build cook drive "
    "watch follow explain remember forget describe share teach learn change choose print sign pay"
)
PAST_VERBS = _words(
    "found bought sold painted cleaned opened closed borrowed returned carried dropped fixed broke wrapped "
    "washed moved hid brought took made sent read wrote called visited checked ordered booked cancelled "
    "answered finished started built cooked drove watched followed explained remembered forgot described"
)
TIME_WORDS = _words("today tomorrow tonight yesterday later soon now")


@dataclass(frozen=True)
class Slots:
    """Where a pattern's open slots draw words from: one lexicon, or a mix with a share of held-out words."""

    main: Lexicon
    held_out: Lexicon | None = None
    held_out_share: float = 0.0

    def word(self, r: random.Random, word_class: str = "noun") -> str:
        use_held_out = self.held_out is not None and r.random() < self.held_out_share
        return (self.held_out if use_held_out else self.main).draw(word_class, r)


Pattern = Callable[[random.Random, Slots], str]


@dataclass(frozen=True)
class Family:
    """A sentence pattern: its domain and whether training text may use it."""

    name: str
    domain: str
    train: bool
    make: Pattern


def _name(r: random.Random) -> str:
    return r.choice(NAMES) + (" " + r.choice(SURNAMES) if r.random() < 0.3 else "")


def _c(*options: str) -> Callable[[random.Random], str]:
    return lambda r: r.choice(options)


_ROOM_DEVICE = lambda r: f"{r.choice(ROOMS)} {r.choice(DEVICES)}"  # noqa: E731

FAMILIES: tuple[Family, ...] = (
    # --- digits -------------------------------------------------------------------------------------
    Family("phone", "digits", True, lambda r, s: f"my number is {n.digit_string(r.randint(4, 10), r)}"),
    Family("code", "digits", True, lambda r, s: f"the code is {n.digit_string(r.randint(3, 6), r)}"),
    Family("dial", "digits", True, lambda r, s: f"dial {n.digit_string(r.randint(3, 10), r)} please"),
    Family("digits_bare", "digits", True, lambda r, s: n.digit_string(r.randint(3, 8), r)),
    Family("pin", "digits", False, lambda r, s: f"my pin is {n.digit_string(4, r)}"),
    Family(
        "reach", "digits", False, lambda r, s: f"you can reach me on {n.digit_string(r.randint(6, 10), r)}"
    ),
    Family(
        "account",
        "digits",
        False,
        lambda r, s: f"the account ends in {n.digit_string(4, r)} {_c('right', 'i think', '')(r)}".strip(),
    ),
    # --- times ---------------------------------------------------------------------------------------
    Family(
        "meeting",
        "times",
        True,
        lambda r, s: f"the meeting is on {r.choice(n.WEEKDAYS)} at {n.clock_time(r)}",
    ),
    Family(
        "leaves",
        "times",
        True,
        lambda r, s: f"the {_c('train', 'bus', 'flight', 'ferry')(r)} leaves at {n.clock_time(r)}",
    ),
    Family("what_time", "times", True, lambda r, s: f"it is {n.clock_time(r)}"),
    Family(
        "opens",
        "times",
        False,
        lambda r, s: (
            f"the {r.choice(('shop', 'bank', 'museum', 'pool'))} "
            f"opens at {n.clock_time(r)} on {r.choice(n.WEEKDAYS)}s"
        ),
    ),
    Family(
        "lets_meet",
        "times",
        False,
        lambda r, s: f"let's meet at {n.clock_time(r)} {_c('then', 'okay', '')(r)}".strip(),
    ),
    # --- alarms and timers ---------------------------------------------------------------------------
    Family("alarm", "alarms", True, lambda r, s: f"set an alarm for {n.clock_time(r)}"),
    Family("timer", "alarms", True, lambda r, s: f"set a timer for {n.duration_phrase(r)}"),
    Family("wake", "alarms", True, lambda r, s: f"wake me up at {n.clock_time(r)}"),
    Family(
        "remind",
        "alarms",
        True,
        lambda r, s: f"remind me to {r.choice(BASE_VERBS)} the {s.word(r)} {r.choice(TIME_WORDS)}",
    ),
    Family("countdown", "alarms", False, lambda r, s: f"start a countdown of {n.duration_phrase(r)}"),
    Family("alarm_move", "alarms", False, lambda r, s: f"move my alarm to {n.clock_time(r)}"),
    Family(
        "alarm_cancel",
        "alarms",
        False,
        lambda r, s: f"cancel the {n.clock_time(r)} alarm {_c('please', 'for tomorrow', '')(r)}".strip(),
    ),
    # --- dates ---------------------------------------------------------------------------------------
    Family("born", "dates", True, lambda r, s: f"{_name(r)} was born on {n.date_phrase(r)}"),
    Family("appointment", "dates", True, lambda r, s: f"my appointment is on {n.date_phrase(r)}"),
    Family("due", "dates", True, lambda r, s: f"the {s.word(r)} is due on {n.date_phrase(r)}"),
    Family("until", "dates", False, lambda r, s: f"the offer is valid until {n.date_phrase(r)}"),
    Family("moved_in", "dates", False, lambda r, s: f"we moved in on {n.date_phrase(r)}"),
    # --- devices -------------------------------------------------------------------------------------
    Family("turn", "devices", True, lambda r, s: f"turn {_c('on', 'off')(r)} the {_ROOM_DEVICE(r)}"),
    Family(
        "dim",
        "devices",
        True,
        lambda r, s: f"dim the {r.choice(ROOMS)} lights to {n.number_words(r.randrange(10, 100, 5))} percent",
    ),
    Family("volume", "devices", True, lambda r, s: f"set the volume to {n.number_words(r.randint(0, 100))}"),
    Family(
        "temperature", "devices", True, lambda r, s: f"set the temperature to {n.quantity_phrase(r)} degrees"
    ),
    Family("switch", "devices", False, lambda r, s: f"switch the {_ROOM_DEVICE(r)} {_c('on', 'off')(r)}"),
    Family("is_on", "devices", False, lambda r, s: f"is the {_ROOM_DEVICE(r)} still on"),
    Family(
        "brighter",
        "devices",
        False,
        lambda r, s: f"make the {r.choice(ROOMS)} {_c('brighter', 'darker', 'warmer', 'cooler')(r)}",
    ),
    Family("lock", "devices", False, lambda r, s: f"{_c('lock', 'unlock')(r)} the {r.choice(ROOMS)} door"),
    # --- amounts -------------------------------------------------------------------------------------
    Family("costs", "amounts", True, lambda r, s: f"it costs {n.amount_phrase(r)}"),
    Family("paid", "amounts", True, lambda r, s: f"{_name(r)} paid {n.amount_phrase(r)} for the {s.word(r)}"),
    Family("transfer", "amounts", True, lambda r, s: f"transfer {n.amount_phrase(r)} to {_name(r)}"),
    Family("how_much", "amounts", True, lambda r, s: f"we need {n.quantity_phrase(r)} {s.word(r, 'plural')}"),
    Family("owe", "amounts", False, lambda r, s: f"i owe you {n.amount_phrase(r)}"),
    Family("total", "amounts", False, lambda r, s: f"the total comes to {n.amount_phrase(r)}"),
    Family("send_money", "amounts", False, lambda r, s: f"can you send {_name(r)} {n.amount_phrase(r)}"),
    # --- open: statements, questions, requests ------------------------------------------------------
    Family(
        "saw", "open", True, lambda r, s: f"i saw a {s.word(r, 'adjective')} {s.word(r)} near the {s.word(r)}"
    ),
    Family(
        "said",
        "open",
        True,
        lambda r, s: f"{_name(r)} said that the {s.word(r)} was {s.word(r, 'adjective')}",
    ),
    Family(
        "past",
        "open",
        True,
        lambda r, s: f"the {r.choice(PEOPLE)} {s.word(r, 'past')} the {s.word(r, 'plural')}",
    ),
    Family(
        "we_went",
        "open",
        True,
        lambda r, s: f"we went to the {s.word(r)} {_c('with', 'without', 'after')(r)} {_name(r)}",
    ),
    Family("do_you", "open", True, lambda r, s: f"do you know where the {s.word(r, 'plural')} are"),
    Family(
        "can_you",
        "open",
        True,
        lambda r, s: f"can you {r.choice(BASE_VERBS)} the {s.word(r)} {r.choice(TIME_WORDS)}",
    ),
    Family("there_is", "open", True, lambda r, s: f"there is a {s.word(r)} in the {s.word(r)}"),
    Family(
        "likes",
        "open",
        True,
        lambda r, s: f"my {r.choice(PEOPLE)} really likes {s.word(r, 'gerund')} and {s.word(r, 'plural')}",
    ),
    Family(
        "adverb",
        "open",
        True,
        lambda r, s: (
            f"she {s.word(r, 'adverb')} {r.choice(PAST_VERBS)} the {s.word(r, 'adjective')} {s.word(r)}"
        ),
    ),
    Family(
        "list", "open", True, lambda r, s: f"{s.word(r)} {s.word(r)} {s.word(r, 'plural')} and {s.word(r)}"
    ),
    Family(
        "because",
        "open",
        True,
        lambda r, s: f"we stayed home because the {s.word(r)} was {s.word(r, 'adjective')}",
    ),
    Family(
        "how_long",
        "open",
        True,
        lambda r, s: f"how long does it take to {r.choice(BASE_VERBS)} a {s.word(r)}",
    ),
    Family(
        "think",
        "open",
        False,
        lambda r, s: (
            f"i think the {s.word(r)} is {_c('more', 'less')(r)} {s.word(r, 'adjective')} "
            f"than the {s.word(r)}"
        ),
    ),
    Family(
        "why_did",
        "open",
        False,
        lambda r, s: f"why did {_name(r)} {r.choice(BASE_VERBS)} the {s.word(r, 'plural')}",
    ),
    Family(
        "could_you",
        "open",
        False,
        lambda r, s: f"could you please {r.choice(BASE_VERBS)} my {s.word(r)} before {r.choice(n.WEEKDAYS)}",
    ),
    Family(
        "have_you",
        "open",
        False,
        lambda r, s: (
            f"have you ever {_c('seen', 'heard', 'tried')(r)} a {s.word(r, 'adjective')} {s.word(r)}"
        ),
    ),
    Family(
        "works_at",
        "open",
        False,
        lambda r, s: (
            f"{_name(r)} works at the {s.word(r)} {_c('downtown', 'near the station', 'by the river')(r)}"
        ),
    ),
    Family(
        "if_then",
        "open",
        False,
        lambda r, s: (
            f"if the {s.word(r)} is {s.word(r, 'adjective')} we will {r.choice(BASE_VERBS)} it "
            f"{r.choice(TIME_WORDS)}"
        ),
    ),
    Family(
        "weather",
        "open",
        False,
        lambda r, s: f"the weather was {s.word(r, 'adjective')} so we {r.choice(PAST_VERBS)} the {s.word(r)}",
    ),
    Family(
        "dont_forget",
        "open",
        False,
        lambda r, s: f"don't forget to bring the {s.word(r, 'plural')} and the {s.word(r)}",
    ),
    Family("what_is", "open", False, lambda r, s: f"what is the {s.word(r)} of the {s.word(r, 'plural')}"),
    Family(
        "gerund_is",
        "open",
        False,
        lambda r, s: f"{s.word(r, 'gerund')} {s.word(r, 'plural')} is {s.word(r, 'adjective')}",
    ),
)


def families(domain: str | None = None, train: bool | None = None) -> tuple[Family, ...]:
    """The families of a domain (``"open"``, ``"digits"``, ...; None: all) and a side of the split."""
    return tuple(
        f for f in FAMILIES if (domain is None or f.domain == domain) and (train is None or f.train == train)
    )


DOMAINS: tuple[str, ...] = tuple(dict.fromkeys(f.domain for f in FAMILIES))
