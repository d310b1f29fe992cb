-- wrk script: POST one AdmissionReview body over and over, then report as one JSON line.
--
-- Usage: wrk -t1 -c16 -d10s -s bench/wrk/admission.lua https://127.0.0.1:8443/validate -- BODY.json
-- The body file is read once; every request reuses the same bytes (keep-alive, HTTP/1.1).
-- done() prints a single line starting with "WRK_JSON " so bench/admission.py can parse it.

local body_file = nil

function init(args)
  body_file = args[1]
  if body_file == nil then
    error("pass the AdmissionReview body file after --")
  end
  local handle = assert(io.open(body_file, "rb"))
  wrk.body = handle:read("*a")
  handle:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Accept"] = "application/json"
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
