"""The text tower: one shared encoder (+ one shared LoRA adapter) for every input kind, and the Hadamard match head.

    text --prompt[kind] + tokenize, cut at max_length[kind]--> overlapping windows of `window` tokens
         --base model (+ LoRA), each window--> pool the tokens each window owns --> mean over the text --> L2 --> z
    z_member, z_job --Hadamard--> Linear/ReLU (head_hidden) --> logit            (paper §3.1)

Training and embedding share this path, so a fine-tune learns on the whole text it will later embed.

Models load only from local directories (`local_files_only=True`); nothing is downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from star.errors import ConfigError, TextInputError, TextModelError, require_at_least
from star.text.chunking import plan_chunks
from star.text.config import TextModelConfig, TrainConfig, is_decoder_dir
from star.text.loading import WEIGHT_PATTERNS, load_base, load_tokenizer, with_adapter

CHECKPOINT_JSON = "star_text_model.json"
HEAD_FILE = "head.safetensors"
ADAPTER_DIR = "adapter"


def resolve_device(device: str = "auto") -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else torch.device(device)


@functools.lru_cache(maxsize=1)  # asked on every forward pass; the CPU does not change
def cpu_has_bf16() -> bool:
    """Native bf16 on this CPU (avx512_bf16 or AMX); without it bf16 autocast is emulated and slower than fp32."""
    if "AMX" in torch.backends.cpu.get_cpu_capability():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


@dataclass
class EncodeResult:
    embeddings: np.ndarray  # float32 (n, d), L2-normalised, in input order
    truncated: int  # texts longer than max_length[kind] (prompt included): their tail past the budget is cut
    seconds: float
    chunks: int = 0  # windows the texts took (a text that fits one window takes one)
    max_chunks: int = 0  # the most windows one text took


@dataclass
class Chunks:
    """Model inputs of a list of texts: one row per window, and which text each window belongs to."""
    ids: list[list[int]]  # token ids of each window, special tokens included
    own: list[list[int]]  # 1 where the window owns the token (special tokens included), else 0
    text: np.ndarray  # the text index of each window
    n_texts: int
    truncated: int

    @property
    def max_per_text(self) -> int:
        return int(np.bincount(self.text, minlength=1).max()) if len(self.text) else 0


class TextEncoder(nn.Module):
    """Tokenizer + base model (+ LoRA adapter when trainable or loaded) + pooling; see the module docstring."""

    def __init__(self, cfg: TextModelConfig, *, adapter_dir: str | None = None, trainable: bool = False):
        super().__init__()
        self.cfg = cfg.resolved()
        self.decoder = is_decoder_dir(self.cfg.model_dir)
        self.tokenizer = load_tokenizer(self.cfg.model_dir, decoder=self.decoder)
        base = load_base(self.cfg.model_dir)
        self._forward_keys = set(inspect.signature(base.forward).parameters)
        self.model = with_adapter(base, self.cfg, adapter_dir=adapter_dir, trainable=trainable)
        self.has_adapter = self.model is not base
        self.adapter_dir = adapter_dir  # with cfg: what rebuilds this encoder elsewhere (a Ray worker)
        self._prefix, self._suffix = _special_tokens(self.tokenizer)
        self._window_frame()  # checks the window leaves room for text

    @property
    def dim(self) -> int:
        return int(self.base_model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def base_model(self) -> nn.Module:
        return self.model.get_base_model() if self.has_adapter else self.model

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def enable_gradient_checkpointing(self) -> None:
        # Non-reentrant checkpointing works with frozen inputs; peft still wants input grads for the reentrant path.
        base = self.base_model
        if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x; the old name warns
            base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.has_adapter:
            self.model.enable_input_require_grads()

    def autocast(self):
        dev = self.device
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=use_bf16(self.cfg.precision, dev))

    def forward(self, texts: list[str], kind: str, *, budget: int | None = None) -> torch.Tensor:
        """(n, d) L2-normalised embeddings, with gradients when the adapter is trainable; `budget` overrides
        max_length[kind] (TrainConfig.max_tokens: a CPU-sized training budget)."""
        self._check(texts, kind)
        chunks = self._tokenize(texts, kind, budget=budget)
        sums, counts = self._embed_chunks(chunks, np.arange(len(chunks.ids)))
        text = torch.as_tensor(chunks.text, device=sums.device)
        total = torch.zeros(chunks.n_texts, sums.shape[1], device=sums.device, dtype=sums.dtype)
        total = total.index_add(0, text, sums)
        weight = torch.zeros(chunks.n_texts, device=sums.device, dtype=sums.dtype).index_add(0, text, counts)
        return F.normalize(total / weight.clamp(min=1e-9).unsqueeze(1), dim=-1)

    def encode(self, texts: list[str], kind: str, *, batch_size: int = 64, progress: bool = False) -> EncodeResult:
        """Inference: no grad, eval mode, batches of similar length (less padding, ~2x faster on CPU)."""
        self._check(texts, kind)
        require_at_least("encode", 1, batch_size=batch_size)
        start = time.perf_counter()
        if not texts:
            return EncodeResult(embeddings=np.zeros((0, self.dim), dtype=np.float32), truncated=0, seconds=0.0)
        chunks = self._tokenize(texts, kind)
        order = np.argsort([-len(ids) for ids in chunks.ids], kind="stable")
        total = np.zeros((len(texts), self.dim), dtype=np.float64)
        weight = np.zeros(len(texts), dtype=np.float64)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                for lo in tqdm(range(0, len(order), batch_size), disable=not progress, desc=f"encode {kind}",
                               unit="batch"):
                    idx = order[lo:lo + batch_size]
                    sums, counts = self._embed_chunks(chunks, idx)
                    np.add.at(total, chunks.text[idx], sums.double().cpu().numpy())
                    np.add.at(weight, chunks.text[idx], counts.double().cpu().numpy())
        finally:
            self.train(was_training)
        out = total / np.maximum(weight, 1e-9)[:, None]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return EncodeResult(embeddings=out.astype(np.float32), truncated=chunks.truncated,
                            seconds=time.perf_counter() - start, chunks=len(chunks.ids),
                            max_chunks=chunks.max_per_text)

    def fingerprint(self) -> dict:
        return {"model_dir": self.cfg.model_dir, "model_checksum": model_checksum(self.cfg.model_dir),
                "adapter_checksum": self.adapter_checksum(), "config": self.cfg.to_dict()}

    def adapter_checksum(self) -> str | None:
        """sha256 over the adapter's tensors (what adapter_model.safetensors holds), None without an adapter.

        Hashing tensors rather than file bytes keeps the checksum equal in memory, after save and after load
        (adapter_config.json embeds the absolute base-model path, which would make equal adapters differ)."""
        if not self.has_adapter:
            return None
        from peft import get_peft_model_state_dict

        digest = hashlib.sha256()
        for name, tensor in sorted(get_peft_model_state_dict(self.model).items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()

    def _check(self, texts: list[str], kind: str) -> None:
        if kind not in self.cfg.prompts:
            raise TextInputError(f"unknown text kind {kind!r}; TextModelConfig.prompts has "
                                 f"{', '.join(sorted(self.cfg.prompts))}")
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
        if bad:
            shown = ", ".join(map(str, bad[:10])) + (f" (+{len(bad) - 10} more)" if len(bad) > 10 else "")
            raise TextInputError(f"{len(bad)} {kind} text(s) empty, whitespace-only or not a string at positions "
                                 f"{shown}; drop or fill those rows before encoding")

    def _tokenize(self, texts: list[str], kind: str, *, budget: int | None = None) -> Chunks:
        """Each text's tokens, cut at max_length[kind], in windows of `window` tokens (star.text.chunking)."""
        prompted = [self.cfg.prompts[kind] + t for t in texts]
        budget = budget or self.cfg.max_length[kind]
        content = self.tokenizer(prompted, add_special_tokens=False, truncation=False, return_attention_mask=False,
                                 return_token_type_ids=False, verbose=False)["input_ids"]
        suffix, width = self._window_frame()
        ids, own, owner = [], [], []
        for i, tokens in enumerate(content):
            tokens = tokens[:budget]
            for c in plan_chunks(len(tokens), width, self.cfg.overlap):
                ids.append(self._prefix + tokens[c.start:c.end] + suffix)
                own.append([1] * len(self._prefix) + [0] * (c.own_start - c.start) + [1] * (c.own_end - c.own_start)
                           + [0] * (c.end - c.own_end) + [1] * len(suffix))
                owner.append(i)
        return Chunks(ids=ids, own=own, text=np.asarray(owner, dtype=np.int64), n_texts=len(texts),
                      truncated=sum(len(x) > budget for x in content))

    def _window_frame(self) -> tuple[list[int], int]:
        """The ids closing each window and how many text tokens fit in one."""
        # E5-Mistral-style embedders summarise the text into a final EOS, but decoder tokenizers mostly add
        # only BOS: close each window with it, so the pooled token is the one the model was trained on.
        eos = self.tokenizer.eos_token_id if self.decoder and self.cfg.pooling != "mean" else None
        suffix = self._suffix + ([eos] if eos is not None and self._suffix[-1:] != [eos] else [])
        width = self.cfg.window - len(self._prefix) - len(suffix)
        if width < 2 * self.cfg.overlap or width < 8:
            raise ConfigError(f"TextModelConfig: window={self.cfg.window} leaves {width} text tokens after special "
                              f"tokens, too few for overlap={self.cfg.overlap}; raise --window or lower --overlap")
        return suffix, width

    def _embed_chunks(self, chunks: Chunks, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """For windows `idx`: the pooled sum over the tokens each owns (d per window) and how many it owns."""
        dev = self.device
        rows = [chunks.ids[i] for i in idx]
        width = max(len(r) for r in rows)
        left = self.tokenizer.padding_side == "left"
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        own = torch.zeros((len(rows), width), dtype=torch.float32)
        for r, i in enumerate(idx):
            cols = slice(width - len(rows[r]), width) if left else slice(0, len(rows[r]))
            ids[r, cols] = torch.as_tensor(rows[r])
            mask[r, cols] = 1
            own[r, cols] = torch.as_tensor(chunks.own[i], dtype=torch.float32)
        mask, own = mask.to(dev), own.to(dev)
        inputs = {"input_ids": ids.to(dev), "attention_mask": mask}
        if self.decoder and "position_ids" in self._forward_keys:
            # Left padding must not shift the real tokens' positions, or a text's vector depends on its batch.
            inputs["position_ids"] = (mask.cumsum(1) - 1).clamp(min=0)
        if "use_cache" in self._forward_keys:
            inputs["use_cache"] = False
        layers = self.cfg.pooling == "cls_layers"
        with self.autocast():
            out = self.model(**inputs, output_hidden_states=layers)
        counts = own.sum(1)
        if self.cfg.pooling == "mean":
            # masked_fill, not a product: a fully masked pad row may hold NaN and NaN * 0 is NaN.
            states = out.last_hidden_state.float().masked_fill(own.unsqueeze(-1) == 0, 0.0)
            return states.sum(1), counts
        # One summary vector per window, weighted by the tokens the window owns.
        return _pool(out, mask, self.cfg.pooling, decoder=self.decoder) * counts.unsqueeze(1), counts


def _special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text ([CLS] / [SEP], <s>, ...), found on a probe text."""
    probe = "star probe"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    for at in range(len(full) - len(plain) + 1):
        if full[at:at + len(plain)] == plain:
            return list(full[:at]), list(full[at + len(plain):])
    return [], []


def _pool(out, mask: torch.Tensor, pooling: str, *, decoder: bool) -> torch.Tensor:
    """One vector per row for last_token / cls_layers pooling (mean pooling is done by the caller)."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = (mask * positions).argmax(1)  # last real token, whichever side the padding is on
    rows = torch.arange(mask.shape[0], device=mask.device)
    if pooling == "last_token":
        return out.last_hidden_state.float()[rows, last]
    # cls_layers: the summary token averaged over the transformer layers (embedding output excluded: its [CLS] is
    # the same for every text). A causal decoder's first token sees nothing else, so decoders use the last one.
    first = mask.argmax(1)
    token = last if decoder else first
    stacked = torch.stack([h.float()[rows, token] for h in out.hidden_states[1:]])
    return stacked.mean(0)


class MatchHead(nn.Module):
    """z_member * z_job (Hadamard) -> [Linear, ReLU] per head_hidden -> Linear -> logit."""

    def __init__(self, *, dim: int, hidden: tuple[int, ...] = (128,)):
        super().__init__()
        self.dim, self.hidden = int(dim), tuple(int(h) for h in hidden)
        layers, width = [], self.dim
        for h in self.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z_member: torch.Tensor, z_job: torch.Tensor) -> torch.Tensor:
        # Entries of a product of unit vectors are ~1/d; scaling by d gives the first layer O(1) inputs.
        return self.net(z_member.float() * z_job.float() * self.dim).squeeze(-1)


