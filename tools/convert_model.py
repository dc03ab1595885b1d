#!/usr/bin/env python3
"""Convert MLFF-Distiller students or schnetpack PaiNN models into mlff model files (safetensors).

    python3 tools/convert_model.py IN OUT.safetensors [--species H,C,N,O] [--provenance TEXT]

IN is one of
  * a PyTorch checkpoint written by torch.save: a dict with `model_state_dict` (and
    usually `config`), or a bare state dict; zip format (torch >= 1.6) or the legacy
    stream format. It is read with a restricted unpickler that rebuilds tensors and
    plain containers only: no code from the file ever runs, and torch is not needed.
  * an ONNX export of the student: the weights are taken from the graph's
    initializers (the graph itself is ignored; the released graphs are wrong).
  * a schnetpack 2.2 PaiNN model (architecture `painn`): a whole
    `NeuralNetworkPotential` saved with torch.save(model, path) (its modules are read
    as inert stand-ins, never imported or run), or torch.save({"hyperparameters":
    {...}, "state_dict": model.state_dict()}, path). See docs/model-format.md.

The output is described in docs/model-format.md. Only the Python 3.8+ standard
library is used. Exit status 0 on success, 2 on any error (one line on stderr).
"""

import sys

if sys.version_info < (3, 8):
    sys.stderr.write("convert_model.py: error: needs Python 3.8 or newer (this is %d.%d)\n" % tuple(sys.version_info[:2]))
    sys.exit(2)

import argparse
import datetime
import hashlib
import io
import json
import math
import os
import pickle
import re
import struct
import tempfile
import zipfile
from array import array
from collections import OrderedDict

CONVERTER_VERSION = "1.0"
FORMAT_VERSION = "1"
ARCHITECTURE = "mlff-distiller-student"
PROG = "convert_model.py"

# Limits the Rust loader enforces (src/model/format.rs); checked here so that a file
# this script writes always loads.
MAX_WIDTH = 4096
MAX_BLOCKS = 64
MAX_Z_LIMIT = 118

ELEMENTS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb "
    "Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No Lr Rf "
    "Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
ATOMIC_NUMBER = {symbol: z for z, symbol in enumerate(ELEMENTS, start=1)}

# safetensors dtype name -> bytes per element.
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
FLOAT_DTYPES = ("F32", "F64", "F16", "BF16")
# Exponent mask of each float dtype, on the integer view of its bits: all ones means inf/NaN.
_BITS = {"F64": ("Q", 0x7FF0000000000000), "F32": ("I", 0x7F800000), "F16": ("H", 0x7C00), "BF16": ("H", 0x7F80)}


class ConvertError(Exception):
    """A failure to report: `kind` tells the Rust wrapper which typed error to build."""

    def __init__(self, message, kind="format", **fields):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.fields = fields


# ----------------------------------------------------------------------------------
# Tensors


class Tensor:
    """A dense tensor: safetensors dtype name, shape, and its bytes (little-endian,
    C-contiguous). `loader` defers reading bytes that may never be needed (e.g. an
    optimizer state stored next to the weights)."""

    def __init__(self, dtype, shape, data=None, loader=None):
        self.dtype = dtype
        self.shape = tuple(shape)
        self._data = data
        self._loader = loader

    @property
    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def data(self):
        if self._data is None:
            self._data = self._loader()
            self._loader = None
        return self._data

    def __setstate__(self, state):
        # Reached only through a BUILD opcode aimed at a tensor, which torch never writes.
        raise pickle.UnpicklingError("unexpected object state attached to a tensor")


