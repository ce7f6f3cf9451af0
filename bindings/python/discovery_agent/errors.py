"""Exceptions: every failure of a libagent call is an AgentError carrying
the C code and agent_strerror's sentence for it."""


class AgentError(Exception):
    """A libagent call failed.

    code      the negative AGENT_E_* code (AGENT_E_INVALID, -1, for a
              constructor's refusal, which C reports as a message only)
    strerror  agent_strerror(code), libagent's sentence for the code
    message   what went wrong in this call (agent_load's "FILE:LINE:COL:
              message", or the function and the code's sentence)
    """

    def __init__(self, code, strerror, message=None):
        self.code = code
        self.strerror = strerror
        self.message = message or strerror
        super().__init__(self.message)

    def __str__(self):
        if self.strerror in self.message:
            return "%s (code %d)" % (self.message, self.code)
        return "%s (%s, code %d)" % (self.message, self.strerror, self.code)


class AgentClosedError(AgentError):
    """A call on an Agent after close(): raised, never a crash."""


class NoEndpointError(AgentError, LookupError):
    """pick(): no ready endpoint (AGENT_E_NOENT)."""


class LibraryNotFoundError(OSError):
    """libagent.so could not be loaded (see discovery_agent._capi)."""


class ConfigError(AgentError, ValueError):
    """agent_new / agent_load refused the options or the file; message is
    libagent's ("FILE:LINE:COL: message" for a file)."""
