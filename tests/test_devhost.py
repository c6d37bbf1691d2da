"""The development host's own logic: NCRONTAB schedules, local settings, binding expressions, clients."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devhost.host import DevHost, DevHostError, load_local_settings, resolve
from devhost.ncrontab import Schedule, ScheduleError
from devhost.runtime_host import FunctionInvocationError, FunctionSpec, RuntimeHostError
from tests.conftest import APP_ROOT

T0 = datetime(2026, 11, 27, 10, 15, 30, tzinfo=UTC)  # a Friday


@pytest.mark.parametrize(("expression", "expected"), [
    ("0 0 2 * * *", datetime(2026, 11, 28, 2, 0, 0, tzinfo=UTC)),
    ("*/10 * * * * *", datetime(2026, 11, 27, 10, 15, 40, tzinfo=UTC)),
    ("0 */5 * * * *", datetime(2026, 11, 27, 10, 20, 0, tzinfo=UTC)),
    ("30 15 10 * * *", datetime(2026, 11, 28, 10, 15, 30, tzinfo=UTC)),  # strictly after
    ("0 0 9 * * 1-5", datetime(2026, 11, 30, 9, 0, 0, tzinfo=UTC)),      # next weekday: Monday
    ("0 0 0 1 1 *", datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)),
    ("0 0 12 * * sun", datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)),
    ("0 0 0 29 2 *", datetime(2028, 2, 29, 0, 0, 0, tzinfo=UTC)),
    ("5/20 * * * * *", datetime(2026, 11, 27, 10, 15, 45, tzinfo=UTC)),  # a/n: from a to the end, every n
    ("0 0 0 * jan-mar mon-fri", datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC)),
    ("0 0 0 13 * fri", datetime(2027, 8, 13, 0, 0, 0, tzinfo=UTC)),      # both day fields: AND, as NCrontab
])
def test_next_fire_time(expression: str, expected: datetime) -> None:
    assert Schedule.parse(expression).next_after(T0) == expected


def test_sub_second_instants_fire_on_the_next_whole_second() -> None:
    assert Schedule.parse("* * * * * *").next_after(T0.replace(microsecond=500_000)) == T0.replace(second=31)


@pytest.mark.parametrize("expression", [
    "0 0 2 * *", "0 0 2 * * * 2027", "@daily", "61 * * * * *", "* * * * 13 *", "*/0 * * * * *", "a b c d e f",
    "0 0 0 L * *", "0 0 0 * * 5#2", "0 0 0 ? * *", "H * * * * *",  # croniter extensions NCrontab refuses
    "0 0 0 30 2 *",  # never fires
])
def test_bad_schedules_are_refused_with_the_expression_named(expression: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(repr(expression))):
        Schedule.parse(expression)


def test_local_settings_fill_the_environment_without_overriding_it(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"DEVHOST_A": "from-file", "DEVHOST_B": "file"}}))
    monkeypatch.setenv("DEVHOST_B", "from-shell")
    monkeypatch.delenv("DEVHOST_A", raising=False)
    load_local_settings(path)
    import os

    assert (os.environ["DEVHOST_A"], os.environ["DEVHOST_B"]) == ("from-file", "from-shell")
    monkeypatch.delenv("DEVHOST_A")


def test_missing_or_broken_local_settings_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DevHostError, match="copy local.settings.example.json"):
        load_local_settings(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(DevHostError, match="not valid JSON"):
        load_local_settings(tmp_path / "bad.json")


def test_binding_expressions_are_resolved_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_INPUT_CONTAINER", "incoming")
    assert resolve("%ETL_INPUT_CONTAINER%/{name}") == "incoming/{name}"
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(DevHostError, match="NOT_SET_ANYWHERE"):
        resolve("%NOT_SET_ANYWHERE%")


async def test_service_bus_trigger_receives_through_the_apps_client_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dev host's receiver comes from common.clients.service_bus_client, not a client of its own."""
    from common import clients

    calls: list[tuple[str, str]] = []

    class Stop(Exception):
        pass

    class Receiver:
        async def __aenter__(self) -> Receiver:
            return self

        async def __aexit__(self, *exc: object) -> None:
            calls.append(("closed", "receiver"))

        async def receive_messages(self, **kwargs: Any) -> list[Any]:
            raise Stop

    class Client:
        def get_queue_receiver(self, queue: str) -> Receiver:
            calls.append(("receiver", queue))
            return Receiver()

    def factory(connection: str = "ServiceBusConnection") -> Client:
        calls.append(("client", connection))
        return Client()

    monkeypatch.setattr(clients, "service_bus_client", factory)
    monkeypatch.setenv("INPUT_QUEUE_NAME", "orders-in")
    host = DevHost(APP_ROOT)
    with pytest.raises(Stop):
        await host._receive(FunctionSpec.read(APP_ROOT / "QueueProcessor"))
    assert calls == [("client", "ServiceBusConnection"), ("receiver", "orders-in"), ("closed", "receiver")]


