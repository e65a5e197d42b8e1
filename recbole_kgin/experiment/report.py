# -*- coding: utf-8 -*-
"""Tables and figures of comparisons and searches: text, Markdown, CSV and JSON from plain rows.

A comparison row (one per model) holds ``model``, ``status`` (``ok`` | ``failed`` | ``not run``),
``error``, ``trials``, ``seeds``, ``epochs_run``, ``best_epoch``, ``converged``, every
``<metric>@K`` (mean over seeds) with ``<metric>@K_std``, ``p_value`` / ``p_value_ndcg@20`` and
timing fields.
"""

import csv
import io
import json
import re

from recbole_kgin.experiment.protocol import (DETERMINISTIC, HEADLINE_K, METRICS, TABLE_KS, TEST_NAME,
                                              rank_marks)

METRIC_LABEL = {"recall": "Recall", "ndcg": "NDCG", "hit": "Hit", "precision": "Precision"}


def metric_columns(ks=TABLE_KS):
    return [f"{m}@{k}" for k in ks for m in METRICS]


def label(column):
    metric, k = column.split("@")
    return f"{METRIC_LABEL[metric]}@{k}"


def _num(value, decimals):
    return "-" if value is None else f"{value:.{decimals}f}"


def _p(value):
    if value is None:
        return "-"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def status_text(row):
    if row["status"] == "ok":
        return "ok"
    return f"{row['status']}: {row.get('error') or 'unknown error'}"


def _epochs(row):
    if row.get("epochs_run") is None:
        return "-"
    return f"{row['epochs_run']:g}"


def _converged(row):
    value = row.get("converged")
    return "-" if value is None else ("yes" if value else "NO")


def _p_marked(value, alpha):
    """An adjusted p-value, with ``*`` when it is below ``alpha``."""
    return _p(value) + ("*" if value is not None and value < alpha else "")


def _cells(row, columns, decimals, marks=None, with_std=True, alpha=0.05):
    ok = row["status"] == "ok"
    cells = [row["model"]]
    for column in columns:
        mean, std = (row.get(column), row.get(f"{column}_std")) if ok else (None, None)
        text = _num(mean, decimals)
        if with_std and mean is not None and std is not None and row.get("seeds", 1) > 1:
            text += f" ± {std:.{decimals}f}"
        mark = (marks or {}).get(column, {}).get(row["model"])
        if mark == "best":
            text = f"**{text}**"
        elif mark == "second":
            text = f"<u>{text}</u>"
        cells.append(text)
    cells += [_p_marked(row.get("p_value_adj"), alpha),
              _p_marked(row.get("p_value_ndcg@20_adj"), alpha),
              _size(row, "recall@20", decimals), _effect(row, "recall@20"),
              str(row.get("trials", "-")), str(row.get("seeds", "-")), _epochs(row),
              "-" if row.get("best_epoch") is None else f"{row['best_epoch']:g}", _converged(row),
              "-" if row.get("seconds_per_epoch") is None else f"{row['seconds_per_epoch']:.1f}",
              status_text(row)]
    return cells


def _size(row, column, decimals):
    """``Δ [low, high]``: the mean per-user difference against ``delta_reference`` and its CI."""
    delta = row.get(f"delta_{column}")
    if delta is None:
        return "-"
    return (f"{delta:+.{decimals}f} [{row[f'ci_low_{column}']:+.{decimals}f}, "
            f"{row[f'ci_high_{column}']:+.{decimals}f}]")


def _effect(row, column):
    value = row.get(f"effect_{column}")
    return "-" if value is None else f"{value:+.2f}"


_TAIL = ["p R@20 (adj.)", "p N@20 (adj.)", "Δ R@20 [95 % CI]", "r R@20", "trials", "seeds",
         "epochs run", "best epoch", "converged", "s/epoch", "status"]


