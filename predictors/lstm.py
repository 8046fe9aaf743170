"""The sequence forecaster: an LSTM over the window, with a RUL head and a fault-within-horizon head per mode.

Trained with Adam on a masked loss (censored targets are left out), early stopping on the validation
units, seeded so that the same data and seed give the same weights.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from predictors.base import Estimator, ProgressFn, register
from predictors.prep import Windows

# validation windows the network sees at once (as it did every validation window before there could be millions)
VALID_AT_ONCE = 1 << 13


class _Net(nn.Module):
    def __init__(self, n_in: int, hidden: int, layers: int, n_modes: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_in, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, 1 + n_modes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


@register
class LSTMForecaster(Estimator):
    """Multivariate windows → capped RUL (as a fraction of the cap) and per-mode failure logits."""

    kind = "lstm"
    limits: ClassVar[dict[str, tuple[float, float]]] = {
        "hidden": (1, 1024), "layers": (1, 8), "dropout": (0, 0.9), "epochs": (1, 10_000), "batch": (1, 65_536),
        "lr": (1e-8, 1), "patience": (1, 1000)}

    def __init__(self, *, hidden: int = 48, layers: int = 1, dropout: float = 0.1, epochs: int = 40,
                 batch: int = 256, lr: float = 2e-3, patience: int = 6, **common: Any) -> None:
        super().__init__(**common)
        self.hidden, self.layers, self.dropout = hidden, layers, dropout
        self.epochs, self.batch, self.lr, self.patience = epochs, batch, lr, patience
        self.net_: _Net | None = None
        self.history_: list[dict[str, float]] = []
        self._rul_var = 1.0  # the training RUL targets' variance (as fractions of the cap), set by `_fit`

    def params(self) -> dict[str, Any]:
        return {**super().params(), "hidden": self.hidden, "layers": self.layers, "dropout": self.dropout,
                "epochs": self.epochs, "batch": self.batch, "lr": self.lr, "patience": self.patience}

    def _build(self, n_in: int) -> _Net:
        torch.manual_seed(self.seed)
        return _Net(n_in, self.hidden, self.layers, len(self.modes_), self.dropout)

    def _loss(self, out: torch.Tensor, rul: torch.Tensor, rk: torch.Tensor, lab: torch.Tensor,
              lk: torch.Tensor) -> torch.Tensor:
        """The RUL's squared error over the variance of the training targets (1 - R^2: about 0.1-1, as the failure
        heads' cross-entropy is) plus that cross-entropy. Unscaled, the RUL as a fraction of the cap erred by 0.01-0.05
        against a cross-entropy ten times that: the heads drove training and early stopping, and the RUL underfit
        (C-MAPSS FD001 cross-validated, 3 seeds: CNN 19.65 -> 18.23, LSTM 19.50 -> 17.92; docs/forecasting.md)."""
        return self._loss_of(self._loss_sums(out, rul, rk, lab, lk))

    @staticmethod
    def _loss_sums(out: torch.Tensor, rul: torch.Tensor, rk: torch.Tensor, lab: torch.Tensor,
                   lk: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The loss's sums over some windows (the RUL's squared errors and how many count; the heads' cross-entropy
        and how many count), which add up over chunks of windows."""
        sums = (((out[:, 0] - rul) ** 2 * rk).sum(), rk.sum())
        if lab.shape[1] == 0:
            return sums
        bce = nn.functional.binary_cross_entropy_with_logits(out[:, 1:], lab, reduction="none")
        return (*sums, (bce * lk).sum(), lk.sum())

    def _loss_of(self, sums: tuple[torch.Tensor, ...]) -> torch.Tensor:
        mse = sums[0] / sums[1].clamp(min=1) / self._rul_var
        return mse if len(sums) == 2 else mse + sums[2] / sums[3].clamp(min=1)

    def _targets(self, rul: np.ndarray, rk: np.ndarray, lab: np.ndarray, lk: np.ndarray) -> tuple[torch.Tensor, ...]:
        return (torch.from_numpy((np.nan_to_num(rul) / self.cap).astype(np.float32)),
                torch.from_numpy(rk.astype(np.float32)), torch.from_numpy(lab.astype(np.float32)),
                torch.from_numpy(lk.astype(np.float32)))

    def _valid_loss(self, net: nn.Module, x: np.ndarray | Windows, targets: tuple[torch.Tensor, ...]) -> float:
        """The loss over the validation windows: at once, as it always was, up to VALID_AT_ONCE of them; beyond, its
        sums a chunk at a time (the network's activations over every window at once took gigabytes)."""
        with torch.no_grad():
            return self._summed_loss(net, x, targets)

    def _summed_loss(self, net: nn.Module, x: np.ndarray | Windows, targets: tuple[torch.Tensor, ...]) -> float:
        if len(x) <= VALID_AT_ONCE:
            return float(self._loss(net(torch.from_numpy(np.ascontiguousarray(x[:], dtype=np.float32))), *targets))
        total: list[torch.Tensor] = []
        for i in range(0, len(x), VALID_AT_ONCE):
            out = net(torch.from_numpy(np.ascontiguousarray(x[i:i + VALID_AT_ONCE], dtype=np.float32)))
            sums = [s.double() for s in self._loss_sums(out, *(t[i:i + VALID_AT_ONCE] for t in targets))]
            total = sums if not total else [a + b for a, b in zip(total, sums)]
        return float(self._loss_of(tuple(total)))

    def _fit(self, x: np.ndarray | Windows, rul: np.ndarray, rul_known: np.ndarray, label: np.ndarray,
             label_known: np.ndarray, valid: tuple[Any, ...] | None, progress: ProgressFn | None) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        net = self._build(x.shape[2])
        known = (np.nan_to_num(rul) / self.cap)[rul_known.astype(bool)]
        self._rul_var = max(float(known.var()), 1e-3) if len(known) > 1 else 1.0  # a training choice, not saved
        opt = torch.optim.Adam(net.parameters(), lr=self.lr)
        train = self._targets(rul, rul_known, label, label_known)  # the windows are made a batch at a time
        val = (valid[0], self._targets(*valid[1:])) if valid is not None else None
        best, best_state, stale = float("inf"), None, 0
        self.history_ = []
        for epoch in range(self.epochs):
            net.train()
            order = torch.randperm(len(x), generator=gen)
            total = 0.0
            for i in range(0, len(order), self.batch):
                idx = order[i:i + self.batch]
                opt.zero_grad()
                loss = self._loss(net(torch.from_numpy(np.ascontiguousarray(x[idx.numpy()], dtype=np.float32))),
                                  *(t[idx] for t in train))
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                total += loss.item() * len(idx)
            net.eval()
            with torch.no_grad():
                v = self._valid_loss(net, *val) if val is not None else total / len(order)
            self.history_.append({"epoch": epoch + 1, "train_loss": total / len(order), "valid_loss": v})
            if progress is not None:
                progress(epoch + 1, self.epochs, f"epoch {epoch + 1}: train {total / len(order):.4f}, valid {v:.4f}")
            if v < best - 1e-5:
                best, stale = v, 0
                best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        self.net_ = net.eval()

    def _predict(self, x: np.ndarray | Windows) -> tuple[np.ndarray, np.ndarray]:
        assert self.net_ is not None
        if len(x) == 0:
            return np.empty(0), np.empty((0, len(self.modes_)))
        with torch.no_grad():
            out = torch.cat([self.net_(torch.from_numpy(np.ascontiguousarray(x[i:i + 4096], dtype=np.float32)))
                             for i in range(0, max(len(x), 1), 4096)]).numpy().astype(np.float64)
        return out[:, 0] * self.cap, 1 / (1 + np.exp(-out[:, 1:]))

    def _arrays(self) -> dict[str, np.ndarray]:
        assert self.net_ is not None
        return {k: v.numpy() for k, v in self.net_.state_dict().items()}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        assert self.prep_ is not None and self.prep_.kept is not None
        self.net_ = self._build(len(self.prep_.kept)).eval()
        self.net_.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})


