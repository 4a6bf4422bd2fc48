-- POST one body over and over until a fixed number of responses has come back, then stop.
--
--   BENCH_BODY='{"n": 1}' BENCH_REQUESTS=1000 BENCH_SKIP=16 \
--     wrk -t1 -c16 -d300s -s fixed_count.lua URL
--   BENCH_BODY_FILE=body.bin BENCH_HEADERS=$'Content-Type: application/octet-stream\nX-A: 1' \
--     BENCH_REQUESTS=1000 wrk -t1 -c16 -d300s -s fixed_count.lua URL
--
-- The body: BENCH_BODY, sent as application/json, or the bytes of the file BENCH_BODY_FILE
-- (read in binary mode, sent as they are). BENCH_HEADERS: extra "Name: value" lines, one per
-- line; each replaces a header of the same name (in any case), Content-Type included.
--
-- BENCH_PACE_MS: a pause before each request after the first wave, so that each connection
-- sends at most one request per pause plus latency (a paced client, as an app's user is);
-- 0 (the default) sends the next request as soon as the last response came.
--
-- Run it with one thread (-t1). Exactly BENCH_REQUESTS requests are sent: past that, delay()
-- holds every connection back, so nothing is left in flight to burden the next measurement.
-- On the last response the thread stops and sends wrk SIGINT, which ends wrk's wait for -d at
-- once (-d is only a cap). wrk loses a SIGINT that comes before its main thread starts
-- that wait (or that another thread takes), so the first wave is sent FIRST_WAVE_DELAY_MS late
-- and SIGINT is sent again every 0.1 s while wrk still runs. A response that is not 2xx counts
-- as an error.
--
-- Throughput is timed over a steady window, from response BENCH_SKIP to the last one, so that
-- neither the first wave (every connection sending at once) nor the requests dropped at the
-- end distort it; latency percentiles cover every response. done() prints one line,
-- "WRK_RESULT {json}", with times in microseconds.

local ffi = require("ffi")  -- wrk embeds LuaJIT
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock, bench_timespec *now);
]]
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now_us()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) * 1e6 + tonumber(timespec.tv_nsec) / 1e3
end

wrk.method = "POST"
local body_file = os.getenv("BENCH_BODY_FILE")
if body_file and body_file ~= "" then
  local file = assert(io.open(body_file, "rb"))
  wrk.body = file:read("*a")
  file:close()
else
  wrk.body = os.getenv("BENCH_BODY")
  wrk.headers["Content-Type"] = "application/json"
end
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\r\n]+") do
  local name, value = line:match("^%s*([^:%s][^:]-)%s*:%s*(.-)%s*$")
  if not name then
    error("BENCH_HEADERS: not a 'Name: value' line: " .. line)
  end
  for key in pairs(wrk.headers) do
    if key:lower() == name:lower() then
      wrk.headers[key] = nil
    end
  end
  wrk.headers[name] = value
end

local FIRST_WAVE_DELAY_MS = 50
local HOLD_MS = 24 * 3600 * 1000
local target = tonumber(os.getenv("BENCH_REQUESTS"))
local skip = tonumber(os.getenv("BENCH_SKIP") or "0")
local pace = tonumber(os.getenv("BENCH_PACE_MS") or "0")
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  sent, ok, non2xx = 0, 0, 0
  window_start, window_ok, window_us = now_us() + FIRST_WAVE_DELAY_MS * 1e3, 0, 0
end

function delay()  -- wrk asks before each request it sends
  if sent >= target then
    return HOLD_MS
  end
  sent = sent + 1
  if ok + non2xx == 0 then
    return FIRST_WAVE_DELAY_MS
  end
  return pace
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    non2xx = non2xx + 1
  end
  local seen = ok + non2xx
  if seen == skip then
    window_start, window_ok = now_us(), ok
  elseif seen == target then
    window_us, window_ok = now_us() - window_start, ok - window_ok
    wrk.thread:stop()
    -- The shell's parent is wrk. Not os.execute: system() ignores SIGINT while it runs.
    io.popen("W=$PPID; kill -INT $W; (for i in $(seq 50); do sleep 0.1; " ..
             "grep -qx wrk /proc/$W/comm && kill -INT $W || exit 0; done) >/dev/null 2>&1 &"):close()
  end
end

function done(summary, latency, requests)
  local t = threads[1]
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"ok": %d, "non2xx": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"timeout": %d, "duration_us": %d, "window_ok": %d, "window_us": %d, "p50_us": %d, ' ..
    '"p90_us": %d, "p99_us": %d, "max_us": %d, "target": %d, "threads": %d}\n',
    t:get("ok"), t:get("non2xx"), e.connect, e.read, e.write, e.timeout, summary.duration,
    t:get("window_ok"), t:get("window_us"), latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, target, #threads))
end
