"""The docs stay true to the repository: every relative link and anchor resolves, and every command a doc
prints for one of the project's CLIs names only options that command's ``--help`` lists.

No server, no model: links are checked against the files and their headings' GitHub slugs; options
against the installed console scripts' help (run once per (sub)command and cached), so the check follows
the commands wherever their code lives.
"""

from __future__ import annotations

import bisect
import functools
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIS = ("classify", "classify-server", "classify-train")
# Fenced blocks whose lines are shell commands; python, toml, json and output blocks are not.
SHELL_LANGUAGES = frozenset({"", "bash", "sh", "shell", "console"})
SHELL_OPERATORS = frozenset({"&&", "||", "|", ";", "&", "(", ")"})
REDIRECTIONS = frozenset({">", ">>", "<", ">&", "&>", "2>", "2>>"})

FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
# An option's own line in click's and argparse's help: two spaces, then the option column.
HELP_OPTION_LINE = re.compile(r"^  (-\S.*?)(?:\s{2,}|$)")
HELP_OPTION = re.compile(r"(--?[A-Za-z0-9][\w-]*)(?:[ =]([A-Z{\[][^\s,]*|[A-Za-z]+\[?[^\s,]*))?")
HELP_COMMAND_LINE = re.compile(r"^  ([a-z][\w-]*)(?:\s{2,}|$)")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class Line:
    path: Path
    number: int
    text: str
    language: str | None  # the fenced block's language, None outside code blocks

    def where(self) -> str:
        return f"{shown(self.path)}:{self.number}"


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def lines_of(path: Path) -> Iterator[Line]:
    """Every line of a Markdown file, marked with the language of the fenced block it is in (if any)."""
    fence: str | None = None
    language: str | None = None
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        opened = FENCE.match(text)
        if fence is None and opened:
            fence, language = opened.group(1), opened.group(2).lower()
            continue
        if fence is not None and text.strip().startswith(fence[0] * len(fence)) and not text.strip(fence[0]):
            fence, language = None, None
            continue
        yield Line(path, number, text, language)


# -- Links and anchors --------------------------------------------------------------------------------------


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its rendered text, lower-cased, punctuation dropped, spaces → -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"(\*\*|__|\*|~~)", "", text)
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


@functools.cache
def anchors_of(path: Path) -> frozenset[str]:
    """The slugs of a page's headings (repeats get -1, -2, ... as on GitHub) and its HTML anchors."""
    counts: dict[str, int] = {}
    found: set[str] = set()
    for line in lines_of(path):
        if line.language is not None:
            continue
        found.update(HTML_ANCHOR.findall(line.text))
        heading = HEADING.match(line.text)
        if heading:
            slug = github_slug(heading.group(2))
            repeat = counts.get(slug, 0)
            counts[slug] = repeat + 1
            found.add(slug if repeat == 0 else f"{slug}-{repeat}")
    return frozenset(found)


def prose(text: str) -> str:
    """A line with its inline code spans blanked, so a bracketed example in code is not taken as a link."""
    return INLINE_CODE.sub(lambda match: " " * len(match.group(0)), text)


def link_problems(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for line in lines_of(path):
        if line.language is not None:
            continue
        for target in LINK.findall(prose(line.text)):
            problem = check_link(path, target, root)
            if problem:
                problems.append(f"{line.where()}: link ({target}): {problem}")
    return problems


def check_link(page: Path, target: str, root: Path) -> str | None:
    """What is wrong with one link target, or None; web addresses are not followed (no network here)."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto:
        return None
    file_part, _, anchor = target.partition("#")
    linked = (page.parent / file_part).resolve() if file_part else page
    if not linked.is_relative_to(root):
        return f"points outside the repository, at {linked}"
    if not linked.exists():
        return f"no file {linked.relative_to(root)}"
    if anchor and linked.suffix == ".md" and anchor not in anchors_of(linked):
        known = ", ".join(sorted(anchors_of(linked))) or "none"
        return f"no heading with anchor #{anchor} in {linked.relative_to(root)} (anchors: {known})"
    return None


# -- CLI options --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Help:
    options: frozenset[str]
    valued: frozenset[str]  # options that take a value (their next word is not a subcommand)
    commands: frozenset[str]


def script(name: str) -> str:
    """The console script installed beside this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"console script {name!r} is not installed; run `make install`")
    return found


