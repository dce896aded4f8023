-- wrk: a polling request's headers from the environment, each only when set:
-- BENCH_TOKEN (Authorization: Bearer), BENCH_ETAG (If-None-Match) and BENCH_IMS
-- (If-Modified-Since: nchan's message ids are a time and a tag).
local function set(name, value)
    if value and value ~= "" then wrk.headers[name] = value end
end
local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then set("Authorization", "Bearer " .. token) end
set("If-None-Match", os.getenv("BENCH_ETAG"))
set("If-Modified-Since", os.getenv("BENCH_IMS"))
