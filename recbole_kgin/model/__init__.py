from recbole_kgin.model.cfkg import CFKG
from recbole_kgin.model.kg_ease import KGEASE
from recbole_kgin.model.kg_itemknn import KGItemKNN
from recbole_kgin.model.kgat import KGAT
from recbole_kgin.model.kgcn import KGCN
from recbole_kgin.model.kgin import KGIN
from recbole_kgin.model.mcclk import MCCLK
from recbole_kgin.model.recbole_builtin import RecBoleKGIN

__all__ = ["CFKG", "KGAT", "KGEASE", "KGItemKNN", "KGCN", "KGIN", "MCCLK", "RecBoleKGIN"]
