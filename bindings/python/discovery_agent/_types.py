"""What the binding hands out: plain, immutable Python copies of libagent's
structs (the C pointers are valid during a callback only)."""

import enum
import json as _json
from dataclasses import dataclass, field
from typing import Optional, Tuple


class LinkState(enum.IntEnum):
    CONNECTING = 1  # a connection attempt starts
    LINKED = 2      # the daemon's welcome arrived: flags are current
    UNLINKED = 3    # the link (or the attempt) is over


class EndpointState(enum.IntEnum):
    NOTREADY = 0
    READY = 1
    DRAINING = 2    # alive, wanting no new work


class LogLevel(enum.IntEnum):
    ERROR = 0
    WARN = 1
    INFO = 2
    DEBUG = 3


def split_address(address):
    """"host:port" or "[v6]:port" as (host, port); host keeps no brackets."""
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port) if port.isdigit() else 0


@dataclass(frozen=True)
class LinkInfo:
    """on_link's report (struct agent_link_info)."""
    state: LinkState
    url: str
    attempt: int
    node: str = ""
    epoch: str = ""
    seq: int = 0
    resumed: bool = False
    recovered: bool = False
    reset: bool = False
    was_linked: bool = False
    close_code: int = 0
    reason: str = ""
    http_status: int = 0
    retry_ms: int = 0


@dataclass(frozen=True)
class Event:
    """One event from the daemon (struct agent_event). header_json,
    value_json and json are the texts as received (numbers exactly as
    written); header and value parse them."""
    kind: str
    epoch: str
    seq: int
    command: str
    header_json: str
    value_json: str
    json: str
    replayed: bool
    service: Optional[str] = None   # kind "readiness"
    ready: bool = False             # kind "readiness"
    keys: Tuple[str, ...] = ()      # kind "invalidate"

    @property
    def header(self):
        return _json.loads(self.header_json)

    @property
    def value(self):
        return _json.loads(self.value_json)


@dataclass(frozen=True)
class Endpoint:
    """One instance of a watched service (struct agent_endpoint)."""
    instance: str
    address: str                    # host:port
    node: str                       # "" when unknown
    tags: Tuple[str, ...]
    state: EndpointState
    weight: int
    load: Optional[float]           # None: none reported yet
    host: str = field(init=False)
    port: int = field(init=False)

    def __post_init__(self):
        host, port = split_address(self.address)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)

    @property
    def ready(self):
        return self.state == EndpointState.READY


@dataclass(frozen=True)
class EndpointSet:
    """A watched service's endpoints at one index, sorted by instance
    (struct agent_endpoints)."""
    service: str
    index: int
    endpoints: Tuple[Endpoint, ...]
    n_ready: int

    @property
    def ready(self):
        """The READY endpoints (neither draining nor not ready)."""
        return tuple(e for e in self.endpoints if e.ready)

    def __iter__(self):
        return iter(self.endpoints)

    def __len__(self):
        return len(self.endpoints)


@dataclass(frozen=True)
class Info:
    """agent_info's snapshot."""
    service: str
    instance: str
    started: bool
    linked: bool
    url: str
    node: str
    epoch: str
    seq: int
    links: int
    events: int
    attempt: int
