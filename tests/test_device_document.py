"""What a device sends back is validated on the workstation before use: each malformed answer is one line.

The answers are the kinds found by sending hostile device output at ``bench --device`` (issue 16): missing
fields, latencies that are text, NaN, empty or negative, lists where objects belong, a JSON array instead of
the document. Each must end in one ``RemoteError`` line saying "the device program ... returned ...", never a
KeyError/TypeError later when the numbers are used.
"""

from __future__ import annotations

import copy
import json

import pytest

from sqakd_edge.bench import remote
from sqakd_edge.errors import RemoteError

GOOD = {
    "schema": remote.DEVICE_SCHEMA, "schema_version": remote.DEVICE_SCHEMA_VERSION, "platform": {}, "graphs": {},
    "runs": [{"graph": "fp32", "precision": "fp32", "batch": 1, "status": "ok", "runtime": "tensorrt",
              "latency_ms": {"end_to_end": [1.5, 1.6], "gpu_compute": [1.0, 1.1]}, "layers": {}},
             {"graph": "int8", "precision": "int8", "batch": 1, "status": "not-buildable", "reason": "no INT8"}],
    "notes": [],
}


def _answer(document) -> remote._Completed:
    return remote._Completed(0, (json.dumps(document) + "\n").encode(), [])


def _mutated(path, value):
    doc = copy.deepcopy(GOOD)
    *parents, last = path
    target = doc
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return doc


def test_a_good_document_passes():
    assert remote._parse_document(_answer(GOOD), "nano") == GOOD
    assert remote.measurements_from_document(GOOD)[0]["samples_ms"] == [1.5, 1.6]


CASES = [
    (("runs", 0, "graph"), KeyError, "runs[0].graph"),
    (("runs", 0, "latency_ms", "end_to_end"), ["1.5", "x"], "not a positive finite number"),
    (("runs", 0, "latency_ms", "end_to_end"), [float("nan")], "not a positive finite number"),
    (("runs", 0, "latency_ms", "end_to_end"), [], "not a list of milliseconds"),
    (("runs", 0, "latency_ms", "end_to_end"), [-1.0], "not a positive finite number"),
    (("runs", 0, "latency_ms", "gpu_compute"), "fast", "not a list of milliseconds"),
    (("runs", 0, "latency_ms"), [1.0, 2.0], "not an object"),
    (("runs", 0, "batch"), "1", "not a positive integer"),
    (("runs", 0), ["fp32", "fp32"], "runs[0] is list"),
    (("runs",), {"fp32": 1}, "runs is dict"),
    (("runs", 0, "layers"), ["INT8"], "layers is list"),
    (("runs", 0, "sample_output"), {"shape": [2, 3], "values": [1.0]}, "sample_output is not {shape"),
    (("runs", 0, "sample_output"), {"shape": [1, 1], "values": [float("inf")]}, "not a finite number"),
    (("runs", 0, "sample_output"), [[1.0]], "sample_output is not {shape"),
    (("notes",), "INT8 fine", "notes is str"),
    (("platform",), [], "platform is list"),
]


@pytest.mark.parametrize("path,value,problem", CASES, ids=[f"{'.'.join(map(str, c[0]))}={c[1]!r}"[:60] for c in CASES])
def test_each_malformed_answer_is_one_line(path, value, problem):
    with pytest.raises(RemoteError) as err:
        remote._parse_document(_answer(_mutated(path, value)), "nano")
    text = str(err.value)
    assert "\n" not in text and text.startswith("the device program on nano returned an invalid document")
    assert problem in text, text


def test_a_json_array_or_a_cut_off_answer_is_one_line():
    for stdout in (b"[1, 2, 3]\n", b'{"schema": "sqakd-edge.device-results", "runs": [\n', b""):
        with pytest.raises(RemoteError, match="returned no complete results"):
            remote._parse_document(remote._Completed(0, stdout, []), "nano")


@pytest.mark.parametrize("report,problem", [([], "a list"), ({"modules": []}, "modules"),
                                            ({"modules": {"numpy": "yes"}}, "modules"),
                                            ({"modules": {}, "files": {"a": 3}}, "files"),
                                            ({"modules": {}, "uid": "root"}, "uid")])
def test_a_malformed_probe_report_is_named(report, problem):
    assert problem in remote._probe_problem(report)


def _report(**modules):
    base = {name: {"ok": False, "error": "ModuleNotFoundError: No module named " + name} for name in
            ("numpy", "tensorrt", "pycuda", "cuda-python", "onnx", "onnxruntime")}
    base.update({name: {"ok": True, "version": "1"} for name in modules})
    return {"python": "3.6.9", "modules": base}


def test_what_the_device_lacks_decides_the_runner_and_the_hint_is_the_profiles():
    from sqakd_edge.bench import devices

    nano = devices.load_profile("jetson-nano")
    report = {**_report(numpy=1, tensorrt=1), "trtexec": "/usr/src/tensorrt/bin/trtexec"}
    (note,) = remote.run._check_modules(report, "nano", "python3", nano, None)
    assert "builds and times with /usr/src/tensorrt/bin/trtexec instead" in note
    assert "--no-build-isolation pycuda==2022.1" in note  # the profile's own setup commands
    with pytest.raises(RemoteError, match="no working CUDA binding.*no trtexec and no ONNX Runtime.*pip3 install"
                                          " --user 'cuda-python==12.6"):
        remote.run._check_modules(_report(numpy=1, tensorrt=1), "orin", "python3",
                                  devices.load_profile("jetson-orin-nano"), None)
    assert remote.run._check_modules(_report(numpy=1, tensorrt=1, pycuda=1), "nano", "python3", nano, None) == []


def test_device_output_that_mentions_ssh_words_is_not_taken_for_an_ssh_failure():
    ssh = remote.SshTarget(host="me@nano")
    program = remote._Completed(1, b"", ["open /dev/nvhost-ctrl: Permission denied", "cudaMalloc timed out"])
    assert remote.ssh._ssh_failure(program, ssh, "running the device program") is None
    refused = remote._Completed(255, b"", ["me@nano: Permission denied (publickey)."])
    assert "refused the SSH key" in str(remote.ssh._ssh_failure(refused, ssh, "checking"))
