"""One plain-text table printer for the benchmarks: a header, a rule, and the rows, each
column as wide as its widest cell (the first left-aligned, the rest right-aligned)."""

from __future__ import annotations


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return " | ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths)))

    head = line(header)
    print(head)
    print("-" * len(head))
    for row in rows:
        print(line(row))
