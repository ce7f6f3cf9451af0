"""The C API of libagent (agent/include/discovery/agent.h) in ctypes.

The structs below mirror the header field by field; the test suite
compiles a C program against agent.h and checks every size and offset
here against the compiler's, so a change to the header that is not made
here too fails a test instead of corrupting memory.

The library is found, in this order:
  1. $DISCOVERY_AGENT_LIB, a path to libagent.so (when set, nothing else
     is tried: a wrong path is an error, never a silent fallback);
  2. the soname libagent.so.1 through the dynamic loader (an installed
     package, /usr/local/lib after ldconfig, or LD_LIBRARY_PATH);
  3. ctypes.util.find_library("agent").
It is loaded on first use, not at import, so `import discovery_agent`
works on a machine without it and the error comes from the first call
that needs it.
"""

import ctypes
import ctypes.util
import os
import threading

from .errors import LibraryNotFoundError

ENV_VAR = "DISCOVERY_AGENT_LIB"
SONAME = "libagent.so.1"

# Error codes (agent.h).
AGENT_OK = 0
AGENT_E_INVALID = -1
AGENT_E_NOMEM = -2
AGENT_E_STATE = -3
AGENT_E_UNSUPPORTED = -4
AGENT_E_LWS = -5
AGENT_E_THREAD = -6
AGENT_E_SYS = -7
AGENT_E_NOTHOST = -8
AGENT_E_NOENT = -9
AGENT_E_RANGE = -10

AGENT_URLS_MAX = 16
AGENT_DEPENDS_MAX = 64
AGENT_URL_MAX = 512
AGENT_TOKEN_MAX = 4096

c_str_array = ctypes.POINTER(ctypes.c_char_p)


class AgentConfig(ctypes.Structure):
    _fields_ = [
        ("urls", c_str_array),
        ("n_urls", ctypes.c_size_t),
        ("service", ctypes.c_char_p),
        ("instance", ctypes.c_char_p),
        ("address", ctypes.c_char_p),
        ("tags", c_str_array),
        ("n_tags", ctypes.c_size_t),
        ("weight", ctypes.c_uint32),
        ("depends_on", c_str_array),
        ("n_depends_on", ctypes.c_size_t),
        ("meta", ctypes.c_char_p),
        ("token", ctypes.c_char_p),
        ("token_file", ctypes.c_char_p),
        ("ca_file", ctypes.c_char_p),
        ("on_disconnect", ctypes.c_int),
        ("backoff_initial_ms", ctypes.c_uint32),
        ("backoff_max_ms", ctypes.c_uint32),
        ("backoff_multiplier", ctypes.c_double),
        ("heartbeat_interval_ms", ctypes.c_uint32),
        ("heartbeat_timeout_ms", ctypes.c_uint32),
        ("max_message", ctypes.c_size_t),
        ("dispatch", ctypes.c_int),
        ("queue_max", ctypes.c_size_t),
        ("log_level", ctypes.c_int),
        ("watch_depends_on", ctypes.c_bool),
        ("watch", c_str_array),
        ("n_watch", ctypes.c_size_t),
    ]


class AgentLinkInfo(ctypes.Structure):
    _fields_ = [
        ("url", ctypes.c_char_p),
        ("attempt", ctypes.c_uint32),
        ("node", ctypes.c_char_p),
        ("epoch", ctypes.c_char_p),
        ("seq", ctypes.c_uint64),
        ("resumed", ctypes.c_bool),
        ("recovered", ctypes.c_bool),
        ("reset", ctypes.c_bool),
        ("was_linked", ctypes.c_bool),
        ("close_code", ctypes.c_int),
        ("reason", ctypes.c_char_p),
        ("http_status", ctypes.c_int),
        ("retry_ms", ctypes.c_uint32),
    ]


class AgentEvent(ctypes.Structure):
    _fields_ = [
        ("kind", ctypes.c_char_p),
        ("epoch", ctypes.c_char_p),
        ("seq", ctypes.c_uint64),
        ("command", ctypes.c_char_p),
        ("header", ctypes.c_char_p),
        ("value", ctypes.c_char_p),
        # Not c_char_p: the frame is json_len bytes (ctypes.string_at).
        ("json", ctypes.c_void_p),
        ("json_len", ctypes.c_size_t),
        ("replayed", ctypes.c_bool),
        ("service", ctypes.c_char_p),
        ("ready", ctypes.c_bool),
        ("n_keys", ctypes.c_size_t),
        ("keys", c_str_array),
    ]


class AgentEndpoint(ctypes.Structure):
    _fields_ = [
        ("instance", ctypes.c_char_p),
        ("address", ctypes.c_char_p),
        ("node", ctypes.c_char_p),
        ("tags", c_str_array),
        ("n_tags", ctypes.c_size_t),
        ("state", ctypes.c_int),
        ("weight", ctypes.c_uint32),
        ("load", ctypes.c_double),
    ]


class AgentEndpoints(ctypes.Structure):
    _fields_ = [
        ("service", ctypes.c_char_p),
        ("index", ctypes.c_uint64),
        ("n", ctypes.c_size_t),
        ("n_ready", ctypes.c_size_t),
        ("ep", ctypes.POINTER(AgentEndpoint)),
    ]


