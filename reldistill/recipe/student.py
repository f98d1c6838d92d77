"""The ``student:`` recipe section: the inference runtime of every student encode (training is PyTorch)."""

from __future__ import annotations

import dataclasses

from reldistill.settings import check_backend, check_int8


@dataclasses.dataclass
class StudentConfig:
    """Which runtime encodes with the student: auto = the fastest of torch / onnx / openvino measured once on
    this CPU (cached; torch unless another is 10% faster); ``$RELDISTILL_STUDENT_BACKEND`` and ``$RELDISTILL_STUDENT_INT8`` still win (reldistill.settings)."""

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
