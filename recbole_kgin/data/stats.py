"""Counts compared with the paper's Table 1, and the summary printed after a conversion."""

from __future__ import annotations

from pathlib import Path

from recbole_kgin.data.common import _NAME_HINTS, PAPER_TABLE1

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
    for label, d in (("subset", stats["density"]["subset"]), ("parent", stats["density"]["parent"])):
        if d is not None:
            cold = d["cold_test_share"]
            lines.append(f"  {label}: {d['train_per_user']} train pairs per user, "
                         f"{d['train_per_item']} per catalogue item, cold test pairs "
                         + (f"{100 * cold:.1f} %" if cold is not None else "-"))
    cmp_ = stats["paper_table1"]
    if cmp_ is not None:
        if cmp_["differences"]:
            lines.append(f"  differs from the paper's Table 1 ({cmp_['dataset']}):")
            lines += [f"    {d}" for d in cmp_["differences"]]
        else:
            lines.append(f"  all counts equal the paper's Table 1 ({cmp_['dataset']})")
    return "\n".join(lines)
