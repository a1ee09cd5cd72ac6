"""The paper table as Markdown (table.md, with its notes) and as a LaTeX tabular (table.tex), from one TableView.

Both spell the same cells (cells.py): which cell is best or worst, what it says, which row opens a section are
decided once there. LaTeX text is escaped here, so a variant or protocol name with an underscore stays valid.
"""

from __future__ import annotations

import pandas as pd

from slimdiff.figures.cells import Cell, Label, Mark, Sym, has_sections, table_view
from slimdiff.figures.labels import PRED_LABEL, PRED_TEX
from slimdiff.figures.table_notes import notes

MARKDOWN = {Sym.NA: "n/a", Sym.DZ: "d_z", Sym.P: "p"}
LATEX = {Sym.NA: "--", Sym.DZ: "$d_z$", Sym.P: "$p$"}
# Characters of plain text that LaTeX reads as commands, and the Unicode the table uses outside math mode.
_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "−": r"$-$",
    "ε": r"$\epsilon$",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(c, c) for c in text)


def _markdown_cell(cell: Cell) -> str:
    text = "".join(MARKDOWN[p] if isinstance(p, Sym) else p for p in cell.parts)
    return {Mark.BEST: f"**{text}**", Mark.WORST: f"<u>{text}</u>"}.get(cell.mark, text)


def _latex_cell(cell: Cell) -> str:
    text = "".join(LATEX[p] if isinstance(p, Sym) else tex_escape(p) for p in cell.parts)
    return {Mark.BEST: rf"\textbf{{{text}}}", Mark.WORST: rf"\underline{{{text}}}"}.get(cell.mark, text)


def _markdown_label(label: Label) -> str:
    if not label.prediction:
        return label.text
    config = f"{PRED_LABEL[label.prediction]}, p={label.p:g}, sc {label.sc:g}"
    if label.other:
        return f"Δ {label.other} − shared: {config} (folds {label.folds})"
    return config + (f" ({', '.join(label.settings)})" if label.settings else "")


def _latex_label(label: Label) -> str:
    """The label fills the three configuration columns (Pred., p, sc), or spans them."""
    if not label.prediction:
        return rf"\multicolumn{{3}}{{l}}{{{tex_escape(label.text[:1].upper() + label.text[1:])}}}"
    pred, p, sc = PRED_TEX[label.prediction], f"{label.p:g}", f"{label.sc:g}"
    if label.other:
        text = rf"$\Delta$ {tex_escape(label.other)} $-$ shared, {pred}, $p$ {p}, sc {sc} (folds {label.folds})"
        return rf"\multicolumn{{3}}{{l}}{{{text}}}"
    settings = f" ({tex_escape(', '.join(label.settings))})" if label.settings else ""
    return f"{pred} & {p} & {sc}{settings}"


def to_markdown(table: pd.DataFrame) -> str:
    """table.md: the table, a section title row above each section, then the notes."""
    view = table_view(table)
    headers = [c.header for c in view.columns]
    lines = ["| configuration | " + " | ".join(headers) + " |", "|" + "---|" * (len(headers) + 1)]
    for row in view.rows:
        if row.section:
            lines.append(f"| *{row.section}* |" + " |" * len(headers))
        lines.append(f"| {_markdown_label(row.label)} | " + " | ".join(map(_markdown_cell, row.cells)) + " |")
    return "\n".join(lines) + "\n\n" + notes(table, has_sections(table)) + "\n"


def to_latex(table: pd.DataFrame) -> str:
    """table.tex: a booktabs tabular; a rule and an italic title above each section, one rule above the
    reference rows."""
    view = table_view(table)
    arrows = {"lower": r" $\downarrow$", "higher": r" $\uparrow$"}
    width = 3 + len(view.columns)
    lines = [
        r"\begin{tabular}{lll" + "c" * len(view.columns) + "}",
        r"\toprule",
        "Pred. & $p$ & sc & "
        + " & ".join(tex_escape(c.header) + arrows.get(c.better, "") for c in view.columns)
        + r" \\",
        r"\midrule",
    ]
    for i, row in enumerate(view.rows):
        if row.reference:
            if i == 0 or not view.rows[i - 1].reference:
                lines.append(r"\midrule")
        elif row.section:
            if i > 0:
                lines.append(r"\midrule")
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textit{{{tex_escape(row.section)}}}}} \\")
        lines.append(f"{_latex_label(row.label)} & " + " & ".join(map(_latex_cell, row.cells)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
