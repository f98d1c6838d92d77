"""Student: sentence-transformers bi-encoder loading and encoding."""

from reldistill.student.encode import encode_documents, encode_queries, load_student

__all__ = ["encode_documents", "encode_queries", "load_student"]
