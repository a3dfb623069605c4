"""Quantizer forwards: PACT, LSQ, DoReFa and interval (QIL/EWGS-style), for weights and activations.

Every quantizer follows one recipe (the paper's "unified forward"): map the input to continuous levels
``u`` on its integer grid (clip + normalise), round with the chosen backward (STE or EWGS, see
:mod:`.rounding`), and rescale: ``value = scale * q``. Every quantizer states that grid
(:meth:`Quantizer.grid`), which is what export relies on.

Data-dependent initial values (clips, steps, bounds, and the sign of an activation in ``auto`` mode)
are set from the first batch a quantizer sees and stored in its ``state_dict``.
"""

from __future__ import annotations

import math
import weakref

import torch
from torch import nn

from . import cpu_kernels
from .grid import IntegerGrid, LevelMap, NotDeployable, signed_map, unsigned_map
from .rounding import fake_quant, round_ewgs, scale_grad

_EPS = 1e-8


def _per_channel(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-channel (C,) tensor to broadcast over axis 0 of ``like``; scalars pass through."""
    return t.reshape(-1, *([1] * (like.dim() - 1))) if t.dim() == 1 else t


def _reduce(x: torch.Tensor, per_channel: bool, fn: str) -> torch.Tensor:
    """``abs().max()``/``abs().mean()``/``std()`` per output channel (axis 0) or over the whole tensor."""
    flat = x.reshape(x.shape[0], -1) if per_channel else x.reshape(1, -1)
    if fn == "absmax":
        out = flat.abs().amax(dim=1)
    elif fn == "absmean":
        out = flat.abs().mean(dim=1)
    else:
        out = flat.std(dim=1, unbiased=False)
    return out if per_channel else out[0]


def _abs_quantile(x: torch.Tensor, q: float = 0.999) -> torch.Tensor:
    """A robust activation range from the first batch (torch.quantile is limited in size: subsample)."""
    flat = x.detach().abs().flatten().float()
    if flat.numel() > 1_000_000:
        flat = flat[torch.randperm(flat.numel(), device=flat.device)[:1_000_000]]
    return torch.quantile(flat, q).clamp_min(1e-3)


class Quantizer(nn.Module):
    """Base class: lazy first-batch initialisation, the rounding backward, and the grid contract.

    Args:
        bits: 1-8.
        backward: ``ste`` or ``ewgs``.
        delta_init: initial EWGS delta (ignored for ``ste``, whose delta stays 0).
    """

    is_weight = False
    fx_leaf = True  # one call in fx graphs (first-batch initialisation branches on tensor state)
    keeps_sign = True  # the grid holds 0 and rounding is monotone: values >= 0 stay >= 0
    delta: torch.Tensor
    initialized: torch.Tensor

    def __init__(self, bits: int, backward: str = "ste", delta_init: float = 1e-3) -> None:
        super().__init__()
        self.bits = bits
        self.backward_kind = backward
        self.register_buffer("delta", torch.tensor(float(delta_init) if backward == "ewgs" else 0.0))
        self.register_buffer("initialized", torch.tensor(False))
        self.enabled = True  # False: identity (the student with quantizers off)
        self.capture_levels = False  # True while the EWGS Hessian estimate needs the rounded levels
        self.captured: torch.Tensor | None = None
        self._last_output: tuple[weakref.ref[torch.Tensor], int] | None = None  # (output, its version)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        last = self._last_output
        if last is not None and last[0]() is x and x._version == last[1]:
            # Its own output, unchanged, handed back: a residual-stream quantizer that the layers reading
            # the stream share. The values are on the grid already; a second pass would change none, but
            # its backward would stop the gradient of values on the grid's end points.
            return x
        if not bool(self.initialized):
            with torch.no_grad():
                self.initialize(x.detach())
            self.initialized.fill_(True)
        out = self.quantize(x)
        # (inference-mode tensors keep no version counter: no shortcut there; the second pass changes nothing)
        self._last_output = None if out.is_inference() else (weakref.ref(out), out._version)
        return out

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_last_output"] = None  # a weak reference cannot be pickled (nor would it mean anything after)
        return state

    def _round(self, u: torch.Tensor) -> torch.Tensor:
        k = round_ewgs(u, self.delta)
        if self.capture_levels:
            self.captured = k
        return k

    def _apply_map(self, q_continuous: torch.Tensor, level_map: LevelMap) -> torch.Tensor:
        """Continuous q-units -> rounded integer q (as floats)."""
        return level_map.to_q(self._round(level_map.to_levels(q_continuous)))

    def _scaled(self, x: torch.Tensor, scale: torch.Tensor, level_map: LevelMap) -> torch.Tensor:
        """``scale * q(x / scale)``: one fused node (on CPU the one-pass kernels, where they apply), or op by op.

        The EWGS Hessian estimate needs the rounded levels as graph nodes, and second derivatives.
        """
        if self.capture_levels:
            return self._apply_map(x / scale, level_map) * scale
        m = level_map
        ewgs = self.backward_kind == "ewgs"
        if m.a == 1 and m.c == 0 and cpu_kernels.applies(x, scale, m.kmin, m.kmax):  # one pass each way
            return cpu_kernels.fused_fake_quant(x, scale, m.kmin, m.kmax, self.delta if ewgs else None)
        return fake_quant(x, scale, self.delta, ewgs, m.a, m.c, m.kmin, m.kmax)

    def absorbs_relu(self, x: torch.Tensor) -> bool:
        """Whether ``self(x)`` is ``self(relu(x))``, forward and backward, bit for bit, for this ``x``.

        Only activation quantizers on an unsigned grid whose call takes the fused kernel (:mod:`.relu_fold`).
        """
        return False

    def _init_parameters(self) -> None:
        """Create the family's learned parameters; the base classes call it at the end of ``__init__``."""

    def initialize(self, x: torch.Tensor) -> None:
        """Set data-dependent parameters from the first input (no-op by default)."""

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """The fake-quantized ``x``."""
        raise NotImplementedError

    def level_map(self) -> LevelMap:
        """The integer grid's levels."""
        raise NotImplementedError

    def grid(self, weight: torch.Tensor | None = None) -> IntegerGrid:
        """The integer grid of this quantizer's outputs (weights need the float weight tensor).

        Raises:
            NotDeployable: when the outputs are not ``scale * q`` with zero-point 0.
        """
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"bits={self.bits}, backward={self.backward_kind}"


class _ActQuantizer(Quantizer):
    """Activation quantizers: unsigned (post-ReLU) or signed, decided up front or from the first batch."""

    signed_mode = "narrow"
    signed: torch.Tensor

    def __init__(self, bits: int, backward: str = "ste", delta_init: float = 1e-3, *, sign: str = "auto",
                 deployable: bool = True) -> None:
        """``deployable``: grids INT8 can hold (8-bit unsigned as [0, 127]; interval: lower bound fixed at 0)."""
        super().__init__(bits, backward, delta_init)
        self.auto_sign = sign == "auto"
        self.deployable = deployable
        self.int8_safe = deployable
        self.register_buffer("signed", torch.tensor(sign == "signed"))
        self._init_parameters()

    def initialize(self, x: torch.Tensor) -> None:
        if self.auto_sign:
            self.signed.fill_(bool(x.min() < 0))

    def level_map(self) -> LevelMap:
        if bool(self.signed):
            return signed_map(self.bits, self.signed_mode)
        return unsigned_map(self.bits, int8_safe=self.int8_safe)

    def _scaled_when_unsigned(self) -> bool:
        """Whether an unsigned ``quantize`` is ``_scaled`` (``scale * q`` with a scalar scale)."""
        return True

    def absorbs_relu(self, x: torch.Tensor) -> bool:
        # The fused kernel on an unsigned grid clamps x / scale at level 0 (that is ReLU's forward) and its
        # backward passes the gradient only where 0 < x < top, strictly, which is ReLU's mask (x > 0) times the
        # quantizer's own. Only there is the saving worth a graph rewrite (the kernels run on CPU only), so the
        # eager paths (CUDA, the EWGS Hessian estimate's op-by-op levels) keep the ReLU.
        if x.device.type != "cpu" or not self.enabled or self.capture_levels or not bool(self.initialized):
            return False  # (checked first on CUDA: reading a buffer there would wait for the device)
        if bool(self.signed) or not self._scaled_when_unsigned():
            return False
        last = self._last_output
        if last is not None and last[0]() is x:  # its own output handed back passes unchanged (forward)
            return False
        m = self.level_map()
        return m.a == 1 and m.c == 0 and m.kmin == 0 and cpu_kernels.applies(x, x.new_ones(()), m.kmin, m.kmax)


class PACTActivation(_ActQuantizer):
    """PACT (Choi et al. 2018): clip to a learned ``alpha``, quantize uniformly in ``[0, alpha]``.

    The gradient of ``alpha`` is 1 where the input is clipped; inside the range it carries the
    quantization-error term that autograd gives for ``alpha/qmax * round(x*qmax/alpha)``.
    """

    def _init_parameters(self) -> None:
        self.alpha = nn.Parameter(torch.tensor(6.0))

    def initialize(self, x: torch.Tensor) -> None:
        super().initialize(x)
        self.alpha.copy_(_abs_quantile(x))

    def _scale(self) -> torch.Tensor:
        return self.alpha.abs().clamp_min(_EPS) / self.level_map().qmax

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        return self._scaled(x, self._scale(), self.level_map())

    def grid(self, weight: torch.Tensor | None = None) -> IntegerGrid:
        m = self.level_map()
        return IntegerGrid(self._scale().detach(), m.qmin, m.qmax)


class LSQActivation(_ActQuantizer):
    """LSQ (Esser et al. 2020) for activations: a learned step with gradient scale 1/sqrt(N*Qp)."""

    signed_mode = "full"

    def _init_parameters(self) -> None:
        self.step = nn.Parameter(torch.tensor(1.0))

    def initialize(self, x: torch.Tensor) -> None:
        super().initialize(x)
        qp = max(self.level_map().qmax, 1)
        self.step.copy_((2 * x.abs().mean() / math.sqrt(qp)).clamp_min(1e-4))

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        m = self.level_map()
        features = x[0].numel() if x.dim() > 1 else x.numel()
        step = scale_grad(self.step.abs().clamp_min(_EPS), 1.0 / math.sqrt(features * max(m.qmax, 1)))
        return self._scaled(x, step, m)

    def grid(self, weight: torch.Tensor | None = None) -> IntegerGrid:
        m = self.level_map()
        return IntegerGrid(self.step.detach().abs().clamp_min(_EPS), m.qmin, m.qmax)


class DoReFaActivation(_ActQuantizer):
    """DoReFa (Zhou et al. 2016) activations: clip to ``[0, 1]`` (``[-1, 1]`` signed), quantize uniformly."""

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        m = self.level_map()
        return self._scaled(x, x.new_tensor(1.0 / m.qmax), m)

    def grid(self, weight: torch.Tensor | None = None) -> IntegerGrid:
        m = self.level_map()
        return IntegerGrid(torch.tensor(1.0 / m.qmax), m.qmin, m.qmax)


class IntervalActivation(_ActQuantizer):
    """A learned interval ``[lower, upper]`` (QIL/EWGS): normalise to [0, 1], quantize, map back.

    With ``deployable`` the lower bound is fixed at 0 (unsigned) or the range is ``[-upper, upper]``
    (signed), so outputs are ``scale * q``. Without it, the lower bound is learned (the EWGS paper's form),
    which is an affine grid that symmetric INT8 cannot hold.
    """

    def _init_parameters(self) -> None:
        self.upper = nn.Parameter(torch.tensor(1.0))
        self.lower = nn.Parameter(torch.tensor(0.0), requires_grad=not self.deployable)

    def initialize(self, x: torch.Tensor) -> None:
        super().initialize(x)
        self.upper.copy_(_abs_quantile(x))
        if not self.deployable and bool(self.signed):
            self.lower.copy_(-_abs_quantile(x.clamp_max(0)))

    def _symmetric(self) -> bool:
        return self.deployable and bool(self.signed)

    def _scaled_when_unsigned(self) -> bool:
        return self.deployable  # a learned lower bound is an affine grid, quantized op by op

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        m = self.level_map()
        if self._symmetric():
            return self._scaled(x, self.upper.abs().clamp_min(_EPS) / m.qmax, m)
        if self.deployable:  # unsigned, lower bound fixed at 0: the grid is upper/qmax * [0, qmax]
            return self._scaled(x, self.upper.clamp_min(_EPS) / m.qmax, m)
        width = (self.upper - self.lower).clamp_min(_EPS)
        normalised = ((x - self.lower) / width).clamp(0, 1)
        levels = self._round(normalised * (m.levels - 1))
        return self.lower + levels * (width / (m.levels - 1))

    def grid(self, weight: torch.Tensor | None = None) -> IntegerGrid:
        m = self.level_map()
        if self._symmetric():
            return IntegerGrid(self.upper.detach().abs().clamp_min(_EPS) / m.qmax, m.qmin, m.qmax)
        lower = float(self.lower.detach())
        if lower != 0.0:
            raise NotDeployable(
                f"interval activation range [{lower:.4g}, {float(self.upper.detach()):.4g}] has a non-zero lower bound "
                "(an affine grid); symmetric INT8 needs zero-point 0"
            )
        width = float((self.upper - self.lower).detach().clamp_min(_EPS))
        top = m.levels - 1
        return IntegerGrid(torch.tensor(width / top), 0, top)


class _WeightQuantizer(Quantizer):
    """Weight quantizers: per output channel (axis 0) or per tensor, signed grids."""

    is_weight = True
    grid_mode = "odd"

    def __init__(self, bits: int, backward: str = "ste", delta_init: float = 1e-3, *, channels: int | None = None,
                 deployable: bool = True) -> None:
        super().__init__(bits, backward, delta_init)
        self.channels = channels
        mode = self.grid_mode
        if deployable and signed_map(bits, mode).qmax > 127:
            mode = "narrow"  # 2^8 odd levels need 9 bits: use the symmetric 8-bit grid instead
        self.mode = mode
        self._init_parameters()

    @property
    def per_channel(self) -> bool:
        return self.channels is not None

    def _param(self, value: float) -> nn.Parameter:
        return nn.Parameter(torch.full((self.channels,) if self.channels else (), value))

    def level_map(self) -> LevelMap:
        return signed_map(self.bits, self.mode)

    def _grid(self, scale: torch.Tensor) -> IntegerGrid:
        m = self.level_map()
        return IntegerGrid(scale.detach().clamp_min(_EPS), m.qmin, m.qmax, axis=0 if self.per_channel else None)

    def extra_repr(self) -> str:
        granularity = "per_channel" if self.per_channel else "per_tensor"
        return f"{super().extra_repr()}, grid={self.mode}, {granularity}"


class LSQWeight(_WeightQuantizer):
    """LSQ weights: a learned step (per channel or tensor), grid ``[-2^(b-1), 2^(b-1)-1]`` ({-1, +1} at 1 bit)."""

    grid_mode = "full"

    def _init_parameters(self) -> None:
        self.step = self._param(1.0)

    def initialize(self, x: torch.Tensor) -> None:
        qp = max(self.level_map().qmax, 1)
        self.step.copy_((2 * _reduce(x, self.per_channel, "absmean") / math.sqrt(qp)).clamp_min(1e-6))

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        m = self.level_map()
        per_scale = x[0].numel() if self.per_channel else x.numel()
        step = scale_grad(self.step.abs().clamp_min(_EPS), 1.0 / math.sqrt(per_scale * max(m.qmax, 1)))
        return self._scaled(x, _per_channel(step, x), m)

    def grid(self, weight: torch.Tensor | None = None) -> IntegerGrid:
        return self._grid(self.step.abs())


class DoReFaWeight(_WeightQuantizer):
    """DoReFa weights: ``tanh``, normalise by the largest magnitude, quantize on 2^b levels in [-1, 1].

    The result is rescaled by the float weights' largest magnitude (not learned) so a student starting
    from the teacher's weights keeps their scale; the grid is ``max|w| / qmax * q``.
    """

    def _magnitude(self, x: torch.Tensor) -> torch.Tensor:
        return _reduce(x.detach(), self.per_channel, "absmax").clamp_min(_EPS)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        m = self.level_map()
        t = torch.tanh(x)
        t_max = _per_channel(_reduce(t, self.per_channel, "absmax").clamp_min(_EPS), x)
        q = self._apply_map(t / t_max * m.qmax, m)
        return q * _per_channel(self._magnitude(x) / m.qmax, x)

    def grid(self, weight: torch.Tensor | None = None) -> IntegerGrid:
        if weight is None:
            raise ValueError("DoReFaWeight.grid needs the float weight")  # internal: quant layers pass it
        return self._grid(self._magnitude(weight) / self.level_map().qmax)


class IntervalWeight(_WeightQuantizer):
    """Interval weights (EWGS): a learned ``[lower, upper]`` mapped onto 2^b levels in [-1, 1].

    The levels are multiplied by a learned output scale; the grid is ``output_scale / qmax * q``.
    """

    def _init_parameters(self) -> None:
        self.lower = self._param(-1.0)
        self.upper = self._param(1.0)
        self.output_scale = self._param(1.0)

    def initialize(self, x: torch.Tensor) -> None:
        bound = torch.minimum(_reduce(x, self.per_channel, "absmax"), 3 * _reduce(x, self.per_channel, "std"))
        bound = bound.clamp_min(1e-6)
        self.lower.copy_(-bound)
        self.upper.copy_(bound)
        self.output_scale.copy_(bound)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        m = self.level_map()
        lower, upper = _per_channel(self.lower, x), _per_channel(self.upper, x)
        normalised = ((x - lower) / (upper - lower).clamp_min(_EPS)).clamp(0, 1)
        q = self._apply_map((2 * normalised - 1) * m.qmax, m)
        return q * _per_channel(self.output_scale.abs().clamp_min(_EPS) / m.qmax, x)

    def grid(self, weight: torch.Tensor | None = None) -> IntegerGrid:
        return self._grid(self.output_scale.abs() / self.level_map().qmax)


# family name -> (weight quantizer, activation quantizer). PACT quantizes weights as DoReFa does,
# as in the PACT paper.
FAMILIES: dict[str, tuple[type[_WeightQuantizer], type[_ActQuantizer]]] = {
    "pact": (DoReFaWeight, PACTActivation),
    "lsq": (LSQWeight, LSQActivation),
    "dorefa": (DoReFaWeight, DoReFaActivation),
    "interval": (IntervalWeight, IntervalActivation),
}
