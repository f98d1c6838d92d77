"""Retrieval: FAISS + BM25 indexes, RRF fusion, search pipeline, HTTP service and web page."""
