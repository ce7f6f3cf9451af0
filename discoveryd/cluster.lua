-- cluster.lua: every change discoveryd makes to the shared state in Redis,
-- as one script so that each change is atomic (docs/cluster.md).
--
-- Redis runs a script alone and writes its effects to the AOF as one
-- transaction: the seq counter, the stream entry and the state it describes
-- move together or not at all, and two nodes seeing the same transition
-- produce one event, not two.
--
-- Called as EVALSHA sha 0 op prefix node epoch_candidate history now_ms ...
--   op               what to do (below)
--   prefix           key prefix, "discovery:" by default
--   node             the calling node
--   epoch_candidate  a fresh random epoch, used only if none exists yet
--   history          stream length to keep (MAXLEN ~)
--   deadline_ms      writes: the caller's wall-clock deadline; a script that
--                    runs after it (Redis was frozen, the caller gave up and
--                    answered 503) changes nothing
--
-- Keys (P = prefix):
--   P.."epoch"          the log's epoch: changes only when Redis lost data
--   P.."seq"            the last seq given
--   P.."log"            the stream; entry id "<seq>-0", fields "e" (the
--                       event's record, JSON), "ts" (ms, Redis clock) and
--                       "ep" (the epoch, so a reader can tell a new history
--                       from the one it was following)
--   P.."expiry"         sorted set: declarations with a TTL, by expiry
--   P.."services"       set of service names
--   P.."svc:"..name     hash: min_ready, ready ("1"/"0", last announced),
--                       decl ("ready"/"notready"), expires (ms, Redis clock),
--                       and per node n: "i:"..n instances, "r:"..n ready
--                       instances, "d:"..n dependents
--   P.."nodes"          set of nodes that have reported
--   P.."node:"..n       exists while node n is alive (PX node_ttl)
--   P.."agents:"..n     hash "service/instance" -> agent JSON, node n's links
--   P.."eindex"         hash service -> its endpoint index: +1 each time a
--                       node reports one of its agents, or one is swept
--   P.."ack:"..seq      list of "node delivered": each node pushes how many
--                       of its links an event went to, so the node that
--                       took the call can answer with the cluster's count
--   P.."drain:"..n      exists (PX node_ttl) while node n is asked to drain;
--                       n's next heartbeat takes it
--   P.."idem:"..k       hash: a write's Idempotency-Key k (as the node scoped
--                       it): fp (the request's fingerprint), reply (what
--                       this script answered), at (ms); once the node
--                       answered, status and answer (its HTTP body).
--                       PEXPIRE idempotency.retention

local op = ARGV[1]
local P = ARGV[2]
local node = ARGV[3]
local epoch_candidate = ARGV[4]
local history = tonumber(ARGV[5])
local deadline = tonumber(ARGV[6])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local function fail(msg)
	return redis.error_reply(msg)
end

-- The epoch; a new one starts a new history (seq from 1, empty stream).
local function epoch()
	local e = redis.call('GET', P .. 'epoch')
	if e then
		return e
	end
	redis.call('DEL', P .. 'seq', P .. 'log')
	redis.call('SET', P .. 'epoch', epoch_candidate)
	return epoch_candidate
end

