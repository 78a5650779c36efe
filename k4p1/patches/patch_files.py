"""The bytes of a patch file: safetensors, and k4p1's first (zip) format.

`encode` writes **safetensors** (format version 2): a little-endian u64 header
length, a JSON header naming every tensor (dtype, shape, byte range) plus a
string-to-string `__metadata__` map, then the raw tensors. Any safetensors
reader opens it (`safetensors.numpy.load_file(path)`: the arrays, keyed by
their variable paths `<base layer>/<variable>`); nothing is pickled and the
file can be memory-mapped. k4p1's record (spec, task, classes, base
fingerprint, BN-statistics provenance) is the metadata entry "k4p1", a JSON
string; a few of its fields are repeated as plain entries for readers that
only list metadata. safetensors has no checksum, so "tensors_sha256" (over
every tensor's key, shape, dtype and little-endian bytes) lets `decode` refuse
an altered file.

`decode` also reads format version 1, the zip of `spec.json` + `weights.npz`
that k4p1 wrote until 2026-12-06 (`tests/data/patch_v1/` holds one).
"""

import hashlib
import io
import json
import struct
import zipfile
import zlib

import numpy as np
import safetensors
import safetensors.numpy

FORMAT = "k4p1.patch"
SAFETENSORS_VERSION = 2
ZIP_VERSION = 1
_METADATA_KEY = "k4p1"
# Spec fields also written as plain metadata entries (the rest is in "k4p1").
_PLAIN_FIELDS = ("task", "spec", "architecture", "base_fingerprint")
_ZIP_SPEC, _ZIP_WEIGHTS = "spec.json", "weights.npz"
# NumPy dtype (without byte order) -> safetensors dtype.
_DTYPES = {"f2": "F16", "f4": "F32", "f8": "F64", "i1": "I8", "i2": "I16",
           "i4": "I32", "i8": "I64", "u1": "U8", "u2": "U16", "u4": "U32",
           "u8": "U64", "b1": "BOOL"}


class PatchFileError(ValueError):
  """A patch file is unreadable, truncated, altered or not in a k4p1 format."""


def tensors_sha256(arrays: dict) -> str:
  """sha256 over (key, shape, dtype, little-endian bytes) of every array."""
  digest = hashlib.sha256()
  for key in sorted(arrays):
    value = np.asarray(arrays[key])
    digest.update(f"{key}|{value.shape}|{value.dtype.str[1:]}\n".encode())
    digest.update(np.ascontiguousarray(
        value, dtype=value.dtype.newbyteorder("<")).tobytes())
  return digest.hexdigest()


def encode(spec: dict, arrays: dict) -> bytes:
  """The safetensors bytes of a patch (`spec`'s format_version must be 2)."""
  metadata = {"format": FORMAT, "format_version": str(SAFETENSORS_VERSION),
              _METADATA_KEY: json.dumps(spec, sort_keys=True),
              "tensors_sha256": tensors_sha256(arrays)}
  metadata.update({f: str(spec[f]) for f in _PLAIN_FIELDS if f in spec})
  return _safetensors_bytes(arrays, metadata)


