"""The commands the README and docs/ show, checked against the real `lc0distill` parser so the docs cannot drift.

Every line that starts with `lc0distill ` in a fenced code block (with its continuation lines: after a
backslash, or indented options) or in an inline `code` span is split with shlex (stopping at a `#` comment, a
pipe, a redirection or `&&`) and checked: each subcommand exists, each `--flag` is one that subcommand defines
(options shown as `[--a N | --b]`, `(--fen FEN | --moves ...)` or `NET...` included), a literal value of a
flag with choices is one of them; a code-block line without placeholders or optional parts parses as
`lc0distill` parses it, and a `train` line with a real recipe gives a valid config with its overrides.
`python tools/X.py` lines name a tool that exists and flags it defines; the repository paths these lines and
`python -m pytest` lines name (configs/, tools/, tests/) exist.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from lc0distill.cli import build_parser, parse_arguments

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^\s*```")
INLINE_CODE = re.compile(r"`([^`]+)`")
COMMAND = re.compile(r"^(lc0distill\s+\S|(python tools/[\w.-]+\.py|python -m pytest)(\s|$))")  # not a bare name
CONTINUATION = re.compile(r"^\s+[\[(-]")  # an indented line of options continuing the command above it
END_OF_COMMAND = {"|", "||", "&&", ";", ">", ">>", "2>", "2>&1", "<"}
PLACEHOLDER_PART = re.compile(r"^[A-Z][A-Z0-9_]*$")  # NET, DIR, N, FILE in FILE.png, RECIPE in configs/RECIPE.yaml
REPO_PATH = re.compile(r"^(configs|tools|tests)/[\w./-]+$")


class Command:
    """A command line in a file; `whole` for one in a code block (inline code often shows a command in part)."""

    def __init__(self, source: str, line: int, tokens: list[str], whole: bool = True):
        self.source, self.line, self.tokens, self.whole = source, line, tokens, whole

    def __repr__(self) -> str:
        return f"{self.source}:{self.line}: {shlex.join(self.tokens)}"


def _tokens(text: str) -> list[str]:
    """The words of one command line up to a comment, a pipe, a redirection or a second command. A `|` inside
    brackets or parentheses separates alternatives and is kept (the checks skip it)."""
    words, depth = [], 0
    for word in shlex.split(text, comments=True):
        if depth == 0 and (word in END_OF_COMMAND or word.startswith((">", "2>"))):
            break
        depth += word.count("[") + word.count("(") - word.count("]") - word.count(")")
        words.append(word)
    return words


def commands_in(path: Path) -> list[Command]:
    """The command lines of one Markdown file: in code blocks (continuation lines joined) and inline code."""
    found: list[Command] = []
    name = str(path.relative_to(ROOT))
    prose: list[tuple[int, str]] = []  # (line number, text) of the lines outside code blocks
    in_block, current, continued = False, None, False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            in_block, current = not in_block, None
            prose.append((number, ""))  # a code block ends any inline span
        elif not in_block:
            prose.append((number, line))
        elif COMMAND.match(line.strip()):
            current = Command(name, number, _tokens(line.strip().rstrip("\\")))
            found.append(current)
        elif current is not None and (continued or CONTINUATION.match(line) or line.strip().startswith("#")):
            current.tokens += _tokens(line.strip().rstrip("\\"))
        else:
            current = None
        continued = in_block and line.rstrip().endswith("\\")
    text = "\n".join(line for _, line in prose)
    for match in INLINE_CODE.finditer(text):
        code = " ".join(match.group(1).split())
        if COMMAND.match(code):
            line = prose[text.count("\n", 0, match.start())][0]
            found.append(Command(name, line, _tokens(code), whole=False))
    return sorted(found, key=lambda command: command.line)


ALL_COMMANDS = [command for path in DOC_FILES for command in commands_in(path)]
LC0DISTILL = [command for command in ALL_COMMANDS if command.tokens[0] == "lc0distill"]
TOOLS = [command for command in ALL_COMMANDS if command.tokens[1].startswith("tools/")]


def _bare(word: str) -> str:
    """A word without the brackets, parentheses and ellipsis of a synopsis: `[--json` -> `--json`."""
    return word.replace("...", "").strip("[]()")


def _alternatives(word: str) -> list[str]:
    return [part for part in _bare(word).split("|") if part]


def _is_flag(word: str) -> bool:
    return bool(re.match(r"^--?[A-Za-z]", word))


def _has_placeholder(word: str) -> bool:
    if " " in word:  # a quoted value (a FEN, a list of moves), not a placeholder
        return False
    return any(PLACEHOLDER_PART.match(part) for part in re.split(r"[./:=,+\[\]()|]", word))


def _is_synopsis(words: list[str]) -> bool:
    """Optional parts, alternatives or repetition: a synopsis, not a command to run as written."""
    return any(word.startswith(("[", "(")) or ("=[" not in word and word.endswith(("]", ")")))
               or "..." in word or word == "|" for word in words)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _problems(command: Command) -> list[str]:
    """What is wrong with one lc0distill command line against the parser (an empty list when nothing)."""
    parser, words, path = build_parser(), command.tokens[1:], ["lc0distill"]
    while (choices := _subparsers(parser)) is not None and words and not _is_flag(_bare(words[0])):
        name = _bare(words[0])
        if name not in choices.choices:
            return [f"{' '.join(path)} has no command {name!r} (it has: {', '.join(choices.choices)})"]
        parser, words, path = choices.choices[name], words[1:], [*path, name]
    if _subparsers(parser) is not None and not any(_bare(word) in ("-h", "--help") for word in words):
        return [f"{' '.join(path)} needs a command ({', '.join(_subparsers(parser).choices)})"]
    problems = []
    known = parser._option_string_actions
    for index, word in enumerate(words):
        for flag in filter(_is_flag, _alternatives(word)):
            flag = flag.split("=", 1)[0]
            if flag not in known:
                problems.append(f"{' '.join(path)} has no option {flag}")
                continue
            action = known[flag]
            if action.choices and index + 1 < len(words) and not _is_flag(_bare(words[index + 1])):
                allowed = {str(choice) for choice in action.choices}
                for value in _alternatives(words[index + 1]):
                    if not _has_placeholder(value) and value not in allowed:
                        problems.append(f"{' '.join(path)} {flag}: {value!r} is not one of {sorted(allowed)}")
    if problems or not command.whole or _is_synopsis(words) or any(map(_has_placeholder, words)):
        return problems
    return _parse_problems(command, path)


def _parse_problems(command: Command, path: list[str]) -> list[str]:
    """A command shown as it is to be run parses as `lc0distill` parses it; a train line with a recipe of
    configs/ also gives a valid config."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            args = parse_arguments(build_parser(), command.tokens[1:])
    except SystemExit as stop:
        return [] if stop.code == 0 else [f"lc0distill refuses it: {said.getvalue().strip().splitlines()[-1:]}"]
    if path == ["lc0distill", "train"] and args.config and (ROOT / args.config).is_file():
        from lc0distill.config import load_config
        from lc0distill.errors import Lc0DistillError

        try:
            load_config(ROOT / args.config, args.overrides)
        except Lc0DistillError as error:
            return [f"its config is refused: {error}"]
    return []


