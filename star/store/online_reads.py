"""FeatureStore.get_online_features for StarPostgreSQLOnlineStore: one round trip and Python values straight from
the rows, the same `to_dict()` stock Feast returns (star/store/online_store.py calls `read`).

    entity rows --per view: unique keys, serialized as Feast serializes them (v3)--> one UNION ALL over the views'
        tables, binary results (vectors as real[]: lists of floats, no protobuf)
        --> one column of Python values per feature, fanned out to the entity rows
        --> StarOnlineResponse: to_dict() hands the columns over; .proto (to_df, to_arrow, a second to_dict, ...)
            is built on first use by Feast's own code from the same rows, as stock builds it

Stock spends a request's time per value, not in the database: a protobuf per entity key and per value, then
Python values back from them (1 member + 100 jobs over 6 views: ~1,100 values, ~400 of them vectors).
Requests this path does not cover go through Feast's (`read` returns None): on-demand views, request data,
entityless views, precomputed feature services, versioned reads or metadata, projected join keys, join keys
that are not plain int / str, online-feature metrics, or more rows than one batched query holds.
"""

from __future__ import annotations

import functools
import struct
import sys
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from feast import FeatureView, utils
from feast.infra.online_stores.postgres_online_store.postgres import MAX_BATCHED_RESULT_ROWS
from feast.online_response import OnlineResponse
from feast.protos.feast.serving.ServingService_pb2 import GetOnlineFeaturesResponse
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.protos.feast.types.Value_pb2 import ValueType as ProtoValueType
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.value_type import ValueType
from psycopg import sql

from star.store import online_tables as tables

# vector_send: pgvector's binary form as bytea (decoded here; real[] costs the server and psycopg ~5 us a vector)
BRANCH = "SELECT {tag} AS fv_tag, entity_key, feature_name, value, value_text, vector_send(vector_value), event_ts " \
         "FROM {table} WHERE entity_key = ANY(%b) AND feature_name = ANY(%b)"
KEY_ENCODERS = {  # join key type -> (how Feast's serialize_entity_key writes the value, its proto type)
    ValueType.INT64: (lambda v: struct.pack("<q", v), ProtoValueType.INT64, int),
    ValueType.INT32: (lambda v: struct.pack("<i", v), ProtoValueType.INT32, int),
    ValueType.STRING: (lambda v: v.encode("utf8"), ProtoValueType.STRING, str),
}


@dataclass
class ViewRead:
    """One feature view's share of the request."""

    table: FeatureView
    features: List[str]
    keys: List[bytes]  # unique serialized entity keys
    idxs: List[List[int]]  # entity rows of each key
    rows: Dict[bytes, List[tuple]] = field(default_factory=lambda: defaultdict(list))  # key -> stored rows


def read(store, config, features, entity_rows, registry, project, full_feature_names: bool,
         table_of: Callable[[Any, FeatureView], Tuple[str, str]]) -> Optional[OnlineResponse]:
    """The response, or None when the request needs Feast's own path (module docstring)."""
    from feast.feature_service import FeatureService

    if isinstance(features, FeatureService) and getattr(features, "precompute_online", False):
        return None
    if _metrics_on() or config.entity_key_serialization_version != 3:
        return None
    columns = _columnar(entity_rows)
    if columns is None:
        return None
    (_, odfvs, name_to_join_key, types, join_keys, grouped_refs, _, request_data,
     entityless) = utils._get_cached_request_context(registry, project, features, full_feature_names)
    if odfvs or request_data or entityless or not grouped_refs or not set(columns) <= set(join_keys):
        return None
    n = len(next(iter(columns.values())))
    limit = getattr(config.online_store, "max_batched_result_rows", MAX_BATCHED_RESULT_ROWS)
    if not n or n * len(grouped_refs) > limit:
        return None
    reads, keyed = [], {}
    for table, requested in grouped_refs:
        view = _view_read(table, list(requested), columns, name_to_join_key, types, keyed)
        if view is None:
            return None
        reads.append(view)
    _fetch(store, config, reads, table_of)
    return StarOnlineResponse(columns, types, reads, n, full_feature_names,
                              feature_types=store._build_feature_types(grouped_refs))


def _metrics_on() -> bool:
    try:
        from feast.metrics import _config

        return bool(_config.online_features)
    except Exception:
        return False


def _columnar(entity_rows) -> Optional[Dict[str, list]]:
    """{join key: values}; None when the rows are not plain lists of Python values (Feast converts the rest)."""
    if isinstance(entity_rows, list):
        if not entity_rows:
            return None
        columns: Dict[str, list] = {k: [] for k in entity_rows[0]}
        for row in entity_rows:
            if row.keys() != columns.keys():
                return None  # Feast raises its own error
            for k, v in row.items():
                columns[k].append(v)
        return columns
    columns = {k: v for k, v in entity_rows.items()}
    return columns if all(isinstance(v, list) for v in columns.values()) and columns else None


def _view_read(table: FeatureView, features: List[str], columns: Dict[str, list], name_to_join_key, types,
               keyed: Dict[tuple, Optional[tuple]]) -> Optional[ViewRead]:
    """The view's unique keys and the rows each one serves (shared by views with the same join keys), or None when
    Feast's path must serialize them."""
    if table.projection.join_key_map or getattr(table.projection, "version_tag", None) is not None:
        return None
    names = tuple(sorted(name_to_join_key[e] for e in table.entities))
    if not features or not names or any(k not in columns for k in names):
        return None
    if names not in keyed:
        keyed[names] = _keys(names, columns, types)
    if keyed[names] is None:
        return None
    keys, idxs = keyed[names]
    return ViewRead(table, features, keys, idxs)


