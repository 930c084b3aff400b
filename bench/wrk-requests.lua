-- wrk script for `npm run bench`: cycles through requests prepared by bench/load.ts.
-- The file named by the first argument holds one request per line:
--   METHOD \t PATH \t HEADERS (name: value, joined by \31) \t BODY
-- Thread t of T sends requests t, t+T, t+2T, …, so no two threads send the same one.
-- `done` prints one JSON line with the run's counts and exact latency percentiles.

local threads_started = 0

function setup(thread)
  thread:set("offset", threads_started)
  threads_started = threads_started + 1
end

local prepared = {}
local position = 0
local stride = 1

function init(args)
  stride = tonumber(args[2]) or 1
  position = offset or 0
  for line in io.lines(args[1]) do
    local method, path, header_text, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = {}
    for pair in string.gmatch(header_text, "[^\31]+") do
      local name, value = pair:match("^([^:]+):%s*(.*)$")
      headers[name] = value
    end
    if body == "" then body = nil end
    prepared[#prepared + 1] = wrk.format(method, path, headers, body)
  end
end

function request()
  local raw = prepared[(position % #prepared) + 1]
  position = position + stride
  return raw
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%.0f,"p50_us":%.0f,"p95_us":%.0f,"p99_us":%.0f,"max_us":%.0f,' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d,"non_2xx":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.timeout, e.status))
end
