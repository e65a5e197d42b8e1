"""What every part of the converter shares: its error, the output format's constants, the paper's
Table 1 and the default output root."""

from __future__ import annotations

import re
from pathlib import Path


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
_ITEM_HEADER = "item_id:token"
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
