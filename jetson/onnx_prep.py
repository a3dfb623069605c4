"""Graph surgery TensorRT needs before a build, with the ``onnx`` package (Python 3.6+).

Two transforms, used on the workstation before upload and again on the device when ``onnx`` is there:

* :func:`fold_identity_initializers` — PyTorch >= 1.12 may route shared initializers through ``Identity``
  nodes; TensorRT 8.x rejects a Q/DQ whose scale or weight comes out of one ("invalid weights type of
  Int8"). The Identity is removed and its consumers read the initializer directly.
* :func:`strip_qdq` — the student with its Q/DQ removed: every weight keeps its trained, fake-quantized
  value (``scale * q`` folded into a float initializer) and activation Q/DQ pairs disappear. On a device
  without fast INT8 (Jetson Nano) this is what FP32/FP16 engines of the *student* are built from.
"""

import numpy as np

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _onnx():
    import onnx
    from onnx import numpy_helper

    return onnx, numpy_helper


def _initializer_map(graph):
    return dict((init.name, init) for init in graph.initializer)


def _constant_map(graph):
    """Initializers plus ``Constant`` node outputs (PyTorch often emits Q/DQ scales as Constant nodes)."""
    consts = _initializer_map(graph)
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    consts[node.output[0]] = a.t
    return consts


def _drop_unused_initializers(graph):
    used = set()
    for node in graph.node:
        used.update(node.input)
    used.update(o.name for o in graph.output)
    dead = [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]
    for node in dead:
        graph.node.remove(node)
    keep = [init for init in graph.initializer if init.name in used]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)
    names = set(init.name for init in graph.initializer)
    inputs = [i for i in graph.input if i.name not in names or i.name in used]
    if len(inputs) != len(graph.input):
        del graph.input[:]
        graph.input.extend(inputs)


def _rewire(graph, rename):
    """Point every consumer of a renamed tensor at its source (following chains)."""

    def resolve(name):
        seen = set()
        while name in rename and name not in seen:
            seen.add(name)
            name = rename[name]
        return name

    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = resolve(name)
    stale = [vi for vi in graph.value_info if vi.name in rename]
    for vi in stale:
        graph.value_info.remove(vi)


def fold_identity_initializers(model):
    """Remove ``Identity`` nodes whose input is an initializer (or another such Identity), in place.

    Args:
        model: an ``onnx.ModelProto``.

    Returns:
        The number of Identity nodes removed.
    """
    graph = model.graph
    sources = set(_constant_map(graph))
    outputs = set(o.name for o in graph.output)
    rename = {}
    changed = True
    while changed:  # chains Identity -> Identity -> initializer
        changed = False
        for node in graph.node:
            if (node.op_type == "Identity" and node.output[0] not in rename and node.input[0] in sources
                    and node.output[0] not in outputs):
                rename[node.output[0]] = node.input[0]
                sources.add(node.output[0])
                changed = True
    if not rename:
        return 0
    keep = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in rename)]
    del graph.node[:]
    graph.node.extend(keep)
    _rewire(graph, rename)
    return len(rename)


def count_identity_before_qdq(model):
    """Identity nodes that feed a QuantizeLinear/DequantizeLinear (what TensorRT 8.x trips over)."""
    graph = model.graph
    identity_outputs = set(n.output[0] for n in graph.node if n.op_type == "Identity")
    return sum(1 for n in graph.node if n.op_type in QDQ_OPS for name in n.input if name in identity_outputs)


def count_qdq(model):
    """Number of QuantizeLinear and DequantizeLinear nodes."""
    return sum(1 for n in model.graph.node if n.op_type in QDQ_OPS)


