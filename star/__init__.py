"""STAR: a feature-store-centric embedding platform for two-sided marketplaces (members <-> jobs)."""

__version__ = "0.1.0"
