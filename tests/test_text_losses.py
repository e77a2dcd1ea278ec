"""The STAR text losses on hand-computed cases (2-d unit vectors, tau = 0.1)."""

from __future__ import annotations

import math

import pytest
import torch

from star.text.losses import bce_loss, semi_hard_negatives, semi_hard_triplet_loss

# Row i is (member r_i, job d_i). sims[i, j] = d_i . r_j:
#   d0=(1,0):     r0 .8 (pos) | r1 .6 | r2 1.0 | r3 0      -> semi-hard for row 0: r1 (0.6 < 0.8; r2 is harder)
#   d3=(.8,.6):   r0 1.0 | r1 .96 | r2 .8 | r3 .6 (pos)    -> nothing below 0.6: fall back to the least similar, r2
DOCS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]])
REQS = torch.tensor([[0.8, 0.6], [0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])
LABELS = torch.tensor([1, 0, 0, 1])
IDS = [10, 11, 12, 13]


def test_semi_hard_picks_the_closest_negative_below_the_positive_and_falls_back():
    assert semi_hard_negatives(DOCS, REQS, LABELS, IDS).tolist() == [1, -1, -1, 2]


def test_same_member_is_never_its_own_negative():
    # Row 1 now belongs to row 0's member: r1 (0.6) is excluded, the next one below 0.8 is r3 (0.0).
    assert semi_hard_negatives(DOCS, REQS, LABELS, [10, 10, 12, 13]).tolist() == [3, -1, -1, 2]
    # String ids work the same way.
    assert semi_hard_negatives(DOCS, REQS, LABELS, ["a", "a", "b", "c"]).tolist() == [3, -1, -1, 2]


def test_triplet_loss_value_by_hand():
    # row 0: -log(e^8 / (e^8 + e^6)) = log(1 + e^-2) = 0.126928; row 3: log(1 + e^(8-6)) = log(1 + e^2) = 2.126928.
    # Mean over the two positives (the paper writes a sum): 1.126928.
    loss = semi_hard_triplet_loss(DOCS, REQS, LABELS, IDS, tau=0.1)
    assert loss.item() == pytest.approx(1.126928, abs=1e-5)
    assert loss.item() == pytest.approx((math.log1p(math.exp(-2)) + math.log1p(math.exp(2))) / 2, abs=1e-6)


def test_triplet_loss_with_same_member_rows():
    # row 0 now uses r3 (sim 0): log(1 + e^((0 - .8)/.1)) = log(1 + e^-8) = 0.000335; row 3 as before 2.126928.
    loss = semi_hard_triplet_loss(DOCS, REQS, LABELS, [10, 10, 12, 13], tau=0.1)
    assert loss.item() == pytest.approx((0.000335 + 2.126928) / 2, abs=1e-5)


def test_triplet_loss_is_zero_without_positives_or_candidates_and_still_backpropagates():
    docs, reqs = DOCS.clone().requires_grad_(), REQS.clone().requires_grad_()
    none_pos = semi_hard_triplet_loss(docs, reqs, torch.zeros(4), IDS, tau=0.1)
    one_member = semi_hard_triplet_loss(docs, reqs, LABELS, [7, 7, 7, 7], tau=0.1)
    assert none_pos.item() == 0.0 and one_member.item() == 0.0
    (none_pos + one_member).backward()
    assert docs.grad is not None and torch.count_nonzero(docs.grad) == 0


def test_triplet_loss_gradient_pushes_the_negative_away():
    docs, reqs = DOCS.clone().requires_grad_(), REQS.clone().requires_grad_()
    semi_hard_triplet_loss(docs, reqs, LABELS, IDS, tau=0.1).backward()
    # Raising sim(d0, r1), the chosen negative of row 0, would raise the loss: the gradient along d0 is positive.
    assert (reqs.grad[1] @ docs[0].detach()).item() > 0
    # Raising the positive sim(d0, r0) would lower it.
    assert (reqs.grad[0] @ docs[0].detach()).item() < 0


def test_bce_by_hand():
    # -log(sigmoid(0)) = log 2 = 0.693147; -log(1 - sigmoid(2)) = log(1 + e^2) = 2.126928; mean 1.410038.
    assert bce_loss(torch.tensor([0.0, 2.0]), torch.tensor([1, 0])).item() == pytest.approx(1.410038, abs=1e-5)


def test_batches_with_hard_negatives_still_give_every_positive_a_triplet_from_another_member():
    # A training batch with hard negatives: each member's positive row is followed by rows of the same member with
    # jobs that share its attributes (label 0). Those rows are not anchors, and the in-batch negative of a positive
    # is always another member's request, never the positive's own member again.
    torch.manual_seed(0)
    members = [1, 1, 1, 2, 2, 2, 3, 3, 3]
    labels = torch.tensor([1, 0, 0, 1, 0, 0, 1, 0, 0])
    docs = torch.nn.functional.normalize(torch.randn(9, 8), dim=1).requires_grad_()
    reqs = torch.nn.functional.normalize(torch.randn(9, 8), dim=1)
    chosen = semi_hard_negatives(docs, reqs, labels, members).tolist()
    for row, neg in enumerate(chosen):
        assert (neg >= 0) == bool(labels[row]) and (neg < 0 or members[neg] != members[row])
    loss = semi_hard_triplet_loss(docs, reqs, labels, members, tau=0.1)
    loss.backward()
    assert loss.item() > 0 and torch.count_nonzero(docs.grad[labels == 1]) > 0
    # only one member in the batch: its hard negatives are no in-batch negatives, the term is 0
    assert semi_hard_triplet_loss(docs[:3], reqs[:3], labels[:3], members[:3], tau=0.1).item() == 0.0
