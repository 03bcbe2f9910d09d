"""`TRANSFERLAB_OFFLINE=1` makes no network attempt anywhere: every socket connection is blocked here,
and each path that could download (TFDS, keras.applications weights, TF Hub URLs) must say it is
offline instead of trying."""

from __future__ import annotations

import socket
import sys

import pytest

from lib.backbones import load_backbone
from lib.backbones.applications import APPS_BY_KEY, cached_weights_path
from lib.data.sources import load_dataset
from lib.errors import TransferLabError
from lib.net import reachable
from tests.test_data_sources import fake_tfds

ATTEMPTS: list[object] = []


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Offline mode on, and any connection attempt recorded and refused."""
    ATTEMPTS.clear()
    monkeypatch.setenv("TRANSFERLAB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        ATTEMPTS.append(args[:1])
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: refuse(*a))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, *a: refuse(*a))
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield
    assert ATTEMPTS == [], f"network attempts while offline: {ATTEMPTS}"


def test_the_probe_answers_offline_without_a_socket():
    assert reachable("example.org") is False
    assert reachable([("example.org", 443), ("example.com", 80)]) is False


def test_tfds_says_offline(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds([], ["a", "b"]))
    with pytest.raises(TransferLabError, match="you are offline"):
        load_dataset("tfds:some_set_never_downloaded")


def test_keras_applications_weights_say_offline():
    name = "mobilenet_v3_small"
    if cached_weights_path(APPS_BY_KEY[name]):
        pytest.skip(f"{name}'s weights are in the Keras cache here, so nothing would download")
    with pytest.raises(TransferLabError, match="not available offline"):
        load_backbone(name)
    assert not load_backbone(name, allow_random=True).pretrained


def test_tf_hub_url_says_offline():
    from lib.backbones import hub_compat

    with pytest.raises(TransferLabError, match="not available offline"):
        hub_compat.hub_spec("https://tfhub.dev/google/imagenet/mobilenet_v2_050_96/feature_vector/5")
