"""Save a trained graph model, load it, and run it on a later graph.

    <dir>/star_graph_model.json   GNNConfig, GraphTrainConfig, GraphConfig, edge types, tasks, node input specs,
                                  text versions used, metrics (training and evaluation), sha256 of weights.pt
    <dir>/weights.pt              model + decoder state dicts, node ids and categorical vocabularies
                                  (torch.save of tensors and plain lists; loaded with weights_only=True)

A later graph (new members, jobs, skills, attribute values) reuses the model through `adapt`: each node gets its
learned ID row by external id (a node the model never saw gets the zero row: no ID signal, only its text,
categorical features and neighbours) and categorical values are recoded into the training vocabulary (an unseen
value becomes 0, "missing"). The text features must come from the same text version: `graph_config` pins it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from star.errors import StarError
from star.graph.aligner import Aligner
from star.graph.config import GraphConfig
from star.graph.inputs import positions
from star.graph.model import GNNConfig, HeteroGNN, LinkDecoder, NodeSpec, input_specs
from star.graph.train import GraphTrainConfig

__all__ = ["GraphCheckpoint", "GraphModelError", "adapt", "graph_config", "load", "save"]

INFO = "star_graph_model.json"
WEIGHTS = "weights.pt"


class GraphModelError(StarError):
    """A graph model directory is missing, incomplete or does not fit the graph it is run on."""


@dataclass(kw_only=True)
class GraphCheckpoint:
    path: Path
    model: HeteroGNN
    decoder: LinkDecoder
    model_cfg: GNNConfig
    info: dict
    node_ids: dict[str, np.ndarray]
    vocab: dict[str, dict[str, list[str]]]
    aligner: Aligner | None = None  # BC-Aligner maps into the previous vintage (info["align"] says which)

    @property
    def sha256(self) -> str:
        return self.info["weights_sha256"]

    @property
    def tasks(self) -> list[tuple[str, str, str]]:
        return [tuple(t) for t in self.info["tasks"]]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save(out_dir: Path, result, mg, model_cfg: GNNConfig, train_cfg: GraphTrainConfig, *,
         evaluation: dict | None = None) -> Path:
    """Write `result` (a GraphTrainResult trained on `mg`) to out_dir; returns out_dir. The files are written into a
    temp dir beside it and renamed into place (a new out_dir whole; into an existing one weights first, the info
    file last), so a job killed while saving leaves no half-written model that `load` would take."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=out_dir.parent) as tmp:
        _write(Path(tmp), result, mg, model_cfg, train_cfg, evaluation)
        if not out_dir.exists():
            os.replace(tmp, out_dir)
            Path(tmp).mkdir()  # for TemporaryDirectory's cleanup
            mask = os.umask(0)
            os.umask(mask)
            out_dir.chmod(0o777 & ~mask)  # as mkdir would (mkdtemp makes it 0700)
        else:
            for name in (WEIGHTS, INFO):
                os.replace(Path(tmp) / name, out_dir / name)
    return out_dir


def _write(out_dir: Path, result, mg, model_cfg: GNNConfig, train_cfg: GraphTrainConfig, evaluation) -> None:
    weights = out_dir / WEIGHTS
    torch.save({"model": result.model.state_dict(), "decoder": result.decoder.state_dict(),
                "node_ids": {nt: ids.tolist() for nt, ids in mg.node_ids.items()},
                "vocab": mg.categorical_vocab,
                **({"aligner": result.aligner.state_dict()} if getattr(result, "aligner", None) else {})}, weights)
    specs = input_specs(mg)
    info = {
        "model": model_cfg.to_dict(), "train": train_cfg.to_dict(), "graph": mg.config.to_dict(),
        "cutoff": mg.cutoff.isoformat(), "etypes": [list(e) for e in mg.graph.canonical_etypes],
        "tasks": [list(t) for t in result.tasks], "text_versions": dict(mg.text_versions),
        "specs": {nt: {"num_nodes": s.num_nodes, "text_dim": s.text_dim, "cat_cards": list(s.cat_cards)}
                  for nt, s in specs.items()},
        "metrics": result.metrics, "evaluation": evaluation, "weights_sha256": _sha256(weights),
        "align": getattr(result, "align", None),
    }
    (out_dir / INFO).write_text(json.dumps(info, indent=1, default=str))


