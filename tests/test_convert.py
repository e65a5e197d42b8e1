"""Tests of the KGIN-format -> RecBole atomic-file converter (recbole_kgin.data.convert)."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import numpy as np
import pytest
import yaml

import recbole_kgin.data.convert as conv

# --------------------------------------------------------------------------- helpers
# A hand-made dataset: 3 users, items 0..4, entities 5..7, relations 0..2.
TRAIN = "0 0 1 2 1\n1 2 3\n2 4\n"          # user 0 repeats item 1
TEST = "0 3\n1 0 0\n2 1\n"                  # user 1 repeats item 0
KG = "0 0 5\n1 0 5\n2 1 6\n3 1 6\n4 2 7\n0 2 7\n5 1 6\n0 0 5\n"   # last line repeats line 1
LISTS = {
    "user_list.txt": "org_id remap_id\nu0 0\nu1 1\nu2 2\n",
    "item_list.txt": "org_id remap_id freebase_id\n" + "".join(f"i{k} {k} m.{k}\n" for k in range(5)),
    "entity_list.txt": "org_id remap_id\n" + "".join(f"m.{k} {k}\n" for k in range(8)),
    "relation_list.txt": "org_id remap_id\nhttp://r/a 0\nhttp://r/b 1\nhttp://r/c 2\n",
}


def write_src(root: Path, files: dict[str, str | None], name="src", newline="\n", xz=False) -> Path:
    src = root / name
    src.mkdir(parents=True, exist_ok=True)
    for fname, text in files.items():
        if text is None:
            continue
        data = text.replace("\n", newline).encode()
        if xz:
            (src / (fname + ".xz")).write_bytes(lzma.compress(data))
        else:
            (src / fname).write_bytes(data)
    return src


def small_files(**override) -> dict:
    files = {"train.txt": TRAIN, "test.txt": TEST, "kg_final.txt": KG, **LISTS}
    files.update(override)
    return files


def read_pairs(path: Path) -> list[tuple[int, int]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token"
    return [tuple(int(x) for x in ln.split("\t")) for ln in lines[1:]]


def random_files(seed=0, n_users=300, n_items=60, n_ent=40, n_rel=4, with_train=True) -> dict:
    rng = np.random.default_rng(seed)

    def lines(lo, hi):
        out = []
        for u in range(n_users):
            k = int(rng.integers(lo, hi))
            items = rng.integers(0, n_items, size=k)
            out.append(" ".join(map(str, [u, *items])))
        return "\n".join(out) + "\n"

    heads = np.concatenate([np.arange(n_items), rng.integers(0, n_items + n_ent, 100)])
    tails = rng.integers(n_items, n_items + n_ent, heads.size)
    rels = rng.integers(0, n_rel, heads.size)
    kg = "".join(f"{h} {r} {t}\n" for h, r, t in zip(heads, rels, tails))
    return {"train.txt": lines(1, 12) if with_train else None, "test.txt": lines(1, 6),
            "kg_final.txt": kg}


@pytest.fixture
def conv_out(tmp_path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    return out


def run_main(args, capsys):
    rc = conv.main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_bad_input(capsys, src: Path, out: Path, file: str, line: int | None, words: str,
                     extra=()):
    rc, _, err = run_main(["--src", src, "--name", "ds", "--out", out, *extra], capsys)
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert file in lines[0]
    if line is not None:
        assert f"{file}:{line}:" in lines[0]
    assert words in lines[0]
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------ positive: contents
def test_paper_protocol_exact_files(tmp_path, conv_out):
    src = write_src(tmp_path, small_files())
    stats = conv.convert(src, "ds", conv_out, valid="paper", quiet=True)
    d = conv_out / "ds"
    assert sorted(p.name for p in d.iterdir()) == sorted(
        ["ds.train.inter", "ds.valid.inter", "ds.test.inter", "ds.kg", "ds.link", "ds.item", "ds.yaml",
         "stats.json"])
    assert read_pairs(d / "ds.train.inter") == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 3), (2, 4)]
    assert read_pairs(d / "ds.test.inter") == [(0, 3), (1, 0), (2, 1)]
    assert (d / "ds.valid.inter").read_bytes() == (d / "ds.test.inter").read_bytes()
    assert (d / "ds.kg").read_text() == (
        "head_id:token\trelation_id:token\ttail_id:token\n"
        "0\t0\t5\n1\t0\t5\n2\t1\t6\n3\t1\t6\n4\t2\t7\n0\t2\t7\n5\t1\t6\n")
    assert (d / "ds.link").read_text() == "item_id:token\tentity_id:token\n" + "".join(
        f"{k}\t{k}\n" for k in range(5))
    c = stats["counts"]
    assert (c["users"], c["items"], c["item_ids"], c["entities"], c["relations"], c["triplets"],
            c["links"]) == (3, 5, 5, 3, 3, 7, 5)
    assert c["interactions"] == {"train": 6, "valid": 3, "test": 3, "total_unique": 9}
    assert stats["duplicates_removed"] == {"train.txt": 1, "test.txt": 1, "total": 2,
                                           "kg_final.txt": 1}
    assert stats["raw_pairs"] == {"train.txt": 7, "test.txt": 4}
    assert stats["test_selected"] is True and stats["paper_split"] is True
    assert json.loads((d / "stats.json").read_text()) == stats

    text = (d / "ds.yaml").read_text()
    assert "test-selected" in text
    cfg = yaml.safe_load(text)
    assert cfg["benchmark_filename"] == ["train", "valid", "test"]
    assert cfg["load_col"] == {"inter": ["user_id", "item_id"], "item": ["item_id"],
                               "kg": ["head_id", "relation_id", "tail_id"],
                               "link": ["item_id", "entity_id"]}
    assert cfg["eval_args"] == {"group_by": "user", "order": "RO", "mode": "full"}
    assert cfg["metrics"] == ["Recall", "NDCG", "Hit", "Precision"]
    # 5 items: the cut-offs cannot exceed them (RecBole would fail at the first validation)
    assert stats["counts"]["items"] == 5
    assert cfg["topk"] == [5] and cfg["valid_metric"] == "Recall@5"


def test_duplicates_counted_per_user_only(tmp_path, conv_out):
    # user 0 repeats 7 twice on one line and once on a second line; user 1 also has 7.
    src = write_src(tmp_path, {"train.txt": "0 7 7 8\n1 7\n0 7\n", "test.txt": "0 9 9 9\n1 8\n"})
    stats = conv.convert(src, "ds", conv_out, valid="paper", no_kg=True, quiet=True)
    assert stats["duplicates_removed"]["train.txt"] == 2
    assert stats["duplicates_removed"]["test.txt"] == 2
    assert read_pairs(conv_out / "ds" / "ds.train.inter") == [(0, 7), (0, 8), (1, 7)]
    assert not (conv_out / "ds" / "ds.kg").exists()
    assert "kg" not in yaml.safe_load((conv_out / "ds" / "ds.yaml").read_text())["load_col"]


def test_link_item_k_is_entity_k(tmp_path, conv_out):
    # no item list: the catalogue is ids 0..6. Item 3 is never interacted but is in the catalogue
    # and the KG (linked); items 4, 5 and 6 have no triplet (no link row), 6 is interacted.
    files = {"train.txt": "0 0 1\n1 2 6\n", "test.txt": "0 2\n1 0\n",
             "kg_final.txt": "0 0 7\n1 0 8\n2 1 7\n3 1 8\n"}
    src = write_src(tmp_path, files)
    stats = conv.convert(src, "ds", conv_out, valid="paper", quiet=True)
    rows = (conv_out / "ds" / "ds.link").read_text().splitlines()[1:]
    pairs = [tuple(r.split("\t")) for r in rows]
    assert all(a == b for a, b in pairs)
    assert [a for a, _ in pairs] == ["0", "1", "2", "3"]
    assert (conv_out / "ds" / "ds.item").read_text().splitlines() == [
        "item_id:token", *map(str, range(7))]
    c = stats["counts"]
    assert (c["items"], c["items_interacted"], c["items_without_kg"], c["item_ids"]) == (7, 4, 3, 7)


def test_holdout_protocol(tmp_path, conv_out):
    files = random_files(seed=1)
    src = write_src(tmp_path, files)
    s1 = conv.convert(src, "a", conv_out, valid="holdout", valid_ratio=0.2, seed=7, quiet=True)
    train = read_pairs(conv_out / "a" / "a.train.inter")
    valid = read_pairs(conv_out / "a" / "a.valid.inter")
    test = read_pairs(conv_out / "a" / "a.test.inter")
    # test is test.txt de-duplicated, untouched
    raw_test = {(int(l.split()[0]), int(x)) for l in files["test.txt"].splitlines()
                for x in l.split()[1:]}
    assert set(test) == raw_test and len(test) == len(raw_test)
    # train + valid partition the de-duplicated train.txt
    raw_train = {(int(l.split()[0]), int(x)) for l in files["train.txt"].splitlines()
                 for x in l.split()[1:]}
    assert set(train) | set(valid) == raw_train
    assert not set(train) & set(valid)
    per_user = {}
    for u, i in raw_train:
        per_user.setdefault(u, set()).add(i)
    n_valid = {}
    for u, _ in valid:
        n_valid[u] = n_valid.get(u, 0) + 1
    for u, items in per_user.items():
        n = len(items)
        expected = 0 if n == 1 else max(1, int(np.floor(n * 0.2)))
        assert n_valid.get(u, 0) == expected, (u, n)
    # seeded: same seed -> same files, other seed -> different validation items
    conv.convert(src, "b", conv_out, valid_ratio=0.2, seed=7, quiet=True)
    conv.convert(src, "c", conv_out, valid_ratio=0.2, seed=8, quiet=True)
    assert read_pairs(conv_out / "b" / "b.valid.inter") == valid
    assert read_pairs(conv_out / "c" / "c.valid.inter") != valid
    assert s1["test_selected"] is False and s1["protocol"] == "holdout 0.2"


def test_resplit_protocol(tmp_path, conv_out):
    files = random_files(seed=2, with_train=False)
    src = write_src(tmp_path, files)  # no train.txt at all
    stats = conv.convert(src, "r", conv_out, resplit="0.6,0.2,0.2", seed=3, quiet=True)
    parts = {s: read_pairs(conv_out / "r" / f"r.{s}.inter") for s in ("train", "valid", "test")}
    sets = {s: set(p) for s, p in parts.items()}
    assert not (sets["train"] & sets["valid"] or sets["train"] & sets["test"]
                or sets["valid"] & sets["test"])
    raw = {(int(l.split()[0]), int(x)) for l in files["test.txt"].splitlines() for x in l.split()[1:]}
    assert sets["train"] | sets["valid"] | sets["test"] == raw
    by_user = {}
    for s, pairs in parts.items():
        for u, _ in pairs:
            by_user.setdefault(u, {"train": 0, "valid": 0, "test": 0})[s] += 1
    for u, c in by_user.items():
        n = sum(c.values())
        if n == 1:
            assert c == {"train": 1, "valid": 0, "test": 0}
        elif n == 2:
            assert c == {"train": 1, "valid": 0, "test": 1}
        else:
            assert min(c.values()) >= 1
            assert c["valid"] == max(1, int(np.floor(n * 0.2)))
    assert stats["counts"]["interactions"]["total_unique"] == len(raw)
    conv.convert(src, "r2", conv_out, resplit=(0.6, 0.2, 0.2), seed=3, quiet=True)
    conv.convert(src, "r3", conv_out, resplit=(0.6, 0.2, 0.2), seed=4, quiet=True)
    assert read_pairs(conv_out / "r2" / "r2.test.inter") == parts["test"]
    assert read_pairs(conv_out / "r3" / "r3.test.inter") != parts["test"]


def test_resplit_pools_train_and_test(tmp_path, conv_out):
    src = write_src(tmp_path, {"train.txt": "0 1 2 3\n1 4\n", "test.txt": "0 3 4\n1 5\n"})
    stats = conv.convert(src, "p", conv_out, resplit="0.8,0.1,0.1", no_kg=True, quiet=True)
    assert stats["duplicates_removed"]["pooled across files"] == 1      # (0, 3) is in both
    assert stats["counts"]["interactions"]["total_unique"] == 6


def read_kg_rows(path: Path) -> list[tuple[int, int, int]]:
    return [tuple(map(int, r.split("\t"))) for r in path.read_text().splitlines()[1:]]


def read_items(path: Path) -> list[int]:
    return [int(r) for r in path.read_text().splitlines()[1:]]


def test_users_subsample_keeps_catalogue_and_kg(tmp_path, conv_out):
    files = random_files(seed=4, with_train=False)
    src = write_src(tmp_path, files)
    full = conv.convert(src, "full", conv_out, resplit="0.8,0.1,0.1", quiet=True)
    sub = conv.convert(src, "sub", conv_out, resplit="0.8,0.1,0.1", users=40, quiet=True)
    assert sub["counts"]["users"] == 40 and sub["subsample"]["mode"] == "users"
    assert sub["raw_pairs"]["test.txt"] < full["raw_pairs"]["test.txt"]
    # leak-free: the catalogue and the KG are the whole dataset's, whatever the users hold out
    for suffix in ("item", "kg", "link"):
        assert (conv_out / "sub" / f"sub.{suffix}").read_bytes() == (
            conv_out / "full" / f"full.{suffix}").read_bytes()
    # the subsample's split is the full split restricted to the kept users
    inter = {s: read_pairs(conv_out / "sub" / f"sub.{s}.inter") for s in ("train", "valid", "test")}
    users = {u for pairs in inter.values() for u, _ in pairs}
    for s in ("train", "valid", "test"):
        full_pairs = read_pairs(conv_out / "full" / f"full.{s}.inter")
        assert inter[s] == [p for p in full_pairs if p[0] in users]
    assert sub["density"]["parent"] == full["density"]["parent"]
    assert sub["density"]["subset"]["users"] == 40
    # --min-user-inter: only users with that many items are drawn
    big = conv.convert(src, "big", conv_out, resplit="0.8,0.1,0.1", users=10, min_user_inter=5,
                       quiet=True)
    counts = {}
    for s in ("train", "valid", "test"):
        for u, _ in read_pairs(conv_out / "big" / f"big.{s}.inter"):
            counts[u] = counts.get(u, 0) + 1
    assert len(counts) == 10 and min(counts.values()) >= 5
    assert big["counts"]["users"] == 10


def test_items_subset_catalogue_users_and_kg(tmp_path, conv_out):
    files = random_files(seed=6, n_users=200, n_items=60, n_ent=40, with_train=False)
    src = write_src(tmp_path, files)
    full = conv.convert(src, "full", conv_out, resplit="0.8,0.1,0.1", quiet=True)
    sub = conv.convert(src, "sub", conv_out, resplit="0.8,0.1,0.1", items=20, min_user_inter=2,
                       quiet=True)
    catalogue = read_items(conv_out / "sub" / "sub.item")
    assert len(catalogue) == 20 == sub["counts"]["items"] and sub["subsample"]["mode"] == "items"
    cat = set(catalogue)
    inter = {s: read_pairs(conv_out / "sub" / f"sub.{s}.inter") for s in ("train", "valid", "test")}
    pairs = [p for part in inter.values() for p in part]
    assert {i for _, i in pairs} <= cat
    # every pair of a kept user with a drawn item is kept; users have 2+ of them
    raw = {(int(l.split()[0]), int(x)) for l in files["test.txt"].splitlines() for x in l.split()[1:]}
    per_user = {}
    for u, i in raw:
        if i in cat:
            per_user.setdefault(u, set()).add(i)
    kept = {u for u, its in per_user.items() if len(its) >= 2}
    assert set(pairs) == {(u, i) for u, its in per_user.items() if u in kept for i in its}
    # the KG is the 1-hop neighbourhood of the catalogue; links are the catalogue items in it
    full_kg = read_kg_rows(conv_out / "full" / "full.kg")
    kg = read_kg_rows(conv_out / "sub" / "sub.kg")
    assert set(kg) == {t for t in full_kg if t[0] in cat or t[2] in cat}
    ids = {h for h, _, _ in kg} | {t for _, _, t in kg}
    links = [int(r.split("\t")[0]) for r in (conv_out / "sub" / "sub.link").read_text().splitlines()[1:]]
    assert set(links) == cat & ids
    two = conv.convert(src, "two", conv_out, resplit="0.8,0.1,0.1", items=20, kg_hops=2, quiet=True)
    assert two["counts"]["triplets"] >= sub["counts"]["triplets"]
    assert read_items(conv_out / "two" / "two.item") == catalogue      # same seed, same draw
    d = sub["density"]
    assert d["parent"] == full["density"]["parent"]
    assert d["subset"]["catalogue_items"] == 20 and d["parent"]["catalogue_items"] == 60
    train_items = {i for _, i in inter["train"]}
    cold = sum(i not in train_items for _, i in inter["test"]) / len(inter["test"])
    assert d["subset"]["cold_test_share"] == pytest.approx(cold)
    assert d["subset"]["train_per_user"] == round(len(inter["train"]) / len(kept), 3)


def test_item_groups_draw_whole_groups(tmp_path, conv_out):
    # items 0..11; relation 1 joins item k to "artist" entity 20 + k // 3 (groups of 3); item 11
    # has no artist (a group of its own); relation 0 is a second, unrelated edge per item
    kg = "".join(f"{k} 1 {20 + k // 3}\n" for k in range(11))
    kg += "".join(f"{k} 0 {30 + k % 2}\n" for k in range(12))
    lines = "".join(f"{u} " + " ".join(str((u + j) % 12) for j in range(4)) + "\n"
                    for u in range(30))
    files = {"test.txt": lines, "kg_final.txt": kg,
             "relation_list.txt": "org_id remap_id\nhttp://x/music.genre 0\nhttp://x/music.artist 1\n"}
    src = write_src(tmp_path, files)
    for spec in ("1", "artist", "http://x/music.artist"):
        stats = conv.convert(src, f"g{spec[-1]}", conv_out, resplit="0.8,0.1,0.1", items=5,
                             item_groups=spec, overwrite=True, quiet=True)
        drawn = set(read_items(conv_out / f"g{spec[-1]}" / f"g{spec[-1]}.item"))
        groups = [{3 * g, 3 * g + 1, 3 * g + 2} - {11} for g in range(4)] + [{11}]
        assert all(grp <= drawn or not grp & drawn for grp in groups), drawn
        assert len(drawn) >= 5 and stats["subsample"]["item_groups"]["relation"] == 1
        assert stats["counts"]["items"] == len(drawn)


def test_subset_never_depends_on_held_out_pairs(tmp_path, conv_out):
    """Remove a subset's valid and test pairs from the source, convert again: the same catalogue
    and the same KG (the users and the split may differ; the items and the KG may not)."""
    files = random_files(seed=7, n_users=150, n_items=50, n_ent=30, with_train=False)
    for args in ({"items": 15, "min_user_inter": 2}, {"items": 20, "kg_hops": 2},
                 {"users": 30}):
        src = write_src(tmp_path, files, name="complete")
        conv.convert(src, "a", conv_out, resplit="0.6,0.2,0.2", overwrite=True, quiet=True, **args)
        held = set(read_pairs(conv_out / "a" / "a.valid.inter")) | set(
            read_pairs(conv_out / "a" / "a.test.inter"))
        assert held
        kept_lines = []
        for line in files["test.txt"].splitlines():
            u, *its = map(int, line.split())
            its = [i for i in its if (u, i) not in held]
            if its:
                kept_lines.append(" ".join(map(str, [u, *its])))
        src2 = write_src(tmp_path, {**files, "test.txt": "\n".join(kept_lines) + "\n"},
                         name="reduced")
        conv.convert(src2, "b", conv_out, resplit="0.6,0.2,0.2", overwrite=True, quiet=True, **args)
        for suffix in ("item", "kg"):
            assert (conv_out / "a" / f"a.{suffix}").read_bytes() == (
                conv_out / "b" / f"b.{suffix}").read_bytes(), (args, suffix)


def test_recbole_ranks_the_whole_catalogue_of_a_subset(tmp_path, conv_out):
    files = random_files(seed=8, n_users=80, n_items=40, n_ent=20, with_train=False)
    # ids 40..44 are items nobody interacted with; 41 of 45 drawn include at least one of them
    files["item_list.txt"] = "org_id remap_id\n" + "".join(f"i{k} {k}\n" for k in range(45))
    src = write_src(tmp_path, files)
    stats = conv.convert(src, "tiny", conv_out, resplit="0.8,0.1,0.1", items=41,
                         min_user_inter=3, quiet=True)
    c = stats["counts"]
    assert c["items_interacted"] < c["items"] == 41
    dataset, (train, valid, test) = load_converted(conv_out, tmp_path, "KGIN")
    assert dataset.item_num - 1 == 41
    assert sorted(int(t) for t in dataset.field2id_token["item_id"][1:]) == read_items(
        conv_out / "tiny" / "tiny.item")
    assert len(dataset.item2entity) == c["links"]
    assert [train._dataset.inter_num, valid._dataset.inter_num, test._dataset.inter_num] == [
        c["interactions"]["train"], c["interactions"]["valid"], c["interactions"]["test"]]


def test_crlf_and_trailing_blank_line_accepted(tmp_path):
    out_lf, out_crlf = tmp_path / "o1", tmp_path / "o2"
    lf = write_src(tmp_path, small_files(), name="lf")
    crlf_files = {k: v + "\n" for k, v in small_files().items()}   # trailing blank line
    crlf = write_src(tmp_path, crlf_files, name="crlf", newline="\r\n")
    assert b"\r\n\r\n" in (crlf / "kg_final.txt").read_bytes()
    s1 = conv.convert(lf, "ds", out_lf, quiet=True)
    s2 = conv.convert(crlf, "ds", out_crlf, quiet=True)
    for f in ("ds.train.inter", "ds.valid.inter", "ds.test.inter", "ds.kg", "ds.link"):
        assert (out_lf / "ds" / f).read_bytes() == (out_crlf / "ds" / f).read_bytes()
    for s in (s1, s2):
        s.pop("source")
    assert s1 == s2


def test_xz_input_equals_plain(tmp_path):
    plain = write_src(tmp_path, small_files(), name="plain")
    packed = write_src(tmp_path, small_files(), name="packed", xz=True)
    s1 = conv.convert(plain, "ds", tmp_path / "o1", quiet=True)
    s2 = conv.convert(packed, "ds", tmp_path / "o2", quiet=True)
    assert s2["files"]["kg_final"] == "kg_final.txt.xz"
    for f in ("ds.train.inter", "ds.valid.inter", "ds.test.inter", "ds.kg", "ds.link"):
        assert (tmp_path / "o1" / "ds" / f).read_bytes() == (tmp_path / "o2" / "ds" / f).read_bytes()
    assert s1["counts"] == s2["counts"]


def test_paper_table1_comparison(tmp_path, conv_out, capsys):
    src = write_src(tmp_path, small_files(), name="last-fm")
    rc, out, err = run_main(["--src", src, "--name", "lfm", "--out", conv_out,
                             "--resplit", "0.8,0.1,0.1"], capsys)
    assert rc == 0, err
    cmp_ = json.loads((conv_out / "lfm" / "stats.json").read_text())["paper_table1"]
    assert cmp_["dataset"] == "last-fm"
    rows = {r["count"]: r for r in cmp_["rows"]}
    assert rows["triplets"]["paper"] == 464_567 and rows["triplets"]["ours"] == 7
    assert rows["interactions"]["equal"] is False
    assert "re-split" in rows["interactions"]["why"]
    assert "interactions: 9 vs paper 3,034,796" in out


def test_cli_defaults_and_usage_error(tmp_path, conv_out, capsys):
    src = write_src(tmp_path, small_files())
    rc, out, _ = run_main(["--src", src, "--name", "ds", "--out", conv_out], capsys)
    assert rc == 0 and "ds: written to" in out
    assert json.loads((conv_out / "ds" / "stats.json").read_text())["protocol"] == "holdout 0.1"
    rc, _, err = run_main(["--src", src, "--name", "x", "--out", conv_out, "--valid", "bogus"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1
    rc, _, err = run_main(["--src", src, "--name", "x", "--out", conv_out, "--resplit", "0.8,0.3"],
                          capsys)
    assert rc == 1 and "--resplit" in err
    assert sorted(p.name for p in conv_out.iterdir()) == ["ds"]
    assert conv.default_out_root().name == "atomic_data"


def test_id_lists_with_spaces_and_empty_original_ids(tmp_path, conv_out):
    lists = {"entity_list.txt": "org_id remap_id\n" + "m.0 0\n\"\"\"I Love You 1\n  2\n"
             + "".join(f"m.{k} {k}\n" for k in range(3, 8)),
             "item_list.txt": "org_id remap_id freebase_id\n" + "".join(
                 f"A book {k} m.{k}\n" for k in range(5))}
    src = write_src(tmp_path, small_files(**lists))
    stats = conv.convert(src, "ds", conv_out, quiet=True)
    assert stats["id_space"]["kg_ids"] == 8 and stats["id_space"]["items"] == 5


# ------------------------------------------------------------------------ bad input
# (id, changed source files (None = file absent), file named in the error, line, words)
BAD_INPUTS = [
    ("missing-file", {"test.txt": None}, "test.txt", None, "missing file"),
    ("missing-kg-without-no-kg", {"kg_final.txt": None}, "kg_final.txt", None, "missing file"),
    ("empty-file", {"test.txt": ""}, "test.txt", 1, "empty file"),
    ("non-integer-token", {"train.txt": "0 0 1\n1 2 x3\n2 4\n"}, "train.txt", 2,
     "non-integer token 'x3'"),
    ("negative-id", {"kg_final.txt": KG + "1 -1 5\n"}, "kg_final.txt", 9, "negative id -1"),
    ("kg-two-fields", {"kg_final.txt": "0 0 5\n1 0\n"}, "kg_final.txt", 2, "expected 3 fields"),
    ("kg-four-fields", {"kg_final.txt": "0 0 5\n1 0 5\n2 1 6 7\n"}, "kg_final.txt", 3,
     "found 4"),
    ("user-line-without-items", {"test.txt": "0 3\n1\n2 1\n"}, "test.txt", 2,
     "user 1 has no items"),
    # no entity list: the KG ids are 0..max(head, tail) = 0..7, so item 8 has no entity
    ("item-outside-kg-id-range", {"entity_list.txt": None, "item_list.txt": None,
                                  "test.txt": "0 3\n1 8\n2 1\n"}, "test.txt", 2,
     "item id 8 out of range"),
    ("item-outside-entity-list", {"item_list.txt": None, "train.txt": "0 0 1\n1 9 2\n"},
     "train.txt", 2, "entity_list.txt has 8 ids"),
    ("relation-out-of-range", {"kg_final.txt": "0 0 5\n1 3 5\n"}, "kg_final.txt", 2,
     "relation id 3 out of range"),
    ("id-list-out-of-sequence", {"relation_list.txt": "org_id remap_id\na 0\nb 2\n"},
     "relation_list.txt", 3, "out of sequence"),
]

# (id, options, words): option errors name the option
BAD_OPTIONS = [
    ("users-and-items", ["--users", "2", "--items", "2"], "--users and --items"),
    ("groups-without-items", ["--item-groups", "0"], "--item-groups needs --items"),
    ("unknown-relation", ["--items", "2", "--item-groups", "nope"], "no relation of that name"),
    ("ambiguous-relation", ["--items", "2", "--item-groups", "x"], "ambiguous"),
    ("relation-out-of-range", ["--items", "2", "--item-groups", "9"], "out of range"),
    ("too-many-items", ["--items", "99"], "only 5 items"),
    ("kg-hops-with-users", ["--users", "2", "--kg-hops", "2"], "--kg-hops applies to --items"),
    ("min-user-inter-alone", ["--min-user-inter", "2"], "--min-user-inter applies to a subset"),
    ("min-user-inter-zero", ["--items", "2", "--min-user-inter", "0"], "--min-user-inter 0"),
    ("negative-seed", ["--seed", "-1"], "--seed -1"),
    ("too-few-active-users", ["--users", "3", "--min-user-inter", "3"], "--users 3: only"),
]


@pytest.mark.parametrize("options,words", [case[1:] for case in BAD_OPTIONS],
                         ids=[case[0] for case in BAD_OPTIONS])
def test_bad_subset_options(tmp_path, conv_out, capsys, options, words):
    lists = {**LISTS, "relation_list.txt": "org_id remap_id\nhttp://r/a.x 0\nhttp://r/b.x 1\n"
             "http://r/c 2\n"}
    src = write_src(tmp_path, small_files(**lists))
    rc, _, err = run_main(["--src", src, "--name", "ds", "--out", conv_out, "--resplit",
                           "0.8,0.1,0.1", *options], capsys)
    assert rc != 0 and len(err.strip().splitlines()) == 1, err
    assert words in err and "Traceback" not in err
    assert list(conv_out.iterdir()) == []


@pytest.mark.parametrize("changes,file,line,words", [case[1:] for case in BAD_INPUTS],
                         ids=[case[0] for case in BAD_INPUTS])
def test_bad_input(tmp_path, conv_out, capsys, changes, file, line, words):
    src = write_src(tmp_path, small_files(**changes))
    assert_bad_input(capsys, src, conv_out, file, line, words)


def test_user_line_without_items_allowed_on_request(tmp_path, conv_out):
    src = write_src(tmp_path, small_files(**{"test.txt": "0 3\n1 \n2 1\n"}))
    stats = conv.convert(src, "ds", conv_out, valid="paper", allow_empty_users=True, quiet=True)
    assert stats["user_lines_without_items"] == {"train.txt": 0, "test.txt": 1}
    assert read_pairs(conv_out / "ds" / "ds.test.inter") == [(0, 3), (2, 1)]


def test_bad_output_exists_refused_unless_overwrite(tmp_path, conv_out, capsys):
    src = write_src(tmp_path, small_files())
    (conv_out / "ds").mkdir()
    (conv_out / "ds" / "keep.txt").write_text("old")
    rc, _, err = run_main(["--src", src, "--name", "ds", "--out", conv_out], capsys)
    assert rc == 1 and "already exists" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in (conv_out / "ds").iterdir()] == ["keep.txt"]
    rc, _, err = run_main(["--src", src, "--name", "ds", "--out", conv_out, "--overwrite"], capsys)
    assert rc == 0, err
    assert not (conv_out / "ds" / "keep.txt").exists()
    assert (conv_out / "ds" / "ds.kg").is_file()
    assert sorted(p.name for p in conv_out.iterdir()) == ["ds"]


def _failing_writer(path, kg):
    path.write_text("head_id:token\trelation_id:token\ttail_id:token\n0\t0")
    raise RuntimeError("simulated failure while writing")


def test_interrupted_conversion_leaves_nothing(tmp_path, conv_out, monkeypatch):
    src = write_src(tmp_path, small_files())
    monkeypatch.setattr(conv, "_write_kg", _failing_writer)
    with pytest.raises(RuntimeError, match="simulated"):
        conv.convert(src, "ds", conv_out, quiet=True)
    assert list(conv_out.iterdir()) == []


def test_interrupted_overwrite_keeps_old_dataset(tmp_path, conv_out, monkeypatch, capsys):
    src = write_src(tmp_path, small_files())
    conv.convert(src, "ds", conv_out, valid="paper", quiet=True)
    before = {p.name: p.read_bytes() for p in (conv_out / "ds").iterdir()}

    def interrupt(path, kg):
        path.write_text("partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(conv, "_write_kg", interrupt)
    rc, _, err = run_main(["--src", src, "--name", "ds", "--out", conv_out, "--overwrite"], capsys)
    assert rc == 130 and "interrupted" in err
    assert sorted(p.name for p in conv_out.iterdir()) == ["ds"]
    assert {p.name: p.read_bytes() for p in (conv_out / "ds").iterdir()} == before


# ----------------------------------------------------------------- RecBole end to end
def load_converted(conv_out, tmp_path, model, name="tiny"):
    """RecBole's dataset and loaders of the converted ``name``, with its generated YAML."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    cfg = yaml.safe_load((conv_out / name / f"{name}.yaml").read_text())
    config = Config(model=model, dataset=name,
                    config_dict={"data_path": str(conv_out), **cfg,
                                 "checkpoint_dir": str(tmp_path / "saved"),
                                 "show_progress": False, "train_batch_size": 64})
    dataset = create_dataset(config)
    return dataset, data_preparation(config, dataset)


