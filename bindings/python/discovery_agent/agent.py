"""Agent: one libagent agent, its link run by libagent's own thread.

Threads. libagent runs callbacks on its agent thread (a C thread). The
binding's C callbacks (ctypes, which takes the GIL for them) only copy
what they are given into Python objects and queue them; the application's
callbacks then run on a Python thread of the Agent's own (the "delivery
thread", one per agent, in order) or, with loop=, on an asyncio event loop
through loop.call_soon_threadsafe. So an application callback never runs
on the agent thread, may block without stalling the link's heartbeat, and
may call any method of the Agent, close() included.

Every method may be called from any thread. close() waits for the calls
in flight on other threads, then destroys the C agent: a call after it
raises AgentClosedError, never touches freed memory.
"""

import asyncio
import atexit
import ctypes
import inspect
import json
import logging
import math
import os
import queue
import threading
import time

from . import _capi as C
from .errors import (AgentClosedError, AgentError, ConfigError,
                     NoEndpointError)
from ._types import (Endpoint, EndpointSet, EndpointState, Event, Info,
                    LinkInfo, LinkState, LogLevel)

log = logging.getLogger("discovery_agent")

_LOG_LEVELS = {LogLevel.ERROR: logging.ERROR, LogLevel.WARN: logging.WARNING,
               LogLevel.INFO: logging.INFO, LogLevel.DEBUG: logging.DEBUG}
_ON_DISCONNECT = {"keep": 0, "lock": 1}
_CALLBACKS = ("on_readiness", "on_event", "on_link", "on_endpoints",
              "on_log")
_UINT32_MAX = 2 ** 32 - 1
_ERRLEN = 1024
_PICK_LEN = 1024

# Agents not closed yet: closed at interpreter exit, before the
# interpreter goes away under their threads' callbacks.
_open_agents = set()
_open_lock = threading.Lock()


@atexit.register
def _close_all():
    with _open_lock:
        agents = list(_open_agents)
    for a in agents:
        a.close()


def version():
    """libagent's version, "MAJOR.MINOR.PATCH"."""
    return C.lib().agent_version().decode()


def strerror(code):
    """agent_strerror(code)."""
    if not isinstance(code, int) or isinstance(code, bool):
        raise TypeError("code must be an int, not %s" % type(code).__name__)
    return C.lib().agent_strerror(code).decode()


def _error(code, message=None, cls=AgentError):
    return cls(code, strerror(code), message)


def _check(rc, fn):
    if rc < 0:
        cls = NoEndpointError if rc == C.AGENT_E_NOENT else AgentError
        raise _error(rc, "%s: %s" % (fn, strerror(rc)), cls)
    return rc


def _dec(b):
    return b.decode("utf-8", "replace") if b is not None else ""


# ---- checking the caller's arguments ------------------------------------