def markdown_table(rows, ks, decimals, alpha=0.05):
    columns = metric_columns(ks)
    marks = {c: rank_marks(rows, c) for c in columns}
    header = ["model", *[label(c) for c in columns], *_TAIL]
    align = ["---"] + ["---:"] * (len(header) - 2) + ["---"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        cells = [str(c).replace("|", "\\|") for c in _cells(row, columns, decimals, marks,
                                                             alpha=alpha)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def text_table(rows, decimals):
    columns = [f"{m}@{HEADLINE_K}" for m in METRICS]
    header = ["model", *[label(c) for c in columns], *_TAIL]
    cells = [header] + [_cells(r, columns, decimals) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header) - 1)]

    def fmt(cs):
        return "  ".join([cs[0].ljust(widths[0]), *[c.rjust(w) for c, w in
                                                      zip(cs[1:-1], widths[1:])], cs[-1]])

    rule = "-" * (sum(widths) + 2 * len(widths) + len("status"))
    return "\n".join([fmt(header), rule, *[fmt(c) for c in cells[1:]]])


CSV_FIELDS_HEAD = ["model", "status", "kg_variant", "trials", "seeds", "epochs_run", "best_epoch",
                   "converged"]
CSV_FIELDS_TAIL = ["p_value", "p_value_adj", "p_value_ndcg@20", "p_value_ndcg@20_adj",
                   "significance_reference", "n_users_tested", "delta_reference",
                   *[f"{f}_{m}" for m in ("recall@20", "ndcg@20")
                     for f in ("delta", "ci_low", "ci_high", "effect")],
                   "p_value_vs_full", "p_value_vs_full_adj", "recall@20_splits_mean",
                   "recall@20_splits_std", "ndcg@20_splits_mean", "ndcg@20_splits_std",
                   "splits_done", "kg_triplets", "distinct_configurations",
                   "epochs_total", "lost_attempts", "wall_s", "cpu_s", "gpu_s", "seconds_per_epoch",
                   "total_seconds", "n_params", "error"]


def csv_fields():
    columns = metric_columns()
    return [*CSV_FIELDS_HEAD, *[x for c in columns for x in (c, f"{c}_std")], *CSV_FIELDS_TAIL]