def test_recbole_loads_converted_dataset(tmp_path, conv_out):
    files = random_files(seed=5, n_users=80, n_items=40, n_ent=20)
    # item 3 keeps its interactions but loses its triplets: it must load unlinked
    files["kg_final.txt"] = "".join(line + "\n" for line in files["kg_final.txt"].splitlines()
                                    if line.split()[0] != "3")
    src = write_src(tmp_path, files)
    stats = conv.convert(src, "tiny", conv_out, resplit="0.8,0.1,0.1", quiet=True)
    dataset, (train, valid, test) = load_converted(conv_out, tmp_path, "CKE")
    c = stats["counts"]
    assert c["items_without_kg"] == 1
    assert [train._dataset.inter_num, valid._dataset.inter_num, test._dataset.inter_num] == [
        c["interactions"]["train"], c["interactions"]["valid"], c["interactions"]["test"]]
    assert dataset.user_num - 1 == c["users"]
    assert dataset.item_num - 1 == c["items"]
    assert len(dataset.kg_feat) == c["triplets"]
    assert len(dataset.item2entity) == c["links"]
    assert dataset.entity_num - 1 == c["kg_ids"] + c["items_without_kg"]
    assert dataset.relation_num - 2 == c["relations"]          # + padding and the U-I relation


def test_failed_final_rename_restores_old_dataset(tmp_path, conv_out, monkeypatch):
    src = write_src(tmp_path, small_files())
    conv.convert(src, "ds", conv_out, valid="paper", quiet=True)
    before = {p.name: p.read_bytes() for p in (conv_out / "ds").iterdir()}
    real_rename = conv.os.rename
    calls = []

    def flaky_rename(a, b):
        calls.append((Path(a).name, Path(b).name))
        if len(calls) == 2:                      # moving the new dataset into place
            raise OSError(28, "No space left on device")
        return real_rename(a, b)

    monkeypatch.setattr(conv.os, "rename", flaky_rename)
    with pytest.raises(conv.ConvertError, match="cannot write"):
        conv.convert(src, "ds", conv_out, overwrite=True, quiet=True)
    monkeypatch.undo()
    assert sorted(p.name for p in conv_out.iterdir()) == ["ds"]
    assert {p.name: p.read_bytes() for p in (conv_out / "ds").iterdir()} == before
