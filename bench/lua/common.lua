-- Shared by every bench script: prints one machine-readable line with the run's summary.
-- Loaded with dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua").

function bench_done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"lat_mean_us":%.1f,"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end

-- Optional extra header from the environment: BENCH_HEADER="Name: value".
function bench_env_header(headers)
   local h = os.getenv("BENCH_HEADER")
   if h and h ~= "" then
      local name, value = h:match("^([^:]+):%s*(.*)$")
      if name then headers[name] = value end
   end
   return headers
end
