"""Convert a dataset in the KGIN / KGAT text format into RecBole atomic files.

Input layout (one directory; every file may also be given ``.xz``-compressed):

* ``train.txt``, ``test.txt`` -- one line per user: ``user item item ...``
  (a user may repeat an item; duplicates are removed per user and counted);
* ``kg_final.txt`` -- one triplet per line: ``head relation tail``;
* optional id lists ``user_list.txt``, ``item_list.txt``, ``entity_list.txt``,
  ``relation_list.txt`` -- a header line, then ``org_id remap_id [freebase_id]``.

In this format item id ``k`` *is* KG entity id ``k``.  The output directory
``OUT/NAME/`` receives ``NAME.{train,valid,test}.inter``, ``NAME.kg``, ``NAME.link``
(item ``k`` <-> entity ``k``), ``stats.json`` and a RecBole config ``NAME.yaml``.
All ids are kept as the authors' remap ids (written as tokens).  Inverse
relations are not written: RecBole adds them itself (``kg_reverse_r``).

Split protocols
---------------
``paper``
    train = ``train.txt``, test = ``test.txt``, valid = a copy of the test file.  The
    reference implementation has no validation split and selects its model on the
    test set, so results obtained this way are *test-selected*.
``holdout`` (default)
    test = ``test.txt`` unchanged; valid = a seeded fraction ``valid_ratio`` of each
    user's de-duplicated training items, train = the remaining training items.
    Per user with ``n`` training items: ``n_valid = floor(n * valid_ratio)``, raised
    to 1 when it is 0 and ``n >= 2``; a user with a single training item keeps it in
    train.
``resplit`` (``resplit=(a, b, c)``)
    all given interaction files (``train.txt`` and/or ``test.txt``) are pooled,
    de-duplicated per user and re-split per user.  Per user with ``n`` items:
    ``n_valid = floor(n * b)``, ``n_test = floor(n * c)``, train gets the rest; then,
    while train keeps at least one item, an empty test part receives one item and
    after that an empty valid part receives one.  So a user with 1 item is train
    only, a user with 2 items is split 1 train / 1 test, a user with 3 or more items
    has at least one item in every part.

Which items of a user go where is decided by a per-pair hash of
``(seed, user, item)``, so the split of a user does not depend on the other users:
a ``users=N`` subsample gets exactly the split its users have in the full dataset.

Sub-sampling (``users=N``)
--------------------------
``N`` users are drawn with the seed from the users that have interactions; all their
interactions are kept.  The KG is restricted to the neighbourhood of the kept items:
hop 1 keeps every triplet whose head or tail is a kept item; each further hop
(``kg_hops``) also keeps the triplets touching an entity reached so far.

The link file
-------------
``NAME.link`` pairs item ``k`` with entity ``k`` for every item that occurs both in the
written interactions and in the written KG.  With benchmark files RecBole 1.2.1 skips
all of its own filtering (duplicates, k-core, link filtering), and it fails on a link
row whose item has no interaction, so the rows must be exact.  An interacted item
without any triplet gets no link row (RecBole then treats it as an isolated entity);
a KG id below the item count that no kept user interacted with stays a plain entity.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "ConvertError",
    "PAPER_TABLE1",
    "build_parser",
    "convert",
    "default_out_root",
    "main",
]


class ConvertError(Exception):
    """Bad input or a refused operation; the message is a single line."""


# Dataset statistics of Wang et al., "Learning Intents behind Interactions with Knowledge
# Graph for Recommendation", WWW 2021, Table 1 ("entities" excludes items).
PAPER_TABLE1 = {
    "amazon-book": dict(users=70_679, items=24_915, interactions=847_733,
                        entities=88_572, relations=39, triplets=2_557_746),
    "last-fm": dict(users=23_566, items=48_123, interactions=3_034_796,
                    entities=58_266, relations=9, triplets=464_567),
    "alibaba-fashion": dict(users=114_737, items=30_040, interactions=1_781_093,
                            entities=59_156, relations=51, triplets=279_155),
}
_NAME_HINTS = {
    "amazon-book": ("amazon",),
    "last-fm": ("last-fm", "lastfm", "last_fm"),
    "alibaba-fashion": ("alibaba", "ifashion"),
}

_INTER_HEADER = "user_id:token\titem_id:token"
_KG_HEADER = "head_id:token\trelation_id:token\ttail_id:token"
_LINK_HEADER = "item_id:token\tentity_id:token"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAX_ID = 2**31 - 1
_SPLITS = ("train", "valid", "test")


def default_out_root() -> Path:
    """The repository's ``atomic_data/`` directory."""
    import recbole_kgin

    init = getattr(recbole_kgin, "__file__", None)
    if init:
        return Path(init).resolve().parents[1] / "atomic_data"
    return Path(__file__).resolve().parents[2] / "atomic_data"


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


