"""Opens prepared TFDS datasets, failing fast with a useful message when it cannot.

Plain `tfds.load` on a dataset that is not prepared tries GCS and then the
dataset's download URLs with urllib3 retries: offline that is minutes of retries
before an opaque error. `prepared_builder` checks the data directory first
(`builder.is_prepared()`, no GCS lookup), then whether the manual files or the
download hosts are there, and raises `DatasetNotPreparedError` within seconds,
naming the dataset, the directory searched and the command that prepares it.

Under `tfds.testing.mock_data` (TFDS's testing idiom, used as is) the records
are fake and nothing needs preparing: `prepared_builder` returns the builder.
"""

from __future__ import annotations

import os
import pathlib
import socket
from typing import Iterable, Optional
import urllib.parse
import urllib.request

from absl import logging
import tensorflow_datasets as tfds

from k4p1.data import errors
from k4p1.data import offline
from k4p1.data import registry

# Importing the module registers the `fgvc_aircraft` builder with TFDS.
from k4p1.data import fgvc_aircraft  # pylint: disable=unused-import

NETWORK_TIMEOUT_S = 3.0
# `tfds.testing.mock_data` replaces these DatasetBuilder methods with functions
# of this module, whatever its arguments (policy, as_dataset_fn, data_dir).
_MOCKING_MODULE = "tensorflow_datasets.testing.mocking"
_MOCKED_METHODS = ("download_and_prepare", "as_dataset")


def tfds_mocked() -> bool:
  """Whether `tfds.testing.mock_data` is active (TFDS then fakes every record)."""
  return all(
      getattr(getattr(tfds.core.DatasetBuilder, method, None), "__module__",
              None) == _MOCKING_MODULE
      for method in _MOCKED_METHODS)


def _download_hosts(builder) -> list[str]:
  """Hosts a download of `builder` contacts (from its registered checksums)."""
  urls = list((type(builder).url_infos or {}).keys())
  urls += list(getattr(builder, "DOWNLOAD_URLS", ()))
  hosts = []
  for url in urls:
    host = urllib.parse.urlparse(url).hostname
    if host and host not in hosts:
      hosts.append(host)
  return hosts


def network_reachable(hosts: Iterable[str],
                      timeout_s: float = NETWORK_TIMEOUT_S) -> bool:
  """Whether a TCP connection to any of `hosts` (port 443) opens within the timeout.

  With an HTTPS proxy configured (environment variables), the proxy is probed
  instead, since downloads go through it.

  Args:
    hosts: host names.
    timeout_s: timeout per connection attempt.

  Returns:
    True if one connection succeeded.
  """
  proxy = urllib.request.getproxies().get("https")
  targets = []
  if proxy:
    parsed = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
    targets.append((parsed.hostname, parsed.port or 443))
  else:
    targets.extend((host, 443) for host in hosts)
  for host, port in targets:
    try:
      with socket.create_connection((host, port), timeout=timeout_s):
        return True
    except OSError as e:
      logging.info("Cannot reach %s:%s: %s", host, port, e)
  return False


def _missing_manual_files(info: registry.DatasetInfo,
                          manual_dir: pathlib.Path) -> list[str]:
  return [f for f in info.manual_files if not (manual_dir / f).exists()]


def _has_manual_data(info: registry.DatasetInfo, manual_path: pathlib.Path) -> bool:
  if info.tfds_name == "fgvc_aircraft":
    return fgvc_aircraft.manual_data_present(manual_path)
  if not info.manual_files:  # A `tfds:` dataset: its files are not registered.
    return (info.manual_download and manual_path.is_dir()
            and any(manual_path.iterdir()))
  return not _missing_manual_files(info, manual_path)