def first_non_finite(dtype, data):
    """Flat index of the first inf/NaN in little-endian float bytes, or None."""
    code, mask = _BITS[dtype]
    bits = array(code)
    if bits.itemsize == ITEMSIZE[dtype]:
        bits.frombytes(data)
        if sys.byteorder == "big":
            bits.byteswap()
        values = bits
    else:  # array type codes are platform-sized; struct's "<" codes are not
        values = struct.unpack("<%d%s" % (len(data) // ITEMSIZE[dtype], code), data)
    for index, v in enumerate(values):
        if v & mask == mask:
            return index
    return None


def float_values(tensor):
    """The values of a float tensor as Python floats."""
    n = tensor.numel
    if tensor.dtype == "F32":
        return list(struct.unpack("<%df" % n, tensor.data))
    if tensor.dtype == "F64":
        return list(struct.unpack("<%dd" % n, tensor.data))
    if tensor.dtype == "F16":
        return list(struct.unpack("<%de" % n, tensor.data))
    if tensor.dtype == "BF16":
        halves = struct.unpack("<%dH" % n, tensor.data)
        return list(struct.unpack("<%df" % n, struct.pack("<%dI" % n, *[h << 16 for h in halves])))
    raise ValueError(tensor.dtype)


# ----------------------------------------------------------------------------------
# PyTorch checkpoints: a restricted unpickler


class _StorageType:
    """Stands in for torch.FloatStorage & co. in persistent ids; never callable."""

    def __init__(self, name, dtype):
        self.name = name
        self.dtype = dtype

    def __repr__(self):
        return "torch." + self.name


_STORAGE_TYPES = {
    "FloatStorage": "F32",
    "DoubleStorage": "F64",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
}


class _Storage:
    """A typed storage: `numel` elements of `dtype`, bytes fetched by `loader` on demand."""

    def __init__(self, dtype, key, numel, loader, offset=0):
        self.dtype = dtype
        self.key = key
        self.numel = numel
        self._loader = loader
        self.offset = offset  # in elements; legacy files may pickle views of a storage
        self._bytes = None

    def raw(self):
        if self._bytes is None:
            data = self._loader()
            isz = ITEMSIZE[self.dtype]
            need = (self.offset + self.numel) * isz
            if len(data) < need:
                raise ConvertError(
                    "storage `%s` holds %d bytes but its tensors need %d: the checkpoint is truncated or corrupt" % (self.key, len(data), need)
                )
            self._bytes = bytes(data[self.offset * isz : need])
        return self._bytes


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _tensor_from_storage(storage, storage_offset, size, stride):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
    size = tuple(size)
    stride = tuple(stride)
    if not (_is_int(storage_offset) and all(_is_int(s) for s in size) and all(_is_int(s) for s in stride) and len(size) == len(stride)):
        raise pickle.UnpicklingError("malformed tensor size/stride")
    if storage_offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError("negative tensor size, stride or offset")
    numel = 1
    for s in size:
        numel *= s
    if numel > 0:
        last = storage_offset + sum((n - 1) * st for n, st in zip(size, stride))
        if last >= storage.numel:
            raise pickle.UnpicklingError("a tensor view reaches element %d of a storage of %d elements" % (last, storage.numel))
    isz = ITEMSIZE[storage.dtype]

    def load():
        raw = storage.raw()
        if numel == 0:
            return b""
        # C-contiguous (dimensions of extent 1 may carry any stride): one slice.
        expected = 1
        contiguous = True
        for n, st in zip(reversed(size), reversed(stride)):
            if n != 1 and st != expected:
                contiguous = False
                break
            expected *= n
        if contiguous:
            return raw[storage_offset * isz : (storage_offset + numel) * isz]
        offsets = [storage_offset]
        for n, st in zip(size, stride):
            offsets = [o + i * st for o in offsets for i in range(n)]
        return b"".join(raw[o * isz : (o + 1) * isz] for o in offsets)

    return Tensor(storage.dtype, size, loader=load)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _tensor_from_storage(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor_from_storage(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, Tensor):
        raise pickle.UnpicklingError("parameter rebuilt from something that is not a tensor")
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return _rebuild_parameter(data)


def _codecs_encode(text, encoding="utf-8"):
    # Protocol-2 pickles spell a bytes object as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("unexpected _codecs.encode call")
    return text.encode("latin1")


def _torch_device(*args):
    return ":".join(str(a) for a in args)


# (module, name) -> the harmless object that stands in for it. Everything else is refused.
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch", "Size"): tuple,
    ("torch", "device"): _torch_device,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("_codecs", "encode"): _codecs_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds tensors, storages, numbers, strings and plain containers; refuses any
    other global, so that loading a checkpoint can never run code from it."""

    def __init__(self, file, resolve_storage):
        super().__init__(file)
        self._resolve_storage = resolve_storage

    def find_class(self, module, name):
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is not None:
            return allowed
        # Pickled schnetpack models: inert stand-ins whose structure is checked later.
        if _is_module_global(module, name):
            return _module_stand_in(module, name)
        if _is_function_global(module, name):
            return FunctionRef(module + "." + name)
        if module == "torch" and name in _STORAGE_TYPES:
            return _StorageType(name, _STORAGE_TYPES[name])
        hint = ""
        if not (module.startswith("torch") or module in ("builtins", "__builtin__", "collections", "_codecs")):
            hint = (
                "; if the file holds a whole model object, re-save only its weights: "
                "torch.save({'model_state_dict': model.state_dict(), 'config': {...}}, path)"
            )
        raise ConvertError(
            "the checkpoint refers to the Python object `%s.%s`, which this converter does not load "
            "(its restricted unpickler accepts only tensors, numbers, strings and plain containers, "
            "and never runs code from the file)%s" % (module, name, hint)
        )

    def persistent_load(self, pid):
        return self._resolve_storage(pid)


def _storage_id(pid, legacy):
    """Checks a persistent id ('storage', type, key, location, numel[, view]) and
    returns (dtype, key, numel, view_metadata)."""
    expected_len = 6 if legacy else 5
    if not (isinstance(pid, tuple) and len(pid) == expected_len and pid[0] == "storage"):
        if isinstance(pid, tuple) and pid and pid[0] == "module":
            raise ConvertError("the checkpoint holds a pickled nn.Module (legacy torch.save of a model); save its state_dict instead")
        raise pickle.UnpicklingError("unexpected persistent id %r" % (pid[:2] if isinstance(pid, tuple) else type(pid).__name__,))
    storage_type, key, _location, numel = pid[1], pid[2], pid[3], pid[4]
    if not isinstance(storage_type, _StorageType):
        raise pickle.UnpicklingError("storage of unsupported type %r" % (storage_type,))
    if not isinstance(key, str) or not _is_int(numel) or numel < 0:
        raise pickle.UnpicklingError("malformed storage reference")
    view = pid[5] if legacy else None
    return storage_type.dtype, key, numel, view


def _unpickle(data_or_file, resolve_storage, what):
    file = io.BytesIO(data_or_file) if isinstance(data_or_file, (bytes, bytearray)) else data_or_file
    try:
        return RestrictedUnpickler(file, resolve_storage).load()
    except ConvertError:
        raise
    except RecursionError:
        raise ConvertError("%s is nested too deeply to read" % what)
    except MemoryError:
        raise ConvertError("%s is too large or corrupt (out of memory while reading it)" % what)
    except Exception as e:  # pickle raises many types on corrupt input
        raise ConvertError("%s is corrupt or truncated: %s: %s" % (what, type(e).__name__, e))


def _torch_object_to_weights(obj, framework):
    """(state dict, config or None, framework text) from the unpickled top-level object."""
    config = None
    if isinstance(obj, ModuleStandIn):
        return painn_from_module(obj, framework), None, framework
    if isinstance(obj, dict) and "hyperparameters" in obj and "state_dict" in obj:
        return painn_from_state_dict(obj["hyperparameters"], obj["state_dict"]), None, framework
    if isinstance(obj, dict) and ("model_state_dict" in obj or "state_dict" in obj):
        key = "model_state_dict" if "model_state_dict" in obj else "state_dict"
        state = obj[key]
        if not isinstance(state, dict):
            raise ConvertError("checkpoint entry `%s` is a %s, not a dict of tensors" % (key, type(state).__name__))
        config = obj.get("config")
        if config is not None and not isinstance(config, dict):
            raise ConvertError("checkpoint entry `config` is a %s, not a dict" % type(config).__name__)
    elif isinstance(obj, dict) and obj and all(isinstance(v, Tensor) for v in obj.values()):
        state = obj
    elif isinstance(obj, dict):
        keys = ", ".join(sorted(repr(k) for k in obj)[:12])
        raise ConvertError("the checkpoint is a dict with keys [%s] but has no `model_state_dict` and is not a state dict of tensors" % keys)
    else:
        raise ConvertError("the checkpoint holds a %s, not a dict with `model_state_dict` or a state dict" % type(obj).__name__)
    tensors = OrderedDict()
    for name, value in state.items():
        if not isinstance(name, str):
            raise ConvertError("state dict key %r is not a string" % (name,))
        if not isinstance(value, Tensor):
            raise ConvertError("state dict entry `%s` is a %s, not a tensor" % (name, type(value).__name__))
        tensors[name] = value
    return tensors, config, framework


def read_torch_zip(data):
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError) as e:
        raise ConvertError("the input starts like a zip archive (a PyTorch checkpoint) but cannot be read as one: %s (truncated?)" % e)
    pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if not pickles:
        raise ConvertError("zip archive without a `data.pkl` record: not a torch.save checkpoint")
    pickles.sort(key=lambda n: n.count("/"))
    record = pickles[0]
    prefix = record[: -len("data.pkl")]
    if prefix + "constants.pkl" in names or any(n.startswith(prefix + "code/") for n in names):
        raise ConvertError(
            "this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; "
            "save the weights with torch.save({'model_state_dict': model.state_dict(), 'config': {...}}, path)"
        )

    def read_record(name):
        try:
            return archive.read(name)
        except KeyError:
            raise ConvertError("checkpoint record `%s` is missing" % name)
        except (zipfile.BadZipFile, ValueError, EOFError, OSError, RuntimeError) as e:
            raise ConvertError("checkpoint record `%s` cannot be read: %s (truncated or corrupt?)" % (name, e))
        except Exception as e:  # zlib.error and friends for compressed members
            raise ConvertError("checkpoint record `%s` cannot be read: %s" % (name, e))

    byteorder = "little"
    if prefix + "byteorder" in names:
        byteorder = read_record(prefix + "byteorder").decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise ConvertError("checkpoint byteorder record says `%s`" % byteorder)
    version = None
    for candidate in (prefix + "version", prefix + ".data/version"):
        if candidate in names:
            version = read_record(candidate).decode("ascii", "replace").strip()
            break
    storages = {}

    def resolve(pid):
        dtype, key, numel, _ = _storage_id(pid, legacy=False)
        if key not in storages:

            def load(key=key, dtype=dtype):
                raw = read_record(prefix + "data/" + key)
                isz = ITEMSIZE[dtype]
                if byteorder == "big" and isz > 1:
                    raw = b"".join(raw[i : i + isz][::-1] for i in range(0, len(raw) - len(raw) % isz, isz))
                return raw

            storages[key] = _Storage(dtype, key, numel, load)
        return storages[key]

    obj = _unpickle(read_record(record), resolve, "the checkpoint's pickle (`%s`)" % record)
    framework = "pytorch (torch.save zip checkpoint%s)" % (", serialization version " + version if version else "")
    return _torch_object_to_weights(obj, framework)


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def read_torch_legacy(data):
    stream = io.BytesIO(data)

    def nothing(pid):
        raise pickle.UnpicklingError("unexpected persistent id outside the main pickle")

    magic = _unpickle(stream, nothing, "the legacy checkpoint header")
    if magic != _LEGACY_MAGIC:
        raise ConvertError("the input is a pickle but not a PyTorch checkpoint (no torch.save magic number)")
    protocol = _unpickle(stream, nothing, "the legacy checkpoint header")
    if protocol != _LEGACY_PROTOCOL:
        raise ConvertError("unsupported legacy torch.save protocol %r" % (protocol,))
    sys_info = _unpickle(stream, nothing, "the legacy checkpoint header")
    if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
        raise ConvertError("big-endian legacy checkpoints are not supported; re-save with a current torch")
    storages = {}
    blobs = {}

    def resolve(pid):
        dtype, key, numel, view = _storage_id(pid, legacy=True)
        if key not in storages:
            storages[key] = _Storage(dtype, key, numel, lambda key=key: blobs[key])
        root = storages[key]
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 2 and _is_int(view[0]) and _is_int(view[1])):
            raise pickle.UnpicklingError("malformed storage view")
        offset, size = view
        if offset < 0 or size < 0 or offset + size > root.numel:
            raise pickle.UnpicklingError("storage view outside its storage")
        return _Storage(dtype, key, size, lambda key=key: blobs[key], offset=offset)

    obj = _unpickle(stream, resolve, "the legacy checkpoint's pickle")
    keys = _unpickle(stream, nothing, "the legacy checkpoint's storage list")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ConvertError("the legacy checkpoint's storage list is malformed")
    for key in keys:
        if key not in storages:
            raise ConvertError("the legacy checkpoint stores data for an unknown storage `%s`" % key)
        head = stream.read(8)
        if len(head) != 8:
            raise ConvertError("the legacy checkpoint is truncated (storage `%s` is missing)" % key)
        (numel,) = struct.unpack("<q", head)
        isz = ITEMSIZE[storages[key].dtype]
        if numel < storages[key].numel:
            raise ConvertError("legacy storage `%s` holds %d elements, its tensors need %d" % (key, numel, storages[key].numel))
        blob = stream.read(numel * isz)
        if len(blob) != numel * isz:
            raise ConvertError("the legacy checkpoint is truncated (storage `%s` is cut short)" % key)
        blobs[key] = blob
    missing = [k for k in storages if k not in blobs]
    if missing:
        raise ConvertError("the legacy checkpoint lacks the data of storage `%s`" % missing[0])
    return _torch_object_to_weights(obj, "pytorch (legacy torch.save format)")


# ----------------------------------------------------------------------------------
# ONNX: a minimal protobuf reader


class _ProtoError(Exception):
    pass


def _varint(buf, pos, end):
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _ProtoError("a varint runs past the end of its message at byte %d" % pos)
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise _ProtoError("a varint longer than 10 bytes at byte %d" % pos)


def _fields(buf, start, end):
    """Yields (field number, wire type, value); value is an int for varints and a
    (start, end) byte range for everything else."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _ProtoError("field number 0 at byte %d" % pos)
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise _ProtoError("a fixed-size field runs past the end of its message at byte %d" % pos)
            value = (pos, pos + size)
            pos += size
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise _ProtoError("field %d (%d bytes) runs past the end of its message at byte %d" % (field, length, pos))
            value = (pos, pos + length)
            pos += length
        else:
            raise _ProtoError("unsupported wire type %d at byte %d" % (wire, pos))
        yield field, wire, value


# ONNX TensorProto.DataType -> safetensors dtype name (floats) or a label (others).
_ONNX_TYPES = {
    1: "F32", 11: "F64", 10: "F16", 16: "BF16",
    2: "U8", 3: "I8", 4: "uint16", 5: "I16", 6: "I32", 7: "I64", 8: "string", 9: "BOOL",
    12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128",
}


def _packed(buf, wire, value, fixed_wire, fmt):
    """Values of a repeated numeric field occurrence, packed or not."""
    if wire == 2:
        a, b = value
        if fmt is None:  # packed varints
            out = []
            pos = a
            while pos < b:
                v, pos = _varint(buf, pos, b)
                out.append(v)
            return out
        size = struct.calcsize("<" + fmt)
        if (b - a) % size:
            raise _ProtoError("a packed array has a length that is not a multiple of %d" % size)
        return list(struct.unpack("<%d%s" % ((b - a) // size, fmt), bytes(buf[a:b])))
    if wire == fixed_wire:
        if fmt is None:
            return [value]
        a, b = value
        return [struct.unpack("<" + fmt, bytes(buf[a:b]))[0]]
    raise _ProtoError("a numeric array field has wire type %d" % wire)


def _signed64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def _onnx_tensor(buf, start, end):
    name = None
    dims = []
    data_type = None
    raw = None
    float_data = []
    double_data = []
    int32_data = []
    external = False
    segmented = False
    other_data = False
    for field, wire, value in _fields(buf, start, end):
        if field == 1:
            dims.extend(_signed64(v) for v in _packed(buf, wire, value, 0, None))
        elif field == 2 and wire == 0:
            data_type = value
        elif field == 3:
            segmented = True
        elif field == 4:
            float_data.extend(_packed(buf, wire, value, 5, "f"))
        elif field == 5:
            int32_data.extend(_packed(buf, wire, value, 0, None))
        elif field in (6, 7, 11):
            other_data = True
        elif field == 8 and wire == 2:
            name = bytes(buf[value[0] : value[1]]).decode("utf-8", "replace")
        elif field == 9 and wire == 2:
            raw = bytes(buf[value[0] : value[1]])
        elif field == 10:
            double_data.extend(_packed(buf, wire, value, 1, "d"))
        elif field == 13:
            external = True
        elif field == 14 and wire == 0:
            external = external or value == 1
    label = name if name is not None else "<unnamed>"
    if name is None:
        raise ConvertError("an ONNX initializer has no name")
    if any(d < 0 for d in dims):
        raise ConvertError("ONNX initializer `%s` has a negative dimension %r" % (label, dims))
    if external:
        raise ConvertError(
            "ONNX initializer `%s` keeps its data in an external file (ONNX external data), which this converter "
            "does not read; export with the weights inside the .onnx file" % label
        )
    if segmented:
        raise ConvertError("ONNX initializer `%s` is segmented, which this converter does not support" % label)
    dtype = _ONNX_TYPES.get(data_type, "onnx type %r" % (data_type,))
    tensor = Tensor(dtype, dims)
    if dtype not in FLOAT_DTYPES:
        # Kept (without data) only so that an unexpected name or dtype is reported clearly.
        tensor._data = b""
        return name, tensor
    n = tensor.numel
    isz = ITEMSIZE[dtype]
    if raw is not None:
        if len(raw) != n * isz:
            raise ConvertError("ONNX initializer `%s` of shape %s holds %d bytes of data, expected %d" % (label, list(dims), len(raw), n * isz))
        tensor._data = raw
    elif dtype == "F32" and len(float_data) == n:
        tensor._data = struct.pack("<%df" % n, *float_data)
    elif dtype == "F64" and len(double_data) == n:
        tensor._data = struct.pack("<%dd" % n, *double_data)
    elif dtype in ("F16", "BF16") and len(int32_data) == n:
        if any(v > 0xFFFF for v in int32_data):
            raise ConvertError("ONNX initializer `%s` has 16-bit values out of range" % label)
        tensor._data = struct.pack("<%dH" % n, *int32_data)
    else:
        found = len(float_data) or len(double_data) or len(int32_data)
        raise ConvertError("ONNX initializer `%s` of shape %s has %d values, expected %d" % (label, list(dims), found, n))
    return name, tensor


def read_onnx(data):
    buf = memoryview(data)
    producer = ""
    producer_version = ""
    ir_version = None
    opsets = []
    graph = None
    for field, wire, value in _fields(buf, 0, len(buf)):
        if field == 1 and wire == 0:
            ir_version = value
        elif field == 2 and wire == 2:
            producer = bytes(buf[value[0] : value[1]]).decode("utf-8", "replace")
        elif field == 3 and wire == 2:
            producer_version = bytes(buf[value[0] : value[1]]).decode("utf-8", "replace")
        elif field == 7 and wire == 2:
            graph = value
        elif field == 8 and wire == 2:
            domain, version = "", None
            for f, w, v in _fields(buf, value[0], value[1]):
                if f == 1 and w == 2:
                    domain = bytes(buf[v[0] : v[1]]).decode("utf-8", "replace")
                elif f == 2 and w == 0:
                    version = v
            if version is not None and domain in ("", "ai.onnx"):
                opsets.append(version)
    if graph is None:
        raise _ProtoError("no graph (ModelProto field 7)")
    tensors = OrderedDict()
    for field, wire, value in _fields(buf, graph[0], graph[1]):
        if field == 5 and wire == 2:
            name, tensor = _onnx_tensor(buf, value[0], value[1])
            if name in tensors:
                raise ConvertError("ONNX initializer `%s` appears twice" % name)
            tensors[name] = tensor
    if not tensors:
        raise ConvertError("the ONNX graph has no initializers: there are no weights to convert")
    framework = ("%s %s" % (producer, producer_version)).strip() or "unknown producer"
    details = []
    if opsets:
        details.append("opset %d" % max(opsets))
    if ir_version is not None:
        details.append("IR version %d" % ir_version)
    framework += " (ONNX export" + (", " + ", ".join(details) if details else "") + ")"
    return tensors, None, framework


# ----------------------------------------------------------------------------------
# Reading any input


def read_input(path):
    """(tensors, config or None, framework text, file bytes) of a checkpoint or ONNX file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        raise ConvertError("cannot read `%s`: it is a directory" % path, kind="io")
    except OSError as e:
        raise ConvertError("cannot read `%s`: %s" % (path, e.strerror or e), kind="io")
    if not data:
        raise ConvertError("`%s` is empty" % path)
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        tensors, config, framework = read_torch_zip(data)
    elif data[:1] == b"\x80" and len(data) > 1 and data[1] <= 5:
        tensors, config, framework = read_torch_legacy(data)
    else:
        if len(data) >= 9 and data[8:9] == b"{":
            (n,) = struct.unpack("<Q", data[:8])
            if 0 < n <= len(data) - 8:
                raise ConvertError("`%s` looks like a safetensors file already; convert the original checkpoint or ONNX export" % path)
        try:
            tensors, config, framework = read_onnx(data)
        except _ProtoError as e:
            if path.lower().endswith(".onnx"):
                raise ConvertError("`%s` is not a readable ONNX model: %s (truncated or corrupt?)" % (path, e))
            raise ConvertError("`%s` is neither a PyTorch checkpoint (torch.save) nor an ONNX model (%s)" % (path, e))
    return tensors, config, framework, data


# ----------------------------------------------------------------------------------
# The student's structure


def expected_shapes(hidden, num_rbf, num_blocks, max_z):
    """Tensor names and shapes, in state-dict order (mirrors src/model/format.rs)."""
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
        if l + 1 < num_blocks:
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


_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile


def normalize_names(tensors, note):
    out = OrderedDict()
    stripped = set()
    for name, tensor in tensors.items():
        new = name
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if new.startswith(prefix):
                    new = new[len(prefix) :]
                    stripped.add(prefix)
                    changed = True
        if new in out:
            raise ConvertError("two tensors are both named `%s` once the `module.` prefix is removed" % new)
        out[new] = tensor
    for prefix in sorted(stripped):
        note("removed the `%s` prefix from tensor names" % prefix)
    return out


def shortest_float32_text(value):
    """Shortest decimal that reads back as the same float32 (5.0 -> "5.0")."""
    target = struct.pack("<f", value)
    for digits in range(1, 10):
        text = "%.*g" % (digits, value)
        if struct.pack("<f", float(text)) == target:
            return repr(float(text))
    return repr(value)


def _shape_text(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _config_int(config, key, inferred, source):
    if key not in config:
        return
    value = config[key]
    if not _is_int(value):
        raise ConvertError("checkpoint config `%s` is %r, not an integer" % (key, value))
    if value != inferred:
        raise ConvertError("checkpoint config says %s=%d but %s" % (key, value, source))


def build_model(tensors, config, note):
    """Validates the weights against the student's structure. Returns (config dict of
    metadata strings, ordered [(name, Tensor)]); `note` receives remarks for the user."""
    tensors = normalize_names(tensors, note)
    embedding = tensors.get("embedding.weight")
    if embedding is None:
        raise ConvertError("missing tensor `embedding.weight`", kind="missing-tensor", name="embedding.weight")
    if len(embedding.shape) != 2 or embedding.shape[0] < 2 or embedding.shape[1] < 1:
        raise ConvertError(
            "tensor `embedding.weight` has shape %s, expected [max_z + 1, hidden_dim]" % _shape_text(embedding.shape),
            kind="format",
        )
    centers = tensors.get("rbf.centers")
    if centers is None:
        raise ConvertError("missing tensor `rbf.centers`", kind="missing-tensor", name="rbf.centers")
    if len(centers.shape) != 1 or centers.shape[0] < 1:
        raise ConvertError("tensor `rbf.centers` has shape %s, expected [num_rbf]" % _shape_text(centers.shape))
    hidden = embedding.shape[1]
    max_z = embedding.shape[0] - 1
    num_rbf = centers.shape[0]
    blocks = set()
    for name in tensors:
        m = re.match(r"interactions\.(\d+)\.", name)
        if m:
            blocks.add(int(m.group(1)))
    if not blocks:
        name = "interactions.0.message.rbf_to_scalar.0.weight"
        raise ConvertError("missing tensor `%s` (no interaction blocks at all)" % name, kind="missing-tensor", name=name)
    num_blocks = max(blocks) + 1

    if hidden % 4 != 0 or hidden > MAX_WIDTH:
        raise ConvertError("hidden width %d (from embedding.weight) must be a multiple of 4 and at most %d" % (hidden, MAX_WIDTH))
    if num_rbf > MAX_WIDTH:
        raise ConvertError("basis size %d (from rbf.centers) is larger than %d" % (num_rbf, MAX_WIDTH))
    if num_blocks > MAX_BLOCKS:
        raise ConvertError("%d interaction blocks; at most %d are supported" % (num_blocks, MAX_BLOCKS))
    if max_z > MAX_Z_LIMIT:
        raise ConvertError("embedding.weight has %d rows, so max_z = %d, beyond the last element (118)" % (max_z + 1, max_z))

    if config is not None:
        _config_int(config, "hidden_dim", hidden, "embedding.weight has shape %s" % _shape_text(embedding.shape))
        _config_int(config, "max_z", max_z, "embedding.weight has shape %s" % _shape_text(embedding.shape))
        _config_int(config, "num_rbf", num_rbf, "rbf.centers has shape %s" % _shape_text(centers.shape))
        _config_int(config, "num_interactions", num_blocks, "the state dict has %d interaction blocks" % num_blocks)

    last_block_mixing = "interactions.%d.update.mixing_matrix" % (num_blocks - 1)
    if last_block_mixing in tensors:
        del tensors[last_block_mixing]
        note(
            "dropped `%s`: the last block's vector update cannot reach the energy, and mlff model files omit it"
            % last_block_mixing
        )

    shapes = expected_shapes(hidden, num_rbf, num_blocks, max_z)
    for name in tensors:
        if name not in shapes:
            raise ConvertError("unexpected tensor `%s` (not part of the MLFF-Distiller student)" % name, kind="unexpected-tensor", name=name)
    for name in shapes:
        if name not in tensors:
            raise ConvertError("missing tensor `%s`" % name, kind="missing-tensor", name=name)
    ordered = []
    for name, shape in shapes.items():
        tensor = tensors[name]
        if tensor.shape != shape:
            raise ConvertError(
                "tensor `%s` has shape %s, expected %s" % (name, _shape_text(tensor.shape), _shape_text(shape)),
                kind="wrong-shape", name=name, expected=list(shape), found=list(tensor.shape),
            )
        if tensor.dtype not in FLOAT_DTYPES:
            raise ConvertError(
                "tensor `%s` has dtype %s, expected a float type (F32, F64, F16 or BF16)" % (name, tensor.dtype),
                kind="wrong-dtype", name=name, found=tensor.dtype,
            )
        bad = first_non_finite(tensor.dtype, tensor.data)
        if bad is not None:
            raise ConvertError(
                "tensor `%s` holds a non-finite value (NaN or inf) at flat index %d" % (name, bad),
                kind="non-finite", name=name, index=bad,
            )
        ordered.append((name, tensor))

    widths = float_values(tensors["rbf.widths"])
    for k, w in enumerate(widths):
        if w == 0.0:
            raise ConvertError("rbf.widths[%d] is zero" % k)
    last_center = float_values(centers)[-1]
    if not (0.0 < last_center < 1000.0):
        raise ConvertError("the last basis centre (the cutoff) is %r Å, not in (0, 1000)" % last_center)
    cutoff_text = shortest_float32_text(last_center) if centers.dtype != "F64" else repr(last_center)
    if config is not None and "cutoff" in config:
        cutoff = config["cutoff"]
        if not isinstance(cutoff, (int, float)) or isinstance(cutoff, bool) or not math.isfinite(cutoff):
            raise ConvertError("checkpoint config `cutoff` is %r, not a number" % (cutoff,))
        if abs(float(cutoff) - last_center) > 1e-5 * abs(float(cutoff)):
            raise ConvertError("checkpoint config says cutoff=%r Å but the last basis centre is %r Å" % (cutoff, last_center))
        cutoff_text = repr(float(cutoff))

    meta = OrderedDict()
    meta["hidden_dim"] = str(hidden)
    meta["num_rbf"] = str(num_rbf)
    meta["num_interactions"] = str(num_blocks)
    meta["cutoff"] = cutoff_text
    meta["max_z"] = str(max_z)
    return meta, ordered


def parse_species(text, max_z):
    numbers = []
    for symbol in (s.strip() for s in text.split(",")):
        if not symbol:
            continue
        z = ATOMIC_NUMBER.get(symbol)
        if z is None:
            raise ConvertError("--species: unknown element `%s` (use symbols such as H,C,N,O)" % symbol, kind="argument")
        if z > max_z:
            raise ConvertError("--species: %s (Z=%d) is beyond this model's max_z=%d" % (symbol, z, max_z), kind="argument")
        if z not in numbers:
            numbers.append(z)
    if not numbers:
        raise ConvertError("--species: empty element list", kind="argument")
    numbers.sort()
    return ",".join(ELEMENTS[z - 1] for z in numbers)


# ----------------------------------------------------------------------------------
# schnetpack PaiNN (architecture "painn"): whole pickled NeuralNetworkPotential objects,
# read through inert stand-ins, or {"hyperparameters": ..., "state_dict": ...}

ARCHITECTURE_PAINN = "painn"


class ModuleStandIn:
    """An inert stand-in for a pickled torch / schnetpack module: it only records the
    attributes pickle gives it (its __dict__: _parameters, _buffers, _modules, flags).
    No method of the real class exists here, so nothing from the file can run."""

    qualname = "?"

    def __init__(self, *args, **kwargs):
        # Reached only by REDUCE on the class, which torch.save does not write for modules.
        raise pickle.UnpicklingError("the checkpoint calls %s(...) instead of restoring it" % self.qualname)

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:
            state = dict(state[0] or {}, **(state[1] or {}))
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("unexpected state for %s" % self.qualname)
        self.__dict__.update(state)

    def modules(self):
        value = self.__dict__.get("_modules")
        return value if isinstance(value, dict) else {}

    def tensor(self, name):
        for key in ("_parameters", "_buffers"):
            group = self.__dict__.get(key)
            if isinstance(group, dict) and name in group:
                return group[name]
        value = self.__dict__.get(name)
        return value if isinstance(value, Tensor) else None

    def attr(self, name, default=None):
        return self.__dict__.get(name, default)


class FunctionRef:
    """An inert reference to a function (an activation or an initialiser) named in the
    pickle; it cannot be called."""

    def __init__(self, qualname):
        self.qualname = qualname

    def __repr__(self):
        return self.qualname


_STAND_INS = {}


def _module_stand_in(module, name):
    qualname = module + "." + name
    if qualname not in _STAND_INS:
        _STAND_INS[qualname] = type(name, (ModuleStandIn,), {"qualname": qualname, "__module__": __name__})
    return _STAND_INS[qualname]


def _is_module_global(module, name):
    """Classes whose pickled instances may appear in a schnetpack model: read as inert
    stand-ins (their structure is then checked by `painn_from_module`)."""
    if module.startswith("schnetpack.") and name[:1].isupper():
        return True
    return module.startswith("torch.nn.modules.") and name[:1].isupper()


def _is_function_global(module, name):
    return module in ("torch.nn.functional", "torch.nn.init", "torch._C._nn", "schnetpack.nn.activations") and name[:1].islower()


_QN = {
    "nnp": "schnetpack.model.base.NeuralNetworkPotential",
    "painn": "schnetpack.representation.painn.PaiNN",
    "interaction": "schnetpack.representation.painn.PaiNNInteraction",
    "mixing": "schnetpack.representation.painn.PaiNNMixing",
    "dense": "schnetpack.nn.base.Dense",
    "cosine": "schnetpack.nn.cutoff.CosineCutoff",
    "atomwise": "schnetpack.atomistic.atomwise.Atomwise",
    "forces": "schnetpack.atomistic.response.Forces",
    "scale": "schnetpack.transform.atomistic.ScaleProperty",
    "offsets": "schnetpack.transform.atomistic.AddOffsets",
}
_GAUSSIANS = ("schnetpack.nn.radial.GaussianRBF", "schnetpack.nn.radial.GaussianRBFCentered")
_HARMLESS_INPUTS = ("schnetpack.atomistic.distances.PairwiseDistances", "schnetpack.atomistic.response.Strain")
_CASTS = ("schnetpack.transform.casting.CastTo64", "schnetpack.transform.casting.CastTo32", "schnetpack.transform.casting.CastMap")
_SILU = ("torch.nn.functional.silu", "torch.nn.modules.activation.SiLU")
_IDENTITY = ("torch.nn.modules.linear.Identity",)


class PainnSource:
    """What the readers hand to `build_painn`: named float tensors in the file's naming
    (duplicates of shared blocks removed), hyper-parameters, and the post-processing."""

    def __init__(self, tensors, hyper, energy_scale, atom_energy, species=None):
        self.tensors = tensors
        self.hyper = hyper
        self.energy_scale = energy_scale
        self.atom_energy = atom_energy  # {Z: eV per atom}, and "mean" for every element
        self.species = species


def _qualname(obj):
    return getattr(obj, "qualname", type(obj).__name__)


def _expect(obj, qualnames, where):
    if isinstance(qualnames, str):
        qualnames = (qualnames,)
    if not isinstance(obj, ModuleStandIn) or obj.qualname not in qualnames:
        raise ConvertError("%s is a `%s`; this converter reads %s" % (where, _qualname(obj), " or ".join("`%s`" % q for q in qualnames)))


def _children(obj):
    """Submodules of a ModuleList / Sequential in index order."""
    mods = obj.modules()
    return [mods[k] for k in sorted(mods, key=lambda k: int(k) if str(k).isdigit() else 1 << 30)]


def _activation(dense, where):
    """'silu' or None (identity) for a schnetpack Dense layer."""
    act = dense.modules().get("activation")
    if act is None:
        act = dense.attr("activation")
    name = _qualname(act) if act is not None else None
    if name in _SILU:
        return "silu"
    if name in _IDENTITY or act is None:
        return None
    raise ConvertError("%s uses the activation `%s`; only SiLU (schnetpack's default) is supported" % (where, name))


def _dense(dense, where, activation, bias=True):
    _expect(dense, (_QN["dense"], "torch.nn.modules.linear.Linear"), where)
    got = _activation(dense, where) if dense.qualname == _QN["dense"] else None
    if got != activation:
        raise ConvertError("%s: expected activation %s, found %s" % (where, activation or "none", got or "none"))
    weight = dense.tensor("weight")
    b = dense.tensor("bias")
    if weight is None:
        raise ConvertError("%s has no weight" % where)
    if bias and b is None:
        raise ConvertError("%s has no bias" % where)
    if not bias and b is not None:
        raise ConvertError("%s has a bias; schnetpack's mu_channel_mix has none" % where)
    return weight, b


def _scalar(tensor, where):
    if not isinstance(tensor, Tensor) or tensor.numel != 1 or tensor.dtype not in FLOAT_DTYPES:
        raise ConvertError("%s is not a single float" % where)
    return float_values(tensor)[0]


def _number(value, where):
    if isinstance(value, Tensor):
        return _scalar(value, where)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ConvertError("%s is %r, not a number" % (where, value))


def _atomref_values(tensor, where):
    if not isinstance(tensor, Tensor) or len(tensor.shape) != 1 or tensor.dtype not in FLOAT_DTYPES:
        raise ConvertError("%s is not a vector of per-element energies" % where)
    return float_values(tensor)


class _EnergyModel:
    """E = scale * sum_i y_i + sum_i offset[Z_i], built step by step in module order."""

    def __init__(self):
        self.scale = 1.0
        self.mean = 0.0
        self.atomref = {}

    def times(self, factor):
        self.scale *= factor
        self.mean *= factor
        self.atomref = {z: v * factor for z, v in self.atomref.items()}

    def add_offsets(self, module, where):
        if not module.attr("is_extensive", True):
            raise ConvertError("%s adds a non-extensive offset (is_extensive=False); only extensive energies are supported" % where)
        if module.attr("add_mean", False):
            self.mean += _scalar(module.tensor("mean"), where + ".mean")
        if module.attr("add_atomrefs", False):
            for z, v in enumerate(_atomref_values(module.tensor("atomref"), where + ".atomref")):
                if v != 0.0:
                    self.atomref[z] = self.atomref.get(z, 0.0) + v


def painn_from_module(nnp, framework):
    """A PaiNN model from an unpickled `NeuralNetworkPotential` stand-in."""
    _expect(nnp, _QN["nnp"], "the pickled model")
    mods = nnp.modules()
    for inp in _children(mods.get("input_modules")) if mods.get("input_modules") is not None else []:
        if _qualname(inp) not in _HARMLESS_INPUTS:
            raise ConvertError("input module `%s` is not supported (PairwiseDistances and Strain are)" % _qualname(inp))
    rep = mods.get("representation")
    _expect(rep, _QN["painn"], "the representation")
    r = rep.modules()
    tensors = OrderedDict()
    hyper = {}
    emb = r.get("embedding")
    _expect(emb, "torch.nn.modules.sparse.Embedding", "representation.embedding")
    if emb.attr("max_norm") is not None:
        raise ConvertError("representation.embedding has max_norm set; not supported")
    tensors["representation.embedding.weight"] = emb.tensor("weight")
    electronic = r.get("electronic_embeddings")
    if electronic is not None and _children(electronic):
        raise ConvertError("the PaiNN representation has electronic embeddings (charge/spin); not supported")
    rbf = r.get("radial_basis")
    _expect(rbf, _GAUSSIANS, "representation.radial_basis")
    tensors["representation.radial_basis.offsets"] = rbf.tensor("offsets")
    tensors["representation.radial_basis.widths"] = rbf.tensor("widths")
    cut = r.get("cutoff_fn")
    _expect(cut, _QN["cosine"], "representation.cutoff_fn")
    tensors["representation.cutoff_fn.cutoff"] = cut.tensor("cutoff")
    fw, fb = _dense(r.get("filter_net"), "representation.filter_net", None)
    tensors["representation.filter_net.weight"], tensors["representation.filter_net.bias"] = fw, fb
    interactions = _children(r.get("interactions"))
    mixings = _children(r.get("mixing"))
    if not interactions or len(interactions) != len(mixings):
        raise ConvertError("the PaiNN representation has %d interaction and %d mixing blocks" % (len(interactions), len(mixings)))
    shared = all(b is interactions[0] for b in interactions) and all(m is mixings[0] for m in mixings)
    hyper["n_interactions"] = len(interactions)
    hyper["shared_interactions"] = shared and len(interactions) > 1
    hyper["shared_filters"] = bool(rep.attr("share_filters", False))
    epsilon = None
    for b, (block, mix) in enumerate(zip(interactions, mixings)):
        if shared and b > 0:
            break
        _expect(block, _QN["interaction"], "representation.interactions.%d" % b)
        _expect(mix, _QN["mixing"], "representation.mixing.%d" % b)
        net = _children(block.modules().get("interatomic_context_net"))
        if len(net) != 2:
            raise ConvertError("representation.interactions.%d.interatomic_context_net has %d layers, expected 2" % (b, len(net)))
        p = "representation.interactions.%d.interatomic_context_net" % b
        for i, act in ((0, "silu"), (1, None)):
            w, bias = _dense(net[i], "%s.%d" % (p, i), act)
            tensors["%s.%d.weight" % (p, i)], tensors["%s.%d.bias" % (p, i)] = w, bias
        net = _children(mix.modules().get("intraatomic_context_net"))
        if len(net) != 2:
            raise ConvertError("representation.mixing.%d.intraatomic_context_net has %d layers, expected 2" % (b, len(net)))
        p = "representation.mixing.%d" % b
        for i, act in ((0, "silu"), (1, None)):
            w, bias = _dense(net[i], "%s.intraatomic_context_net.%d" % (p, i), act)
            tensors["%s.intraatomic_context_net.%d.weight" % (p, i)] = w
            tensors["%s.intraatomic_context_net.%d.bias" % (p, i)] = bias
        w, _ = _dense(mix.modules().get("mu_channel_mix"), p + ".mu_channel_mix", None, bias=False)
        tensors[p + ".mu_channel_mix.weight"] = w
        eps = _number(mix.attr("epsilon"), p + ".epsilon")
        if epsilon is not None and eps != epsilon:
            raise ConvertError("the mixing blocks use different epsilons (%r and %r)" % (epsilon, eps))
        epsilon = eps
    hyper["epsilon"] = epsilon

    energy = _EnergyModel()
    energy_key = None
    outputs = _children(mods.get("output_modules")) if mods.get("output_modules") is not None else []
    for index, out in enumerate(outputs):
        where = "output_modules.%d (`%s`)" % (index, _qualname(out))
        name = _qualname(out)
        if name == _QN["atomwise"]:
            if energy_key is not None:
                raise ConvertError("%s: a second Atomwise output; only one energy readout is supported" % where)
            if index != 0:
                raise ConvertError("%s: the Atomwise energy readout must be the first output module" % where)
            if out.attr("aggregation_mode") != "sum":
                raise ConvertError("%s aggregates with %r; only 'sum' (an extensive energy) is supported" % (where, out.attr("aggregation_mode")))
            if out.attr("n_out", 1) != 1:
                raise ConvertError("%s predicts %r outputs per atom; an energy has 1" % (where, out.attr("n_out")))
            energy_key = out.attr("output_key")
            layers = _children(out.modules().get("outnet"))
            if not layers:
                raise ConvertError("%s has no layers" % where)
            for i, layer in enumerate(layers):
                act = "silu" if i + 1 < len(layers) else None
                w, b = _dense(layer, "output_modules.0.outnet.%d" % i, act)
                tensors["output_modules.0.outnet.%d.weight" % i], tensors["output_modules.0.outnet.%d.bias" % i] = w, b
        elif energy_key is None:
            raise ConvertError("%s comes before the Atomwise energy readout" % where)
        elif name == _QN["scale"]:
            if out.attr("input_key") != energy_key or out.attr("output_key") != energy_key:
                raise ConvertError("%s scales `%s` into `%s`; only scaling the energy `%s` in place is supported" % (where, out.attr("input_key"), out.attr("output_key"), energy_key))
            energy.times(_scalar(out.tensor("scale"), where + ".scale"))
        elif name == _QN["offsets"]:
            if out.attr("_property") != energy_key:
                raise ConvertError("%s adds offsets to `%s`, not to the energy `%s`" % (where, out.attr("_property"), energy_key))
            energy.add_offsets(out, where)
        elif name == _QN["forces"]:
            if out.attr("energy_key") != energy_key:
                raise ConvertError("%s differentiates `%s`, not the energy `%s`" % (where, out.attr("energy_key"), energy_key))
        else:
            raise ConvertError("%s is not supported (Atomwise, ScaleProperty, AddOffsets and Forces are)" % where)
    if energy_key is None:
        raise ConvertError("the model has no Atomwise energy readout among its output modules")
    if nnp.attr("do_postprocessing", True) and mods.get("postprocessors") is not None:
        for index, post in enumerate(_children(mods.get("postprocessors"))):
            where = "postprocessors.%d (`%s`)" % (index, _qualname(post))
            if _qualname(post) in _CASTS:
                continue
            if _qualname(post) == _QN["offsets"] and post.attr("_property") == energy_key:
                energy.add_offsets(post, where)  # after the forces: a constant per atom
                continue
            if _qualname(post) == _QN["scale"]:
                raise ConvertError("%s scales `%s` after the forces were computed, so energies and forces would disagree; "
                                   "put ScaleProperty among the output modules, before Forces" % (where, post.attr("input_key")))
            raise ConvertError("%s is not supported as post-processing (CastTo64/CastTo32 and AddOffsets of the energy are)" % where)
    return _painn_source(tensors, hyper, energy)


def _offsets_of(energy):
    offsets = {"mean": energy.mean}
    offsets.update(energy.atomref)
    return offsets


def _painn_source(tensors, hyper, energy):
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise ConvertError("missing tensor `%s`" % name, kind="missing-tensor", name=name)
    offsets = {"mean": energy.mean}
    offsets.update(energy.atomref)
    return PainnSource(tensors, hyper, energy.scale, offsets)


def _atomref_from_hyper(value):
    """{Z: eV} from a list indexed by Z or a dict keyed by Z or element symbol."""
    if value is None:
        return {}
    out = {}
    if isinstance(value, Tensor):
        value = float_values(value)
    if isinstance(value, (list, tuple)):
        for z, v in enumerate(value):
            v = _number(v, "hyperparameters atomref[%d]" % z)
            if v != 0.0:
                out[z] = v
        return out
    if isinstance(value, dict):
        for key, v in value.items():
            z = key if _is_int(key) else ATOMIC_NUMBER.get(key) if isinstance(key, str) else None
            if z is None and isinstance(key, str) and key.isdigit():
                z = int(key)
            if z is None:
                raise ConvertError("hyperparameters atomref: unknown element %r" % (key,))
            out[z] = _number(v, "hyperparameters atomref[%r]" % (key,))
        return out
    raise ConvertError("hyperparameters atomref is a %s, not a list or dict" % type(value).__name__)


_PAINN_HYPER_KEYS = ("architecture", "n_atom_basis", "n_interactions", "n_rbf", "cutoff", "shared_interactions", "shared_filters",
                     "epsilon", "rbf", "rbf_start", "cutoff_fn", "activation", "readout", "mean", "stddev", "atomref", "elements",
                     "max_z")


def painn_from_state_dict(hyper, state):
    """A PaiNN model from {"hyperparameters": ..., "state_dict": ...} (schnetpack names)."""
    if not isinstance(hyper, dict) or not isinstance(state, dict):
        raise ConvertError("`hyperparameters` must be a dict and `state_dict` a dict of tensors")
    unknown = sorted(str(k) for k in hyper if k not in _PAINN_HYPER_KEYS)
    if unknown:
        raise ConvertError("unknown hyperparameters: %s (known: %s)" % (", ".join(unknown), ", ".join(_PAINN_HYPER_KEYS)))
    for key in ("n_atom_basis", "n_interactions", "n_rbf", "cutoff"):
        if key not in hyper:
            raise ConvertError("hyperparameters lack `%s`" % key)
    for key, supported in (("rbf", "gaussian"), ("cutoff_fn", "cosine"), ("activation", "silu")):
        if hyper.get(key, supported) != supported:
            raise ConvertError("hyperparameters %s=%r; only %r is supported" % (key, hyper[key], supported))
    readout = hyper.get("readout") or {}
    if not isinstance(readout, dict) or readout.get("activation", "silu") != "silu":
        raise ConvertError("hyperparameters readout must be a dict with activation 'silu'")
    state = normalize_names(state, lambda text: None)
    f, n_blocks, k = hyper["n_atom_basis"], hyper["n_interactions"], hyper["n_rbf"]
    if not all(_is_int(v) and v > 0 for v in (f, n_blocks, k)):
        raise ConvertError("hyperparameters n_atom_basis, n_interactions and n_rbf must be positive integers")
    shared = bool(hyper.get("shared_interactions", False))
    tensors = OrderedDict()

    def take(name):
        t = state.get(name)
        if not isinstance(t, Tensor):
            raise ConvertError("missing tensor `%s`" % name, kind="missing-tensor", name=name)
        tensors[name] = t

    for name in ("representation.embedding.weight", "representation.filter_net.weight", "representation.filter_net.bias"):
        take(name)
    for b in range(1 if shared else n_blocks):
        p = "representation.interactions.%d.interatomic_context_net" % b
        for i in (0, 1):
            take("%s.%d.weight" % (p, i))
            take("%s.%d.bias" % (p, i))
        p = "representation.mixing.%d" % b
        for i in (0, 1):
            take("%s.intraatomic_context_net.%d.weight" % (p, i))
            take("%s.intraatomic_context_net.%d.bias" % (p, i))
        take(p + ".mu_channel_mix.weight")
    i = 0
    while "output_modules.0.outnet.%d.weight" % i in state:
        take("output_modules.0.outnet.%d.weight" % i)
        take("output_modules.0.outnet.%d.bias" % i)
        i += 1
    if i == 0:
        take("output_modules.0.outnet.0.weight")
    n_layers = readout.get("n_layers")
    if n_layers is not None and n_layers != i:
        raise ConvertError("hyperparameters readout n_layers=%r but the state dict has %d readout layers" % (n_layers, i))
    n_hidden = readout.get("n_hidden")
    if _is_int(n_hidden) and i > 1 and tensors["output_modules.0.outnet.0.weight"].shape[0] != n_hidden:
        raise ConvertError("hyperparameters readout n_hidden=%r but the first readout layer has %d outputs"
                           % (n_hidden, tensors["output_modules.0.outnet.0.weight"].shape[0]))
    cutoff = _number(hyper["cutoff"], "hyperparameters cutoff")
    for name in ("representation.radial_basis.offsets", "representation.radial_basis.widths", "representation.cutoff_fn.cutoff"):
        if isinstance(state.get(name), Tensor):
            tensors[name] = state[name]
    if "representation.radial_basis.offsets" not in tensors or "representation.radial_basis.widths" not in tensors:
        # GaussianRBF(n_rbf, cutoff, start): offsets = linspace(start, cutoff, n_rbf) in
        # float32, every width = |offsets[1] - offsets[0]|.
        start = _number(hyper.get("rbf_start", 0.0), "hyperparameters rbf_start")
        offsets = [f32(start + (cutoff - start) * i / (k - 1)) if k > 1 else f32(start) for i in range(k)]
        width = f32(abs(offsets[1] - offsets[0])) if k > 1 else 0.0
        tensors["representation.radial_basis.offsets"] = _f32_tensor(offsets)
        tensors["representation.radial_basis.widths"] = _f32_tensor([width] * k)
    if "representation.cutoff_fn.cutoff" not in tensors:
        tensors["representation.cutoff_fn.cutoff"] = _f32_tensor([f32(cutoff)])
    energy = _EnergyModel()
    energy.mean = _number(hyper.get("mean", 0.0), "hyperparameters mean")
    energy.atomref = _atomref_from_hyper(hyper.get("atomref"))
    energy.times(1.0)
    scale = _number(hyper.get("stddev", 1.0), "hyperparameters stddev")
    source = PainnSource(tensors, {
        "n_interactions": n_blocks,
        "shared_interactions": shared and n_blocks > 1,
        "shared_filters": bool(hyper.get("shared_filters", False)),
        "epsilon": _number(hyper.get("epsilon", 1e-8), "hyperparameters epsilon"),
        "cutoff": cutoff,
    }, scale, _offsets_of(energy))
    elements = hyper.get("elements")
    if elements is not None:
        if not isinstance(elements, (list, tuple)) or not all(isinstance(e, str) for e in elements):
            raise ConvertError("hyperparameters elements must be a list of element symbols")
        source.species = ",".join(elements)
    if _number(cutoff, "cutoff") <= 0:
        raise ConvertError("hyperparameters cutoff must be positive")
    return source


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _f32_tensor(values):
    return Tensor("F32", (len(values),), data=struct.pack("<%df" % len(values), *values))


def _f64_tensor(values):
    return Tensor("F64", (len(values),), data=struct.pack("<%dd" % len(values), *values))


def build_painn(source, note):
    """Checks a PaiNN model's shapes and values; returns (metadata, ordered tensors, species)."""
    t = source.tensors
    hyper = source.hyper
    emb = t["representation.embedding.weight"]
    if len(emb.shape) != 2 or emb.shape[0] < 2:
        raise ConvertError("representation.embedding.weight has shape %s, expected [max_z + 1, n_atom_basis]" % _shape_text(emb.shape))
    max_z = min(emb.shape[0] - 1, MAX_Z_LIMIT)
    f = emb.shape[1]
    k = t["representation.radial_basis.offsets"].shape[0] if t["representation.radial_basis.offsets"].shape else 0
    n_blocks = hyper["n_interactions"]
    if emb.shape[0] - 1 > MAX_Z_LIMIT:
        # Rows beyond Og can never be used; drop them.
        rows = float_values(emb)[: (MAX_Z_LIMIT + 1) * f]
        t["representation.embedding.weight"] = Tensor(emb.dtype if emb.dtype in ("F32", "F64") else "F64", (MAX_Z_LIMIT + 1, f),
                                                      data=struct.pack("<%d%s" % (len(rows), "f" if emb.dtype == "F32" else "d"), *rows))
        note("dropped embedding rows beyond Z=118")
    if f > MAX_WIDTH or k > MAX_WIDTH or n_blocks > MAX_BLOCKS:
        raise ConvertError("n_atom_basis=%d, n_rbf=%d, n_interactions=%d exceed the limits (%d, %d, %d)" % (f, k, n_blocks, MAX_WIDTH, MAX_WIDTH, MAX_BLOCKS))
    shared_filters = hyper["shared_filters"]
    expected = OrderedDict()
    expected["representation.embedding.weight"] = (max_z + 1, f)
    expected["representation.radial_basis.offsets"] = (k,)
    expected["representation.radial_basis.widths"] = (k,)
    expected["representation.cutoff_fn.cutoff"] = (1,)
    expected["representation.filter_net.weight"] = (3 * f * (1 if shared_filters else n_blocks), k)
    expected["representation.filter_net.bias"] = (3 * f * (1 if shared_filters else n_blocks),)
    for b in range(1 if hyper["shared_interactions"] else n_blocks):
        p = "representation.interactions.%d.interatomic_context_net" % b
        expected[p + ".0.weight"], expected[p + ".0.bias"] = (f, f), (f,)
        expected[p + ".1.weight"], expected[p + ".1.bias"] = (3 * f, f), (3 * f,)
        p = "representation.mixing.%d" % b
        expected[p + ".intraatomic_context_net.0.weight"], expected[p + ".intraatomic_context_net.0.bias"] = (f, 2 * f), (f,)
        expected[p + ".intraatomic_context_net.1.weight"], expected[p + ".intraatomic_context_net.1.bias"] = (3 * f, f), (3 * f,)
        expected[p + ".mu_channel_mix.weight"] = (2 * f, f)
    widths = [f]
    i = 0
    while "output_modules.0.outnet.%d.weight" % i in t:
        w = t["output_modules.0.outnet.%d.weight" % i]
        if len(w.shape) != 2:
            raise ConvertError("output_modules.0.outnet.%d.weight has shape %s" % (i, _shape_text(w.shape)))
        expected["output_modules.0.outnet.%d.weight" % i] = (w.shape[0], widths[-1])
        expected["output_modules.0.outnet.%d.bias" % i] = (w.shape[0],)
        widths.append(w.shape[0])
        i += 1
    if widths[-1] != 1:
        raise ConvertError("the readout ends with %d outputs per atom; an energy has 1" % widths[-1])
    if len(widths) > 17:
        raise ConvertError("the readout has %d layers; at most 16 are supported" % (len(widths) - 1))
    ordered = []
    for name, shape in expected.items():
        tensor = t.get(name)
        if tensor is None:
            raise ConvertError("missing tensor `%s`" % name, kind="missing-tensor", name=name)
        if tensor.shape != shape:
            raise ConvertError("tensor `%s` has shape %s, expected %s" % (name, _shape_text(tensor.shape), _shape_text(shape)),
                               kind="wrong-shape", name=name, expected=list(shape), found=list(tensor.shape))
        if tensor.dtype not in FLOAT_DTYPES:
            raise ConvertError("tensor `%s` has dtype %s, expected a float type" % (name, tensor.dtype), kind="wrong-dtype", name=name, found=tensor.dtype)
        bad = first_non_finite(tensor.dtype, tensor.data)
        if bad is not None:
            raise ConvertError("tensor `%s` holds a non-finite value (NaN or inf) at flat index %d" % (name, bad), kind="non-finite", name=name, index=bad)
        ordered.append((name, tensor))
    for name in t:
        if name not in expected:
            raise ConvertError("unexpected tensor `%s` (not part of schnetpack PaiNN)" % name, kind="unexpected-tensor", name=name)
    if any(w == 0.0 for w in float_values(t["representation.radial_basis.widths"])):
        raise ConvertError("a radial basis width is zero")
    cutoff = float_values(t["representation.cutoff_fn.cutoff"])[0]
    if not (0.0 < cutoff < 1000.0):
        raise ConvertError("the cutoff is %r Å, not in (0, 1000)" % cutoff)
    if "cutoff" in hyper and abs(hyper["cutoff"] - cutoff) > 1e-6 * cutoff:
        raise ConvertError("hyperparameters cutoff=%r Å but representation.cutoff_fn.cutoff is %r Å" % (hyper["cutoff"], cutoff))
    epsilon = hyper["epsilon"]
    if not (0.0 < epsilon < 1.0):
        raise ConvertError("epsilon=%r; PaiNN needs 0 < epsilon < 1 (the norm of zero vector features has no derivative otherwise)" % epsilon)
    atom_energy = [0.0] * (max_z + 1)
    mean = source.atom_energy.get("mean", 0.0)
    for z in range(1, max_z + 1):
        atom_energy[z] = mean + source.atom_energy.get(z, 0.0)
    for z, v in source.atom_energy.items():
        if z != "mean" and v != 0.0 and not (1 <= z <= max_z):
            raise ConvertError("a reference energy is given for Z=%r, outside the embedding (1..%d)" % (z, max_z))
    ordered.append(("postprocessing.energy_scale", _f64_tensor([source.energy_scale])))
    ordered.append(("postprocessing.atom_energy", _f64_tensor(atom_energy)))
    meta = OrderedDict()
    meta["hidden_dim"] = str(f)
    meta["num_rbf"] = str(k)
    meta["num_interactions"] = str(n_blocks)
    meta["cutoff"] = shortest_float32_text(cutoff) if t["representation.cutoff_fn.cutoff"].dtype != "F64" else repr(cutoff)
    meta["max_z"] = str(max_z)
    meta["rbf"] = "gaussian"
    meta["cutoff_fn"] = "cosine"
    meta["activation"] = "silu"
    meta["shared_filters"] = "true" if shared_filters else "false"
    meta["shared_interactions"] = "true" if hyper["shared_interactions"] else "false"
    meta["epsilon"] = repr(float(epsilon))
    meta["readout_widths"] = ",".join(str(w) for w in widths)
    return meta, ordered


# ----------------------------------------------------------------------------------
# Writing safetensors


def safetensors_bytes(metadata, tensors):
    """The complete file: 8-byte little-endian header length, JSON header padded with
    spaces to a multiple of 8, then the data. Larger dtypes come first so every
    tensor is aligned to its element size."""
    order = sorted(range(len(tensors)), key=lambda i: (-ITEMSIZE[tensors[i][1].dtype], i))
    header = OrderedDict()
    header["__metadata__"] = metadata
    offset = 0
    chunks = []
    for i in order:
        name, tensor = tensors[i]
        data = tensor.data
        header[name] = OrderedDict([("dtype", tensor.dtype), ("shape", list(tensor.shape)), ("data_offsets", [offset, offset + len(data)])])
        offset += len(data)
        chunks.append(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def write_atomically(path, data):
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ConvertError("cannot write `%s`: it is a directory" % path, kind="io")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    except OSError as e:
        raise ConvertError("cannot write `%s`: %s" % (path, e.strerror or e), kind="io")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ConvertError("cannot write `%s`: %s" % (path, e.strerror or e), kind="io")
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _now_text():
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        moment = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
    else:
        moment = datetime.datetime.now(tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def convert(input_path, output_path, species=None, provenance=None, notes=None):
    """Converts one file; returns a one-line summary and appends remarks for the user
    to `notes` (a list). Raises ConvertError."""
    notes = [] if notes is None else notes
    if os.path.exists(output_path) and os.path.exists(input_path) and os.path.samefile(input_path, output_path):
        raise ConvertError("the output `%s` is the input file" % output_path, kind="argument")
    if os.path.isdir(output_path):
        raise ConvertError("cannot write `%s`: it is a directory" % output_path, kind="io")
    directory = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(directory):
        raise ConvertError("cannot write `%s`: folder `%s` does not exist" % (output_path, directory), kind="io")
    tensors, config, framework, data = read_input(input_path)
    architecture = ARCHITECTURE
    if isinstance(tensors, PainnSource):
        architecture = ARCHITECTURE_PAINN
        structural, ordered = build_painn(tensors, notes.append)
        if species is None and tensors.species is not None:
            species = tensors.species
    else:
        structural, ordered = build_model(tensors, config, notes.append)
    metadata = OrderedDict()
    metadata["format_version"] = FORMAT_VERSION
    metadata["architecture"] = architecture
    metadata.update(structural)
    metadata["energy_unit"] = "eV"
    metadata["length_unit"] = "angstrom"
    auto = "converted from %s (sha256 %s; source: %s) by mlff tools/convert_model.py %s on %s" % (
        os.path.basename(input_path),
        hashlib.sha256(data).hexdigest(),
        framework,
        CONVERTER_VERSION,
        _now_text(),
    )
    metadata["provenance"] = provenance.strip() + " | " + auto if provenance and provenance.strip() else auto
    if species is not None:
        metadata["species"] = parse_species(species, int(structural["max_z"]))
    write_atomically(output_path, safetensors_bytes(metadata, ordered))
    numbers = sum(t.numel for _, t in ordered)
    dtypes = ",".join(sorted(set(t.dtype for _, t in ordered)))
    return "wrote %s: hidden_dim=%s num_rbf=%s num_interactions=%s cutoff=%s max_z=%s%s; %d tensors, %d numbers (%s)" % (
        output_path,
        structural["hidden_dim"],
        structural["num_rbf"],
        structural["num_interactions"],
        structural["cutoff"],
        structural["max_z"],
        " species=" + metadata["species"] if "species" in metadata else "",
        len(ordered),
        numbers,
        dtypes,
    ) + ("" if architecture == ARCHITECTURE else "; architecture %s" % architecture)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert an MLFF-Distiller student (PyTorch checkpoint or ONNX export) or a schnetpack PaiNN model into an mlff model file (safetensors).",
    )
    parser.add_argument("input", help="torch.save checkpoint (.pt/.pth) or ONNX export (.onnx)")
    parser.add_argument("output", help="model file to write (.safetensors)")
    parser.add_argument("--species", help="elements the model was trained on, e.g. H,C,N,O (others are then rejected)")
    parser.add_argument("--provenance", help="free text recorded in the file's provenance, before the automatic part")
    parser.add_argument("--json-errors", action="store_true", help=argparse.SUPPRESS)  # for src/convert.rs
    args = parser.parse_args(argv)
    notes = []
    try:
        summary = convert(args.input, args.output, species=args.species, provenance=args.provenance, notes=notes)
    except ConvertError as e:
        report_error(e, args.json_errors)
        return 2
    except MemoryError:
        report_error(ConvertError("out of memory while converting `%s`" % args.input, kind="io"), args.json_errors)
        return 2
    except Exception as e:  # a bug here: still one clear line, never a partial file
        report_error(ConvertError("internal error in %s %s: %s: %s" % (PROG, CONVERTER_VERSION, type(e).__name__, e), kind="internal"), args.json_errors)
        return 2
    # Notes only after success, so that a failure is exactly one line.
    for text in notes:
        sys.stderr.write("%s: note: %s\n" % (PROG, text))
    # Bytes, so that a file name that is not valid UTF-8 cannot fail the print.
    sys.stdout.flush()
    sys.stdout.buffer.write((summary + "\n").encode("utf-8", "backslashreplace"))
    sys.stdout.buffer.flush()
    return 0


def report_error(error, as_json):
    # One line, valid UTF-8 even when a path is not.
    message = " ".join(error.message.split("\n")).encode("utf-8", "backslashreplace").decode("utf-8")
    if as_json:
        payload = {"kind": error.kind, "message": message}
        payload.update(error.fields)
        sys.stderr.write("%s: error-json: %s\n" % (PROG, json.dumps(payload)))
    else:
        sys.stderr.write("%s: error: %s\n" % (PROG, message))


if __name__ == "__main__":
    sys.exit(main())