# ------------------------------------------------------------------------ processing
def _unique_pairs(users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """De-duplicated pairs sorted by (user, item)."""
    if users.size == 0:
        return users, items
    key = np.unique(users.astype(np.int64) << 32 | items.astype(np.int64))
    return key >> 32, key & 0xFFFFFFFF


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _pair_keys(seed: int, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    base = _mix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    with np.errstate(over="ignore"):
        h = _mix64(base + users.astype(np.uint64))
        return _mix64(h + items.astype(np.uint64))


def _rank_within_user(seed: int, users: np.ndarray, items: np.ndarray):
    """Seeded random rank of every pair inside its user, and the user's pair count."""
    order = np.lexsort((items, _pair_keys(seed, users, items), users))
    su = users[order]
    first = np.empty(su.size, dtype=bool)
    if su.size:
        first[0] = True
        first[1:] = su[1:] != su[:-1]
    starts = np.flatnonzero(first)
    counts = np.diff(np.append(starts, su.size))
    group = np.cumsum(first) - 1
    rank = np.empty(su.size, dtype=np.int64)
    rank[order] = np.arange(su.size) - starts[group]
    n = np.empty(su.size, dtype=np.int64)
    n[order] = counts[group]
    return rank, n


def _holdout(seed, users, items, ratio):
    rank, n = _rank_within_user(seed, users, items)
    n_valid = np.floor(n * ratio + 1e-9).astype(np.int64)
    n_valid = np.where((n_valid == 0) & (n >= 2), 1, n_valid)
    n_valid = np.minimum(n_valid, n - 1)
    is_valid = rank < n_valid
    return ~is_valid, is_valid


def _resplit(seed, users, items, ratios):
    _, r_valid, r_test = ratios
    rank, n = _rank_within_user(seed, users, items)
    n_valid = np.floor(n * r_valid + 1e-9).astype(np.int64)
    n_test = np.floor(n * r_test + 1e-9).astype(np.int64)
    n_train = n - n_valid - n_test
    give = (n_test == 0) & (n_train > 1)
    n_test += give
    n_train -= give
    give = (n_valid == 0) & (n_train > 1)
    n_valid += give
    n_train -= give
    is_test = rank < n_test
    is_valid = (rank >= n_test) & (rank < n_test + n_valid)
    return ~(is_test | is_valid), is_valid, is_test


def _dedup_triplets(kg: np.ndarray) -> tuple[np.ndarray, int]:
    """Remove repeated triplets, keeping the first occurrence and the file order."""
    if kg.shape[0] == 0:
        return kg, 0
    rel_bits = max(int(kg[:, 1].max()).bit_length(), 1)
    ent_bits = max(int(max(kg[:, 0].max(), kg[:, 2].max())).bit_length(), 1)
    if 2 * ent_bits + rel_bits <= 63:
        key = (kg[:, 0] << (ent_bits + rel_bits)) | (kg[:, 1] << ent_bits) | kg[:, 2]
        _, first = np.unique(key, return_index=True)
    else:
        _, first = np.unique(kg, axis=0, return_index=True)
    first.sort()
    return kg[first], int(kg.shape[0] - first.size)


# --------------------------------------------------------------------------- writing
def _write_table(path: Path, header: str, columns: list[np.ndarray]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(header + "\n")
        if columns[0].size:
            frame = pd.DataFrame({i: col for i, col in enumerate(columns)})
            frame.to_csv(fh, sep="\t", header=False, index=False, lineterminator="\n")


def _write_inter(path: Path, users: np.ndarray, items: np.ndarray) -> None:
    _write_table(path, _INTER_HEADER, [users, items])


def _write_kg(path: Path, kg: np.ndarray) -> None:
    _write_table(path, _KG_HEADER, [kg[:, 0], kg[:, 1], kg[:, 2]])


def _write_link(path: Path, items: np.ndarray) -> None:
    _write_table(path, _LINK_HEADER, [items, items])


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def _yaml_text(name: str, stats: dict) -> str:
    out = [f"# RecBole dataset config for '{name}', generated by recbole_kgin.data.convert."]
    out.append(f"# Source: {stats['source']} ({', '.join(v for v in stats['files'].values() if v)})")
    out.append(f"# Split protocol: {stats['protocol']}"
               + (" (test-selected)" if stats["test_selected"] else ""))
    for line in stats["protocol_description"].split("\n"):
        out.append(f"#   {line}")
    if stats["subsample"]:
        s = stats["subsample"]
        out.append(f"# Subsample: {s['users']} users (seed {stats['seed']}); KG restricted to the "
                   f"triplets within {s['kg_hops']} hop(s) of the kept items.")
    if not stats["paper_split"]:
        out.append("# This is NOT the paper's train/test split.")
    c = stats["counts"]
    out.append(f"# Counts: users {c['users']}, items {c['items']} (linked to the KG: {c['links']}), "
               "interactions "
               + ", ".join(f"{k} {c['interactions'][k]}" for k in _SPLITS)
               + f", entities {c['entities']}, relations {c['relations']}, triplets {c['triplets']}.")
    out += [
        "",
        "# The three files are used as they are: with benchmark_filename set, RecBole 1.2.1",
        "# (Dataset.build) never reads eval_args.split, so no split is given here.",
        "benchmark_filename: [train, valid, test]",
        "load_col:",
        "  inter: [user_id, item_id]",
    ]
    if stats["kg"]:
        out += ["  kg: [head_id, relation_id, tail_id]", "  link: [item_id, entity_id]"]
    out += [
        "# With benchmark files RecBole 1.2.1 applies none of its filters (duplicates, k-core,",
        "# link filtering): the converter has de-duplicated the interactions and wrote exact links.",
    ]
    out += [
        "",
        "eval_args:",
        "  group_by: user",
        "  order: RO",
        "  mode: full",
        "metrics: [Recall, NDCG, Hit, Precision]",
        "topk: [10, 20, 40, 50, 60, 80, 100]",
        "valid_metric: Recall@20",
        "",
    ]
    return "\n".join(out)


# ------------------------------------------------------------------- paper comparison
def _detect_known(src: Path, name: str, n_items: int, n_relations: int) -> str | None:
    for key, table in PAPER_TABLE1.items():
        if n_items == table["items"] and n_relations == table["relations"]:
            return key
    words = f"{src.name} {name}".lower()
    for key, hints in _NAME_HINTS.items():
        if any(h in words for h in hints):
            return key
    return None


def _paper_comparison(key: str, ours: dict, reasons: dict) -> dict:
    table = PAPER_TABLE1[key]
    rows, lines = [], []
    for count in ("users", "items", "interactions", "entities", "relations", "triplets"):
        mine, paper = ours[count], table[count]
        row = {"count": count, "ours": mine, "paper": paper, "equal": mine == paper}
        if mine != paper:
            row["why"] = reasons.get(count) or "unexplained difference"
            lines.append(f"{count}: {mine:,} vs paper {paper:,} -- {row['why']}")
        rows.append(row)
    return {
        "dataset": key,
        "reference": "Wang et al., WWW 2021, Table 1 (entities exclude items)",
        "rows": rows,
        "differences": lines,
    }


# ----------------------------------------------------------------------------- main
def _parse_ratios(resplit) -> tuple[float, float, float]:
    if isinstance(resplit, str):
        parts = resplit.split(",")
        try:
            vals = tuple(float(p) for p in parts)
        except ValueError:
            raise ConvertError(f"--resplit {resplit!r}: expected three numbers like 0.8,0.1,0.1") from None
    else:
        vals = tuple(float(v) for v in resplit)
    if len(vals) != 3 or any(not (v > 0) for v in vals) or abs(sum(vals) - 1) > 1e-6:
        raise ConvertError(f"--resplit {resplit!r}: expected three positive ratios summing to 1")
    return vals  # type: ignore[return-value]


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, flush=True)


def convert(src, name, out_root=None, valid="holdout", valid_ratio=0.1, resplit=None,
            users=None, seed=2020, overwrite=False, no_kg=False, kg_hops=1,
            allow_empty_users=False, quiet=False) -> dict:
    """Convert the KGIN-format dataset in ``src`` into ``out_root/name``; return its stats.

    Raises :class:`ConvertError` (one-line message) for bad input or when the destination
    exists and ``overwrite`` is false.  Nothing is left in ``out_root`` unless the whole
    dataset was written.
    """
    t_start = time.perf_counter()
    src = Path(src)
    out_root = Path(out_root) if out_root is not None else default_out_root()
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConvertError(f"invalid dataset name {name!r} (letters, digits, '.', '_', '-')")
    if valid not in ("paper", "holdout"):
        raise ConvertError(f"--valid {valid!r}: expected 'paper' or 'holdout'")
    ratios = _parse_ratios(resplit) if resplit is not None else None
    if ratios is not None and valid == "paper":
        raise ConvertError("--valid paper and --resplit cannot be combined")
    if not (0 < valid_ratio < 1):
        raise ConvertError(f"--valid-ratio {valid_ratio}: expected a number in (0, 1)")
    if users is not None and users < 1:
        raise ConvertError(f"--users {users}: expected a positive number")
    if kg_hops < 1:
        raise ConvertError(f"--kg-hops {kg_hops}: expected 1 or more")
    dest = out_root / name
    if dest.exists() and not overwrite:
        raise ConvertError(f"{dest} already exists (use --overwrite to replace it)")
    if not src.is_dir():
        raise ConvertError(f"{src}: source directory not found")

    # ---- locate and read the inputs
    files = {base: _locate(src, f"{base}.txt") for base in
             ("train", "test", "kg_final", "user_list", "item_list", "entity_list", "relation_list")}
    if no_kg:
        files["kg_final"] = None
    if ratios is None:
        for base in ("train", "test"):
            if files[base] is None:
                raise ConvertError(f"{src / (base + '.txt')}: missing file (also no .xz); "
                                   "--resplit works from whichever interaction files exist")
    elif files["train"] is None and files["test"] is None:
        raise ConvertError(f"{src / 'test.txt'}: missing file (neither train.txt nor test.txt found)")
    if not no_kg and files["kg_final"] is None:
        raise ConvertError(f"{src / 'kg_final.txt'}: missing file (use --no-kg to convert "
                           "the interactions only)")

    n_list = {base: (_read_id_list(files[base]) if files[base] is not None else None)
              for base in ("user_list", "item_list", "entity_list", "relation_list")}

    kg = None
    dup_triplets = 0
    if files["kg_final"] is not None:
        kg_path = files["kg_final"]
        kg, kg_lines = _read_kg(kg_path)
        if n_list["relation_list"] is not None:
            over = kg[:, 1] >= n_list["relation_list"]
            if over.any():
                k = int(np.argmax(over))
                raise ConvertError(f"{kg_path}:{kg_lines[k]}: relation id {kg[k, 1]} out of range "
                                   f"(relation_list.txt has {n_list['relation_list']} relations)")
        if n_list["entity_list"] is not None:
            over = np.maximum(kg[:, 0], kg[:, 2]) >= n_list["entity_list"]
            if over.any():
                k = int(np.argmax(over))
                raise ConvertError(f"{kg_path}:{kg_lines[k]}: entity id "
                                   f"{max(kg[k, 0], kg[k, 2])} out of range "
                                   f"(entity_list.txt has {n_list['entity_list']} entities)")
        n_kg_ids = (n_list["entity_list"] if n_list["entity_list"] is not None
                    else int(max(kg[:, 0].max(), kg[:, 2].max())) + 1)
        n_rel_ids = (n_list["relation_list"] if n_list["relation_list"] is not None
                     else int(kg[:, 1].max()) + 1)
        kg, dup_triplets = _dedup_triplets(kg)

    inters = {base: _Inter(files[base], allow_empty_users) for base in ("train", "test")
              if files[base] is not None}
    for base, inter in inters.items():
        if n_list["user_list"] is not None:
            inter.check_range("user", n_list["user_list"],
                              f"user_list.txt has {n_list['user_list']} users")
        if n_list["item_list"] is not None:
            inter.check_range("item", n_list["item_list"],
                              f"item_list.txt has {n_list['item_list']} items")
        if kg is not None:
            why = (f"entity_list.txt has {n_kg_ids} ids" if n_list["entity_list"] is not None
                   else f"kg_final.txt has ids 0..{n_kg_ids - 1}")
            inter.check_range("item", n_kg_ids, f"item k must be KG entity k; {why}")
    n_item_ids = (n_list["item_list"] if n_list["item_list"] is not None
                  else max(int(i.items.max()) for i in inters.values()) + 1)

    # ---- optional user subsample (before de-duplication, so its counts are the subsample's)
    subsample = None
    all_users = np.unique(np.concatenate([inter.users for inter in inters.values()]))
    if users is not None:
        if users > all_users.size:
            raise ConvertError(f"--users {users}: only {all_users.size} users have interactions")
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(all_users, size=users, replace=False))
        for inter in inters.values():
            keep = np.isin(inter.users, chosen)
            inter.users, inter.items, inter.lines = inter.users[keep], inter.items[keep], inter.lines[keep]
            inter.raw_pairs = int(keep.sum())
        subsample = {"users": int(users), "kg_hops": int(kg_hops),
                     "users_available": int(all_users.size)}
        if kg is not None:
            node = np.zeros(n_kg_ids, dtype=bool)
            for inter in inters.values():
                node[inter.items] = True
            keep = np.zeros(kg.shape[0], dtype=bool)
            for _ in range(kg_hops):
                keep |= node[kg[:, 0]] | node[kg[:, 2]]
                node[kg[keep, 0]] = True
                node[kg[keep, 2]] = True
            subsample["triplets_available"] = int(kg.shape[0])
            kg = kg[keep]

    # ---- de-duplicate
    pairs, dups, raw_pairs = {}, {}, {}
    for base, inter in inters.items():
        u, i = _unique_pairs(inter.users, inter.items)
        pairs[base] = (u, i)
        raw_pairs[f"{base}.txt"] = inter.raw_pairs
        dups[f"{base}.txt"] = inter.raw_pairs - int(u.size)
    overlap = 0
    if "train" in pairs and "test" in pairs:
        tr = pairs["train"][0] << 32 | pairs["train"][1]
        te = pairs["test"][0] << 32 | pairs["test"][1]
        overlap = int(np.isin(te, tr, assume_unique=True).sum())
    if ratios is not None:
        pooled_u = np.concatenate([p[0] for p in pairs.values()])
        pooled_i = np.concatenate([p[1] for p in pairs.values()])
        n_before = pooled_u.size
        pooled_u, pooled_i = _unique_pairs(pooled_u, pooled_i)
        dups["pooled across files"] = int(n_before - pooled_u.size)
        pairs = {"pool": (pooled_u, pooled_i)}
    dups["total"] = int(sum(dups.values()))

    # ---- split
    if ratios is not None:
        u, i = pairs["pool"]
        tr, va, te = _resplit(seed, u, i, ratios)
        split = {"train": (u[tr], i[tr]), "valid": (u[va], i[va]), "test": (u[te], i[te])}
        used = [f"{b}.txt" for b in ("train", "test") if b in inters]
        protocol = f"resplit {ratios[0]:g}/{ratios[1]:g}/{ratios[2]:g}"
        description = (f"the de-duplicated interactions of {' + '.join(used)} pooled and re-split "
                       f"per user {ratios[0]:g}/{ratios[1]:g}/{ratios[2]:g} (seed {seed}).\n"
                       "Per user: valid = floor(n*valid), test = floor(n*test), train = rest; an empty "
                       "test, then valid, part gets one item while train keeps one.")
    elif valid == "paper":
        split = {"train": pairs["train"], "valid": pairs["test"], "test": pairs["test"]}
        protocol = "paper"
        description = ("train = train.txt, test = test.txt, valid = a copy of test.txt: model "
                       "selection on it is test-selected,\nas in the reference code (which has no "
                       "validation split).")
    else:
        u, i = pairs["train"]
        tr, va = _holdout(seed, u, i, valid_ratio)
        split = {"train": (u[tr], i[tr]), "valid": (u[va], i[va]), "test": pairs["test"]}
        protocol = f"holdout {valid_ratio:g}"
        description = (f"test = test.txt unchanged; valid = a seeded {valid_ratio:g} of each user's "
                       f"de-duplicated train.txt items (seed {seed};\nat least one when the user has 2 "
                       "or more, none when 1); train = the remaining train.txt items.")
    test_selected = protocol == "paper"
    paper_split = protocol == "paper" and subsample is None

    # ---- counts
    written_u = np.concatenate([split[s][0] for s in _SPLITS])
    written_i = np.concatenate([split[s][1] for s in _SPLITS])
    inter_counts = {s: int(split[s][0].size) for s in _SPLITS}
    total_unique = inter_counts["train"] + inter_counts["test"] + (
        0 if protocol == "paper" else inter_counts["valid"])
    items_interacted = np.unique(written_i)
    if kg is not None:
        ids = np.unique(np.concatenate([kg[:, 0], kg[:, 2]]))
        link_items = np.intersect1d(ids, items_interacted, assume_unique=True)
        n_kg_written = int(ids.size)
        n_entities = int((ids >= n_item_ids).sum())
        n_relations = int(np.unique(kg[:, 1]).size)
        n_triplets = int(kg.shape[0])
    else:
        link_items = None
        n_kg_written = n_entities = n_relations = n_triplets = 0
    counts = {
        "users": int(np.unique(written_u).size),
        "items": int(items_interacted.size),
        "item_ids": int(n_item_ids),
        "interactions": {**inter_counts, "total_unique": int(total_unique)},
        "entities": n_entities,
        "kg_ids": n_kg_written,
        "relations": n_relations,
        "triplets": n_triplets,
        "links": int(link_items.size) if link_items is not None else 0,
        "items_without_kg": (int(items_interacted.size - link_items.size)
                             if link_items is not None else None),
    }
    id_space = {
        "users": n_list["user_list"] if n_list["user_list"] is not None else int(all_users.max()) + 1,
        "items": int(n_item_ids),
        "kg_ids": int(n_kg_ids) if kg is not None else n_list["entity_list"],
        "relations": int(n_rel_ids) if kg is not None else n_list["relation_list"],
    }

    stats = {
        "name": name,
        "source": str(src.resolve()),
        "files": {k: (v.name if v is not None else None) for k, v in files.items()},
        "protocol": protocol,
        "protocol_description": description,
        "test_selected": test_selected,
        "paper_split": paper_split,
        "seed": int(seed),
        "valid_ratio": float(valid_ratio) if protocol.startswith("holdout") else None,
        "resplit": list(ratios) if ratios is not None else None,
        "subsample": subsample,
        "kg": kg is not None,
        "counts": counts,
        "id_space": id_space,
        "raw_pairs": raw_pairs,
        "user_lines_without_items": {f"{b}.txt": i.empty_users for b, i in inters.items()},
        "duplicates_removed": {**dups, "kg_final.txt": dup_triplets},
        "train_test_overlap": overlap if ratios is None else None,
        "paper_table1": None,
    }

    # ---- comparison with the paper, for the three published datasets
    known = _detect_known(src, name, id_space["items"],
                          id_space["relations"] if id_space["relations"] is not None else -1)
    if known is not None:
        missing = [f"{b}.txt" for b in ("train", "test") if files[b] is None]
        reasons = {}
        inter_why = []
        if missing:
            inter_why.append(f"{' and '.join(missing)} not available here")
        if ratios is not None:
            inter_why.append("interactions re-split")
        if dups["total"]:
            inter_why.append(f"{dups['total']:,} per-user duplicates removed "
                             f"(raw pairs {sum(raw_pairs.values()):,})")
        if subsample:
            inter_why.append(f"subsample of {users} users")
        if not inter_why:
            inter_why.append(f"the available files hold {sum(raw_pairs.values()):,} pairs; the "
                             "paper's figure does not follow from them")
        reasons["interactions"] = "; ".join(inter_why)
        if subsample:
            reasons["users"] = f"subsample of {users} users"
            reasons["items"] = f"items of the {users} kept users and their KG neighbourhood"
        elif missing:
            reasons["users"] = f"users without interactions in the available files ({', '.join(missing)} missing)"
        kg_why = []
        if kg is None:
            kg_why.append("no KG written (" + ("kg_final.txt not available here"
                                                if _locate(src, "kg_final.txt") is None
                                                else "--no-kg") + ")")
        if subsample and kg is not None:
            kg_why.append(f"KG restricted to {kg_hops} hop(s) around the kept items")
        if dup_triplets:
            kg_why.append(f"{dup_triplets:,} repeated triplets removed")
        if not kg_why and kg is not None:
            kg_why.append("ids listed but not occurring in any triplet")
        for c in ("entities", "relations", "triplets"):
            reasons[c] = "; ".join(kg_why) or None
        if kg is None:
            listed = {"entities": (n_list["entity_list"] - n_item_ids
                                   if n_list["entity_list"] is not None else None),
                      "relations": n_list["relation_list"]}
            for c, v in listed.items():
                if v is not None:
                    reasons[c] += f"; the id list has {v:,}"
        if n_list["item_list"] is None and not subsample:
            reasons["items"] = "no item_list.txt: counted as the largest interacted item id + 1"
        ours = {"users": counts["users"],
                "items": counts["items"] if subsample else counts["item_ids"],
                "interactions": total_unique,
                "entities": n_entities, "relations": n_relations, "triplets": n_triplets}
        stats["paper_table1"] = _paper_comparison(known, ours, reasons)

    # ---- write atomically
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out_root))
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as exc:
        raise ConvertError(f"{out_root}: cannot create the output directory ({exc.strerror or exc})") from None
    try:
        for s in _SPLITS:
            _write_inter(tmp / f"{name}.{s}.inter", *split[s])
        if kg is not None:
            _write_kg(tmp / f"{name}.kg", kg)
            _write_link(tmp / f"{name}.link", link_items)
        _write_text(tmp / "stats.json", json.dumps(stats, indent=2) + "\n")
        _write_text(tmp / f"{name}.yaml", _yaml_text(name, stats))
        _install(tmp, dest, overwrite)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConvertError(f"{dest}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    elapsed = time.perf_counter() - t_start
    _say(quiet, _summary(stats, dest, elapsed))
    return stats


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _install(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Move the finished temporary directory to ``dest`` (replacing it if allowed)."""
    if not dest.exists():
        os.rename(tmp, dest)
        return
    if not overwrite:
        raise ConvertError(f"{dest} already exists (use --overwrite to replace it)")
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    os.rmdir(old)
    os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _summary(stats: dict, dest: Path, elapsed: float) -> str:
    c = stats["counts"]
    it = c["interactions"]
    lines = [
        f"{stats['name']}: written to {dest} in {elapsed:.1f} s "
        f"(protocol {stats['protocol']}{', test-selected' if stats['test_selected'] else ''})",
        f"  users {c['users']:,} | items {c['items']:,} (ids {c['item_ids']:,}, linked {c['links']:,}) | "
        f"interactions train {it['train']:,} valid {it['valid']:,} test {it['test']:,} | "
        f"entities {c['entities']:,} | relations {c['relations']:,} | triplets {c['triplets']:,}",
        "  duplicates removed: " + ", ".join(f"{k} {v:,}" for k, v in stats["duplicates_removed"].items()),
    ]
    cmp_ = stats["paper_table1"]
    if cmp_ is not None:
        if cmp_["differences"]:
            lines.append(f"  differs from the paper's Table 1 ({cmp_['dataset']}):")
            lines += [f"    {d}" for d in cmp_["differences"]]
        else:
            lines.append(f"  all counts equal the paper's Table 1 ({cmp_['dataset']})")
    return "\n".join(lines)


class _ArgumentError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr instead of usage + exit
        raise _ArgumentError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="convert",
        description="Convert a KGIN/KGAT-format dataset (train.txt, test.txt, kg_final.txt, "
                    "id lists; plain or .xz) into RecBole atomic files.",
    )
    p.add_argument("--src", required=True, help="directory with the KGIN-format files")
    p.add_argument("--name", required=True, help="dataset name (output directory and file prefix)")
    p.add_argument("--out", default=None,
                   help="output root (default: the repository's atomic_data/)")
    p.add_argument("--valid", choices=("paper", "holdout"), default="holdout",
                   help="paper: valid = copy of test (test-selected); holdout (default): "
                        "a seeded fraction of each user's training items")
    p.add_argument("--valid-ratio", type=float, default=0.1,
                   help="holdout fraction of each user's training items (default 0.1)")
    p.add_argument("--resplit", default=None, metavar="TRAIN,VALID,TEST",
                   help="pool the given interaction files and re-split per user, e.g. 0.8,0.1,0.1")
    p.add_argument("--users", type=int, default=None, metavar="N",
                   help="seeded subsample of N users; KG restricted to their items' neighbourhood")
    p.add_argument("--kg-hops", type=int, default=1,
                   help="with --users: KG hops kept around the kept items (default 1)")
    p.add_argument("--no-kg", action="store_true",
                   help="interactions only (for general models); kg_final.txt is not read")
    p.add_argument("--allow-empty-users", action="store_true",
                   help="skip (and count) lines that hold a user id but no item; by default "
                        "such a line is an error")
    p.add_argument("--seed", type=int, default=2020, help="random seed (default 2020)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as exc:
        print(f"convert: error: {exc} (see --help)", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        convert(args.src, args.name, out_root=args.out, valid=args.valid,
                valid_ratio=args.valid_ratio, resplit=args.resplit, users=args.users,
                seed=args.seed, overwrite=args.overwrite, no_kg=args.no_kg,
                kg_hops=args.kg_hops, allow_empty_users=args.allow_empty_users,
                quiet=args.quiet)
    except ConvertError as exc:
        print(f"convert: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("convert: interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
