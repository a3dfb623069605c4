"""Build, inspect and time TensorRT engines with NVIDIA's ``trtexec`` binary: no pycuda, no cuda-python.

Every JetPack ships ``/usr/src/tensorrt/bin/trtexec``. This module drives it from the device program (Python
3.6+, stdlib only); every command is an argument list, never a shell string. It was written against
trtexec's own sources, NVIDIA/TensorRT at the release tags, not from memory (git mirror of
github.com/NVIDIA/TensorRT; commits: 8.0.1 eb5de99b, 8.2.1 6f38570b, 8.4.1 b55c4710, 8.5.2 ad932f72,
v8.6.1 a25ca8bb, v10.3.0 c5b9de37, v11.1 82d1dca8). ``O`` is ``samples/common/sampleOptions.cpp``, ``R``
``samples/common/sampleReporting.cpp``, ``T`` trtexec.cpp (``samples/opensource/trtexec/`` in 8.0.1,
``samples/trtexec/`` later). ``Lnnn`` is the ``getAndDelOption(arguments, "--flag", ...)`` line that parses
the flag; ``-`` means the tag does not parse it, and trtexec then fails with ``[E] Unknown option: --flag``
and exit status 1 (T@8.0.1 L102, T@v10.3.0 L242, T@v11.1 L378).

==========================  ======  ======  ======  ======  ======  =======  =====  ==============================
flag (O line per tag)       8.0.1   8.2.1   8.4.1   8.5.2   8.6.1   10.3.0   11.1   note
==========================  ======  ======  ======  ======  ======  =======  =====  ==============================
--onnx                      L426    L434    L554    L653    L703    L977     L1012
--saveEngine                L631    L681    L838    L937    L1056   L1353    L1279
--loadEngine                L627    L677    L834    L933    L1052   L1347    L1272
--fp16                      L579    L588    L745    L844    L952    L1226    -      gone in 11.0 (v11.0 too);
--int8                      L580    L589    L746    L845    L953    L1228    -      deprecated with a warning from
--best                      L570    L579    L736    L835    L933    L1181    -      10.14 ("Weakly-typed networks")
--stronglyTyped             -       -       -       -       -       L1231    L1214  9.1 on; a no-op in 11.x
--explicitBatch             L529    L546    L665    L764    L862    -        -      8.2-8.6: "deprecated and has no
                                                                                    effect" (L547-549@8.2.1)
--shapes                    L757    L811    L969    L1108   L1310   L1629    L1810
--min/opt/maxShapes         L530-2  L554-6  L673-5  L772-4  L870-2  L699-709 L669+
--workspace (MiB)           L565    L574    L692    L791    L889    -        -      deprecated from 8.4.1 (L694)
--memPoolSize=workspace:N   -       -       L698    L797    L895    L1124    L1124  N in MiB; 10.x+ also takes a
                                                                                    unit suffix (L1134@v10.3.0)
--timingCacheFile           L704    L754    L915    L1018   L1137   L1434    L1353
--warmUp (ms)               L736    L788    L947    L1085   L1287   L1606    L1676
--iterations (at least N)   L734    L786    L945    L1083   L1285   L1604    L1674
--duration (s, at least)    L735    L787    L946    L1084   L1286   L1605    L1675  default 3 s
--avgRuns                   L782    L818    L976    L1114   L1316   L1674    L1859
--useCudaGraph              L746    L800    L959    L1097   L1299   L1618    L1710  11.x: no-op, graphs are on;
                                                                                    --noCudaGraph L1717@v11.1
--noDataTransfers           L743    L796    L955    L1093   L1295   L1614    L1690  11.x: no-op, transfers are off;
                                                                                    --includeDataTransfers L1696
--separateProfileRun        L747    L801    L960    L1098   L1300   L1619    L1722  11.x: no-op, always separate
--profilingVerbosity        -       L646    L803    L902    L1021   L1316    L1241  =detailed for layer info
--nvtxMode                  L609    L641    L798    L897    L1016   -        -      8.2-8.6: alias, deprecated
--dumpLayerInfo             -       L823    L981    L1119   L1322   L1680    L1865
--exportTimes               L787    L824    L982    L1120   L1323   L1682    L1867
--exportOutput              L788    L825    L983    L1121   L1324   L1683    L1868
--exportProfile             L789    L826    L984    L1122   L1325   L1684    L1869
--exportLayerInfo           -       L827    L985    L1123   L1326   L1685    L1870  first in 8.2 (8.2.0-EA too)
--loadInputs                L753    L807    L965    L1104   L1306   L1625    L751
--skipInference             -       -       -       -       L968    L1259    L1226  9.x has it too
--buildOnly                 L748    L802    L750    L849    L964    -        -      8.6: alias of --skipInference
--verbose                   L783    L819    L977    L1115   L1317   L1675    L1860
==========================  ======  ======  ======  ======  ======  =======  =====  ==============================

``--explicitBatch`` matters only on 8.0: there ONNX needs it unless ``--shapes`` is given (O@8.0.1 L541-555);
from 8.2 explicit batch is detected from the ONNX (O@8.2.1 L850-853). ``--int8`` never appears in 11.1's
trtexec options: the only ``"--int8"`` left in O@v11.1 (L2065) is in ``SafeBuilderOptions::parse``.

Output files (``R``):

- ``--exportTimes``, ``exportJSONTrace`` (R@8.0.1 and 8.2.1 L275-296, 8.4.1 L302, 8.5.2 L309, 8.6.1 L319,
  v10.3.0 L347-369, v11.1 L356-378): a list, one object per inference, keys ``startEnqMs endEnqMs startH2dMs
  endH2dMs startComputeMs endComputeMs startD2hMs endD2hMs h2dMs computeMs d2hMs latencyMs`` and, in 8.0/8.2
  only, ``endToEndMs`` (= endD2hMs - startH2dMs; removed in 8.4.1). ``latencyMs`` is h2dMs + computeMs +
  d2hMs (``InferenceTime::latency``, sampleReporting.h). Before 8.5 the file also holds the warm-up inferences
  (R@8.2.1 L265 passes the whole trace; 8.5.2 L299 passes ``warmups`` and skips them); trtexec's own rule for
  a warm-up record is ``startComputeMs < warmUp`` (R@8.2.1 L248), which :func:`parse_times` applies.
  NVIDIA's recorded 8.4 trace in ``tests/data/trtexec_samples/`` does contain them (222 records < 200 ms).
- ``--exportProfile``, ``Profiler::exportJSONProfile`` (R@8.2.1 L360-378, 8.4.1 L393, v10.3.0 L437-456,
  v11.1 L446-465): ``[{"count": N}, {"name", "timeMs", "averageMs", "medianMs", "percentage"}, ...]``;
  ``medianMs`` from 8.4.1 (absent in 8.0.1/8.2.1). Layer names are written without JSON escaping.
- ``--exportLayerInfo`` (T@8.2.1 L57-61, R@v8.6.1 L499-503, R@v10.3.0 L527-531): the engine inspector's JSON
  (``getLayerInformation(..., LayerInformationFormat::kJSON)``): ``{"Layers": [...], "Bindings": [...]}``; each
  layer has ``Name``, ``LayerType``, ``Inputs``/``Outputs`` with ``Format/Datatype`` only if the engine was
  built with DETAILED verbosity, else ``Layers`` is a list of names (NVIDIA's trex checks exactly this,
  trex/parser.py@v10.16 L36-54, which also notes that older TensorRT wrote no ``Bindings``).
- ``--exportOutput``, ``exportJSONOutput`` (R@8.2.1 L392-413, v10.3.0 L489-510, v11.1 L483-504):
  ``[{"name": ..., "dimensions": "1x10", "values": [ ... ]}]`` (see :func:`parse_output`).

C++ streams print ``nan``/``inf`` as bare words; the parsers here accept them.

Log lines (samples/common/logging.h): ``[MM/DD/YYYY-HH:MM:SS] [E] text`` (``[W] [I] [V]`` likewise; errors and
warnings go to stderr, the rest to stdout); TensorRT's own messages carry ``[TRT]``; from 8.2 the error
recorder also prints ``[E] Error[N]: ...`` (samples/common/ErrorRecorder.h L92@8.2.1). The first line is
``&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # <argv joined by spaces>`` and the last ``&&&& PASSED ...`` or
``&&&& FAILED ...``; from 10.4 the banner also carries the build, ``[TensorRT v101303] [b9]``. The number is
``major*1000 + minor*100 + patch`` up to 9.x (``kNV_TENSORRT_VERSION_IMPL``, NvInferRuntimeCommon.h@8.2.1 L86,
NvInferRuntimeBase.h@v9.3.0 L90) and ``major*10000 + minor*100 + patch`` from 10.0 (``NV_TENSORRT_VERSION_INT``,
NvInferRuntimeBase.h@v10.0.0 L83). TensorRT 7.x banners carry no version at all. A failed run exits with
``EXIT_FAILURE`` (1) after ``&&&& FAILED``; a crash or the kernel's OOM killer gives a signal instead.

Design: two trtexec runs, build then time. The build (``--onnx --saveEngine``, ``--buildOnly`` before 8.6,
``--skipInference`` from 8.6) writes the engine next to its cache key; timing always loads it
(``--loadEngine``), so a cached engine and a fresh one are timed the same way, build time is measured on its
own, and an existing ``engine_path`` skips the build. NVIDIA's TREx does the same (``utils/process_engine.py``
@7a07608d: ``--buildOnly --saveEngine`` L51-60, then ``--loadEngine --exportTimes --exportProfile
--exportLayerInfo --separateProfileRun`` L106-121). ``end_to_end`` is ``latencyMs`` (H2D + compute + D2H of
one inference, what trex reads too, trex/parser.py@v10.16 L72-76), not 8.2's ``endToEndMs``, which also counts
the wait behind the previous inference (NVIDIA/trt-samples-for-hackathon-cn @48a13cbe,
cookbook/08-Tool/trtexec/result-FP32.txt L908: host latency 0.157 ms, "end to end" 0.286 ms); that one stays
available as ``host_wall``. On 11.x, whose defaults changed, ``--includeDataTransfers --noCudaGraph`` keep
the numbers comparable with 8.x/10.x and the Python runner.

Not verifiable here (no GPU, no TensorRT): that a board's trtexec accepts these flags and writes these files.
Only the source reading above says so; tests run a stand-in executable.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
ENV_TRTEXEC = "SQAKD_TRTEXEC"
PRECISIONS = ("fp32", "fp16", "int8")
MIN_VERSION = (8, 0)
LOG_TAIL_LINES = 40

# (first version that parses the flag, first version that no longer does): the table above, as data.
FLAG_VERSIONS = {
    "--explicitBatch": ((0, 0), (10, 0)),
    "--workspace": ((0, 0), (10, 0)),
    "--memPoolSize": ((8, 4), None),
    "--fp16": ((0, 0), (11, 0)),
    "--int8": ((0, 0), (11, 0)),
    "--best": ((0, 0), (11, 0)),
    "--stronglyTyped": ((9, 1), None),
    "--nvtxMode": ((0, 0), (10, 0)),
    "--profilingVerbosity": ((8, 2), None),
    "--dumpLayerInfo": ((8, 2), None),
    "--exportLayerInfo": ((8, 2), None),
    "--buildOnly": ((0, 0), (10, 0)),
    "--skipInference": ((8, 6), None),
    "--includeDataTransfers": ((11, 0), None),
    "--noCudaGraph": ((11, 0), None),
}
# Parsed but a deprecated no-op from this version on (a warning, and a candidate for removal).
FLAG_NOOP_SINCE = {"--explicitBatch": (8, 2), "--stronglyTyped": (11, 0), "--separateProfileRun": (11, 0),
                   "--useCudaGraph": (11, 0), "--noDataTransfers": (11, 0)}

BANNER = re.compile(r"\[TensorRT v(\d+)\]")
BANNER_LINE = re.compile(r"^&&&& (?:RUNNING|PASSED|FAILED) TensorRT\.trtexec.*$", re.MULTILINE)
VERSION_LINE = re.compile(r"TensorRT version: (\d+)\.(\d+)\.(\d+)")
BARE_VERSION = re.compile(r"(?<![\w.])v(\d{4,6})(?![\w.])")
TIMESTAMP = re.compile(r"^\[\d\d/\d\d/\d{4}-\d\d:\d\d:\d\d\] ")
ERROR_LINE = re.compile(r"\[E\]|Error\[\d+\]|Error Code \d+|^ERROR:|Unknown option|Cuda failure|terminate called"
                        r"|Segmentation fault|core dumped|^Killed$")
NOT_ERROR_LINE = re.compile(r"\[[WIV]\] ")
# trtexec's and TensorRT's follow-ups after the real cause, and the ONNX parser's node dump (sampleEngines.cpp,
# trtexec.cpp at every tag above; real logs in tests/data/trtexec_samples/). A specific assertion is not generic.
GENERIC = re.compile(
    r"Assertion (?:engine|enginePtr) != nullptr failed|Engine could not be created from network"
    r"|Building engine failed|Failed to create engine from model|Engine set up failed|Parsing model failed"
    r"|Failed to parse onnx file|Network creation failed|Network validation failed|Inference set up failed"
    r"|Error occurred during inference|Engine deserialization failed|--- (?:Begin|End) node ---"
    r"|While parsing node number|ModelImporter\.cpp:\d+: (?:input|output|name|op_type): ")
_BARE_NUMBER = re.compile(r"(?<=[:\[,])(\s*)(-?)(nan|inf)\b", re.IGNORECASE)
_ESCAPE = re.compile(r'\\(["\\/bfnrtu])|\\')


class TrtexecError(Exception):
    """trtexec could not do what was asked; the message is its first specific error line."""

    def __init__(self, message, returncode=None, log=None, argv=None):
        Exception.__init__(self, message)
        self.returncode = returncode
        self.log = log or ""
        self.log_tail = _tail(self.log)
        self.argv = argv


# --- finding trtexec and its version --------------------------------------------------------------------


def find_trtexec(candidates=None):
    """The trtexec to use: ``$SQAKD_TRTEXEC``, else ``trtexec`` on PATH, else JetPack's; None when none runs."""
    if candidates is None:
        candidates = [os.environ.get(ENV_TRTEXEC), shutil.which("trtexec"), JETPACK_TRTEXEC]
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _decode_version(number):
    if number >= 100000:  # NV_TENSORRT_VERSION_INT, 10.0 on: major*10000 + minor*100 + patch
        return number // 10000, (number // 100) % 100, number % 100
    return number // 1000, (number % 1000) // 100, number % 100  # up to 9.x: major*1000 + minor*100 + patch


