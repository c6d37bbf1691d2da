"""devhost.upload against Azurite: it waits for its own version's summary, whatever else is written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from devhost import upload
from devhost.emulators import Emulators

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_upload_returns_the_summary_of_its_own_version_not_the_next_one_written(
        emulators: Emulators, tmp_path: Path) -> None:
    from azure.storage.blob import ContentSettings
    from azure.storage.blob.aio import BlobServiceClient

    sample = tmp_path / "own-version.json"
    sample.write_text("[]")
    values = {"EtlStorage": emulators.azurite_connection_string}
    waiting = asyncio.create_task(upload.upload_and_wait(sample, values, timeout=30))
    async with BlobServiceClient.from_connection_string(emulators.azurite_connection_string) as service:
        incoming = service.get_blob_client("incoming", sample.name)
        while True:  # the upload has happened once the blob exists
            await asyncio.sleep(0.1)
            if await incoming.exists():
                break
        etag = (await incoming.get_blob_properties()).etag
        summary = service.get_blob_client("summaries", f"{sample.name}.summary.json")
        settings = ContentSettings(content_type="application/json")
        await summary.upload_blob(json.dumps({"status": "of another version"}), overwrite=True,
                                  metadata={"sourceetag": "0x8DEADBEEF"}, content_settings=settings)
        await asyncio.sleep(1.5)
        assert not waiting.done(), "it took another version's summary"
        await summary.upload_blob(json.dumps({"status": "succeeded", "written": 0}), overwrite=True,
                                  metadata={"sourceetag": etag.strip('"')}, content_settings=settings)
        assert (await asyncio.wait_for(waiting, 10))["status"] == "succeeded"


async def test_no_summary_in_time_says_how_far_the_run_got(emulators: Emulators, tmp_path: Path) -> None:
    sample = tmp_path / "nobody-runs.json"
    sample.write_text("[]")
    with pytest.raises(upload.UploadError, match="no summary of this version after 1 s.*--timeout"):
        await upload.upload_and_wait(sample, {"EtlStorage": emulators.azurite_connection_string}, timeout=1)


@pytest.mark.parametrize("what", ["cosmos", "blobs", "queue"])
def test_peek_shows_the_local_data(emulators: Emulators, tmp_path: Path, what: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from devhost import peek
    from tests.integration.conftest import DATABASE

    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"EtlStorage": emulators.azurite_connection_string,
                                               "CosmosConnection": emulators.cosmos_connection_string,
                                               "COSMOS_DATABASE": DATABASE, "COSMOS_CONTAINER": "peeked",
                                               "ETL_WORK_QUEUE": "peek-work"}}))
    if what == "cosmos":
        import asyncio

        from devhost.emulators import provision

        asyncio.run(provision(azurite=emulators.azurite_connection_string, cosmos=emulators.cosmos_connection_string,
                              database=DATABASE, containers={"peeked": "/id"}, blob_containers=[]))
    if what == "queue":
        import asyncio

        async def one_message() -> None:
            from azure.core.exceptions import ResourceExistsError
            from azure.storage.queue.aio import QueueClient

            async with QueueClient.from_connection_string(emulators.azurite_connection_string, "peek-work") as queue:
                try:
                    await queue.create_queue()
                except ResourceExistsError:
                    pass
                await queue.send_message("peek-me")

        asyncio.run(one_message())
    assert peek.main([what, "--settings", str(settings)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    expected = {"cosmos": f"{DATABASE}/peeked: 0 items", "blobs": "incoming:", "queue": "peek-me"}[what]
    assert expected in printed, printed


async def test_upload_reports_a_fanned_out_runs_progress_from_its_run_files(emulators: Emulators) -> None:
    """What `devhost.upload` prints while it waits: segments done of the total, read from the run's
    manifest and results under _runs/ (none before the split: None)."""
    from azure.storage.blob.aio import BlobServiceClient

    from etl import RUNS_PREFIX, BlobVersion

    etag = '"0x8DPROGRESS"'
    prefix = f"{RUNS_PREFIX}/{BlobVersion('incoming', 'progress.jsonl', etag, 0).token}/"
    async with BlobServiceClient.from_connection_string(emulators.azurite_connection_string) as service:
        assert await upload._progress(service, "summaries", "incoming", "progress.jsonl", etag) is None
        summaries = service.get_container_client("summaries")
        await summaries.upload_blob(prefix + "manifest.json", json.dumps({"segments": [{}, {}, {}]}), overwrite=True)
        await summaries.upload_blob(prefix + "segment-000001.json", b"{}", overwrite=True)
        assert await upload._progress(service, "summaries", "incoming", "progress.jsonl", etag) == (
            "fanned out: 1 of 3 segments done")