def render_csv(rows):
    """One row per model; metric means and stds as full-precision numbers, empty when missing."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_fields(), lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        out = {}
        for field in csv_fields():
            value = row.get(field)
            if field == "converged" and value is not None:
                value = "yes" if value else "no"
            if isinstance(value, float):
                value = repr(value)
            out[field] = "" if value is None else value
        if row["status"] != "ok":
            for field in csv_fields():
                if "@" in field and field != "model":
                    out[field] = ""
        writer.writerow(out)
    return buffer.getvalue()


def budget_lines(summary):
    """Sentences a reader needs to judge the table: budget, tuning, seeds, selection, test."""
    b = summary["budget"]
    lines = [
        f"- budget, the same for every model: at most {b['epochs']} epochs, validation every "
        f"{b['eval_step']} epoch(s), early stopping after {b['patience_epochs']} epochs without "
        f"improvement, train batch {b['train_batch_size']} (models whose search space tunes it "
        f"excepted).",
    ]
    if b["trials"]:
        lines.append(
            f"- tuning: {b['trials']} trials per model ({summary['search']['search']} search, "
            f"{summary['search']['scheduler']} scheduler), every trial trained to early stopping "
            f"within the cap and selected on validation {summary['valid_metric']}; spaces in "
            "properties/tune/<Model>.yaml (a model without a space runs its shipped settings once; "
            "random search over a space of choices draws distinct configurations, and a space with "
            "fewer configurations than the trials is tried whole)."
        )
    else:
        lines.append("- tuning: none (--trials 0): every model runs its shipped settings "
                     "(properties/model/<Model>.yaml over RecBole's defaults).")
    lines.append(
        f"- seeds: {b['seeds']} run(s) of each selected configuration with model seeds "
        f"{', '.join(str(s) for s in summary['seeds'])} on one split (split seed "
        f"{summary['split_seed']}); metrics are mean ± sample std over seeds.")
    once = [r["model"] for r in summary.get("models", []) if r["model"] in DETERMINISTIC]
    if once and b["seeds"] > 1:
        lines.append(f"- {', '.join(once)}: deterministic (no initialisation, sampling or dropout; "
                     "the model seed changes nothing), so the selected configuration runs once "
                     "(seeds 1, std 0).")
    reference = summary.get("significance_reference")
    if reference:
        lines.append(f"- p R@20 / p N@20: {TEST_NAME}, of each model against {reference}, on each "
                     "user's Recall@20 / NDCG@20 averaged over seeds; per-user arrays in per_user/.")
        lines += statistics_lines(summary, reference)
    lines.append("- epochs run / best epoch: mean over seeds, counted from 1; converged: NO when a "
                 "run reached the epoch cap while still improving.")
    if summary.get("test_selected"):
        lines.append("- WARNING: this dataset's validation split IS its test split (converted with "
                     "--valid paper): selection is test-selected, as in the KGIN paper; the numbers "
                     "are optimistic.")
    return lines


CORRECTION_TEXT = {"holm": "Holm-Bonferroni (family-wise error)",
                   "bh": "Benjamini-Hochberg (false discovery rate)", "none": "no correction"}


def statistics_lines(summary, reference):
    """How the p-values were corrected and what the size columns are."""
    st = summary.get("statistics") or {}
    if not st:
        return []
    boot = st.get("bootstrap") or {}
    return [
        f"- multiplicity: {CORRECTION_TEXT[st['correction']]} over all {st.get('family_size', '?')} "
        "p-values this comparison reports (models x both metrics, KG variants against their full "
        f"KG, groups; table.csv has raw and adjusted values); * marks adjusted p < "
        f"{st['alpha']:g}.",
        f"- Δ R@20 [95 % CI]: mean per-user difference in Recall@20 against {reference} (a KG "
        "variant: against its own full-KG row), with a seeded paired-bootstrap interval "
        f"({boot.get('resamples')} resamples of the users, seed {boot.get('seed')}); r R@20: "
        "matched-pairs rank-biserial correlation (positive: the row is better).",
    ]


def render_markdown(summary, rows, decimals):
    lines = [f"# {summary['dataset']}: comparison ({summary['run']})", ""]
    lines.append("Test set, full ranking over all items except those the user interacted with in "
                 f"training or validation; models selected on validation {summary['valid_metric']}, test "
                 "evaluated once per seed run. Best in bold, second underlined.")
    lines.append("")
    main_rows = [r for r in rows if not r.get("base_model")]
    alpha = (summary.get("statistics") or {}).get("alpha", 0.05)
    lines.append(markdown_table(main_rows, (HEADLINE_K,), decimals, alpha))
    lines.append("")
    lines += budget_lines(summary)
    check = summary.get("split_check") or {}
    if check.get("same_split") is not None:
        state = "the same" if check["same_split"] else "NOT the same"
        count = len(check["models"])
        lines.append(f"- split: {count} model{'s' if count != 1 else ''} saw {state} train/valid/test pairs "
                     f"(test sha256 {check['test_sha256'][:16]}…)"
                     + (f"; differing: {', '.join(check['differs'])}" if check["differs"] else ""))
    if summary["protocol"].get("kg_linked_items_only"):
        lines.append("- interactions: only those whose item is linked to a KG entity, for every "
                     "model (kg_linked_items_only; RecBole's knowledge-aware models drop the others)")
    env = summary.get("environment")
    if env:
        lines.append(f"- environment: torch {env['torch']}, RecBole {env['recbole']}, Ray "
                     f"{env['ray']}, Python {env['python']}, {env['cpu_count']} CPUs, "
                     f"{summary['search']['cpus_per_trial']:g} CPU(s) and "
                     f"{summary['search']['gpus_per_trial']:g} GPU(s) per trial")
    if summary.get("wall_seconds") is not None:
        lines.append(f"- wall time of this command: {summary['wall_seconds']:.0f} s")
    lines.append(f"- command: `{summary['command']}`")
    lines += split_lines(summary, main_rows, decimals)
    lines += ledger_lines(main_rows)
    lines += kg_control_lines(summary, rows, decimals)
    lines += group_lines(summary, decimals)
    lines += ["", "All cut-offs:", "", markdown_table(rows, TABLE_KS, decimals, alpha), ""]
    return "\n".join(lines) + "\n"


def kg_control_lines(summary, rows, decimals):
    """The KG-controls table: every variant row beside its model's full-KG row."""
    from recbole_kgin.data.kg_variants import DESCRIPTIONS

    controls = summary.get("kg_variants")
    if not controls:
        return []
    lines = ["", "KG controls: each knowledge-aware model's configuration selected on the full KG, "
             "retrained with the same seeds, split and budget on a transformed KG (only the "
             f"triplets change; transform seed {controls['seed']}).", "",
             "| model | KG | triplets | Recall@20 | Δ Recall@20 vs full [95 % CI] | p vs full (adj.) | status |",
             "|---|---|---:|---:|---:|---:|---|"]
    for base in controls["models"]:
        for row in rows:
            if row["model"] != base and row.get("base_model") != base:
                continue
            ok = row["status"] == "ok"
            delta = row.get("delta_recall@20") if row.get("base_model") else None
            cells = [row["model"], row.get("kg_variant") or "full",
                     "-" if row.get("kg_triplets") is None else f"{row['kg_triplets']:,}",
                     _num(row.get("recall@20") if ok else None, decimals)
                     + (f" ± {row['recall@20_std']:.{decimals}f}" if ok and row.get("seeds", 1) > 1
                        else ""),
                     "-" if delta is None else _size(row, "recall@20", decimals),
                     _p(row.get("p_value_vs_full_adj")), status_text(row)]
            lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    lines += [f"- {name}: {DESCRIPTIONS[name]}" for name in controls["variants"]]
    lines.append("- p vs full: Wilcoxon signed-rank, paired over test users, of the variant's "
                 "per-user Recall@20 (seed means) against the same model's full-KG row.")
    return lines


