# -*- coding: utf-8 -*-
"""``run_recbole_kgin.py compare``: one table of KGIN against RecBole's baselines.

    run_recbole_kgin.py compare --dataset ml-100k --models KGIN,KGAT,CKE,BPR,LightGCN \\
        [--out results] [--run NAME] [--force] [--config_files "a.yaml b.yaml"] [--key=value ...]

Every model is trained and evaluated by the shared pipeline (:mod:`recbole_kgin.quick_start`) with
the same split, seed, negative sampling and full-ranking evaluator; each model keeps its own
properties (``properties/model/<Model>.yaml`` over RecBole's defaults). ``--key=value`` overrides
apply to every model.

Output, in ``<out>/<run>/``: ``table.md``, ``table.csv``, ``results.json``, ``curves.png``
(validation metric per epoch), ``models/<Model>.json`` (one file per finished model, written the
moment it finishes), ``logs/<Model>.log`` (RecBole's log) and ``checkpoints/``.

Robustness: a model that fails (exception, NaN loss, out of memory) is recorded with a one-line
error and the others go on; re-running the same command skips models that finished (failed ones are
tried again), ``--force`` re-runs all; after Ctrl-C every finished model is on disk and in the tables.
Exit status: 0 when every model ran, 1 when one or more failed, 2 on a usage error, 130 on Ctrl-C.
"""

import argparse
import csv
import gc
import hashlib
import io
import json
import logging
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from recbole_kgin.errors import UsageError, split_overrides

TABLE_KS = (10, 20, 50)
HEADLINE_K = 20
METRICS = ("recall", "ndcg", "hit", "precision")
METRIC_LABEL = {"recall": "Recall", "ndcg": "NDCG", "hit": "Hit", "precision": "Precision"}

# Configuration that defines the protocol: it must be equal for every model of one comparison.
PROTOCOL_KEYS = (
    "seed", "reproducibility", "eval_args", "train_neg_sample_args", "metrics", "topk",
    "valid_metric", "valid_metric_bigger", "data_path", "benchmark_filename", "USER_ID_FIELD",
    "ITEM_ID_FIELD", "val_interval", "user_inter_num_interval", "item_inter_num_interval",
    "rm_dup_inter", "filter_inter_by_user_or_item", "metric_decimal_place", "kg_linked_items_only",
)
# Model types whose models rank the full item set through RecBole's full-sort evaluator.
_RANKING_TYPES = ("GENERAL", "KNOWLEDGE", "TRADITIONAL")


# ---------------------------------------------------------------------------------------------
# command line


def build_parser():
    parser = argparse.ArgumentParser(
        prog="run_recbole_kgin.py compare",
        description="Train and test several models on one dataset with one protocol and write "
        "one comparison table. Extra --key=value pairs are RecBole overrides for every model.",
        allow_abbrev=False,  # --key=value overrides must never be taken for a prefix of a flag
    )
    parser.add_argument("--dataset", "-d", required=True, help="dataset name")
    parser.add_argument("--models", "-m", required=True,
                        help="comma-separated model names, e.g. KGIN,KGAT,CKE,BPR,LightGCN")
    parser.add_argument("--out", default="results", help="output root (default: results)")
    parser.add_argument("--run", default=None, help="run name: outputs go to OUT/RUN "
                        "(default: the dataset name)")
    parser.add_argument("--force", action="store_true",
                        help="re-run models that already finished in OUT/RUN")
    parser.add_argument("--config_files", default=None,
                        help="space-separated YAML files applied to every model, in order")
    return parser


def parse_models(text):
    names = [name.strip() for name in text.split(",")]
    if not names or any(not name for name in names):
        raise UsageError(f"--models {text!r}: give comma-separated model names")
    seen = set()
    for name in names:
        if name in seen:
            raise UsageError(f"model {name} is listed twice in --models")
        seen.add(name)
    return names


def ranking_model_names():
    """Names ``compare`` accepts: this package's models and RecBole's general and knowledge-aware
    models."""
    import recbole.model.general_recommender as general
    import recbole.model.knowledge_aware_recommender as knowledge

    from recbole_kgin.utils import MODELS

    names = set(MODELS)
    for module in (general, knowledge):
        names.update(n for n in dir(module) if isinstance(getattr(module, n), type))
    return sorted(names)


