"""The ``student:`` recipe section: the inference runtime of every student encode (training is PyTorch)."""

from __future__ import annotations

import dataclasses

from reldistill.errors import UserError

BACKENDS = ("auto", "torch", "onnx", "openvino")
INT8_SETTINGS = ("auto", "off")


def check_backend(setting: str, where: str) -> str:
    """``setting`` as one of BACKENDS (case and spaces ignored); else one UserError naming ``where``."""
    s = str(setting).strip().lower()
    if s not in BACKENDS:
        raise UserError(f"{where} must be one of {', '.join(BACKENDS)} — got {setting!r}.")
    return s


def check_int8(setting: str | bool, where: str) -> str:
    """``setting`` as auto | off (YAML's true/false read as auto/off); else one UserError naming ``where``."""
    s = {True: "auto", False: "off"}.get(setting, setting) if isinstance(setting, bool) else str(setting).strip().lower()
    if s not in INT8_SETTINGS:
        raise UserError(f"{where} must be auto (int8 where its dev nDCG@10 gate passed) or off — got {setting!r}.")
    return s


@dataclasses.dataclass
class StudentConfig:
    """Which runtime encodes with the student: auto = the fastest of torch / onnx / openvino measured once on
    this CPU (cached); ``$RELDISTILL_STUDENT_BACKEND`` and ``$RELDISTILL_STUDENT_INT8`` still win."""

    backend: str = "auto"  # auto | torch | onnx | openvino
    # the runtime of one-query encoding (search, serve, eval queries): auto = the lowest single-query p50 measured here
    query_backend: str = "auto"
    # auto: the int8 ONNX export where its dev nDCG@10 gate passed (measured at index build) — for queries only against
    # the indexed catalog (any backend: the query encoder's auto may then pick onnx-int8), or for catalog and queries
    # (student.backend onnx) | off
    int8: str | bool = "off"

    def __post_init__(self) -> None:
        self.backend = check_backend(self.backend, "student.backend")
        self.query_backend = check_backend(self.query_backend, "student.query_backend")
        self.int8 = check_int8(self.int8, "student.int8")
