"""Shared fixtures: one torch thread, sample images, a local HTTP server, a private cache, a network guard."""

from __future__ import annotations

import socket

import pytest
import torch

from localserver import LocalServer

from nstlib import config


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One torch thread for the whole session: the test networks and images are tiny, and on a
    busy 2-core machine thread hand-offs cost far more than they save (tests/test_cli.py also
    relies on the same arithmetic in and out of process)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own ``NSTLIB_CACHE`` (tests that need a specific one set it again), so no
    test reads or writes the user's ``~/.cache/nstlib`` (download locks, stand-ins, models)."""
    monkeypatch.setenv("NSTLIB_CACHE", str(tmp_path_factory.mktemp("nstlib-cache")))


@pytest.fixture(scope="session")
def content():
    """The Tübingen stand-in at 32 px: a small, deterministic content image."""
    from nstlib.data import samples
    from nstlib.images import load_image

    return load_image(samples.standin("tubingen"), 32)


@pytest.fixture(scope="session")
def style():
    """The Starry Night stand-in at 32 px: a small, deterministic style image."""
    from nstlib.data import samples
    from nstlib.images import load_image

    return load_image(samples.standin("starry_night"), 32)


@pytest.fixture
def http_server():
    """A :class:`localserver.LocalServer` on 127.0.0.1; the test scripts its routes."""
    with LocalServer() as server:
        yield server


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A fresh ``NSTLIB_CACHE`` folder; no mirror, quick mode off, quick banner not yet shown."""
    path = tmp_path / "cache"
    monkeypatch.setenv(config.ENV_CACHE, str(path))
    monkeypatch.delenv(config.ENV_MIRROR, raising=False)
    monkeypatch.delenv(config.ENV_QUICK, raising=False)
    monkeypatch.setattr(config, "_announced", False)
    return path


class NetworkUsed(AssertionError):
    """Raised by the ``no_network`` guard when code tries to open a connection or resolve a name."""


@pytest.fixture
def no_network(monkeypatch):
    """Make any connection attempt or name lookup fail the test with :class:`NetworkUsed`."""

    def guard(*args, **kwargs):
        raise NetworkUsed(f"network access attempted: {args[1:] or args}")

    monkeypatch.setattr(socket.socket, "connect", guard)
    monkeypatch.setattr(socket.socket, "connect_ex", guard)
    monkeypatch.setattr(socket, "getaddrinfo", guard)
    monkeypatch.setattr(socket, "create_connection", guard)
