-- GET the URL given to wrk with "Authorization: Bearer <token>", taking the tokens of
-- BENCH_TOKEN_FILE (one a line) round-robin, so that consecutive requests carry distinct
-- tokens. Each wrk thread starts at its own offset. BENCH_TOKEN_START (default 0) shifts every
-- thread's offset by that many tokens, so that a run can continue where an earlier one stopped.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

local tokens = {}
local i = 0

function init(args)
   for line in io.lines(os.getenv("BENCH_TOKEN_FILE")) do
      if line ~= "" then tokens[#tokens + 1] = line end
   end
   if #tokens == 0 then error("no tokens in BENCH_TOKEN_FILE") end
   -- `id` is the global that setup() set in this thread's interpreter.
   local tid = tonumber(id) or 0
   local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
   local start = tonumber(os.getenv("BENCH_TOKEN_START") or "0") or 0
   i = (start + math.floor(#tokens * tid / nthreads)) % #tokens
end

function request()
   i = i + 1
   if i > #tokens then i = 1 end
   return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end

done = bench_done
