"""Seed batching: S >= 1 independent training seeds in one model, each getting exactly the bits
it gets alone.

Every model holds S copies of its weights, one per training seed, stacked along a leading seed
dimension: a weight of shape (S, out, in). Every tensor that flows through a model carries that
dimension first, (S, B, ...), and each seed's slice only ever meets its own weights (batched
matrix products), so S seeds train as one model at little more than the cost of one. S = 1 is
the plain, single-seed model. Seed k's weights are drawn from its own generator
(`init_seeds[k]`) in the same order whatever S is, so seed k of a batched model starts from
exactly the weights it gets alone. An input without the seed dimension (an evaluation batch, a
grid of codes) is shared by every seed.

Training: every loss is computed per seed, shape (S,), and the live seeds' losses are summed for
one backward pass (`masked_step`): the seeds share no weights, so each gets exactly its own
gradient. SGD's momentum is elementwise, so each seed's optimizer state is its own slice of the
state. A seed whose loss stops being finite is masked out from that step on: its loss leaves the
sum and its gradients are zeroed, while the other seeds go on.

Mixed precision (Accelerate's bf16, i.e. autocast): `SeedLinear` runs its GEMMs in bf16 on a
bf16 copy of its weights, cast once per change of the fp32 master weights; the gradients, the
optimizer and its state stay fp32 (see `SeedLinear.cast_weights`). On a CPU a bf16 pack still
gives each seed exactly the bits it gets alone (tests/test_precision.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from aae_core import parallel

if TYPE_CHECKING:
    from aae_core.training import StepContext


class _SeedGemm(torch.autograd.Function):
    """(S, B, in) -> (S, B, out): x[k] @ w[k]^T + b[k] for every seed k.

    (w, b) are what the products read, (weight, bias) the parameters that receive the
    gradients: the same tensors at full precision, or under autocast the parameters'
    low-precision copy (`SeedLinear.cast_weights`), so that the GEMMs run in bf16 on weights
    cast once per optimizer step instead of on every use. A low-precision gradient is cast to
    its parameter's dtype (fp32) by autograd, which casts every gradient to its input's dtype:
    the optimizer and its state see fp32 only.

    On a CPU, one plain GEMM per seed, written into (S, ...) buffers: MKL's plain GEMM (what
    nn.Linear calls) runs about 1.3x faster than its batched one at the paper's sizes
    (tests/benchmarks/test_bench_seeds.py measures the training loop), and a GEMM per seed
    gives every seed exactly the bits it gets alone. Elsewhere one batched kernel (bmm)."""

    @staticmethod
    def forward(ctx, x, weight, bias, w, b):
        ctx.save_for_backward(x, w)
        if x.device.type != "cpu":
            return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
        out = x.new_empty(x.shape[0], x.shape[1], w.shape[1])
        for k in range(w.shape[0]):
            torch.addmm(b[k], x[k], w[k].t(), out=out[k])
        return out

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        need_x, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_bias = grad.sum(1) if need_bias else None
        if x.device.type != "cpu":
            return (torch.bmm(grad, w) if need_x else None,
                    torch.bmm(grad.transpose(1, 2), x) if need_weight else None, grad_bias, None, None)
        grad_x = x.new_empty(x.shape) if need_x else None
        grad_weight = torch.empty_like(w) if need_weight else None
        for k in range(w.shape[0]):  # seed by seed, while its slices are in cache
            if need_x:
                torch.mm(grad[k], w[k], out=grad_x[k])
            if need_weight:
                torch.mm(grad[k].t(), x[k], out=grad_weight[k])
        return grad_x, grad_weight, grad_bias, None, None


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast runs matrix products in on `device` (bf16 under Accelerate's
    mixed_precision="bf16"), or None when autocast is off there."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return None


def seedwise(fn, *tensors: torch.Tensor) -> torch.Tensor:
    """fn over (S, ...) tensors, on a CPU one seed's slices at a time.

    Vectorised exp, log and sigmoid round the last bit differently in a tensor's scalar tail
    than in its vector body, so in one stacked call a slice's bits would depend on where it
    sits (e.g. 2 x 100 logits: seed 0's last 8 are in the body, alone they are the tail).
    Seed by seed, every slice gets exactly the bits it gets alone. On a GPU, one call."""
    if tensors[0].device.type != "cpu" or tensors[0].shape[0] == 1:
        return fn(*tensors)
    return torch.stack([fn(*parts) for parts in zip(*(t.unbind(0) for t in tensors), strict=True)])


class SeedwiseSigmoid(nn.Module):
    """A sigmoid, seed by seed on a CPU (see `seedwise`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return seedwise(torch.sigmoid, x)


class SeedLinear(nn.Module):
    """S independent linear layers applied to their own slices: (S, B, in) -> (S, B, out).

    Weight (S, out, in), bias (S, out): nn.Linear's layout with a seed dimension in front.
    On an accelerator the S products are one batched kernel (`baddbmm`), which is where
    batching seeds pays; on a CPU they are S plain GEMMs (see `_SeedGemm`).

    Mixed precision: under autocast (bf16) the products run in autocast's dtype on a copy of
    the weights in that dtype, made once after each change of the parameters (an optimizer
    step, a load; see `cast_weights`) and read by every use until the next one; the fp32
    parameters stay the master weights. Without autocast nothing is cast: fp32 runs keep
    every bit of the runs made before mixed precision existed.
    """

    def __init__(self, n_in: int, n_out: int, seeds: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(seeds, n_out, n_in))
        self.bias = nn.Parameter(torch.empty(seeds, n_out))
        self._cast: tuple[tuple, torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = autocast_dtype(x.device)
        if dtype is not None:
            w, b = self.cast_weights(dtype)
            return _SeedGemm.apply(self._with_seeds(x.to(dtype)), self.weight, self.bias, w, b)
        x = self._with_seeds(x)
        if x.device.type == "cpu" and x.dtype == self.weight.dtype:
            return _SeedGemm.apply(x, self.weight, self.bias, self.weight, self.bias)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))

    def _with_seeds(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in), shared by every seed, as (S, B, in) (a view); (S, B, in) as it is."""
        return x.expand(self.weight.shape[0], *x.shape) if x.dim() == 2 else x

    @torch.no_grad()
    def cast_weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The weight and bias in `dtype`, cast again only when the parameters have changed
        since the last cast. Every in-place change (the optimizer's update, `initialise`,
        load_state_dict) bumps a tensor's version counter; a move to another device (or a
        new storage) changes its data pointer. Each cast is a new tensor, never written into
        the old one, which a pending backward pass may still hold."""
        key = (dtype, self.weight.data_ptr(), self.weight._version, self.bias.data_ptr(), self.bias._version)
        if self._cast is None or self._cast[0] != key:
            self._cast = (key, self.weight.to(dtype), self.bias.to(dtype))
        return self._cast[1], self._cast[2]

    def extra_repr(self) -> str:
        seeds, n_out, n_in = self.weight.shape
        return f"in={n_in}, out={n_out}, seeds={seeds}"


def mlp(sizes: list[int], seeds: int, out_activation: nn.Module | None = None) -> nn.Sequential:
    """Seed-batched linear layers with ReLU between them (Appendix A: hidden ReLU layers).
    Weights are drawn by `initialise`."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(SeedLinear(n_in, n_out, seeds))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if out_activation is not None:
        layers.append(out_activation)
    return nn.Sequential(*layers)


INIT_SCHEMES = ("normal", "pytorch")


@torch.no_grad()
def initialise(net: nn.Module, init_seeds: Sequence[int], init_std: float, head_init_std: float = 1.0,
               scheme: str = "normal") -> None:
    """Seed k's weights from generator `init_seeds[k]`, parameter by parameter in registration
    order. "normal": linear weights ~ N(0, init_std^2), biases 0; "pytorch": nn.Linear's
    default, weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming-uniform with
    a = sqrt(5)). Section 7's cluster heads ~ N(0, head_init_std^2) under either.

    # PAPER-GAP: the appendix's initialisation is known to us through third-party readings
    # only (the init_std config field; "pytorch" is the framework default most public code
    # leaves in place); the heads' initialisation is not given at all.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; valid: {', '.join(INIT_SCHEMES)}")
    params = dict(net.named_parameters())
    for k, seed in enumerate(init_seeds):
        gen = torch.Generator().manual_seed(int(seed))
        for name, param in params.items():
            if name == "cluster_heads":
                param[k].copy_(torch.randn(param.shape[1:], generator=gen) * head_init_std)
            elif scheme == "pytorch":
                weight = params[name[: -len("bias")] + "weight"] if name.endswith("bias") else param
                bound = 1 / math.sqrt(weight.shape[-1])  # weight: (S, n_out, n_in)
                param[k].copy_((torch.rand(param.shape[1:], generator=gen) * 2 - 1) * bound)
            elif name.endswith("bias"):
                param[k].zero_()
            else:
                param[k].copy_(torch.randn(param.shape[1:], generator=gen) * init_std)


