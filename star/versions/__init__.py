"""Embedding vintages: how the versions of one family relate to each other.

    compat.py    linear maps between versions (STAR paper §4.6): fit / apply / compose, shortest chain of stored
                 maps, store / load in star.embedding_compat
    gate.py      may a consumer be served a new vintage through a map? alignment, ranker AUC parity on held-out
                 rows, overlap@k of neighbours; GateFailed carries the report

Nothing here imports feast; torch only when gate.py scores a ranker.
"""
