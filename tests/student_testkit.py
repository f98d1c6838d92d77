"""Helpers of the student tests: a judged slice of the ESCI sample, a runtime made to fail its import."""

from __future__ import annotations

import builtins

from reldistill.config import DataConfig
from reldistill.data import load_esci


def judged_slice(esci_dir, n_queries: int):
    """(examples, products): the judged pairs of the sample's first ``n_queries`` query ids and their products."""
    data = load_esci(DataConfig(path=str(esci_dir)))
    ex = data.examples[data.examples["query_id"].isin(sorted(data.examples["query_id"].unique())[:n_queries])]
    return ex, data.products[data.products["product_id"].isin(set(ex["product_id"]))].reset_index(drop=True)


def block_runtime(monkeypatch, backend: str) -> None:
    """Make ``backend``'s runtime fail to import, as on a machine without it."""
    real_import = builtins.__import__
    blocked = {"onnx": "onnxruntime", "openvino": "openvino"}[backend]

    def no_runtime(name, *args, **kwargs):
        if name == blocked or name.startswith(blocked + "."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_runtime)