def check_model_names(names):
    """Reject unknown names and models that cannot be ranked with the full-sort evaluator."""
    import difflib

    from recbole_kgin.utils import get_model

    known = ranking_model_names()
    for name in names:
        model_class = None
        try:
            model_class = get_model(name)
        except Exception:  # RecBole's lookup fails in several ways (ValueError, ImportError, ...)
            pass
        kind = getattr(getattr(model_class, "type", None), "name", None)
        if model_class is not None and kind not in _RANKING_TYPES:
            raise UsageError(
                f"model {name} is a {kind or 'non-recommender'} model; compare ranks all items "
                "and takes general (incl. traditional) or knowledge-aware models"
            )
        if model_class is None or name not in known:
            by_lower = {k.lower(): k for k in known}
            close = [by_lower[k] for k in
                     difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UsageError(
                f"unknown model {name!r}: not a general or knowledge-aware model of RecBole or "
                f"of this package{hint}"
            )


def needs_kg_filter(names, overrides, config_files):
    """True when the models mix knowledge-aware and other models and the user has not chosen
    ``kg_linked_items_only`` on the command line or in a config file."""
    import yaml

    if "kg_linked_items_only" in overrides:
        return False
    for file in config_files or []:
        with open(file, encoding="utf-8") as handle:
            try:
                content = yaml.safe_load(handle)
            except yaml.YAMLError as err:
                raise UsageError(f"{file}: not valid YAML ({str(err).splitlines()[0]})") from None
        if isinstance(content, dict) and "kg_linked_items_only" in content:
            return False
    kinds = {_is_knowledge_aware(name) for name in names}
    return kinds == {True, False}


def _is_knowledge_aware(name):
    from recbole_kgin.utils import get_model

    return get_model(name).type.name == "KNOWLEDGE"


# ---------------------------------------------------------------------------------------------
# files


def write_atomic(path, data):
    """Write ``data`` (str or bytes) to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj):
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def read_json(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# protocol and split checks


def protocol_of(config):
    """The configuration every model must share, as JSON-friendly values."""
    protocol = {}
    for key in PROTOCOL_KEYS:
        value = config[key] if key in config else None
        protocol[key] = json.loads(json.dumps(value, default=_jsonable))
    load_col = config["load_col"] if "load_col" in config else None
    protocol["load_col.inter"] = (load_col or {}).get("inter") if isinstance(load_col, dict) else None
    return protocol


def check_protocols(protocols):
    """Raise :class:`UsageError` when models would not share one protocol."""
    names = list(protocols)
    first = names[0]
    for name in names[1:]:
        for key, value in protocols[name].items():
            if value != protocols[first][key]:
                raise UsageError(
                    f"{key} differs between {first} ({protocols[first][key]!r}) and {name} "
                    f"({value!r}): every model of a comparison needs the same protocol; set it "
                    "for all with --key=value or --config_files"
                )


def _pairs_digest(data_loader):
    dataset = data_loader._dataset
    uid, iid = dataset.uid_field, dataset.iid_field
    users = dataset.field2id_token[uid][dataset.inter_feat[uid].numpy()]
    items = dataset.field2id_token[iid][dataset.inter_feat[iid].numpy()]
    pairs = sorted(zip(users.tolist(), items.tolist()))
    digest = hashlib.sha256("\n".join(f"{u}\t{i}" for u, i in pairs).encode("utf-8"))
    return {"pairs": len(pairs), "sha256": digest.hexdigest()}


def split_fingerprint(train_data, valid_data, test_data):
    """Digest of the (user token, item token) pairs of each part of the split. Tokens, not internal
    ids: knowledge-aware datasets renumber items, the pairs stay the same."""
    return {
        "train": _pairs_digest(train_data),
        "valid": _pairs_digest(valid_data),
        "test": _pairs_digest(test_data),
    }


def split_check(records):
    """``{"same_split": bool|None, "models": [...], "differs": [...]}`` over the finished models."""
    prints = {r["model"]: r.get("split") for r in records if r.get("split")}
    if not prints:
        return {"same_split": None, "models": [], "differs": []}
    reference_model = next(iter(prints))
    reference = prints[reference_model]
    differs = [name for name, fp in prints.items() if fp != reference]
    return {
        "same_split": not differs,
        "models": list(prints),
        "reference": reference_model,
        "test_sha256": reference["test"]["sha256"],
        "differs": differs,
    }


# ---------------------------------------------------------------------------------------------
# running one model


def one_line(err):
    text = str(err).strip().splitlines()
    message = f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")
    if isinstance(err, MemoryError) and not text:
        message = "MemoryError: out of memory"
    return message[:300]


def backend_of(model):
    backend = {}
    if hasattr(model, "scatter_backend"):
        backend["scatter"] = model.scatter_backend
    if hasattr(model, "graph_backend"):
        backend["graph"] = model.graph_backend
    return backend


class _ModelLog:
    """RecBole's log of one model, in its own file, with the Python warnings raised meanwhile
    (pandas and torch deprecations inside RecBole); the console stays quiet."""

    def __init__(self, path):
        self.path = Path(path)
        self.handler = None
        self.level = None
        self.catch = None

    @staticmethod
    def _log_warning(message, category, filename, lineno, file=None, line=None):
        text = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
        logging.getLogger("py.warnings").warning(text)

    def __enter__(self):
        self.catch = warnings.catch_warnings()
        self.catch.__enter__()
        warnings.showwarning = self._log_warning
        self.path.parent.mkdir(parents=True, exist_ok=True)
        root = logging.getLogger()
        self.handler = logging.FileHandler(self.path, mode="w", encoding="utf-8")
        self.handler.setLevel(logging.INFO)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s  %(message)s"))
        self.level = root.level
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        root.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        root = logging.getLogger()
        root.removeHandler(self.handler)
        self.handler.close()
        root.setLevel(self.level)
        self.catch.__exit__(*exc)
        return False


def _config_snapshot(config):
    snapshot = {}
    for key, value in config.final_config_dict.items():
        if key in ("device",):
            continue
        try:
            snapshot[key] = json.loads(json.dumps(value))
        except (TypeError, ValueError):
            snapshot[key] = str(value)
    return snapshot


def _environment():
    import platform

    import recbole
    import torch

    return {
        "torch": torch.__version__, "recbole": recbole.__version__,
        "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }


def run_model(name, config, log_path):
    """Train and test one model through the shared pipeline; never raises except on Ctrl-C."""
    from recbole_kgin import quick_start

    record = {"model": name, "status": "failed", "error": None}
    start = time.perf_counter()
    trainer = None
    model = None
    with _ModelLog(log_path):
        logger = logging.getLogger()
        quick_start.quiet_recbole_logger()
        try:
            logger.info(config)
            dataset, train_data, valid_data, test_data = quick_start.load_data(config)
            logger.info(dataset)
            record["split"] = split_fingerprint(train_data, valid_data, test_data)
            model = quick_start.build_model(config, train_data)
            logger.info(model)
            record["backend"] = backend_of(model)
            record["n_params"] = quick_start.count_parameters(model)
            trainer = quick_start.build_trainer(config, model)
            result = quick_start.fit_and_test(
                config, model, trainer, train_data, valid_data, test_data, saved=True,
                show_progress=False,
            )
            bad = [k for k, v in (result["test_result"] or {}).items() if not math.isfinite(v)]
            if bad:
                raise ValueError(f"test metric {bad[0]} is not finite")
            record.update(result)
            record["status"] = "ok"
        except Exception as err:  # recorded; KeyboardInterrupt is not an Exception
            record["error"] = one_line(err)
            record["traceback"] = traceback.format_exc()
            logger.error(record["traceback"])
            if trainer is not None:
                record.update(quick_start.training_progress(trainer))
        finally:
            record["total_seconds"] = time.perf_counter() - start
            del trainer, model
            gc.collect()
    record["model"] = name
    record["environment"] = _environment()
    record["config"] = _config_snapshot(config)
    record["finished_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return record


# ---------------------------------------------------------------------------------------------
# tables


def metric_columns(ks=TABLE_KS):
    return [f"{m}@{k}" for k in ks for m in METRICS]


def _label(column):
    metric, k = column.split("@")
    return f"{METRIC_LABEL[metric]}@{k}"


def _fmt_metric(value, decimals):
    return "-" if value is None else f"{value:.{decimals}f}"


def _best_epoch_number(record):
    epoch = record.get("best_epoch")
    return None if epoch is None else int(epoch) + 1


def table_rows(records, columns, decimals):
    rows = []
    for r in records:
        test = r.get("test_result") or {}
        ok = r.get("status") == "ok"
        spe = r.get("seconds_per_epoch")
        rows.append({
            "model": r["model"],
            **{c: _fmt_metric(test.get(c) if ok else None, decimals) for c in columns},
            "best epoch": "-" if _best_epoch_number(r) is None or not ok
            else str(_best_epoch_number(r)),
            "s/epoch": "-" if spe is None else f"{spe:.1f}",
            "total s": "-" if r.get("total_seconds") is None else f"{r['total_seconds']:.0f}",
            "params": "-" if r.get("n_params") is None else str(r["n_params"]),
            "status": "ok" if ok else f"failed: {r.get('error') or 'unknown error'}",
        })
    return rows


_ROW_TAIL = ("best epoch", "s/epoch", "total s", "params", "status")


def _table_header(columns):
    """Column titles and the matching keys of :func:`table_rows` rows."""
    return ["model", *[_label(c) for c in columns], *_ROW_TAIL], ["model", *columns, *_ROW_TAIL]


def text_table(records, decimals):
    columns = [f"{m}@{HEADLINE_K}" for m in METRICS]
    rows = table_rows(records, columns, decimals)
    header, keys = _table_header(columns)
    cells = [header] + [[row[k] for k in keys] for row in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header) - 1)]

    def fmt(cs):
        first = cs[0].ljust(widths[0])
        middle = [c.rjust(w) for c, w in zip(cs[1:-1], widths[1:])]
        return "  ".join([first, *middle, cs[-1]])

    rule = "-" * (sum(widths) + 2 * (len(widths)) + len("status"))
    return "\n".join([fmt(header), rule, *[fmt(c) for c in cells[1:]]])


def _md_escape(text):
    return str(text).replace("|", "\\|")


def markdown_table(records, ks, decimals):
    columns = metric_columns(ks)
    rows = table_rows(records, columns, decimals)
    header, keys = _table_header(columns)
    align = ["---"] + ["---:"] * (len(header) - 2) + ["---"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_md_escape(row[k]) for k in keys) + " |")
    return "\n".join(lines)


def _budget(records):
    """One sentence on the training budget, e.g. "Budget: 2 training epochs per model ..."."""
    epochs = {(r.get("config") or {}).get("epochs") for r in records} - {None}
    stops = {(r.get("config") or {}).get("stopping_step") for r in records} - {None}
    if not epochs:
        return None
    text = "/".join(str(e) for e in sorted(epochs))
    same = "the same for every model" if len(epochs) == 1 else "NOT the same for every model"
    stop = f", early stopping after {'/'.join(str(s) for s in sorted(stops))} evaluations without " \
           "improvement" if stops else ""
    return f"Budget: at most {text} training epochs per model ({same}{stop})."


def render_markdown(summary, records, decimals):
    check = summary["split_check"]
    lines = [f"# {summary['dataset']}: comparison ({summary['run']})", ""]
    lines.append("Test set, full ranking over all items a user did not interact with in training; "
                 f"model selected on validation {summary['protocol'].get('valid_metric')}.")
    budget = _budget(records)
    if budget:
        lines.append(budget)
    lines.append("")
    lines.append(markdown_table(records, (HEADLINE_K,), decimals))
    lines.append("")
    lines.append("All cut-offs:")
    lines.append("")
    lines.append(markdown_table(records, TABLE_KS, decimals))
    lines.append("")
    lines.append("- best epoch: training epoch (counted from 1) whose validation score was best; "
                 "s/epoch: mean wall seconds of a training epoch (no evaluation); total s: data "
                 "loading, training, validation and test.")
    if check["same_split"] is not None:
        state = "the same" if check["same_split"] else "NOT the same"
        lines.append(f"- split: {len(check['models'])} models saw {state} train/valid/test pairs "
                     f"(test sha256 {check['test_sha256'][:16]}…)"
                     + (f"; differing: {', '.join(check['differs'])}" if check["differs"] else ""))
    if summary["protocol"].get("kg_linked_items_only"):
        lines.append("- interactions: only those whose item is linked to a KG entity, for every "
                     "model (kg_linked_items_only; RecBole's knowledge-aware models drop the others)")
    for r in records:
        if r.get("backend"):
            parts = ", ".join(f"{k}: {v}" for k, v in r["backend"].items())
            lines.append(f"- {r['model']} backend — {parts}")
    envs = [r["environment"] for r in records if r.get("environment")]
    if envs:
        env = envs[0]
        threads = sorted({e.get("torch_threads") for e in envs})
        lines.append(f"- environment: torch {env['torch']}, RecBole {env['recbole']}, Python "
                     f"{env['python']}, {env['cpu_count']} CPUs, torch threads "
                     f"{'/'.join(str(t) for t in threads)}")
    lines.append(f"- command: `{summary['command']}`")
    return "\n".join(lines) + "\n"


def render_csv(records):
    columns = metric_columns()
    fields = ["model", *columns, "best_epoch", "seconds_per_epoch", "total_seconds", "n_params",
              "epochs_run", "status", "error", "backend"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in records:
        ok = r.get("status") == "ok"
        test = r.get("test_result") or {}
        writer.writerow({
            "model": r["model"],
            **{c: (repr(float(test[c])) if ok and c in test else "") for c in columns},
            "best_epoch": "" if _best_epoch_number(r) is None or not ok else _best_epoch_number(r),
            "seconds_per_epoch": "" if r.get("seconds_per_epoch") is None
            else round(r["seconds_per_epoch"], 3),
            "total_seconds": "" if r.get("total_seconds") is None else round(r["total_seconds"], 3),
            "n_params": r.get("n_params", ""),
            "epochs_run": r.get("epochs_run", len(r.get("epoch_seconds") or [])),
            "status": r.get("status"),
            "error": r.get("error") or "",
            "backend": ";".join(f"{k}={v}" for k, v in (r.get("backend") or {}).items()),
        })
    return buffer.getvalue()


def render_curves(records, valid_metric, title):
    """PNG bytes: validation metric per epoch, one line per model."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = 0
    for r in records:
        history = r.get("valid_history") or []
        if not history:
            continue
        xs = [h["epoch"] + 1 for h in history]
        ys = [h["score"] for h in history]
        style = "-" if r.get("status") == "ok" else "--"
        ax.plot(xs, ys, style, marker="o", markersize=3, label=r["model"])
        drawn += 1
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {valid_metric}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, ncol=2)
    else:
        ax.text(0.5, 0.5, "no validation results yet", ha="center", va="center",
                transform=ax.transAxes)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return buffer.getvalue()


