-- GET the URL given to wrk, with an optional header from BENCH_HEADER ("Name: value").
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
bench_env_header(wrk.headers)
done = bench_done
