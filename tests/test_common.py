"""star.common: the AUC every evaluation reports and the seeding every training run starts with."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from star.common import ENTITIES, ID_COLUMN, roc_auc, seed_run


def test_auc_by_hand_with_ties():
    # pairs (pos, neg): (.9, .9) tie = 0.5, (.9, .1) = 1, (.3, .9) = 0, (.3, .1) = 1 -> 2.5 / 4
    assert roc_auc([1, 0, 1, 0], [0.9, 0.9, 0.3, 0.1]) == pytest.approx(0.625, abs=1e-15)
    assert roc_auc(np.array([0, 0, 1]), np.array([1.0, 2.0, 3.0])) == 1.0
    assert roc_auc([True, False], [0.0, 1.0]) == 0.0  # bool labels count as 0 / 1


def test_auc_is_none_where_it_is_undefined():
    """One class (a validation window without negatives) or a NaN score (a diverged model): None, which every
    report prints as n/a, never an exception or a made-up number."""
    assert roc_auc([1, 1], [0.2, 0.3]) is None
    assert roc_auc([], []) is None
    assert roc_auc([1, 0, 1], [0.2, float("nan"), 0.1]) is None


def test_auc_is_the_mann_whitney_statistic_the_reports_were_computed_with():
    """The numbers in bench/results and the registry were computed with the rank formula; the library gives the
    same values (ties and all)."""
    gen = np.random.default_rng(0)
    y = gen.integers(0, 2, 500)
    s = np.round(gen.normal(size=500) + y * 0.5, 1)  # rounded: many ties
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    mann_whitney = (ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    assert roc_auc(y, s) == pytest.approx(mann_whitney, abs=1e-12)


def test_seed_run_makes_python_numpy_and_torch_draws_repeat():
    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    seed_run(7)
    first = draws()
    seed_run(7)
    assert draws() == first
    seed_run(8)
    assert draws() != first


def test_entity_names():
    assert ENTITIES == ("member", "job") and [ID_COLUMN[e] for e in ENTITIES] == ["member_id", "job_id"]