def write_outputs(run_dir, summary, records, decimals):
    summary = dict(summary)
    summary["split_check"] = split_check(records)
    summary["models"] = records
    write_json(run_dir / "results.json", summary)
    write_atomic(run_dir / "table.md", render_markdown(summary, records, decimals))
    write_atomic(run_dir / "table.csv", render_csv(records))
    write_atomic(run_dir / "curves.png", render_curves(
        records, summary["protocol"].get("valid_metric"),
        f"{summary['dataset']}: validation {summary['protocol'].get('valid_metric')} per epoch",
    ))
    return summary


# ---------------------------------------------------------------------------------------------
# main


def _settings(args, overrides, config_files):
    files = []
    for file in config_files or []:
        try:
            digest = hashlib.sha256(Path(file).read_bytes()).hexdigest()[:16]
        except OSError:
            digest = None
        files.append({"path": str(file), "sha256": digest})
    return {"dataset": args.dataset, "config_files": files, "overrides": overrides}


def _effective_settings(name, settings):
    """The settings that can change a model's result: ``kg_linked_items_only`` does nothing to a
    knowledge-aware model (its dataset always drops unlinked items), so it is left out for those."""
    overrides = dict(settings.get("overrides") or {})
    if "kg_linked_items_only" in overrides and _is_knowledge_aware(name):
        overrides.pop("kg_linked_items_only")
    return {**settings, "overrides": overrides}


