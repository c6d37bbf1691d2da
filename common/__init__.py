"""What every function shares, one module per concern.

- ``errors``: the one error model (ConfigurationError, InvalidInput, TransientFailure).
- ``settings``: typed settings groups; parsed by ``setting_parsers``, connections in
  ``connections``, host.json's function timeout in ``host_config``.
- ``strict_json``: the one JSON reader and writer for every body, message and record.
- ``credential``, ``clients``, ``loop_cache``: one credential and one cached client per
  process and event loop.
- ``secrets``: Key Vault reads with a time-to-live cache.
- ``retry``: backoff with jitter under a budget, and the app's named retry policies.
- ``logs``, ``telemetry``, ``timing``: structured logs with secret masking, spans and
  metrics, timestamps and durations.
- ``cosmos``: the container's partition key and request-charge meter.

None imports an Azure SDK at module top, so that importing a function costs no SDK
import until the first invocation.
"""