class _SameConv1d(nn.Conv1d):
    """A convolution whose output is as long as its input, for any kernel: padded here as torch pads `padding="same"`
    (the odd one out on the right), which for an even kernel (Li et al.'s 10) made torch print a UserWarning about
    that very copy to users of `twin train` and `twin evaluate`. The same weights, names and results."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = self.dilation[0] * (self.kernel_size[0] - 1)
        return super().forward(nn.functional.pad(x, (total // 2, total - total // 2)))


class _ConvNet(nn.Module):
    """1-D convolutions along the window (Li et al. 2018's deep CNN for RUL: stacked same-length convolutions,
    then a dense layer over the flattened window)."""

    def __init__(self, n_in: int, window: int, channels: int, kernel: int, depth: int, n_modes: int,
                 dropout: float) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        for i in range(depth):
            convs += [_SameConv1d(n_in if i == 0 else channels, channels, kernel), nn.Tanh()]
        convs += [_SameConv1d(channels, 1, 3), nn.Tanh()]
        self.convs = nn.Sequential(*convs)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(window, 100), nn.Tanh(),
                                  nn.Linear(100, 1 + n_modes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(x.transpose(1, 2)))


@register
class CNNForecaster(LSTMForecaster):
    """The same targets, loss and training as the LSTM; a convolutional network over the window."""

    kind = "cnn"
    limits: ClassVar[dict[str, tuple[float, float]]] = {
        "channels": (1, 512), "kernel": (1, 64), "depth": (1, 16)}

    def __init__(self, *, channels: int = 10, kernel: int = 10, depth: int = 4, **rest: Any) -> None:
        rest.setdefault("lr", 1e-3)
        rest.setdefault("epochs", 60)
        rest.setdefault("patience", 10)
        rest.setdefault("batch", 512)
        super().__init__(**rest)
        self.channels, self.kernel, self.depth = channels, kernel, depth

    def params(self) -> dict[str, Any]:
        return {**super().params(), "channels": self.channels, "kernel": self.kernel, "depth": self.depth}

    def _build(self, n_in: int) -> _ConvNet:  # type: ignore[override]
        torch.manual_seed(self.seed)
        return _ConvNet(n_in, self.window, self.channels, self.kernel, self.depth, len(self.modes_), self.dropout)
