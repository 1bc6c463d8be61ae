"""The reproducibility caveats tagged in the source tree (DESIGN.md habit 10).

A note is a comment that starts with one of NOTE_TAGS (optionally followed by a parenthesised
qualifier), then a colon, together with the comment lines right below it; or a docstring (a bare
string statement, such as a config field's) that holds a tag, whose words before the tag on its
line say what the note is about. Comments and strings are found with `tokenize`, the names the
notes sit under with `ast`; the protocol cards and the report list the notes.
"""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTE_TAGS = ("PAPER-GAP", "DEVIATION")
NOTE_ROOTS = ("aae_core", "bench")
MAX_CONTINUATION = 8
"""Lines below a note's first line that may continue it."""


@dataclass(frozen=True)
class Note:
    tag: str
    path: str
    line: int
    text: str
    context: str
    """The top-level def/class/constant the note sits in (or, for a top-level comment, precedes)."""

    def where(self) -> str:
        return f"{self.path}:{self.line}"


# -- the tag inside one line of text ----------------------------------------------------------


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _tag_at(text: str, start: int, tag: str) -> tuple[str, str] | None:
    """(tag with its qualifier, the text after the colon) when `tag` at `start` is a whole word
    followed by an optional "(qualifier)" and a colon; else None."""
    end = start + len(tag)
    if (start > 0 and _is_word(text[start - 1])) or (end < len(text) and _is_word(text[end])):
        return None
    rest = text[end:]
    qualifier = ""
    opened = rest.lstrip()
    if opened.startswith("(") and ")" in opened:
        close = len(rest) - len(opened) + opened.index(")") + 1
        qualifier, rest = rest[:close], rest[close:]
    rest = rest.lstrip()
    if not rest.startswith(":"):
        return None
    return tag + qualifier, rest[1:].strip()


def find_tag(text: str) -> tuple[int, str, str] | None:
    """(position, tag with qualifier, text after the colon) of the first tag in `text`."""
    places = sorted((i, tag) for tag in NOTE_TAGS for i in _positions(text, tag))
    for start, tag in places:
        found = _tag_at(text, start, tag)
        if found:
            return (start, *found)
    return None


def _positions(text: str, word: str) -> list[int]:
    out, i = [], text.find(word)
    while i >= 0:
        out.append(i)
        i = text.find(word, i + 1)
    return out


# -- the names notes sit under (ast) ----------------------------------------------------------


