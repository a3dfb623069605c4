"""Fused fake-quant kernels for training on CPU: one pass over the activations forward, one backward.

A training step on CPU is bound by memory traffic, and the eager fake-quant node (:mod:`.rounding`) makes
four passes over a tensor forward (divide, clamp, round, rescale) and about seven backward (the range mask
and two dot products for the step's gradient; EWGS adds three). These kernels do each direction in one pass
and keep the integer levels as int8, not float32; the SQAKD LSQ step of ResNet-20 went from 1.35-1.49x to
1.22-1.30x a float step, interval + EWGS from 1.54-1.63x to 1.33-1.38x (``benchmarks/train_step.py``,
``benchmarks/results/train_step.md``). The forward gives the eager node's values bit for bit (the same
float32 divide, clamp and round-half-to-even); the input gradient is the same (for EWGS too: its error is
recomputed from x, not saved), and the step's gradient differs only by summation order.

They cover the common case: a scalar scale, the STE or EWGS backward, grids ``scale * k`` with ``k`` in int8's
range (every deployable grid), float32 tensors dense in either memory format. Everything else takes the eager
node: per-channel weight scales, the odd grids of DoReFa/EWGS weights, CUDA, and the EWGS Hessian estimate
(which needs second derivatives).

The kernels are C++ built by ``torch.utils.cpp_extension`` on first use into
``~/.cache/sqakd-edge/kernels/<hash>`` (``$XDG_CACHE_HOME/...`` where that is set; about 30 s once per
machine and torch version; a C++ compiler is needed, ninja comes with the package) and compiled for several
x86 ISAs at once, chosen at run time, so a cache shared between CPU kinds stays valid. Without a compiler,
or if the build fails, training takes the eager node and says so once. ``SQAKD_EDGE_CPU_KERNELS=0`` turns
them off.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
import struct
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SQAKD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SQAKD_CLONES
#endif

SQAKD_CLONES static void forward_range(const float* x, float* out, int8_t* q, int64_t begin, int64_t end,
                                       float scale, float kmin, float kmax) {
  for (int64_t i = begin; i < end; ++i) {
    float u = x[i] / scale;                       // as the eager x / scale, clamp, round, q * scale
    u = u < kmin ? kmin : (u > kmax ? kmax : u);
    const float k = std::nearbyint(u);            // half to even, as torch.round
    out[i] = k * scale;
    q[i] = static_cast<int8_t>(k);
  }
}

SQAKD_CLONES static void backward_range(const float* g, const float* x, const int8_t* q, float* grad_in,
                                        int64_t begin, int64_t end, float lo, float hi, double* sums) {
  // float sums over blocks of 4096 (vectorised: their order changes), blocks added in float64
  for (int64_t start = begin; start < end; start += 4096) {
    const int64_t stop = start + 4096 < end ? start + 4096 : end;
    float gq = 0.0f, gx = 0.0f;
#pragma omp simd reduction(+ : gq, gx)
    for (int64_t i = start; i < stop; ++i) {
      const float xi = x[i], gi = g[i];
      const float r = (xi > lo && xi < hi) ? gi : 0.0f;  // strictly inside, as hardtanh_backward
      grad_in[i] = r;
      gq += gi * static_cast<float>(q[i]);
      gx += r * xi;
    }
    sums[0] += gq;
    sums[1] += gx;
  }
}

SQAKD_CLONES static void ewgs_backward_range(const float* g, const float* x, const int8_t* q, float* grad_in,
                                             int64_t begin, int64_t end, float lo, float hi, float scale,
                                             float kmin, float kmax, float delta, double* sums) {
  // the eager EWGS node's error (clamped x / scale minus its rounding, times delta) recomputed from x rather
  // than saved as a float tensor; its rounding is the float32 "add and subtract 1.5 * 2^23" trick, exactly
  // half to even for |u| < 2^22 (u is within int8's range), which vectorises where nearbyint does not
  for (int64_t start = begin; start < end; start += 4096) {
    const int64_t stop = start + 4096 < end ? start + 4096 : end;
    float gq = 0.0f, gx = 0.0f;
#pragma omp simd reduction(+ : gq, gx)
    for (int64_t i = start; i < stop; ++i) {
      const float xi = x[i], gi = g[i];
      float u = xi / scale;
      u = u < kmin ? kmin : (u > kmax ? kmax : u);
      const float error = (u - ((u + 12582912.0f) - 12582912.0f)) * delta;
      const float scaled = std::fabs(gi) * error + gi;  // two roundings (-ffp-contract=off), as the eager ops
      const float r = ((xi > lo) & (xi < hi)) ? scaled : 0.0f;
      grad_in[i] = r;
      gq += gi * static_cast<float>(q[i]);
      gx += r * xi;
    }
    sums[0] += gq;
    sums[1] += gx;
  }
}

std::vector<at::Tensor> fake_quant_forward(const at::Tensor& x, double scale, int64_t kmin, int64_t kmax) {
  auto out = at::empty_like(x);                       // same strides: the loops walk the storage
  auto q = at::empty_like(x, x.options().dtype(at::kChar));
  const float* xp = x.data_ptr<float>();
  float* op = out.data_ptr<float>();
  int8_t* qp = q.data_ptr<int8_t>();
  at::parallel_for(0, x.numel(), 32768, [&](int64_t begin, int64_t end) {
    forward_range(xp, op, qp, begin, end, static_cast<float>(scale), static_cast<float>(kmin),
                  static_cast<float>(kmax));
  });
  return {out, q};
}

// grad_in and [sum(g * q), sum(grad_in * x)]; the STE, or EWGS with delta
std::vector<at::Tensor> fake_quant_backward(const at::Tensor& g, const at::Tensor& x, const at::Tensor& q,
                                            double lo, double hi, double scale, int64_t kmin, int64_t kmax,
                                            bool ewgs, double delta) {
  auto grad_in = at::empty_like(x);
  const float* gp = g.data_ptr<float>();
  const float* xp = x.data_ptr<float>();
  const int8_t* qp = q.data_ptr<int8_t>();
  float* ip = grad_in.data_ptr<float>();
  std::vector<double> sums(2 * at::get_num_threads(), 0.0);
  at::parallel_for(0, x.numel(), 32768, [&](int64_t begin, int64_t end) {
    double* own = &sums[2 * at::get_thread_num()];
    if (!ewgs) {
      backward_range(gp, xp, qp, ip, begin, end, static_cast<float>(lo), static_cast<float>(hi), own);
    } else {
      ewgs_backward_range(gp, xp, qp, ip, begin, end, static_cast<float>(lo), static_cast<float>(hi),
                          static_cast<float>(scale), static_cast<float>(kmin), static_cast<float>(kmax),
                          static_cast<float>(delta), own);
    }
  });
  double gq = 0.0, gx = 0.0;
  for (size_t t = 0; t < sums.size(); t += 2) {
    gq += sums[t];
    gx += sums[t + 1];
  }
  auto dots = at::empty({2}, x.options().dtype(at::kDouble));
  dots[0] = gq;
  dots[1] = gx;
  return {grad_in, dots};
}
"""

