"""``jetson/trtexec_runner.py`` against trtexec's real flags and file formats, and through a stand-in trtexec.

What this proves:
- the argument list per TensorRT release uses only flags that release's trtexec parses, per NVIDIA/TensorRT's
  ``samples/common/sampleOptions.cpp`` at the release tag (``O@tag Lnnn`` below: the
  ``getAndDelOption(arguments, "--flag", ...)`` line; "absent" means no such line, and trtexec then fails with
  ``Unknown option``), and avoids the ones that tag deprecates;
- the parsers read trtexec's files as recorded by NVIDIA (``tests/data/trtexec_samples/``, provenance in its
  README: TREx's recorded 8.4-era exports, a TensorRT 10.16.1 ``--exportLayerInfo``) and, where no recording
  exists (8.0/8.2 ``--exportTimes`` with ``endToEndMs``, ``--exportOutput``), files made from the writer code;
- ``first_error`` picks the cause out of real failure logs (NVIDIA's TREx README, GitHub issues);
- ``bench_with_trtexec`` plumbing: build once into a temporary name, rename, time the cached engine, parse the
  exported files, reuse the engine next time, surface a failed build's reason, and never build a shell string.
  The stand-in ``trtexec`` is a Python script written by the test; it refuses flags its release does not parse
  (its own table below, typed from the sources independently of the module's) and writes the sample files.

What it does not prove: that a real trtexec on a board accepts these flags and writes these files; only the
source reading (cited per assertion) says so. No TensorRT or GPU is used here.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from jetson import trt_engine
from jetson import trtexec_runner as runner

pytestmark = pytest.mark.contract
DATA = Path(__file__).parent / "data" / "trtexec_samples"

V801, V821, V852, V861, V1030, V1110 = (8, 0, 1), (8, 2, 1), (8, 5, 2), (8, 6, 1), (10, 3, 0), (11, 1, 0)


def _sample(name):
    return (DATA / name).read_text()


def _build(version, precision="int8", **kw):
    return runner.build_argv("trtexec", version, "m.onnx", "m.engine", precision, "/x", **kw)


def _time(version, **kw):
    return runner.build_argv("trtexec", version, "m.onnx", "m.engine", "int8", "/x", load_engine=True, **kw)


def _names(argv):
    return {a.split("=", 1)[0] for a in argv[1:]}


# --- argument lists per release -----------------------------------------------------------------------------


def test_tensorrt_8_0_jetpack_4_6_0():
    build, timed = _build(V801, input_name="input", input_shape=[1, 3, 32, 32]), _time(V801)
    assert "--explicitBatch" in build  # O@8.0.1 L529; ONNX needs it without --shapes (L541-555)
    assert "--workspace=1024" in build  # O@8.0.1 L565 (MiB); --memPoolSize absent in O@8.0.1
    assert "--nvtxMode=verbose" in build  # O@8.0.1 L609; --profilingVerbosity absent in O@8.0.1
    assert "--buildOnly" in build and "--skipInference" not in build  # O@8.0.1 L748; --skipInference absent
    assert {"--int8", "--fp16"} <= set(build)  # O@8.0.1 L580, L579
    assert "--shapes=input:1x3x32x32" in build  # O@8.0.1 L757
    assert "--separateProfileRun" in timed  # O@8.0.1 L747
    assert {"--exportTimes", "--exportProfile"} <= _names(timed)  # O@8.0.1 L787, L789
    assert "--exportLayerInfo" not in _names(timed)  # absent in O@8.0.1 (first at O@8.2.1 L827)
    assert "8.2" in runner.layer_info_unavailable(V801)


def test_tensorrt_8_2_jetson_nano():
    build, timed = _build(V821), _time(V821)
    assert "--explicitBatch" not in build  # O@8.2.1 L546-549: "deprecated and has no effect"
    assert "--workspace=1024" in build and "--memPoolSize" not in _names(build)  # O@8.2.1 L574; no memPoolSize
    assert "--profilingVerbosity=detailed" in build  # O@8.2.1 L646 (--nvtxMode is its deprecated alias, L641)
    assert "--buildOnly" in build  # O@8.2.1 L802; --skipInference absent in O@8.2.1
    assert "--exportLayerInfo=/x/layers.json" in timed  # O@8.2.1 L827
    assert "--warmUp=200" in timed and "--iterations=200" in timed and "--duration=0" in timed  # L788, L786, L787
    assert runner.layer_info_unavailable(V821) is None


def test_tensorrt_8_5_jetpack_5_1():
    build = _build(V852)
    assert "--memPoolSize=workspace:1024" in build  # O@8.5.2 L797 (MiB; first at O@8.4.1 L698)
    assert "--workspace" not in _names(build)  # deprecated from O@8.4.1 L692-695
    assert "--buildOnly" in build  # O@8.5.2 L849; --skipInference absent in O@8.5.2
    assert "--memPoolSize=workspace:1024" in _build((8, 4, 1))


def test_tensorrt_8_6_jetpack_6_0():
    build = _build(V861)
    assert "--skipInference" in build and "--buildOnly" not in build  # O@v8.6.1 L968; L964 alias, deprecated
    assert {"--int8", "--fp16"} <= set(build)  # O@v8.6.1 L953, L952


def test_tensorrt_10_3_jetpack_6_1():
    build, timed = _build(V1030), _time(V1030)
    for gone in ("--explicitBatch", "--workspace", "--buildOnly", "--nvtxMode"):  # all absent in O@v10.3.0
        assert gone not in _names(build) | _names(timed)
    assert {"--int8", "--fp16"} <= set(build)  # O@v10.3.0 L1228, L1226
    assert "--skipInference" in build and "--memPoolSize=workspace:1024" in build  # O@v10.3.0 L1259, L1124
    assert "--separateProfileRun" in timed  # O@v10.3.0 L1619
    typed = _build(V1030, "fp16", strongly_typed=True)
    assert "--stronglyTyped" in typed and "--fp16" not in typed  # O@v10.3.0 L1231-1245 disables --fp16 with it


def test_tensorrt_11_strongly_typed_only():
    for precision in ("fp32", "fp16", "int8"):
        build = _build(V1110, precision)
        assert not {"--fp16", "--int8", "--best"} & _names(build)  # absent from trtexec's options in O@v11.1
        assert "--stronglyTyped" not in build  # O@v11.1 L1214, help L2752: "[Deprecated] ... a no-op"
    timed = _time(V1110)
    assert "--separateProfileRun" not in timed  # O@v11.1 L1722: deprecated, always separate
    assert {"--includeDataTransfers", "--noCudaGraph"} <= set(timed)  # O@v11.1 L1696, L1717: 11's defaults changed
    with pytest.raises(runner.TrtexecError, match="strongly typed"):
        _build(V1110, "fp16", strongly_typed=False)
    with pytest.raises(runner.TrtexecError, match="FP16 graph"):
        _build(V1110, "fp16", fp16_graph=False)


def test_combinations_a_release_cannot_do():
    with pytest.raises(runner.TrtexecError, match="--stronglyTyped"):
        _build(V821, strongly_typed=True)  # absent in O@8.2.1 (first in 9.x, O@v10.0.0 L1201)
    with pytest.raises(runner.TrtexecError, match="not supported"):
        _build((7, 1, 3))
    with pytest.raises(runner.TrtexecError, match="precision"):
        _build(V821, "bf16")
    with pytest.raises(runner.TrtexecError, match="quoting"):
        _build(V821, input_name="in:0", input_shape=[1, 3])  # quoted names: O@8.4.1 on
    assert "--shapes='in:0':1x3" in _build(V852, input_name="in:0", input_shape=[1, 3])
    assert "--shapes=x:8x3" in _build(V852, batch=8, input_name="x", input_shape=[-1, 3])  # batch fills -1 only
    assert "--shapes=x:4x3" in _build(V852, batch=8, input_name="x", input_shape=[4, 3])


@pytest.mark.parametrize("version", [V801, V821, (8, 4, 1), V852, V861, V1030, (10, 16, 1), V1110])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_every_flag_used_is_parsed_and_not_deprecated_there(version, precision):
    used = _names(_build(version, precision, timing_cache="t.cache", input_name="x", input_shape=[1, 3]))
    used |= _names(_time(version, input_name="x", input_shape=[1, 3]))
    assert used <= accepted_flags(version), used - accepted_flags(version)
    assert not used & deprecated_flags(version)


# --- the banner ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, version", [
    # recorded: NVIDIA/trt-samples-for-hackathon-cn@48a13cbe cookbook/08-Tool/trtexec/result-FP32.txt L1
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8203] # trtexec --onnx=model.onnx", (8, 2, 3)),
    # recorded: NVIDIA/TensorRT@8.5.2 tools/experimental/trt-engine-explorer/examples/pytorch/resnet/README.md L58
    ("&&&& FAILED TensorRT.trtexec [TensorRT v8205] # trtexec --verbose --nvtxMode=verbose --buildOnly", (8, 2, 5)),
    # recorded: github.com/NVIDIA/TensorRT/issues/2471
    ("&&&& FAILED TensorRT.trtexec [TensorRT v8501] # C:\\repos\\TensorRT-8.5.1.7\\bin\\trtexec.exe", (8, 5, 1)),
    # recorded: github.com/NVIDIA/TensorRT/issues/3734 (install path shortened)
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8601] # C:\\TensorRT-8.6.1.6\\bin\\trtexec.exe", (8, 6, 1)),
    # recorded: github.com/NVIDIA/TensorRT/issues/3894
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v100001] # /opt/tritonserver/TensorRT/build/trtexec", (10, 0, 1)),
    # recorded: github.com/NVIDIA/TensorRT/issues/4036
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v100200] # D:\\TensorRT-10.2.0.19\\bin\\trtexec.exe", (10, 2, 0)),
    # recorded: github.com/NVIDIA/TensorRT/issues/4587 (10.4 on: " [b<build>]", logging.h@v10.4.0)
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v101303] [b9] # ./trtexec --onnx=ISTD_NS.onnx", (10, 13, 3)),
    # recorded: NVIDIA/trt-samples-for-hackathon-cn@353a4d73 cookbook/07-Tool/trtexec/result-04.log L1
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v101601] [b11] # trtexec --onnx=model-trained.onnx", (10, 16, 1)),
    # constructed: kNV_TENSORRT_VERSION_IMPL = major*1000 + minor*100 + patch (NvInferRuntimeCommon.h@8.2.1 L86)
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # /usr/src/tensorrt/bin/trtexec --help", (8, 2, 1)),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8001] # trtexec", (8, 0, 1)),
    # constructed: NV_TENSORRT_VERSION_INT = major*10000 + ... (NvInferRuntimeBase.h@v10.3.0 L89-93; v11.1 L98-102,
    # build 106 from NvInferVersion.h@v11.1 L29)
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec", (10, 3, 0)),
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v110100] [b106] # trtexec", (11, 1, 0)),
    ("v100300", (10, 3, 0)),
    # recorded: github.com/NVIDIA/TensorRT/issues/3747
    ("[03/28/2024-07:10:12] [I] TensorRT version: 8.6.3", (8, 6, 3)),
    # recorded: TensorRT 7.x prints no version (github.com/NobuoTsukamoto/tensorrt-examples/issues/3)
    ("&&&& RUNNING TensorRT.trtexec # /usr/src/tensorrt/bin/trtexec --onnx=/home/jetson/ssd.onnx", None),
])
def test_parse_version(text, version):
    assert runner.parse_version(text) == version


# --- the recorded and constructed files ---------------------------------------------------------------------


def test_times_recorded_by_nvidia_drop_the_warm_up_trtexec_wrote_before_8_5():
    text = _sample("times-trex-a100-resnet-qat.json")  # 7 of 3614 records; 222 were warm-ups (< 200 ms)
    times = runner.parse_times(text, warmup_ms=200)
    assert times["warmup_dropped"] == 4 and len(times["end_to_end"]) == 3
    assert times["end_to_end"] == [0.881668, 0.883713, 0.881592]  # latencyMs
    assert times["gpu_compute"] == times["end_to_end"]  # recorded with --noDataTransfers: h2dMs = d2hMs = 0
    assert times["h2d"] == [0.0, 0.0, 0.0] and times["enqueue"][0] == pytest.approx(0.007)
    assert len(runner.parse_times(text)["end_to_end"]) == 7  # no warm-up given: every record
    older = runner.parse_times(_sample("times-trex-mobilenet-qat-2022-04.json"), warmup_ms=200)
    assert older["warmup_dropped"] == 4 and len(older["gpu_compute"]) == 3


def test_times_of_8_2_keep_end_to_end_as_host_latency_and_end_to_end_ms_as_host_wall():
    times = runner.parse_times(_sample("times-8.2.1-constructed.json"), warmup_ms=200)
    assert times["warmup_dropped"] == 2
    assert times["end_to_end"] == [1.2749, 1.2862, 1.2975]  # latencyMs = h2d + compute + d2h
    assert times["host_wall"] == pytest.approx([1.277, 1.2883, 1.2996], abs=1e-3)  # = endToEndMs of 8.0/8.2
    records = json.loads(_sample("times-8.2.1-constructed.json"))
    assert list(records[0])[-1] == "endToEndMs" and len(records[0]) == 13  # R@8.2.1 L286-292


def test_times_accept_the_bare_nan_a_cpp_stream_prints():
    text = '[\n  { "startComputeMs" : 300, "computeMs" : nan, "latencyMs" : 1 }\n, { "startComputeMs" : 301, ' \
           '"computeMs" : 0.5, "latencyMs" : -nan }\n]\n'
    times = runner.parse_times(text)
    assert times["end_to_end"][0] == 1.0 and times["gpu_compute"][1] == 0.5
    with pytest.raises(runner.TrtexecError, match="not a list"):
        runner.parse_times('{"a": 1}')


def test_profiles_before_and_after_8_4_1():
    new = runner.parse_profile(_sample("profile-trex-a100-resnet-qat.json"))
    assert [p["name"] for p in new][:2] == ["QuantizeLinear_2", "conv1.weight + QuantizeLinear_7 + Conv_9"]
    assert new[1]["average_ms"] == 0.201728 and new[1]["median_ms"] == 0.201728  # medianMs: R@8.4.1 L393 on
    assert runner.profile_runs(_sample("profile-trex-a100-resnet-qat.json")) == 1
    old = runner.parse_profile(_sample("profile-trex-mobilenet-qat-2022-04.json"))
    assert len(old) == 4 and all(p["median_ms"] is None for p in old)  # R@8.2.1 L370-374 writes no medianMs
    assert runner.profile_runs(_sample("profile-trex-mobilenet-qat-2022-04.json")) == 4216


def test_profile_with_a_layer_name_trtexec_did_not_escape():
    text = ('[\n  { "count" : 10 }\n, { "name" : "Conv "x" + Relu", "timeMs" : 1.5, "averageMs" : 0.15, '
            '"medianMs" : 0.14, "percentage" : 100 }\n]\n')  # R@v10.3.0 L447: name written as is
    assert runner.parse_profile(text) == [{"name": 'Conv "x" + Relu', "time_ms": 1.5, "average_ms": 0.15,
                                           "median_ms": 0.14, "percentage": 100.0}]
    assert runner.profile_runs(text) == 10


def test_layer_information_feeds_summarize_layers():
    a100 = runner.parse_layer_info(_sample("layers-trex-a100-resnet-qat.json"))
    assert runner.layer_info_is_detailed(a100) and a100["Bindings"] == ["input.1", "422"]
    assert trt_engine.summarize_layers(json.dumps(a100), "int8")["by_precision"] == {"INT8": 1, "FP32": 1}
    mobilenet = runner.parse_layer_info(_sample("layers-trex-mobilenet-qat-2022-04.json"))
    assert trt_engine.summarize_layers(json.dumps(mobilenet), "int8")["by_precision"] == {"INT8": 2, "FP32": 1}
    recent = runner.parse_layer_info(_sample("layers-hackathon-10.16.1-model-trained.json"))
    assert recent["Bindings"] == ["x", "y", "z"]  # 10.16 writes "Float", not "Row major linear FP32"
    assert trt_engine.summarize_layers(json.dumps(recent), "fp32")["by_precision"] == {"FP32": 8, "INT32": 1}
    # without --profilingVerbosity=detailed the inspector lists names only (trex/parser.py@v10.16 L46-50)
    names_only = runner.parse_layer_info('{"Layers": ["conv1 + relu1", "fc"], "Bindings": ["input", "logits"]}')
    assert not runner.layer_info_is_detailed(names_only)
    assert runner.parse_layer_info('[{"Name": "a"}]') == {"Layers": [{"Name": "a"}]}


def test_exported_output_constructed_from_the_writer():
    out = runner.parse_output(_sample("output-8.2.1-constructed.json"))
    assert out["logits"]["dims"] == [1, 10] and len(out["logits"]["values"]) == 10
    other = runner.parse_output('[{ "name" : "y", "dimensions" : "(2, 3)", "values" : [ 1, 2 ] }]')
    assert other["y"] == {"dims": [2, 3], "values": [1, 2]}


# --- errors from real logs ----------------------------------------------------------------------------------


def test_first_error_on_real_failures():
    # TensorRT 8.2.5, NVIDIA/TensorRT@8.5.2 trt-engine-explorer/examples/pytorch/resnet/README.md L36-58
    assert runner.first_error(_sample("log-8.2.5-onnx-parse-failure.txt")) == (
        "[E] Error[3]: onnx::QuantizeLinear_429: invalid weights type of Int8")
    # TensorRT 8.5.1, github.com/NVIDIA/TensorRT/issues/2471: a specific assertion, then the generic one
    got = runner.first_error(_sample("log-8.5.1-build-failure-issue-2471.txt"))
    assert "setupKernelFused" in got and "engine != nullptr" not in got
    got = runner.first_error(_sample("log-8.5.10-build-failure-issue-3883.txt"))  # issues/3883
    assert "checkSanity" in got
    # TensorRT 8.2.1 without INT8 hardware, github.com/NVIDIA/TensorRT/issues/3399 (the warning is skipped)
    got = runner.first_error(_sample("log-8.2.1-qdq-without-int8-issue-3399.txt"))
    assert got.startswith("[E] [TRT] 9: ") and "require hardware with Int8 support" in got
    # TensorRT 8.6.1, github.com/AUTOMATIC1111/stable-diffusion-webui-tensorrt/issues/54: the reason is on the
    # unprefixed line after the parser's "In function ...:"
    got = runner.first_error(_sample("log-8.6.1-plugin-parse-failure-a1111-54.txt"))
    assert "importFallbackPluginImporter:" in got and "Plugin not found" in got


def test_first_error_falls_back_to_a_generic_line_and_reads_unknown_options():
    generic = ("[01/01/2026-00:00:00] [E] Engine could not be created from network\n"
               "[01/01/2026-00:00:00] [E] Building engine failed\n")
    assert runner.first_error(generic) == "[E] Engine could not be created from network"
    # "Unknown option: " << arg.first << " " << arg.second (trtexec.cpp@8.2.1 L117)
    assert runner.first_error("[01/01/2026-00:00:00] [E] Unknown option: --fp16 \n&&&& FAILED x") == (
        "[E] Unknown option: --fp16")
    assert runner.first_error("[01/01/2026-00:00:00] [W] [TRT] Error Code 1 in a warning\n") is None


# --- the whole path, through a stand-in trtexec ---------------------------------------------------------------

ALWAYS = {"--onnx", "--saveEngine", "--loadEngine", "--shapes", "--minShapes", "--optShapes", "--maxShapes",
          "--timingCacheFile", "--warmUp", "--iterations", "--duration", "--avgRuns", "--separateProfileRun",
          "--exportTimes", "--exportOutput", "--exportProfile", "--loadInputs", "--verbose", "--help",
          "--useCudaGraph", "--noDataTransfers"}  # parsed at every tag from 8.0.1 to v11.1 (module table)


def accepted_flags(version):
    """The stand-in's own reading of O@tag (independent of the module's FLAG_VERSIONS)."""
    vm = tuple(version[:2])
    flags = set(ALWAYS)
    if vm < (11, 0):
        flags |= {"--fp16", "--int8", "--best"}  # absent in O@v11.0 and v11.1
    if vm < (10, 0):
        flags |= {"--explicitBatch", "--workspace", "--nvtxMode", "--buildOnly"}  # absent in O@v10.0.0
    if vm >= (8, 4):
        flags.add("--memPoolSize")  # O@8.4.1 L698
    if vm >= (8, 2):
        flags |= {"--profilingVerbosity", "--dumpLayerInfo", "--exportLayerInfo"}  # O@8.2.1 L646, L823, L827
    if vm >= (8, 6):
        flags.add("--skipInference")  # O@v8.6.1 L968
    if vm >= (10, 0):
        flags.add("--stronglyTyped")  # O@v10.0.0 L1201
    if vm >= (11, 0):
        flags |= {"--includeDataTransfers", "--noCudaGraph"}  # O@v11.0 L1470, L1491
    return flags


def deprecated_flags(version):
    """Parsed but deprecated there (a warning; the next release may drop them)."""
    vm = tuple(version[:2])
    flags = set()
    if (8, 2) <= vm < (10, 0):
        flags |= {"--explicitBatch", "--nvtxMode"}  # O@8.2.1 L547-549, L641-644
    if (8, 4) <= vm < (10, 0):
        flags.add("--workspace")  # O@8.4.1 L692-695
    if (8, 6) <= vm < (10, 0):
        flags.add("--buildOnly")  # O@v8.6.1 L964-967
    # Not listed: 10.14-10.16 warn on --fp16/--int8/--best ("Weakly-typed networks have been deprecated", O@v10.16
    # L1310-1317) but still build with them, and a weakly typed build is what an FP32 graph needs before 11.
    if vm >= (11, 0):
        flags |= {"--stronglyTyped", "--separateProfileRun", "--useCudaGraph", "--noDataTransfers"}  # O@v11.1
    return flags


FAKE = r'''#!{python} -u
import json, os, shutil, signal, sys, time
CONFIG = json.load(open({config!r}))
version = tuple(CONFIG["version"])
number = version[0] * 10000 + version[1] * 100 + version[2] if version[0] >= 10 else \
    version[0] * 1000 + version[1] * 100 + version[2]
with open(CONFIG["calls"], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\n")
print("&&&& RUNNING TensorRT.trtexec [TensorRT v%d] # %s" % (number, " ".join(sys.argv)))
args = {{}}
for arg in sys.argv[1:]:
    name, _, value = arg.partition("=")
    args[name] = value
bad = [a for a in args if a not in CONFIG["accepted"]]
if bad:
    for a in bad:
        print("[12/03/2026-10:00:00] [E] Unknown option: %s %s" % (a, args[a]), file=sys.stderr)
    print("&&&& FAILED TensorRT.trtexec [TensorRT v%d] # %s" % (number, " ".join(sys.argv)))
    sys.exit(1)
if "--help" in args:
    print("=== Model Options ===")
    sys.exit(0)
if CONFIG.get("mode") == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if CONFIG.get("mode") == "hang":
    time.sleep(30)
if "--onnx" in args:
    if CONFIG.get("mode") == "fail_build":
        sys.stderr.write(open(CONFIG["fail_log"]).read())
        print("&&&& FAILED TensorRT.trtexec [TensorRT v%d] # %s" % (number, " ".join(sys.argv)))
        sys.exit(1)
    with open(args["--saveEngine"], "wb") as fh:
        fh.write(b"fake serialized engine")
else:
    if not os.path.isfile(args["--loadEngine"]):
        print("[12/03/2026-10:00:00] [E] Error loading engine file: " + args["--loadEngine"], file=sys.stderr)
        sys.exit(1)
    shutil.copy(CONFIG["times"], args["--exportTimes"])
    shutil.copy(CONFIG["profile"], args["--exportProfile"])
    if "--exportLayerInfo" in args:
        shutil.copy(CONFIG["layers"], args["--exportLayerInfo"])
print("&&&& PASSED TensorRT.trtexec [TensorRT v%d] # %s" % (number, " ".join(sys.argv)))
'''


def _fake_trtexec(tmp_path, version, mode=None, fail_log=None):
    vm = tuple(version[:2])
    config = {
        "version": list(version), "accepted": sorted(accepted_flags(version)), "calls": str(tmp_path / "calls.jsonl"),
        "mode": mode, "fail_log": str(fail_log) if fail_log else None,
        "times": str(DATA / ("times-8.2.1-constructed.json" if vm < (8, 4) else "times-trex-a100-resnet-qat.json")),
        "profile": str(DATA / ("profile-trex-mobilenet-qat-2022-04.json" if vm < (8, 4)
                               else "profile-trex-a100-resnet-qat.json")),
        "layers": str(DATA / ("layers-trex-mobilenet-qat-2022-04.json" if vm < (10, 0)
                              else "layers-hackathon-10.16.1-model-trained.json")),
    }
    config_path = tmp_path / "fake-config.json"
    config_path.write_text(json.dumps(config))
    exe = tmp_path / "bin" / "trtexec"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text(FAKE.format(python=sys.executable, config=str(config_path)))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(exe)


def _calls(tmp_path):
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_bench_on_the_nano_builds_once_then_times_the_cached_engine(tmp_path):
    trtexec = _fake_trtexec(tmp_path, V821)
    work = tmp_path / "cache"
    facts = runner.bench_with_trtexec(trtexec, str(tmp_path / "model.int8.onnx"), "int8", str(work),
                                      input_name="input", input_shape=[1, 3, 32, 32], iterations=50)
    build, load = [c for c in _calls(tmp_path) if "--help" not in c]
    assert _calls(tmp_path)[0] == ["--help"]  # the version came from the banner
    assert facts["tensorrt_version"] == "8.2.1" and facts["banner"].startswith("&&&& RUNNING TensorRT.trtexec "
                                                                                 "[TensorRT v8201] # ")
    assert any(a.startswith("--saveEngine=") and ".tmp-" in a for a in build) and "--buildOnly" in build
    assert "--loadEngine=" + facts["engine_file"] in load and "--iterations=50" in load
    assert Path(facts["engine_file"]).read_bytes() == b"fake serialized engine"
    assert not any(p.name.startswith("trtexec-") for p in work.iterdir())  # the export folder is cleaned up
    assert facts["latency_ms"]["end_to_end"] == [1.2749, 1.2862, 1.2975] and facts["latency_ms"]["warmup_dropped"] == 2
    assert facts["layer_info_unavailable"] is None
    assert trt_engine.summarize_layers(json.dumps(facts["layer_info"]), "int8")["by_precision"]["INT8"] == 2
    assert facts["profile"][0]["name"] == "QuantizeLinear_2" and facts["profile_runs"] == 4216
    assert facts["cache_hit"] is False and facts["build_s"] >= 0 and facts["argv"][0] == trtexec
    assert facts["log_tail"][-1].startswith("&&&& PASSED")

    again = runner.bench_with_trtexec(trtexec, str(tmp_path / "model.int8.onnx"), "int8", str(work),
                                      engine_path=facts["engine_file"], version=V821,
                                      input_name="input", input_shape=[1, 3, 32, 32])
    assert again["cache_hit"] is True and again["build_argv"] is None and again["build_s"] == 0.0
    assert len(_calls(tmp_path)) == 4 and "--loadEngine" in _calls(tmp_path)[-1][0]


def test_bench_keeps_the_call_signature_trt_bench_uses(tmp_path):
    trtexec = _fake_trtexec(tmp_path, V852)
    engine = str(tmp_path / "key.engine")
    # trt_bench.time_trtexec: (trtexec, path, precision, cache_dir, engine_path, version, batch=..., input_name=...,
    # input_shape=..., warmup=..., iterations=..., workspace_mib=..., timing_cache=...)
    facts = runner.bench_with_trtexec(trtexec, "m.onnx", "fp16", str(tmp_path), engine, V852, batch=1,
                                      input_name="input", input_shape=[1, 3, 32, 32], warmup=20, iterations=100,
                                      workspace_mib=256, timing_cache=str(tmp_path / "t.cache"))
    build = _calls(tmp_path)[0]
    assert "--memPoolSize=workspace:256" in build and "--fp16" in build and "--int8" not in build
    assert "--timingCacheFile=" + str(tmp_path / "t.cache") in build
    assert facts["warmup_ms"] == 200 and "--warmUp=200" in facts["argv"]
    assert facts["latency_ms"]["end_to_end"] == [0.881668, 0.883713, 0.881592]
    assert facts["latency_ms"]["gpu_compute"] and facts["engine_file"] == engine


def test_bench_on_tensorrt_8_0_has_no_layer_information(tmp_path):
    trtexec = _fake_trtexec(tmp_path, V801)  # the stand-in refuses --exportLayerInfo, as O@8.0.1 would
    facts = runner.bench_with_trtexec(trtexec, "m.onnx", "fp16", str(tmp_path), version=V801)
    assert facts["layer_info"] is None and "8.2" in facts["layer_info_unavailable"]
    assert facts["latency_ms"]["end_to_end"] and "--explicitBatch" in facts["build_argv"]


@pytest.mark.parametrize("version", [V1030, V1110])
def test_bench_on_jetpack_6_and_tensorrt_11(tmp_path, version):
    trtexec = _fake_trtexec(tmp_path, version)  # on 11.1 it refuses --fp16, as O@v11.1 would
    facts = runner.bench_with_trtexec(trtexec, "model.fp16.onnx", "fp16", str(tmp_path), version=version)
    assert facts["layer_info"]["Bindings"] == ["x", "y", "z"] and facts["profile"][0]["median_ms"] == 0.06144
    assert ("--fp16" in facts["build_argv"]) == (version < (11, 0))


def test_bench_reports_tensorrts_reason_when_the_nano_cannot_build_int8(tmp_path):
    # TensorRT 8.2.1's two lines from github.com/NVIDIA/TensorRT/issues/3399, then the follow-ups trtexec 8.2.1
    # prints (constructed from sampleEngines.cpp@8.2.1 L874, L928, L1073 and trtexec.cpp@8.2.1 L187)
    log = tmp_path / "nano-int8.log"
    log.write_text(_sample("log-8.2.1-qdq-without-int8-issue-3399.txt")
                   + _sample("log-8.2.1-follow-ups-constructed.txt"))
    trtexec = _fake_trtexec(tmp_path, V821, mode="fail_build", fail_log=log)
    engine = tmp_path / "m.engine"
    with pytest.raises(runner.TrtexecError, match="require hardware with Int8 support") as info:
        runner.bench_with_trtexec(trtexec, "m.onnx", "int8", str(tmp_path), str(engine), V821)
    assert info.value.returncode == 1 and info.value.log_tail[-1].startswith("&&&& FAILED")
    assert not engine.exists() and not list(tmp_path.glob("m.engine.tmp-*"))


def test_run_trtexec_refuses_shell_strings_and_reports_signals_and_timeouts(tmp_path):
    with pytest.raises(runner.TrtexecError, match="list of strings"):
        runner.run_trtexec("trtexec --onnx=m.onnx")
    with pytest.raises(runner.TrtexecError, match="cannot run"):
        runner.run_trtexec([str(tmp_path / "missing-trtexec"), "--help"])
    killed = _fake_trtexec(tmp_path, V821, mode="kill")
    with pytest.raises(runner.TrtexecError, match="signal 9 .out of memory"):
        runner.run_trtexec([killed, "--onnx=m.onnx", "--saveEngine=m.engine"])
    hung = _fake_trtexec(tmp_path, V821, mode="hang")
    with pytest.raises(runner.TrtexecError, match="did not finish within 1 s"):
        runner.run_trtexec([hung, "--onnx=m.onnx", "--saveEngine=m.engine"], timeout_s=1)
    fine = _fake_trtexec(tmp_path, V821)
    code, text = runner.run_trtexec([fine, "--help"])
    assert code == 0 and runner.parse_version(text) == V821


def test_unknown_option_from_the_stand_in_surfaces_as_the_error(tmp_path):
    trtexec = _fake_trtexec(tmp_path, V1110)
    with pytest.raises(runner.TrtexecError, match=r"Unknown option: --fp16"):
        runner.run_trtexec([trtexec, "--onnx=m.onnx", "--fp16"])


def test_find_trtexec(tmp_path, monkeypatch):
    exe = _fake_trtexec(tmp_path, V821)
    monkeypatch.setenv(runner.ENV_TRTEXEC, exe)
    assert runner.find_trtexec() == exe
    monkeypatch.delenv(runner.ENV_TRTEXEC)
    monkeypatch.setenv("PATH", str(Path(exe).parent) + os.pathsep + os.environ.get("PATH", ""))
    assert runner.find_trtexec() == exe
    assert runner.find_trtexec([str(tmp_path / "nope"), None]) is None
    assert runner.trtexec_version(exe) == V821
