-- wrk script: rotate through requests read from a file, one per line: a path (a GET), or
-- `POST <path> <json body>`; print a summary line "WRKJSON {...}" with p50/p95/p99.
--   wrk -t1 -c16 -d15s -s requests.lua http://127.0.0.1:7007 -- requests.txt
local requests = {}
local idx = 0

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      local path, body = line:match("^POST (%S+) (.*)$")
      if path then
        requests[#requests + 1] = wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
      else
        requests[#requests + 1] = wrk.format("GET", line)
      end
    end
  end
  idx = math.random(0, #requests - 1)
end

function request()
  idx = idx + 1
  return requests[(idx % #requests) + 1]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"seconds":%.2f,"rps":%.1f,"p50_ms":%.2f,"p95_ms":%.2f,"p99_ms":%.2f,"max_ms":%.2f,"non2xx":%d,"errors":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