def parse_version(text):
    """``(major, minor, patch)`` from trtexec's output ("[TensorRT v8201]" -> (8, 2, 1), "v100300" -> (10, 3, 0)).

    The banner is preferred, then a ``TensorRT version: X.Y.Z`` line, then a bare ``vNNNN``; None if none.
    """
    text = text or ""
    match = BANNER.search(text)
    if match:
        return _decode_version(int(match.group(1)))
    match = VERSION_LINE.search(text)
    if match:
        return tuple(int(g) for g in match.groups())
    match = BARE_VERSION.search(text)
    if match:
        return _decode_version(int(match.group(1)))
    return None


def trtexec_version(trtexec, timeout_s=120):
    """The TensorRT version of a trtexec binary, from the banner ``trtexec --help`` prints first."""
    try:
        _, text = run_trtexec([trtexec, "--help"], timeout_s)
    except TrtexecError as exc:  # --help exits 0 everywhere; still read whatever it printed
        text = exc.log
    version = parse_version(text)
    if version is None:
        raise TrtexecError("%s printed no TensorRT version banner (TensorRT 7.x's trtexec prints none; 8.0 or "
                           "newer is needed)" % trtexec)
    return version


def has_flag(version, flag):
    """Whether trtexec of TensorRT ``version`` parses ``flag`` (only flags whose support changes are listed)."""
    since, removed = FLAG_VERSIONS.get(flag, ((0, 0), None))
    vm = tuple(version[:2])
    return vm >= since and (removed is None or vm < removed)


