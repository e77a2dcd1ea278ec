"""What the ranker reads (Feast feature refs) and how it trains. No torch, no feast at import."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from star.errors import ConfigError, StarError


class RankerError(StarError):
    """A ranker cannot be trained, scored, saved or loaded as asked."""


def column(ref: str) -> str:
    """The training-set column of a Feast ref: 'view:feature' -> 'view__feature' (full feature names)."""
    return ref.replace(":", "__", 1)


def _refs(value, what: str) -> tuple[str, ...]:
    refs = (value,) if isinstance(value, str) else tuple(value)
    bad = [r for r in refs if not isinstance(r, str) or r.count(":") != 1 or "" in r.split(":")]
    if bad:
        raise ConfigError(f"RankerConfig.{what}: {bad} are not Feast feature refs; expected 'view:feature', e.g. "
                          "'member_text_embedding_v1:embedding'")
    return refs


@dataclass(frozen=True, kw_only=True)
class RankerConfig:
    member_features: tuple[str, ...] = field(metadata={
        "help": "Feast refs of member embedding features, concatenated in order, e.g. "
                "('member_text_embedding_v1:embedding',)"})
    job_features: tuple[str, ...] = field(metadata={
        "help": "Feast refs of job embedding features, e.g. ('job_text_embedding_v1:embedding',)"})
    categorical: tuple[str, ...] = field(default=(), metadata={
        "help": "Feast refs of string features, one learned embedding each, e.g. "
                "('member_categorical_v1:seniority',); values unseen in training map to index 0"})
    cat_dim: int = field(default=8, metadata={"help": "width of each categorical embedding"})
    hidden: tuple[int, ...] = field(default=(64, 32), metadata={"help": "widths of the MLP's hidden layers"})
    epochs: int = field(default=30, metadata={"help": "passes over the training rows"})
    lr: float = field(default=3e-3, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW decoupled weight decay"})
    batch_size: int = field(default=64, metadata={"help": "rows per optimizer step"})
    seed: int = field(default=0, metadata={"help": "seeds the initialisation and the shuffling"})
    val_fraction: float = field(default=0.2, metadata={
        "help": "the latest share of rows (by event_timestamp, never random) is validation"})

    def __post_init__(self):
        for name in ("member_features", "job_features", "categorical"):
            object.__setattr__(self, name, _refs(getattr(self, name), name))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if not self.member_features or not self.job_features:
            raise ConfigError("RankerConfig: member_features and job_features each need at least one Feast ref, "
                              "e.g. 'member_text_embedding_v1:embedding'")
        if len(set(self.refs)) != len(self.refs):
            raise ConfigError(f"RankerConfig: a ref appears twice in {self.refs}; list each feature once")
        if min((self.epochs, self.batch_size, self.cat_dim, *self.hidden)) < 1 or not self.lr > 0:
            raise ConfigError("RankerConfig: epochs, batch_size, cat_dim and every hidden width must be >= 1 and "
                              "lr > 0")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"RankerConfig: val_fraction={self.val_fraction}; expected a share in (0, 1)")

    @property
    def refs(self) -> tuple[str, ...]:
        """Every Feast ref the ranker reads: pass them to build_trainset and get_online_features."""
        return self.member_features + self.job_features + self.categorical

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "RankerConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
