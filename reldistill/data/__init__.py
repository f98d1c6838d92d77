"""ESCI data layer: loading, product text, label maps and query-level splits."""

from reldistill.data.esci import EXAMPLES_FILE, PRODUCTS_FILE, EsciData, check_data_path, load_esci, load_products, load_table
from reldistill.data.queries import normalise_queries, normalise_query, query_id, query_ids
from reldistill.data.split import assign_splits, carve_dev, query_unit
from reldistill.data.stats import check_data, data_stats
from reldistill.data.text import PRODUCT_FIELDS, clean_text, product_text

__all__ = [
    "EXAMPLES_FILE", "PRODUCTS_FILE", "PRODUCT_FIELDS", "EsciData", "assign_splits", "carve_dev", "check_data", "check_data_path",
    "clean_text", "data_stats", "load_esci", "load_products", "load_table", "normalise_queries", "normalise_query",
    "product_text", "query_id", "query_ids", "query_unit",
]
