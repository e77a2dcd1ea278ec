"""Losses of the STAR text tower (paper §3.1, eq. 1-4): L = L_bce + lambda * L_c.

L_c is an in-batch triplet loss with semi-hard negatives. Row i of a batch is a (request, document) pair
(member, job) with a label. For every positive row, the negative request z_r^- is mined among the other rows'
request embeddings (rows whose request id differs, so a member is never its own negative):

    s_pos = z_d . z_r                       (dot product; the embeddings are L2-normalised)
    z_r^- = argmax { z_d . z_r' : z_d . z_r' < s_pos }        semi-hard: the closest one still below the positive
            argmin { z_d . z_r' }  when none is below          the fallback of TF's triplet_semihard_loss
    L_c   = mean_i -log( exp(s_pos/tau) / (exp(s_pos/tau) + exp(s_neg/tau)) )

The paper writes a sum over the positives; we take the mean so lambda does not depend on the batch size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy on logits (eq. 2)."""
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


def semi_hard_negatives(z_doc: torch.Tensor, z_req: torch.Tensor, labels, req_ids) -> torch.Tensor:
    """Index of the chosen negative request row for every row; -1 for a negative row or one with no candidate."""
    with torch.no_grad():
        sims = z_doc.float() @ z_req.float().T  # sims[i, j] = sim(z_d of row i, z_r of row j)
        pos = sims.diagonal()
        ids = torch.as_tensor(_codes(req_ids), device=sims.device)
        candidate = ids.unsqueeze(0) != ids.unsqueeze(1)
        below = candidate & (sims < pos.unsqueeze(1))
        ninf, inf = torch.tensor(-torch.inf, device=sims.device), torch.tensor(torch.inf, device=sims.device)
        semi_hard = torch.where(below, sims, ninf).argmax(1)
        easiest = torch.where(candidate, sims, inf).argmin(1)
        chosen = torch.where(below.any(1), semi_hard, easiest)
        is_pos = torch.as_tensor(labels, device=sims.device).reshape(-1) == 1
        return torch.where(is_pos & candidate.any(1), chosen, torch.full_like(chosen, -1))


def semi_hard_triplet_loss(z_doc: torch.Tensor, z_req: torch.Tensor, labels, req_ids, tau: float) -> torch.Tensor:
    """L_c of eq. 3 (mean over positives, see the module docstring); 0 with no positive or no candidate."""
    neg = semi_hard_negatives(z_doc, z_req, labels, req_ids)
    rows = (neg >= 0).nonzero().squeeze(1)
    if rows.numel() == 0:
        # A zero that still belongs to the graph, so backward() and accumulation work on any batch.
        return (z_doc.float().sum() + z_req.float().sum()) * 0.0
    z_d = z_doc[rows].float()
    s_pos = (z_d * z_req[rows].float()).sum(1) / tau
    s_neg = (z_d * z_req[neg[rows]].float()).sum(1) / tau
    # -log(e^a / (e^a + e^b)) = softplus(b - a), stable for small tau.
    return F.softplus(s_neg - s_pos).mean()


def _codes(req_ids) -> np.ndarray:
    """Integer codes for any id type (ints, strings), so equality can run on tensors."""
    if isinstance(req_ids, torch.Tensor):
        req_ids = req_ids.detach().cpu().numpy()
    return np.unique(np.asarray(req_ids), return_inverse=True)[1].reshape(-1)
