"""Statements as CSV and PDF. Amounts are formatted from minor units with the currency's exponent.

The PDF uses reportlab's built-in CID font ``STSong-Light``, so Chinese names render without a
font file shipped with the project.
"""

from __future__ import annotations

import csv
import io
from typing import Final

from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen import canvas

from smartbank.banking.model import Statement, format_account_number, format_minor

#: For names and references, which may be Chinese (a CID font: viewers supply the glyphs).
FONT: Final = "STSong-Light"
#: For headings, dates and amounts (one of the PDF standard fonts).
LATIN_FONT: Final = "Helvetica"
CSV_HEADER: Final = ("date", "description", "counterparty", "amount", "balance", "currency", "transfer_id")
#: Each format's Content-Type.
MEDIA_TYPES: Final = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


def _counterparty(name: str | None, number: str | None) -> str:
    parts = [p for p in (name, format_account_number(number) if number else None) if p]
    return " ".join(parts)


def render_csv(statement: Statement) -> bytes:
    """UTF-8 CSV: a header block (account, period, opening balance), the lines, the closing balance."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    cur = statement.currency
    writer.writerow(("account", statement.account_number))
    writer.writerow(("period", statement.first_day.isoformat(), statement.last_day.isoformat()))
    writer.writerow(("opening_balance", format_minor(statement.opening_minor, cur), cur))
    writer.writerow(CSV_HEADER)
    for line in statement.lines:
        entry = line.entry
        writer.writerow(
            (
                entry.posted_at.isoformat(),
                entry.description,
                _counterparty(entry.counterparty_name, entry.counterparty_number),
                format_minor(entry.amount_minor, cur),
                format_minor(line.balance_minor, cur),
                cur,
                str(entry.transfer_id),
            )
        )
    writer.writerow(("closing_balance", format_minor(statement.closing_minor, cur), cur))
    return out.getvalue().encode()


def _font() -> str:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


def render_pdf(statement: Statement) -> bytes:
    """An A4 PDF: header, opening balance, one row per line with its running balance, closing balance."""
    font = _font()
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=True)
    pdf.setTitle(f"Statement {statement.account_number}")
    width, height = A4
    margin = 40.0
    cur = statement.currency
    y = height - margin

    def line(text: str, x: float = margin, size: float = 9.0) -> None:
        nonlocal y
        if y < margin:
            pdf.showPage()
            y = height - margin
        pdf.setFont(LATIN_FONT, size)
        pdf.drawString(x, y, text)

    def row(cells: tuple[str, str, str, str, str]) -> None:
        nonlocal y
        if y < margin:
            pdf.showPage()
            y = height - margin
        date, description, counterparty, amount, balance = cells
        pdf.setFont(LATIN_FONT, 8)
        pdf.drawString(margin, y, date)
        pdf.drawRightString(width - margin - 80, y, amount)
        pdf.drawRightString(width - margin, y, balance)
        pdf.setFont(font, 8)
        pdf.drawString(margin + 70, y, description[:40])
        pdf.drawString(margin + 250, y, counterparty[:36])
        y -= 12

    line("smartbank - account statement", size=14)
    y -= 20
    line(f"Account {format_account_number(statement.account_number)} ({cur})")
    y -= 12
    line(f"Period {statement.first_day.isoformat()} to {statement.last_day.isoformat()}")
    y -= 12
    line(f"Opening balance {format_minor(statement.opening_minor, cur)} {cur}")
    y -= 20
    row(("Date", "Description", "Counterparty", "Amount", "Balance"))
    for item in statement.lines:
        entry = item.entry
        row(
            (
                entry.posted_at.date().isoformat(),
                entry.description,
                _counterparty(entry.counterparty_name, entry.counterparty_number),
                format_minor(entry.amount_minor, cur),
                format_minor(item.balance_minor, cur),
            )
        )
    y -= 8
    line(f"Closing balance {format_minor(statement.closing_minor, cur)} {cur}")
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def statement_file(statement: Statement, format: str) -> tuple[bytes, str, str]:
    """The statement as a download: (body, Content-Type, Content-Disposition). ``format`` is csv or pdf."""
    body = render_pdf(statement) if format == "pdf" else render_csv(statement)
    kind = "pdf" if format == "pdf" else "csv"
    filename = (
        f"statement-{statement.account_number}-{statement.first_day.isoformat()}-{statement.last_day.isoformat()}"
        f".{kind}"
    )
    return body, MEDIA_TYPES[kind], f'attachment; filename="{filename}"'