# --- the argument lists -----------------------------------------------------------------------------------


def _shape_arg(version, input_name, input_shape, batch):
    dims = list(input_shape)
    if dims and dims[0] in (None, -1, 0, "N", "batch"):  # a dynamic batch dimension takes ``batch``
        dims[0] = batch or 1
    dims = [int(d) for d in dims]
    name = str(input_name)
    if re.search(r"[:,']", name):
        if tuple(version[:2]) < (8, 4):  # quoted names: splitNameAndValue's quoteNameRange, O@8.4.1 on
            raise TrtexecError("input name %r needs quoting in --shapes, which trtexec parses from 8.4 on" % name)
        name = "'%s'" % name
    return "--shapes=%s:%s" % (name, "x".join(str(d) for d in dims))


def precision_flags(version, precision, strongly_typed=None, fp16_graph=None):
    """The builder precision flags for ``precision`` on TensorRT ``version`` (see the module table).

    Weakly typed (8.x, 10.x by default): ``fp16`` -> ``--fp16``; ``int8`` -> ``--int8 --fp16`` (a QDQ graph needs
    the INT8 flag; FP16 keeps its unquantized layers off FP32). Strongly typed (11.x always; 10.x when asked):
    no flag, the graph's types decide (``int8`` is the QDQ graph, ``fp16`` needs an FP16 graph): on 10.x that is
    ``--stronglyTyped``; on 11.x nothing (it is the default and the flag a no-op). ``fp16_graph=False`` says the
    graph is FP32, which a strongly typed ``fp16`` build cannot use.
    """
    if precision not in PRECISIONS:
        raise TrtexecError("precision must be one of %s, got %r" % (", ".join(PRECISIONS), precision))
    vm = tuple(version[:2])
    if strongly_typed is None:
        strongly_typed = vm >= (11, 0)
    if not strongly_typed:
        if vm >= (11, 0):
            raise TrtexecError("TensorRT %d.%d builds only strongly typed networks: its trtexec has no --fp16/--int8 "
                               "(sampleOptions.cpp@v11.1); pass the graph whose types are the precision" % vm)
        return {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[precision]
    if not has_flag(version, "--stronglyTyped"):
        raise TrtexecError("TensorRT %d.%d's trtexec has no --stronglyTyped (9.x/10.0 on, sampleOptions.cpp@v10.0.0 "
                           "L1201): build it weakly typed" % vm)
    if precision == "fp16" and fp16_graph is False:
        raise TrtexecError("a strongly typed FP16 engine needs an FP16 graph (model.fp16.onnx); this one is FP32")
    return [] if vm >= (11, 0) else ["--stronglyTyped"]


def build_argv(trtexec, version, onnx_path, engine_path, precision, export_dir, batch=1, input_name=None,
               input_shape=None, workspace_mib=1024, timing_cache=None, warmup_ms=200, iterations=200,
               load_engine=False, duration_s=0, strongly_typed=None, fp16_graph=None, export_output=False):
    """trtexec's argument list: build ``onnx_path`` into ``engine_path``, or (``load_engine``) time that engine.

    Build: ``--onnx --saveEngine``, the workspace limit (``--workspace`` before 8.4, ``--memPoolSize`` after),
    the precision flags (:func:`precision_flags`), ``--timingCacheFile``, DETAILED layer information
    (``--nvtxMode=verbose`` on 8.0, ``--profilingVerbosity=detailed`` from 8.2) and no inference
    (``--buildOnly`` before 8.6, ``--skipInference`` from 8.6). ``--explicitBatch`` only on 8.0.

    Time: ``--loadEngine``, ``--warmUp`` (ms), ``--iterations`` and ``--duration`` (s; 0 = exactly
    ``iterations`` timed runs after the warm-up), ``--separateProfileRun`` (before 11.0; always on in 11),
    ``--exportTimes``/``--exportProfile`` and, from 8.2, ``--exportLayerInfo`` into ``export_dir``
    (``times.json``, ``profile.json``, ``layers.json``, ``output.json`` with ``export_output``). On 11.x
    ``--includeDataTransfers --noCudaGraph`` restore the 8.x/10.x defaults.

    ``input_name`` + ``input_shape`` (the full shape; ``batch`` fills its first dimension when that is dynamic:
    None, -1 or 0) add ``--shapes`` to both (a static input ignores it at build time; a dynamic one needs it).
    """
    version = tuple(version)
    if version[:2] < MIN_VERSION:
        raise TrtexecError("trtexec of TensorRT %d.%d is not supported (8.0 or newer)" % version[:2])
    argv = [trtexec]
    shapes = [_shape_arg(version, input_name, input_shape, batch)] if input_name and input_shape else []
    if not load_engine:
        argv += ["--onnx=%s" % onnx_path, "--saveEngine=%s" % engine_path]
        if version[:2] < (8, 2):
            argv.append("--explicitBatch")
        if has_flag(version, "--memPoolSize"):
            argv.append("--memPoolSize=workspace:%d" % int(workspace_mib))  # MiB without a suffix, 8.4 on
        else:
            argv.append("--workspace=%d" % int(workspace_mib))
        argv += precision_flags(version, precision, strongly_typed, fp16_graph)
        if timing_cache:
            argv.append("--timingCacheFile=%s" % timing_cache)
        argv += shapes
        argv.append("--profilingVerbosity=detailed" if has_flag(version, "--profilingVerbosity")
                    else "--nvtxMode=verbose")
        argv.append("--skipInference" if has_flag(version, "--skipInference") else "--buildOnly")
        return argv
    if precision not in PRECISIONS:
        raise TrtexecError("precision must be one of %s, got %r" % (", ".join(PRECISIONS), precision))
    argv.append("--loadEngine=%s" % engine_path)
    argv += shapes
    argv += ["--warmUp=%d" % int(warmup_ms), "--iterations=%d" % int(iterations), "--duration=%d" % int(duration_s)]
    if version[:2] >= (11, 0):
        argv += ["--includeDataTransfers", "--noCudaGraph"]
    else:
        argv.append("--separateProfileRun")
    argv += ["--exportTimes=%s" % os.path.join(export_dir, "times.json"),
             "--exportProfile=%s" % os.path.join(export_dir, "profile.json")]
    if has_flag(version, "--exportLayerInfo"):
        argv += ["--profilingVerbosity=detailed", "--exportLayerInfo=%s" % os.path.join(export_dir, "layers.json")]
    if export_output:
        argv.append("--exportOutput=%s" % os.path.join(export_dir, "output.json"))
    return argv


def layer_info_unavailable(version):
    """Why trtexec of ``version`` cannot export per-layer information, or None when it can."""
    if has_flag(version, "--exportLayerInfo"):
        return None
    return ("TensorRT %d.%d's trtexec has no --exportLayerInfo or --profilingVerbosity (both first in "
            "sampleOptions.cpp@8.2.1, L827 and L646): the precision each layer ran in is unknown" % tuple(version[:2]))


# --- parsing trtexec's files ------------------------------------------------------------------------------


def _loads(text, what):
    """JSON as trtexec writes it: bare nan/inf (C++ streams) and unescaped backslashes in names are tolerated."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    fixed = _BARE_NUMBER.sub(_json_number, text)
    fixed = _ESCAPE.sub(lambda m: m.group(0) if m.group(1) else "\\\\", fixed)
    try:
        return json.loads(fixed)
    except ValueError as exc:
        raise TrtexecError("trtexec's %s file is not JSON: %s" % (what, exc)) from None


def _json_number(match):
    if match.group(3).lower() == "nan":
        return match.group(1) + "NaN"
    return match.group(1) + ("-Infinity" if match.group(2) else "Infinity")


def _number(value):
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parse_times(json_text, warmup_ms=None):
    """Per-inference times (ms) from ``--exportTimes``.

    Returns ``{"end_to_end", "gpu_compute", "enqueue", "h2d", "d2h", "host_wall", "warmup_dropped"}``: the lists
    hold one value per timed inference; ``end_to_end`` is ``latencyMs`` (H2D + compute + D2H), ``gpu_compute``
    ``computeMs``, ``enqueue`` ``endEnqMs - startEnqMs``, ``host_wall`` ``endD2hMs - startH2dMs`` (8.2's
    ``endToEndMs``). With ``warmup_ms``, records with ``startComputeMs < warmup_ms`` are warm-ups and dropped,
    trtexec's own rule (sampleReporting.cpp@8.2.1 L248); before 8.5 the file contains them.
    """
    records = _loads(json_text, "--exportTimes")
    if not isinstance(records, list):
        raise TrtexecError("trtexec's --exportTimes file is not a list of inferences")
    out = {"end_to_end": [], "gpu_compute": [], "enqueue": [], "h2d": [], "d2h": [], "host_wall": [],
           "warmup_dropped": 0}
    for record in records:
        if not isinstance(record, dict):
            continue
        start = _number(record.get("startComputeMs"))
        if warmup_ms is not None and start is not None and start < warmup_ms:
            out["warmup_dropped"] += 1
            continue
        latency = _number(record.get("latencyMs"))
        compute = _number(record.get("computeMs"))
        if latency is None or compute is None:
            continue
        out["end_to_end"].append(latency)
        out["gpu_compute"].append(compute)
        for key, (a, b) in (("enqueue", ("startEnqMs", "endEnqMs")), ("host_wall", ("startH2dMs", "endD2hMs"))):
            lo, hi = _number(record.get(a)), _number(record.get(b))
            if lo is not None and hi is not None:
                out[key].append(round(hi - lo, 6))  # trtexec prints 6 significant digits
        for key, name in (("h2d", "h2dMs"), ("d2h", "d2hMs")):
            if _number(record.get(name)) is not None:
                out[key].append(_number(record[name]))
    return out


_PROFILE_LINE = re.compile(r'"name" : "(?P<name>.*)", "timeMs" : (?P<time>[^,]+), "averageMs" : (?P<avg>[^,]+)'
                           r'(?:, "medianMs" : (?P<median>[^,]+))?, "percentage" : (?P<pct>[^ }]+) \}')


def _profile_records(json_text):
    try:
        return _loads(json_text, "--exportProfile")
    except TrtexecError:  # a layer name with a quote in it: trtexec does not escape names, read line by line
        items = []
        for line in json_text.splitlines():
            count = re.search(r'\{ "count" : (\d+) \}', line)
            if count:
                items.append({"count": int(count.group(1))})
                continue
            m = _PROFILE_LINE.search(line)
            if m:
                items.append({"name": m.group("name"), "timeMs": _float(m.group("time")),
                              "averageMs": _float(m.group("avg")), "medianMs": _float(m.group("median")),
                              "percentage": _float(m.group("pct"))})
        if not items:
            raise
        return items


def _float(text):
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def parse_profile(json_text):
    """Per-layer times from ``--exportProfile``: ``[{"name", "time_ms", "average_ms", "median_ms", "percentage"}]``.

    The first record of the file (``{"count": N}``, the profiled runs) is left out; ``median_ms`` is None before
    8.4.1, which did not write it. See :func:`profile_runs` for N.
    """
    items = _profile_records(json_text)
    layers = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and "name" in item:
            layers.append({"name": str(item["name"]), "time_ms": _number(item.get("timeMs")),
                           "average_ms": _number(item.get("averageMs")), "median_ms": _number(item.get("medianMs")),
                           "percentage": _number(item.get("percentage"))})
    return layers


def profile_runs(json_text):
    """The ``count`` of an ``--exportProfile`` file (how many inferences the profile averages), else None."""
    items = _profile_records(json_text)
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and "count" in item:
            return int(item["count"])
    return None


def parse_layer_info(json_text):
    """The engine inspector's document from ``--exportLayerInfo``: ``{"Layers": [...], "Bindings": [...]}``.

    The dict is returned as TensorRT wrote it, so ``trt_engine.summarize_layers(json.dumps(d), requested)``
    reads it; a bare list of layers is wrapped as ``{"Layers": list}``. See :func:`layer_info_is_detailed`.
    """
    data = _loads(json_text, "--exportLayerInfo")
    if isinstance(data, list):
        data = {"Layers": data}
    if not isinstance(data, dict) or not isinstance(data.get("Layers"), list):
        raise TrtexecError("trtexec's --exportLayerInfo file has no Layers list")
    return data


def layer_info_is_detailed(layer_info):
    """True when layers are objects with ``Inputs``/``Outputs`` (DETAILED), False for names only."""
    layers = (layer_info or {}).get("Layers") or []
    return bool(layers) and all(isinstance(layer, dict) for layer in layers)


def parse_output(json_text):
    """``--exportOutput``: ``{name: {"dims": [..], "values": [..]}}`` ("dimensions" is a string such as "1x10")."""
    items = _loads(json_text, "--exportOutput")
    out = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and "name" in item:
            dims = [int(d) for d in re.findall(r"-?\d+", str(item.get("dimensions", "")))]
            out[str(item["name"])] = {"dims": dims, "values": list(item.get("values") or [])}
    return out


# --- the log -----------------------------------------------------------------------------------------------


def _clean(line):
    return TIMESTAMP.sub("", line.strip())


def first_error(log_text):
    """The first error line that says why trtexec failed (timestamp removed).

    Generic follow-ups ("Assertion engine != nullptr failed", "Engine could not be created from network",
    "Building engine failed", "Engine set up failed", "Network validation failed", the ONNX parser's node dump,
    ...) are passed over when a more specific line exists; a parser line ending in ``:`` gets the unprefixed
    lines that follow it (the reason). None when the log has no error line at all.
    """
    lines = (log_text or "").splitlines()
    found = []
    for index, raw in enumerate(lines):
        line = _clean(raw)
        if not line or line.startswith("&&&&") or NOT_ERROR_LINE.search(line):
            continue
        if ERROR_LINE.search(line):
            found.append((index, line))
    if not found:
        return None
    specific = [item for item in found if not GENERIC.search(item[1])]
    index, line = (specific or found)[0]
    if line.endswith(":"):
        extra = []
        for raw in lines[index + 1:index + 4]:
            if not raw.strip() or TIMESTAMP.match(raw) or raw.startswith("&&&&"):
                break
            extra.append(raw.strip())
        if extra:
            line = "%s %s" % (line, " ".join(extra))
    return line


def banner(log_text):
    """trtexec's first ``&&&& RUNNING ...`` (or PASSED/FAILED) line, else None."""
    match = BANNER_LINE.search(log_text or "")
    return match.group(0).strip() if match else None


def _tail(text, n=LOG_TAIL_LINES):
    return (text or "").splitlines()[-n:]


# --- running ----------------------------------------------------------------------------------------------


def run_trtexec(argv, timeout_s=1800, cwd=None):
    """Run trtexec from an argument list (never a shell string); ``(returncode, log text)`` on success.

    stdout and stderr go to one temporary file (a verbose build log can be large) and are read back.
    Raises :class:`TrtexecError` with :func:`first_error` (or the signal, or the timeout) otherwise.
    """
    if isinstance(argv, (str, bytes)) or not argv or not all(isinstance(a, str) for a in argv):
        raise TrtexecError("trtexec's command must be a non-empty list of strings, not %r" % (argv,))
    argv = list(argv)
    timed_out = False
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        except OSError as exc:
            raise TrtexecError("cannot run %s: %s" % (argv[0], exc), argv=argv) from None
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            timed_out = True
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if timed_out:
        raise TrtexecError("trtexec did not finish within %d s (killed)" % timeout_s, code, text, argv)
    if code != 0:
        reason = first_error(text)
        if code < 0:
            why = "trtexec was killed by signal %d%s" % (-code, " (out of memory?)" if code == -9 else "")
            reason = "%s: %s" % (why, reason) if reason else why
        elif reason is None:
            reason = "trtexec exited with status %d and logged no error line" % code
        raise TrtexecError(reason, code, text, argv)
    return code, text


def _read(path):
    with open(path) as fh:
        return fh.read()


def _default_engine_path(work_dir, onnx_path, precision, version):
    stem = os.path.splitext(os.path.basename(onnx_path))[0]
    return os.path.join(work_dir, "%s.%s.trt%s.engine" % (stem, precision, ".".join(str(v) for v in version[:3])))


def bench_with_trtexec(trtexec, onnx_path, precision, work_dir, engine_path=None, version=None, batch=1,
                       input_name=None, input_shape=None, warmup=None, iterations=200, workspace_mib=1024,
                       timing_cache=None, warmup_ms=None, duration_s=0, strongly_typed=None, fp16_graph=None,
                       build_timeout_s=3600, run_timeout_s=1800):
    """Build (unless ``engine_path`` exists) and time one graph with trtexec; the raw facts it reports.

    ``version`` defaults to :func:`trtexec_version`; ``engine_path`` to a file in ``work_dir`` named after the
    graph, precision and version. ``warmup_ms`` is trtexec's time-based warm-up; ``warmup`` (a count of
    warm-up inferences, what the Python runner takes) becomes ``max(200, 2 * warmup)`` ms when ``warmup_ms``
    is not given. The engine is written to a temporary name and renamed when the build succeeded.

    Returns ``{"runner", "trtexec", "tensorrt_version", "banner", "argv", "build_argv", "latency_ms",
    "warmup_ms", "iterations", "layer_info", "layer_info_unavailable", "profile", "profile_runs",
    "engine_file", "cache_hit", "build_s", "input_shape", "log_tail", "build_log_tail"}``; ``latency_ms`` is
    :func:`parse_times`'s dict. Raises :class:`TrtexecError` when trtexec fails or writes no timings.
    """
    if version is None:
        version = trtexec_version(trtexec)
    version = tuple(int(v) for v in version[:3])
    if warmup_ms is None:
        warmup_ms = max(200, 2 * int(warmup)) if warmup else 200
    if not os.path.isdir(work_dir):
        os.makedirs(work_dir)
    if engine_path is None:
        engine_path = _default_engine_path(work_dir, onnx_path, precision, version)
    export_dir = tempfile.mkdtemp(prefix="trtexec-", dir=work_dir)
    try:
        cache_hit = os.path.isfile(engine_path) and os.path.getsize(engine_path) > 0
        build_argv_used, build_tail, build_s = None, None, 0.0
        if not cache_hit:
            tmp_engine = "%s.tmp-%d" % (engine_path, os.getpid())
            build_argv_used = build_argv(trtexec, version, onnx_path, tmp_engine, precision, export_dir, batch,
                                         input_name, input_shape, workspace_mib, timing_cache,
                                         strongly_typed=strongly_typed, fp16_graph=fp16_graph)
            start = time.time()
            try:
                _, build_log = run_trtexec(build_argv_used, build_timeout_s)
                if not (os.path.isfile(tmp_engine) and os.path.getsize(tmp_engine) > 0):
                    raise TrtexecError("trtexec exited 0 but wrote no engine to %s" % tmp_engine, 0,
                                       build_log, build_argv_used)
            except Exception:
                if os.path.exists(tmp_engine):
                    os.remove(tmp_engine)
                raise
            build_s = round(time.time() - start, 3)
            build_tail = _tail(build_log)
            os.replace(tmp_engine, engine_path)
        argv = build_argv(trtexec, version, onnx_path, engine_path, precision, export_dir, batch, input_name,
                          input_shape, workspace_mib, None, warmup_ms, iterations, load_engine=True,
                          duration_s=duration_s)
        _, log = run_trtexec(argv, run_timeout_s)
        times_path = os.path.join(export_dir, "times.json")
        if not os.path.isfile(times_path):
            raise TrtexecError("trtexec wrote no --exportTimes file", 0, log, argv)
        times = parse_times(_read(times_path), warmup_ms)
        if not times["end_to_end"]:
            raise TrtexecError("trtexec's --exportTimes file has no timed inference", 0, log, argv)
        layer_info, unavailable = None, layer_info_unavailable(version)
        layers_path = os.path.join(export_dir, "layers.json")
        if unavailable is None:
            if not os.path.isfile(layers_path):
                unavailable = "trtexec wrote no --exportLayerInfo file"
            else:
                layer_info = parse_layer_info(_read(layers_path))
                if not layer_info_is_detailed(layer_info):
                    unavailable = ("the engine holds layer names only (built without --profilingVerbosity=detailed): "
                                   "no per-layer precision")
                    layer_info = None
        profile_path = os.path.join(export_dir, "profile.json")
        profile = runs = None
        if os.path.isfile(profile_path):
            text = _read(profile_path)
            profile, runs = parse_profile(text), profile_runs(text)
        return {"runner": "trtexec", "trtexec": trtexec, "tensorrt_version": "%d.%d.%d" % version,
                "banner": banner(log), "argv": argv, "build_argv": build_argv_used, "latency_ms": times,
                "warmup_ms": warmup_ms, "iterations": iterations, "layer_info": layer_info,
                "layer_info_unavailable": unavailable, "profile": profile, "profile_runs": runs,
                "engine_file": engine_path, "cache_hit": cache_hit, "build_s": build_s,
                "input_shape": list(input_shape) if input_shape else None, "log_tail": _tail(log),
                "build_log_tail": build_tail}
    finally:
        shutil.rmtree(export_dir, ignore_errors=True)
