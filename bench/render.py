"""A table's view (bench.tables.TableView) as Markdown, LaTeX or HTML: the table, its curves
and figures (Markdown and HTML), the paper's sources, the verdict rule and the protocol card,
the same content in each format; and the report's summary of every cell (bench.summary)."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from bench import summary
from bench.curves import FLAT_RULE
from bench.tables import CELL_NOTE, VERDICT_RULE, TableView, build_view, protocol_card, table_spec
from bench.tags import Note, scan_notes


@dataclass(frozen=True)
class Inline:
    """A figure shown under a table (`path` relative to the page), or, where a cell has none,
    one line saying why (`path` None)."""

    anchor: str
    title: str
    text: str
    """The caption, or the reason there is no figure."""
    path: str | None = None


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _inline_markdown(spec_key: str, inline: Sequence[Inline]) -> list[str]:
    if not inline:
        return []
    out = ["", f"### Validation curves and figures ({spec_key})", ""]
    for item in inline:
        if item.path is None:
            out += [f"- **{_md(item.title)}**: {_md(item.text)}"]
        else:
            out += ["", f'<a id="{item.anchor}"></a>', "", f"![{_md(item.title)}]({item.path})",
                    "", f"*{_md(item.text)}*", ""]
    return out


def view_markdown(view: TableView, notes: list[Note] | None = None, card: bool = True,
                  inline: Sequence[Inline] = ()) -> str:
    """The table, its curves and figures (`inline`), its notes, the verdict and trend rules and
    (optionally) the protocol card, as Markdown."""
    spec = view.spec
    out = [f"## {spec.title}", "", spec.caption, ""]
    out.append("| " + " | ".join(_md(h) for h in view.header) + " |")
    out.append("|" + "|".join([":---"] + [":---:"] * (len(view.header) - 1)) + "|")
    for label, cells in view.rows:
        out.append("| " + " | ".join([_md(label)] + [_md(" · ".join(c.lines)) for c in cells])
                   + " |")
    out.append("")
    out.extend(view.marks)
    out += _inline_markdown(spec.key, inline)
    if view.sources:
        out += ["", "Paper numbers and their sources:", ""]
        out += [f"- {_md(s)}" for s in view.sources]
    out += ["", VERDICT_RULE, "", CELL_NOTE, ""]
    if view.curves:
        out += [FLAT_RULE, ""]
    if card:
        out += [f"### Protocol card ({spec.key})", ""]
        out += [f"- **{_md(k)}**: {_md(v)}" for k, v in protocol_card(view, notes or [])]
        out.append("")
    return "\n".join(out)


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}"}
_TEX_UNICODE = {"±": r"$\pm$", "†": r"\dag{}", "≤": r"$\le$", "−": "-", "—": "---",
                "·": r"$\cdot$", "√": r"$\surd$", "²": r"$^2$", "Δ": r"$\Delta$", ">": r"$>$",
                "<": r"$<$", "|": r"$|$", "σ": r"$\sigma$", "*": r"$*$"}


def tex(text: str) -> str:
    out = "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))
    return "".join(_TEX_UNICODE.get(ch, ch) for ch in out)


def view_latex(view: TableView, notes: list[Note] | None = None, card: bool = True) -> str:
    """A standalone-includable LaTeX table (plain tabular, no extra packages) and its notes."""
    spec = view.spec
    out = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{tex(spec.title)}}}",
           rf"\label{{tab:{spec.key}}}", r"\begin{tabular}{l" + "c" * len(spec.columns) + "}",
           r"\hline", " & ".join(tex(h) for h in view.header) + r" \\", r"\hline"]
    for label, cells in view.rows:
        rendered = [(tex(c.lines[0]) if len(c.lines) == 1 else
                     r"\shortstack{" + r" \\ ".join(tex(x) for x in c.lines) + "}")
                    for c in cells]
        out.append(" & ".join([tex(label)] + rendered) + r" \\")
    out += [r"\hline", r"\end{tabular}", r"\end{table}", ""]
    out += [tex(m) + "\n" for m in view.marks]
    if view.sources:
        out += [r"\noindent Paper numbers and their sources:", r"\begin{itemize}"]
        out += [rf"\item {tex(s)}" for s in view.sources]
        out += [r"\end{itemize}"]
    out += ["", tex(VERDICT_RULE), "", tex(CELL_NOTE), ""]
    if view.curves:
        out += [tex(FLAT_RULE), ""]
    if card:
        out += [rf"\paragraph{{Protocol card ({tex(spec.key)})}}", r"\begin{itemize}"]
        out += [rf"\item \textbf{{{tex(k)}}}: {tex(v)}"
                for k, v in protocol_card(view, notes or [])]
        out += [r"\end{itemize}", ""]
    return "\n".join(out)


def _inline_html(spec_key: str, inline: Sequence[Inline]) -> list[str]:
    e = html.escape
    if not inline:
        return []
    out = [f"<h3>Validation curves and figures ({e(spec_key)})</h3>"]
    reasons = [f'<li id="{e(i.anchor)}"><b>{e(i.title)}</b>: {e(i.text)}</li>'
               for i in inline if i.path is None]
    if reasons:
        out += ['<ul class="no-curve">', *reasons, "</ul>"]
    out += [f'<figure id="{e(i.anchor)}"><img src="{e(i.path)}" alt="{e(i.title)}">'
            f"<figcaption>{e(i.text)}</figcaption></figure>" for i in inline if i.path is not None]
    return out


def view_html(view: TableView, notes: list[Note] | None = None, card: bool = True,
              inline: Sequence[Inline] = ()) -> str:
    """An HTML fragment (section) with the table, its curves and figures (`inline`), its notes
    and the protocol card."""
    spec = view.spec
    e = html.escape
    out = [f'<section id="{e(spec.key)}">', f"<h2>{e(spec.title)}</h2>", f"<p>{e(spec.caption)}</p>",
           f'<table class="paper-table" data-table="{e(spec.key)}">',
           "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in view.header) + "</tr></thead>",
           "<tbody>"]
    for label, cells in view.rows:
        tds = "".join(
            f'<td class="{e(c.kind)} {e(c.verdict.replace(" ", "-"))}">'
            + "<br>".join(e(x) for x in c.lines) + "</td>" for c in cells)
        out.append(f"<tr><th scope=\"row\">{e(label)}</th>{tds}</tr>")
    out += ["</tbody></table>"]
    out += [f'<p class="marks">{e(m)}</p>' for m in view.marks]
    out += _inline_html(spec.key, inline)
    if view.sources:
        out += ["<p>Paper numbers and their sources:</p>", "<ul>"]
        out += [f"<li>{e(s)}</li>" for s in view.sources]
        out += ["</ul>"]
    out += [f'<p class="rule">{e(VERDICT_RULE)}</p>', f'<p class="rule">{e(CELL_NOTE)}</p>']
    if view.curves:
        out.append(f'<p class="rule">{e(FLAT_RULE)}</p>')
    if card:
        out += [f"<h3>Protocol card ({e(spec.key)})</h3>", '<ul class="protocol">']
        out += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in protocol_card(view, notes or [])]
        out += ["</ul>"]
    out.append("</section>")
    return "\n".join(out)


def render_markdown(table_name: str, frame: pd.DataFrame, notes: list[Note] | None = None,
                    card: bool = True, results_dir: str | os.PathLike | None = None) -> str:
    """One table of the paper, with our rows (and, given `results_dir`, each cell's trend), as
    Markdown (printed by `aae-bench run`)."""
    spec = table_spec(table_name)
    return view_markdown(build_view(spec, frame, results_dir),
                         scan_notes() if notes is None else notes, card)


# -- the summary of every cell ------------------------------------------------------------


def summary_markdown(rows: Sequence[summary.SummaryRow]) -> str:
    out = ["## Summary: every cell", ""]
    out.append("| " + " | ".join(summary.HEADER) + " |")
    out.append("|" + "|".join([":---"] * 2 + [":---:"] * (len(summary.HEADER) - 2)) + "|")
    for row in rows:
        cells = list(summary.cells_of(row))
        cells[0] = f"[{cells[0]}](#{row.table})"
        if row.drawn:
            cells[6] += f" ([curve](#{summary.curve_anchor(row.table, row.column)}))"
        out.append("| " + " | ".join(_md(c) if i else c for i, c in enumerate(cells)) + " |")
    out += [""] + [rule + "\n" for rule in summary.RULES]
    return "\n".join(out)


def summary_html(rows: Sequence[summary.SummaryRow]) -> str:
    e = html.escape
    out = ['<section id="summary">', "<h2>Summary: every cell</h2>",
           '<table class="summary-table" data-table="summary">',
           "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in summary.HEADER) + "</tr></thead>",
           "<tbody>"]
    for row in rows:
        cells = [e(c) for c in summary.cells_of(row)]
        cells[0] = f'<a href="#{e(row.table)}">{cells[0]}</a>'
        if row.drawn:
            cells[6] += f' (<a href="#{e(summary.curve_anchor(row.table, row.column))}">curve</a>)'
        verdict = e(row.verdict.split(" (")[0].replace(" ", "-"))
        out.append(f'<tr data-cell="{e(row.table)}/{e(row.column)}">' + "".join(
            f'<td class="{verdict}">{c}</td>' if i == 5 else f"<td>{c}</td>"
            for i, c in enumerate(cells)) + "</tr>")
    out += ["</tbody></table>"] + [f'<p class="rule">{e(rule)}</p>' for rule in summary.RULES]
    out.append("</section>")
    return "\n".join(out)