def test_runtime_host_errors_are_runtime_errors_not_assertions(tmp_path: Path) -> None:
    with pytest.raises(RuntimeHostError, match="has no host.json") as info:
        DevHost(tmp_path)
    assert isinstance(info.value, RuntimeError) and not isinstance(info.value, AssertionError)
    assert issubclass(FunctionInvocationError, RuntimeHostError)


def test_local_settings_get_what_they_lack_and_keep_what_they_have(tmp_path: Path) -> None:
    """VS Code's extension writes a stub local.settings.json before F5; make start and the F5
    task complete it from the example without changing a value that is there."""
    import json

    from devhost.start import ensure_local_settings

    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"IsEncrypted": False, "Values": {"FUNCTIONS_WORKER_RUNTIME": "python",
                                                                     "API_KEY": "mine-123456"}}))
    added = ensure_local_settings(settings)
    values = json.loads(settings.read_text())["Values"]
    example = json.loads((APP_ROOT / "local.settings.example.json").read_text())["Values"]
    assert set(values) == set(example) | {"FUNCTIONS_WORKER_RUNTIME", "API_KEY"}
    assert values["API_KEY"] == "mine-123456" and "API_KEY" not in added
    assert ensure_local_settings(settings) == []  # nothing left to add
    fresh = tmp_path / "fresh.json"
    assert set(ensure_local_settings(fresh)) == set(example) and fresh.exists()


def test_f5_prepares_what_make_start_prepares_before_the_host_starts() -> None:
    import json

    tasks = {task["label"]: task for task in json.loads((APP_ROOT / ".vscode" / "tasks.json").read_text())["tasks"]}
    host = tasks["func: host start"]
    assert host["dependsOrder"] == "sequence"
    assert host["dependsOn"][-1] == "emulators and local settings"
    emulators = tasks["emulators and local settings"]
    assert "-m devhost.start --emulators-only" in emulators["command"] and emulators["isBackground"] is True
    assert emulators["problemMatcher"]["background"]["endsPattern"] == "emulators ready"
    assert "make venv emulators-install" in tasks[host["dependsOn"][0]]["command"]
    launch = json.loads((APP_ROOT / ".vscode" / "launch.json").read_text())
    assert launch["configurations"][0]["preLaunchTask"] == "func: host start"
    # The extension checks Azurite before the pre-launch tasks run: that check is off, the task starts it.
    assert json.loads((APP_ROOT / ".vscode" / "settings.json").read_text())["azureFunctions.validateEmulators"] is False


def test_the_host_says_which_hops_of_the_event_chain_run_here() -> None:
    from devhost.host import event_chain_notes

    assert event_chain_notes({"HttpGreeting": None}, {}) == []
    unset = event_chain_notes({"PublishEvent": None, "QueueProcessor": None}, {"EVENT_GRID_TOPIC_ENDPOINT": " "})
    assert "no Event Grid emulator" in unset[0] and "EVENT_GRID_TOPIC_ENDPOINT" in unset[0]
    assert "/admin/functions/QueueProcessor" in unset[1]
    topic = "https://t.westeurope-1.eventgrid.azure.net/api/events"
    assert topic in event_chain_notes({"PublishEvent": None}, {"EVENT_GRID_TOPIC_ENDPOINT": topic})[0]


