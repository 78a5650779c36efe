"""Saving and loading model patches (safetensors files).

A patch file is a safetensors file (`patch_files.py`): the patch's arrays
keyed `<base layer>/<variable>` (e.g. `bn_Conv1/gamma`, `logits/kernel`), and
in its metadata k4p1's record (spec, task, classes, architecture, image size,
BN mode and statistics provenance, k4p1 version, base fingerprint). It never
holds the base. Nothing is pickled. Files of k4p1's first format (a zip of
`spec.json` + `weights.npz`, the `.k4p1` files) still load.

The fingerprint is a sha256 over (layer name, variable name, shape, dtype,
little-endian bytes) of every base variable the task shares, so a patch
refuses to load onto a base with other weights. For `full` patches, which
share nothing, it covers the architecture (names, shapes, dtypes) only.

`taps` patches store the residual (`<layer>/delta`) of open gates only: a
closed layer computes exactly the base's convolution, so loading sets its
residual to zeros (`omitted_closed_residuals` in the patch file's record
lists them; with `lora+taps`, a closed layer's `<layer>/lora_a` and
`<layer>/lora_b`).
`lora` patches store each layer's factors unmerged (`<layer>/lora_a`,
`<layer>/lora_b`); the record's `lora_rank` and `lora_alpha` rebuild them.
"""

import hashlib
import io
import os
import zipfile

import numpy as np

import k4p1
from k4p1 import atomic
from k4p1 import paths
from k4p1.patches import gates
from k4p1.patches import info as info_lib
from k4p1.patches import inject
from k4p1.patches import patch_files
from k4p1.patches import variables as variables_lib

# Kept under this name for callers of k4p1.patches.atomic_write_bytes.
atomic_write_bytes = atomic.write_bytes_atomic

FORMAT = patch_files.FORMAT
FORMAT_VERSION = patch_files.SAFETENSORS_VERSION
PatchFileError = patch_files.PatchFileError
# Zip members carry a fixed time, so equal arrays give equal `.npz` bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PatchMismatchError(ValueError):
  """A patch does not belong to the base it is loaded onto."""


def _little_endian_bytes(array: np.ndarray) -> bytes:
  return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def fingerprint(task_model) -> str:
  """The sha256 of the base variables `task_model` shares (see module doc)."""
  info = info_lib.patch_info(task_model)
  digest = hashlib.sha256()
  if info.spec.is_full:
    # Nothing is shared: identify the architecture the patch fits.
    for layer in inject.leaf_layers(info.base):
      for variable in layer.weights:
        digest.update(f"{layer.name}/{variable.name}|{tuple(variable.shape)}|"
                      f"{variable.dtype}\n".encode())
    return digest.hexdigest()
  for key, variable in variables_lib.named_shared_variables(task_model).items():
    value = variable.numpy()
    digest.update(f"{key}|{value.shape}|{value.dtype}\n".encode())
    digest.update(_little_endian_bytes(value))
  return digest.hexdigest()


def _spec_json(task_model, arrays) -> dict:
  info = info_lib.patch_info(task_model)
  shape = info.base.inputs[0].shape
  return {
      "format": FORMAT,
      "format_version": FORMAT_VERSION,
      "k4p1_version": k4p1.__version__,
      "spec": str(info.spec),
      "kinds": sorted(info.spec.kinds),
      "task": info.task,
      "num_classes": info.num_classes,
      "architecture": info.base.name,
      "image_size": [shape[1], shape[2]],
      "bn_stats": info.bn_stats,
      "bn_statistics": info.bn_statistics,
      "bn_init": info.bn_init,
      "add_missing_scales": info.add_missing_scales,
      "has_head": info.head_is_patch,
      "taps_threshold": info.taps_threshold,
      "lora_rank": info.lora_rank,
      "lora_alpha": info.lora_alpha,
      "omitted_closed_residuals": sorted(gates.closed_delta_keys(task_model)),
      "fingerprint_scope": "architecture" if info.spec.is_full else "weights",
      "base_fingerprint": fingerprint(task_model),
      "variables": {k: [list(a.shape), str(a.dtype)] for k, a in arrays.items()},
  }


def save_patch(task_model, path: str) -> None:
  """Writes the task's patch (never the base) to `path`, atomically.

  Raises:
    ValueError: `task_model` was not made by `apply_patch`.
  """
  closed = gates.closed_delta_keys(task_model)  # Exactly the base: not stored.
  own = variables_lib.named_patch_variables(task_model)
  arrays = {k: v.numpy() for k, v in own.items() if k not in closed}
  atomic.write_bytes_atomic(
      os.fspath(path),
      patch_files.encode(_spec_json(task_model, arrays), arrays))


def _write_member(archive: zipfile.ZipFile, name: str, payload: bytes,
                  compression=zipfile.ZIP_DEFLATED) -> None:
  info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
  info.compress_type = compression
  archive.writestr(info, payload)