def load(model_dir: Path) -> GraphCheckpoint:
    """The model and decoder of a directory written by `save`, in eval mode, on the training graph's node ids."""
    model_dir = Path(model_dir)
    missing = [name for name in (INFO, WEIGHTS) if not (model_dir / name).exists()]
    if missing:
        raise GraphModelError(f"{model_dir} is not a graph model directory (missing {', '.join(missing)}); "
                              "pass the `model` directory that `star graph train` printed")
    info = json.loads((model_dir / INFO).read_text())
    if _sha256(model_dir / WEIGHTS) != info["weights_sha256"]:
        raise GraphModelError(f"{model_dir / WEIGHTS} does not match the checksum in {INFO}: the file was changed "
                              "or half-copied; copy the whole directory again or retrain")
    state = torch.load(model_dir / WEIGHTS, weights_only=True)
    model_cfg = GNNConfig.from_dict(info["model"])
    specs = {nt: NodeSpec(num_nodes=s["num_nodes"], text_dim=s["text_dim"], cat_cards=tuple(s["cat_cards"]))
             for nt, s in info["specs"].items()}
    etypes = [tuple(e) for e in info["etypes"]]
    tasks = [tuple(t) for t in info["tasks"]]
    weights = {tuple(k.split(":")): v for k, v in (info["train"].get("task_weights") or {}).items()}
    model = HeteroGNN(model_cfg, specs, etypes)
    decoder = LinkDecoder(model_cfg, tasks, weights)
    model.load_state_dict(state["model"])
    decoder.load_state_dict(state["decoder"])
    model.eval()
    decoder.eval()
    aligner = None
    if info.get("align"):
        aligner = Aligner(model_cfg.out_dim, {nt: a["to_dim"] for nt, a in info["align"].items()})
        aligner.load_state_dict(state["aligner"])
        aligner.eval()
    node_ids = {nt: np.asarray(ids, dtype=np.int64 if nt in ("member", "job") else object)
                for nt, ids in state["node_ids"].items()}
    return GraphCheckpoint(path=model_dir, model=model, decoder=decoder, model_cfg=model_cfg, info=info,
                           node_ids=node_ids, vocab=state["vocab"], aligner=aligner)


def graph_config(ckpt: GraphCheckpoint, cutoff: pd.Timestamp) -> GraphConfig:
    """The GraphConfig that rebuilds the model's graph at another cutoff: its relations, its text versions."""
    forward = [e for e in ckpt.info["etypes"] if not e[1].startswith("rev_")]
    g = ckpt.info["graph"]
    return GraphConfig(
        cutoff=cutoff,
        interaction_relations=tuple(sorted({r for s, r, d in forward if {s, d} == {"member", "job"}})),
        attribute_relations=tuple(sorted({r for s, r, d in forward if {s, d} != {"member", "job"}})),
        edge_types=tuple(sorted(tuple(e) for e in forward)),
        text_version=dict(ckpt.info["text_versions"]), use_text=g["use_text"],
        use_categorical=g["use_categorical"], use_ids=g["use_ids"], add_reverse=g["add_reverse"])


def _recode(codes: torch.Tensor, new_vocab: dict[str, list[str]], old_vocab: dict[str, list[str]]) -> torch.Tensor:
    """Codes of `new_vocab` (columns in its order) -> codes of `old_vocab` (its columns); unknown -> 0."""
    out = torch.zeros(len(codes), len(old_vocab), dtype=torch.int64)
    new_columns = list(new_vocab)
    for j, (column, values) in enumerate(old_vocab.items()):
        if column not in new_vocab:
            continue
        index = {v: i + 1 for i, v in enumerate(values)}
        table = torch.tensor([0] + [index.get(v, 0) for v in new_vocab[column]], dtype=torch.int64)
        out[:, j] = table[codes[:, new_columns.index(column)]]
    return out


def adapt(ckpt: GraphCheckpoint, mg) -> tuple[HeteroGNN, dict]:
    """(model, features) for running the checkpoint on `mg`, a graph built with `graph_config(ckpt, ...)`."""
    etypes = {tuple(e) for e in ckpt.info["etypes"]}
    extra = sorted(set(mg.graph.canonical_etypes) - etypes)
    if extra:
        raise GraphModelError(f"the graph has edge types {extra} the model was not trained on; build it with "
                              "star.graph.checkpoint.graph_config(checkpoint, cutoff)")
    for nt, spec in ckpt.info["specs"].items():
        have = int(mg.features.get(nt, {}).get("text", torch.zeros(0, 0)).shape[1]) if nt in mg.features else 0
        if spec["text_dim"] and ckpt.model_cfg.use_text and have != spec["text_dim"]:
            raise GraphModelError(f"{nt} text features are {have}-d but the model was trained on "
                                  f"{spec['text_dim']}-d (text versions {ckpt.info['text_versions']}); build the "
                                  "graph with graph_config(checkpoint, cutoff)")
    model = copy.deepcopy(ckpt.model)  # the checkpoint stays on its training graph's ids
    features = {nt: dict(f) for nt, f in mg.features.items()}
    for nt, emb in model.input.ids.items():
        new_ids = mg.node_ids[nt]
        old_ids = ckpt.node_ids[nt]
        pos, found = positions(old_ids, new_ids) if len(old_ids) else (np.zeros(len(new_ids), int),
                                                                       np.zeros(len(new_ids), bool))
        weight = torch.zeros(len(new_ids), emb.embedding_dim)
        weight[torch.from_numpy(np.nonzero(found)[0])] = emb.weight.data[torch.from_numpy(pos[found])]
        model.input.ids[nt] = torch.nn.Embedding.from_pretrained(weight, freeze=True)
    for nt, old_vocab in ckpt.vocab.items():
        if "categorical" in features.get(nt, {}):
            features[nt]["categorical"] = _recode(features[nt]["categorical"], mg.categorical_vocab.get(nt, {}),
                                                  old_vocab)
    return model, features
