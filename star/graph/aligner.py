"""The BC-Aligner model (Hu et al., KDD 2022): a linear map per entity type from the new graph model's output into
the previous vintage's space, trained with the model, and its loss through every earlier stored map.

    AlignTarget    what one entity type aligns to: vintage to_version and earlier ones reachable through stored maps
                   (C, c fixed), with their embeddings z_j of the new graph's nodes (built by star.graph.align)
    Aligner        W z + b per entity type; refit() = ridge fit onto z_{k-1}; loss() = sum over entity types and
                   target vintages of mean_batch | C_{k-1 -> j}(W z_k + b) - z_j |^2
    cosine_report  mean cosine of the aligned embeddings to every target vintage

Torch only: no SQL, no Feast (the job that finds the targets and stores the trained map is star/graph/align.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from star.common import ridge_solve

__all__ = ["AlignTarget", "Aligner", "cosine_report"]


@dataclass(kw_only=True)
class AlignTarget:
    """What one entity type's output is aligned to: vintage `to_version` and the earlier ones reachable from it."""

    family: str
    to_version: int
    to_dim: int
    # per target vintage j: (j, C (d_j, d_{k-1}) or None for j = to_version, c (d_j,) or None, z_j (n, d_j),
    # mask (n,) bool = the node has a z_j); rows in the new graph's node order
    steps: list[tuple[int, torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor]] = field(
        default_factory=list)

    def describe(self) -> dict:
        return {"family": self.family, "to_version": self.to_version, "to_dim": self.to_dim,
                "through": [j for j, *_ in self.steps], "nodes": [int(m.sum()) for *_, m in self.steps]}


class Aligner(nn.Module):
    """W z + b per entity type: the new model's output in the previous vintage's space."""

    def __init__(self, out_dim: int, to_dims: dict[str, int]):
        super().__init__()
        self.maps = nn.ModuleDict({nt: nn.Linear(out_dim, d) for nt, d in to_dims.items()})

    @torch.no_grad()
    def refit(self, z: dict[str, torch.Tensor], targets: dict[str, AlignTarget], ridge: float = 1e-3) -> None:
        """Set W, b to the ridge least-squares map of whole-graph embeddings z onto the first target vintage:
        gradient steps alone move a freshly initialised map too slowly; training then refines it (and the model)
        through every earlier map."""
        for nt, t in targets.items():
            _, _, _, zj, mask = t.steps[0]
            if int(mask.sum()) < 2:
                continue
            w, b = ridge_solve(z[nt][mask].double().numpy(), zj[mask].double().numpy(), ridge, bias=True)
            self.maps[nt].weight.copy_(torch.from_numpy(w).float())
            self.maps[nt].bias.copy_(torch.from_numpy(b).float())

    def loss(self, z: dict[str, torch.Tensor], nids: dict[str, torch.Tensor],
             targets: dict[str, AlignTarget]) -> torch.Tensor | None:
        """Sum over entity types and target vintages of the mean squared L2 error of the batch's nodes."""
        total = None
        for nt, t in targets.items():
            if nt not in z or not len(z[nt]):
                continue
            mapped = self.maps[nt](z[nt])
            idx = nids[nt].long()
            for _, c, cb, zj, mask in t.steps:
                rows = mask[idx]
                if not rows.any():
                    continue
                pred = mapped[rows] if c is None else mapped[rows] @ c.T + cb
                term = (pred - zj[idx[rows]]).pow(2).sum(dim=1).mean()
                total = term if total is None else total + term
        return total


@torch.no_grad()
def cosine_report(aligner: Aligner, z: dict[str, torch.Tensor], targets: dict[str, AlignTarget]) -> dict:
    """Mean cosine of the aligned whole-graph embeddings to every target vintage: {family: {"v<j>": cos}}."""
    out = {}
    for nt, t in targets.items():
        mapped = aligner.maps[nt](z[nt])
        row = {}
        for j, c, cb, zj, mask in t.steps:
            pred = mapped[mask] if c is None else mapped[mask] @ c.T + cb
            row[f"v{j}"] = round(float(nn.functional.cosine_similarity(pred, zj[mask], dim=1).mean()), 6)
        out[t.family] = row
    return out
