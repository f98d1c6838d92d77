"""The catalog's document embeddings by a student, in shards of 2,048 that a rerun after a crash reuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reldistill.artifacts import atomic_path
from reldistill.progress import progress_bar
from reldistill.student.encode import encode_documents

SHARD = 2048
SORT_CHUNK = 512  # texts per encode call (length-sorted batches inside it)


def encode_catalog(model, ids: list[str], texts: list[str], cache: Path | None = None,
                   batch_size: int = 64) -> np.ndarray:
    """Document embeddings of ``texts``; with ``cache`` each shard of 2,048 is saved and reused on rerun."""
    shards = []
    done = 0
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        while (cache / f"shard-{len(shards):05d}.npy").is_file() and done < len(texts):
            arr = np.load(cache / f"shard-{len(shards):05d}.npy", allow_pickle=False)
            shards.append(arr)
            done += len(arr)
    with progress_bar(len(texts), "encode products", "docs", initial=done) as advance:
        for start in range(done, len(texts), SHARD):
            chunk = texts[start:start + SHARD]
            parts = []
            for b in range(0, len(chunk), SORT_CHUNK):  # sentence-transformers sorts each call by length
                parts.append(encode_documents(model, chunk[b:b + SORT_CHUNK], batch_size=batch_size))
                advance(len(chunk[b:b + SORT_CHUNK]))
            arr = np.concatenate(parts)
            if cache is not None:
                with atomic_path(cache / f"shard-{len(shards):05d}.npy") as tmp:
                    with open(tmp, "wb") as f:
                        np.save(f, arr, allow_pickle=False)
            shards.append(arr)
    return np.concatenate(shards) if shards else np.zeros((0, model.get_embedding_dimension()), np.float32)
