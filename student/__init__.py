"""Student: sentence-transformers bi-encoder loading and encoding."""