def npz_bytes(arrays: dict) -> bytes:
  """An `.npz` (what `np.load` reads) of `arrays`, sorted, with fixed times.

  `np.savez` stamps each member with the current time; this writer gives the
  same bytes for the same arrays (bit-reproducible patch files).
  """
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as z:
    for key in sorted(arrays):
      member = io.BytesIO()
      np.lib.format.write_array(member, np.asarray(arrays[key]),
                                allow_pickle=False)
      _write_member(z, key + ".npy", member.getvalue(), zipfile.ZIP_STORED)
  return buffer.getvalue()


def read_patch_file(path: str):
  """Reads and validates a patch file without touching any model.

  Returns:
    `(spec, arrays)`: k4p1's record of the patch and a dict of numpy arrays.

  `path` may be local or a URL (`gs://...`, `ram://...`).

  Raises:
    FileNotFoundError: no file at `path`.
    PatchFileError: the file is not a complete, unaltered k4p1 patch.
  """
  path = os.fspath(path)
  if not paths.isfile(path):
    raise FileNotFoundError(f"No patch file at {path!r}.")
  spec, arrays = patch_files.decode(paths.read_bytes(path), path)
  declared = spec.get("variables", {})
  if set(declared) != set(arrays):
    raise PatchFileError(f"{path!r} is inconsistent: its record lists "
                         f"{len(declared)} arrays, the file holds {len(arrays)}.")
  return spec, arrays


def _kind_settings(spec: dict) -> dict:
  """apply_patch's `taps` and `lora` settings recorded in a patch's spec."""
  return {name: spec[name] for name in ("taps_threshold", "lora_rank",
                                        "lora_alpha")
          if spec.get(name) is not None}


def load_patch(base, path: str, strict: bool = True, head=None):
  """Rebuilds the task model saved in `path` on top of `base`.

  Args:
    base: the base model the patch was trained on (same weights).
    path: a file written by `save_patch` (either format).
    strict: raise if `base`'s shared weights differ from the ones the patch
      was trained with; with `False`, load anyway (outputs will differ).
    head: the shared head, for patches saved without their own (`logits`).

  Returns:
    The task model, with outputs bit-identical to the saved one's.

  Raises:
    FileNotFoundError, PatchFileError: see `read_patch_file`.
    PatchMismatchError: the patch belongs to another base or architecture.
  """
  spec, arrays = read_patch_file(path)
  try:
    task_model = inject.apply_patch(
        base, spec["spec"], task=spec["task"],
        num_classes=spec["num_classes"] if spec["has_head"] else None,
        head=None if spec["has_head"] else head, bn_stats=spec["bn_stats"],
        add_missing_scales=spec["add_missing_scales"],
        **_kind_settings(spec))
  except KeyError as e:
    raise PatchFileError(f"{path!r}: its record lacks the field {e}.") from e
  except ValueError as e:
    raise PatchMismatchError(
        f"Patch {path!r} ({spec['spec']} for task {spec['task']!r}, saved on "
        f"{spec.get('architecture')!r}) cannot be applied to base "
        f"{base.name!r}: {e}") from e

  variables = variables_lib.named_patch_variables(task_model)
  omitted = set(spec.get("omitted_closed_residuals", ()))
  missing = sorted(set(variables) - set(arrays) - omitted)
  unexpected = sorted(set(arrays) - set(variables))
  wrong = sorted(k for k in set(variables) & set(arrays)
                 if tuple(variables[k].shape) != arrays[k].shape)
  if missing or unexpected or wrong:
    raise PatchMismatchError(
        f"Patch {path!r} was saved on {spec.get('architecture')!r} and does not "
        f"fit base {base.name!r}: missing {missing[:5]}, unexpected "
        f"{unexpected[:5]}, wrong shapes {wrong[:5]} (first 5 of each).")
  actual = fingerprint(task_model)
  if actual != spec.get("base_fingerprint"):
    message = (
        f"Patch {path!r} was trained on a base whose shared "
        f"{spec.get('fingerprint_scope', 'weights')} have fingerprint "
        f"{str(spec.get('base_fingerprint'))[:12]}..., but base {base.name!r} "
        f"has {actual[:12]}...: it has different weights (another checkpoint "
        "or architecture). Load the base the patch was trained on, or pass "
        "strict=False to load anyway (outputs will differ).")
    if strict:
      raise PatchMismatchError(message)
    from absl import logging  # pylint: disable=g-import-not-at-top
    logging.warning("%s", message)
  for key, variable in variables.items():
    if key in arrays:
      variable.assign(arrays[key].astype(variable.dtype))
    else:  # A closed TAPS residual: the layer is exactly the base.
      variable.assign(np.zeros(variable.shape, variable.dtype))
  if gates.closed_delta_keys(task_model) != omitted:
    raise PatchFileError(f"{path!r} is inconsistent: the residuals it omits "
                         "are not those of its closed TAPS gates.")
  info_lib.set_bn_statistics(task_model, spec.get("bn_statistics",
                                                  {"method": "moving_average"}))
  # Files written before bn_init existed started from the base's values.
  info_lib.set_bn_init(task_model, spec.get("bn_init", {"method": "copy"}))
  return task_model
