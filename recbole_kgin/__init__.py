"""recbole-kgin: KGIN (Wang et al., WWW 2021) as a RecBole plugin."""

from recbole_kgin import compat as _compat

_compat.apply()

__version__ = "0.1.0"
