"""reldistill: distil an LLM relevance teacher into fast hybrid product search."""

__version__ = "0.1.0"
