"""Shared fixtures: a clean environment and clean process-wide caches for every test."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

APP_ROOT = Path(__file__).resolve().parent.parent
if str(APP_ROOT) not in sys.path:
    sys.path.insert(0, str(APP_ROOT))

from common import cosmos, loop_cache, secrets, settings, telemetry  # noqa: E402

# Property-based tests: a quick profile inside `make test` (the whole suite of them well under a
# minute on two cores), and a deeper one on demand: HYPOTHESIS_PROFILE=deep make test.
_PROPERTY_CHECKS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
hypothesis_settings.register_profile("default", max_examples=60, deadline=None, derandomize=True,
                                     suppress_health_check=_PROPERTY_CHECKS)
hypothesis_settings.register_profile("deep", max_examples=2000, deadline=None, suppress_health_check=_PROPERTY_CHECKS)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: Every setting the app reads, derived from the settings groups' declarations; cleared before
#: each test so the machine's environment cannot leak in.
APP_SETTINGS = settings.setting_names()


def reset_process_state() -> None:
    settings.reset_cache()
    secrets.reset()
    loop_cache.reset()
    cosmos.reset()
    telemetry.reset()


@pytest.fixture(autouse=True)
def clean_app_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in APP_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    reset_process_state()
    yield
    reset_process_state()


@dataclass
class FakeTraceContext:
    trace_parent: str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    trace_state: str = ""
    attributes: dict = field(default_factory=dict)


@dataclass
class FakeContext:
    """What the worker passes as ``context``: function name, invocation id, the host's trace context."""

    function_name: str = "TestFunction"
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_directory: str = str(APP_ROOT)
    trace_context: FakeTraceContext | None = None


@pytest.fixture
def context() -> FakeContext:
    return FakeContext()


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    settings.reset_cache()





def use_fake_clients(monkeypatch: pytest.MonkeyPatch, *, cosmos: object | None = None, blobs: object | None = None,
                     bus: object | None = None, vault: object | None = None,
                     service_bus_client: object | None = None, event_grid: object | None = None) -> None:
    """Put fakes behind ``common.clients``' factories, for tests that go through a function's ``main``.

    ``main`` takes only its bindings (the runtime refuses any other parameter), so it gets its
    clients from the factories; the logic below it takes them as arguments, and its tests pass
    fakes directly. Each stand-in accepts exactly the arguments the real factory accepts
    (bound against its signature), so a test cannot call a factory in a way production can't.
    ``bus`` is a ``tests.fakes.FakeServiceBus``: its ``sender_for`` plays ``queue_sender``.
    """
    import inspect

    from common import clients

    def stand_in(factory: str, produce: Callable[..., object]) -> None:
        real = inspect.unwrap(getattr(clients, factory))  # the factory itself, even when a fake stands in already
        signature = inspect.signature(real)

        def fake(*args: object, **kwargs: object) -> object:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return produce(**bound.arguments)

        fake.__wrapped__ = real  # type: ignore[attr-defined]
        monkeypatch.setattr(clients, factory, fake)

    if cosmos is not None:
        stand_in("cosmos_container", lambda **_: cosmos)
    if blobs is not None:
        stand_in("blob_service_client", lambda **_: blobs)
    if vault is not None:
        stand_in("secret_client", lambda **_: vault)
    if service_bus_client is not None:
        stand_in("service_bus_client", lambda **_: service_bus_client)
    if event_grid is not None:
        stand_in("event_grid_publisher", lambda **_: event_grid)
    if bus is not None:
        stand_in("queue_sender", lambda queue_name, **_: bus.sender_for(queue_name))  # type: ignore[attr-defined]
