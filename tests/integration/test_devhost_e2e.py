"""`make start`'s development host as a separate process, against the session's emulators."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devhost.emulators import Emulators, free_port, provision
from tests.conftest import APP_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
API_KEY = "e2e-api-key-0123456789"


def request_ok(url: str) -> bool:
    try:
        return request(url)[0] == 200
    except (urllib.error.URLError, ConnectionError):
        return False


def request(url: str, *, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw or b"{}")
    except json.JSONDecodeError:
        return status, {"text": raw.decode(errors="replace")}


async def upload(emulators: Emulators, name: str, data: bytes) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    async with BlobServiceClient.from_connection_string(emulators.azurite_connection_string) as service:
        await service.get_blob_client("incoming", name).upload_blob(data, overwrite=True)


async def stored_events(emulators: Emulators) -> list[dict[str, Any]]:
    from azure.cosmos.aio import CosmosClient

    async with CosmosClient.from_connection_string(emulators.cosmos_connection_string, connection_verify=False,
                                                   enable_endpoint_discovery=False) as client:
        container = client.get_database_client("e2e").get_container_client("records")
        return [item async for item in container.query_items("SELECT * FROM c WHERE IS_DEFINED(c.eventId)")]


async def read_summary(emulators: Emulators, name: str) -> dict[str, Any] | None:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob.aio import BlobServiceClient

    async with BlobServiceClient.from_connection_string(emulators.azurite_connection_string) as service:
        try:
            stream = await service.get_blob_client("summaries", f"{name}.summary.json").download_blob()
        except ResourceNotFoundError:
            return None
        return json.loads(await stream.readall())


def test_development_host_serves_runs_and_stops_cleanly(emulators: Emulators, tmp_path: Path) -> None:
    asyncio.run(provision(azurite=emulators.azurite_connection_string, cosmos=emulators.cosmos_connection_string,
                          database="e2e", containers={"records": "/id"}, blob_containers=["incoming", "summaries"]))
    example = json.loads((APP_ROOT / "local.settings.example.json").read_text())
    # No Service Bus here: as the example has it, QueueProcessor stores its results and forwards nothing.
    assert example["Values"]["OUTPUT_QUEUE_NAME"] == ""
    example["Values"].update(EtlStorage=emulators.azurite_connection_string,
                             AzureWebJobsStorage=emulators.azurite_connection_string,
                             CosmosConnection=emulators.cosmos_connection_string,
                             COSMOS_DATABASE="e2e", COSMOS_CONTAINER="records", API_KEY=API_KEY,
                             # Blobs above 4 KB fan out to BlobEtlWorker, in two worker processes.
                             ETL_INLINE_MAX_BYTES="4096", ETL_SEGMENT_RECORDS="500")
    # The local token issuer, as make start runs it, on a free port.
    issuer_port = free_port()
    key_file = tmp_path / "issuer" / "signing-key.pem"
    tenant = example["Values"]["AUTH_TENANT_ID"]
    example["Values"].update(AUTH_ISSUER=f"http://127.0.0.1:{issuer_port}/{tenant}/v2.0",
                             AUTH_JWKS_URL=f"http://127.0.0.1:{issuer_port}/{tenant}/discovery/v2.0/keys")
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps(example))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in example["Values"]}
    issuer = subprocess.Popen([sys.executable, "-m", "devhost.issuer", "--port", str(issuer_port), "--key", str(key_file)],
                              cwd=APP_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                              start_new_session=True)

    def token(*args: str) -> str:
        """What the README's token command prints."""
        printed = subprocess.run([sys.executable, "-m", "devhost.token", "--settings", str(settings_file),
                                  "--key", str(key_file), *args], cwd=APP_ROOT, env=env, capture_output=True,
                                 text=True, timeout=30, check=True)
        minted.append(printed.stdout.strip())
        return minted[-1]

    minted: list[str] = []

    process = subprocess.Popen(
        [sys.executable, "-m", "devhost.start", "--no-emulators", "--devhost", "--settings", str(settings_file),
         "--port", str(port), "--state-dir", str(tmp_path / "state"), "--workers", "2"],
        cwd=APP_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = request(f"{base}/admin/host/status")
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert process.poll() is None, "the development host exited early"
            assert time.monotonic() < deadline, "the development host did not start within 60 s"
            time.sleep(0.3)
        assert set(body["functions"]) == {"HttpGreeting", "PublishEvent", "QueueProcessor", "CleanupTimer", "BlobEtl",
                                          "BlobEtlWorker", "Orders", "Order", "OrderEvents"}

        status, body = request(f"{base}/api/HttpGreeting?name=Ada", headers={"x-api-key": API_KEY})
        assert (status, body) == (200, {"message": "Hello, Ada"})
        status, body = request(f"{base}/api/HttpGreeting", method="POST", body=b'{"name": "Grace"}',
                               headers={"x-api-key": API_KEY, "Content-Type": "application/json"})
        assert (status, body) == (200, {"message": "Hello, Grace"})
        assert request(f"{base}/api/HttpGreeting?name=Ada", headers={"x-api-key": "wrong"})[0] == 401
        # As Azure routes: a method the function does not take is a 404, and routes ignore case.
        assert request(f"{base}/api/HttpGreeting", method="DELETE")[0] == 404
        assert request(f"{base}/api/httpgreeting?name=Ada", headers={"x-api-key": API_KEY})[0] == 200
        assert request(f"{base}/api/nothing-here")[0] == 404
        # An admin run of BlobEtl for a blob that does not exist says so.
        status, body = request(f"{base}/admin/functions/BlobEtl", method="POST",
                               body=json.dumps({"input": "incoming/never-uploaded.json"}).encode())
        assert status == 404 and "no blob incoming/never-uploaded.json" in body["error"]

        while not request_ok(f"http://127.0.0.1:{issuer_port}/{tenant}/discovery/v2.0/keys"):
            assert issuer.poll() is None and time.monotonic() < deadline + 30, "the local issuer did not start"
            time.sleep(0.2)
        # A bearer token from the local issuer opens HttpGreeting as the API key does.
        status, body = request(f"{base}/api/HttpGreeting?name=Ada", headers={"Authorization": f"Bearer {token()}"})
        assert (status, body) == (200, {"message": "Hello, Ada"})

        # The event chain: PublishEvent authenticates (a token with Events.Publish; the API key is not
        # accepted with AUTH_MODE=entra) and validates, then cannot publish (no topic here, and it says
        # which setting); the last hop stores a delivered CloudEvent in Cosmos DB.
        publisher = {"Authorization": f"Bearer {token('--roles', 'Events.Publish')}", "Content-Type": "application/json"}
        assert request(f"{base}/api/events", method="POST", body=b"{}",
                       headers={"x-api-key": API_KEY, "Content-Type": "application/json"})[0] == 401
        assert request(f"{base}/api/events", method="POST", body=b"{}",
                       headers={"Authorization": f"Bearer {token('--roles', 'Orders.Read')}"})[0] == 403
        status, body = request(f"{base}/api/events", method="POST", body=b"[]", headers=publisher)
        assert status == 400 and "not an array" in body["error"]
        status, body = request(f"{base}/api/events", method="POST", body=b'{"order": 7}', headers=publisher)
        assert (status, body) == (500, {"error": "Internal server error"})
        event = {"specversion": "1.0", "id": "e2e-1", "source": "/e2e", "type": "e2e.test", "data": {"n": 1}}
        status, body = request(f"{base}/admin/functions/QueueProcessor", method="POST",
                               body=json.dumps({"input": json.dumps(event)}).encode())
        assert status == 202 and body["status"] == "succeeded", body
        [stored] = asyncio.run(stored_events(emulators))
        assert (stored["eventId"], stored["payload"]) == ("e2e-1", {"n": 1})

        status, body = request(f"{base}/admin/functions/CleanupTimer", method="POST", body=b"{}")
        assert status == 202 and body["status"] == "succeeded"

        sample = (APP_ROOT / "samples" / "readings.json").read_bytes()
        asyncio.run(upload(emulators, "e2e-readings.json", sample))
        deadline = time.monotonic() + 30
        summary = None
        while summary is None and time.monotonic() < deadline:
            time.sleep(0.5)
            summary = asyncio.run(read_summary(emulators, "e2e-readings.json"))
        assert summary is not None, "no summary within 30 s"
        assert (summary["status"], summary["written"], summary["invalid"], summary["mode"]) == ("partial", 10, 1,
                                                                                                "inline")

        # A large blob fans out: split into segments on the Storage queue, written by the worker processes.
        lines = [json.dumps({"id": f"big-{i}", "data": "d", "source": "s", "type": "t"}) for i in range(3000)]
        asyncio.run(upload(emulators, "e2e-big.jsonl", ("\n".join(lines) + "\n").encode()))
        deadline = time.monotonic() + 60
        summary = None
        while summary is None and time.monotonic() < deadline:
            time.sleep(0.5)
            summary = asyncio.run(read_summary(emulators, "e2e-big.jsonl"))
        assert summary is not None, "no summary of the large blob within 60 s"
        assert (summary["status"], summary["written"], summary["mode"]) == ("succeeded", 3000, "fan-out")
        assert summary["segments"] == {"total": 6, "succeeded": 6, "failed": 0, "abandoned": 0}

        # The Event Grid webhook, as Core Tools serves it: the validation handshake, then a delivery.
        status, body = request(f"{base}/runtime/webhooks/eventgrid?functionName=BlobEtl", method="POST",
                               body=json.dumps([{"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                                                 "data": {"validationCode": "abc"}}]).encode(),
                               headers={"aeg-event-type": "SubscriptionValidation", "Content-Type": "application/json"})
        assert (status, body) == (200, {"validationResponse": "abc"})
        deleted = [{"id": "d", "eventType": "Microsoft.Storage.BlobDeleted", "subject":
                    "/blobServices/default/containers/incoming/blobs/gone.json", "data": {}, "dataVersion": "",
                    "eventTime": "2026-11-27T00:00:00Z", "topic": "t"}]
        status, _ = request(f"{base}/runtime/webhooks/eventgrid?functionName=BlobEtl", method="POST",
                            body=json.dumps(deleted).encode(),
                            headers={"aeg-event-type": "Notification", "Content-Type": "application/json"})
        assert status == 202
        # devhost.upload --notify, as with `func start`: upload, post the event, print the summary.
        notified = subprocess.run(
            [sys.executable, "-m", "devhost.upload", "--settings", str(settings_file), "--notify", "--host", base,
             str(APP_ROOT / "samples" / "readings.json")], cwd=APP_ROOT, env=env, capture_output=True, text=True,
            timeout=60)
        assert notified.returncode == 0, notified.stdout + notified.stderr
        assert "runtime/webhooks/eventgrid?functionName=BlobEtl: 202" in notified.stdout
        assert '"written": 10' in notified.stdout
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(issuer.pid, signal.SIGTERM)
        issuer.wait(timeout=20)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "development host for local use only" in text
    assert "QueueProcessor: not triggered locally" in text
    assert "no Event Grid emulator" in text and "EVENT_GRID_TOPIC_ENDPOINT" in text
    assert "started 2 queue worker processes" in text
    assert "stopped" in text.splitlines()[-1]
    assert "HttpGreeting" in text and "succeeded (HTTP 401)" in text  # the reply's status, in the host's log
    assert API_KEY not in text
    assert minted and not any(value in text or value.split(".")[1] in text for value in minted)


def test_a_port_in_use_is_one_sentence_not_a_traceback(emulators: Emulators, tmp_path: Path) -> None:
    """Issue 27: with 7071 taken, make start printed a raw OSError traceback and an "Unclosed client"."""
    import socket

    example = json.loads((APP_ROOT / "local.settings.example.json").read_text())
    example["Values"].update(EtlStorage=emulators.azurite_connection_string,
                             AzureWebJobsStorage=emulators.azurite_connection_string,
                             CosmosConnection=emulators.cosmos_connection_string, COSMOS_DATABASE="e2e-port")
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps(example))
    env = {k: v for k, v in os.environ.items() if k not in example["Values"]}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "devhost.start", "--no-emulators", "--devhost", "--settings", str(settings_file),
             "--port", str(port), "--state-dir", str(tmp_path / "state")], cwd=APP_ROOT, env=env,
            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"make start: port {port} on 127.0.0.1 is in use" in result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "Unclosed" not in output, output
