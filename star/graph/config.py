"""What graph to build: the cutoff time, which relations, which node features."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from star.common import ENTITIES
from star.errors import ConfigError, StarError

# the embedding family each entity type's graph vectors are published as
FAMILIES = {"member": "member_graph_embedding", "job": "job_graph_embedding"}


class GraphBuildError(StarError):
    """The graph cannot be built as asked (cutoff before the data, unknown relation or text version)."""


def _names(value, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise ConfigError(f"{what}={value!r} is a string; pass a tuple of relation names, e.g. ({value!r},)")
    return tuple(value)


@dataclass(frozen=True, kw_only=True)
class GraphConfig:
    cutoff: pd.Timestamp = field(
        metadata={"help": "only nodes, edges, attributes and texts stamped at or before this UTC time"})
    interaction_relations: tuple[str, ...] | None = field(
        default=None, metadata={"help": "member -> job relations to use; None = all present by the cutoff"})
    attribute_relations: tuple[str, ...] | None = field(
        default=None, metadata={"help": "member|job -> attribute relations; None = all present by the cutoff"})
    edge_types: tuple[tuple[str, str, str], ...] | None = field(
        default=None, metadata={"help": "forward (src, relation, dst) types to keep, within the relations above; "
                                        "None = all (a model's own, when its graph is rebuilt: a relation name "
                                        "that later links other node types stays out)"})
    text_version: dict[str, int] | None = field(
        default=None, metadata={"help": "entity -> <entity>_text_embedding version; None = newest published, "
                                        "{} = no text features"})
    use_text: bool = field(default=True, metadata={"help": "text embedding node features for members and jobs"})
    use_categorical: bool = field(default=True, metadata={"help": "integer-coded categorical node features"})
    use_ids: bool = field(default=True, metadata={"help": "learned ID embeddings for attribute nodes (recorded "
                                                          "here for ablations; the model reads it)"})
    add_reverse: bool = field(default=True, metadata={"help": "a rev_<relation> edge type per relation, so "
                                                              "messages flow both ways"})

    def __post_init__(self):
        try:
            cutoff = pd.Timestamp(self.cutoff)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"cutoff={self.cutoff!r} is not a time; pass e.g. "
                              "pd.Timestamp('2025-03-01', tz='UTC')") from exc
        if cutoff is pd.NaT or cutoff.tzinfo is None:
            raise ConfigError(f"cutoff={self.cutoff!r} has no time zone; pass a UTC time, e.g. "
                              "pd.Timestamp('2025-03-01', tz='UTC')")
        object.__setattr__(self, "cutoff", cutoff.tz_convert("UTC"))
        object.__setattr__(self, "interaction_relations",
                           _names(self.interaction_relations, "interaction_relations"))
        object.__setattr__(self, "attribute_relations", _names(self.attribute_relations, "attribute_relations"))
        if self.edge_types is not None:
            types = tuple(tuple(e) for e in self.edge_types)
            if any(len(e) != 3 or not all(isinstance(x, str) for x in e) for e in types):
                raise ConfigError(f"edge_types={self.edge_types!r}: pass (src type, relation, dst type) triples, "
                                  "e.g. (('member', 'apply', 'job'),)")
            object.__setattr__(self, "edge_types", types)
        if self.text_version is not None:
            wrong = [k for k in self.text_version if k not in ENTITIES]
            bad = [v for v in self.text_version.values() if not isinstance(v, int) or v < 1]
            if wrong or bad:
                raise ConfigError(f"text_version={self.text_version!r}: keys must be in {ENTITIES} and versions "
                                  "integers >= 1, e.g. {'member': 1, 'job': 1}")
            object.__setattr__(self, "text_version", dict(self.text_version))

    def to_dict(self) -> dict:
        """JSON-ready, for the lineage of whatever is trained on the graph."""
        return {"cutoff": self.cutoff.isoformat(), "interaction_relations": self.interaction_relations,
                "attribute_relations": self.attribute_relations,
                "edge_types": None if self.edge_types is None else [list(e) for e in self.edge_types],
                "text_version": self.text_version,
                "use_text": self.use_text, "use_categorical": self.use_categorical, "use_ids": self.use_ids,
                "add_reverse": self.add_reverse}