_ENV = "SQAKD_EDGE_CPU_KERNELS"
_NAME = "sqakd_edge_fake_quant"
# -fopenmp: at::parallel_for's OpenMP is inline in its header; the libgomp it links is torch's own (the same
# soname, already loaded), so torch.set_num_threads applies. -fno-trapping-math lets GCC turn the range
# tests into vector selects (the EWGS loop stayed scalar without it); it changes no value. -ffp-contract=off
# keeps a * b + c two roundings, as the eager ops compute it.
_CFLAGS = ["-O3", "-fopenmp", "-fno-trapping-math", "-ffp-contract=off"]
_state: dict[str, Any] = {"module": None, "tried": False}


def _build_directory() -> Path:
    """``$XDG_CACHE_HOME`` (else ``~/.cache``) ``/sqakd-edge/kernels/<hash of what the library depends on>``."""
    recipe = f"{_SOURCE}{_CFLAGS}{torch.__version__}{platform.python_version()}"
    key = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec: a relative value is ignored
        cache = Path(xdg)
    else:
        home = Path(os.path.expanduser("~"))
        if not home.is_absolute():  # no HOME and no passwd entry (a container's bare uid): not the working folder
            raise RuntimeError("no home directory to cache them in; set XDG_CACHE_HOME to a writable folder")
        cache = home / ".cache"
    return cache / "sqakd-edge" / "kernels" / key


def _switched_off() -> bool:
    return os.environ.get(_ENV, "").lower() in ("0", "off", "no")


def _cut_short(library: Path) -> bool:
    """Whether a built library is shorter than its ELF header says (a link killed midway, a full disk).

    Loading such a file does not fail cleanly: the process dies of SIGBUS when it touches the missing pages.
    GNU ld writes the section header table last, so a cut file ends before the table's end.
    """
    try:
        with open(library, "rb") as file:
            header = file.read(64)
            size = os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        return False
    if header[:4] != b"\x7fELF":
        return sys.platform.startswith("linux")  # Linux builds ELF: anything else here is broken
    if len(header) < 64:  # not even a whole ELF64 header
        return True
    if header[4] != 2:  # ELF32: not built here, its header is laid out otherwise
        return False
    order = "<" if header[5] == 1 else ">"
    (table_offset,) = struct.unpack_from(f"{order}Q", header, 0x28)
    entry_size, entries = struct.unpack_from(f"{order}HH", header, 0x3A)
    return size < table_offset + entry_size * entries


