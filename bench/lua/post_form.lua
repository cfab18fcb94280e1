-- POST an application/x-www-form-urlencoded body (BENCH_BODY) to the URL given to wrk, with an
-- optional header from BENCH_HEADER ("Name: value"), e.g. "Authorization: Basic ...".
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or ""
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
bench_env_header(wrk.headers)
done = bench_done