GROUP_TEXT = {
    "cold": "test pairs whose item never occurs in training",
    "warm": "test pairs whose item occurs in training",
    "head": "test pairs whose item is among the 20 % most frequent in training",
    "tail": "the other test pairs",
}


def group_lines(summary, decimals):
    """The groups table: Recall@20 of every model per group (users, pairs in the header)."""
    table = summary.get("groups") or []
    if not table:
        return []
    models = list(dict.fromkeys(g["model"] for g in table))
    names = list(dict.fromkeys(g["group"] for g in table))
    cell = {(g["model"], g["group"]): g for g in table}
    first = {n: next(g for g in table if g["group"] == n) for n in names}
    header = ["model", *[f"{n} ({first[n]['users']} users, {first[n]['pairs']} pairs)"
                         for n in names]]
    lines = ["", f"Groups, Recall@20 (pair groups: hits among the user's pairs of that kind; "
             f"activity quartiles: users by training interactions; p against "
             f"{table[0]['reference']}, Wilcoxon over the group's users, in groups.csv):", "",
             "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(names)) + "|"]
    for model in models:
        values = []
        for n in names:
            g = cell.get((model, n))
            values.append("-" if g is None or g["recall@20"] is None
                          else f"{g['recall@20']:.{decimals}f}")
        lines.append("| " + " | ".join([model, *values]) + " |")
    share = summary.get("cold_test_share")
    lines.append("")
    if share is not None:
        lines.append(f"- cold test pairs: {100 * share:.1f} % of all test pairs; a model that "
                     "scores only items seen in training gets 0 on them.")
    lines += [f"- {n}: {GROUP_TEXT[n]}" for n in names if n in GROUP_TEXT]
    return lines


GROUP_FIELDS = ["model", "group", "users", "pairs", "recall@20", "ndcg@20", "p_value", "p_value_adj",
                "reference"]


def render_groups_csv(table):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=GROUP_FIELDS, lineterminator="\n",
                            extrasaction="ignore")
    writer.writeheader()
    for row in table:
        writer.writerow({k: ("" if row.get(k) is None else
                             repr(row[k]) if isinstance(row[k], float) else row[k])
                         for k in GROUP_FIELDS})
    return buffer.getvalue()


def significance_mark(p_adjusted, alpha):
    """``*`` when the adjusted p-value is below ``alpha``, ``n.s.`` otherwise, empty without one."""
    return "" if p_adjusted is None else "*" if p_adjusted < alpha else "n.s."


