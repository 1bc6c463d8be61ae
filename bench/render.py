"""A table's view (bench.tables.TableView) as Markdown, LaTeX or HTML: the table, the paper's
sources, the verdict rule and the protocol card, the same content in each format."""

from __future__ import annotations

import html

import pandas as pd

from bench.tables import CELL_NOTE, VERDICT_RULE, TableView, build_view, protocol_card, table_spec
from bench.tags import Note, scan_notes


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def view_markdown(view: TableView, notes: list[Note] | None = None, card: bool = True) -> str:
    """The table, its notes, the verdict rule and (optionally) the protocol card, as Markdown."""
    spec = view.spec
    out = [f"## {spec.title}", "", spec.caption, ""]
    out.append("| " + " | ".join(_md(h) for h in view.header) + " |")
    out.append("|" + "|".join([":---"] + [":---:"] * (len(view.header) - 1)) + "|")
    for label, cells in view.rows:
        out.append("| " + " | ".join([_md(label)] + [_md(" · ".join(c.lines)) for c in cells])
                   + " |")
    out.append("")
    out.extend(view.marks)
    if view.sources:
        out += ["", "Paper numbers and their sources:", ""]
        out += [f"- {_md(s)}" for s in view.sources]
    out += ["", VERDICT_RULE, "", CELL_NOTE, ""]
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
    if card:
        out += [rf"\paragraph{{Protocol card ({tex(spec.key)})}}", r"\begin{itemize}"]
        out += [rf"\item \textbf{{{tex(k)}}}: {tex(v)}"
                for k, v in protocol_card(view, notes or [])]
        out += [r"\end{itemize}", ""]
    return "\n".join(out)


def view_html(view: TableView, notes: list[Note] | None = None, card: bool = True) -> str:
    """An HTML fragment (section) with the table, its notes and the protocol card."""
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
    if view.sources:
        out += ["<p>Paper numbers and their sources:</p>", "<ul>"]
        out += [f"<li>{e(s)}</li>" for s in view.sources]
        out += ["</ul>"]
    out += [f'<p class="rule">{e(VERDICT_RULE)}</p>', f'<p class="rule">{e(CELL_NOTE)}</p>']
    if card:
        out += [f"<h3>Protocol card ({e(spec.key)})</h3>", '<ul class="protocol">']
        out += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in protocol_card(view, notes or [])]
        out += ["</ul>"]
    out.append("</section>")
    return "\n".join(out)


def render_markdown(table_name: str, frame: pd.DataFrame, notes: list[Note] | None = None,
                    card: bool = True) -> str:
    """One table of the paper, with our rows, as Markdown (printed by `aae-bench run`)."""
    spec = table_spec(table_name)
    return view_markdown(build_view(spec, frame), scan_notes() if notes is None else notes, card)
