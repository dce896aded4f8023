-- wrk: sends the token and, when given, If-None-Match (the 304 path).
local token, etag = os.getenv("BENCH_TOKEN"), os.getenv("BENCH_ETAG")
wrk.headers["Authorization"] = "Bearer " .. token
if etag and etag ~= "" then wrk.headers["If-None-Match"] = etag end