def render_deltas(rows, column, title, alpha=0.05):
    """PNG bytes: the change of ``column`` from the full KG to every variant, per model (``*``:
    adjusted p against the full KG below ``alpha``)."""
    plt = _pyplot()
    variants = [r for r in rows if r.get("base_model") and r["status"] == "ok"
                and r.get(f"delta_{column}") is not None]
    models = list(dict.fromkeys(r["base_model"] for r in variants))
    kinds = list(dict.fromkeys(r["kg_variant"] for r in variants))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(models) * max(1, len(kinds)) / 2 + 2), 4.5))
    width = 0.8 / max(1, len(kinds))
    for j, kind in enumerate(kinds):
        values = {r["base_model"]: r for r in variants if r["kg_variant"] == kind}
        xs = [i + j * width for i, m in enumerate(models) if m in values]
        ys = [values[m][f"delta_{column}"] for m in models if m in values]
        ax.bar(xs, ys, width=width, label=kind)
        for x, m in zip(xs, [m for m in models if m in values]):
            mark = significance_mark(values[m].get("p_value_vs_full_adj"), alpha)
            y = values[m][f"delta_{column}"]
            ax.annotate(mark, (x, y), ha="center", va="bottom" if y >= 0 else "top", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks([i + width * (len(kinds) - 1) / 2 for i in range(len(models))])
    ax.set_xticklabels(models, rotation=30, ha="right")
    ax.set_ylabel(f"Δ test {label(column)} (variant − full KG)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if kinds:
        ax.legend(fontsize=8)
    return _png(fig)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig):
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=120)
    _pyplot().close(fig)
    return buffer.getvalue()


def _line_plot(series, xlabel, ylabel, title, empty_text):
    """PNG bytes of ``series`` (``(label, xs, ys, line style)``) on integer x ticks."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = _pyplot().subplots(figsize=(8, 5))
    for name, xs, ys, style in series:
        ax.plot(xs, ys, style, marker="o", markersize=3, label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8, ncol=2)
    else:
        ax.text(0.5, 0.5, empty_text, ha="center", va="center", transform=ax.transAxes)
    return _png(fig)


def render_curves(rows, valid_metric, title):
    """PNG bytes: validation metric per epoch of each model's first seed run."""
    series = [(row["model"], [h["epoch"] + 1 for h in row["valid_history"]],
               [h["score"] for h in row["valid_history"]], "-" if row["status"] == "ok" else "--")
              for row in rows if row.get("valid_history")]
    return _line_plot(series, "epoch", f"validation {valid_metric}", title,
                      "no validation results yet")


