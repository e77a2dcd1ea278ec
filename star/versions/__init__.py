"""Embedding vintages: how the versions of one family relate to each other.

    compat.py    linear maps between versions (STAR paper §4.6): fit / apply / compose, shortest chain of stored
                 maps, store / load in star.embedding_compat

Nothing here imports feast or torch.
"""