@functools.cache
def help_of(command: tuple[str, ...]) -> Help:
    """Options and subcommands that ``command --help`` lists, read from its option and command columns."""
    program = [sys.executable, str(ROOT / command[0])] if command[0].endswith(".py") else [script(command[0])]
    done = subprocess.run([*program, *command[1:], "--help"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(command)} --help` exited {done.returncode}: {done.stderr.strip()}")
    options: set[str] = set()
    valued: set[str] = set()
    commands: set[str] = set()
    in_commands = False
    for text in done.stdout.splitlines():
        if re.match(r"^\S", text):
            in_commands = text.strip().lower().startswith("commands")
            continue
        if in_commands:
            command_line = HELP_COMMAND_LINE.match(text)
            if command_line:
                commands.add(command_line.group(1))
            continue
        option_line = HELP_OPTION_LINE.match(text)
        if option_line:
            for name, value in HELP_OPTION.findall(option_line.group(1).replace(" / ", ", ")):
                options.add(name)
                if value:
                    valued.add(name)
    return Help(frozenset(options), frozenset(valued), frozenset(commands))


@dataclass(frozen=True)
class Invocation:
    line: Line
    words: tuple[str, ...]  # the CLI's name, then its arguments


def shell_words(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote: fall back to plain words without the comment
        return text.split(" #", 1)[0].split()


def simple_commands(words: list[str]) -> Iterator[list[str]]:
    """Split a command line at &&, |, ; and friends; redirections and their targets are dropped."""
    current: list[str] = []
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
        elif word in SHELL_OPERATORS:
            yield current
            current = []
        elif word in REDIRECTIONS or re.fullmatch(r"\d?[<>]+&?", word):
            skip_next = True
        else:
            current.append(word)
    yield current


def cli_invocations(words: list[str]) -> Iterator[tuple[str, ...]]:
    """The project's commands in a command line: a console script, or ``python`` running a repository script."""
    for command in simple_commands(words):
        for position, word in enumerate(command):
            name = word.rsplit("/", 1)[-1]
            at_command_position = all(re.fullmatch(r"\w+=.*", w) for w in command[:position])
            if name in CLIS and (word == name or at_command_position):
                yield (name, *command[position + 1 :])
                break
            following = command[position + 1] if position + 1 < len(command) else ""
            if re.fullmatch(r"python3?(\.\d+)?", name) and is_repository_script(following):
                yield tuple(command[position + 1 :])
                break


def is_repository_script(word: str) -> bool:
    return word.endswith(".py") and not word.startswith("/") and (ROOT / word).is_file()


def shell_lines(path: Path) -> Iterator[tuple[Line, str]]:
    """Command lines of the shell blocks (continuations joined), then inline code that starts with a CLI."""
    pending: Line | None = None
    joined = ""
    paragraph: list[Line] = []
    for line in lines_of(path):
        if line.language is None and line.text.strip():
            paragraph.append(line)
            continue
        yield from cli_spans(paragraph)
        paragraph = []
        if line.language not in SHELL_LANGUAGES or line.language is None:
            continue
        text = re.sub(r"^\s*\$ ", "", line.text)
        pending = pending or line
        if text.rstrip().endswith("\\"):
            joined += text.rstrip()[:-1] + " "
            continue
        yield pending, joined + text
        pending, joined = None, ""
    yield from cli_spans(paragraph)


def cli_spans(paragraph: list[Line]) -> Iterator[tuple[Line, str]]:
    """Inline code spans of a prose paragraph (they may wrap) that may name a command."""
    text = " ".join(line.text for line in paragraph)
    starts = [0]
    for line in paragraph:
        starts.append(starts[-1] + len(line.text) + 1)
    for match in INLINE_CODE.finditer(text):
        if re.match(r"(\S*/)?(classify|python)", match.group(2)):
            yield paragraph[bisect.bisect_right(starts, match.start()) - 1], match.group(2)


def invocations(path: Path) -> Iterator[Invocation]:
    for line, text in shell_lines(path):
        for words in cli_invocations(shell_words(text)):
            yield Invocation(line, tuple(word.strip("[]") for word in words))


def option_problems(invocation: Invocation) -> list[str]:
    """Walk the words as click would: options of the current (sub)command, then a subcommand, and on."""
    command: tuple[str, ...] = invocation.words[:1]
    listed = help_of(command)
    problems = []
    expecting_value = False
    for word in invocation.words[1:]:
        if expecting_value:  # an option's value, even one that looks like flags: --config "--port 0"
            expecting_value = False
        elif word.startswith("--") and len(word) > 2:
            option = word.split("=", 1)[0]
            if option not in listed.options:
                known = ", ".join(sorted(listed.options))
                problems.append(f"`{' '.join(command)}` has no option {option} (its --help lists: {known})")
            expecting_value = option in listed.valued and "=" not in word
        elif word.startswith("-"):
            continue
        elif listed.commands:
            if word not in listed.commands:
                if re.fullmatch(r"[a-z][\w-]*", word):
                    known = ", ".join(sorted(listed.commands))
                    problems.append(f"`{' '.join(command)}` has no command {word!r} (commands: {known})")
                break
            command = (*command, word)
            listed = help_of(command)
    where = invocation.line.where()
    return [f"{where}: {problem}\n    in: {' '.join(invocation.words)}" for problem in problems]


def all_option_problems(paths: list[Path]) -> list[str]:
    return [problem for path in paths for inv in invocations(path) for problem in option_problems(inv)]


# -- Tests --------------------------------------------------------------------------------------------------


def test_every_relative_link_and_anchor_resolves() -> None:
    problems = [problem for path in doc_files() for problem in link_problems(path)]
    assert not problems, "broken links in the docs:\n" + "\n".join(problems)


def test_every_cli_option_in_the_docs_is_listed_by_its_help() -> None:
    found = [inv for path in doc_files() for inv in invocations(path)]
    assert set(CLIS) <= {inv.words[0] for inv in found}, "the docs should show every CLI at least once"
    problems = [problem for inv in found for problem in option_problems(inv)]
    assert not problems, "options the CLIs do not have:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("The `classify` CLI", "the-classify-cli"),
        ("Load testing: `classify bench`", "load-testing-classify-bench"),
        ("What we measured and chose", "what-we-measured-and-chose"),
        ("Request path, step by step (gRPC → TensorFlow)", "request-path-step-by-step-grpc--tensorflow"),
        ("[Linked](other.md) *heading* v2.1", "linked-heading-v21"),
    ],
)
def test_slugs_follow_github(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_the_checks_catch_a_broken_link_anchor_and_option(tmp_path: Path) -> None:
    """The checker must find what it is for: a page written wrong on purpose."""
    (tmp_path / "other.md").write_text("# Other\n\n### Known heading\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[same](#page) [there](other.md#known-heading) [gone](missing.md) [bad](other.md#nope)\n"
        "`[x](nowhere.md)` in code is no link; [out](../../etc/passwd)\n\n"
        "```bash\n.venv/bin/classify --request-id job-1 score --model m --no-such-option 1 \\\n"
        "    --output out.csv   # comment --not-an-option\nclassify-server --model-repository models --prot 1\n"
        "classify-train mnist-cnn --epochs 2 && classify scor --x\n"
        "python server/benchmarks/settings_sweep.py --config '--max-batch-size 64' --seconds 1\n```\n\n"
        "```python\nclassify --not-shell\n```\n"
        "Wrapped: `python server/benchmarks/guard_overhead.py --seconds 4\n--round 1`.\n"
        "Prose with `classify bench --concurency 4` in it.\n",
        encoding="utf-8",
    )
    links = link_problems(page, root=tmp_path)
    assert [problem.split(": ", 1)[1].split(" (anchors")[0] for problem in links] == [
        "link (missing.md): no file missing.md",
        "link (other.md#nope): no heading with anchor #nope in other.md",
        f"link (../../etc/passwd): points outside the repository, at {(tmp_path / '../../etc/passwd').resolve()}",
    ]
    assert [problem.split(": ", 1)[0].rsplit(":", 1)[1] for problem in links] == ["3", "3", "4"]
    options = all_option_problems([page])
    assert [problem.split("\n")[0].split(": ", 1)[1].split(" (")[0] for problem in options] == [
        "`classify score` has no option --no-such-option",
        "`classify-server` has no option --prot",
        "`classify` has no command 'scor'",
        "`server/benchmarks/guard_overhead.py` has no option --round",
        "`classify bench` has no option --concurency",
    ]
    assert [problem.split(": ", 1)[0].rsplit(":", 1)[1] for problem in options] == [
        "7",
        "9",
        "10",
        "17",
        "19",
    ]