def per_seed(draw: Callable[[torch.Generator, int], torch.Tensor], generators: list[torch.Generator],
             device) -> torch.Tensor:
    """Stack one draw per seed, each from that seed's own generator: (S, ...)."""
    return torch.stack([draw(gen, k) for k, gen in enumerate(generators)]).to(device)


def masked_step(ctx: StepContext, opt: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
    """One optimizer step on the sum of the live seeds' losses `loss` (S,); returns them, detached.

    A seed whose loss is not finite (on any rank) is marked dead in `ctx.alive` before the
    backward pass: its loss leaves the sum and its gradients are zeroed, so that nothing
    non-finite reaches the live seeds or its own optimizer state. The caller computes `loss`
    (the forward pass) just before: zero_grad touches only the gradients, so it may follow."""
    accelerator = ctx.accelerator
    opt.zero_grad(set_to_none=True)
    loss = loss.float()
    ctx.alive = ctx.alive & parallel.finite_on_every_rank(accelerator, loss, ctx.world)
    accelerator.backward(torch.where(ctx.alive, loss, torch.zeros_like(loss)).sum())
    # On a GPU the mask is applied always (no host sync stalls the queue); on a CPU only once a
    # seed has died (the check is free there, the masking is not).
    if ctx.seeds > 1 and (loss.device.type != "cpu" or not bool(ctx.alive.all())):
        for group in opt.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    dead = ~ctx.alive.view(-1, *[1] * (param.grad.dim() - 1))
                    param.grad.masked_fill_(dead, 0.0)
    opt.step()
    return loss.detach()