def _build_lock(directory: Path) -> contextlib.AbstractContextManager[Any]:
    """The lock torch's ``load_inline`` holds while it builds in ``directory`` (none where torch has none)."""
    try:
        from torch.utils._filelock import FileLock  # torch's own, private: this torch's lock, or none
    except ImportError:
        return contextlib.nullcontext()
    return FileLock(str(directory / "lock"))


@contextlib.contextmanager
def _ninja_on_path() -> Iterator[None]:
    """PATH with the ``ninja`` of the PyPI package (a dependency) while building, where none is on PATH.

    torch runs ``ninja`` by name; the package's binary sits in the environment's ``bin``, which is on PATH
    only in an activated environment, and few systems install ninja themselves.
    """
    path = os.environ.get("PATH")
    if shutil.which("ninja") is None:
        try:
            import ninja  # type: ignore[import-untyped]

            os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, path]) if path else ninja.BIN_DIR
        except ImportError:
            pass  # the build then fails with torch's own message, and training takes the eager node
    try:
        yield
    finally:
        if path is None:  # unset is not empty: an unset PATH searches the system's default folders
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = path


def needs_build() -> bool:
    """Whether the first :func:`kernels` call will compile them (nothing built for this source and torch yet)."""
    if _switched_off() or _state["tried"]:
        return False
    try:
        return not (_build_directory() / f"{_NAME}.so").exists()
    except RuntimeError:
        return False  # nowhere to build them: kernels() says so


def kernels() -> Any | None:
    """The built extension, building it on the first call; None when off or unavailable (said once)."""
    if _state["tried"]:
        return _state["module"]
    _state["tried"] = True
    if _switched_off():
        return None
    try:
        # its import logs "No CUDA runtime is found" on CPU-only machines: noise for every process that trains
        extension_log = logging.getLogger("torch.utils.cpp_extension")
        level = extension_log.level
        extension_log.setLevel(logging.ERROR)
        try:
            from torch.utils.cpp_extension import load_inline
        finally:
            extension_log.setLevel(level)

        directory = _build_directory()
        directory.mkdir(parents=True, exist_ok=True)
        library = directory / f"{_NAME}.so"
        with _build_lock(directory):  # not a library another process is linking right now
            if _cut_short(library):  # newer than its sources, ninja would keep it: built again instead
                library.unlink()
        with _ninja_on_path():
            _state["module"] = load_inline(
                _NAME, cpp_sources=_SOURCE, functions=["fake_quant_forward", "fake_quant_backward"],
                extra_cflags=_CFLAGS, extra_ldflags=["-fopenmp"], build_directory=str(directory), verbose=False)
    except Exception as exc:  # noqa: BLE001 -- no compiler, no ninja, a failed build: the eager node still works
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        warnings.warn(f"fused CPU fake-quant kernels unavailable ({reason[:200]}); training uses the slower eager "
                      f"path ({_ENV}=0 silences this)", RuntimeWarning, stacklevel=2)
    return _state["module"]


def _built() -> Any:
    module = kernels()
    if module is None:
        raise RuntimeError("the fused CPU fake-quant kernels are not available; check applies() first")
    return module


def applies(x: torch.Tensor, scale: torch.Tensor, kmin: int, kmax: int) -> bool:
    """Whether the fused kernels cover this fake-quant (see the module docstring)."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and scale.dim() == 0 and -128 <= kmin
            and kmax <= 127 and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
            and kernels() is not None)


class _FusedFakeQuant(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor, kmin: int, kmax: int,
                delta: torch.Tensor | None) -> torch.Tensor:
        s = float(scale)
        out, q = _built().fake_quant_forward(x, s, kmin, kmax)
        ctx.save_for_backward(x, q, scale)
        # the range test on x, as the eager node's; delta as it was in the forward, as the eager node saves it
        ctx.consts = (kmin * s, kmax * s, s, kmin, kmax, delta is not None, 0.0 if delta is None else float(delta))
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, q, scale = ctx.saved_tensors
        if grad_out.stride() != x.stride():  # the kernels walk the storages side by side
            grad_out = torch.empty_like(x).copy_(grad_out)
        grad_in, dots = _built().fake_quant_backward(grad_out, x, q, *ctx.consts)
        # d(scale*q(x/scale))/dscale summed: sum(g*q) - sum(g_in*x)/scale, as the eager node
        grad_scale = (dots[0] - dots[1] / scale.double()).to(scale.dtype) if ctx.needs_input_grad[1] else None
        return grad_in if ctx.needs_input_grad[0] else None, grad_scale, None, None, None


def fused_fake_quant(x: torch.Tensor, scale: torch.Tensor, kmin: int, kmax: int,
                     ewgs_delta: torch.Tensor | None = None) -> torch.Tensor:
    """``scale * clamp(round(x / scale), kmin, kmax)``, fused (only where :func:`applies`).

    The backward is the STE, or EWGS with ``ewgs_delta`` (a scalar tensor).
    """
    return _FusedFakeQuant.apply(x, scale, kmin, kmax, ewgs_delta)
