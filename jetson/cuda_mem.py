"""CUDA memory, copies, streams and events for the TensorRT runner, through pycuda or cuda-python.

Runs on the device (Python 3.6+). JetPack 4.6 (Python 3.6, CUDA 10.2) can only use pycuda (2022.1 is
the last release for Python 3.6); cuda-python needs CUDA >= 11 and Python >= 3.8, so newer JetPacks
and desktops may use either. Both backends expose the same small surface:

    backend.alloc(nbytes) -> int device pointer       backend.free(ptr)
    backend.host_empty(shape, dtype) -> numpy array   (page-locked, so async copies are async)
    backend.htod(ptr, array), backend.dtoh(array, ptr)   (async on backend.stream)
    backend.stream_handle -> int                        backend.synchronize()
    backend.event() -> event; backend.record(event); backend.elapsed_ms(start, end)
    backend.describe() -> dict (GPU name, compute capability, CUDA versions)

Nothing is imported at module import: :func:`load_backend` imports the first library that works.
"""

import ctypes

import numpy as np


class CudaUnavailable(Exception):
    """Neither pycuda nor cuda-python can be used here."""


class PyCudaBackend(object):
    """pycuda (the only choice on JetPack 4.6)."""

    name = "pycuda"

    def __init__(self):
        import pycuda.autoinit  # noqa: F401  (creates the context on device 0)
        import pycuda.driver as cuda

        self._cuda = cuda
        self.stream = cuda.Stream()
        self.stream_handle = int(self.stream.handle)
        self._allocations = {}

    def alloc(self, nbytes):
        mem = self._cuda.mem_alloc(max(1, int(nbytes)))
        ptr = int(mem)
        self._allocations[ptr] = mem
        return ptr

    def free(self, ptr):
        mem = self._allocations.pop(ptr, None)
        if mem is not None:
            mem.free()

    def host_empty(self, shape, dtype):
        return self._cuda.pagelocked_empty(tuple(shape), dtype)

    def htod(self, ptr, array):
        self._cuda.memcpy_htod_async(ptr, array, self.stream)

    def dtoh(self, array, ptr):
        self._cuda.memcpy_dtoh_async(array, ptr, self.stream)

    def synchronize(self):
        self.stream.synchronize()

    def event(self):
        return self._cuda.Event()

    def record(self, event):
        event.record(self.stream)

    def elapsed_ms(self, start, end):
        end.synchronize()
        return float(start.time_till(end))

    def describe(self):
        cuda = self._cuda
        device = cuda.Device(0)
        major, minor = device.compute_capability()
        import pycuda

        return {
            "backend": "pycuda " + str(getattr(pycuda, "VERSION_TEXT", "")),
            "gpu_name": device.name(),
            "compute_capability": "%d.%d" % (major, minor),
            "cuda_runtime": _cuda_version_text(cuda.get_version()),
            "cuda_driver": _cuda_version_text(cuda.get_driver_version()),
        }

    def close(self):
        for ptr in list(self._allocations):
            self.free(ptr)


class CudaPythonBackend(object):
    """NVIDIA's cuda-python runtime bindings (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6)."""

    name = "cuda-python"

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        self._rt = cudart
        self._check(cudart.cudaSetDevice(0))
        self._stream = self._check(cudart.cudaStreamCreate())
        self.stream_handle = int(self._stream)
        self._device_ptrs = set()
        self._host_ptrs = []

    def _check(self, result):
        err = result[0]
        if int(err) != 0:
            raise RuntimeError("CUDA error: %s" % (err,))
        if len(result) == 1:
            return None
        return result[1] if len(result) == 2 else result[1:]

    def alloc(self, nbytes):
        ptr = int(self._check(self._rt.cudaMalloc(max(1, int(nbytes)))))
        self._device_ptrs.add(ptr)
        return ptr

    def free(self, ptr):
        if ptr in self._device_ptrs:
            self._device_ptrs.discard(ptr)
            self._check(self._rt.cudaFree(ptr))

    def host_empty(self, shape, dtype):
        dtype = np.dtype(dtype)
        count = int(np.prod(shape)) if len(shape) else 1
        nbytes = max(1, count * dtype.itemsize)
        ptr = int(self._check(self._rt.cudaMallocHost(nbytes)))
        self._host_ptrs.append(ptr)
        buffer = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(buffer, dtype=dtype, count=count).reshape(tuple(shape))

    def htod(self, ptr, array):
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._rt.cudaMemcpyAsync(ptr, array.ctypes.data, array.nbytes, kind, self._stream))

    def dtoh(self, array, ptr):
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._rt.cudaMemcpyAsync(array.ctypes.data, ptr, array.nbytes, kind, self._stream))

    def synchronize(self):
        self._check(self._rt.cudaStreamSynchronize(self._stream))

    def event(self):
        return self._check(self._rt.cudaEventCreate())

    def record(self, event):
        self._check(self._rt.cudaEventRecord(event, self._stream))

    def elapsed_ms(self, start, end):
        self._check(self._rt.cudaEventSynchronize(end))
        return float(self._check(self._rt.cudaEventElapsedTime(start, end)))

    def describe(self):
        props = self._check(self._rt.cudaGetDeviceProperties(0))
        name = props.name
        if isinstance(name, bytes):
            name = name.split(b"\0", 1)[0].decode("utf-8", "replace")
        return {
            "backend": "cuda-python",
            "gpu_name": name,
            "compute_capability": "%d.%d" % (props.major, props.minor),
            "cuda_runtime": _cuda_version_text(self._check(self._rt.cudaRuntimeGetVersion())),
            "cuda_driver": _cuda_version_text(self._check(self._rt.cudaDriverGetVersion())),
        }

    def close(self):
        for ptr in list(self._device_ptrs):
            self.free(ptr)
        for ptr in self._host_ptrs:
            self._rt.cudaFreeHost(ptr)
        self._host_ptrs = []


def _cuda_version_text(version):
    """CUDA's packed version (10020, or pycuda's (10, 2, 0)) as text."""
    if isinstance(version, tuple):
        return ".".join(str(v) for v in version[:2])
    version = int(version)
    return "%d.%d" % (version // 1000, (version % 1000) // 10)


def load_backend(preferred="auto"):
    """The first usable CUDA backend.

    Args:
        preferred: ``"auto"`` (pycuda, then cuda-python), ``"pycuda"`` or ``"cuda-python"``.

    Returns:
        A backend object (see the module docstring).

    Raises:
        CudaUnavailable: with the reason of each backend tried.
    """
    order = {"auto": (PyCudaBackend, CudaPythonBackend), "pycuda": (PyCudaBackend,),
             "cuda-python": (CudaPythonBackend,)}[preferred]
    reasons = []
    for cls in order:
        try:
            return cls()
        except Exception as exc:  # an ImportError, or a driver error at context creation
            reasons.append("%s: %s" % (cls.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    raise CudaUnavailable("no CUDA Python binding works here (" + "; ".join(reasons) + "); install pycuda "
                          "(JetPack 4.6: pip3 install pycuda==2022.1 with nvcc on PATH) or cuda-python")
