"""Zero-shot architecture search over small feature adaptors (for EAR).

An adaptor is a residual bottleneck MLP on encoder features,
``x + W_out relu(... relu(W_in x))``, with the output layer zero-initialised so
that a new adaptor starts as the identity. Candidates differ in hidden widths
and depth; those over a parameter budget are excluded, the rest are ranked by
a training-free proxy and the best is trained.

Proxy: NASWOT (Mellor et al., "Neural Architecture Search without Training",
ICML 2021): for a mini-batch, each input's binary code of which ReLUs are
active; K[i, j] = number of units on which inputs i and j agree; score =
log|det K|. It needs one forward pass, no labels and no gradient, was designed
for ReLU networks (which these adaptors are), and is unaffected by the
zero-initialised output layer (which would blind gradient proxies such as
grad-norm or synflow to everything before it). Its known bias towards wider
networks is why the budget matters; ``kendall_tau`` measures how well it ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class Candidate:
    widths: tuple[int, ...]

    @property
    def name(self) -> str:
        return "mlp-" + "x".join(str(w) for w in self.widths)

    def num_parameters(self, dim: int) -> int:
        """Closed form: the Linear layers in, between and out (weights and biases)."""
        sizes = (dim, *self.widths, dim)
        return sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))

    def build(self, dim: int, seed: int) -> Adaptor:
        """The adaptor with weights drawn from ``seed`` (the global generator is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return Adaptor(dim, self.widths)


class Adaptor(nn.Module):
    """Residual bottleneck MLP on features; the identity at initialisation."""

    def __init__(self, dim: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        sizes = (dim, *widths)
        for a, b in zip(sizes, sizes[1:], strict=False):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(widths[-1], dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.out(self.body(x))


def search_space(
    widths: tuple[int, ...] = (32, 64, 128, 256), depths: tuple[int, ...] = (1, 2)
) -> list[Candidate]:
    return [Candidate((w,) * d) for d in depths for w in widths]


def proxy_batch_size(candidates: list[Candidate], wanted: int) -> int:
    """At most as many inputs as the smallest candidate has ReLUs.

    NASWOT's kernel is a sum of two Gram matrices of ``units`` columns, so its rank is
    at most 2 x units: with more inputs than that its determinant is zero for any
    data and the score is minus infinity, which ranks nothing.
    """
    return max(2, min(wanted, min(sum(c.widths) for c in candidates)))


@torch.no_grad()
def naswot_score(model: Adaptor, inputs: torch.Tensor) -> float:
    """log|det K| of the ReLU-code agreement kernel of ``inputs`` (Mellor et al. 2021)."""
    codes = []
    x = inputs.float()
    for layer in model.body:
        x = layer(x)
        if isinstance(layer, nn.ReLU):
            codes.append((x > 0).double())
    c = torch.cat(codes, dim=1)
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else float("-inf")


def rank_candidates(
    candidates: list[Candidate], inputs: torch.Tensor, budget: int, seed: int
) -> list[dict]:
    """Every candidate with its size, whether it fits ``budget`` and its proxy score.

    Candidates over the budget are scored too (for the record and for measuring the
    proxy's ranking) but sorted after every fitting one. Sorted best first: by
    score, ties broken by fewer parameters, then by name, so the choice is
    deterministic. ``inputs`` should have at most ``proxy_batch_size`` rows.
    """
    dim = inputs.shape[1]
    rows = []
    for i, cand in enumerate(candidates):
        params = cand.num_parameters(dim)
        fits = params <= budget
        score = naswot_score(cand.build(dim, seed + i), inputs)
        rows.append(
            {
                "name": cand.name,
                "widths": list(cand.widths),
                "parameters": params,
                "within_budget": fits,
                "proxy": score,
                "seed": seed + i,
            }
        )
    return sorted(
        rows,
        key=lambda r: (not r["within_budget"], -r["proxy"], r["parameters"], r["name"]),
    )


def kendall_tau(x: list[float] | np.ndarray, y: list[float] | np.ndarray) -> float:
    """Kendall's tau-b of two score lists (ties in either list handled as in tau-b)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("Kendall's tau needs two equally long lists of at least 2 scores")
    i, j = np.triu_indices(len(x), k=1)
    # comparisons, not differences: two -inf scores (NASWOT's singular kernels) tie
    dx = (x[i] > x[j]).astype(float) - (x[i] < x[j])
    dy = (y[i] > y[j]).astype(float) - (y[i] < y[j])
    concordant_minus_discordant = float((dx * dy).sum())
    denom = np.sqrt(float((dx != 0).sum()) * float((dy != 0).sum()))
    return concordant_minus_discordant / denom if denom > 0 else 0.0
