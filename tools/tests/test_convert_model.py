"""Tests of tools/convert_model.py (standard library only).

Test inputs are written byte by byte here: ONNX files with a small protobuf writer,
torch.save checkpoints (zip and legacy) with hand-assembled pickle opcodes, so no
torch, onnx or numpy is needed. Run: python3 -m unittest discover -s tools/tests -v
"""

import ast
import hashlib
import importlib.util
import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys
import tempfile
import unittest
import zipfile
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(REPO, "tools", "convert_model.py")
H16_CHECKPOINT = os.path.join(REPO, "tests", "data", "student_random_h16.pt")

_spec = importlib.util.spec_from_file_location("convert_model", SCRIPT)
cm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cm)


# ---------------------------------------------------------------------------------
# A small student (H=8, K=4, L=2, max_z=10) with float32-exact random weights


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def student_shapes(hidden=8, num_rbf=4, num_blocks=2, max_z=10, last_mixing=True):
    """State-dict names and shapes as the PyTorch StudentForceField has them
    (every block, the last one included, owns a mixing matrix)."""
    h, k = hidden, num_rbf
    shapes = OrderedDict()
    shapes["embedding.weight"] = (max_z + 1, h)
    shapes["rbf.centers"] = (k,)
    shapes["rbf.widths"] = (k,)
    for l in range(num_blocks):
        p = "interactions.%d." % l
        shapes[p + "message.rbf_to_scalar.0.weight"] = (h, k)
        shapes[p + "message.rbf_to_scalar.0.bias"] = (h,)
        shapes[p + "message.rbf_to_scalar.2.weight"] = (3 * h, h)
        shapes[p + "message.rbf_to_scalar.2.bias"] = (3 * h,)
        if l + 1 < num_blocks or last_mixing:
            shapes[p + "update.mixing_matrix"] = (3, 3)
        shapes[p + "update.update_mlp.0.weight"] = (h, 2 * h)
        shapes[p + "update.update_mlp.0.bias"] = (h,)
        shapes[p + "update.update_mlp.2.weight"] = (3 * h, h)
        shapes[p + "update.update_mlp.2.bias"] = (3 * h,)
    shapes["energy_head.0.weight"] = (h // 2, h)
    shapes["energy_head.0.bias"] = (h // 2,)
    shapes["energy_head.2.weight"] = (h // 4, h // 2)
    shapes["energy_head.2.bias"] = (h // 4,)
    shapes["energy_head.4.weight"] = (1, h // 4)
    shapes["energy_head.4.bias"] = (1,)
    return shapes


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def make_student(seed=1, cutoff=5.0, **kw):
    """OrderedDict name -> (shape, list of float32-exact values)."""
    rng = random.Random(seed)
    out = OrderedDict()
    for name, shape in student_shapes(**kw).items():
        n = numel(shape)
        if name == "rbf.centers":
            values = [f32(cutoff * i / (n - 1)) for i in range(n)]
        elif name == "rbf.widths":
            values = [f32(cutoff / n)] * n
        else:
            values = [f32(rng.uniform(-1.0, 1.0)) for _ in range(n)]
        out[name] = (shape, values)
    return out


def f32_bytes(values):
    return struct.pack("<%df" % len(values), *values)


# ---------------------------------------------------------------------------------
# ONNX writer


def pb_varint(v):
    out = bytearray()
    v &= (1 << 64) - 1
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def pb_key(field, wire):
    return pb_varint((field << 3) | wire)


def pb_len(field, payload):
    return pb_key(field, 2) + pb_varint(len(payload)) + payload


def pb_int(field, v):
    return pb_key(field, 0) + pb_varint(v)


def onnx_tensor(name, shape, values, encoding="raw", data_type=1, packed_dims=False):
    t = b""
    if packed_dims:
        t += pb_len(1, b"".join(pb_varint(d) for d in shape))
    else:
        t += b"".join(pb_int(1, d) for d in shape)
    t += pb_int(2, data_type)
    t += pb_len(8, name.encode())
    if encoding == "raw":
        fmt = {1: "f", 11: "d", 10: "e"}[data_type]
        t += pb_len(9, struct.pack("<%d%s" % (len(values), fmt), *values))
    elif encoding == "float_packed":
        t += pb_len(4, struct.pack("<%df" % len(values), *values))
    elif encoding == "float_unpacked":
        t += b"".join(pb_key(4, 5) + struct.pack("<f", v) for v in values)
    elif encoding == "double_packed":
        t += pb_len(10, struct.pack("<%dd" % len(values), *values))
    elif encoding == "half_int32":
        bits = struct.unpack("<%dH" % len(values), struct.pack("<%de" % len(values), *values))
        t += pb_len(5, b"".join(pb_varint(b) for b in bits))
    elif encoding == "external":
        t += pb_len(13, pb_len(1, b"location") + pb_len(2, b"weights.bin")) + pb_int(14, 1)
    else:
        raise ValueError(encoding)
    return t


def onnx_model(student, encodings=None, data_type=1, extra=None, drop=(), shape_override=None):
    encodings = encodings or {}
    shape_override = shape_override or {}
    graph = pb_len(1, pb_len(1, b"x") + pb_len(2, b"y") + pb_len(4, b"Identity")) + pb_len(2, b"main_graph")
    for name, (shape, values) in student.items():
        if name in drop:
            continue
        graph += pb_len(5, onnx_tensor(name, shape_override.get(name, shape), values, encodings.get(name, "raw"), data_type))
    for blob in extra or ():
        graph += pb_len(5, blob)
    model = pb_int(1, 7) + pb_len(2, b"pytorch") + pb_len(3, b"2.5.1") + pb_len(7, graph) + pb_len(8, pb_int(2, 14))
    return model


# ---------------------------------------------------------------------------------
# torch.save writers: pickle opcodes assembled by hand


class Glob:
    """GLOBAL module.name called with args (REDUCE); args None means the bare global."""

    def __init__(self, module, name, args=None):
        self.module, self.name, self.args = module, name, args


class TensorRef:
    def __init__(self, key, numel, offset, size, stride, storage="FloatStorage", parameter=False):
        self.key, self.numel, self.offset = key, numel, offset
        self.size, self.stride, self.storage, self.parameter = tuple(size), tuple(stride), storage, parameter


class ODict:
    def __init__(self, items, metadata=None):
        self.items, self.metadata = list(items), metadata


def p_global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def p(obj, legacy=False):
    """Pickle opcodes (protocol 2 subset) for obj."""
    if obj is None:
        return b"N"
    if obj is True:
        return b"\x88"
    if obj is False:
        return b"\x89"
    if isinstance(obj, int):
        if -(2 ** 31) <= obj < 2 ** 31:
            return b"J" + struct.pack("<i", obj)
        raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw
    if isinstance(obj, float):
        return b"G" + struct.pack(">d", obj)
    if isinstance(obj, str):
        raw = obj.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw
    if isinstance(obj, tuple):
        return b"(" + b"".join(p(x, legacy) for x in obj) + b"t"
    if isinstance(obj, list):
        return b"]" + (b"(" + b"".join(p(x, legacy) for x in obj) + b"e" if obj else b"")
    if isinstance(obj, dict):
        body = b"".join(p(k, legacy) + p(v, legacy) for k, v in obj.items())
        return b"}" + (b"(" + body + b"u" if obj else b"")
    if isinstance(obj, ODict):
        out = p_global("collections", "OrderedDict") + b")R"
        if obj.items:
            out += b"(" + b"".join(p(k, legacy) + p(v, legacy) for k, v in obj.items) + b"u"
        if obj.metadata is not None:
            out += p({"_metadata": obj.metadata}, legacy) + b"b"  # BUILD, as state_dict()'s _metadata
        return out
    if isinstance(obj, Glob):
        out = p_global(obj.module, obj.name)
        if obj.args is not None:
            out += p(tuple(obj.args), legacy) + b"R"
        return out
    if isinstance(obj, TensorRef):
        pid = b"(" + p("storage") + p_global("torch", obj.storage) + p(obj.key) + p("cpu") + p(obj.numel)
        pid += (p(None) if legacy else b"") + b"t"
        out = p_global("torch._utils", "_rebuild_tensor_v2")
        out += b"(" + pid + b"Q" + p(obj.offset) + p(obj.size) + p(obj.stride) + b"\x89" + p(ODict([])) + b"tR"
        if obj.parameter:
            out = p_global("torch._utils", "_rebuild_parameter") + b"(" + out + b"\x88" + p(ODict([])) + b"tR"
        return out
    raise TypeError(type(obj))


def pickle_bytes(obj, legacy=False):
    return b"\x80\x02" + p(obj, legacy) + b"."


def state_refs(student, prefix="", storage="FloatStorage"):
    """(ODict of TensorRefs, {key: bytes}) with one storage per tensor."""
    refs = []
    blobs = {}
    for i, (name, (shape, values)) in enumerate(student.items()):
        key = str(i)
        stride = []
        acc = 1
        for d in reversed(shape):
            stride.insert(0, acc)
            acc *= d
        refs.append((prefix + name, TensorRef(key, len(values), 0, shape, stride, storage)))
        blobs[key] = f32_bytes(values)
    return ODict(refs, metadata=ODict([("", {"version": 1})])), blobs


def torch_zip(path, top, blobs, record_prefix="archive/", byteorder="little"):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(record_prefix + "data.pkl", pickle_bytes(top))
        if byteorder is not None:
            z.writestr(record_prefix + "byteorder", byteorder)
        for key, blob in blobs.items():
            z.writestr(record_prefix + "data/" + key, blob)
        z.writestr(record_prefix + "version", "3\n")


def config_of(hidden=8, num_rbf=4, num_blocks=2, max_z=10, cutoff=5.0):
    return {"hidden_dim": hidden, "num_interactions": num_blocks, "num_rbf": num_rbf, "cutoff": cutoff, "max_z": max_z, "use_torch_cluster": True}


# ---------------------------------------------------------------------------------
# An independent safetensors reader


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    body = data[8 + n :]
    metadata = header.pop("__metadata__")
    tensors = {}
    end = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        a, b = info["data_offsets"]
        assert a == end, "tensor data not contiguous at %s" % name
        end = b
        tensors[name] = (info["dtype"], tuple(info["shape"]), body[a:b])
    assert end == len(body), "trailing bytes after the last tensor"
    return n, metadata, tensors


class Base(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def write(self, name, data):
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def run_cli(self, *args):
        return subprocess.run([sys.executable, SCRIPT] + list(args), capture_output=True, text=True)

    def convert_error(self, input_path, **kw):
        with self.assertRaises(cm.ConvertError) as ctx:
            cm.convert(input_path, self.path("out.safetensors"), **kw)
        self.assertFalse(os.path.exists(self.path("out.safetensors")))
        return ctx.exception

    def assert_round_trip(self, out, student, dtype="F32"):
        """Every tensor but the last block's mixing matrix, bit for bit."""
        header_len, metadata, tensors = read_safetensors(out)
        self.assertEqual(header_len % 8, 0)
        last = "interactions.%d.update.mixing_matrix" % (int(metadata["num_interactions"]) - 1)
        expected = OrderedDict((k, v) for k, v in student.items() if k != last)
        self.assertEqual(set(tensors), set(expected))
        for name, (shape, values) in expected.items():
            got_dtype, got_shape, raw = tensors[name]
            self.assertEqual((got_dtype, got_shape), (dtype, shape), name)
            fmt = {"F32": "f", "F64": "d", "F16": "e"}[dtype]
            self.assertEqual(raw, struct.pack("<%d%s" % (len(values), fmt), *values), name)
        return metadata


# ---------------------------------------------------------------------------------


class ScriptTests(unittest.TestCase):
    def test_parses_as_python_3_8(self):
        with open(SCRIPT, encoding="utf-8") as f:
            ast.parse(f.read(), filename=SCRIPT, feature_version=(3, 8))

    def test_imports_only_the_standard_library(self):
        with open(SCRIPT, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                modules.add(node.module.split(".")[0])
        stdlib = getattr(sys, "stdlib_module_names", None)
        if stdlib is None:
            self.skipTest("sys.stdlib_module_names needs Python 3.10+")
        self.assertEqual(sorted(m for m in modules if m not in stdlib), [])

    def test_shortest_float32_text(self):
        self.assertEqual(cm.shortest_float32_text(5.0), "5.0")
        self.assertEqual(cm.shortest_float32_text(f32(4.7)), "4.7")
        self.assertEqual(cm.shortest_float32_text(f32(0.1)), "0.1")
        self.assertEqual(cm.shortest_float32_text(f32(1.0 / 3.0)), "0.33333334")
        for value in (f32(6.25), f32(5.123456), f32(12.0)):
            text = cm.shortest_float32_text(value)
            self.assertEqual(f32(float(text)), value)


class OnnxTests(Base):
    def test_round_trip_raw_data(self):
        student = make_student()
        src = self.write("student.onnx", onnx_model(student))
        out = self.path("student.safetensors")
        result = self.run_cli(src, out)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("interactions.1.update.mixing_matrix", result.stderr)
        self.assertIn("dropped", result.stderr)
        metadata = self.assert_round_trip(out, student)
        self.assertEqual(
            {k: v for k, v in metadata.items() if k != "provenance"},
            {
                "format_version": "1",
                "architecture": "mlff-distiller-student",
                "hidden_dim": "8",
                "num_rbf": "4",
                "num_interactions": "2",
                "cutoff": "5.0",
                "max_z": "10",
                "energy_unit": "eV",
                "length_unit": "angstrom",
            },
        )
        with open(src, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        for part in ("student.onnx", digest, "pytorch 2.5.1", "opset 14", "convert_model.py " + cm.CONVERTER_VERSION):
            self.assertIn(part, metadata["provenance"])
        self.assertEqual(sorted(os.listdir(self.tmp)), ["student.onnx", "student.safetensors"])  # no temporary left

    def test_other_encodings(self):
        student = make_student(seed=2)
        names = list(student)
        encodings = {names[0]: "float_packed", names[3]: "float_unpacked", names[5]: "float_packed"}
        src = self.write("mixed.onnx", onnx_model(student, encodings=encodings))
        out = self.path("mixed.safetensors")
        cm.convert(src, out)
        self.assert_round_trip(out, student)

    def test_packed_dims(self):
        student = make_student(seed=3)
        graph = b"".join(pb_len(5, onnx_tensor(n, s, v, packed_dims=True)) for n, (s, v) in student.items())
        src = self.write("packed.onnx", pb_int(1, 7) + pb_len(7, graph))
        out = self.path("packed.safetensors")
        cm.convert(src, out)
        self.assert_round_trip(out, student)

    def test_double_and_half_keep_their_dtype(self):
        student = make_student(seed=4)
        src = self.write("f64.onnx", onnx_model(student, encodings={n: "double_packed" for n in student}, data_type=11))
        out = self.path("f64.safetensors")
        cm.convert(src, out)
        self.assert_round_trip(out, student, dtype="F64")

        half = OrderedDict((n, (s, [struct.unpack("<e", struct.pack("<e", v))[0] for v in vals])) for n, (s, vals) in student.items())
        names = list(half)
        src = self.write("f16.onnx", onnx_model(half, encodings={names[1]: "half_int32", names[4]: "half_int32"}, data_type=10))
        out = self.path("f16.safetensors")
        cm.convert(src, out)
        metadata = self.assert_round_trip(out, half, dtype="F16")
        self.assertEqual(metadata["cutoff"], "5.0")

    def test_cutoff_inferred_from_last_centre(self):
        student = make_student(cutoff=4.7)
        src = self.write("rc.onnx", onnx_model(student))
        out = self.path("rc.safetensors")
        cm.convert(src, out)
        self.assertEqual(read_safetensors(out)[1]["cutoff"], "4.7")

    def test_species(self):
        src = self.write("s.onnx", onnx_model(make_student()))
        out = self.path("s.safetensors")
        cm.convert(src, out, species="O, H,C,H,N")
        self.assertEqual(read_safetensors(out)[1]["species"], "H,C,N,O")
        error = self.convert_error(src, species="H,Na")  # Z=11 > max_z=10
        self.assertEqual(error.kind, "argument")
        self.assertIn("Na", error.message)
        self.assertIn("max_z=10", error.message)
        error = self.convert_error(src, species="H,c")
        self.assertIn("unknown element `c`", error.message)
        error = self.convert_error(src, species=" , ")
        self.assertIn("empty", error.message)

    def test_missing_tensor(self):
        src = self.write("m.onnx", onnx_model(make_student(), drop=("interactions.0.update.mixing_matrix",)))
        error = self.convert_error(src)
        self.assertEqual((error.kind, error.fields), ("missing-tensor", {"name": "interactions.0.update.mixing_matrix"}))
        self.assertIn("missing tensor `interactions.0.update.mixing_matrix`", error.message)

    def test_wrong_shape(self):
        src = self.write("w.onnx", onnx_model(make_student(), shape_override={"interactions.1.update.update_mlp.0.weight": (16, 8)}))
        error = self.convert_error(src)
        self.assertEqual(error.kind, "wrong-shape")
        self.assertEqual(error.message, "tensor `interactions.1.update.update_mlp.0.weight` has shape [16, 8], expected [8, 16]")

    def test_non_finite(self):
        for bad in (float("nan"), float("inf"), -float("inf")):
            student = make_student()
            shape, values = student["energy_head.2.weight"]
            values = list(values)
            values[5] = bad
            student["energy_head.2.weight"] = (shape, values)
            src = self.write("nan.onnx", onnx_model(student))
            error = self.convert_error(src)
            self.assertEqual((error.kind, error.fields), ("non-finite", {"name": "energy_head.2.weight", "index": 5}))

    def test_unexpected_tensor(self):
        extra = onnx_tensor("onnx::MatMul_123", (8, 8), [0.0] * 64)
        src = self.write("x.onnx", onnx_model(make_student(), extra=[extra]))
        error = self.convert_error(src)
        self.assertEqual((error.kind, error.fields), ("unexpected-tensor", {"name": "onnx::MatMul_123"}))

    def test_integer_initializer_with_a_weight_name(self):
        student = make_student()
        blob = pb_int(1, 1) + pb_int(2, 7) + pb_len(8, b"energy_head.4.bias") + pb_len(9, struct.pack("<q", 3))
        src = self.write("int.onnx", onnx_model(student, drop=("energy_head.4.bias",), extra=[blob]))
        error = self.convert_error(src)
        self.assertEqual(error.kind, "wrong-dtype")
        self.assertIn("I64", error.message)

    def test_external_data_is_refused(self):
        student = make_student()
        blob = onnx_tensor("energy_head.4.bias", (1,), [0.0], encoding="external")
        src = self.write("ext.onnx", onnx_model(student, drop=("energy_head.4.bias",), extra=[blob]))
        self.assertIn("external", self.convert_error(src).message)

    def test_data_length_mismatch(self):
        blob = pb_int(1, 4) + pb_int(2, 1) + pb_len(8, b"energy_head.0.bias") + pb_len(9, b"\x00" * 12)
        src = self.write("len.onnx", onnx_model(make_student(), drop=("energy_head.0.bias",), extra=[blob]))
        self.assertIn("holds 12 bytes of data, expected 16", self.convert_error(src).message)

    def test_truncated(self):
        data = onnx_model(make_student())
        for cut in (len(data) - 1, len(data) // 2, 20, 3):
            src = self.write("cut.onnx", data[:cut])
            error = self.convert_error(src)
            self.assertEqual(error.kind, "format")
            self.assertTrue("truncated" in error.message or "runs past" in error.message, error.message)

    def test_garbage(self):
        rng = random.Random(5)
        for i in range(20):
            src = self.write("garbage%d.bin" % i, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
            with self.assertRaises(cm.ConvertError):
                cm.convert(src, self.path("out.safetensors"))
        self.assertFalse(os.path.exists(self.path("out.safetensors")))
        src = self.write("text.bin", b"hello, this is not a model\n")
        self.assertIn("neither a PyTorch checkpoint", self.convert_error(src).message)
        src = self.write("empty.onnx", b"")
        self.assertIn("is empty", self.convert_error(src).message)

    def test_safetensors_input_is_recognised(self):
        src = self.write("s.onnx", onnx_model(make_student()))
        out = self.path("already.safetensors")
        cm.convert(src, out)
        self.assertIn("safetensors file already", self.convert_error(out).message)


class TorchTests(Base):
    def checkpoint(self, name, student=None, config=None, **kw):
        student = student or make_student()
        state, blobs = state_refs(student)
        top = {"model_state_dict": state, "config": config if config is not None else config_of(), "num_parameters": 1234}
        path = self.path(name)
        torch_zip(path, top, blobs, **kw)
        return path, student

    def test_round_trip_checkpoint_with_config(self):
        src, student = self.checkpoint("student.pt", record_prefix="student/")
        out = self.path("student.safetensors")
        result = self.run_cli(src, out, "--species", "H,C,N,O", "--provenance", "random test student")
        self.assertEqual(result.returncode, 0, result.stderr)
        metadata = self.assert_round_trip(out, student)
        self.assertEqual(metadata["species"], "H,C,N,O")
        self.assertEqual((metadata["hidden_dim"], metadata["num_rbf"], metadata["num_interactions"], metadata["max_z"], metadata["cutoff"]), ("8", "4", "2", "10", "5.0"))
        self.assertTrue(metadata["provenance"].startswith("random test student | converted from student.pt"))
        self.assertIn("torch.save zip checkpoint, serialization version 3", metadata["provenance"])

    def test_bare_state_dict_with_module_prefix_and_parameters(self):
        student = make_student(seed=8)
        state, blobs = state_refs(student, prefix="module.")
        for _, ref in state.items[::3]:
            ref.parameter = True
        path = self.path("bare.pt")
        torch_zip(path, state, blobs)
        out = self.path("bare.safetensors")
        result = self.run_cli(path, out)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("module.", result.stderr)
        self.assert_round_trip(out, student)

    def test_views_offsets_and_strides(self):
        # All weights in one storage; one matrix stored transposed (stride (1, rows)).
        student = make_student(seed=9)
        flat = []
        refs = []
        for name, (shape, values) in student.items():
            offset = len(flat)
            if name == "interactions.0.message.rbf_to_scalar.2.weight":
                rows, cols = shape
                flat.extend(values[r * cols + c] for c in range(cols) for r in range(rows))
                stride = (1, rows)
            else:
                flat.extend(values)
                stride = (shape[1], 1) if len(shape) == 2 else (1,)
            refs.append((name, TensorRef("0", None, offset, shape, stride)))
        for _, ref in refs:
            ref.numel = len(flat)
        path = self.path("views.pt")
        torch_zip(path, {"model_state_dict": ODict(refs)}, {"0": f32_bytes(flat)})
        out = self.path("views.safetensors")
        cm.convert(path, out)
        self.assert_round_trip(out, student)

    def test_big_endian_byteorder(self):
        student = make_student(seed=10)
        state, blobs = state_refs(student)
        swapped = {k: b"".join(v[i : i + 4][::-1] for i in range(0, len(v), 4)) for k, v in blobs.items()}
        path = self.path("be.pt")
        torch_zip(path, {"model_state_dict": state}, swapped, byteorder="big")
        out = self.path("be.safetensors")
        cm.convert(path, out)
        self.assert_round_trip(out, student)

    def test_legacy_format(self):
        student = make_student(seed=11)
        state, blobs = state_refs(student)
        stream = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
        stream += pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
        stream += pickle_bytes({"model_state_dict": state, "config": config_of()}, legacy=True)
        keys = sorted(blobs)
        stream += pickle.dumps(keys, protocol=2)
        for key in keys:
            stream += struct.pack("<q", len(blobs[key]) // 4) + blobs[key]
        src = self.write("legacy.pt", stream)
        out = self.path("legacy.safetensors")
        cm.convert(src, out)
        metadata = self.assert_round_trip(out, student)
        self.assertIn("legacy torch.save", metadata["provenance"])
        error = self.convert_error(self.write("legacy_cut.pt", stream[:-10]))
        self.assertIn("truncated", error.message)

    def test_config_mismatch(self):
        src, _ = self.checkpoint("bad_config.pt", config=config_of(hidden=16))
        error = self.convert_error(src)
        self.assertIn("config says hidden_dim=16 but embedding.weight has shape [11, 8]", error.message)
        src, _ = self.checkpoint("bad_blocks.pt", config=config_of(num_blocks=3))
        self.assertIn("num_interactions=3", self.convert_error(src).message)
        src, _ = self.checkpoint("bad_cutoff.pt", config=config_of(cutoff=6.0))
        self.assertIn("cutoff=6.0", self.convert_error(src).message)

    def test_config_cutoff_is_written_from_config(self):
        student = make_student(cutoff=4.7)
        src, _ = self.checkpoint("rc.pt", student=student, config=config_of(cutoff=4.7))
        out = self.path("rc.safetensors")
        cm.convert(src, out)
        self.assertEqual(read_safetensors(out)[1]["cutoff"], "4.7")

    def test_missing_wrong_shape_and_nan(self):
        student = make_student()
        del student["energy_head.0.weight"]
        src, _ = self.checkpoint("missing.pt", student=student)
        self.assertEqual(self.convert_error(src).fields, {"name": "energy_head.0.weight"})

        student = make_student()
        student["rbf.widths"] = ((5,), student["rbf.widths"][1] + [1.0])
        src, _ = self.checkpoint("shape.pt", student=student)
        error = self.convert_error(src)
        self.assertEqual(error.message, "tensor `rbf.widths` has shape [5], expected [4]")

        student = make_student()
        shape, values = student["interactions.0.update.mixing_matrix"]
        student["interactions.0.update.mixing_matrix"] = (shape, values[:4] + [float("nan")] + values[5:])
        src, _ = self.checkpoint("nan.pt", student=student)
        self.assertEqual(self.convert_error(src).fields, {"name": "interactions.0.update.mixing_matrix", "index": 4})

    def test_integer_weight_is_refused(self):
        student = make_student()
        state, blobs = state_refs(student)
        for name, ref in state.items:
            if name == "energy_head.4.bias":
                ref.storage = "LongStorage"
                blobs[ref.key] = struct.pack("<q", 1)
        path = self.path("long.pt")
        torch_zip(path, {"model_state_dict": state}, blobs)
        error = self.convert_error(path)
        self.assertEqual(error.kind, "wrong-dtype")

    def test_disallowed_global_is_rejected_without_running(self):
        marker = self.path("pwned")
        state, blobs = state_refs(make_student())
        for module, name, args in (("os", "system", ("touch " + marker,)), ("builtins", "eval", ("open(%r, 'w')" % marker,)), ("subprocess", "call", (["touch", marker],))):
            top = {"model_state_dict": state, "config": config_of(), "hook": Glob(module, name, args)}
            path = self.path("evil.pt")
            torch_zip(path, top, blobs)
            result = self.run_cli(path, self.path("out.safetensors"))
            self.assertEqual(result.returncode, 2)
            self.assertIn("`%s.%s`" % (module, name), result.stderr)
            self.assertIn("not load", result.stderr)
            self.assertFalse(os.path.exists(marker), "the pickle ran code")
            self.assertFalse(os.path.exists(self.path("out.safetensors")))
            self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)

    def test_whole_module_pickle_gets_a_hint(self):
        top = Glob("mlff_distiller.models.student_model", "StudentForceField", ())
        path = self.path("module.pt")
        torch_zip(path, top, {})
        self.assertIn("state_dict()", self.convert_error(path).message)

    def test_truncated_zip(self):
        src, _ = self.checkpoint("full.pt")
        with open(src, "rb") as f:
            data = f.read()
        for cut in (len(data) - 30, len(data) // 2, 100):
            error = self.convert_error(self.write("cut.pt", data[:cut]))
            self.assertIn("zip", error.message)

    def test_storage_too_short(self):
        state, blobs = state_refs(make_student())
        blobs["0"] = blobs["0"][:-4]
        path = self.path("short.pt")
        torch_zip(path, {"model_state_dict": state}, blobs)
        self.assertIn("truncated or corrupt", self.convert_error(path).message)

    def test_not_a_state_dict(self):
        path = self.path("list.pt")
        torch_zip(path, {"weights": [1, 2, 3]}, {})
        self.assertIn("no `model_state_dict`", self.convert_error(path).message)

    def test_torchscript_archive_is_named(self):
        path = self.path("scripted.pt")
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("scripted/data.pkl", pickle_bytes({}))
            z.writestr("scripted/constants.pkl", pickle_bytes(()))
            z.writestr("scripted/code/__torch__.py", "")
        self.assertIn("TorchScript", self.convert_error(path).message)

    @unittest.skipUnless(os.path.exists(H16_CHECKPOINT), "tests/data/student_random_h16.pt is not in the repository yet")
    def test_real_torch_checkpoint(self):
        tensors, config, framework, _ = cm.read_input(H16_CHECKPOINT)
        self.assertIsNotNone(config, "the committed checkpoint should carry its config")
        out = self.path("h16.safetensors")
        cm.convert(H16_CHECKPOINT, out)
        _, metadata, written = read_safetensors(out)
        self.assertEqual(metadata["hidden_dim"], "16")
        for key in ("hidden_dim", "num_rbf", "num_interactions", "max_z"):
            if key in config:
                self.assertEqual(metadata[key], str(config[key]), key)
        if "cutoff" in config:
            self.assertEqual(float(metadata["cutoff"]), float(config["cutoff"]))
        last = "interactions.%d.update.mixing_matrix" % (int(metadata["num_interactions"]) - 1)
        self.assertNotIn(last, written)
        names = [n[len("module.") :] if n.startswith("module.") else n for n in tensors]
        self.assertEqual(set(written), set(names) - {last})
        for name, (dtype, shape, raw) in written.items():
            source = tensors[name] if name in tensors else tensors["module." + name]
            self.assertEqual((dtype, shape, raw), (source.dtype, source.shape, source.data), name)


class CliTests(Base):
    def test_errors_are_one_line_with_exit_status_2(self):
        cases = [
            [self.path("absent.onnx"), self.path("o.safetensors")],
            [self.write("g.onnx", b"\x08\x07\x3a\xff\xff"), self.path("o.safetensors")],
            [self.write("ok.onnx", onnx_model(make_student())), os.path.join(self.tmp, "no", "such", "dir", "o.safetensors")],
            [self.path("ok.onnx"), self.path("o.safetensors"), "--species", "Qq"],
        ]
        for args in cases:
            result = self.run_cli(*args)
            self.assertEqual(result.returncode, 2, args)
            lines = result.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, result.stderr)
            self.assertTrue(lines[0].startswith("convert_model.py: error: "), lines[0])
            self.assertEqual(result.stdout, "")
            self.assertFalse(os.path.exists(self.path("o.safetensors")))

    def test_json_errors(self):
        result = self.run_cli("--json-errors", self.path("absent.onnx"), self.path("o.safetensors"))
        self.assertEqual(result.returncode, 2)
        prefix = "convert_model.py: error-json: "
        line = result.stderr.strip()
        self.assertTrue(line.startswith(prefix), line)
        payload = json.loads(line[len(prefix) :])
        self.assertEqual(payload["kind"], "io")
        self.assertIn("absent.onnx", payload["message"])

    def test_failure_keeps_an_existing_output_and_leaves_no_temporary(self):
        out = self.write("keep.safetensors", b"previous contents")
        src = self.write("bad.onnx", onnx_model(make_student(), drop=("rbf.widths",)))
        result = self.run_cli(src, out)
        self.assertEqual(result.returncode, 2)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"previous contents")
        self.assertEqual(sorted(os.listdir(self.tmp)), ["bad.onnx", "keep.safetensors"])

    def test_output_is_not_the_input(self):
        src = self.write("same.onnx", onnx_model(make_student()))
        result = self.run_cli(src, src)
        self.assertEqual(result.returncode, 2)
        self.assertIn("is the input", result.stderr)

    def test_reproducible_with_source_date_epoch(self):
        src = self.write("r.onnx", onnx_model(make_student()))
        env = dict(os.environ, SOURCE_DATE_EPOCH="1700000000")
        outputs = []
        for name in ("a.safetensors", "b.safetensors"):
            subprocess.run([sys.executable, SCRIPT, src, self.path(name)], check=True, capture_output=True, env=env)
            with open(self.path(name), "rb") as f:
                outputs.append(f.read())
        self.assertEqual(outputs[0], outputs[1])
        self.assertIn(b"2023-11-14T22:13:20Z", outputs[0])


# ---------------------------------------------------------------------------------
# schnetpack PaiNN (tests/data/painn_*.pt, made by tools/reference/make_painn_fixtures.py)

PAINN = {stem: os.path.join(REPO, "tests", "data", stem + ".pt")
         for stem in ("painn_b1", "painn_b3_shared_filters", "painn_b3", "painn_b5_shared_interactions")}


def _f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


@unittest.skipUnless(all(os.path.exists(p) for p in PAINN.values()), "tests/data/painn_*.pt are not in the repository")
class PainnTests(Base):
    def load_object(self, stem):
        """The unpickled top-level object (inert stand-ins), as the converter sees it."""
        original = cm._torch_object_to_weights
        cm._torch_object_to_weights = lambda obj, framework: (obj, None, framework)
        try:
            return cm.read_input(PAINN[stem])[0]
        finally:
            cm._torch_object_to_weights = original

    def convert_painn(self, stem):
        out = self.path(stem + ".safetensors")
        cm.convert(PAINN[stem], out)
        return read_safetensors(out)[1:]

    def test_pickled_models_convert(self):
        expected = {
            "painn_b1": ("16", "10", "1", "4.0", "false", "false", "16,8,1"),
            "painn_b3_shared_filters": ("16", "12", "3", "3.5", "true", "false", "16,8,1"),
            "painn_b5_shared_interactions": ("12", "8", "5", "4.0", "false", "true", "12,6,1"),
        }
        for stem, values in expected.items():
            metadata, tensors = self.convert_painn(stem)
            self.assertEqual(metadata["architecture"], "painn")
            keys = ("hidden_dim", "num_rbf", "num_interactions", "cutoff", "shared_filters", "shared_interactions", "readout_widths")
            self.assertEqual(tuple(metadata[k] for k in keys), values, stem)
            self.assertEqual(metadata["max_z"], "99")  # nn.Embedding(100, F)
            blocks = {n.split(".")[2] for n in tensors if n.startswith("representation.interactions.")}
            self.assertEqual(blocks, {"0"} if values[5] == "true" else {str(b) for b in range(int(values[2]))}, stem)
            f, n_blocks = int(values[0]), int(values[2])
            filters = 1 if values[4] == "true" else n_blocks
            self.assertEqual(tensors["representation.filter_net.weight"][1], (3 * f * filters, int(values[1])))
            self.assertNotIn("representation.mixing.0.mu_channel_mix.bias", tensors)
            # Weights keep their float32 bytes; the post-processing is float64.
            self.assertEqual(tensors["representation.embedding.weight"][0], "F32")
            self.assertEqual(tensors["postprocessing.atom_energy"][:2], ("F64", (100,)))

    def test_post_processing_is_folded_in_module_order(self):
        # painn_b1: ScaleProperty(1.7) as an output module, AddOffsets(mean -0.25 +
        # atomref) as a post-processor: offsets are not scaled.
        _, tensors = self.convert_painn("painn_b1")
        scale = struct.unpack("<d", tensors["postprocessing.energy_scale"][2])[0]
        atom = struct.unpack("<100d", tensors["postprocessing.atom_energy"][2])
        self.assertEqual(scale, _f32(1.7))
        self.assertEqual(atom[0], 0.0)
        self.assertEqual(atom[2], -0.25)  # He: mean only
        self.assertNotEqual(atom[1], -0.25)  # H: mean + atomref
        # painn_b5: AddOffsets (mean -0.1) as an output module before ScaleProperty(1.3).
        _, tensors = self.convert_painn("painn_b5_shared_interactions")
        atom = struct.unpack("<100d", tensors["postprocessing.atom_energy"][2])
        self.assertAlmostEqual(atom[2], _f32(-0.1) * _f32(1.3), places=15)

    def test_hyperparameters_and_state_dict_form(self):
        out = self.path("b3.safetensors")
        cm.convert(PAINN["painn_b3"], out)
        _, metadata, tensors = read_safetensors(out)
        self.assertEqual((metadata["readout_widths"], metadata["species"]), ("16,12,12,1", "H,C,N,O"))
        self.assertEqual(struct.unpack("<d", tensors["postprocessing.energy_scale"][2])[0], _f32(0.8))
        # --species wins over the file's elements.
        cm.convert(PAINN["painn_b3"], out, species="C,H")
        self.assertEqual(read_safetensors(out)[1]["species"], "H,C")

    def with_change(self, stem, change):
        obj = self.load_object(stem)
        change(obj)
        with self.assertRaises(cm.ConvertError) as ctx:
            cm.painn_from_module(obj, "test")
        return ctx.exception.message

    def test_unsupported_structures_are_named(self):
        def rep(obj):
            return obj.modules()["representation"]

        def outputs(obj):
            return cm._children(obj.modules()["output_modules"])

        def interaction_dense(obj):
            block = cm._children(rep(obj).modules()["interactions"])[0]
            return cm._children(block.modules()["interatomic_context_net"])[0]

        cases = [
            (lambda o: setattr(outputs(o)[0], "aggregation_mode", "avg"), "only 'sum'"),
            (lambda o: interaction_dense(o).__dict__.__setitem__("activation", cm.FunctionRef("torch.nn.functional.softplus")), "only SiLU"),
            (lambda o: setattr(rep(o), "qualname", "schnetpack.representation.schnet.SchNet"), "SchNet"),
            (lambda o: setattr(rep(o).modules()["radial_basis"], "qualname", "schnetpack.nn.radial.BesselRBF"), "BesselRBF"),
            (lambda o: setattr(rep(o).modules()["cutoff_fn"], "qualname", "schnetpack.nn.cutoff.MollifierCutoff"), "MollifierCutoff"),
            (lambda o: outputs(o)[1].__dict__.__setitem__("input_key", "forces"), "only scaling the energy"),
            (lambda o: outputs(o)[2].__dict__.__setitem__("energy_key", "y"), "differentiates `y`"),
        ]
        for change, text in cases:
            self.assertIn(text, self.with_change("painn_b1", change))

    def test_scaling_after_the_forces_is_refused(self):
        def move_scale(obj):
            outs = obj.modules()["output_modules"].modules()
            posts = obj.modules()["postprocessors"].modules()
            posts[str(len(posts))] = outs.pop("1")  # ScaleProperty -> post-processing
            outs["1"] = outs.pop("2")

        self.assertIn("energies and forces would disagree", self.with_change("painn_b1", move_scale))

    def test_non_extensive_offsets_are_refused(self):
        def intensive(obj):
            posts = cm._children(obj.modules()["postprocessors"])
            posts[-1].__dict__["is_extensive"] = False

        self.assertIn("non-extensive", self.with_change("painn_b1", intensive))

    def test_stand_ins_run_nothing(self):
        # A schnetpack class called with arguments (REDUCE) instead of restored: refused.
        top = Glob("schnetpack.model.base", "NeuralNetworkPotential", ("x",))
        path = self.path("called.pt")
        torch_zip(path, top, {})
        self.assertIn("corrupt", self.convert_error(path).message)
        # Functions are references only; os.system & co. stay refused (see TorchTests).
        ref = cm.RestrictedUnpickler(io.BytesIO(b""), None).find_class("torch.nn.functional", "silu")
        self.assertIsInstance(ref, cm.FunctionRef)
        with self.assertRaises(TypeError):
            ref("x")


if __name__ == "__main__":
    unittest.main()
