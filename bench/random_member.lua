-- wrk script: a random member of the seeded population per request, with the API token.
local token = os.getenv("BENCH_TOKEN")
local members = tonumber(os.getenv("BENCH_MEMBERS") or "100000")
math.randomseed(os.time())
request = function()
  local id = math.random(1, members)
  return wrk.format("GET", "/api/v1/entitlements?email=bench" .. id .. "@example.org",
                    {["Authorization"] = "Bearer " .. token})
end
