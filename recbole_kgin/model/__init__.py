from recbole_kgin.model.kgin import KGIN

__all__ = ["KGIN"]