def _keys(names: tuple, columns: Dict[str, list], types) -> Optional[tuple]:
    """(unique keys serialized as Feast's serialize_entity_key v3 does, the entity rows of each), or None."""
    encoders = [KEY_ENCODERS.get(types.get(k)) for k in names]
    if None in encoders:
        return None
    prefix = [struct.pack("<I", len(names))]
    for k in names:
        b = k.encode("utf8")
        prefix += [struct.pack("<II", ProtoValueType.STRING, len(b)), b]
    prefix_bytes = b"".join(prefix)
    keys: List[bytes] = []
    idxs: List[List[int]] = []
    where: Dict[tuple, int] = {}
    for i, values in enumerate(zip(*(columns[k] for k in names))):
        at = where.get(values)
        if at is None:
            parts = [prefix_bytes]
            for (encode, proto_type, py_type), v in zip(encoders, values):
                if type(v) is not py_type:
                    return None  # numpy ints, bools, protos ...: Feast converts them
                try:
                    b = encode(v)
                except struct.error:
                    return None  # out of range: Feast raises its own error
                parts += [struct.pack("<II", proto_type, len(b)), b]
            at = where[values] = len(keys)
            keys.append(b"".join(parts))
            idxs.append([])
        idxs[at].append(i)
    return keys, idxs


@functools.lru_cache(maxsize=256)
def _union(tables_: Tuple[Tuple[str, str], ...]) -> str:
    """The batched read of these (schema, table)s, composed once (the same text each time: prepared by psycopg)."""
    return sql.SQL(" UNION ALL ").join(sql.SQL(BRANCH).format(tag=sql.Literal(tag), table=sql.Identifier(*t))
                                       for tag, t in enumerate(tables_)).as_string(None)


def _fetch(store, config, reads: List[ViewRead], table_of) -> None:
    query = _union(tuple(table_of(config, r.table) for r in reads))
    params: List[Any] = []
    for r in reads:
        params += [r.keys, r.features]
    with store.serving_conn(config) as conn, conn.cursor(binary=True) as cur:
        rows = cur.execute(query, params).fetchall()
    for tag, key, feature, value, text, vector, ts in rows:
        reads[tag].rows[key].append((feature, value, text, vector, ts))


def vector_list(sent: bytes) -> List[float]:
    """pgvector's binary form (int16 dim, int16 unused, dim big-endian float32) -> the floats."""
    floats = array("f")
    floats.frombytes(memoryview(sent)[4:])
    if sys.byteorder == "little":
        floats.byteswap()
    return floats.tolist()


def _python(value, text, vector, vtype):
    """A stored feature as stock's to_dict() gives it (tables.to_proto, then Feast's proto -> Python)."""
    if value is not None:
        proto = ValueProto.FromString(value)
        if proto.WhichOneof("val") == "string_val":
            return proto.string_val
        return feast_value_type_to_python_type(proto, vtype)
    if vector is not None:
        return vector_list(vector)
    return text


class StarOnlineResponse(OnlineResponse):
    """An OnlineResponse whose to_dict() is built from the rows without protobuf; `proto` on first use."""

    def __init__(self, columns: Dict[str, list], types, reads: List[ViewRead], n: int, full_feature_names: bool,
                 feature_types: Dict[str, ValueType]):
        self._columns, self._types, self._reads, self._n = columns, types, reads, n
        self._full = full_feature_names
        self._feature_types = feature_types
        self._proto: Optional[GetOnlineFeaturesResponse] = None
        self._handed_over = False

    @property
    def proto(self) -> GetOnlineFeaturesResponse:
        if self._proto is None:
            self._proto = self._build_proto()
        return self._proto

    @proto.setter
    def proto(self, value: GetOnlineFeaturesResponse) -> None:
        self._proto = value

    def to_dict(self, include_event_timestamps: bool = False) -> Dict[str, Any]:
        if include_event_timestamps or self._handed_over:  # fresh values each call, as stock
            return super().to_dict(include_event_timestamps)
        self._handed_over = True
        out: Dict[str, Any] = {k: list(v) for k, v in self._columns.items()}
        for r in self._reads:
            prefix = f"{r.table.projection.name_to_use()}__" if self._full else ""
            vtypes = {f.name: f.dtype.to_value_type() for f in r.table.features}
            cols = {f: [None] * self._n for f in r.features}
            for key, idxs in zip(r.keys, r.idxs):
                for feature, value, text, vector, _ in r.rows.get(key, ()):
                    col = cols.get(feature)
                    if col is None:
                        continue
                    v = _python(value, text, vector, vtypes.get(feature))
                    for j, i in enumerate(idxs):  # each row its own list, as stock's
                        col[i] = v if j == 0 or not isinstance(v, (list, set, dict)) else v.copy()
            for f in r.features:
                out[prefix + f] = cols[f]
        return out

    def _build_proto(self) -> GetOnlineFeaturesResponse:
        """What Feast's own path builds from the same rows."""
        response = GetOnlineFeaturesResponse(results=[])
        utils._populate_result_rows_from_columnar(response, {
            k: python_values_to_proto_values(v, self._types.get(k, ValueType.UNKNOWN))
            for k, v in self._columns.items()})
        for r in self._reads:
            read_rows = []
            for key in r.keys:
                rows = r.rows.get(key)
                read_rows.append((rows[-1][4], {f: tables.to_proto(v, t, None if vec is None else vector_list(vec))
                                                for f, v, t, vec, _ in rows})
                                 if rows else (None, None))
            utils._populate_response_from_feature_data(r.features, read_rows, r.idxs, response, self._full,
                                                       r.table, self._n)
        return response
