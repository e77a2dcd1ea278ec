"""Embedding vintages: how the versions of one family relate to each other.

    compat.py    linear maps between versions (STAR paper §4.6): fit / apply / compose, shortest chain of stored
                 maps, store / load in star.embedding_compat
    gate.py      may a consumer be served a new vintage through a map? alignment, ranker AUC parity on held-out
                 rows, overlap@k of neighbours; GateFailed carries the report
    config.py    GateConfig: the gate's thresholds (publish.py, gate.py and `star versions publish` read them)

Nothing here imports feast, nor star.text, star.graph or star.pipeline (tests/test_architecture.py); torch only
when gate.py scores a ranker (star.ranker).
"""