def _not_prepared_message(info: registry.DatasetInfo, builder, reason: str) -> str:
  data_root = str(builder.data_dir_root)
  command = f"tfds build {info.tfds_name} --data_dir={data_root}"
  if info.prepare_imports:
    command += f" --imports={info.prepare_imports}"
  python = (f"python -c \"from k4p1 import data; data.prepare_dataset("
            f"'{info.base_name}', data_dir='{data_root}'")
  lines = [
      f"Dataset {info.tfds_name!r} is not prepared in data_dir {data_root!r} "
      f"(searched {str(builder.data_path)!r}) and cannot be prepared now: "
      f"{reason}."
  ]
  if info.manual_download:
    files = (", ".join(info.manual_files) if info.manual_files else
             "the files its TFDS catalog page names")
    lines += [
        f"It needs a manual download: put {files} in a "
        "directory, then prepare the dataset with:",
        f"  {command} --manual_dir=<that directory>",
        f"  or: {python}, manual_dir='<that directory>')\"",
    ]
  else:
    lines += ["To prepare it, run on a machine with network access:",
              f"  {command}", f"  or: {python})\""]
    if info.tfds_name == "fgvc_aircraft":
      lines += [f"or, offline, with {fgvc_aircraft.ARCHIVE_NAME} in a directory:",
                f"  {command} --manual_dir=<that directory>"]
  lines += [
      "and pass that data directory as data_dir (--data_dir). (The `tfds` command "
      "of TFDS 4.9 needs `pip install apache-beam` to start.)",
      "Datasets that need neither network nor preparation: "
      f"{', '.join(offline.OFFLINE_DATASETS)}, and your own images as "
      f"{registry.FOLDER_PREFIX}<directory> (one folder per class).",
  ]
  return "\n".join(lines)


def prepared_builder(info: registry.DatasetInfo,
                     data_dir: Optional[os.PathLike] = None,
                     manual_dir: Optional[os.PathLike] = None,
                     download: bool = True,
                     network_timeout_s: float = NETWORK_TIMEOUT_S):
  """Returns a TFDS builder whose data is prepared, preparing it if it can.

  Args:
    info: registry entry of a TFDS dataset.
    data_dir: TFDS data directory; None for TFDS's default
      (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
    manual_dir: directory with manually downloaded files; None for TFDS's
      default `<data_dir>/downloads/manual`.
    download: whether to download and prepare a dataset that is not prepared
      (only when its files or hosts are reachable).
    network_timeout_s: timeout of the network probe per host.

  Returns:
    A `tfds.core.DatasetBuilder` with `is_prepared()` True (under
    `tfds.testing.mock_data`: the builder, unchecked).

  Raises:
    DatasetNotPreparedError: if the dataset is not prepared and cannot be now
      (download disabled, manual files missing, or no network).
  """
  if info.source != registry.SOURCE_TFDS:
    raise ValueError(f"{info.name!r} is not a TFDS dataset.")
  data_dir = os.fspath(data_dir) if data_dir is not None else None
  builder = tfds.builder(info.tfds_name, data_dir=data_dir, try_gcs=False)
  if tfds_mocked() or builder.is_prepared():
    return builder

  manual_path = pathlib.Path(manual_dir) if manual_dir is not None else (
      pathlib.Path(builder.data_dir_root) / "downloads" / "manual")
  has_manual_files = _has_manual_data(info, manual_path)

  def fail(reason):
    raise errors.DatasetNotPreparedError(
        _not_prepared_message(info, builder, reason))

  if info.manual_download and not has_manual_files:
    fail(f"manual files missing in {str(manual_path)!r}: "
         f"{', '.join(_missing_manual_files(info, manual_path)) or 'none there'}")
  if not download:
    fail("automatic download is disabled (download=False)")
  if not has_manual_files:
    hosts = _download_hosts(builder)
    if not network_reachable(hosts, network_timeout_s):
      fail(f"no network access to {', '.join(hosts) or 'the download hosts'}")
  logging.info("Preparing %s in %s", info.tfds_name, builder.data_dir_root)
  # From manual files, nothing needs the network: skip TFDS's GCS lookup.
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_path), try_download_gcs=not has_manual_files))
  return builder
