"""recbole-kgin: KGIN (Wang et al., WWW 2021) as a RecBole plugin."""

__version__ = "0.1.0"
