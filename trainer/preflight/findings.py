"""One pre-flight finding: which check, which node (and GPU, NIC or pair), ok or not, and the
numbers behind it (for the machine-readable record)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Finding:
    check: str  # gpu | link | transport | software | storage | checkpoint
    node_rank: int | None  # None: the whole job (a world all-reduce, say)
    host: str | None
    ok: bool
    detail: str  # what a person reads: names the GPU index, NIC or node pair
    data: dict = field(default_factory=dict)  # the measured numbers

    def where(self) -> str:
        if self.node_rank is None:
            return "job"
        return f"node {self.node_rank} ({self.host})" if self.host else f"node {self.node_rank}"

    def record(self) -> dict:
        return asdict(self)
