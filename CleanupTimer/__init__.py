"""CleanupTimer: on a schedule, delete Cosmos DB items older than the retention window."""

from __future__ import annotations

import azure.functions as func

# Imports below the bindings' types wait for the first invocation (docs/architecture.md, "Cold start").


async def main(mytimer: func.TimerRequest, context: func.Context) -> None:
    from common import clients, invocation, settings
    from retention import run_cleanup

    async with invocation.run(context, invocation.Trigger.TIMER, "CleanupTimer",
                              attributes={"faas.trigger": "timer", "app.timer.past_due": mytimer.past_due}) as call:
        if mytimer.past_due:
            # The host missed a scheduled run (app stopped or scaled in): run now, as normal.
            call.log.warning("cleanup.past_due")
        await run_cleanup(cfg=settings.cleanup_settings(), log=call.log, container=clients.cosmos_container(),
                          throttle=clients.cosmos_throttle_signal(), function_timeout=settings.function_timeout_seconds())
