"""Feature views, one per family and version, following what was ingested.

The families and their versions live in star.embedding_versions (star/store/catalog.py): categorical
(`member_categorical_v1`), ID (`member_ids_v1`) and text snapshot (`member_text_v1`) views for members and jobs.
`feast apply` reads them from the database named by the STAR_PG_* variables, so the repo stays in step with
the data without editing this file.
"""

from star.db import connect
from star.store.catalog import published_views
from star.store.feast_repo import feature_view, target_from_feast_env

with connect(target_from_feast_env()) as _conn:
    _specs = published_views(_conn)

globals().update({spec.name: feature_view(spec) for spec in _specs})
