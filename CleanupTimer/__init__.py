"""CleanupTimer: on a schedule, delete Cosmos DB items older than the retention window."""

from __future__ import annotations

import azure.functions as func

# Every import but the bindings' types happens on the first invocation: the runtime loads
# all four functions at start-up, and an instance that only ever runs one of them should
# not pay for the others' modules. Later invocations find them in sys.modules.


async def main(mytimer: func.TimerRequest, context: func.Context) -> None:
    from common import settings, telemetry
    from common.logs import bind_invocation, masked_failures

    from .cleanup import run_cleanup

    log = bind_invocation(context)
    attributes = {"faas.trigger": "timer", "app.timer.past_due": mytimer.past_due}
    with masked_failures(), telemetry.invocation_span(context, "CleanupTimer", attributes=attributes):
        if mytimer.past_due:
            # The host missed a scheduled run (app stopped or scaled in): run now, as normal.
            log.warning("cleanup.past_due")
        await run_cleanup(cfg=settings.cleanup_settings(), log=log, function_timeout=settings.function_timeout_seconds())
