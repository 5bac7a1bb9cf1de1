-- Signing storm for wrk: each connection confirms a waiting magic link when there is one,
-- and otherwise asks to sign with a new address. The links arrive in TOKENS_FILE (one
-- "TOKEN END" line each, appended by bench/sink.py or bench/feeder.py), so the mix of
-- sign requests and confirmations settles at whatever rate the whole pipeline sustains.
--
-- wrk -tN ... -s bench/storm.lua URL -- TOKENS_FILE RUN_ID SLUG N [IPS [MODE]]
-- MODE "mixed" (default) as above; "sign": only sign requests; "confirm": only
-- confirmations, and GET /healthz (counted as filler) whenever no link is waiting.
-- With IPS > 0, each sign request carries X-Forwarded-For: one of IPS client addresses
-- (10.x.y.z), for a server that trusts it from 127.0.0.1 (--proxy-headers).
-- Thread n of N takes the links on lines n, n+N, n+2N ... so no link is used twice.

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local domains = { "microsoft.com", "github.com", "linkedin.com", "microsoft.com" }

function init(args)
  tokens_file = args[1]
  run_id = args[2]
  slug = args[3]
  nthreads_total = tonumber(args[4]) -- the -t value; each thread has its own Lua state
  file = nil
  line_no = 0
  seq = 0
  signs, confirms = 0, 0 -- requests sent
  signed, confirmed, failed = 0, 0, 0 -- answers received
  fail_sample = ""
  sign_path = "/api/letters/" .. slug .. "/signatures"
  json_headers = { ["Content-Type"] = "application/json" }
  client_ips = tonumber(args[5] or "0")
  mode = args[6] or "mixed"
  filler = 0
end

local function next_token()
  if file == nil then
    file = io.open(tokens_file, "r")
    if file == nil then return nil end
  end
  while true do
    local pos = file:seek()
    local line = file:read("*l")
    if line == nil then
      file:seek("set", pos) -- clears end-of-file, so lines appended later are seen
      return nil
    end
    if string.sub(line, -4) ~= " END" then
      file:seek("set", pos) -- a line still being written: read it again later
      return nil
    end
    local mine = (line_no % nthreads_total) == tid
    line_no = line_no + 1
    if mine then return string.sub(line, 1, -5) end
  end
end

function request()
  local token = nil
  if mode ~= "sign" then token = next_token() end
  if token ~= nil then
    confirms = confirms + 1
    return wrk.format("POST", "/api/verify", json_headers, '{"token":"' .. token .. '"}')
  end
  if mode == "confirm" then
    filler = filler + 1
    return wrk.format("GET", "/healthz")
  end
  seq = seq + 1
  signs = signs + 1
  local n = seq * nthreads_total + tid
  local domain = domains[(n % #domains) + 1]
  local shown = (n % 3 == 0)
  local body = string.format(
    '{"email":"u%s-%d@%s","name":"Signer %d","title":"Engineer","show_name":%s}',
    run_id, n, domain, n, shown and "true" or "false")
  local headers = json_headers
  if client_ips > 0 then
    local ip = n % client_ips
    headers = {
      ["Content-Type"] = "application/json",
      ["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.floor(ip / 65536) % 256,
        math.floor(ip / 256) % 256, ip % 256),
    }
  end
  return wrk.format("POST", sign_path, headers, body)
end

function response(status, headers, body)
  if status == 202 then
    signed = signed + 1
  elseif status == 200 and string.find(body or "", '"verified"', 1, true) then
    confirmed = confirmed + 1
  elseif status == 200 and mode == "confirm" then
    -- a /healthz filler answer
  else
    failed = failed + 1
    if #fail_sample < 300 then fail_sample = fail_sample .. status .. " " .. string.sub(body or "", 1, 120) .. " | " end
  end
end

function done(summary, latency, requests)
  local totals = { signs = 0, confirms = 0, signed = 0, confirmed = 0, failed = 0, filler = 0 }
  local samples = ""
  for _, thread in ipairs(threads) do
    for key, _ in pairs(totals) do
      totals[key] = totals[key] + thread:get(key)
    end
    samples = samples .. thread:get("fail_sample")
  end
  for key, value in pairs(totals) do
    io.write(string.format("BENCH %s=%d\n", key, value))
  end
  io.write("BENCH fail_sample=" .. string.gsub(samples, "\n", " ") .. "\n")
end
