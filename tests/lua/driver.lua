--[[
tests/lua/driver.lua: runs examples/fluent-bit/apt_netcon.lua under Debian's
LuaJIT the way Fluent Bit's filter_lua calls it, and checks that its alerts
are exactly the CLI's.

    APT_NETCON_LIB=target/debug/libapt_netcon.so \
        luajit tests/lua/driver.lua GLUE SAMPLE CLI_BINARY

Every sample line is turned into a Lua table as Fluent Bit hands it over
(its own small JSON reader here, independent of the glue's: JSON null makes
the key vanish, or becomes the `flb_null` sentinel with enable_flb_null),
then given to the callback: the 3-argument form, the 5-argument form, each
with a number timestamp and with `time_as_table`. The records returned with
code 2 must be the CLI's annotated records (`CLI --quiet SAMPLE`): the same
event.id and kibana.alert.uuid, in the same order, and the same fields.
With max_lateness, the standalone alerts returned in arrays must be the
CLI's on the same out-of-order stream. Also: the JSON encoder and decoder,
against the interpreter once the JIT has compiled them; the glue's decision
on the record table (which records go to the library) against a reference
written here from the library's footprint, on random records, under the
JIT and in the interpreter; records sent whole (no footprint) and a rule
pack (standalone alerts, the CLI's); fail-open cases; config errors; two
instances with their own configs in one Lua state; the unparsed-record
warning. With a CORPUS (NDJSON, e.g. the benchmarks' generated Defend
traffic): the glue's alerts on it must be the CLI's, and the cost per
record is printed: a no-op callback, the glue, and the pure-Lua peer
(../shared/peers/apt_netcon_pure.lua, when present) on the same record
tables, then on fresh tables (built just before the call, as filter_lua
does). Prints `lua: N passed, M failed`; exits non-zero on any failure.
]]

local ffi = require("ffi")
ffi.cdef [[
int setenv(const char *name, const char *value, int overwrite);
int unsetenv(const char *name);
]]

io.stdout:setvbuf("line")

local GLUE, SAMPLE, CLI, CORPUS = arg[1], arg[2], arg[3], arg[4]
if not (GLUE and SAMPLE and CLI) then
    io.stderr:write("usage: luajit driver.lua GLUE SAMPLE CLI_BINARY [CORPUS]\n")
    os.exit(2)
end

local passed, failed = 0, 0
local function check(cond, what)
    if cond then
        passed = passed + 1
    else
        failed = failed + 1
        io.stderr:write("FAIL: ", what, "\n")
    end
    return cond
end

---------------------------------------------------------------------------
-- Fluent Bit's side: JSON text -> Lua table, as its parser + msgpack -> Lua
-- conversion do (numbers are doubles; null is nil, so a null member vanishes
-- and a null array element leaves a hole, unless a `null` sentinel is given).

local function fb_decode(text, null)
    local i = 1
    local function ws()
        while true do
            local c = text:sub(i, i)
            if c == " " or c == "\t" or c == "\n" or c == "\r" then i = i + 1 else return end
        end
    end
    local function fail(msg) error(("fb_decode: %s at %d"):format(msg, i)) end
    local value
    local function str()
        -- text:sub(i, i) == '"'
        i = i + 1
        local out = {}
        while true do
            local c = text:sub(i, i)
            if c == "" then fail("unterminated string") end
            if c == '"' then i = i + 1; return table.concat(out) end
            if c == "\\" then
                local e = text:sub(i + 1, i + 1)
                local map = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
                if map[e] then
                    out[#out + 1] = map[e]; i = i + 2
                elseif e == "u" then
                    local cp = tonumber(text:sub(i + 2, i + 5), 16)
                    i = i + 6
                    if cp >= 0xD800 and cp < 0xDC00 and text:sub(i, i + 1) == "\\u" then
                        local lo = tonumber(text:sub(i + 2, i + 5), 16)
                        cp = 0x10000 + (cp - 0xD800) * 1024 + (lo - 0xDC00)
                        i = i + 6
                    end
                    local bytes
                    if cp < 0x80 then bytes = { cp }
                    elseif cp < 0x800 then bytes = { 0xC0 + math.floor(cp / 64), 0x80 + cp % 64 }
                    elseif cp < 0x10000 then
                        bytes = { 0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64 }
                    else
                        bytes = { 0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
                            0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64 }
                    end
                    out[#out + 1] = string.char(unpack(bytes))
                else
                    fail("bad escape")
                end
            else
                out[#out + 1] = c; i = i + 1
            end
        end
    end
    value = function()
        ws()
        local c = text:sub(i, i)
        if c == "{" then
            local t = {}
            i = i + 1; ws()
            if text:sub(i, i) == "}" then i = i + 1; return t end
            while true do
                ws()
                if text:sub(i, i) ~= '"' then fail("name expected") end
                local k = str()
                ws()
                if text:sub(i, i) ~= ":" then fail("':' expected") end
                i = i + 1
                t[k] = value() -- nil (null) leaves no key
                ws()
                c = text:sub(i, i); i = i + 1
                if c == "}" then return t end
                if c ~= "," then fail("',' expected") end
            end
        elseif c == "[" then
            local t, n = {}, 0
            i = i + 1; ws()
            if text:sub(i, i) == "]" then i = i + 1; return t end
            while true do
                n = n + 1
                t[n] = value() -- rawseti: a null leaves a hole, as in Fluent Bit
                ws()
                c = text:sub(i, i); i = i + 1
                if c == "]" then return t end
                if c ~= "," then fail("',' expected") end
            end
        elseif c == '"' then
            return str()
        elseif text:sub(i, i + 3) == "true" then i = i + 4; return true
        elseif text:sub(i, i + 4) == "false" then i = i + 5; return false
        elseif text:sub(i, i + 3) == "null" then i = i + 4; return null
        else
            local s, e = text:find("^-?[0-9]+%.?[0-9]*[eE]?[-+]?[0-9]*", i)
            if not s then fail("value expected") end
            i = e + 1
            return assert(tonumber(text:sub(s, e)))
        end
    end
    local v = value()
    ws()
    if i <= #text then fail("trailing text") end
    return v
end

local function deep_equal(a, b, path)
    path = path or "$"
    if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " vs " .. type(b) end
    if type(a) ~= "table" then
        if a == b or rawequal(a, b) then return true end
        return false, path .. ": " .. tostring(a) .. " vs " .. tostring(b)
    end
    for k, v in pairs(a) do
        local ok, where = deep_equal(v, b[k], path .. "." .. tostring(k))
        if not ok then return false, where end
    end
    for k in pairs(b) do
        if a[k] == nil then return false, path .. "." .. tostring(k) .. ": missing on the left" end
    end
    return true
end

local function field(t, dotted)
    if t[dotted] ~= nil then return t[dotted] end
    local v = t
    for part in dotted:gmatch("[^.]+") do
        if type(v) ~= "table" then return nil end
        v = v[part]
    end
    return v
end

local function read_lines(path)
    local lines = {}
    for line in io.lines(path) do
        line = line:gsub("\r$", "")
        if line:find("%S") then lines[#lines + 1] = line end
    end
    return lines
end

local function run_cli(path, config_path)
    local config = config_path and ("--config '" .. config_path .. "' ") or ""
    local p = assert(io.popen("'" .. CLI .. "' --quiet " .. config .. "'" .. path .. "'"))
    local lines = {}
    for line in p:lines() do
        if line:find("%S") then lines[#lines + 1] = line end
    end
    p:close()
    return lines
end

-- The CLI's alerts: { id = event.id, uuid = kibana.alert.uuid, line = text }.
local function cli_alerts(lines)
    local alerts = {}
    for _, line in ipairs(lines) do
        local t = fb_decode(line)
        local uuid = field(t, "kibana.alert.uuid")
        if uuid then alerts[#alerts + 1] = { id = field(t, "event.id"), uuid = uuid, line = line } end
    end
    return alerts
end

-- Load the glue as a new filter instance (its own globals, like its own Lua state).
local function load_glue(globals)
    local env = setmetatable({}, { __index = _G })
    for k, v in pairs(globals or {}) do env[k] = v end
    local chunk = assert(loadfile(GLUE))
    setfenv(chunk, env)
    chunk()
    return env
end

---------------------------------------------------------------------------
-- The expected alerts.

local sample_lines = read_lines(SAMPLE)
local expected = cli_alerts(run_cli(SAMPLE))
check(#sample_lines > 0, "the sample has records")
check(#expected > 0, "the CLI alerts on the sample (else this test proves nothing)")
local expect_desc = {}
for _, a in ipairs(expected) do expect_desc[#expect_desc + 1] = a.id .. "=" .. a.uuid end
print(("CLI: %d records, %d alerts: %s"):format(#sample_lines, #expected, table.concat(expect_desc, " ")))

-- A variant of the sample with null members (top level and nested), and the
-- CLI's output on it: nulls must change nothing in the alert set.
local null_lines = {}
for i, line in ipairs(sample_lines) do
    null_lines[i] = line:gsub("^%s*{", '{"zz_null":null,"zz_nested":{"a":null,"b":1},', 1)
end
local null_path = os.tmpname()
do
    local f = assert(io.open(null_path, "w"))
    f:write(table.concat(null_lines, "\n"), "\n")
    f:close()
end
local null_cli = run_cli(null_path)
os.remove(null_path)
local expected_null = cli_alerts(null_cli)

---------------------------------------------------------------------------
-- One pass over a stream, as filter_lua does it.

local TS0 = 1773480600

local function make_ts(i, as_table)
    if as_table then return { sec = TS0 + i, nsec = 123456789 } end
    return TS0 + i + 0.25
end

local function pack(...) return { n = select("#", ...), ... } end

-- mode: "v1" (apt_netcon, 3 args), "v2" (apt_netcon_v2, 5 args),
-- "v2_3args" (apt_netcon_v2 called the 3-argument way). Each pass is a new
-- filter instance: a fresh glue and detector.
local function run_pass(name, lines, want, opts)
    local null = opts.null
    local glue = load_glue({ flb_null = null })
    local got, problems = {}, 0
    local function problem(msg)
        problems = problems + 1
        if problems <= 3 then io.stderr:write("  ", name, ": ", msg, "\n") end
    end
    for i, line in ipairs(lines) do
        local record = fb_decode(line, null)
        local ts = make_ts(i, opts.time_as_table)
        local code, ts_out, rec_out
        if opts.mode == "v2" then
            local group, metadata = {}, { source = "sample", line = i }
            local r = pack(glue.apt_netcon_v2("endpoint.events", ts, group, metadata, record))
            if r.n ~= 4 then problem("line " .. i .. ": 4 values expected, got " .. r.n) end
            if not rawequal(r[3], metadata) then problem("line " .. i .. ": metadata not handed back") end
            code, ts_out, rec_out = r[1], r[2], r[4]
        else
            local f = opts.mode == "v1" and glue.apt_netcon or glue.apt_netcon_v2
            local r = pack(f("endpoint.events", ts, record))
            if r.n ~= 3 then problem("line " .. i .. ": 3 values expected, got " .. r.n) end
            code, ts_out, rec_out = r[1], r[2], r[3]
        end
        if not rawequal(ts_out, ts) then problem("line " .. i .. ": ts not handed back untouched") end
        if code == 0 then
            if not rawequal(rec_out, record) then problem("line " .. i .. ": code 0 with another record") end
        elseif code == 2 then
            if type(rec_out) ~= "table" then problem("line " .. i .. ": code 2 without a table") end
            got[#got + 1] = { id = field(rec_out, "event.id"), uuid = field(rec_out, "kibana.alert.uuid"), record = rec_out }
        else
            problem("line " .. i .. ": return code " .. tostring(code))
        end
    end
    check(problems == 0, name .. ": callback protocol (codes 0/2, ts and metadata untouched, record identity)")
    local same = #got == #want
    for k = 1, math.max(#got, #want) do
        local g, w = got[k], want[k]
        if not (g and w and g.id == w.id and g.uuid == w.uuid) then same = false end
    end
    local desc = {}
    for _, g in ipairs(got) do desc[#desc + 1] = tostring(g.id) .. "=" .. tostring(g.uuid) end
    check(same, name .. ": alerts (event.id=uuid) are the CLI's: got [" .. table.concat(desc, " ") .. "]")
    for k = 1, math.min(#got, #want) do
        local ok, where = deep_equal(got[k].record, fb_decode(want[k].line, null))
        check(ok, name .. ": alert " .. k .. " has the CLI's fields" .. (where and (" (" .. where .. ")") or ""))
    end
    local st = glue.apt_netcon_glue.stats()
    check(st.lua_errors == 0, name .. ": no Lua-side errors (" .. st.lua_errors .. ")")
    check(st.records == #lines, name .. ": the library saw every record (" .. st.records .. ")")
    check(st.annotated == #want, name .. ": library count of annotated records (" .. st.annotated .. ")")
    print(("%s: %d alerts: %s"):format(name, #got, table.concat(desc, " ")))
end

ffi.C.unsetenv("APT_NETCON_CONFIG")
run_pass("3-arg, ts number", sample_lines, expected, { mode = "v1" })
run_pass("3-arg, time_as_table", sample_lines, expected, { mode = "v1", time_as_table = true })
run_pass("5-arg, ts number", sample_lines, expected, { mode = "v2" })
run_pass("5-arg, time_as_table", sample_lines, expected, { mode = "v2", time_as_table = true })
run_pass("apt_netcon_v2 called with 3 args", sample_lines, expected, { mode = "v2_3args" })

-- Nulls: without enable_flb_null the null members vanish before the glue sees
-- them; with it they are `flb_null` and go through as JSON null. Either way
-- the alerts are the CLI's on the original sample.
local function same_ids(a, b)
    if #a ~= #b then return false end
    for k = 1, #a do
        if a[k].id ~= b[k].id or a[k].uuid ~= b[k].uuid then return false end
    end
    return true
end
check(same_ids(expected_null, expected), "CLI: null members change no alert")
run_pass("nulls vanish (3-arg)", null_lines, expected_null, { mode = "v1" })
local FLB_NULL = setmetatable({}, { __tostring = function() return "flb_null" end })
run_pass("enable_flb_null (5-arg)", null_lines, expected_null, { mode = "v2", null = FLB_NULL })

---------------------------------------------------------------------------
-- The glue's JSON encoder and decoder.

local glue = load_glue()
local json = glue.apt_netcon_glue
local cases = {
    { 0, "0" }, { -5, "-5" }, { 2311, "2311" }, { 2 ^ 53, "9007199254740992" },
    { 2 ^ 53 - 1, "9007199254740991" }, { -(2 ^ 53), "-9007199254740992" },
    { 2 ^ 60, "1152921504606846976" }, { 1.5, "1.5" }, { 0.1, "0.1" }, { -0.25, "-0.25" },
    { 1 / 3, "0.33333333333333331" }, { 1e300, "1e+300" }, { 0 / 0, "null" }, { math.huge, "null" },
    { true, "true" }, { false, "false" },
    { "plain", '"plain"' }, { 'q"b\\s/', '"q\\"b\\\\s/"' },
    { "\n\r\t\b\f\0\1\31\127", '"\\n\\r\\t\\b\\f\\u0000\\u0001\\u001f\\u007f"' },
    { "é ✓ 😀", '"é ✓ 😀"' },
    { {}, "{}" }, { { 1, "a", true }, '[1,"a",true]' }, { { b = 1, a = { c = {} } }, '{"a":{"c":{}},"b":1}' },
    { { [1] = "x", [3] = "y" }, '{"1":"x","3":"y"}' }, { { 1, 2, x = 3 }, '{"1":1,"2":2,"x":3}' },
    { { ["a.b"] = { 1, { 2 } } }, '{"a.b":[1,[2]]}' },
}
for _, c in ipairs(cases) do
    local ok, out = pcall(json.encode, c[1])
    check(ok and out == c[2], ("encode %s -> %s (got %s)"):format(tostring(c[1]), c[2], tostring(out)))
end
check(json.encode({ a = FLB_NULL }, FLB_NULL) == '{"a":null}', "encode flb_null -> null")
local cyclic = {}
cyclic.self = cyclic
check(not pcall(json.encode, cyclic), "encode refuses a cycle")
check(not pcall(json.encode, { f = print }), "encode refuses a function")

-- Once the JIT has compiled them, the encoder and decoder must still give
-- what the interpreter gives. Deterministic tables are written and read
-- with the JIT off first, then built afresh and written and read many
-- times with it on; every text and every re-read table must match. Two
-- families: chains of nested objects (depth 1..12, the shape that made
-- Debian's LuaJIT 2.1.0-beta3 drop nested members when the encoder looped
-- over pairs()), and random trees of objects, arrays and scalars.
do
    local seed
    local function rnd(n) -- a small LCG: the same tables on every LuaJIT
        seed = (seed * 1103515245 + 12345) % 2147483648
        return seed % n
    end
    local names = { "process", "parent", "name", "args", "pid", "entity_id", "host.id", "event",
        "@timestamp", "destination", "ip", "x" }
    local function tree(depth)
        local r = rnd(10)
        if depth <= 0 or r < 2 then
            local s = rnd(5)
            if s == 0 then return "v" .. rnd(1000) end
            if s == 1 then return rnd(100000) end
            if s == 2 then return rnd(2) == 0 end
            if s == 3 then return rnd(1000) / 8 end
            return "quote\"and\\slash" .. rnd(10)
        end
        local t = {}
        if r < 5 then
            for i = 1, 1 + rnd(4) do t[i] = tree(depth - 1) end
        else
            for _ = 1, 1 + rnd(5) do t[names[1 + rnd(#names)]] = tree(depth - 1) end
        end
        return t
    end
    local function chain(depth)
        local root = { x = 1, y = "s" }
        local t = root
        for i = 1, depth do
            local c = { x = i, z = { 1, 2, 3 } }
            t.a = c
            t = c
        end
        return root
    end
    local CHAINS, TREES = 12, 240
    -- Case i, built afresh on every call.
    local function case(i)
        if i <= CHAINS then return chain(i) end
        seed = i
        return tree(1 + i % 9)
    end
    local total = CHAINS + TREES
    jit.off(); jit.flush()
    local texts, rereads = {}, {}
    for i = 1, total do
        texts[i] = json.encode(case(i))
        rereads[i] = json.encode(json.decode(texts[i]))
    end
    jit.on()
    local enc_bad, dec_bad, runs, decoded = 0, 0, 0, {}
    for i = 1, total do
        for _ = 1, i <= CHAINS and 5000 or 40 do
            runs = runs + 1
            if json.encode(case(i)) ~= texts[i] then enc_bad = enc_bad + 1 end
        end
    end
    for round = 1, 40 do
        for i = 1, total do decoded[(round - 1) * total + i] = json.decode(texts[i]) end
    end
    jit.off(); jit.flush()
    for j, d in ipairs(decoded) do
        if json.encode(d) ~= rereads[(j - 1) % total + 1] then dec_bad = dec_bad + 1 end
    end
    jit.on()
    check(enc_bad == 0, ("encode under the JIT equals the interpreter (%d of %d differ)"):format(enc_bad, runs))
    check(dec_bad == 0, ("decode under the JIT equals the interpreter (%d of %d differ)"):format(dec_bad, #decoded))
end

-- Every sample record: Fluent Bit's table -> glue JSON -> Fluent Bit's reader
-- gives the same table; the glue's decoder reads every CLI line like Fluent Bit's.
local roundtrip_ok, decode_ok = true, true
for _, line in ipairs(sample_lines) do
    local t = fb_decode(line)
    local ok, where = deep_equal(fb_decode(json.encode(t)), t)
    if not ok then roundtrip_ok = false; io.stderr:write("  round trip: ", where, "\n") end
end
for _, line in ipairs(run_cli(SAMPLE)) do
    local ok, where = deep_equal(json.decode(line), fb_decode(line))
    if not ok then decode_ok = false; io.stderr:write("  decode: ", where, "\n") end
end
check(roundtrip_ok, "every sample record survives encode -> decode")
check(decode_ok, "the glue's decoder reads every CLI output line as Fluent Bit does")
do
    local ok, v = pcall(json.decode, '{"s":"\\u00e9\\ud83d\\ude00\\/\\n","a":[1,null,2.5e1,-0.5],"n":null,"t":true,"e":{},"l":[]}')
    check(ok and v.s == "é😀/\n" and v.a[1] == 1 and v.a[2] == 25 and v.a[3] == -0.5 and v.a[4] == nil
        and v.n == nil and v.t == true and next(v.e) == nil and next(v.l) == nil,
        "decode escapes, numbers, null, empty containers")
    local ok2, v2 = pcall(json.decode, '{"n":null,"a":[null]}', FLB_NULL)
    check(ok2 and rawequal(v2.n, FLB_NULL) and rawequal(v2.a[1], FLB_NULL), "decode null -> flb_null when enabled")
    check(json.decode('"\127"') == "\127", "decode accepts a raw DEL in a string")
    for _, bad in ipairs({ '{"a":1', '{"a" 1}', '[1,]', '"\1"', '{"a":tru}', '{} x' }) do
        check(not pcall(json.decode, bad), "decode refuses " .. bad)
    end
end

---------------------------------------------------------------------------
-- Fail open: anything odd gives code 0 with the record unchanged, counted.

print("fail-open checks (two \"record passed through\" lines on standard error are expected)")
-- A first-stage record of the sample (a shell exec'd by apt): it passes the
-- glue's check of required values, so it reaches the encoder and the library.
local stage1_line
for _, line in ipairs(sample_lines) do
    if not stage1_line and line:find('"apt"', 1, true) and line:find('"-c"', 1, true) then stage1_line = line end
end
do
    local g = load_glue()
    check(g.apt_netcon_glue.mode == "reduced", "the glue sends reduced records (aptnc_footprint)")
    local function call(rec)
        local code, ts, out = g.apt_netcon("t", 1.5, rec)
        return code == 0 and ts == 1.5 and rawequal(out, rec)
    end
    local function stage1(patch)
        local t = fb_decode(stage1_line)
        patch(t)
        return t
    end
    local before = g.apt_netcon_glue.stats()
    local cyc = { x = 1 }
    cyc.loop = cyc
    check(call(stage1(function(t) t.process.entity_id = cyc end)), "fail open: a cyclic table in a field read")
    check(call(stage1(function(t) t.process.entity_id = function() end end)), "fail open: a function value in a field read")
    check(call({ 1, 2, 3 }), "fail open: an array record (not an object)")
    check(call(stage1(function(t) t.process.entity_id = "bad utf-8 \255\254" end)), "fail open: invalid UTF-8")
    check(call("not a table"), "fail open: not a table")
    -- Fields not read are never looked at: a cycle or a function there changes nothing.
    check(call(stage1(function(t) t.unread = cyc; t.fn = print end)), "a cycle and a function in fields not read")
    local after = g.apt_netcon_glue.stats()
    check(after.lua_errors - before.lua_errors == 2, "fail open: Lua-side errors counted (" .. after.lua_errors .. ")")
    check(after.not_an_object - before.not_an_object == 1, "fail open: not_an_object counted by the library")
    check(after.invalid_json - before.invalid_json == 1, "fail open: invalid_json counted by the library")
    -- A record that can match no stage never reaches the library.
    local lib_before = after.records - after.skipped
    check(call({ event = { category = { "file" } }, host = { id = "h" } }), "a record matching nothing: code 0")
    local st = g.apt_netcon_glue.stats()
    check(st.skipped == after.skipped + 1 and st.records - st.skipped == lib_before,
        "a record matching nothing is skipped without crossing the FFI")
end

-- The decision on the table (generated code, compiled by LuaJIT): on random
-- records built around the rule's required fields (every spelling of a
-- path, values that hold a required string or not, arrays with and without
-- holes, arrays of objects, nulls, numbers), it must say "send" exactly
-- when some stage's required tests may all hold, as an independent
-- reference here decides from the library's footprint; under the JIT (hot)
-- and in the interpreter alike.
do
    local lib = ffi.load(os.getenv("APT_NETCON_LIB"))
    local detp, errp = ffi.new("aptnc_detector *[1]"), ffi.new("aptnc_error *[1]")
    assert(lib.aptnc_init("", 0, nil, detp, errp) == 0)
    local op, ol = ffi.new("const uint8_t *[1]"), ffi.new("size_t[1]")
    assert(lib.aptnc_footprint(detp[0], op, ol) == 0)
    local fp = fb_decode(ffi.string(op[0], ol[0]))
    lib.aptnc_free(detp[0])

    local function split(path)
        local segs = {}
        for seg in path:gmatch("[^.]+") do segs[#segs + 1] = seg end
        return segs
    end
    -- Every grouping of a path's segments into keys.
    local function groupings(segs)
        if #segs == 0 then return { {} } end
        local out = {}
        for i = 1, #segs do
            local head = table.concat(segs, ".", 1, i)
            local rest = {}
            for j = i + 1, #segs do rest[#rest + 1] = segs[j] end
            for _, tail in ipairs(groupings(rest)) do
                local g = { head }
                for _, k in ipairs(tail) do g[#g + 1] = k end
                out[#out + 1] = g
            end
        end
        return out
    end
    local UNSURE = {}
    -- The values of a path in a record (one per spelling found), UNSURE
    -- when a spelling crosses an array.
    local function values_at(record, path, null)
        local out = {}
        for _, keys in ipairs(groupings(split(path))) do
            local v = record
            for i, k in ipairs(keys) do
                if type(v) ~= "table" or rawequal(v, null) then v = nil break end
                local w = rawget(v, k)
                if w == nil and i > 1 and rawget(v, 1) ~= nil then return UNSURE end
                v = w
                if v == nil then break end
            end
            if v ~= nil then out[#out + 1] = v end
        end
        return out
    end
    local function test_may_hold(record, path, lits, null)
        local vals = values_at(record, path, null)
        if vals == UNSURE then return true end
        local set = {}
        for _, l in ipairs(lits) do set[l] = true end
        for _, v in ipairs(vals) do
            if type(v) == "string" and set[v] then return true end
            if type(v) == "table" and not rawequal(v, null) then
                for _, e in pairs(v) do
                    if type(e) == "string" and set[e] then return true end
                    if type(e) == "table" and not rawequal(e, null) then return true end
                end
            end
        end
        return false
    end
    local function reference(record, null)
        for _, tests in ipairs(fp.stages) do
            local all = true
            for _, t in ipairs(tests) do
                if not test_may_hold(record, t[1], t[2], null) then all = false break end
            end
            if all then return true end
        end
        return false
    end

    -- Random records (the same on every LuaJIT: a small LCG, its high bits).
    local seed = 7
    local function rnd(n)
        seed = (seed * 1103515245 + 12345) % 2147483648
        return math.floor(seed / 65536) % n
    end
    local tested = {}
    for _, tests in ipairs(fp.stages) do
        for _, t in ipairs(tests) do
            if not tested[t[1]] then
                tested[t[1]] = t[2]
                tested[#tested + 1] = t[1]
            end
        end
    end
    local function value(lits, null)
        local k = rnd(20)
        if k < 8 then return lits[1 + rnd(#lits)] end
        if k < 10 then return "other" .. rnd(3) end
        if k < 15 then
            -- Sized like Fluent Bit's arrays (lua_createtable(n) then every
            -- element set): a null without enable_flb_null leaves a hole,
            -- and `#` may then stop before elements after it.
            local t, n = {}, 1 + rnd(6)
            for i = 1, n do
                local e = rnd(5)
                if e == 0 then t[i] = lits[1 + rnd(#lits)]
                elseif e == 1 then t[i] = nil
                elseif e == 2 and null then t[i] = null
                else t[i] = "x" .. rnd(9) end
            end
            return { unpack(t, 1, n) }
        end
        if k == 15 then return rnd(100) end
        if k == 16 then return rnd(2) == 0 end
        if k == 17 then return null or {} end
        if k == 18 then return { { "nested" } } end
        return {}
    end
    local function put(record, path, v, null)
        local segs = split(path)
        local g = groupings(segs)
        local keys = g[1 + rnd(#g)]
        local t = record
        for i = 1, #keys - 1 do
            local nxt = rawget(t, keys[i])
            if type(nxt) ~= "table" or rawequal(nxt, null) or nxt[1] ~= nil then
                nxt = {}
                t[keys[i]] = nxt
            end
            t = nxt
        end
        t[keys[#keys]] = v
        -- Now and then an intermediate object becomes an array of objects.
        if #keys > 1 and rnd(40) == 0 then record[keys[1]] = { record[keys[1]] } end
    end
    local function random_record(null)
        local r = { filler = "x" }
        for _, path in ipairs(tested) do
            local n = rnd(10) == 0 and 2 or (rnd(8) == 0 and 0 or 1) -- sometimes twice, sometimes absent
            for _ = 1, n do put(r, path, value(tested[path], null), null) end
        end
        -- Two records in three aim at a stage: most of its fields get one
        -- of their strings (at some spelling, maybe beside another value).
        local s = rnd(3)
        if s > 0 and fp.stages[s] then
            for _, t in ipairs(fp.stages[s]) do
                if rnd(14) > 0 then
                    local lit = t[2][1 + rnd(#t[2])]
                    local form = rnd(6)
                    if form == 0 then
                        put(r, t[1], { "y", lit }, null)
                    elseif form == 1 and not null then
                        put(r, t[1], { unpack({ nil, nil, lit, nil }, 1, 4) }, null) -- `#` gives 0
                    else
                        put(r, t[1], lit, null)
                    end
                end
            end
        end
        return r
    end

    for _, null in ipairs({ false, FLB_NULL }) do
        local nv = null or nil
        local records, want = {}, {}
        for i = 1, 3000 do
            records[i] = random_record(nv)
            want[i] = reference(records[i], nv)
        end
        local g = load_glue({ flb_null = nv })
        -- (Its records have no @timestamp: the library's warning is not shown.)
        local inst = g.apt_netcon_glue.new { key_check = false, log = function() end }
        local decide = inst.internals.decide
        -- Through the callback first, so that the glue orders its tests.
        for round = 1, 3 do
            for i = 1, #records do inst.apt_netcon("t", 1.5, records[i]) end
        end
        local sends, jit_bad, int_bad = 0, 0, 0
        for _ = 1, 20 do
            for i = 1, #records do
                local got = decide(records[i], nv)
                if got ~= want[i] then jit_bad = jit_bad + 1 end
            end
        end
        jit.off(); jit.flush()
        for i = 1, #records do
            if want[i] then sends = sends + 1 end
            if decide(records[i], nv) ~= want[i] then int_bad = int_bad + 1 end
        end
        jit.on()
        local what = null and "with flb_null" or "nulls as holes"
        check(sends > 300 and sends < #records - 300,
            ("decision on random records (%s): both outcomes (%d of %d sent)"):format(what, sends, #records))
        check(jit_bad == 0, ("decision under the JIT equals the reference (%s; %d differ)"):format(what, jit_bad))
        check(int_bad == 0, ("decision in the interpreter equals the reference (%s; %d differ)"):format(what, int_bad))
    end
end

-- Without a footprint (a rule pack, a rule on the generic engine, an older
-- library: here forced) every record goes whole, with the same alerts.
do
    local g = load_glue()
    local inst = g.apt_netcon_glue.new { footprint = false }
    check(inst.mode == "whole", "footprint = false: records go whole")
    local got = {}
    for i, line in ipairs(sample_lines) do
        local code, _, rec = inst.apt_netcon("t", make_ts(i), fb_decode(line))
        if code == 2 then got[#got + 1] = { id = field(rec, "event.id"), uuid = field(rec, "kibana.alert.uuid"), record = rec } end
    end
    check(same_ids(got, expected), "whole records: the CLI's alerts")
    for k = 1, math.min(#got, #expected) do
        local ok, where = deep_equal(got[k].record, fb_decode(expected[k].line))
        check(ok, "whole records: alert " .. k .. " has the CLI's fields" .. (where and (" (" .. where .. ")") or ""))
    end
    check(inst.stats().skipped == 0 and inst.stats().records == #sample_lines, "whole records: none decided on the table")
end

-- Two instances in one Lua state, each with its own config, on the same
-- records: each gives its own config's alerts. With maxspan 2s the second
-- sample sequence (5 s apart) does not complete.
do
    local g = load_glue()
    local a = g.apt_netcon_glue.new()
    local b = g.apt_netcon_glue.new { config = '{"maxspan":"2s","kibana_fields":false}' }
    local got_a, got_b = {}, {}
    for i, line in ipairs(sample_lines) do
        local code, _, rec = a.apt_netcon("t", make_ts(i), fb_decode(line))
        if code == 2 then got_a[#got_a + 1] = field(rec, "event.id") end
        code, _, rec = b.apt_netcon("t", make_ts(i), fb_decode(line))
        if code == 2 then
            got_b[#got_b + 1] = field(rec, "event.id")
            check(rec.kibana == nil and field(rec, "apt_netcon.alert_id") ~= nil, "instance b: its own config (no kibana fields)")
        end
    end
    check(table.concat(got_a, " ") == "hook-net-0001 hook-net-0002", "instance a: the sample's two alerts (" .. table.concat(got_a, " ") .. ")")
    check(table.concat(got_b, " ") == "hook-net-0001", "instance b (maxspan 2s): one alert (" .. table.concat(got_b, " ") .. ")")
    local ok, err = pcall(g.apt_netcon_glue.new, { config = '{"maxspan":"x"}' })
    check(not ok and tostring(err):find("maxspan", 1, true) ~= nil, "a bad instance config raises an error naming the key")
end

-- Records that look unparsed ({"log": "..."}) are warned of once.
do
    local g = load_glue()
    local lines = {}
    local inst = g.apt_netcon_glue.new { log = function(l) lines[#lines + 1] = l end, name = "t" }
    for i = 1, 50 do inst.apt_netcon("t", 1.5, { log = '{"event":{"category":"process"}} line ' .. i }) end
    inst.apt_netcon("t", 1.5, fb_decode(sample_lines[1]))
    local warned = 0
    for _, l in ipairs(lines) do
        if l:find("look unparsed", 1, true) and l:find("`log`", 1, true) then warned = warned + 1 end
    end
    check(warned == 1 and #lines == 1, "the unparsed warning comes once (" .. warned .. " of " .. #lines .. " lines)")
end

-- Stage matches without @timestamp (a parser's Time_Key removed it) are
-- warned of once, with the library's words.
do
    local g = load_glue()
    local lines = {}
    local inst = g.apt_netcon_glue.new { log = function(l) lines[#lines + 1] = l end, name = "t" }
    local exec_line -- the first stage's event of the sample
    for _, l in ipairs(sample_lines) do
        if l:find('"hook-exec-0001"', 1, true) then exec_line = l end
    end
    for i = 1, 3 do
        local r = fb_decode(exec_line)
        r["@timestamp"] = nil
        inst.apt_netcon("t", 1.5, r)
    end
    local warned = 0
    for _, l in ipairs(lines) do
        if l:find("no usable @timestamp", 1, true) and l:find("Time_Keep", 1, true) then warned = warned + 1 end
    end
    check(warned == 1, "the missing-@timestamp warning comes once (" .. warned .. " of " .. #lines .. " lines)")
end

---------------------------------------------------------------------------
-- max_lateness: alerts completed by held events come out later, as
-- standalone records; the callback returns them in an array after the
-- record of the call that saw them come out. The stream: the sample in
-- reverse order (out of order by up to 38 s, within the 60 s window), then
-- one unrelated connection 5 minutes later, which moves event time past
-- every held event. They must be the CLI's standalone alerts on the same
-- stream and config, in the same order, with the same fields.

do
    local LATE_CONFIG = '{"max_lateness":"60s"}'
    local lines = {}
    for i = #sample_lines, 1, -1 do lines[#lines + 1] = sample_lines[i] end
    local conn
    for _, line in ipairs(sample_lines) do
        -- A connection to a public address: it matches the second stage, so
        -- its time moves the watermark (a record that matches no stage does not).
        if not conn and line:find('"connection_attempted"', 1, true) and line:find('"93.184.216.34"', 1, true) then
            conn = line
        end
    end
    local tail = conn:gsub('"@timestamp":"[^"]*"', '"@timestamp":"2026-03-14T09:35:00.0000000Z"')
        :gsub('"entity_id":"', '"entity_id":"tail-'):gsub('"id":"([^"]*)","kind"', '"id":"tail-%%1","kind"')
    lines[#lines + 1] = tail
    local stream_path, config_path = os.tmpname(), os.tmpname()
    local f = assert(io.open(stream_path, "w"))
    f:write(table.concat(lines, "\n"), "\n")
    f:close()
    f = assert(io.open(config_path, "w"))
    f:write(LATE_CONFIG)
    f:close()
    local want = cli_alerts(run_cli(stream_path, config_path))
    os.remove(stream_path)
    os.remove(config_path)
    check(#want == #expected, "max_lateness: the CLI gives the sample's alerts (" .. #want .. ")")

    for _, mode in ipairs({ "v1", "v2" }) do
        ffi.C.setenv("APT_NETCON_CONFIG", LATE_CONFIG, 1)
        local glue = load_glue()
        ffi.C.unsetenv("APT_NETCON_CONFIG")
        local got, problems, arrays = {}, 0, 0
        local function problem(msg)
            problems = problems + 1
            if problems <= 3 then io.stderr:write("  max_lateness ", mode, ": ", msg, "\n") end
        end
        for i, line in ipairs(lines) do
            local record = fb_decode(line)
            local ts = make_ts(i)
            local code, out
            if mode == "v2" then
                local metadata = { line = i }
                local r = pack(glue.apt_netcon_v2("endpoint.events", ts, {}, metadata, record))
                if not rawequal(r[3], metadata) then problem("line " .. i .. ": metadata not handed back") end
                code, out = r[1], r[4]
            else
                local r = pack(glue.apt_netcon("endpoint.events", ts, record))
                code, out = r[1], r[3]
            end
            if code == 2 and type(out) == "table" and type(out[1]) == "table" then
                -- An array: this call's record, then the alerts that came out.
                arrays = arrays + 1
                if not (rawequal(out[1], record) or field(out[1], "kibana.alert.uuid")) then
                    problem("line " .. i .. ": the array does not start with the record")
                end
                for k = 1, #out do
                    local uuid = field(out[k], "kibana.alert.uuid")
                    if uuid then got[#got + 1] = { id = field(out[k], "event.id"), uuid = uuid, record = out[k] } end
                end
            elseif code == 2 then
                got[#got + 1] = { id = field(out, "event.id"), uuid = field(out, "kibana.alert.uuid"), record = out }
            elseif code ~= 0 or not rawequal(out, record) then
                problem("line " .. i .. ": code " .. tostring(code))
            end
        end
        local name = "max_lateness (" .. mode .. ")"
        check(problems == 0, name .. ": callback protocol")
        check(arrays > 0, name .. ": alerts came out in arrays (" .. arrays .. ")")
        local desc = {}
        for _, g in ipairs(got) do desc[#desc + 1] = tostring(g.id) .. "=" .. tostring(g.uuid) end
        check(same_ids(got, want), name .. ": standalone alerts are the CLI's: got [" .. table.concat(desc, " ") .. "]")
        for k = 1, math.min(#got, #want) do
            local ok, where = deep_equal(got[k].record, fb_decode(want[k].line))
            check(ok, name .. ": alert " .. k .. " has the CLI's fields" .. (where and (" (" .. where .. ")") or ""))
        end
        local st = glue.apt_netcon_glue.stats()
        -- Still held: the last connection only (nothing later moves past it).
        check(st.lua_errors == 0 and st.standalone_alerts == #want and st.held == 1,
            name .. ": counters (lua_errors " .. st.lua_errors .. ", standalone " .. st.standalone_alerts
            .. ", held " .. st.held .. ")")
        print(("%s: %d alerts: %s"):format(name, #got, table.concat(desc, " ")))
    end
end

-- A rule pack (config key `rules`): the library reports no footprint, so
-- records go whole, and the pack's alerts come as standalone alerts in
-- arrays after the record; they must be the CLI's on the same config.
do
    local PACK_CONFIG = '{"rules":["apt_netcon_v5","apt_netcon_v11"]}'
    local config_path = os.tmpname()
    local f = assert(io.open(config_path, "w"))
    f:write(PACK_CONFIG)
    f:close()
    local want = cli_alerts(run_cli(SAMPLE, config_path))
    os.remove(config_path)
    local g = load_glue()
    local inst = g.apt_netcon_glue.new { config = PACK_CONFIG }
    check(inst.mode == "whole", "rule pack: records go whole (no footprint)")
    local got, problems = {}, 0
    for i, line in ipairs(sample_lines) do
        local record = fb_decode(line)
        local code, _, out = inst.apt_netcon("t", make_ts(i), record)
        if code == 2 and type(out) == "table" and type(out[1]) == "table" then
            if not rawequal(out[1], record) then problems = problems + 1 end
            for k = 2, #out do
                got[#got + 1] = { id = field(out[k], "event.id"), uuid = field(out[k], "kibana.alert.uuid"), record = out[k] }
            end
        elseif code == 2 then
            got[#got + 1] = { id = field(out, "event.id"), uuid = field(out, "kibana.alert.uuid"), record = out }
        elseif code ~= 0 or not rawequal(out, record) then
            problems = problems + 1
        end
    end
    local desc = {}
    for _, a in ipairs(got) do desc[#desc + 1] = tostring(a.id) .. "=" .. tostring(a.uuid) end
    check(problems == 0, "rule pack: callback protocol")
    check(#want > 0 and same_ids(got, want),
        ("rule pack: the CLI's alerts (%d vs %d): [%s]"):format(#got, #want, table.concat(desc, " ")))
    for k = 1, math.min(#got, #want) do
        local ok, where = deep_equal(got[k].record, fb_decode(want[k].line))
        check(ok, "rule pack: alert " .. k .. " has the CLI's fields" .. (where and (" (" .. where .. ")") or ""))
    end
    print(("rule pack: %d alerts: %s"):format(#got, table.concat(desc, " ")))
end

---------------------------------------------------------------------------
-- Configuration from the environment.

do
    ffi.C.setenv("APT_NETCON_CONFIG", '{"kibana_fields": false}', 1)
    local g = load_glue()
    ffi.C.unsetenv("APT_NETCON_CONFIG")
    local ids = {}
    for i, line in ipairs(sample_lines) do
        local code, _, rec = g.apt_netcon("t", make_ts(i), fb_decode(line))
        if code == 2 then
            check(rec.kibana == nil and field(rec, "apt_netcon.alert_id") ~= nil,
                "APT_NETCON_CONFIG kibana_fields=false: alert under apt_netcon.*")
            ids[#ids + 1] = field(rec, "event.id")
        end
    end
    local want = {}
    for _, a in ipairs(expected) do want[#want + 1] = a.id end
    check(table.concat(ids, " ") == table.concat(want, " "), "APT_NETCON_CONFIG kibana_fields=false: same alerts")
end

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function load_in_child(env_assign)
    local cmd = env_assign .. " luajit -e " .. sh_quote("dofile(" .. ("%q"):format(GLUE) .. ")")
        .. " 2>&1; echo \"rc=$?\""
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    return out
end
do
    local out = load_in_child("APT_NETCON_CONFIG=" .. sh_quote('{"max_pending_sequence": 5}'))
    check(not out:find("rc=0\n", 1, true) and out:find("max_pending_sequence", 1, true) ~= nil,
        "a bad APT_NETCON_CONFIG fails the load and names the key")
    out = load_in_child("APT_NETCON_LIB=/nonexistent/libapt_netcon.so")
    check(not out:find("rc=0\n", 1, true) and out:find("APT_NETCON_LIB", 1, true) ~= nil,
        "a library that cannot be loaded fails the load and says how to set it")
    out = load_in_child("APT_NETCON_CONFIG=" .. sh_quote('{"rule": "apt_netcon_v11"}'))
    check(out:find("rc=0\n", 1, true) ~= nil, "a valid APT_NETCON_CONFIG loads")
end

---------------------------------------------------------------------------
-- A realistic corpus: the glue's alerts are the CLI's, and what each
-- callback costs per record on the same tables.

if CORPUS then
    local g = load_glue()
    local json = g.apt_netcon_glue
    local lines = read_lines(CORPUS)
    local want = cli_alerts(run_cli(CORPUS))
    -- The tables Fluent Bit would hand over (the glue's decoder is much
    -- faster than fb_decode here; null members vanish as in Fluent Bit).
    local tables = {}
    for i, line in ipairs(lines) do tables[i] = json.decode(line) end
    local n = #tables

    -- Correctness first, on fresh tables.
    local inst = json.new()
    local got = {}
    for i = 1, n do
        local code, _, rec = inst.apt_netcon("t", 1.5, json.decode(lines[i]))
        if code == 2 then got[#got + 1] = { id = field(rec, "event.id"), uuid = field(rec, "kibana.alert.uuid"), record = rec } end
    end
    check(#want > 0, "corpus: the CLI alerts on it")
    check(same_ids(got, want), ("corpus: the glue's alerts are the CLI's (%d vs %d)"):format(#got, #want))
    local fields_ok = true
    for k = 1, math.min(#got, #want) do
        local ok, where = deep_equal(got[k].record, fb_decode(want[k].line))
        if not ok then
            fields_ok = false
            io.stderr:write("  corpus alert ", k, ": ", where, "\n")
            break
        end
    end
    check(fields_ok, "corpus: every alert has the CLI's fields")
    local st = inst.stats()
    check(st.records == n and st.lua_errors == 0, "corpus: every record counted, no Lua error")
    print(("corpus: %d records, %d alerts; %d (%.1f %%) decided on the table, %d sent to the library")
        :format(n, #got, st.skipped, 100 * st.skipped / n, n - st.skipped))

    -- The same records with some members spelt dotted (`event` flattened to
    -- "event.action"..., `process.parent` as one member, `host` flattened
    -- two levels deep), one record in four each: the glue must find every
    -- spelling the library reads, and give the CLI's alerts on them.
    do
        local dotted = {}
        for i = 1, n do
            local t = json.decode(lines[i])
            local k = i % 8
            if k == 1 and type(t.event) == "table" then
                for a, b in pairs(t.event) do t["event." .. a] = b end
                t.event = nil
            elseif k == 3 and type(t.process) == "table" and type(t.process.parent) == "table" then
                t["process.parent"] = t.process.parent
                t.process.parent = nil
            elseif k == 5 and type(t.host) == "table" then
                for a, b in pairs(t.host) do
                    if type(b) == "table" and b[1] == nil then
                        for c, d in pairs(b) do t["host." .. a .. "." .. c] = d end
                    else
                        t["host." .. a] = b
                    end
                end
                t.host = nil
            end
            dotted[i] = json.encode(t)
        end
        local path = os.tmpname()
        local f = assert(io.open(path, "w"))
        f:write(table.concat(dotted, "\n"), "\n")
        f:close()
        local want_dotted = cli_alerts(run_cli(path))
        os.remove(path)
        local di = json.new()
        local got_dotted = {}
        for i = 1, n do
            local code, _, rec = di.apt_netcon("t", 1.5, json.decode(dotted[i]))
            if code == 2 then
                got_dotted[#got_dotted + 1] = { id = field(rec, "event.id"), uuid = field(rec, "kibana.alert.uuid"), record = rec }
            end
        end
        check(#want_dotted == #want and same_ids(got_dotted, want_dotted),
            ("corpus with dotted members: the CLI's alerts (%d vs %d)"):format(#got_dotted, #want_dotted))
        local ok_fields = true
        for k = 1, math.min(#got_dotted, #want_dotted) do
            local ok, where = deep_equal(got_dotted[k].record, fb_decode(want_dotted[k].line))
            if not ok then
                ok_fields = false
                io.stderr:write("  dotted corpus alert ", k, ": ", where, "\n")
                break
            end
        end
        check(ok_fields, "corpus with dotted members: every alert has the CLI's fields")
        check(di.stats().lua_errors == 0, "corpus with dotted members: no Lua error")
    end

    -- Timing: one glue instance and one peer instance, each warmed by an
    -- untimed pass (as in a long-running Fluent Bit: the JIT has compiled
    -- what it can, the glue has ordered its tests), then ROUNDS rounds of
    -- each callback over every table in turn; the median CPU time per
    -- record. (A replayed pass is out of order for the detectors: it costs
    -- them as much, and alerts nothing new.)
    local ROUNDS = tonumber(os.getenv("APT_NETCON_LUA_ROUNDS") or "7")
    local function noop(tag, ts, record) return 0, ts, record end
    local peer_path = GLUE:gsub("examples/fluent%-bit/apt_netcon%.lua$", "") .. "../shared/peers/apt_netcon_pure.lua"
    local peer_chunk = loadfile(peer_path)
    local function pass(f)
        local t0 = os.clock()
        for i = 1, n do f("t", 1.5, tables[i]) end
        return (os.clock() - t0) / n * 1e6
    end
    -- The correctness pass above left tens of megabytes of garbage (fresh
    -- tables): collected now, not during the timed rounds. And the compiled
    -- code of the tests above is dropped, as in Fluent Bit, where the
    -- filter's Lua state runs nothing else.
    collectgarbage("collect")
    jit.flush()
    local gi = json.new()
    pass(gi.apt_netcon)
    local peer_cb
    if peer_chunk then
        local env = setmetatable({}, { __index = _G })
        setfenv(peer_chunk, env)
        peer_chunk()
        peer_cb = env.cb
        pass(peer_cb)
    end
    local times = { noop = {}, glue = {}, peer = {} }
    for _ = 1, ROUNDS do
        times.noop[#times.noop + 1] = pass(noop)
        times.glue[#times.glue + 1] = pass(gi.apt_netcon)
        if peer_cb then times.peer[#times.peer + 1] = pass(peer_cb) end
    end
    local function median(v)
        table.sort(v)
        return v[math.floor((#v + 1) / 2)]
    end
    local function fastest(v)
        local m = v[1]
        for i = 2, #v do m = math.min(m, v[i]) end
        return m
    end
    local min_noop, min_glue = fastest(times.noop), fastest(times.glue)
    local t_noop, t_glue = median(times.noop), median(times.glue)
    print(("cost per record (µs, CPU, median of %d rounds over %d tables): no-op %.3f; glue %.3f (%.3f over no-op)")
        :format(ROUNDS, n, t_noop, t_glue, t_glue - t_noop))
    if peer_chunk then
        local t_peer = median(times.peer)
        print(("  pure-Lua peer %.3f (%.3f over no-op); glue / peer over no-op: %.2f")
            :format(t_peer, t_peer - t_noop, (t_glue - t_noop) / (t_peer - t_noop)))
        local min_peer = fastest(times.peer)
        print(("  fastest rounds: no-op %.3f; glue %.3f; peer %.3f; glue / peer over no-op: %.2f")
            :format(min_noop, min_glue, min_peer, (min_glue - min_noop) / (min_peer - min_noop)))
    else
        print("  pure-Lua peer: not measured (" .. peer_path .. " is absent)")
    end

    -- The same on fresh tables. filter_lua builds each record's table from
    -- the chunk's MessagePack just before the call, so the table is in the
    -- CPU's caches; above, every callback reads every table of the corpus,
    -- built long before, and cache misses weigh heavily on all of them
    -- (the more tables a callback looks into, the more). Here each batch of
    -- FRESH_BATCH records is copied anew for each callback (not timed) and
    -- the callback then runs over its own copies (timed): the cost of each
    -- callback's own work (the collector stopped while timing). Printed
    -- only, like the figures above.
    local FRESH_BATCH, FRESH_ROUNDS = 64, tonumber(os.getenv("APT_NETCON_LUA_FRESH_ROUNDS") or "3")
    local fresh = { noop = {}, glue = {}, peer = {} }
    -- A fresh copy of a record table (a little code: decoding the JSON
    -- again would fill LuaJIT's machine code area with the decoder's).
    local function copy(t)
        local c = {}
        for k, v in pairs(t) do
            if type(v) == "table" then c[k] = copy(v) else c[k] = v end
        end
        return c
    end
    local function fresh_pass(f, which)
        local total, batch = 0, {}
        for b = 1, n, FRESH_BATCH do
            local e = math.min(n, b + FRESH_BATCH - 1)
            for i = b, e do batch[i - b + 1] = copy(tables[i]) end
            -- The collector's debt from copying is paid outside the timing.
            collectgarbage("stop")
            local t0 = os.clock()
            for k = 1, e - b + 1 do f("t", 1.5, batch[k]) end
            total = total + (os.clock() - t0)
            collectgarbage("restart")
        end
        fresh[which][#fresh[which] + 1] = total / n * 1e6
    end
    if FRESH_ROUNDS > 0 then
        -- As above: a clean machine code area (LuaJIT flushes every trace
        -- when its area is full, and compiles again from scratch).
        collectgarbage("collect")
        jit.flush()
        pass(gi.apt_netcon)
        if peer_cb then pass(peer_cb) end
        for _ = 1, FRESH_ROUNDS do
            fresh_pass(noop, "noop")
            fresh_pass(gi.apt_netcon, "glue")
            if peer_cb then fresh_pass(peer_cb, "peer") end
        end
        local f_noop, f_glue = median(fresh.noop), median(fresh.glue)
        local line = ("on fresh tables (µs, CPU, median of %d rounds, batches of %d): no-op %.3f; glue %.3f (%.3f over no-op)")
            :format(FRESH_ROUNDS, FRESH_BATCH, f_noop, f_glue, f_glue - f_noop)
        if peer_cb then
            local f_peer = median(fresh.peer)
            line = line .. ("; peer %.3f (%.3f over no-op); glue / peer over no-op: %.2f")
                :format(f_peer, f_peer - f_noop, (f_glue - f_noop) / (f_peer - f_noop))
        end
        print(line)
    end
end

print(("lua: %d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