def _command(argv):
    import shlex

    return " ".join(["run_recbole_kgin.py", "compare", *[shlex.quote(a) for a in argv]])


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = build_parser().parse_known_args(argv)
    overrides = split_overrides(rest)
    for key in ("model", "dataset"):
        if key in overrides:
            raise UsageError(f"--{key}=... is not an override here; use --models / --dataset")
    names = parse_models(args.models)
    check_model_names(names)
    config_files = args.config_files.split() if args.config_files else None
    for file in config_files or []:
        if not os.path.isfile(file):
            raise UsageError(f"config file not found: {file}")

    from recbole_kgin.quick_start import create_config

    run_dir = Path(args.out) / (args.run or args.dataset)
    if needs_kg_filter(names, overrides, config_files):
        # knowledge-aware datasets drop interactions of items without an entity; give the other
        # models the same interactions so that every row of the table shares one split
        overrides["kg_linked_items_only"] = "True"
    settings = _settings(args, overrides, config_files)

    # every configuration is built (and checked) before anything trains
    configs = {}
    for name in names:
        config = create_config(name, args.dataset, config_files, dict(overrides))
        if "checkpoint_dir" not in overrides and os.path.normpath(
                str(config["checkpoint_dir"])) == "saved":
            config["checkpoint_dir"] = str(run_dir / "checkpoints")
        configs[name] = config
    protocols = {name: protocol_of(config) for name, config in configs.items()}
    check_protocols(protocols)
    decimals = int(configs[names[0]]["metric_decimal_place"] or 4)

    previous = {}
    for name in names:
        record = read_json(run_dir / "models" / f"{name}.json")
        if record is not None:
            previous[name] = record
    if not args.force:
        for name, record in previous.items():
            before, now = (_effective_settings(name, record.get("settings") or {}),
                           _effective_settings(name, settings))
            if record.get("status") == "ok" and before != now:
                changed = [k for k in now if before.get(k) != now[k]]
                detail = "; ".join(f"{k}: {before.get(k)!r} then, {now[k]!r} now"
                                   for k in changed)
                raise UsageError(
                    f"{run_dir} holds a finished {name} made with other settings ({detail}); "
                    "use --force to replace it, or another --run"
                )

    summary = {
        "dataset": args.dataset,
        "run": args.run or args.dataset,
        "command": _command(argv),
        "settings": settings,
        "protocol": protocols[names[0]],
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    records = {}
    for name in names:
        if not args.force and previous.get(name, {}).get("status") == "ok":
            records[name] = previous[name]

    def ordered():
        return [records[n] for n in names if n in records]

    print(f"compare on {args.dataset}: {', '.join(names)} -> {run_dir}", flush=True)
    try:
        for index, name in enumerate(names, 1):
            prefix = f"[{index}/{len(names)}] {name}"
            if name in records:
                print(f"{prefix}: finished before, skipped (--force re-runs it)", flush=True)
                continue
            print(f"{prefix}: running ...", flush=True)
            record = run_model(name, configs[name], run_dir / "logs" / f"{name}.log")
            record["settings"] = settings
            write_json(run_dir / "models" / f"{name}.json", record)
            records[name] = record
            if record["status"] == "ok":
                headline = f"recall@{HEADLINE_K}"
                value = (record.get("test_result") or {}).get(headline)
                print(f"{prefix}: ok, test {_label(headline)} {value}, "
                      f"{record['total_seconds']:.0f} s", flush=True)
            else:
                print(f"{prefix}: FAILED: {record['error']}", flush=True)
            write_outputs(run_dir, summary, ordered(), decimals)
    except KeyboardInterrupt:
        if records:
            write_outputs(run_dir, summary, ordered(), decimals)
        print(f"interrupted: {len(records)} finished model(s) kept in {run_dir}", file=sys.stderr)
        raise

    final = write_outputs(run_dir, summary, ordered(), decimals)
    print()
    print(text_table(ordered(), decimals))
    check = final["split_check"]
    if check["same_split"] is False:
        print(f"WARNING: models saw different splits: {', '.join(check['differs'])}")
    print(f"\nwritten: {run_dir / 'table.md'}, table.csv, results.json, curves.png")
    return 0 if all(r["status"] == "ok" for r in ordered()) else 1