class AgentInfo(ctypes.Structure):
    _fields_ = [
        ("service", ctypes.c_char * 64),
        ("instance", ctypes.c_char * 129),
        ("started", ctypes.c_bool),
        ("linked", ctypes.c_bool),
        ("url", ctypes.c_char * AGENT_URL_MAX),
        ("node", ctypes.c_char * 129),
        ("epoch", ctypes.c_char * 65),
        ("seq", ctypes.c_uint64),
        ("links", ctypes.c_uint64),
        ("events", ctypes.c_uint64),
        ("attempt", ctypes.c_uint32),
    ]


# The callbacks. The agent pointer is a plain void* (we never need it:
# each Agent has callbacks of its own).
ON_READINESS = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p,
                                ctypes.c_bool, ctypes.c_void_p)
ON_EVENT = ctypes.CFUNCTYPE(None, ctypes.c_void_p,
                            ctypes.POINTER(AgentEvent), ctypes.c_void_p)
ON_LINK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int,
                           ctypes.POINTER(AgentLinkInfo), ctypes.c_void_p)
ON_LOG = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_void_p)
ON_ENDPOINTS = ctypes.CFUNCTYPE(None, ctypes.c_void_p,
                                ctypes.POINTER(AgentEndpoints),
                                ctypes.c_void_p)


class AgentCallbacks(ctypes.Structure):
    _fields_ = [
        ("on_readiness", ON_READINESS),
        ("on_event", ON_EVENT),
        ("on_link", ON_LINK),
        ("on_log", ON_LOG),
        ("ud", ctypes.c_void_p),
        ("on_endpoints", ON_ENDPOINTS),
    ]


# name: (restype, argtypes). CDLL releases the GIL around each call, so
# the agent thread's callbacks can take it while we wait in C (agent_destroy
# waits for the last ones).
_vp = ctypes.c_void_p
_sz = ctypes.c_size_t
_PROTOTYPES = {
    "agent_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    "agent_version": (ctypes.c_char_p, []),
    "agent_config_init": (None, [ctypes.POINTER(AgentConfig)]),
    "agent_new": (_vp, [ctypes.POINTER(AgentConfig), ctypes.c_char_p, _sz]),
    "agent_load": (_vp, [ctypes.c_char_p, ctypes.c_char_p, _sz]),
    "agent_load_ex": (_vp, [ctypes.c_char_p, c_str_array, ctypes.c_char_p,
                            _sz]),
    "agent_set_callbacks": (ctypes.c_int,
                            [_vp, ctypes.POINTER(AgentCallbacks)]),
    "agent_start": (ctypes.c_int, [_vp]),
    "agent_destroy": (None, [_vp]),
    "agent_is_ready": (ctypes.c_bool, [_vp, ctypes.c_char_p]),
    "agent_all_ready": (ctypes.c_bool, [_vp]),
    "agent_dependency_count": (_sz, [_vp]),
    "agent_dependency_name": (ctypes.c_char_p, [_vp, _sz]),
    "agent_set_ready": (ctypes.c_int, [_vp, ctypes.c_bool]),
    "agent_set_draining": (ctypes.c_int, [_vp, ctypes.c_bool]),
    "agent_set_load": (ctypes.c_int, [_vp, ctypes.c_double]),
    "agent_endpoints": (ctypes.POINTER(AgentEndpoints),
                        [_vp, ctypes.c_char_p]),
    "agent_endpoints_release": (None, [_vp, ctypes.POINTER(AgentEndpoints)]),
    "agent_watch_count": (_sz, [_vp]),
    "agent_watch_name": (ctypes.c_char_p, [_vp, _sz]),
    "agent_pick": (ctypes.c_int, [_vp, ctypes.c_char_p, ctypes.c_char_p,
                                  _sz]),
    "agent_is_linked": (ctypes.c_bool, [_vp]),
    "agent_info": (ctypes.c_int, [_vp, ctypes.POINTER(AgentInfo)]),
    "agent_set_log_level": (ctypes.c_int, [_vp, ctypes.c_int]),
}

_lock = threading.Lock()
_lib = None
_lib_path = None


def _candidates():
    """(name to dlopen, where it came from) in the order documented above."""
    env = os.environ.get(ENV_VAR)
    if env is not None:
        return [(env, "$%s" % ENV_VAR)]
    found = [(SONAME, "the dynamic loader")]
    other = ctypes.util.find_library("agent")
    if other and other != SONAME:
        found.append((other, "ctypes.util.find_library"))
    return found


def _open():
    tried = []
    for name, origin in _candidates():
        if origin.startswith("$") and not name:
            tried.append("$%s is empty" % ENV_VAR)
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            tried.append("%s (%s): %s" % (name, origin, e))
            continue
        try:
            for fn, (res, args) in _PROTOTYPES.items():
                f = getattr(lib, fn)
                f.restype, f.argtypes = res, args
        except AttributeError as e:
            tried.append("%s (%s): not libagent: %s" % (name, origin, e))
            continue
        return lib, name
    raise LibraryNotFoundError(
        "libagent not found: " + "; ".join(tried) +
        " (build it with `make`, install it, or set %s to the path of "
        "libagent.so.1)" % ENV_VAR)


def lib():
    """The loaded library (loaded on the first call); LibraryNotFoundError
    when it cannot be found."""
    global _lib, _lib_path
    with _lock:
        if _lib is None:
            _lib, _lib_path = _open()
        return _lib


def lib_path():
    """What was dlopened (a path or the soname)."""
    lib()
    return _lib_path
