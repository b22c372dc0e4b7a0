"""Every option of every command is checked before any work starts (docs/reliability.md, "Options").

The cases are read from the parser itself: each option of each subcommand gets the bad values of its
check in ``seq2seq.cli_checks.CHECKS`` (or of its argparse choices / flag), so an option added later is
covered without touching this file, and one added without a check fails ``test_every_option_has_a_check``.
Commands run in-process through ``seq2seq.cli.main`` with every command function replaced by a guard
that raises ``Started``: a bad value must be refused before its command is called.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import typing
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from seq2seq import cli, cli_checks

# Placeholders for paths, made real in a temporary folder by the `places` fixture.
PLACES = ("<missing>", "<file>", "<folder>", "<package>", "<config>", "<under-file>", "<new>")


class Started(Exception):
    """A command function was called: its options were accepted."""


def _subcommands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Iterator:
    """(command words, its parser, its function) for every command, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, (*words, name))
    if parser.get_default("function") is not None:
        yield words, parser, parser.get_default("function")


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _range_values(check: cli_checks.Range, kind: type) -> list[str]:
    """Below the range, zero where refused, above it, absurd, and not numbers at all."""
    low, high = check.low, check.high
    values: list[float | str] = [low - 1, -5, high + 1, 10**12, "abc", ""]
    if low > 0 or check.open_low:
        values.append(0)
    if kind is int:
        values.append("1.5")
    else:
        values += [low / 10 if low > 0 else low - 0.5, high + 0.5, 1e30, "inf", "-inf", "nan"]
    return list(dict.fromkeys(str(int(v) if kind is int and isinstance(v, float) else v) for v in values))


def bad_values(check: cli_checks.Check, kind: type) -> list[str]:
    """The values a check must refuse (``kind``: the argparse type)."""
    match check:
        case cli_checks.Range():
            return _range_values(check, kind)
        case cli_checks.Existing(kind="package"):
            return ["", "<missing>", "<folder>", "<file>"]
        case cli_checks.Existing(kind="file" | "config"):
            return ["", "<missing>", "<folder>"]
        case cli_checks.Existing(kind="folder"):
            return ["", "<missing>", "<file>"]
        case cli_checks.Existing(kind="any"):
            return ["", "<missing>"]
        case cli_checks.Output(kind="file"):
            return ["", "<folder>", "<under-file>/x.txt"]
        case cli_checks.Output(kind="folder"):
            return ["", "<file>", "<under-file>/x"]
    if check is cli_checks.device_string:
        return ["", "gpu", "cuda:x", "cuda:-1", "cpu:0", "cuda:99", "CPU"]
    if check is cli_checks.label:
        return ["", "a b", "../x", "x/y"]
    if check is cli_checks.non_empty_path:
        return ["", "  "]
    raise AssertionError(f"no bad values known for check {check!r}: add them to bad_values")


def good_value(check: cli_checks.Check) -> str:
    match check:
        case cli_checks.Range():
            return str(check.high if check.open_low else check.low)
        case cli_checks.Existing(kind=kind):
            return {"any": "<file>"}.get(kind, f"<{kind}>")
        case cli_checks.Output():
            return "<new>/out"
    return {
        cli_checks.device_string: "cpu",
        cli_checks.label: "theo",
        cli_checks.non_empty_path: "a.wav",
        cli_checks.free_text: "hello",
    }[check]


def _flag(action: argparse.Action) -> str:
    return action.option_strings[0] if action.option_strings else action.dest


def _baseline(parser: argparse.ArgumentParser, function: Callable) -> dict[str, str]:
    """A valid value for every required argument, by destination."""
    required = [a for a in _options(parser) if a.required and a.nargs != "*"]
    return {a.dest: good_value(cli_checks.option_check(function, a.dest)) for a in required}


def _argv(words, parser, function, dest: str | None = None, value: str | None = None) -> list[str]:
    """Command words, positionals, then ``--flag=value`` options; ``dest`` set to ``value``."""
    values = {**_baseline(parser, function), **({dest: value} if dest else {})}
    positional, options = [], []
    for action in _options(parser):
        if action.dest not in values:
            continue
        if action.option_strings:
            options.append(f"{action.option_strings[0]}={values[action.dest]}")
        else:
            positional.append(values[action.dest])
    return [*words, *positional, *options]


def _cases() -> tuple[list, list[str], list[str]]:
    """(words, dest, bad value, flag) cases; options with no check; free-text arguments."""
    cases, unchecked, free = [], [], []
    for words, parser, function in _subcommands(cli.build_parser()):
        for action in _options(parser):
            flag, where = _flag(action), " ".join(words)
            if isinstance(action, argparse.BooleanOptionalAction):
                values = ["maybe"]
            elif action.choices:
                values = ["bogus", ""]
            elif (check := cli_checks.option_check(function, action.dest)) is None:
                unchecked.append(f"{where} {flag}")
                continue
            elif check is cli_checks.free_text:
                free.append(f"{where} {flag}")
                continue
            else:
                values = bad_values(check, inspect.unwrap(action.type or str))
            cases += [(words, action.dest, value, flag) for value in values]
    return cases, unchecked, free


CASES, UNCHECKED, FREE_TEXT = _cases()


