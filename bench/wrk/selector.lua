-- wrk script: GET selector API paths in turn with a bearer token, then report as one JSON line.
--
-- Usage: wrk -t1 -c16 -d10s -s bench/wrk/selector.lua https://127.0.0.1:8444 -- TOKEN_FILE PATHS_FILE
-- PATHS_FILE has one request path per line; each connection walks the list from its own start.
-- done() prints a single line starting with "WRK_JSON " so bench/selector.py can parse it.

local paths = {}
local token = nil
local counter = 0

function init(args)
  local handle = assert(io.open(args[1], "rb"))
  token = handle:read("*a"):gsub("%s+$", "")
  handle:close()
  for line in io.lines(args[2]) do
    if line ~= "" then paths[#paths + 1] = line end
  end
  if #paths == 0 then error("no paths in " .. args[2]) end
  counter = math.random(#paths)
end

function request()
  counter = counter % #paths + 1
  return wrk.format("GET", paths[counter], {
    ["Authorization"] = "Bearer " .. token,
    ["Accept"] = "application/json",
  })
end

function done(summary, latency, requests)
  local errors = summary.errors
  local failed = errors.connect + errors.read + errors.write + errors.timeout + errors.status
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":%d,"non_2xx":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, failed, errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