def render_bars(rows, column, reference, title, alpha=0.05):
    """PNG bytes: mean ± std of ``column`` per model, best first, the reference in red, with the
    significance mark of each model against it (``*``: adjusted p below ``alpha``, n.s.
    otherwise)."""
    plt = _pyplot()
    ok = sorted((r for r in rows if r["status"] == "ok" and r.get(column) is not None),
                key=lambda r: -r[column])
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(ok) + 2), 4.5))
    xs = list(range(len(ok)))
    ax.bar(xs, [r[column] for r in ok], yerr=[r.get(f"{column}_std") or 0 for r in ok],
           capsize=4, color=["#c44e52" if r["model"] == reference else "#4c72b0" for r in ok])
    for x, r in zip(xs, ok):
        p = r.get(("p_value" if column == "recall@20" else f"p_value_{column}") + "_adj")
        mark = "ref" if r["model"] == reference else significance_mark(p, alpha)
        ax.annotate(mark, (x, r[column] + (r.get(f"{column}_std") or 0)), ha="center",
                    va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(xs)
    ax.set_xticklabels([r["model"] for r in ok], rotation=30, ha="right")
    ax.set_ylabel(f"test {label(column)} (mean ± std over seeds)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


# ---------------------------------------------------------------------------------------------
# search trials


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def trials_csv(rows, keys, valid_metric):
    header = ["rank", "trial_id", *keys, f"valid {valid_metric}", "best_epoch", "epochs_run",
              "status", "error"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for r in rows:
        writer.writerow([r["rank"], r["trial_id"],
                         *[json.dumps(r["params"][k]) if isinstance(r["params"][k], (list, dict))
                           else r["params"][k] for k in keys],
                         "" if r["best_valid"] is None else repr(r["best_valid"]),
                         "" if r["best_epoch"] is None else r["best_epoch"],
                         "" if r["epochs_run"] is None else r["epochs_run"],
                         r["status"], r["error"]])
    return buffer.getvalue()


def trials_markdown(rows, keys, settings, edges=None, selected=None):
    nodes = any(r.get("node_id") for r in rows)
    header = ["rank", "trial_id", *keys, f"valid {settings['valid_metric']}", "best_epoch",
              "epochs_run", *(["node"] if nodes else []), "status"]
    lines = [
        f"# {settings['model']} on {settings['dataset']}: {len(rows)} trials",
        "",
        f"Sorted by the best validation {settings['valid_metric']} of each trial "
        f"({'higher' if settings['mode'] == 'max' else 'lower'} is better). Epochs are counted "
        f"from 1; status: finished (epoch budget or early stopping), stopped (by the "
        f"{settings['scheduler'].upper()} scheduler), error.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---:"] + ["---"] * (len(header) - 1)) + "|",
    ]
    for r in rows:
        cells = [str(r["rank"]), r["trial_id"], *[_fmt(r["params"][k]) for k in keys],
                 "" if r["best_valid"] is None else f"{r['best_valid']:.4f}",
                 _fmt(r["best_epoch"]), _fmt(r["epochs_run"]),
                 *([(r.get("node_id") or "")[:8]] if nodes else []),
                 r["status"] + (f": {r['error']}" if r["error"] else "")
                 + (f" (after {r['failures']} lost attempt(s))" if r.get("failures") else "")]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if edges is not None:
        lines += ["", edge_sentence(selected or {}, edges, settings.get("space") or {})]
    return "\n".join(lines) + "\n"


def edge_sentence(params, edges, space):
    """One line naming every selected value on an edge of its range (rank 1 of the search)."""
    if not edges:
        return "Range edges: no selected value lies on an edge of its range."
    parts = [f"`{k}` = {_fmt(params.get(k))} (the {side} of {_fmt(space[k][1]) if k in space else '?'})"
             for k, side in edges.items()]
    return ("Range edges (edge): the selected configuration has " + "; ".join(parts)
            + ". A wider range could hold a better value.")


# ---------------------------------------------------------------------------------------------
# tuning adequacy, the budget ledger, LaTeX


def split_lines(summary, rows, decimals):
    """Mean ± std across split seeds beside the seed std, and the variance components."""
    splits = summary.get("split_seeds") or []
    if len(splits) < 2:
        return []
    lines = ["", f"Split seeds {', '.join(map(str, splits))}: the configuration selected on the first "
             "split, retrained with the same model seeds on each split (RecBole's seeded random "
             "split); Recall@20 as mean ± std across the split means, beside the first split's "
             "seed std, and the variance components (seed: mean within-split variance over seeds; "
             "split: variance of the split means).", "",
             "| model | splits | Recall@20 across splits | seed std (first split) | var seed | var split |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["status"] != "ok" or r.get("recall@20_splits_mean") is None:
            continue
        components = r.get("variance_recall@20") or {}
        seed_var, split_var = components.get("seed"), components.get("split")
        cells = [r["model"], str(r.get("splits_done")),
                 f"{r['recall@20_splits_mean']:.{decimals}f} ± {r['recall@20_splits_std']:.{decimals}f}",
                 f"{(r.get('recall@20_std') or 0.0):.{decimals}f}",
                 "-" if seed_var is None else f"{seed_var:.2e}",
                 "-" if split_var is None else f"{split_var:.2e}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def ledger_lines(rows):
    """The tuning and budget ledger of the finished rows, with totals."""
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return []
    lines = ["", "Tuning and budget ledger (epochs: search trials and seed runs together; CPU / GPU "
             "seconds: each Ray trial's time times its reserved CPUs / GPUs):", "",
             "| model | trials | distinct configurations | space size | selected values on a range "
             "edge | epochs trained | lost attempts | wall s | CPU s | GPU s |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    totals = {"epochs_total": 0, "lost_attempts": 0, "wall_s": 0.0, "cpu_s": 0.0, "gpu_s": 0.0}
    for r in ok:
        search = r.get("search") or {}
        edges = search.get("edges")
        edge_text = ("-" if edges is None else "none" if not edges else
                     ", ".join(f"{k} ({v})" for k, v in edges.items()))
        size = search.get("space_size", "-" if not r.get("trials") else "?")
        cells = [r["model"], str(r.get("trials", "-")), _fmt(r.get("distinct_configurations")),
                 f"{size:,}" if isinstance(size, int) else str(size), edge_text,
                 _fmt(r.get("epochs_total")), _fmt(r.get("lost_attempts") or 0),
                 *[("-" if r.get(k) is None else f"{r[k]:.0f}") for k in ("wall_s", "cpu_s", "gpu_s")]]
        lines.append("| " + " | ".join(cells) + " |")
        for key in totals:
            totals[key] += r.get(key) or 0
    lines.append(f"| **total** | | | | | {totals['epochs_total']:,} | {totals['lost_attempts']} | "
                 f"{totals['wall_s']:.0f} | {totals['cpu_s']:.0f} | {totals['gpu_s']:.0f} |")
    return lines


def render_tuning(rows, valid_metric, title):
    """PNG bytes: every searched model's best validation metric so far against the trial number
    (trials in the order Ray created them)."""
    series = []
    for row in rows:
        scores = [t["best_valid"] for t in ((row.get("search") or {}).get("trial_log") or [])]
        if not scores or row.get("base_model"):
            continue
        best, curve = None, []
        for score in scores:
            if score is not None and (best is None or score > best):
                best = score
            curve.append(best)
        series.append((row["model"], list(range(1, len(curve) + 1)), curve, "-"))
    return _line_plot(series, "trial", f"best validation {valid_metric} so far", title,
                      "no search trials")


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#",
        "$": r"\$", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
        "±": r"$\pm$", "Δ": r"$\Delta$", "×": r"$\times$", "≈": r"$\approx$", "–": "--",
        "−": "-", "<": r"\textless{}", ">": r"\textgreater{}", "`": ""}


def _tex(text):
    """``text`` with LaTeX's special characters escaped, character by character."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def render_latex(summary, rows, decimals):
    """``table.tex``: a booktabs table of the full-KG rows (mean ± std of Recall@20 and NDCG@20,
    best in bold, second underlined, ``*`` where the adjusted p against the reference is below
    alpha), the notes under the table as its caption."""
    main = [r for r in rows if not r.get("base_model")]
    st = summary.get("statistics") or {}
    alpha = st.get("alpha", 0.05)
    columns = ["recall@20", "ndcg@20"]
    marks = {c: rank_marks(main, c) for c in columns}
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * len(columns) + "}",
             r"\toprule", "Model & " + " & ".join(label(c) for c in columns) + r" \\", r"\midrule"]
    for r in main:
        cells = [_tex(r["model"])]
        for c in columns:
            if r["status"] != "ok" or r.get(c) is None:
                cells.append(_tex(r["status"]))
                continue
            text = f"{r[c]:.{decimals}f}"
            if r.get("seeds", 1) > 1 and r.get(f"{c}_std") is not None:
                text += rf" $\pm$ {r[f'{c}_std']:.{decimals}f}"
            mark = marks[c].get(r["model"])
            text = rf"\textbf{{{text}}}" if mark == "best" else (
                rf"\underline{{{text}}}" if mark == "second" else text)
            p = r.get(f"{'p_value' if c == 'recall@20' else 'p_value_' + c}_adj")
            if p is not None and p < alpha:
                text += r"$^{*}$"
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    notes = [f"{summary['dataset']}: test set, full ranking; mean $\\pm$ sample std over "
             f"{summary['budget']['seeds']} model seeds (split seed {summary['split_seed']})."]
    notes += [_tex(line[2:]) for line in budget_lines(summary)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + " ".join(notes) + "}",
              rf"\label{{tab:{re.sub(r'[^A-Za-z0-9:-]', '-', summary['run'])}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"