def _attr(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return a.i
    return default


def _broadcast(param, ndim, axis):
    """A per-channel scale/zero-point reshaped to broadcast along ``axis`` of an ``ndim`` tensor."""
    param = np.asarray(param)
    if param.ndim == 0 or param.size == 1:
        return param.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = param.size
    return param.reshape(shape)


def _const(inits, name, numpy_helper, what):
    if name not in inits:
        raise ValueError("the %s %r of a Q/DQ node is not a constant; cannot strip Q/DQ" % (what, name))
    return numpy_helper.to_array(inits[name])


def strip_qdq(model):
    """Remove Q/DQ from a QDQ graph, keeping the fake-quantized weights, in place.

    Weight paths (``initializer -> Q -> DQ`` or an integer ``initializer -> DQ``) become one float
    initializer holding ``scale * (q - zero_point)``, exactly what the student computes with. Activation
    ``Q -> DQ`` pairs are removed and their consumers read the float tensor.

    Args:
        model: an ``onnx.ModelProto`` with QuantizeLinear/DequantizeLinear nodes.

    Returns:
        ``{"weights": n, "activations": m}``: how many of each were stripped.

    Raises:
        ValueError: a scale or zero-point that is not an initializer.
    """
    onnx, numpy_helper = _onnx()
    graph = model.graph
    inits = _constant_map(graph)
    producers = {}
    for node in graph.node:
        for out in node.output:
            producers[out] = node
    outputs = set(o.name for o in graph.output)
    rename = {}
    new_inits = []
    drop = set()
    identities = []
    counts = {"weights": 0, "activations": 0}

    for node in graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        x, out = node.input[0], node.output[0]
        scale = _const(inits, node.input[1], numpy_helper, "scale")
        axis = _attr(node, "axis", 1)
        src = producers.get(x)
        if x in inits:  # integer weights stored quantized
            q = numpy_helper.to_array(inits[x]).astype(np.float64)
            has_zp = len(node.input) > 2 and node.input[2]
            zp = _const(inits, node.input[2], numpy_helper, "zero-point") if has_zp else 0
            zp = _broadcast(zp, q.ndim, axis).astype(np.float64)
            value = (q - zp) * _broadcast(scale, q.ndim, axis)
            counts["weights"] += 1
        elif src is not None and src.op_type == "QuantizeLinear":
            qx = src.input[0]
            qscale = _const(inits, src.input[1], numpy_helper, "scale")
            zp_name = src.input[2] if len(src.input) > 2 and src.input[2] else ""
            zp_arr = _const(inits, zp_name, numpy_helper, "zero-point") if zp_name else np.zeros((), np.uint8)
            drop.add(id(src))
            if qx in inits:  # float weights quantized in the graph
                w = numpy_helper.to_array(inits[qx]).astype(np.float64)
                qaxis = _attr(src, "axis", 1)
                lo, hi = (-128, 127) if zp_arr.dtype == np.int8 else (0, 255)
                zp_b = _broadcast(zp_arr, w.ndim, qaxis).astype(np.float64)
                q = np.clip(np.round(w / _broadcast(qscale, w.ndim, qaxis)) + zp_b, lo, hi)
                value = (q - zp_b) * _broadcast(scale, w.ndim, axis)
                counts["weights"] += 1
            else:  # activation: read the float tensor
                counts["activations"] += 1
                drop.add(id(node))
                if out in outputs:
                    identities.append(onnx.helper.make_node("Identity", [qx], [out]))
                else:
                    rename[out] = qx
                continue
        else:
            raise ValueError("DequantizeLinear %r reads %r, which is neither an initializer nor a QuantizeLinear; "
                             "cannot strip Q/DQ" % (node.name, x))
        drop.add(id(node))
        new_inits.append(numpy_helper.from_array(value.astype(np.float32), out))

    keep = [n for n in graph.node if id(n) not in drop]
    # A Q whose output still feeds something other than the DQ we removed stays.
    still_read = set()
    for n in keep:
        still_read.update(n.input)
    for n in graph.node:
        if n.op_type == "QuantizeLinear" and id(n) in drop and n.output[0] in still_read:
            keep.append(n)
    keep.extend(identities)
    order = dict((id(n), i) for i, n in enumerate(graph.node))
    keep.sort(key=lambda n: order.get(id(n), len(order)))
    del graph.node[:]
    graph.node.extend(keep)
    graph.initializer.extend(new_inits)
    _rewire(graph, rename)
    _drop_unused_initializers(graph)
    return counts


def prepare_file(src, dst, strip=False):
    """Read an ONNX file, fold Identity initializers (and optionally strip Q/DQ), write it to ``dst``.

    Args:
        src: input ONNX path.
        dst: output ONNX path (written whole; the caller renames it into place).
        strip: also remove Q/DQ (see :func:`strip_qdq`).

    Returns:
        A dict of what was done: ``identity_folded``, and with ``strip`` the stripped counts.
    """
    onnx, _ = _onnx()
    model = onnx.load(src)
    done = {"identity_folded": fold_identity_initializers(model)}
    if strip:
        done["qdq_stripped"] = strip_qdq(model)
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    return done
