"""Reading the KGIN text format: locating (plain or ``.xz``) files, parsing integer tokens fast,
interaction files, the KG and the id lists. Errors name the file and line."""

from __future__ import annotations

import lzma
import re
from pathlib import Path

import numpy as np

from recbole_kgin.data.common import _MAX_ID, ConvertError

# --------------------------------------------------------------------------- reading
def _locate(src: Path, base: str) -> Path | None:
    for candidate in (src / base, src / (base + ".xz")):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        if path.name.endswith(".xz"):
            with lzma.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except lzma.LZMAError as exc:
        raise ConvertError(f"{path}: cannot decompress ({exc})") from None
    except EOFError:
        raise ConvertError(f"{path}: truncated .xz file (the compressed data ends early)") from None
    except OSError as exc:
        raise ConvertError(f"{path}: cannot read ({exc.strerror or exc})") from None


_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 32]] = True
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[48:58] = True
_POW10 = 10 ** np.arange(19, dtype=np.int64)


def _line_of(data: bytes, pos: int) -> int:
    return data.count(b"\n", 0, pos) + 1


def _token_at(data: bytes, pos: int) -> str:
    start = pos
    while start > 0 and data[start - 1] not in b" \t\r\n\x0b\x0c":
        start -= 1
    end = pos
    while end < len(data) and data[end] not in b" \t\r\n\x0b\x0c":
        end += 1
    tok = data[start:end].decode("utf-8", errors="replace")
    return tok if len(tok) <= 40 else tok[:37] + "..."


