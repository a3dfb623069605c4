"""The fused CPU fake-quant kernels: built for real here (C++ via torch.utils.cpp_extension), checked against
the eager node, and the fallbacks when they are off or cannot be built.

What this proves: on this machine's compiler and CPU the kernels give the eager node's outputs and input
gradients bit for bit, and its step gradients to float tolerance, in both memory formats, for the STE
and EWGS; a student trained with them takes the same steps; a library cut short in the cache is rebuilt.
It does not prove speed (``benchmarks/train_step.py``).
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import torch

from sqakd_edge.config import QuantConfig
from sqakd_edge.quant import cpu_kernels, initialize_quantizers, prepare_qat
from sqakd_edge.quant.rounding import fake_quant

HAVE_COMPILER = shutil.which("c++") is not None or shutil.which("g++") is not None


@pytest.fixture
def built():
    """The real extension (a machine with a C++ compiler must build it)."""
    if not HAVE_COMPILER:
        pytest.skip("no C++ compiler here: training takes the eager node (test_a_failed_build_falls_back)")
    module = cpu_kernels.kernels()
    assert module is not None, "a C++ compiler is present but the fused kernels did not build"
    return module


@pytest.fixture
def fresh_state(monkeypatch):
    """kernels() as in a new process: not yet tried."""
    monkeypatch.setattr(cpu_kernels, "_state", {"module": None, "tried": False})


def _both(x0, grad, kmin, kmax, delta=None):
    results = []
    for fused in (True, False):
        x = x0.clone().requires_grad_(True)
        scale = torch.tensor(0.1, requires_grad=True)
        ewgs = delta is not None
        out = cpu_kernels.fused_fake_quant(x, scale, kmin, kmax, delta) if fused else \
            fake_quant(x, scale, delta if ewgs else torch.tensor(0.0), ewgs, 1, 0, kmin, kmax)
        out.backward(grad)
        results.append((out.detach(), x.grad, scale.grad))
    return results


@pytest.mark.parametrize("delta", [None, 0.0, 0.37, 1e-3, -0.2], ids=["ste", "ewgs0", "ewgs", "ewgs-small", "ewgs-neg"])
@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format], ids=["nhwc", "nchw"])
@pytest.mark.parametrize("kmin,kmax", [(0, 15), (-8, 7), (0, 127), (-1, 1)])
def test_the_kernels_equal_the_eager_node(built, memory_format, kmin, kmax, delta):
    g = torch.Generator().manual_seed(kmax)
    x0 = (torch.randn(8, 16, 20, 20, generator=g) * 0.8).contiguous(memory_format=memory_format)
    ties_and_bounds = [0.05, -0.05, 0.15, 0.25, -0.35, 0.45, kmin * 0.1, kmax * 0.1, 0.0]
    x0.as_strided((x0.numel(),), (1,))[:9] = torch.tensor(ties_and_bounds)
    grad = torch.randn(x0.shape, generator=g).contiguous(memory_format=memory_format)
    delta = None if delta is None else torch.tensor(delta)
    (out_f, gx_f, gs_f), (out_e, gx_e, gs_e) = _both(x0, grad, kmin, kmax, delta)
    assert out_f.stride() == out_e.stride()
    assert torch.equal(out_f, out_e)  # the same divide, clamp and round
    assert torch.equal(gx_f, gx_e)  # the same range test (and EWGS: the same error and scaling, rounded alike)
    # the step's gradient: two sums over 51,200 terms that partly cancel, in another order
    assert float((gs_f - gs_e).abs()) <= 1e-3 * float(gs_e.abs()) + 1e-3


def test_a_gradient_in_another_memory_format_is_read_right(built):
    x0 = torch.randn(4, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(4, 8, 6, 6)  # contiguous NCHW while x is NHWC: the backward copies it into x's layout
    (out_f, gx_f, _), (out_e, gx_e, _) = _both(x0, grad, 0, 15)
    assert torch.equal(gx_f, gx_e)


def test_what_the_kernels_do_not_cover(built):
    x = torch.randn(4, 8, 6, 6)
    scalar = torch.tensor(0.1)
    assert cpu_kernels.applies(x, scalar, 0, 15)
    assert not cpu_kernels.applies(x, torch.full((4, 1, 1, 1), 0.1), -8, 7)  # per-channel scale
    assert not cpu_kernels.applies(x.double(), scalar, 0, 15)  # not float32
    assert not cpu_kernels.applies(x, scalar, 0, 255)  # levels beyond int8 (the papers' own 8-bit grid)
    assert not cpu_kernels.applies(x[:, :, ::2], scalar, 0, 15)  # not dense


def _student_step(float_model, images, quantizer="lsq", backward="ste"):
    quant = QuantConfig(quantizer=quantizer, wbits=4, abits=4, backward=backward)
    torch.manual_seed(0)
    student = prepare_qat(copy.deepcopy(float_model), quant).train()
    initialize_quantizers(student, images)
    out = student(images)
    (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("quantizer,backward", [("lsq", "ste"), ("interval", "ewgs"), ("pact", "ewgs")])
def test_a_student_takes_the_same_step_with_and_without_the_kernels(built, float_model, monkeypatch, quantizer,
                                                                     backward):
    images = torch.randn(16, 1, 16, 16)
    calls = []
    original = cpu_kernels._FusedFakeQuant.forward
    monkeypatch.setattr(cpu_kernels._FusedFakeQuant, "forward",
                        staticmethod(lambda *a: calls.append(1) or original(*a)))
    out_fused, grads_fused = _student_step(float_model, images, quantizer, backward)
    assert calls  # the activation quantizers ran through the kernels
    monkeypatch.setattr(cpu_kernels, "_state", {"module": None, "tried": True})  # as with SQAKD_EDGE_CPU_KERNELS=0
    calls.clear()
    out_eager, grads_eager = _student_step(float_model, images, quantizer, backward)
    assert not calls
    assert torch.equal(out_fused, out_eager)
    floor = 1e-6 * max(float(g.abs().max()) for g in grads_eager.values())
    for name, grad in grads_eager.items():
        assert float((grads_fused[name] - grad).abs().max()) <= 1e-4 * float(grad.abs().max()) + floor, name


def test_the_environment_variable_turns_them_off(fresh_state, monkeypatch):
    monkeypatch.setenv("SQAKD_EDGE_CPU_KERNELS", "0")
    assert cpu_kernels.kernels() is None
    assert not cpu_kernels.applies(torch.randn(2, 3), torch.tensor(0.1), 0, 15)


def test_a_failed_build_falls_back_to_the_eager_node_and_says_so_once(fresh_state, monkeypatch, float_model):
    import torch.utils.cpp_extension as cpp

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension 'sqakd_edge_fake_quant': c++: command not found")

    monkeypatch.setattr(cpp, "load_inline", no_compiler)
    with pytest.warns(RuntimeWarning, match="fused CPU fake-quant kernels unavailable .*command not found"):
        assert cpu_kernels.kernels() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cpu_kernels.kernels() is None  # tried once: no second build, no second warning
    out, grads = _student_step(float_model, torch.randn(8, 1, 16, 16))  # trains on the eager node
    assert torch.isfinite(out).all() and grads


def test_a_library_cut_short_in_the_cache_is_rebuilt(built, tmp_path):
    """A build killed while linking leaves a .so newer than its sources: ninja keeps it and the import fails.

    Checked in a new process on the real cache: this one has the library loaded, so the broken copy replaces
    it by rename (its mapping stays intact) and the intact one is put back the same way.
    """
    library = cpu_kernels._build_directory() / f"{cpu_kernels._NAME}.so"
    intact = tmp_path / "intact.so"
    shutil.copy2(library, intact)
    cut = tmp_path / "cut.so"
    cut.write_bytes(intact.read_bytes()[:4096])
    assert cpu_kernels._cut_short(cut) and not cpu_kernels._cut_short(intact)
    os.replace(cut, library)
    try:
        code = ("import warnings, torch; warnings.simplefilter('error'); from sqakd_edge.quant import cpu_kernels; "
                "print(cpu_kernels.kernels().fake_quant_forward(torch.tensor([0.26]), 0.1, -8, 7)[0].item())")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        assert float(run.stdout) == pytest.approx(0.3)
        assert library.stat().st_size > 4096  # relinked
    finally:
        if library.stat().st_size <= 4096:
            shutil.copy2(intact, cut)
            os.replace(cut, library)


def test_the_packaged_ninja_is_found_where_none_is_on_path(monkeypatch, tmp_path):
    """torch runs ``ninja`` by name; a non-activated environment's bin (where pip puts it) is not on PATH."""
    ninja = pytest.importorskip("ninja", reason="ninja (a dependency in setup.cfg) is not installed here")
    monkeypatch.setenv("PATH", str(tmp_path))  # no ninja on it
    assert shutil.which("ninja") is None
    with cpu_kernels._ninja_on_path():
        found = shutil.which("ninja")
        assert found is not None and os.path.dirname(found) == ninja.BIN_DIR
        assert subprocess.run([found, "--version"], capture_output=True, check=True).stdout.strip()
    assert os.environ["PATH"] == str(tmp_path)  # as it was
    monkeypatch.delenv("PATH")
    with cpu_kernels._ninja_on_path():
        assert shutil.which("ninja") is not None
    assert "PATH" not in os.environ  # unset again, not empty


def test_the_cache_follows_xdg_and_never_lands_in_the_working_folder(monkeypatch, tmp_path, fresh_state):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cpu_kernels._build_directory().parent == tmp_path / "xdg" / "sqakd-edge" / "kernels"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cpu_kernels._build_directory().parent == tmp_path / "home" / ".cache" / "sqakd-edge" / "kernels"
    # no HOME and no passwd entry: expanduser leaves "~" as it is
    monkeypatch.setattr(cpu_kernels.os.path, "expanduser", lambda path: path)
    assert not cpu_kernels.needs_build()
    with pytest.warns(RuntimeWarning, match="no home directory to cache them in; set XDG_CACHE_HOME"):
        assert cpu_kernels.kernels() is None
