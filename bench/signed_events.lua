-- wrk script: POST pre-signed Stripe events, each one once (a file of "signature<TAB>body" lines).
-- Thread k of n takes lines k, k+n, k+2n, ... so that no event is sent twice.
local path = os.getenv("BENCH_EVENTS")
local threads = tonumber(os.getenv("BENCH_THREADS") or "2")
local lines = {}
for line in io.lines(path) do
  local tab = line:find("\t", 1, true)
  lines[#lines + 1] = {line:sub(1, tab - 1), line:sub(tab + 1)}
end
local next_index = 0

setup = function(thread)
  thread:set("first", next_index)
  next_index = next_index + 1
end

local sent = 0
request = function()
  local i = (first + sent * threads) % #lines + 1
  sent = sent + 1
  local item = lines[i]
  return wrk.format("POST", "/stripe/webhook",
                    {["Content-Type"] = "application/json", ["Stripe-Signature"] = item[1]}, item[2])
end
