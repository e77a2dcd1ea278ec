"""The graph side of STAR: a heterogeneous member / job / attribute graph built from the database as of a cutoff.

    star.member_history / job_history / interactions / attribute_edges / <entity>_text_embedding_v<k>
        --build_graph(target, GraphConfig(cutoff=...))--> MarketGraph (DGL heterograph + node features)

Only `star.graph.dgl_compat` imports dgl; nothing here is imported by this package's __init__.
"""
