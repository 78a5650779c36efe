"""A TFDS dataset that is not prepared fails fast with an actionable message.

"No network" is simulated by making every socket connection fail, so the tests
behave the same on machines with network access; TFDS's download is replaced by
a function that fails the test, so nothing is ever downloaded.
"""

import socket
import time

import pytest
import tensorflow_datasets as tfds

from k4p1 import data
from k4p1.data import tfds_source

# The requirement: fail in under 10 seconds (plain tfds.load retries ~200 s).
MAX_SECONDS = 10.0


@pytest.fixture
def no_download(monkeypatch):
  def forbidden(*args, **kwargs):
    raise AssertionError("download_and_prepare must not be called")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", forbidden)


@pytest.fixture
def no_network(monkeypatch):
  attempts = []

  def refuse(address, *args, **kwargs):
    attempts.append(address)
    raise OSError(f"simulated: no route to {address}")
  monkeypatch.setattr(socket, "create_connection", refuse)
  for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    monkeypatch.delenv(var, raising=False)
  return attempts


def _build(name, data_dir, **kwargs):
  return data.build_dataset(name, data.split_names(name)[0], global_batch_size=8,
                            image_size=32, training=True, data_dir=data_dir,
                            **kwargs, architecture="mobilenet_v2")


def test_offline_missing_dataset_fails_fast_naming_dataset_dir_and_command(
    tmp_path, no_download, no_network):
  start = time.monotonic()
  with pytest.raises(data.DatasetNotPreparedError) as raised:
    _build("cifar10", tmp_path)
  elapsed = time.monotonic() - start
  message = str(raised.value)
  assert "'cifar10'" in message
  assert str(tmp_path) in message
  assert f"tfds build cifar10 --data_dir={tmp_path}" in message
  assert "no network" in message
  assert no_network  # The download host was probed, and refused.
  assert isinstance(raised.value, ValueError)
  assert elapsed < MAX_SECONDS
  assert not list(tmp_path.iterdir())  # Failing leaves the directory untouched.


def test_download_disabled_fails_without_touching_the_network(
    tmp_path, no_download, no_network):
  with pytest.raises(data.DatasetNotPreparedError, match="download=False"):
    _build("cifar100", tmp_path, download=False)
  assert not no_network


@pytest.mark.parametrize("name,files", [
    ("cars196", ("cars_train.tgz", "car_devkit.tgz")),
    ("imagenet2012", ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")),
])
def test_manual_datasets_explain_the_manual_dir(name, files, tmp_path, no_download,
                                                no_network):
  with pytest.raises(data.DatasetNotPreparedError) as raised:
    _build(name, tmp_path / "tfds")
  message = str(raised.value)
  assert "--manual_dir" in message and f"tfds build {name}" in message
  assert str(tmp_path / "tfds") in message
  for filename in files:
    assert filename in message
  assert not no_network  # Nothing to download: no reason to probe.


def test_aircraft_message_names_the_imports_and_the_archive(tmp_path, no_download,
                                                            no_network):
  with pytest.raises(data.DatasetNotPreparedError) as raised:
    _build("fgvc_aircraft", tmp_path)
  message = str(raised.value)
  assert "--imports=k4p1.data" in message
  assert "fgvc-aircraft-2013b.tar.gz" in message and "--manual_dir" in message
  assert no_network and no_network[0][0] == "www.robots.ox.ac.uk"


def test_manual_files_present_go_to_tfds_without_a_network_probe(
    tmp_path, no_network, monkeypatch):
  manual_dir = tmp_path / "manual"
  manual_dir.mkdir()
  for filename in data.DATASETS["cars196"].manual_files:
    (manual_dir / filename).write_bytes(b"")
  calls = []
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare",
                      lambda self, download_config: calls.append(download_config))
  builder = tfds_source.prepared_builder(data.get_dataset_info("cars196"),
                                         data_dir=tmp_path / "tfds",
                                         manual_dir=manual_dir)
  assert builder.name == "cars196"
  assert len(calls) == 1 and str(calls[0].manual_dir) == str(manual_dir)
  assert not no_network


def test_network_probe_is_bounded():
  # ".invalid" never resolves (RFC 6761): the probe answers False, quickly.
  start = time.monotonic()
  assert not tfds_source.network_reachable(["k4p1-test.invalid"], timeout_s=1.0)
  assert time.monotonic() - start < MAX_SECONDS


def test_prepare_dataset_rejects_offline_datasets():
  with pytest.raises(ValueError, match="offline"):
    data.prepare_dataset("mnist5k:0-4")
