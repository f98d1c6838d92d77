"""ESCI data layer: loading, product text, label maps and query-level splits."""

from reldistill.data.esci import EXAMPLES_FILE, PRODUCTS_FILE, EsciData, load_esci, load_products, load_table
from reldistill.data.split import assign_splits, carve_dev, query_unit
from reldistill.data.stats import data_stats
from reldistill.data.text import PRODUCT_FIELDS, clean_text, product_text

__all__ = [
    "EXAMPLES_FILE", "PRODUCTS_FILE", "PRODUCT_FIELDS", "EsciData", "assign_splits", "carve_dev",
    "clean_text", "data_stats", "load_esci", "load_products", "load_table", "product_text", "query_unit",
]
