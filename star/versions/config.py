"""Settings of the vintage lifecycle: the parity gate's thresholds (GateConfig), defaults in one place.

    GateConfig --star.versions.publish.publish(gate=...)--> star.versions.gate.evaluate_gate(cfg=...)
    its fields --star.cli_versions--> the options of `star versions publish` (--max-auc-drop, --min-mean, ...)
    GateConfig().min_mean --star.versions.retire--> the warning on a retire through a weaker map

Imports nothing heavy: the CLI reads the defaults at start-up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from star.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class GateConfig:
    """The parity gate's thresholds, defaults in one place: publish(), evaluate_gate() and the options of
    `star versions publish` (named after the fields) all read them from here."""

    max_auc_drop: float = field(default=0.005, metadata={
        "help": "largest allowed ranker AUC drop, translated vs native rows (0.005: within the AUC's noise on a few "
                "thousand held-out rows)"})
    min_mean: float = field(default=0.97, metadata={"help": "smallest held-out mean cosine of the map"})
    min_p5: float = field(default=0.94, metadata={
        "help": "smallest held-out 5th-percentile cosine of the map (a good mean can hide a badly mapped tail)"})
    min_overlap: float | None = field(default=None, metadata={
        "help": "smallest overlap@k of cosine neighbours, translated vs native (default: measured and reported only)"})
    k: int = field(default=10, metadata={"help": "neighbours per query for overlap@k"})

    def __post_init__(self):
        for name, low, high in (("max_auc_drop", 0.0, 1.0), ("min_mean", -1.0, 1.0), ("min_p5", -1.0, 1.0),
                                ("min_overlap", 0.0, 1.0)):
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise ConfigError(f"GateConfig: {name}={value!r} must lie in [{low}, {high}]; pass "
                                  f"--{name.replace('_', '-')} with a value in that range")
        if self.k < 1:
            raise ConfigError(f"GateConfig: k={self.k!r} must be >= 1; pass a positive number of neighbours")

    @staticmethod
    def help(name: str) -> str:
        return next(f.metadata["help"] for f in fields(GateConfig) if f.name == name)

    def to_dict(self) -> dict:
        return asdict(self)