@pytest.fixture
def places(tmp_path, monkeypatch) -> dict[str, str]:
    """The placeholder paths, and every command replaced by a guard (cwd: an empty temporary folder)."""
    (tmp_path / "file").write_text("x\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "config.json").write_text(json.dumps({}))
    (tmp_path / "config.yaml").write_text("task: asr\n")
    paths = {
        "<missing>": tmp_path / "missing",
        "<file>": tmp_path / "file",
        "<folder>": tmp_path / "folder",
        "<package>": tmp_path / "package",
        "<config>": tmp_path / "config.yaml",
        "<under-file>": tmp_path / "file",
        "<new>": tmp_path / "new",
    }
    monkeypatch.chdir(tmp_path / "folder")
    _guard_commands(monkeypatch)
    return {name: str(path) for name, path in paths.items()}


def _guarded(function: Callable) -> Callable:
    @functools.wraps(function)
    def guard(*args, **kwargs):
        raise Started(function.__name__)

    return guard


def _guard_commands(monkeypatch) -> None:
    for name, entry in list(cli.COMMANDS.items()):
        if callable(entry):
            monkeypatch.setitem(cli.COMMANDS, name, _guarded(entry))
        else:
            help_text, group = entry
            guarded_group = functools.partial(lambda g: {k: _guarded(f) for k, f in g().items()}, group)
            monkeypatch.setitem(cli.COMMANDS, name, (help_text, guarded_group))


def _real(argv: list[str], places: dict[str, str]) -> list[str]:
    def fill(arg: str) -> str:
        for placeholder in PLACES:
            arg = arg.replace(placeholder, places[placeholder])
        return arg

    return [fill(arg) for arg in argv]


def _run(argv: list[str], capsys) -> tuple[int | str | None, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_every_option_has_a_check():
    assert UNCHECKED == [], (
        "options with neither choices, a flag action nor a check in seq2seq.cli_checks.CHECKS"
    )
    # sentences to speak and words to pronounce: any text is valid (blank ones are skipped, and a word the
    # package cannot spell is its own error line once the package is loaded)
    assert sorted(FREE_TEXT) == ["generate words", "synthesize texts"]
    assert len(CASES) > 300  # 63 options and positionals x 1 to 13 bad values when this was written


@pytest.mark.parametrize(
    "words, dest, value, flag",
    CASES,
    ids=[f"{' '.join(w)} {flag}={v!r}" for w, _, v, flag in CASES],
)
def test_bad_value_is_one_error_line_before_any_work(words, dest, value, flag, places, capsys):
    parser = dict((w, p) for w, p, _ in _subcommands(cli.build_parser()))[words]
    function = parser.get_default("function")
    argv = _real(_argv(words, parser, function, dest, value), places)
    code, out, err = _run(argv, capsys)  # a guard's Started would escape: the command was called
    assert code == 2, (argv, err)
    assert out == "" and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert flag in lines[0], lines[0]  # names the option (argparse: "argument --x"; ours: "--x=value")


@pytest.mark.parametrize("words", [w for w, _, _ in _subcommands(cli.build_parser())], ids=" ".join)
def test_valid_values_pass_the_checks(words, places, capsys):
    parser = dict((w, p) for w, p, _ in _subcommands(cli.build_parser()))[words]
    argv = _real(_argv(words, parser, parser.get_default("function")), places)
    with pytest.raises(Started):
        cli.main(argv)


def test_short_windows_are_refused_naming_the_minimum(places, capsys):
    for value in ("-5.0", "0.1", "0.99"):
        code, _, err = _run(["transcribe", places["<package>"], "a.wav", f"--window-seconds={value}"], capsys)
        assert code == 2
        assert f"--window-seconds={value}: must be in [1, 600] s" in err
        assert f"MIN_WINDOW_SECONDS={cli_checks.MIN_WINDOW_SECONDS} s" in err
    with pytest.raises(Started):
        cli.main(
            ["transcribe", places["<package>"], "a.wav", f"--window-seconds={cli_checks.MIN_WINDOW_SECONDS}"]
        )


def test_a_missing_model_is_named_as_not_a_package(places, capsys):
    code, _, err = _run(["transcribe", places["<missing>"], "a.wav"], capsys)
    expected = (
        f"model={places['<missing>']}: not a model package (no such folder); make one with `seq2seq export`"
    )
    assert code == 2 and err == f"error: {expected}\n"


def test_every_command_parameter_is_reachable_from_the_parser():
    """The walk above sees every parameter the signatures put on the command line."""
    for words, parser, function in _subcommands(cli.build_parser()):
        dests = {a.dest for a in _options(parser)}
        hints = typing.get_type_hints(function)
        for param in inspect.signature(function).parameters.values():
            on_cli = (
                cli._value_options(hints[param.name]) is not None and hints[param.name] is not cli.Override
            )
            assert (param.name in dests) == on_cli, (words, param.name)


def test_check_messages_name_their_bounds():
    assert cli_checks.Range(1, 10)(0) == "must be in [1, 10]"
    assert cli_checks.Range(0, 5, open_low=True, unit=" min")(0.0) == "must be in (0, 5] min"
    assert cli_checks.Range(0, 1)(float("nan")) is not None and cli_checks.Range(0, 1)(0.5) is None
    assert cli_checks.Existing("file")(str(Path("/") / "definitely-missing")) == "no such file"