def _name(node: ast.AST) -> str | None:
    """The name a def, class or single-name assignment binds; None for other statements."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name
    if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and node.value is not None \
            and isinstance(node.target, ast.Name):
        return node.target.id
    return None


def _named(nodes) -> list[tuple[int, int, str]]:
    """(line, column, name) of the named statements among `nodes`, in source order."""
    return sorted((n.lineno, n.col_offset, name) for n in nodes if (name := _name(n)))


def _comment_context(top: list[tuple[int, int, str]], line: int, own_line_at_0: bool) -> str:
    """A comment at column 0 names the top-level statement it precedes; any other comment the
    top-level statement it is in (the nearest one that starts at or above it)."""
    if own_line_at_0:
        return next((name for row, _, name in top if row > line), "")
    return next((name for row, _, name in reversed(top) if row <= line), "")


def _docstring_context(every: list[tuple[int, int, str]], line: int, indent: int) -> str:
    """Docstring text names the nearest def, class or assignment above it at no deeper indent
    (a config field's docstring names the field)."""
    return next((name for row, col, name in reversed(every) if row < line and col <= indent), "")


# -- notes in one file (tokenize) -------------------------------------------------------------


@dataclass(frozen=True)
class _Text:
    """One line of a comment or of a docstring (its quotes left out)."""

    row: int
    text: str
    comment: bool
    """A comment, or a docstring line written as one ("# ..."): read by the comment rules."""
    alone: bool
    """Nothing but this text on its line (a comment that may continue the one above)."""
    last: int
    """The last line of its docstring (its own line for a comment)."""


def _string_lines(token: tokenize.TokenInfo, lines: list[str]) -> list[tuple[int, str]]:
    """(line number, that line's part of a string token), the quotes left out."""
    (first, start), (last, end) = token.start, token.end
    body = token.string.lstrip("rRbBuUfF")
    quote = body[:3] if body[:3] in ('"""', "'''") else body[:1]
    out = []
    for row in range(first, last + 1):
        line = lines[row - 1].rstrip("\r\n")
        if row == last:
            line = line[:end - len(quote)]
        if row == first:
            line = line[start + len(token.string) - len(body) + len(quote):]
        out.append((row, line))
    return out


def _is_statement(tokens: list[tokenize.TokenInfo], index: int) -> bool:
    """Whether the string token at `index` is a statement on its own (a docstring)."""
    skip = (tokenize.NL, tokenize.COMMENT)
    before = next((t for t in reversed(tokens[:index]) if t.type not in skip), None)
    after = next((t for t in tokens[index + 1:] if t.type not in skip), None)
    starts = before is None or before.type in (tokenize.NEWLINE, tokenize.INDENT,
                                               tokenize.DEDENT, tokenize.ENCODING)
    return starts and (after is None or after.type in (tokenize.NEWLINE, tokenize.ENDMARKER))


def _texts(source: str) -> list[_Text]:
    """The comments and docstring lines of a source, in order."""
    lines = source.splitlines(keepends=True)
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    out = []
    for index, token in enumerate(tokens):
        if token.type == tokenize.COMMENT:
            alone = not token.line[:token.start[1]].strip()
            out.append(_Text(token.start[0], token.string, True, alone, token.start[0]))
        elif token.type == tokenize.STRING and _is_statement(tokens, index):
            for row, text in _string_lines(token, lines):
                out.append(_Text(row, text, text.lstrip().startswith("#"), True, token.end[0]))
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _comment_text(comment: str) -> str:
    return comment.strip().lstrip("#").strip()


def notes_in(source: str, path: str) -> list[Note]:
    """Every tagged note of one Python source, in line order."""
    lines = source.splitlines()
    tree = ast.parse(source)
    top, every = _named(tree.body), _named(ast.walk(tree))
    texts = _texts(source)
    by_row = {t.row: t for t in texts if t.alone}
    notes = []
    for line in texts:
        if line.comment:
            found = find_tag(_comment_text(line.text))
            if not found or found[0] != 0:
                continue
            _, tag, body = found
            more = []
            for row in range(line.row + 1, line.row + 1 + MAX_CONTINUATION):
                below = by_row.get(row)
                if below is None or not below.comment or below.text.strip() == "#" \
                        or find_tag(below.text):
                    break
                more.append(_comment_text(below.text))
            context = _comment_context(top, line.row, lines[line.row - 1].startswith("#"))
        else:
            found = find_tag(line.text)
            if not found:
                continue
            start, tag, body = found
            more = []
            for row in range(line.row + 1, min(line.last, line.row + MAX_CONTINUATION) + 1):
                below = by_row[row].text.strip()
                if not below or below.startswith("#") or find_tag(below):
                    break
                more.append(below)
            lead = line.text[:start].strip()
            context = _docstring_context(every, line.row, _indent(lines[line.row - 1]))
        text = " ".join([body, *filter(None, more)]).strip()
        if not line.comment and lead:
            # In a docstring the words before the tag say what the note is about.
            text = f"({lead}) {text}"
        notes.append(Note(tag, path, line.row, text, context))
    return notes


def scan_notes(base: str | Path = REPO, roots: tuple[str, ...] = NOTE_ROOTS) -> list[Note]:
    """Every tagged note in the .py files under base/roots, with its continuation lines."""
    base = Path(base)
    notes: list[Note] = []
    for root in roots:
        for path in sorted((base / root).rglob("*.py")):
            source = path.read_text(encoding="utf-8", errors="replace")
            notes += notes_in(source, path.relative_to(base).as_posix())
    return notes


def notes_for(notes: list[Note], keywords, every) -> list[Note]:
    """The notes that bear on a table with `keywords`, where `every` holds all tables' keywords.

    A note bears on the tables whose keywords appear in its text or in the name it sits under
    (function, class, constant, config field); a note that mentions no table's keywords (the
    shared model, training, priors) bears on every table."""
    def mentions(note: Note, words) -> bool:
        haystack = f"{note.text} {note.context}".lower()
        return any(w in haystack for w in words)

    return [n for n in notes if mentions(n, keywords) or not mentions(n, every)]
