-- durable.lua: wrk's request for tests/bench/durable.sh, one durable write
-- (POST, a JSON body from DURABLE_BODY) per request.
wrk.method = "POST"
wrk.body = os.getenv("DURABLE_BODY")
wrk.headers["Content-Type"] = "application/json"
