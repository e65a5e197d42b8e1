"""Checks of the converter's arguments before anything is read or written."""

from __future__ import annotations

from pathlib import Path

from recbole_kgin.data.common import _NAME_RE, ConvertError

# RecBole always reads ml-100k from its bundled copy; a converted dataset of that name would be
# ignored by training yet shadow the name in atomic_data/
RESERVED_NAMES = ("ml-100k",)


def check_name(name) -> str:
    """A dataset name usable as a directory and file prefix, and not one that is reserved."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConvertError(f"invalid dataset name {name!r} (letters, digits, '.', '_', '-')")
    properties = Path(__file__).resolve().parents[2] / "properties" / "dataset"
    reserved = set(RESERVED_NAMES) | {f.stem for f in properties.glob("*.yaml")}
    if name in reserved or name.lower() in {r.lower() for r in reserved}:
        raise ConvertError(f"dataset name {name!r} is reserved (RecBole's bundled dataset or "
                           f"properties/dataset/{name}.yaml): choose another --name")
    return name

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
