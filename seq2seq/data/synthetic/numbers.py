"""Numbers, digit strings, clock times, dates and amounts as people say them, each in several ways.

Every function returns normalised text (lowercase words, no digits or punctuation), as ``TextNormalizer``
would leave it, and takes a ``random.Random`` where a choice between phrasings is made.
"""

from __future__ import annotations

import random


def _words(text: str) -> tuple[str, ...]:
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
CURRENCIES = (("dollar", "cent"), ("euro", "cent"), ("pound", "penny"))


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


def spoken_number(n: int, r: random.Random) -> str:
    """``n`` as a number or, sometimes, the informal way ("a hundred and five", "twelve hundred")."""
    if 100 <= n < 200 and r.random() < 0.4:
        return "a " + number_words(n)
    if 1100 <= n < 10000 and n % 100 == 0 and n % 1000 and r.random() < 0.5:
        return number_words(n // 100) + " hundred"
    return number_words(n)


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


def digit_string(count: int, r: random.Random) -> str:
    """A string of digits read one by one, zero as "zero" or "oh", repeats sometimes as "double"."""
    digits = [r.randint(0, 9) for _ in range(count)]
    zero = r.choice(("zero", "oh"))
    words, i = [], 0
    while i < len(digits):
        name = zero if digits[i] == 0 else _ONES[digits[i]]
        if i + 1 < len(digits) and digits[i + 1] == digits[i] and r.random() < 0.3:
            words.append(f"double {name}")
            i += 2
        else:
            words.append(name)
            i += 1
    return " ".join(words)


def clock_time(r: random.Random) -> str:
    """A time of day, in one of several phrasings ("seven thirty", "half past seven", "nineteen thirty")."""
    hour, minute = (
        r.randint(1, 12),
        r.choice([0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, r.randint(1, 59)]),
    )
    style = r.randrange(6)
    if minute == 0:
        return r.choice((f"{number_words(hour)} o'clock", number_words(hour), f"{number_words(hour)} sharp"))
    if style == 0 and minute in (15, 30, 45):
        return {15: f"quarter past {number_words(hour)}", 30: f"half past {number_words(hour)}",
                45: f"quarter to {number_words(hour % 12 + 1)}"}[minute]  # fmt: skip
    if style == 1 and minute < 30:
        return f"{number_words(minute)} past {number_words(hour)}"
    if style == 2 and minute > 30:
        return f"{number_words(60 - minute)} to {number_words(hour % 12 + 1)}"
    if style == 3:
        return f"{number_words(hour + 12 if hour < 12 else hour)} {minute_words(minute)}"
    suffix = r.choice(("", "", " am", " pm", " in the morning", " in the evening"))
    return f"{number_words(hour)} {minute_words(minute)}{suffix}"


def minute_words(minute: int) -> str:
    return f"oh {number_words(minute)}" if minute < 10 else number_words(minute)


def date_phrase(r: random.Random) -> str:
    """A calendar date ("the third of may", "may third", "may the third twenty twenty four")."""
    month, day = r.choice(MONTHS), ordinal_words(r.randint(1, 31 if r.random() < 0.5 else 28))
    phrase = r.choice((f"the {day} of {month}", f"{month} {day}", f"{month} the {day}"))
    if r.random() < 0.35:
        phrase += " " + year_words(r.randint(1900, 2039))
    return phrase


def duration_phrase(r: random.Random) -> str:
    """A length of time ("an hour and a half", "ninety seconds", "two hours and twenty minutes")."""
    unit = r.choice(("second", "minute", "hour", "day", "week"))
    n = r.randint(1, 90)
    if r.random() < 0.2:
        return r.choice(("an hour and a half", "half an hour", "a couple of minutes", "a few seconds"))
    if unit == "hour" and r.random() < 0.4:
        return f"{number_words(n % 5 + 1)} hours and {number_words(r.randint(1, 59))} minutes"
    return f"{number_words(n)} {unit}{'' if n == 1 else 's'}" if n > 1 else f"one {unit}"


def amount_phrase(r: random.Random) -> str:
    """A sum of money ("three dollars and fifty cents", "three fifty", "twelve pounds", "a hundred euros")."""
    major, minor = r.choice(CURRENCIES)
    whole, cents = r.randint(1, 2000), r.randint(1, 99)
    majors = major + ("" if whole == 1 else "s")
    minors = (
        minor + ("" if cents == 1 else ("s" if minor == "cent" else ""))
        if minor == "cent"
        else ("penny" if cents == 1 else "pence")
    )
    match r.randrange(5):
        case 0:
            return f"{spoken_number(whole, r)} {majors}"
        case 1:
            return f"{number_words(whole)} {majors} and {number_words(cents)} {minors}"
        case 2:
            return f"{number_words(whole % 100 or 1)} {number_words(cents if cents >= 10 else cents + 10)}"
        case 3:
            return f"{number_words(cents)} {minors}"
        case _:
            return f"{number_words(whole)} point {' '.join(_ONES[int(c)] for c in str(cents))} {majors}"


def quantity_phrase(r: random.Random) -> str:
    """A count or measure ("forty two", "three point five", "one and a half", "a dozen")."""
    match r.randrange(5):
        case 0:
            return f"{number_words(r.randint(0, 99))} point {_ONES[r.randint(0, 9)]}"
        case 1:
            return r.choice(("a dozen", "half a dozen", "one and a half", "a couple", "a few"))
        case 2:
            return spoken_number(r.randint(100, 99999), r)
        case _:
            return number_words(r.randint(2, 99))