def _text(name, value, optional=False):
    """value as NUL-free UTF-8 bytes (None kept when optional)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise TypeError("%s must be a str%s, not %s" %
                        (name, " or None" if optional else "",
                         type(value).__name__))
    if "\0" in value:
        raise ValueError("%s must not contain a NUL character" % name)
    return value.encode("utf-8", "surrogateescape")


def _path(name, value, optional=False):
    if value is None and optional:
        return None
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError("%s must be a path (str or os.PathLike), not %s" %
                        (name, type(value).__name__))
    b = os.fsencode(value)
    if b"\0" in b:
        raise ValueError("%s must not contain a NUL character" % name)
    return b


def _texts(name, value, one_allowed=False):
    """A list or tuple of str as a C array (and its length). A bare str is
    one entry only where one_allowed (urls, as the YAML allows)."""
    if isinstance(value, str) and one_allowed:
        value = [value]
    if isinstance(value, (str, bytes)) or not isinstance(
            value, (list, tuple, set, frozenset)):
        raise TypeError("%s must be a list of str, not %s" %
                        (name, type(value).__name__))
    items = [_text("%s[%d]" % (name, i), v)
             for i, v in enumerate(sorted(value) if isinstance(
                 value, (set, frozenset)) else value)]
    arr = (ctypes.c_char_p * (len(items) + 1))(*items, None)
    return arr, len(items)


def _uint(name, value, limit=_UINT32_MAX):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s must be an int, not %s" %
                        (name, type(value).__name__))
    if not 0 <= value <= limit:
        raise ValueError("%s must be 0 to %d, got %d" % (name, limit, value))
    return value


def _callback(name, fn, loop):
    if fn is None:
        return None
    if not callable(fn):
        raise TypeError("%s must be callable, not %s" %
                        (name, type(fn).__name__))
    if inspect.iscoroutinefunction(fn) and loop is None:
        raise TypeError("%s is a coroutine function: it needs loop= (an "
                        "asyncio event loop to run it on)" % name)
    return fn


def _log_level(value):
    if isinstance(value, str):
        try:
            return LogLevel[value.upper()]
        except KeyError:
            raise ValueError("log_level must be error, warn, info or "
                             "debug, got %r" % value) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("log_level must be a LogLevel or a str, not %s" %
                        type(value).__name__)
    return LogLevel(value)


# ---- delivering callbacks -----------------------------------------------

_STOP = object()


def _run_callback(fn, args, loop=None):
    try:
        result = fn(*args)
        if loop is not None and inspect.iscoroutine(result):
            loop.create_task(result)
    except Exception:
        log.exception("callback %r raised", fn)


class _Delivery:
    """What both ways of delivering share: a bound on the callbacks
    queued and not run yet. At queue_max the agent thread waits in put()
    (so libagent stops reading the link: the daemon keeps the backlog,
    drops the link at its own limit, and replays on resume; nothing is
    lost and nothing here grows), except for log lines, which are dropped
    and counted. close() lifts the wait, so it never waits for a callback
    that waits for it."""

    def __init__(self, queue_max):
        self.queue_max = queue_max
        self.pending = 0
        self.peak = 0
        self.dropped_logs = 0
        self.closing = False
        self.cv = threading.Condition()

    def _admit(self, droppable):
        with self.cv:
            if droppable and self.pending >= self.queue_max:
                self.dropped_logs += 1
                return False
            while self.pending >= self.queue_max and not self.closing:
                if self.dead():
                    return False
                self.cv.wait(0.25)
            self.pending += 1
            self.peak = max(self.peak, self.pending)
            return True

    def dead(self):
        """Nothing will ever run what is queued."""
        return False

    def _done(self):
        with self.cv:
            self.pending -= 1
            self.cv.notify_all()

    def _run(self, fn, args, loop=None):
        try:
            _run_callback(fn, args, loop)
        finally:
            self._done()

    def take_dropped(self):
        with self.cv:
            n, self.dropped_logs = self.dropped_logs, 0
            return n

    def close(self):
        with self.cv:
            self.closing = True
            self.cv.notify_all()


class _ThreadDelivery(_Delivery):
    """Callbacks in order on a Python thread of their own."""

    def __init__(self, name, queue_max):
        super().__init__(queue_max)
        self.q = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=name,
                                       daemon=True)
        self.thread.start()

    def put(self, fn, *args, droppable=False):
        if self._admit(droppable):
            self.q.put((fn, args))

    def _loop(self):
        while True:
            item = self.q.get()
            if item is _STOP:
                return
            self._run(*item)

    def stop(self):
        """Deliver what is queued, then end (joined unless called from
        a callback, whose return ends it)."""
        self.q.put(_STOP)
        if threading.current_thread() is not self.thread:
            self.thread.join()


class _LoopDelivery(_Delivery):
    """Callbacks in order on an asyncio loop (call_soon_threadsafe)."""

    def __init__(self, loop, queue_max):
        super().__init__(queue_max)
        self.loop = loop

    def dead(self):
        return self.loop.is_closed()

    def put(self, fn, *args, droppable=False):
        if not self._admit(droppable):
            return
        try:
            self.loop.call_soon_threadsafe(self._run, fn, args, self.loop)
        except RuntimeError:
            self._done()  # the loop is closed: nobody is left to tell

    def stop(self):
        pass


# ---- copying C structs out ----------------------------------------------

def _strings(arr, n):
    return tuple(_dec(arr[i]) for i in range(n))


def _copy_set(s):
    eps = []
    for i in range(s.n):
        e = s.ep[i]
        eps.append(Endpoint(instance=_dec(e.instance),
                            address=_dec(e.address), node=_dec(e.node),
                            tags=_strings(e.tags, e.n_tags),
                            state=EndpointState(e.state), weight=e.weight,
                            load=None if e.load < 0 else e.load))
    return EndpointSet(service=_dec(s.service), index=s.index,
                       endpoints=tuple(eps), n_ready=s.n_ready)


def _copy_event(e):
    kind = _dec(e.kind)
    return Event(kind=kind, epoch=_dec(e.epoch), seq=e.seq,
                 command=_dec(e.command), header_json=_dec(e.header),
                 value_json=_dec(e.value),
                 json=_dec(ctypes.string_at(e.json, e.json_len)),
                 replayed=bool(e.replayed),
                 service=_dec(e.service) if e.service else None,
                 ready=bool(e.ready), keys=_strings(e.keys, e.n_keys))


def _copy_link(state, i):
    return LinkInfo(state=LinkState(state), url=_dec(i.url),
                    attempt=i.attempt, node=_dec(i.node),
                    epoch=_dec(i.epoch), seq=i.seq, resumed=bool(i.resumed),
                    recovered=bool(i.recovered), reset=bool(i.reset),
                    was_linked=bool(i.was_linked), close_code=i.close_code,
                    reason=_dec(i.reason), http_status=i.http_status,
                    retry_ms=i.retry_ms)


# ---- the agent ------------------------------------------------------------

class Agent:
    """A libagent agent. Make one from keyword options (the fields of
    struct agent_config) or from a YAML file with Agent.load(); it links
    at once unless start=False. Use it as a context manager, or call
    close()."""

    def __init__(self, urls, service, *, instance=None, address=None,
                 tags=(), weight=None, depends_on=(), meta=None, token=None,
                 token_file=None, ca_file=None, on_disconnect=None,
                 backoff_initial_ms=None, backoff_max_ms=None,
                 backoff_multiplier=None, heartbeat_interval_ms=None,
                 heartbeat_timeout_ms=None, max_message=None, log_level=None,
                 watch=(), watch_depends_on=False, on_readiness=None,
                 on_event=None, on_link=None, on_endpoints=None, on_log=None,
                 loop=None, queue_max=1024, start=True):
        cbs = self._check_callbacks(locals(), loop)
        cfg = C.AgentConfig()
        lib = C.lib()
        lib.agent_config_init(ctypes.byref(cfg))
        keep = []  # the arrays stay alive until agent_new has copied them

        def arr(field, name, value, one=False):
            a, n = _texts(name, value, one)
            keep.append(a)
            setattr(cfg, field, ctypes.cast(a, C.c_str_array))
            setattr(cfg, "n_" + field, n)

        arr("urls", "urls", urls, one=True)
        cfg.service = _text("service", service)
        cfg.instance = _text("instance", instance, True)
        cfg.address = _text("address", address, True)
        arr("tags", "tags", tags)
        arr("depends_on", "depends_on", depends_on)
        arr("watch", "watch", watch)
        if not isinstance(watch_depends_on, bool):
            raise TypeError("watch_depends_on must be a bool, not %s" %
                            type(watch_depends_on).__name__)
        cfg.watch_depends_on = watch_depends_on
        if meta is not None and not isinstance(meta, str):
            if not isinstance(meta, dict):
                raise TypeError("meta must be a dict or a JSON str, not %s"
                                % type(meta).__name__)
            meta = json.dumps(meta)
        cfg.meta = _text("meta", meta, True)
        cfg.token = _text("token", token, True)
        cfg.token_file = _path("token_file", token_file, True)
        cfg.ca_file = _path("ca_file", ca_file, True)
        if on_disconnect is not None:
            if on_disconnect not in _ON_DISCONNECT:
                raise ValueError("on_disconnect must be 'keep' or 'lock', "
                                 "got %r" % (on_disconnect,))
            cfg.on_disconnect = _ON_DISCONNECT[on_disconnect]
        for name in ("weight", "backoff_initial_ms", "backoff_max_ms",
                     "heartbeat_interval_ms", "heartbeat_timeout_ms"):
            if locals()[name] is not None:
                setattr(cfg, name, _uint(name, locals()[name]))
        if max_message is not None:
            cfg.max_message = _uint("max_message", max_message, 2 ** 63)
        if backoff_multiplier is not None:
            if isinstance(backoff_multiplier, bool) or not isinstance(
                    backoff_multiplier, (int, float)):
                raise TypeError("backoff_multiplier must be a number, not "
                                "%s" % type(backoff_multiplier).__name__)
            cfg.backoff_multiplier = float(backoff_multiplier)
        if log_level is not None:
            cfg.log_level = _log_level(log_level)
        err = ctypes.create_string_buffer(_ERRLEN)
        handle = lib.agent_new(ctypes.byref(cfg), err, _ERRLEN)
        if not handle:
            raise _error(C.AGENT_E_INVALID, _dec(err.value), ConfigError)
        self._setup(handle, cbs, loop, start, queue_max)

    @classmethod
    def load(cls, path, *, extra_keys=None, on_readiness=None, on_event=None,
             on_link=None, on_endpoints=None, on_log=None, loop=None,
             queue_max=1024, start=True):
        """An agent from a YAML file (agent_load: conf/agent.yaml's keys;
        extra_keys: other top-level keys to allow and skip). A bad file
        raises ConfigError with "FILE:LINE:COL: message"."""
        cbs = cls._check_callbacks(locals(), loop)
        p = _path("path", path)
        lib = C.lib()
        keys = None
        if extra_keys is not None:
            keys, _ = _texts("extra_keys", extra_keys)
        err = ctypes.create_string_buffer(_ERRLEN)
        handle = lib.agent_load_ex(p, keys, err, _ERRLEN)
        if not handle:
            raise _error(C.AGENT_E_INVALID, _dec(err.value), ConfigError)
        self = cls.__new__(cls)
        self._setup(handle, cbs, loop, start, queue_max)
        return self

    @staticmethod
    def _check_callbacks(args, loop):
        if loop is not None and not isinstance(loop,
                                               asyncio.AbstractEventLoop):
            raise TypeError("loop must be an asyncio event loop, not %s" %
                            type(loop).__name__)
        if not isinstance(args["start"], bool):
            raise TypeError("start must be a bool")
        _uint("queue_max", args["queue_max"])
        if args["queue_max"] < 1:
            raise ValueError("queue_max must be 1 or more")
        return {n: _callback(n, args[n], loop) for n in _CALLBACKS}

    def _setup(self, handle, cbs, loop, start, queue_max):
        lib = C.lib()
        self._lib = lib
        self._handle = handle
        self._busy = 0
        self._cv = threading.Condition()
        self._ready_cv = threading.Condition()
        self._wakers = set()  # wait_ready_async's
        self.loop = loop
        for name, fn in cbs.items():
            setattr(self, name, fn)
        self.dependencies = tuple(
            _dec(lib.agent_dependency_name(handle, i))
            for i in range(lib.agent_dependency_count(handle)))
        self.watched = tuple(
            _dec(lib.agent_watch_name(handle, i))
            for i in range(lib.agent_watch_count(handle)))
        # Kept alive as long as the C agent may call them.
        self._c = C.AgentCallbacks(
            on_readiness=C.ON_READINESS(self._c_readiness),
            on_event=C.ON_EVENT(self._c_event),
            on_link=C.ON_LINK(self._c_link),
            on_log=C.ON_LOG(self._c_log),
            ud=None,
            on_endpoints=C.ON_ENDPOINTS(self._c_endpoints))
        try:
            _check(lib.agent_set_callbacks(handle, ctypes.byref(self._c)),
                   "agent_set_callbacks")
            self.service = self.info().service
            self._delivery = (
                _LoopDelivery(loop, queue_max) if loop is not None else
                _ThreadDelivery("discovery-agent-%s" % self.service,
                                queue_max))
        except BaseException:
            lib.agent_destroy(handle)
            self._handle = None
            raise
        with _open_lock:
            _open_agents.add(self)
        if start:
            try:
                self.start()
            except BaseException:
                self.close()
                raise

    # ---- the C callbacks: on the agent thread, copy and queue only ------

    def _c_readiness(self, _a, service, ready, _ud):
        try:
            self._wake_waiters()  # the flag is set already
            self._delivery.put(self._fire, "on_readiness", _dec(service),
                               bool(ready))
        except BaseException:  # never into C
            pass

    def _c_event(self, _a, ev, _ud):
        try:
            self._delivery.put(self._fire, "on_event", _copy_event(ev[0]))
        except BaseException:
            pass

    def _c_link(self, _a, state, info, _ud):
        try:
            self._wake_waiters()
            self._delivery.put(self._fire, "on_link",
                               _copy_link(state, info[0]))
        except BaseException:
            pass

    def _c_endpoints(self, _a, s, _ud):
        try:
            self._delivery.put(self._fire, "on_endpoints", _copy_set(s[0]))
        except BaseException:
            pass

    def _c_log(self, level, line, _ud):
        try:
            self._delivery.put(self._fire_log, LogLevel(level), _dec(line),
                               droppable=True)
        except BaseException:
            pass

    def _wake_waiters(self):
        with self._ready_cv:
            self._ready_cv.notify_all()
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    def _fire(self, name, *args):
        fn = getattr(self, name)
        if fn is None:
            return None
        return fn(*args)

    def _fire_log(self, level, line):
        dropped = self._delivery.take_dropped()
        if dropped:
            self._fire_log(LogLevel.WARN, "log_lines_dropped count=%d" %
                           dropped)
        if self.on_log is not None:
            return self.on_log(level, line)
        log.log(_LOG_LEVELS.get(level, logging.INFO), "%s: %s",
                self.service, line)
        return None

    # ---- using the handle -------------------------------------------------

    def _enter(self):
        with self._cv:
            if self._handle is None:
                raise _error(C.AGENT_E_STATE, "the agent is closed",
                             AgentClosedError)
            self._busy += 1
            return self._handle

    def _leave(self, _handle=None):
        with self._cv:
            self._busy -= 1
            if not self._busy:
                self._cv.notify_all()

    def _call(self, fn, *args):
        h = self._enter()
        try:
            return getattr(self._lib, fn)(h, *args)
        finally:
            self._leave()

    # ---- the API ------------------------------------------------------------

    def start(self):
        """Start the agent thread (it connects at once). AgentError
        AGENT_E_STATE when started already."""
        _check(self._call("agent_start"), "agent_start")

    def close(self):
        """Close the link (1000), wait for the agent thread, free the C
        agent. The callbacks queued before (the last on_link UNLINKED
        included) are delivered before close returns (with loop=, they
        are scheduled on the loop). Closing twice is closing once."""
        with self._cv:
            if self._handle is None:
                return  # closed, or another thread is closing it
            handle, self._handle = self._handle, None
            self._cv.wait_for(lambda: self._busy == 0)
        self._delivery.close()
        try:
            self._lib.agent_destroy(handle)  # GIL released meanwhile
            self._delivery.stop()
        finally:
            with _open_lock:
                _open_agents.discard(self)
            self._wake_waiters()

    @property
    def pending(self):
        """Callbacks queued and not run yet (at most queue_max)."""
        return self._delivery.pending

    @property
    def closed(self):
        return self._handle is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        return "<discovery_agent.Agent service=%r depends_on=%r%s>" % (
            self.service, list(self.dependencies),
            " closed" if self.closed else "")

    def is_ready(self, service):
        """The flag of dependency service (False if not ready, unknown or
        not a dependency). Lock-free in C."""
        return bool(self._call("agent_is_ready", _text("service", service)))

    def all_ready(self):
        """Every depends_on entry is ready (True when there are none)."""
        return bool(self._call("agent_all_ready"))

    def readiness(self):
        """{dependency: flag} for every dependency."""
        return {name: self.is_ready(name) for name in self.dependencies}

    def waiting_for(self):
        """The dependencies not ready, sorted."""
        return [name for name in self.dependencies if not self.is_ready(name)]

    @property
    def linked(self):
        """The daemon has welcomed the current link."""
        return bool(self._call("agent_is_linked"))

    def set_ready(self, ready):
        """Report this instance's own readiness (sent after every welcome
        and on each change)."""
        if not isinstance(ready, bool):
            raise TypeError("ready must be a bool, not %s" %
                            type(ready).__name__)
        _check(self._call("agent_set_ready", ready), "agent_set_ready")

    def set_draining(self, draining):
        """Say this instance is draining (alive, wanting no new work)."""
        if not isinstance(draining, bool):
            raise TypeError("draining must be a bool, not %s" %
                            type(draining).__name__)
        _check(self._call("agent_set_draining", draining),
               "agent_set_draining")

    def set_load(self, load):
        """Report this instance's load, 0.0 to 1.0."""
        if isinstance(load, bool) or not isinstance(load, (int, float)):
            raise TypeError("load must be a number, not %s" %
                            type(load).__name__)
        _check(self._call("agent_set_load", float(load)), "agent_set_load")

    def set_log_level(self, level):
        """The level of the lines given to on_log ("error" ... "debug")."""
        _check(self._call("agent_set_log_level", _log_level(level)),
               "agent_set_log_level")

    def endpoints(self, service):
        """The newest EndpointSet of a watched service (every endpoint,
        whatever its state), or None before the first set came. A service
        that is not watched raises AgentError AGENT_E_NOENT."""
        name = _text("service", service)
        self._leave(self._enter())  # closed: AgentClosedError first
        if service not in self.watched:
            raise _error(C.AGENT_E_NOENT,
                         "endpoints: %r is not watched (watched: %s)" %
                         (service, ", ".join(self.watched) or "none"),
                         NoEndpointError)
        h = self._enter()
        try:
            p = self._lib.agent_endpoints(h, name)
            if not p:
                return None
            try:
                return _copy_set(p[0])
            finally:
                self._lib.agent_endpoints_release(h, p)
        finally:
            self._leave()

    def pick(self, service):
        """The "host:port" of one ready endpoint of a watched service
        (weighted power of two choices on the reported load).
        NoEndpointError (AGENT_E_NOENT) when there is none."""
        name = _text("service", service)
        buf = ctypes.create_string_buffer(_PICK_LEN)
        rc = self._call("agent_pick", name, buf, _PICK_LEN)
        if rc == C.AGENT_E_NOENT:
            raise _error(rc, "pick: no ready endpoint of %r" % service,
                         NoEndpointError)
        _check(rc, "agent_pick")
        return _dec(buf.value)

    def info(self):
        """agent_info's snapshot as an Info."""
        i = C.AgentInfo()
        _check(self._call("agent_info", ctypes.byref(i)), "agent_info")
        return Info(service=_dec(i.service), instance=_dec(i.instance),
                    started=bool(i.started), linked=bool(i.linked),
                    url=_dec(i.url), node=_dec(i.node), epoch=_dec(i.epoch),
                    seq=i.seq, links=i.links, events=i.events,
                    attempt=i.attempt)

    def wait_ready(self, timeout=None):
        """Block until every dependency is ready: True, or False after
        timeout seconds (None: no limit). AgentClosedError if the agent
        is closed meanwhile."""
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(
                    timeout, (int, float)) or math.isnan(timeout):
                raise TypeError("timeout must be a number of seconds or "
                                "None")
            deadline = time.monotonic() + timeout
        with self._ready_cv:
            while not self.all_ready():
                left = None if timeout is None else \
                    deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._ready_cv.wait(left)
            return True

    async def wait_ready_async(self, timeout=None):
        """wait_ready for a coroutine: woken on the running loop by each
        readiness or link change (no thread waits for it, so cancelling
        it leaves nothing behind)."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake():
            try:
                loop.call_soon_threadsafe(changed.set)
            except RuntimeError:
                pass  # the loop is closed

        async def until_ready():
            while not self.all_ready():
                await changed.wait()
                changed.clear()
            return True
        with self._ready_cv:
            self._wakers.add(wake)
        try:
            if timeout is None:
                return await until_ready()
            try:
                return await asyncio.wait_for(until_ready(), timeout)
            except asyncio.TimeoutError:
                return False
        finally:
            with self._ready_cv:
                self._wakers.discard(wake)
