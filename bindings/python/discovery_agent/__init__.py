"""discovery_agent: libagent (the client side of discovery) for Python.

    from discovery_agent import Agent

    with Agent(urls=["ws://127.0.0.1:5917"], service="web",
               depends_on=["cache"],
               on_readiness=lambda svc, ready: print(svc, ready)) as agent:
        agent.set_ready(True)
        agent.wait_ready(30)
        if agent.is_ready("cache"):
            ...

docs/python.md in the discovery tree is the guide; man libagent the C
contract underneath.
"""

from ._capi import ENV_VAR, SONAME, lib_path
from .agent import Agent, strerror, version
from .errors import (AgentClosedError, AgentError, ConfigError,
                     LibraryNotFoundError, NoEndpointError)
from ._types import (Endpoint, EndpointSet, EndpointState, Event, Info,
                    LinkInfo, LinkState, LogLevel, split_address)

__version__ = "0.1.0"

__all__ = [
    "Agent", "AgentClosedError", "AgentError", "ConfigError", "ENV_VAR",
    "Endpoint", "EndpointSet", "EndpointState", "Event", "Info",
    "LibraryNotFoundError", "LinkInfo", "LinkState", "LogLevel",
    "NoEndpointError", "SONAME", "lib_path", "split_address", "strerror",
    "version",
]
