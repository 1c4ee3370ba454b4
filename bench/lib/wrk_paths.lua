-- wrk script: GET a list of paths round-robin with fixed headers, and print the latency
-- percentiles as one JSON line (perf_all.sh and simultaneous.sh drive it).
--
--   WRK_PATHS=paths.txt WRK_ACCEPT='...' WRK_BEARER=token wrk -t1 -c4 -d10s -s bench/lib/wrk_paths.lua URL
--
-- paths.txt holds one request path per line (e.g. /dicom-web/studies/.../frames/1). Each
-- connection starts at a different offset, so the connections do not ask for the same object.
local paths = {}
local counter = 0

function init(args)
  for line in io.lines(os.getenv("WRK_PATHS")) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  wrk.headers["Accept"] = os.getenv("WRK_ACCEPT") or "*/*"
  local bearer = os.getenv("WRK_BEARER")
  if bearer and #bearer > 0 then wrk.headers["Authorization"] = "Bearer " .. bearer end
end

function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1])
end

-- non-2xx answers are counted by wrk itself (summary.errors.status, reported as errors)
function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "errors": %d, "rps": %.1f, "p50_ms": %.2f, "p95_ms": %.2f, ' ..
    '"p99_ms": %.2f, "max_ms": %.2f, "mb_per_s": %.1f}\n',
    summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write +
      summary.errors.status + summary.errors.timeout,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    summary.bytes / (summary.duration / 1e6) / 1e6))
end
