"""Entities of the marketplace: members and jobs, keyed by their integer ids."""

from star.store.feast_repo import JOB, MEMBER

__all__ = ["MEMBER", "JOB"]