def model_checksum(model_dir: str | Path) -> str:
    """Cheap identity of a base model: config.json bytes + names and sizes of the weight files."""
    root = Path(model_dir)
    digest = hashlib.sha256((root / "config.json").read_bytes())
    for path in sorted({p for pattern in WEIGHT_PATTERNS for p in root.glob(pattern)}):
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return digest.hexdigest()


def save_model(out_dir, encoder: TextEncoder, head: MatchHead, model_cfg: TextModelConfig,
               train_cfg: TrainConfig | None, metrics: dict) -> Path:
    """Adapter (out_dir/adapter; none for a frozen base), head weights and one star_text_model.json."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if encoder.has_adapter:
        encoder.model.save_pretrained(str(out / ADAPTER_DIR))
    save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(out / HEAD_FILE))
    doc = {"format": "star-text-model/1", "model_config": model_cfg.resolved().to_dict(),
           "train_config": train_cfg.to_dict() if train_cfg is not None else None, "metrics": metrics,
           "fingerprint": encoder.fingerprint(), "adapter": ADAPTER_DIR if encoder.has_adapter else None,
           "head": {"file": HEAD_FILE, "dim": head.dim, "hidden": list(head.hidden)}}
    tmp = out / (CHECKPOINT_JSON + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=_json_default))
    tmp.replace(out / CHECKPOINT_JSON)
    return out


def load_model(out_dir) -> tuple[TextEncoder, MatchHead, dict]:
    """The encoder (with its adapter, frozen), the head and the checkpoint's json document."""
    from safetensors.torch import load_file

    out = Path(out_dir)
    path = out / CHECKPOINT_JSON
    if not path.is_file():
        raise TextModelError(f"{out} holds no {CHECKPOINT_JSON}; pass a directory written by save_model / train")
    doc = json.loads(path.read_text())
    cfg = TextModelConfig.from_dict(doc["model_config"])
    saved = doc["fingerprint"]["model_checksum"]
    if Path(cfg.model_dir).is_dir() and model_checksum(cfg.model_dir) != saved:
        raise TextModelError(f"the base model at {cfg.model_dir} is not the one {out} was trained on (checksum "
                             "differs); restore that model or retrain")
    encoder = TextEncoder(cfg, adapter_dir=str(out / doc["adapter"]) if doc["adapter"] else None)
    head = MatchHead(dim=doc["head"]["dim"], hidden=tuple(doc["head"]["hidden"]))
    head.load_state_dict(load_file(str(out / doc["head"]["file"])))
    encoder.eval()
    head.eval()
    return encoder, head, doc


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)
