-- wrk request for the durable-store benchmark: one synchronous invocation of
-- hello per request, each with its own Idempotency-Key
-- (<run nonce>-<thread>-<count>), so every request is a new durable invocation.
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local prefix = ""
local count = 0

function init(args)
  prefix = (args[1] or "run") .. "-" .. tostring(tid) .. "-"
end

function request()
  count = count + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = prefix .. count,
  }, '{"name":"bench"}')
end
