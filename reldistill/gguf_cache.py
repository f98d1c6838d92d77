"""A one-time dequantised copy of a GGUF model, so later loads skip the GGUF conversion.

transformers rebuilds the tokenizer and dequantises every tensor of a GGUF file on each load (about
20 s for SmolLM2-135M on 2 cores; the demo loads its teacher three times). The first load saves the
result as an ordinary safetensors folder (fp32: the dequantised values exactly) under
the runtime's cache folder (``$RELDISTILL_CACHE``, default ``~/.cache/reldistill``), keyed by the GGUF file's name, size and mtime;
later loads read that folder in about a second. Any failure to write the cache only costs speed;
``$RELDISTILL_NO_GGUF_CACHE`` (``Runtime.gguf_cache``) turns the copy off.

transformers parses the GGUF file once for the config, once for the weights and once for the tokenizer; the
parse is pure Python over every vocabulary entry (about 11 s each for Gemma 3 270M's 262k tokens on 2 cores),
so the conversion shares one parsed reader per file (:func:`one_parse_per_file`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reldistill.models import ResolvedModel
from reldistill.settings import Runtime

log = logging.getLogger(__name__)

READY = ".complete"


def cache_root(runtime: Runtime | None = None) -> Path:
    """The cache folder of ``runtime`` ($RELDISTILL_CACHE, default ``~/.cache/reldistill``)."""
    return (runtime or Runtime()).cache_dir


def _cache_dir(r: ResolvedModel, runtime: Runtime | None) -> Path:
    st = (Path(r.path) / r.gguf_file).stat()
    return cache_root(runtime) / "gguf" / f"{Path(r.gguf_file).stem}-{st.st_size}-{st.st_mtime_ns}"


def dequantized(r: ResolvedModel, runtime: Runtime | None = None) -> ResolvedModel:
    """``r`` itself unless it is a GGUF file (and ``runtime`` keeps the GGUF cache); then a folder with its
    dequantised weights and tokenizer."""
    if not r.gguf_file or not (runtime or Runtime()).gguf_cache:
        return r
    try:
        target = _cache_dir(r, runtime)
        if not (target / READY).is_file():
            _convert(r, target)
    except Exception as e:  # noqa: BLE001 - a cache we cannot write (read-only home, full disk) only costs speed
        log.warning("loading %s from the GGUF file (no dequantised cache: %s)", r.gguf_file, e)
        return r
    return dataclasses.replace(r, path=str(target), gguf_file=None)


def _convert(r: ResolvedModel, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s once into %s", r.gguf_file, target)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with one_parse_per_file():
            model = AutoModelForCausalLM.from_pretrained(**r.from_pretrained_kwargs(), dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(**r.from_pretrained_kwargs())
        # the tensors are already plain dequantised Linear weights; only the GGUF marker blocks saving
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / READY).touch()
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first: keep its copy
            if not (target / READY).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def one_parse_per_file() -> Iterator[None]:
    """Within the block, ``gguf.GGUFReader(path)`` (which transformers' GGUF loader calls for the config, the weights
    and the tokenizer in turn) parses each file once and hands the same read-only reader back; the class is restored
    on leaving."""
    import gguf

    made: dict[tuple[str, str], object] = {}
    real = gguf.GGUFReader

    def reader(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in made:
            made[key] = real(path, mode)
        return made[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = real