def test_http_routes_match_as_the_functions_host_does() -> None:
    """Case-insensitive segments, {name} one segment, {name?} none or one (issue 27)."""
    from devhost.host import HttpRoute

    async def handler(request: object, params: dict[str, str]) -> None:
        return None

    greeting = HttpRoute("HttpGreeting", frozenset({"GET"}), handler)
    assert greeting.params("httpgreeting") == {} and greeting.params("HTTPGREETING/") == {}
    assert greeting.params("HttpGreeting/extra") is None and greeting.params("events") is None
    orders = HttpRoute("orders/{id?}", frozenset({"GET"}), handler)
    assert orders.params("Orders") == {} and orders.params("orders/42") == {"id": "42"}
    assert orders.params("orders/42/events") is None
    typed = HttpRoute("items/{id:int}/history", frozenset({"GET"}), handler)
    assert typed.params("ITEMS/7/History") == {"id": "7"}


async def test_a_wrong_method_is_a_404_as_in_azure() -> None:
    from aiohttp.test_utils import make_mocked_request

    from devhost.host import HttpRoute, dispatch_http

    seen: list[dict[str, str]] = []

    async def handler(request: object, params: dict[str, str]) -> str:
        seen.append(params)
        return "handled"

    routes = [HttpRoute("events", frozenset({"POST"}), handler)]
    request = make_mocked_request("GET", "/api/events", match_info={"path": "events"})
    assert (await dispatch_http(routes, request)).status == 404
    assert await dispatch_http(routes, make_mocked_request("POST", "/api/EVENTS", match_info={"path": "EVENTS"})) == "handled"
    assert seen == [{}]


def test_every_missing_or_empty_binding_setting_is_named_with_its_function(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 27: an empty ETL_WORK_QUEUE surfaced as "Please specify a queue name." from the SDK."""
    from devhost.host import DevHostError, resolve, unresolved_bindings
    from devhost.runtime_host import BindingSpec, FunctionSpec

    queue = BindingSpec("msg", "queueTrigger", "in", None, {"type": "queueTrigger", "queueName": "%ETL_WORK_QUEUE%",
                                                             "connection": "EtlStorage"})
    timer = BindingSpec("t", "timerTrigger", "in", None, {"type": "timerTrigger", "schedule": "%CLEANUP_SCHEDULE%"})
    spec = FunctionSpec("BlobEtlWorker", Path("."), Path("./__init__.py"), "main", (queue,))
    monkeypatch.setenv("ETL_WORK_QUEUE", "  ")
    assert unresolved_bindings(spec) == ["'ETL_WORK_QUEUE' (queueTrigger queueName) is empty"]
    monkeypatch.delenv("CLEANUP_SCHEDULE", raising=False)
    assert unresolved_bindings(FunctionSpec("CleanupTimer", Path("."), Path("./__init__.py"), "main", (timer,))) == [
        "'CLEANUP_SCHEDULE' (timerTrigger schedule) is not set"]
    with pytest.raises(DevHostError, match="%ETL_WORK_QUEUE% names an app setting that is empty"):
        resolve("%ETL_WORK_QUEUE%")
    monkeypatch.setenv("ETL_WORK_QUEUE", "etl-work")
    assert unresolved_bindings(spec) == [] and resolve("%ETL_WORK_QUEUE%") == "etl-work"


async def test_stopping_lets_running_invocations_finish_before_the_clients_close(tmp_path: Path) -> None:
    """Issue 27: stopping during a fan-out logged in-flight segments as "Session is closed"."""
    import asyncio

    from devhost.host import DevHost
    from tests.conftest import APP_ROOT

    host = DevHost(APP_ROOT, port=0, state_dir=tmp_path)
    finished: list[str] = []

    async def segment(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        finished.append(name)

    for name, seconds in (("quick", 0.05), ("slow", 30.0)):
        task = asyncio.create_task(segment(name, seconds))
        host._in_flight.add(task)
        task.add_done_callback(host._in_flight.discard)
    assert await host.drain(grace_seconds=0.5) == 1  # the slow one is stopped, after the grace
    assert finished == ["quick"] and not host._in_flight
