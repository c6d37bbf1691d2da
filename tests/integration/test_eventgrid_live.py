"""PublishEvent with the real Event Grid SDK against a real custom topic (opt-in).

No Event Grid emulator exists, so this runs only with EVENTGRID_TEST_ENDPOINT set to a topic's
endpoint (``https://<topic>.<region>-1.eventgrid.azure.net/api/events``) and a sign-in that holds
``EventGrid Data Sender`` on it (``az login``; the topic's local authentication is off). With the
subscription of infra/resources.bicep in place, the event then reaches QueueProcessor's queue.
"""

from __future__ import annotations

import json
import os
import uuid

import azure.functions as func
import pytest

import PublishEvent
from common import clients
from tests.conftest import FakeContext, set_env

ENDPOINT = os.environ.get("EVENTGRID_TEST_ENDPOINT", "")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(60),
              pytest.mark.skipif(not ENDPOINT, reason="set EVENTGRID_TEST_ENDPOINT to publish to a real topic")]


async def test_an_event_is_accepted_by_a_real_topic_and_a_retry_keeps_its_id(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, API_KEY="live-test-key-0123456789", EVENT_GRID_TOPIC_ENDPOINT=ENDPOINT)
    key = f"live-{uuid.uuid4()}"
    ids = []
    try:
        for _ in range(2):
            req = func.HttpRequest("POST", "http://localhost/api/events", params={}, body=b'{"live": true}',
                                   headers={"x-api-key": "live-test-key-0123456789", "Idempotency-Key": key,
                                            "content-type": "application/json"})
            response = await PublishEvent.main(req, FakeContext(function_name="PublishEvent"))
            assert response.status_code == 202, response.get_body()
            ids.append(json.loads(response.get_body())["id"])
    finally:
        await clients.close_all()
    assert ids[0] == ids[1]
