"""What every function shares: settings, credential, clients, secrets, retry and logs.

One module per concern; none imports an Azure SDK at module top, so that
importing a function costs no SDK import until the first invocation.
"""