-- record: a table, or JSON text from a node (kept byte for byte, so no
-- number in it goes through Lua's doubles).
local function append(record)
	local seq = redis.call('INCR', P .. 'seq')
	if type(record) == 'table' then
		record = cjson.encode(record)
	end
	redis.call('XADD', P .. 'log', 'MAXLEN', '~', history, seq .. '-0',
		   'e', record, 'ts', now, 'ep', redis.call('GET', P .. 'epoch'))
	return seq
end

local alive_cache = {}
local function alive(n)
	local a = alive_cache[n]
	if a == nil then
		a = redis.call('EXISTS', P .. 'node:' .. n) == 1
		alive_cache[n] = a
	end
	return a
end

-- A service's state, counting only live nodes' instances.
local function state(name)
	local h = redis.call('HGETALL', P .. 'svc:' .. name)
	local s = { name = name, min_ready = 1, ready = false, decl = false,
		    expires = 0, instances = 0, ready_instances = 0,
		    dependents = 0, fields = 0 }
	for i = 1, #h, 2 do
		local k, v = h[i], h[i + 1]
		local kind, n = string.match(k, '^([ird]):(.+)$')
		if kind then
			s.fields = s.fields + 1
			if alive(n) then
				local c = tonumber(v)
				if kind == 'i' then
					s.instances = s.instances + c
				elseif kind == 'r' then
					s.ready_instances = s.ready_instances + c
				else
					s.dependents = s.dependents + c
				end
			end
		elseif k == 'min_ready' then
			s.min_ready = tonumber(v)
		elseif k == 'ready' then
			s.ready = v == '1'
		elseif k == 'decl' then
			s.decl = v
		elseif k == 'expires' then
			s.expires = tonumber(v)
		end
	end
	return s
end

local function computed(s)
	if s.decl == 'ready' then
		return true
	elseif s.decl == 'notready' then
		return false
	end
	return s.ready_instances >= s.min_ready
end

-- The service object of the API (docs/api.md).
local function service_json(s)
	local ttl = cjson.null
	if s.decl and s.expires > 0 then
		ttl = math.max(s.expires - now, 0)
	end
	return { name = s.name, ready = s.ready,
		 declared = s.decl or cjson.null, ttl_ms = ttl,
		 min_ready = s.min_ready, instances = s.instances,
		 ready_instances = s.ready_instances,
		 dependents = s.dependents, restart_grace = false }
end

-- Announce name's readiness if it moved: one readiness event. Returns the
-- seq (0 when nothing moved) and the state.
local function recompute(name)
	local s = state(name)
	local r = computed(s)
	if r == s.ready then
		return 0, s
	end
	redis.call('HSET', P .. 'svc:' .. name, 'ready', r and '1' or '0')
	s.ready = r
	local seq = append({ kind = 'readiness', scope = 'dependents',
			     service = name, instance = '', command = 'DataSend',
			     header = { Ready = r },
			     value = { service = name, ready = r } })
	return seq, s
end

-- Forget a service nobody refers to any more.
local function tidy(name)
	local s = state(name)
	if s.fields == 0 and not s.decl and not s.ready then
		redis.call('DEL', P .. 'svc:' .. name)
		redis.call('SREM', P .. 'services', name)
	end
end

-- How many nodes are alive (for the caller's count of acks to wait for).
local function alive_count()
	local n = 0
	for _, m in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
		if alive(m) then n = n + 1 end
	end
	return n
end

local function check_deadline()
	if deadline > 0 and now > deadline then
		return fail('DEADLINE the call timed out before Redis ran it')
	end
end

local e = epoch()

-- Idempotency keys (docs/api.md): a write's key is looked up and recorded
-- in the run that makes its change, so that a retry on any node, after a
-- reply lost on the way back, finds it, and two nodes given the same key
-- at once make one change. ARGV[i] the key ('' = none), ARGV[i + 1] the
-- fingerprint, ARGV[i + 2] the retention (ms), ARGV[i + 3] how long the
-- node that ran it may still be answering (ms): until then, or until it
-- stored its answer, a retry is told the call is in flight.
local function idem_seen(i)
	local k = ARGV[i]
	if not k or k == '' then
		return nil
	end
	local h = redis.call('HMGET', P .. 'idem:' .. k, 'fp', 'reply', 'at',
			     'status', 'answer')
	if not h[1] then
		return nil
	end
	if h[1] ~= ARGV[i + 1] then
		return cjson.encode({ epoch = e, idem = 'reused' })
	end
	if not h[4] and now - tonumber(h[3]) < tonumber(ARGV[i + 3]) then
		return cjson.encode({ epoch = e, idem = 'in_flight' })
	end
	return cjson.encode({ epoch = e, idem = 'replay', reply = h[2],
			      status = h[4] and tonumber(h[4]) or cjson.null,
			      answer = h[5] or cjson.null })
end

local function idem_keep(i, reply)
	local k = ARGV[i]
	if k and k ~= '' then
		local key = P .. 'idem:' .. k
		redis.call('HSET', key, 'fp', ARGV[i + 1], 'reply', reply, 'at', now)
		redis.call('PEXPIRE', key, ARGV[i + 2])
	end
	return reply
end

if op == 'declare' then
	-- name decl(ready|notready|none) ttl_ms min_ready
	local err = check_deadline() or idem_seen(11)
	if err then return err end
	local name, decl, ttl = ARGV[7], ARGV[8], tonumber(ARGV[9])
	local key = P .. 'svc:' .. name
	if decl == 'none' and redis.call('EXISTS', key) == 0 then
		return cjson.encode({ epoch = e, seq = 0, missing = true })
	end
	redis.call('SADD', P .. 'services', name)
	if redis.call('HEXISTS', key, 'min_ready') == 0 then
		redis.call('HSET', key, 'min_ready', ARGV[10])
	end
	if decl == 'none' then
		redis.call('HDEL', key, 'decl', 'expires')
		redis.call('ZREM', P .. 'expiry', name)
	else
		redis.call('HSET', key, 'decl', decl)
		if ttl > 0 then
			redis.call('HSET', key, 'expires', now + ttl)
			redis.call('ZADD', P .. 'expiry', now + ttl, name)
		else
			redis.call('HDEL', key, 'expires')
			redis.call('ZREM', P .. 'expiry', name)
		end
	end
	local seq, s = recompute(name)
	if decl == 'none' then
		tidy(name)
	end
	return idem_keep(11, cjson.encode({ epoch = e, seq = seq,
					    service = service_json(s),
					    nodes = alive_count() }))

elseif op == 'cacheready' then
	-- min_ready: declare cache ready and tell every agent, changed or not
	local err = check_deadline() or idem_seen(8)
	if err then return err end
	local key = P .. 'svc:cache'
	redis.call('SADD', P .. 'services', 'cache')
	if redis.call('HEXISTS', key, 'min_ready') == 0 then
		redis.call('HSET', key, 'min_ready', ARGV[7])
	end
	redis.call('HSET', key, 'decl', 'ready', 'ready', '1')
	redis.call('HDEL', key, 'expires')
	redis.call('ZREM', P .. 'expiry', 'cache')
	local seq = append({ kind = 'readiness', scope = 'all',
			     service = 'cache', instance = '',
			     command = 'DataSend', header = { CacheReady = 1 },
			     value = { service = 'cache', ready = true } })
	return idem_keep(8, cjson.encode({ epoch = e, seq = seq,
					   nodes = alive_count() }))

elseif op == 'publish' then
	-- record (JSON: kind scope service instance command header value)
	local err = check_deadline() or idem_seen(8)
	if err then return err end
	local seq = append(ARGV[7])
	return idem_keep(8, cjson.encode({ epoch = e, seq = seq,
					   nodes = alive_count() }))

elseif op == 'counts' then
	-- full(0|1) then per service: name min_ready instances ready dependents.
	-- full: services not listed have none of this node's instances.
	local listed = {}
	local seqs = {}
	for i = 8, #ARGV, 5 do
		local name = ARGV[i]
		local key = P .. 'svc:' .. name
		listed[name] = true
		redis.call('SADD', P .. 'services', name)
		redis.call('HSET', key, 'min_ready', ARGV[i + 1])
		if ARGV[i + 2] == '0' and ARGV[i + 3] == '0' and ARGV[i + 4] == '0' then
			redis.call('HDEL', key, 'i:' .. node, 'r:' .. node, 'd:' .. node)
		else
			redis.call('HSET', key, 'i:' .. node, ARGV[i + 2],
				   'r:' .. node, ARGV[i + 3], 'd:' .. node, ARGV[i + 4])
		end
		local seq = recompute(name)
		if seq > 0 then seqs[#seqs + 1] = seq end
		tidy(name)
	end
	if ARGV[7] == '1' then
		for _, name in ipairs(redis.call('SMEMBERS', P .. 'services')) do
			if not listed[name] then
				redis.call('HDEL', P .. 'svc:' .. name, 'i:' .. node,
					   'r:' .. node, 'd:' .. node)
				local seq = recompute(name)
				if seq > 0 then seqs[#seqs + 1] = seq end
				tidy(name)
			end
		end
	end
	return cjson.encode({ epoch = e, events = #seqs })

elseif op == 'heartbeat' then
	-- node_ttl_ms: this node is alive; then sweep the dead and the expired.
	-- rejoined: this node was not a member (first beat, or the others
	-- swept it while it was stalled): it must report all it holds again.
	redis.call('SET', P .. 'node:' .. node, '1', 'PX', ARGV[7])
	local rejoined = redis.call('SADD', P .. 'nodes', node) == 1
	alive_cache[node] = true
	local dead = {}
	for _, n in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
		if not alive(n) then
			dead[#dead + 1] = n
		end
	end
	local events = 0
	-- Dead nodes (rare): every service loses their counts.
	if #dead > 0 then
		for _, name in ipairs(redis.call('SMEMBERS', P .. 'services')) do
			local key = P .. 'svc:' .. name
			for _, n in ipairs(dead) do
				redis.call('HDEL', key, 'i:' .. n, 'r:' .. n, 'd:' .. n)
			end
			if recompute(name) > 0 then events = events + 1 end
			tidy(name)
		end
		for _, n in ipairs(dead) do
			for _, k in ipairs(redis.call('HKEYS', P .. 'agents:' .. n)) do
				local svc = string.match(k, '^([^/]+)/')
				if svc then
					redis.call('HINCRBY', P .. 'eindex', svc, 1)
				end
			end
			redis.call('DEL', P .. 'agents:' .. n)
			redis.call('SREM', P .. 'nodes', n)
		end
	end
	-- Declarations whose TTL ran out, on Redis's clock.
	for _, name in ipairs(redis.call('ZRANGEBYSCORE', P .. 'expiry',
					 '-inf', now)) do
		redis.call('ZREM', P .. 'expiry', name)
		redis.call('HDEL', P .. 'svc:' .. name, 'decl', 'expires')
		if recompute(name) > 0 then events = events + 1 end
		tidy(name)
	end
	-- A drain asked of this node through another (op drain).
	local drain = redis.call('GET', P .. 'drain:' .. node)
	if drain then
		redis.call('DEL', P .. 'drain:' .. node)
	end
	return cjson.encode({ epoch = e, events = events, dead = dead,
			      rejoined = rejoined, drain = drain ~= false })

elseif op == 'drain' then
	-- target ttl_ms: ask a live node to drain itself; its next heartbeat
	-- takes the request. Unread, it expires: a node that died first is
	-- not drained when it starts again later.
	local err = check_deadline() or idem_seen(9)
	if err then return err end
	if not alive(ARGV[7]) then
		return cjson.encode({ epoch = e, missing = true })
	end
	redis.call('SET', P .. 'drain:' .. ARGV[7], '1', 'PX', ARGV[8])
	return idem_keep(9, cjson.encode({ epoch = e }))

elseif op == 'idem_answer' then
	-- key fp status answer: what the node answered a keyed write, for its
	-- retries to get byte for byte (the key's own run recorded the rest)
	local key = P .. 'idem:' .. ARGV[7]
	if redis.call('HGET', key, 'fp') == ARGV[8] then
		redis.call('HSET', key, 'status', ARGV[9], 'answer', ARGV[10])
	end
	return 'OK'

elseif op == 'rotate' then
	-- old_epoch seq [ts]: Redis went back in time within one epoch (an AOF
	-- that lost its last second, a replica promoted): events a node has
	-- applied are gone; or the entry at seq is not the one the node
	-- applied (ts differs: a promoted replica was written to past it).
	-- Start a new epoch, once, whoever notices first.
	local back = tonumber(redis.call('GET', P .. 'seq') or '0') <
		     tonumber(ARGV[8])
	if not back and tonumber(ARGV[9] or '0') > 0 then
		local at = redis.call('XRANGE', P .. 'log', ARGV[8] .. '-0',
				      ARGV[8] .. '-0')
		local f = at[1] and at[1][2] or {}
		for i = 1, #f, 2 do
			if f[i] == 'ts' and
			   tonumber(f[i + 1]) ~= tonumber(ARGV[9]) then
				back = true
			end
		end
	end
	if e == ARGV[7] and back then
		redis.call('DEL', P .. 'epoch')
		e = epoch()
	end
	return e

elseif op == 'services' then
	-- name (optional): one service, or all
	if ARGV[7] and ARGV[7] ~= '' then
		if redis.call('EXISTS', P .. 'svc:' .. ARGV[7]) == 0 then
			return cjson.encode({ epoch = e })
		end
		return cjson.encode({ epoch = e, service = service_json(state(ARGV[7])) })
	end
	local names = redis.call('SMEMBERS', P .. 'services')
	table.sort(names)
	local list = {}
	for _, name in ipairs(names) do
		list[#list + 1] = service_json(state(name))
	end
	return cjson.encode({ epoch = e, services = list })

elseif op == 'endpoints' then
	-- service: its endpoint index, and the other live nodes' agents of it
	-- (JSON texts; the caller filters and adds its own)
	local pre = ARGV[7] .. '/'
	local out = {}
	for _, n in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
		if n ~= node and alive(n) then
			local kv = redis.call('HGETALL', P .. 'agents:' .. n)
			for i = 1, #kv, 2 do
				if string.sub(kv[i], 1, #pre) == pre then
					out[#out + 1] = kv[i + 1]
				end
			end
		end
	end
	local index = redis.call('HGET', P .. 'eindex', ARGV[7]) or '0'
	return cjson.encode({ index = tonumber(index), agents = out })

elseif op == 'agents' then
	-- every live node's agents but the caller's, as JSON texts
	local out = {}
	for _, n in ipairs(redis.call('SMEMBERS', P .. 'nodes')) do
		if n ~= node and alive(n) then
			for _, a in ipairs(redis.call('HVALS', P .. 'agents:' .. n)) do
				out[#out + 1] = a
			end
		end
	end
	return out

elseif op == 'state' then
	-- what a node needs to start serving: epoch, seq, and the services
	-- last announced ready
	local ready = {}
	for _, name in ipairs(redis.call('SMEMBERS', P .. 'services')) do
		if redis.call('HGET', P .. 'svc:' .. name, 'ready') == '1' then
			ready[#ready + 1] = name
		end
	end
	return { e, redis.call('GET', P .. 'seq') or '0', ready }
end

return fail('ERR unknown op ' .. tostring(op))