def test_the_docs_show_every_command_and_enough_lines_to_check():
    assert len(DOC_FILES) >= 12, [str(path) for path in DOC_FILES]
    assert len(LC0DISTILL) >= 30, len(LC0DISTILL)
    assert len(TOOLS) >= 5, len(TOOLS)
    shown = {tuple(command.tokens[1:words]) for command in LC0DISTILL for words in (2, 3)}
    groups = _subparsers(build_parser()).choices
    every = [(name, *sub) for name, group in groups.items()
             for sub in ([(command,) for command in _subparsers(group).choices] if _subparsers(group) else [()])]
    assert len(every) >= 20, every
    assert [command for command in every if command not in shown] == [], "commands the docs never show"


@pytest.mark.parametrize("command", LC0DISTILL, ids=repr)
def test_every_lc0distill_command_in_the_docs_exists_with_its_flags(command):
    assert _problems(command) == []


@pytest.mark.parametrize("command", TOOLS, ids=repr)
def test_every_tool_in_the_docs_exists_with_its_flags(command):
    tool = ROOT / command.tokens[1]
    assert tool.is_file(), f"{command}: no {command.tokens[1]}"
    source = tool.read_text(encoding="utf-8")
    for word in command.tokens[2:]:
        for flag in filter(_is_flag, _alternatives(word)):
            flag = flag.split("=", 1)[0]
            assert f'"{flag}"' in source or f"'{flag}'" in source, f"{command}: {command.tokens[1]} has no {flag}"


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=repr)
def test_the_repository_paths_the_commands_name_exist(command):
    for word in command.tokens[1:]:
        for value in _alternatives(word.split("=", 1)[-1]):
            if REPO_PATH.match(value) and not _has_placeholder(value):
                assert (ROOT / value).exists(), f"{command}: no {value}"


def test_the_checks_catch_a_wrong_command_a_wrong_flag_and_a_wrong_choice():
    def problems(text: str) -> list[str]:
        return _problems(Command("test", 1, _tokens(text)))

    assert problems("lc0distill data play --net NET --games N --out DIR [--targets net|played]") == []
    assert problems("lc0distill data spin PATH...")
    assert problems("lc0distill data inspect PATH... [--json | --pgn]")
    assert problems("lc0distill export NET --to onnx|tflite --out FILE")
    assert problems("lc0distill net")
    assert problems("lc0distill data stats data --records 3")
    assert problems("lc0distill nets get maia-1900 extra-word")
    assert problems("lc0distill nets get NAME | nets list --verbose") == []  # the pipe ends the command
    assert problems("lc0distill train --config configs/quickstart.yaml train.no_such_key=1")


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_the_links_between_the_docs_lead_somewhere(path):
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue  # a web address
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), f"{path.relative_to(ROOT)}: {target} leads nowhere"
        if anchor:
            assert anchor in _anchors(linked), f"{path.relative_to(ROOT)}: {target}: no such heading"


def test_every_command_says_what_it_does_and_every_default_in_its_help():
    """`--help` says in one line what each command does and lists every flag with its default: a flag that has
    one (not None: "not given") names it."""
    import argparse

    from lc0distill.cli import build_parser

    missing = []

    def walk(parser, path):
        subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subcommands:
            said = {choice.dest: choice.help for choice in subcommands[0]._choices_actions}
            for name, sub in subcommands[0].choices.items():
                if not said.get(name):  # the one line `--help` of the group shows beside it
                    missing.append(f"{' '.join(path)} {name}: no one-line help")
                walk(sub, [*path, name])
            return
        for action in parser._actions:
            if not action.option_strings or action.required or action.default in (None, False, [], "==SUPPRESS=="):
                continue
            if "default" not in (action.help or ""):
                missing.append(f"{' '.join(path)} {action.option_strings[-1]} (default {action.default!r})")

    walk(build_parser(), ["lc0distill"])
    assert missing == []
