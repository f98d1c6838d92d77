"""Index: what mining and search both stand on: FAISS dense index + id map, BM25, RRF fusion, the catalog."""