def _int_tokens(data: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All whitespace-separated tokens of ``data`` as non-negative int64 values.

    Returns ``(values, line_numbers)`` (1-based line of every token).  Vectorised:
    the bytes are classified with lookup tables, token boundaries found with shifts,
    and the decimal values summed with ``np.add.reduceat``.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    ws = _WS[buf]
    if buf.size == 0 or ws.all():
        raise ConvertError(f"{path}:1: empty file (no data lines)")
    cr = np.flatnonzero(buf == 13)
    if cr.size:
        nxt = cr + 1
        nxt = nxt[nxt < buf.size]
        bare = nxt[buf[nxt] != 10]
        if bare.size:
            raise ConvertError(f"{path}:{_line_of(data, int(bare[0]))}: "
                               "carriage return without line feed")
    bad = ~ws & ~_DIGIT[buf]
    if bad.any():
        pos = int(np.argmax(bad))
        tok = _token_at(data, pos)
        line = _line_of(data, pos)
        if re.fullmatch(r"-[0-9]+", tok):
            raise ConvertError(f"{path}:{line}: negative id {tok}")
        raise ConvertError(f"{path}:{line}: non-integer token {tok!r}")
    nonws = ~ws
    prev_ws = np.empty_like(ws)
    prev_ws[0] = True
    prev_ws[1:] = ws[:-1]
    next_ws = np.empty_like(ws)
    next_ws[-1] = True
    next_ws[:-1] = ws[1:]
    starts = np.flatnonzero(nonws & prev_ws)
    ends = np.flatnonzero(nonws & next_ws) + 1
    lengths = ends - starts
    too_long = lengths > 10
    if too_long.any():
        pos = int(starts[np.argmax(too_long)])
        raise ConvertError(f"{path}:{_line_of(data, pos)}: id {_token_at(data, pos)} too large")
    pos = np.flatnonzero(nonws)
    expo = np.repeat(ends, lengths) - pos - 1
    contrib = (buf[pos].astype(np.int64) - 48) * _POW10[expo]
    offsets = np.zeros(starts.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    values = np.add.reduceat(contrib, offsets)
    if values.max() > _MAX_ID:
        p = int(starts[np.argmax(values > _MAX_ID)])
        raise ConvertError(f"{path}:{_line_of(data, p)}: id {_token_at(data, p)} too large")
    newlines = np.flatnonzero(buf == 10)
    lines = np.searchsorted(newlines, starts) + 1
    return values, lines


class _Inter:
    """The (user, item) pairs of one interaction file, with their line numbers."""

    def __init__(self, path: Path, allow_empty_users: bool = False):
        self.path = path
        values, lines = _int_tokens(_read_bytes(path), path)
        first = np.empty(values.size, dtype=bool)
        first[0] = True
        first[1:] = lines[1:] != lines[:-1]
        alone = first.copy()
        alone[:-1] &= first[1:]
        if alone.any() and not allow_empty_users:
            k = int(np.argmax(alone))
            raise ConvertError(f"{path}:{lines[k]}: user {values[k]} has no items "
                               "(--allow-empty-users skips such lines)")
        self.empty_users = int(alone.sum())
        if self.empty_users == values.size:
            raise ConvertError(f"{path}:1: no user-item pairs in the file")
        line_idx = np.cumsum(first) - 1
        is_item = ~first
        self.users = values[first][line_idx[is_item]]
        self.items = values[is_item]
        self.lines = lines[is_item]
        self.user_lines = lines[first]
        self.user_ids = values[first]
        self.raw_pairs = int(self.items.size)

    def check_range(self, kind: str, limit: int, why: str) -> None:
        vals = self.users if kind == "user" else self.items
        over = vals >= limit
        if over.any():
            k = int(np.argmax(over))
            raise ConvertError(f"{self.path}:{self.lines[k]}: {kind} id {vals[k]} out of range "
                               f"({why})")


def _read_kg(path: Path) -> tuple[np.ndarray, np.ndarray]:
    values, lines = _int_tokens(_read_bytes(path), path)
    counts = np.bincount(lines)
    bad = np.flatnonzero((counts != 0) & (counts != 3))
    if bad.size:
        ln = int(bad[0])
        raise ConvertError(f"{path}:{ln}: expected 3 fields 'head relation tail', "
                           f"found {int(counts[ln])}")
    return values.reshape(-1, 3), lines[::3]


def _read_id_list(path: Path) -> int:
    """Number of entries of an id list; remap ids must run 0, 1, 2, ... in order.

    The header names the columns (``org_id remap_id [freebase_id]``).  Original ids may
    contain spaces or be empty (Amazon-Book's entity list has both), so the remap id is
    located from the end of the line: last field of a 2-column list, second to last of
    a 3-column one.
    """
    data = _read_bytes(path)
    rows = data.split(b"\n")
    if not data.strip():
        raise ConvertError(f"{path}:1: empty file (no header line)")
    n_cols = len(rows[0].split())
    if n_cols < 2 or b"remap_id" not in rows[0]:
        raise ConvertError(f"{path}:1: expected a header line 'org_id remap_id [...]'")
    from_end = n_cols - 1
    n = 0
    for ln, row in enumerate(rows[1:], start=2):
        fields = row.split()
        if not fields:
            continue
        if len(fields) < from_end:
            raise ConvertError(f"{path}:{ln}: expected {n_cols} columns, found {len(fields)}")
        token = fields[-from_end]
        try:
            remap = int(token)
        except ValueError:
            raise ConvertError(f"{path}:{ln}: non-integer remap_id "
                               f"{token.decode('utf-8', 'replace')!r}") from None
        if remap != n:
            raise ConvertError(f"{path}:{ln}: remap_id {remap} out of sequence (expected {n})")
        n += 1
    if n == 0:
        raise ConvertError(f"{path}:2: no entries after the header line")
    return n


def _read_id_names(path: Path) -> list[str]:
    """The original ids of an id list, in remap-id order (call after :func:`_read_id_list` has
    checked the file)."""
    rows = _read_bytes(path).split(b"\n")
    from_end = len(rows[0].split()) - 1
    names = []
    for row in rows[1:]:
        fields = row.split()
        if fields:
            names.append(b" ".join(fields[:-from_end]).decode("utf-8", "replace"))
    return names
