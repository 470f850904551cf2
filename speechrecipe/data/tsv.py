"""Tab-separated files the toolkit writes and reads back (trial lists, scores, reports of bad files).

A field holding a tab, a quote or a line break is quoted as in CSV (and read by the csv module), so any
path a file system allows (spaces, tabs, non-ASCII, newlines) comes back as it went in. Plain fields
are written as they are, so files without such characters read as simple TSV anywhere.
"""
from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from speechrecipe.errors import DataError
from speechrecipe.fileio import atomic_open

_DIALECT = {"delimiter": "\t", "quotechar": '"', "doublequote": True}


_SPECIAL = re.compile(r'[\t\n\r"]')


def _field(value: object) -> str:
    text = str(value)
    # the csv module's writer leaves a lone \r unquoted (its reader then splits the row): quote it here
    return '"' + text.replace('"', '""') + '"' if _SPECIAL.search(text) else text


def write_tsv(path: str | Path, rows: Iterable[Iterable], header: Iterable[str] | None = None) -> None:
    """Write rows (fields made str) atomically, after an optional header line."""
    lines = rows if header is None else itertools.chain([header], rows)
    with atomic_open(path, newline="") as handle:
        for row in lines:
            handle.write(tsv_line(row))


def tsv_line(row: Iterable) -> str:
    """One row as write_tsv writes it, with its line break."""
    return "\t".join(map(_field, row)) + "\n"


def read_tsv(path: str | Path, skip_header: bool = False) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank row of a file written by write_tsv."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, **_DIALECT)
        try:
            for row in reader:
                if skip_header and reader.line_num == 1:
                    continue
                if row:
                    yield reader.line_num, row
        except csv.Error as err:
            raise internal_file_error(path, reader.line_num, str(err)) from None


def internal_file_error(path: str | Path, line: int, problem: str) -> DataError:
    """A file speechrecipe wrote cannot be read back: not the user's doing; say how to make it again."""
    return DataError(f"{path}:{line}: {problem}; speechrecipe wrote this file and cannot read it back (a damaged "
                     "disk, an edit, or a bug worth reporting); run the same command with --clear-cache to prepare "
                     "the data again (for a file in target_dir, delete it first)")
