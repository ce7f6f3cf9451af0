"""A WSGI app that answers 423 until the cache is ready, and flushes its
cache on every invalidation (the seed article's web app, in Python).

    DISCOVERY_AGENT_LIB=build/lib/libagent.so.1 \\
      python3 bindings/python/examples/app.py ws://127.0.0.1:5917 8000

    curl -i http://127.0.0.1:8000/          # 423 Locked
    curl -X POST http://127.0.0.1:5916/api/discovery/cacheready
    curl -i http://127.0.0.1:8000/          # 200
"""

import logging
import sys
import threading
import wsgiref.simple_server

from discovery_agent import Agent
from discovery_agent.wsgi import AcceptanceMiddleware

cache = {}
lock = threading.Lock()


def on_event(ev):
    if ev.kind == "invalidate":
        with lock:
            for key in ev.keys:
                cache.pop(key, None)
        print("invalidated", ",".join(ev.keys), flush=True)


def app(environ, start_response):
    with lock:
        hits = cache.setdefault("hits", 0) + 1
        cache["hits"] = hits
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("hello from web, request %d\n" % hits).encode()]


def main():
    url, port = sys.argv[1], int(sys.argv[2])
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with Agent(urls=url, service="web", instance="web-py",
               address="127.0.0.1:%d" % port, depends_on=["cache"],
               on_event=on_event,
               on_readiness=lambda s, r: print("readiness", s, r,
                                               flush=True)) as agent:
        agent.set_ready(True)
        server = wsgiref.simple_server.make_server(
            "127.0.0.1", port, AcceptanceMiddleware(app, agent))
        print("listening 127.0.0.1:%d" % server.server_port, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