def _safetensors_bytes(arrays: dict, metadata: dict) -> bytes:
  """The safetensors layout, written here so that equal patches are equal
  files: the `safetensors` package orders the metadata as a hash map does,
  differently from one call to the next. Tensors are sorted by key, the JSON
  header by key, padded with spaces to 8 bytes as the format asks."""
  header, chunks, offset = {"__metadata__": metadata}, [], 0
  for key in sorted(arrays):
    value = np.asarray(arrays[key])
    if value.dtype.str[1:] not in _DTYPES:
      raise ValueError(f"Patch array {key!r} has dtype {value.dtype}; patch "
                       f"files hold {sorted(_DTYPES.values())}.")
    data = np.ascontiguousarray(
        value, dtype=value.dtype.newbyteorder("<")).tobytes()
    header[key] = {"dtype": _DTYPES[value.dtype.str[1:]],
                   "shape": list(value.shape),
                   "data_offsets": [offset, offset + len(data)]}
    chunks.append(data)
    offset += len(data)
  text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
  text += b" " * (-len(text) % 8)
  return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def decode(blob: bytes, name: str) -> tuple:
  """`(spec, arrays)` of a patch file's bytes, either format.

  Args:
    blob: the file's bytes.
    name: the file's name, for error messages.

  Raises:
    PatchFileError: not a k4p1 patch, or truncated, corrupt or altered.
  """
  if blob[:4] == b"PK\x03\x04":
    return _decode_zip(blob, name)
  metadata = _safetensors_metadata(blob, name)
  try:
    arrays = safetensors.numpy.load(bytes(blob))
    spec = json.loads(metadata[_METADATA_KEY])
  except (safetensors.SafetensorError, ValueError, KeyError) as e:
    raise _corrupt(name, e) from e
  if tensors_sha256(arrays) != metadata.get("tensors_sha256"):
    raise PatchFileError(f"{name!r} was altered after k4p1 wrote it: its "
                         "tensors do not match the checksum in its metadata "
                         "(tensors_sha256). Re-create it with "
                         "k4p1.patches.save_patch.")
  return spec, arrays


def _safetensors_metadata(blob: bytes, name: str) -> dict:
  """The header's `__metadata__`, checked to be a k4p1 patch's."""
  try:
    (length,) = struct.unpack("<Q", blob[:8])
    if length > len(blob) - 8:
      raise ValueError(f"the header says {length} bytes, the file has "
                       f"{len(blob) - 8} after it")
    header = json.loads(blob[8:8 + length].decode("utf-8"))
  except (struct.error, ValueError, UnicodeDecodeError) as e:
    raise _corrupt(name, e) from e
  metadata = header.get("__metadata__") if isinstance(header, dict) else None
  if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
    found = metadata.get("format") if isinstance(metadata, dict) else None
    raise PatchFileError(f"{name!r} is not a k4p1 patch (a safetensors file "
                         f"whose metadata format is {found!r}, not {FORMAT!r}).")
  if metadata.get("format_version") != str(SAFETENSORS_VERSION):
    raise PatchFileError(f"{name!r} has patch format version "
                         f"{metadata.get('format_version')!r}; this k4p1 reads "
                         f"versions {ZIP_VERSION} and {SAFETENSORS_VERSION}.")
  return metadata


def _decode_zip(blob: bytes, name: str) -> tuple:
  """Format version 1: a zip of spec.json and weights.npz."""
  try:
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
      names = set(z.namelist())
      missing = {_ZIP_SPEC, _ZIP_WEIGHTS} - names
      if missing:
        raise PatchFileError(f"{name!r} is not a k4p1 patch: it lacks "
                             f"{sorted(missing)} (has {sorted(names)}).")
      spec = json.loads(z.read(_ZIP_SPEC).decode("utf-8"))
      with np.load(io.BytesIO(z.read(_ZIP_WEIGHTS)), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
  except PatchFileError:
    raise
  except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError,
          UnicodeDecodeError, KeyError) as e:
    raise _corrupt(name, e) from e
  if not isinstance(spec, dict) or spec.get("format") != FORMAT:
    raise PatchFileError(f"{name!r} is not a k4p1 patch (spec.json format is "
                         f"{spec.get('format') if isinstance(spec, dict) else spec!r}).")
  if spec.get("format_version") != ZIP_VERSION:
    raise PatchFileError(f"{name!r} has patch format version "
                         f"{spec.get('format_version')!r}; this k4p1 reads "
                         f"versions {ZIP_VERSION} and {SAFETENSORS_VERSION}.")
  return spec, arrays


def _corrupt(name: str, error: Exception) -> PatchFileError:
  return PatchFileError(f"Cannot read patch file {name!r}: it is corrupt or "
                        f"truncated ({type(error).__name__}: {error}). "
                        "Re-create it with k4p1.patches.save_patch.")
