"""Feature services: what a consumer reads, under one name. An example to copy: add your own here.

`feast apply` and every `star` job that applies (seed, features apply, embed, publish, retire) keep what this
repo defines; `star` only adds, updates and removes its own versioned views (feature_views.py).

`ranker_v1` is what the reference ranker (star/ranker, RankerConfig.refs) reads: member and job text embeddings
of vintage 1 and both sides' seniority. Every vector feature is named `embedding` (and both sides have a
`seniority`), so read a service with full feature names, `<view>__<feature>`:

    store.get_online_features(features=store.get_feature_service("ranker_v1"), entity_rows=[...],
                              full_feature_names=True)

It is defined once its views exist (after `star seed` and `star text embed`).
"""

from feast import FeatureService

import feature_views as views  # this repo's module: the same view objects `feast apply` registers

RANKER_V1 = {
    "member_text_embedding_v1": ["embedding"],
    "job_text_embedding_v1": ["embedding"],
    "member_categorical_v1": ["seniority"],
    "job_categorical_v1": ["seniority"],
}


def _has(name: str, features: list[str]) -> bool:
    fv = getattr(views, name, None)
    return fv is not None and set(features) <= {f.name for f in fv.features}


if all(_has(name, features) for name, features in RANKER_V1.items()):
    ranker_v1 = FeatureService(
        name="ranker_v1",
        features=[getattr(views, name)[features] for name, features in RANKER_V1.items()],
        description="the reference ranker's inputs (star/ranker); read with full_feature_names=True",
        owner="star",
        tags={"consumer": "ranker"},
    )
