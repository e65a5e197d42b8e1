"""The experiment layer shared by ``compare`` and ``tune``: one runner (a trial or a seed run is the
shared training pipeline of :mod:`recbole_kgin.quick_start`), one Ray Tune driver, one protocol
(budgets, seeds, selection, significance) and one report module (tables and figures)."""
