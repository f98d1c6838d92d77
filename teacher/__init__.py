"""Teacher: LoRA LLM cross-encoder trained on soft ESCI labels; scoring and reranking."""
