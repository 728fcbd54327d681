--[[
apt_netcon.lua: the apt_netcon detector in Fluent Bit's `filter_lua`, through
LuaJIT's FFI (the portable path: any Fluent Bit version; the native filter
plugin is the fast one).

    [FILTER]
        Name    lua
        Match   endpoint.*
        script  /etc/fluent-bit/apt_netcon.lua
        call    apt_netcon

Environment (read once, when Fluent Bit loads the script):

  APT_NETCON_LIB     the shared library to load (default "libapt_netcon.so",
                     found through the dynamic linker's search path; give a
                     full path otherwise, e.g. /usr/local/lib/libapt_netcon.so.1)
  APT_NETCON_CONFIG  optional: the detector's JSON config, as for aptnc_init()
                     (e.g. {"rule":"apt_netcon_v11","kibana_fields":false}).
  APT_NETCON_STATS_INTERVAL  optional: seconds between two counter lines on
                     standard error (Fluent Bit's log); unset or 0: none.

These configure the default instance, behind the `apt_netcon` and
`apt_netcon_v2` callbacks. A script of your own can make instances with
their own config instead (each has its own detector):

    dofile("/etc/fluent-bit/apt_netcon.lua")
    local hunt = apt_netcon_glue.new { config = '{"rule":"apt_netcon_v11"}', stats_interval = 60 }
    function hunt_v11(tag, ts, record) return hunt.apt_netcon(tag, ts, record) end

  apt_netcon_glue.new(opts) -> instance; opts (all optional):
      config          the JSON config (default: APT_NETCON_CONFIG)
      stats_interval  seconds between counter lines (default:
                      APT_NETCON_STATS_INTERVAL; 0: none)
      name            how the instance names itself on standard error
      log             function(line) that writes a log line (default: to
                      standard error); for the warnings and counter lines
      key_check       false: send every record that may match a later stage
                      of the sequence, not only those whose join key a
                      first-stage record sent before held (see below)
      footprint       false: send every record whole, as when the library
                      gives no footprint (for comparisons and tests)
  A bad config raises an error naming the problem (at load time: Fluent Bit
  refuses to start the filter). An instance has the two callbacks
  (instance.apt_netcon, instance.apt_netcon_v2, same contracts as below)
  and instance.stats().

Callbacks (configure one with `call`):

  apt_netcon(tag, ts, record) -> code, ts, record
      The classic 3-argument form, every Fluent Bit version.
  apt_netcon_v2(tag, ts, group_attrs, metadata, record) -> code, ts, metadata, record
      The 5-argument form of Fluent Bit 4.0.4+ (declared with five parameters,
      which is how the host recognises it). Called with three arguments, it
      behaves like apt_netcon.

  code 0: the record is left alone (Fluent Bit keeps its original bytes);
  code 2: the record completed the rule's sequence and is returned as a new
          table with the alert fields (the same fields as the native path);
          or, with max_lateness above 0 in the config, standalone alert
          records came out during this call: an array is returned, this
          call's record (annotated or as it came) followed by the alerts.
          Fluent Bit emits each with this call's timestamp and metadata,
          and re-encodes this call's record from its table.
  `ts` (a number, or {sec=..., nsec=...} with `time_as_table true`) and
  `metadata` are always handed back untouched. Never -1: no record is dropped.

Fail open: a library status other than ANNOTATED (unreadable record, ...),
and any Lua error inside the callback (a record that cannot be encoded, ...),
give code 0 and are counted (apt_netcon_glue.stats()); the first few Lua
errors are reported on standard error. A library that cannot be loaded or a
config that is not valid is an error at load time: Fluent Bit then refuses
to start the filter, with the message on standard error.

What crosses the FFI. The library says, once, which fields its detector
reads and which string values a record must hold to match any stage of the
rule (aptnc_footprint). The glue turns that into Lua code of its own (one
straight-line function, no loop, no pcall, nothing that can raise on a
table: LuaJIT compiles it with the callback) that looks the fields up on the
record table, each at most once, and decides:
  - first the one field every stage tests that rules out most records (e.g.
    event.action, which must be "exec" or "connection_attempted"): most
    records fail there and are returned with code 0 at once;
  - then each stage's other tests, in the order that rules out most for the
    fewest tables looked into (counted now and then on a sample of records,
    and put in order again);
  - for a later stage of the sequence, its join key: sent only when a
    first-stage record sent before held the same values (with max_lateness
    0 a sequence's events pair only in arrival order; the glue remembers at
    least the last 262,144 first-stage keys it sent, at most twice that:
    more than the library's default of 100,000 pending sequences).
A record left out matches nothing the detector could use, so the detector
would have changed no state for it (it is counted as `skipped`, not in the
library's `records`). A field is looked for at every spelling the library
reads ("a.b.c" as a.b.c, a["b.c"], a.b["c"]... and "a.b.c" itself), a
value that is an array at any element, and a record the glue cannot be
sure of (an array of objects on the way, a nested array) is sent. A
record that is sent goes reduced to the fields the detector reads (dotted
members; a field present at several places, nested and dotted, is sent
once per place), encoded flat by generated code as well; the alert the
library writes into that reduced record is then merged into the record
table as the native path merges it into the record's bytes (alert roots
appended or deep-merged, dotted members the alert covers removed). Records
are sent whole instead when the library gives no footprint (a rule pack, a
rule on the generic EQL engine, max_lateness above 0, whose standalone
alerts carry whole records; or an older library), and when a field path
crosses an array of objects or a value read is not a scalar or an array of
scalars (the library flattens those; the glue does not try). The JSON
encoding:
  - strings: bytes passed through (UTF-8 as is), `"` `\` and control
    characters escaped (\n \r \t \b \f, others \u00XX);
  - numbers: integral values below 2^63 in magnitude without a fraction or
    exponent ("2311", exact up to 2^53 and beyond: the double's own value),
    other finite values with the shortest of %.14g / %.17g that reads back
    to the same double; NaN and infinities (no JSON form) become null;
  - booleans; Fluent Bit's `flb_null` (enable_flb_null true) becomes null;
  - a table whose keys are exactly 1..n is an array; any other non-empty
    table is an object (number keys written as strings), keys sorted so that
    the JSON is the same whatever the table's internal order;
  - an EMPTY table is written as {} (an empty object): Lua cannot tell an
    empty array from an empty map, and Fluent Bit itself packs an empty
    table as an empty map. For the rule an empty array, an empty object and
    a missing field are all "no value", so alerts do not change.
  - JSON/msgpack null: Fluent Bit drops the key (the value is nil) unless
    `enable_flb_null` is on. A missing field and a null one are the same to
    the rule (`== null` is "absent, null or empty"), so the alert set does
    not change; only the annotated record lacks the null members.
The annotated JSON (or its alert part) is decoded back into nested tables: objects and arrays
become tables (an empty array or object becomes an empty table, which
Fluent Bit writes as {}), numbers Lua numbers, null `flb_null` when that
global exists (else the key is left out, and a null array element is
skipped).
]]

local ffi = require("ffi")

local byte, char, sub, find, format, gsub = string.byte, string.char, string.sub, string.find,
    string.format, string.gsub
local concat, sort = table.concat, table.sort
local floor, huge = math.floor, math.huge
local type, pairs, ipairs, next, tonumber, tostring, rawequal, rawget, pcall, error, setmetatable, unpack =
    type, pairs, ipairs, next, tonumber, tostring, rawequal, rawget, pcall, error, setmetatable, unpack

-- The part of include/apt_netcon.h the glue uses. Guarded so that loading the
-- script twice into one Lua state (tests) does not redefine the types.
if not pcall(ffi.typeof, "struct aptnc_stats") then
    ffi.cdef [[
typedef struct aptnc_detector aptnc_detector;
typedef struct aptnc_error aptnc_error;
typedef struct aptnc_rule aptnc_rule;
struct aptnc_stats {
    uint32_t size;
    uint32_t version;
    uint64_t records;
    uint64_t annotated;
    uint64_t stage1_matches;
    uint64_t stage2_matches;
    uint64_t sequences_completed;
    uint64_t rejected_by_maxspan;
    uint64_t expired_by_maxspan;
    uint64_t evicted_by_cap;
    uint64_t replaced;
    uint64_t out_of_order;
    uint64_t late;
    uint64_t missing_key;
    uint64_t key_combinations_truncated;
    uint64_t invalid_ip;
    uint64_t too_large;
    uint64_t invalid_json;
    uint64_t invalid_msgpack;
    uint64_t not_an_object;
    uint64_t too_deep;
    uint64_t bad_timestamp;
    uint64_t annotate_failed;
    uint64_t pending;
    uint64_t excluded;
    uint64_t evicted_by_host_cap;
    uint64_t evicted_by_bytes;
    uint64_t future_timestamp;
    uint64_t held;
    uint64_t held_forced;
    uint64_t standalone_alerts;
    uint64_t alerts_dropped;
};
struct aptnc_flush_report {
    uint32_t size;
    uint32_t version;
    uint64_t expired;
    uint64_t pending;
    const uint8_t *alerts;
    size_t alerts_len;
    uint64_t alert_count;
    uint64_t held;
};
uint32_t aptnc_footprint(aptnc_detector *detector, const uint8_t **out, size_t *out_len);
uint32_t aptnc_take_warning(aptnc_detector *detector, const uint8_t **out, size_t *out_len);
const char *aptnc_version(void);
uint32_t aptnc_abi_version(void);
const char *aptnc_status_str(uint32_t status);
const char *aptnc_error_message(const aptnc_error *error);
const char *aptnc_error_key(const aptnc_error *error);
void aptnc_error_free(aptnc_error *error);
uint32_t aptnc_init(const uint8_t *config, size_t config_len, const aptnc_rule *rule,
                    aptnc_detector **detector, aptnc_error **error);
void aptnc_free(aptnc_detector *detector);
uint32_t aptnc_filter(aptnc_detector *detector, const uint8_t *record, size_t record_len,
                      const uint8_t **out, size_t *out_len);
uint32_t aptnc_get_stats(aptnc_detector *detector, struct aptnc_stats *stats);
uint32_t aptnc_flush(aptnc_detector *detector, struct aptnc_flush_report *report);
]]
end

local STATUS_OK, STATUS_ANNOTATED = 0, 2
local ABI_VERSION = 1
local STAT_FIELDS = {
    "records", "annotated", "stage1_matches", "stage2_matches", "sequences_completed",
    "rejected_by_maxspan", "expired_by_maxspan", "evicted_by_cap", "replaced", "out_of_order",
    "late", "missing_key", "key_combinations_truncated", "invalid_ip", "too_large",
    "invalid_json", "invalid_msgpack", "not_an_object", "too_deep", "bad_timestamp",
    "annotate_failed", "pending", "excluded", "evicted_by_host_cap", "evicted_by_bytes",
    "future_timestamp", "held", "held_forced", "standalone_alerts", "alerts_dropped",
}

local function fatal(msg)
    io.stderr:write("[apt_netcon.lua] ", msg, "\n")
    error("apt_netcon.lua: " .. msg, 0)
end

-- Load the library once per Lua state (Fluent Bit gives every filter
-- instance its own state).
local lib_path = os.getenv("APT_NETCON_LIB")
if lib_path == nil or lib_path == "" then lib_path = "libapt_netcon.so" end
local ok_load, lib = pcall(ffi.load, lib_path)
if not ok_load then
    fatal("cannot load the library " .. lib_path .. " (set APT_NETCON_LIB): " .. tostring(lib))
end
if lib.aptnc_abi_version() ~= ABI_VERSION then
    fatal(format("%s has ABI version %d, this script speaks %d", lib_path,
        tonumber(lib.aptnc_abi_version()), ABI_VERSION))
end
-- Keep the library mapped for the life of the process: a detector's
-- finalizer calls into it, and LuaJIT may unload a library whose namespace
-- is collected (or, when the Lua state closes, finalize the namespace
-- before the detectors). RTLD_NODELETE (glibc) makes the unload a no-op.
if not pcall(ffi.typeof, "struct aptnc_glue_dl") then
    ffi.cdef [[
struct aptnc_glue_dl { int unused; };
void *dlopen(const char *filename, int flags);
]]
end
pcall(function() return ffi.C.dlopen(lib_path, 0x00001 + 0x01000) end) -- RTLD_LAZY | RTLD_NODELETE
-- aptnc_footprint came with library 0.1 of this ABI; an older build lacks
-- it, and then every record is sent whole.
local has_footprint = pcall(function() return lib.aptnc_footprint end)
local has_take_warning = pcall(function() return lib.aptnc_take_warning end)

-- Reused out-parameters (one caller at a time: a Lua state is single-threaded).
local out_ptr = ffi.new("const uint8_t *[1]")
local warn_ptr = ffi.new("const uint8_t *[1]")
local warn_len = ffi.new("size_t[1]")
local out_len = ffi.new("size_t[1]")
local stats_buf = ffi.new("struct aptnc_stats")
local report_buf = ffi.new("struct aptnc_flush_report")

---------------------------------------------------------------------------
-- JSON encoding of a record table.

local MAX_DEPTH = 200 -- beyond: a cycle, or deeper than the library reads anyway

local escapes = {
    ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
    ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}
for i = 0, 31 do
    local c = char(i)
    if not escapes[c] then escapes[c] = format("\\u%04x", i) end
end
escapes[char(127)] = "\\u007f"

-- Encoded strings are cached (member names and common values repeat from
-- record to record); the cache is emptied when it fills up.
local str_cache, str_cached = {}, 0
local STR_CACHE_MAX, STR_CACHE_LEN = 4096, 128

local function encode_string(s)
    local e = str_cache[s]
    if e then return e end
    e = s
    for i = 1, #s do -- a plain loop: compiled by the JIT, unlike string.find
        local c = byte(s, i)
        if c < 32 or c == 34 or c == 92 or c == 127 then
            e = gsub(s, '[%c"\\]', escapes)
            break
        end
    end
    e = '"' .. e .. '"'
    if #s <= STR_CACHE_LEN then
        if str_cached >= STR_CACHE_MAX then str_cache, str_cached = {}, 0 end
        str_cache[s] = e
        str_cached = str_cached + 1
    end
    return e
end

local TWO63 = 2 ^ 63
local function encode_number(x)
    if x ~= x or x == huge or x == -huge then return "null" end
    if x == floor(x) and x > -TWO63 and x < TWO63 then
        return format("%.0f", x) -- an integral double, printed exactly
    end
    local s = format("%.14g", x)
    if tonumber(s) ~= x then s = format("%.17g", x) end
    return s
end

local function key_string(k)
    local tk = type(k)
    if tk == "number" then return encode_number(k) end
    if tk == "boolean" then return tostring(k) end
    error("a table key of type " .. tk .. " cannot be a JSON member name")
end

-- The output pieces of the record being encoded (one record at a time: a
-- Lua state runs one callback at a time).
local buf, nbuf = {}, 0

local encode_value

local function encode_table(t, depth, null)
    if depth >= MAX_DEPTH then error("record nested deeper than " .. MAX_DEPTH .. " levels (or cyclic)") end
    -- One pass over the keys: count them, and see whether they are 1..n.
    local keys, count, max, is_array, all_strings = {}, 0, 0, true, true
    for k in pairs(t) do
        count = count + 1
        keys[count] = k
        local tk = type(k)
        if tk == "number" then
            all_strings = false
            if is_array then
                if k >= 1 and k == floor(k) then
                    if k > max then max = k end
                else
                    is_array = false
                end
            end
        else
            is_array = false
            if tk ~= "string" then all_strings = false end
        end
    end
    if count == 0 then
        nbuf = nbuf + 1; buf[nbuf] = "{}" -- an empty table: see the header comment
        return
    end
    if is_array and max == count then
        nbuf = nbuf + 1; buf[nbuf] = "["
        for i = 1, count do
            if i > 1 then nbuf = nbuf + 1; buf[nbuf] = "," end
            encode_value(t[i], depth + 1, null)
        end
        nbuf = nbuf + 1; buf[nbuf] = "]"
        return
    end
    -- An object, members sorted by name so that the text does not depend on
    -- the table's internal order.
    local values
    if all_strings then
        sort(keys)
    else
        -- Number and boolean keys become names; two keys may give one name
        -- (1 and "1"): both members are written (the library reads a
        -- repeated name as a multi-valued field).
        local members = {}
        for i = 1, count do
            local k = keys[i]
            members[i] = { type(k) == "string" and k or key_string(k), t[k] }
        end
        sort(members, function(x, y) return x[1] < y[1] end)
        values = {}
        for i = 1, count do
            keys[i], values[i] = members[i][1], members[i][2]
        end
    end
    nbuf = nbuf + 1; buf[nbuf] = "{"
    for i = 1, count do
        local name = keys[i]
        if i > 1 then nbuf = nbuf + 1; buf[nbuf] = "," end
        nbuf = nbuf + 1; buf[nbuf] = encode_string(name)
        nbuf = nbuf + 1; buf[nbuf] = ":"
        local v
        if values then v = values[i] else v = t[name] end
        encode_value(v, depth + 1, null)
    end
    nbuf = nbuf + 1; buf[nbuf] = "}"
end

encode_value = function(v, depth, null)
    local tv = type(v)
    local piece
    if tv == "string" then
        piece = encode_string(v)
    elseif tv == "number" then
        piece = encode_number(v)
    elseif tv == "boolean" then
        piece = v and "true" or "false"
    elseif null ~= nil and rawequal(v, null) then
        piece = "null"
    elseif tv == "table" then
        return encode_table(v, depth, null)
    elseif tv == "nil" then
        piece = "null"
    else
        error("a value of type " .. tv .. " cannot be written as JSON")
    end
    nbuf = nbuf + 1
    buf[nbuf] = piece
end

-- The encoder runs in LuaJIT's interpreter. Debian 12's LuaJIT
-- (2.1.0-beta3, 2022 snapshot) compiles this recursion into traces that,
-- once hot, now and then see a nested table as empty and drop its members:
-- about one record in a thousand of some shapes, enough to lose alerts.
-- tests/lua/driver.lua compares the encoder under the JIT with the
-- interpreter on tens of thousands of tables.
jit.off(encode_table)
jit.off(encode_value)

local function encode(v, null)
    nbuf = 0
    local ok, err = pcall(encode_value, v, 0, null)
    local s = ok and concat(buf, "", 1, nbuf) or nil
    for i = nbuf, 1, -1 do buf[i] = nil end
    nbuf = 0
    if not ok then error(err, 0) end
    return s
end

---------------------------------------------------------------------------
-- JSON decoding of the annotated record.

local decode_value

local function decode_error(s, pos, what)
    error(format("invalid JSON at byte %d: %s", pos, what))
end

local function skip_ws(s, pos)
    local _, e = find(s, "^[ \t\r\n]*", pos)
    return e + 1
end

local function utf8_char(cp)
    if cp < 0x80 then return char(cp) end
    if cp < 0x800 then return char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40) end
    if cp < 0x10000 then
        return char(0xE0 + floor(cp / 0x1000), 0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
    end
    return char(0xF0 + floor(cp / 0x40000), 0x80 + floor(cp / 0x1000) % 0x40,
        0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local simple_unescape = {
    [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n", [114] = "\r", [116] = "\t",
}

-- pos is just after the opening quote; returns the string and the position after the closing quote.
local function decode_string(s, pos)
    local parts, start = nil, pos
    while true do
        local q = find(s, '["\\%z\001-\031]', pos)
        if not q then decode_error(s, pos, "unterminated string") end
        local c = byte(s, q)
        if c == 34 then -- closing quote
            if not parts then return sub(s, start, q - 1), q + 1 end
            parts[#parts + 1] = sub(s, start, q - 1)
            return concat(parts), q + 1
        elseif c == 92 then
            parts = parts or {}
            parts[#parts + 1] = sub(s, start, q - 1)
            local e = byte(s, q + 1)
            if e == 117 then -- \uXXXX
                local hex = sub(s, q + 2, q + 5)
                if not find(hex, "^%x%x%x%x$") then decode_error(s, q, "bad \\u escape") end
                local cp = tonumber(hex, 16)
                local next_pos = q + 6
                if cp >= 0xD800 and cp <= 0xDBFF then
                    local lo = find(s, "^\\u[dD][c-fC-F]%x%x", next_pos) and tonumber(sub(s, next_pos + 2, next_pos + 5), 16)
                    if lo then
                        cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
                        next_pos = next_pos + 6
                    else
                        cp = 0xFFFD -- a lone surrogate
                    end
                elseif cp >= 0xDC00 and cp <= 0xDFFF then
                    cp = 0xFFFD
                end
                parts[#parts + 1] = utf8_char(cp)
                pos = next_pos
            else
                local r = simple_unescape[e]
                if not r then decode_error(s, q, "bad escape") end
                parts[#parts + 1] = r
                pos = q + 2
            end
            start = pos
        else
            decode_error(s, q, "control character in a string")
        end
    end
end

decode_value = function(s, pos, depth, null)
    pos = skip_ws(s, pos)
    local c = byte(s, pos)
    if c == 34 then
        return decode_string(s, pos + 1)
    elseif c == 123 then -- {
        if depth >= MAX_DEPTH then decode_error(s, pos, "nested too deeply") end
        local t = {}
        pos = skip_ws(s, pos + 1)
        if byte(s, pos) == 125 then return t, pos + 1 end
        while true do
            if byte(s, pos) ~= 34 then decode_error(s, pos, "member name expected") end
            local k
            k, pos = decode_string(s, pos + 1)
            pos = skip_ws(s, pos)
            if byte(s, pos) ~= 58 then decode_error(s, pos, "':' expected") end
            local v
            v, pos = decode_value(s, pos + 1, depth + 1, null)
            if v ~= nil then t[k] = v end
            pos = skip_ws(s, pos)
            c = byte(s, pos)
            if c == 125 then return t, pos + 1 end
            if c ~= 44 then decode_error(s, pos, "',' or '}' expected") end
            pos = skip_ws(s, pos + 1)
        end
    elseif c == 91 then -- [
        if depth >= MAX_DEPTH then decode_error(s, pos, "nested too deeply") end
        local t, n = {}, 0
        pos = skip_ws(s, pos + 1)
        if byte(s, pos) == 93 then return t, pos + 1 end
        while true do
            local v
            v, pos = decode_value(s, pos, depth + 1, null)
            if v ~= nil then
                n = n + 1
                t[n] = v
            end
            pos = skip_ws(s, pos)
            c = byte(s, pos)
            if c == 93 then return t, pos + 1 end
            if c ~= 44 then decode_error(s, pos, "',' or ']' expected") end
            pos = pos + 1
        end
    elseif c == 116 then
        if sub(s, pos, pos + 3) == "true" then return true, pos + 4 end
    elseif c == 102 then
        if sub(s, pos, pos + 4) == "false" then return false, pos + 5 end
    elseif c == 110 then
        if sub(s, pos, pos + 3) == "null" then return null, pos + 4 end
    else
        local _, e = find(s, "^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
        if e then
            local x = tonumber(sub(s, pos, e))
            if x then return x, e + 1 end
        end
    end
    decode_error(s, pos, "value expected")
end

local function decode(s, null)
    local v, pos = decode_value(s, 1, 0, null)
    pos = skip_ws(s, pos)
    if pos <= #s then decode_error(s, pos, "trailing characters") end
    return v
end

---------------------------------------------------------------------------
-- What the rule reads and requires (aptnc_footprint), as table lookups.

-- Every way a dotted path can be spelt in a record table: "a.b.c" is
-- t.a.b.c, t.a["b.c"], t["a.b"].c or t["a.b.c"] (the library reads them all,
-- and all at once). Each spelling is a list of keys.
local MAX_SEGMENTS = 8
local function spellings(path)
    local segs, start = {}, 1
    while true do
        local dot = find(path, ".", start, true)
        if not dot then
            segs[#segs + 1] = sub(path, start)
            break
        end
        segs[#segs + 1] = sub(path, start, dot - 1)
        start = dot + 1
    end
    local n, out = #segs, {}
    if n > MAX_SEGMENTS then return nil end
    for mask = 0, 2 ^ (n - 1) - 1 do -- bit i set: cut after segment i
        local keys, cur, m = {}, segs[1], mask
        for i = 2, n do
            if m % 2 == 1 then
                keys[#keys + 1] = cur
                cur = segs[i]
            else
                cur = cur .. "." .. segs[i]
            end
            m = floor(m / 2)
        end
        keys[#keys + 1] = cur
        out[#out + 1] = keys
    end
    return out
end

-- The value at `keys` in `t`, nil when absent, or UNSURE when the path
-- crosses an array (the library flattens arrays of objects: the glue leaves
-- such records to it; a table is looked at for an element 1 only when it
-- lacks the member: that look costs a memory access of its own). rawget: a
-- metatable on a record table changes nothing and raises nothing. The
-- record itself (i == 1) is not checked here: see decide.
local UNSURE = setmetatable({}, { __tostring = function() return "unsure" end })
local function walk(t, keys, null)
    local v = t
    for i = 1, #keys do
        if type(v) ~= "table" or rawequal(v, null) then return nil end
        local w = rawget(v, keys[i])
        if w == nil then
            -- An array (a JSON array has no named member): unsure.
            if i > 1 and rawget(v, 1) ~= nil then return UNSURE end
            return nil
        end
        v = w
    end
    return v
end

-- True when the table `v` (an array, or any table) holds one of `set`'s
-- strings, or a nested table (unsure: the library flattens it). Every
-- member is looked at: a null element (without enable_flb_null) leaves a
-- hole, and `#v` may then stop before elements after it. Interpreted (see
-- the encoder's note on pairs() under Debian's LuaJIT); the compiled code
-- calls it only for arrays with holes and longer arrays.
local function table_holds(v, set, null)
    for _, e in pairs(v) do
        local te = type(e)
        if te == "string" then
            if set[e] then return true end
        elseif te == "table" and not rawequal(e, null) then
            return true
        end
    end
    return false
end
jit.off(table_holds)

-- The same for an array without holes (the usual case: `next(v, n)` is
-- nil when nothing follows element n), in code LuaJIT compiles; anything
-- else through table_holds.
local function element_holds(e, set, null)
    if type(e) == "string" then return set[e] == true end
    return type(e) == "table" and not rawequal(e, null)
end
local function array_holds(v, set, null)
    local n = #v
    if next(v, n > 0 and n or nil) ~= nil then return table_holds(v, set, null) end
    if n == 0 then return false end
    if element_holds(rawget(v, 1), set, null) then return true end
    if n == 1 then return false end
    if element_holds(rawget(v, 2), set, null) then return true end
    if n == 2 then return false end
    if element_holds(rawget(v, 3), set, null) then return true end
    for i = 4, n do
        if element_holds(rawget(v, i), set, null) then return true end
    end
    return false
end

-- True when the record may hold one of `set`'s strings in the field spelt
-- `sps` (at any of its spellings; true also when unsure). The exact test
-- the compiled decision falls back on, and the reference it is tested
-- against.
local function holds(record, sps, set, null)
    for j = 1, #sps do
        local v = walk(record, sps[j], null)
        if v ~= nil then
            if rawequal(v, UNSURE) then return true end
            local tv = type(v)
            if tv == "string" then
                if set[v] then return true end
            elseif tv == "table" and not rawequal(v, null) then
                if table_holds(v, set, null) then return true end
            end
        end
    end
    return false
end

-- Numbers as encode_number writes them; integral values below 1e14 in
-- magnitude through tostring (%.14g: the same digits, and compiled by
-- LuaJIT, unlike string.format).
local function encode_number_fast(x)
    if x == floor(x) and x > -1e14 and x < 1e14 then return tostring(x) end
    return encode_number(x)
end

local function encode_scalar(e, null)
    local te = type(e)
    if te == "string" then return encode_string(e) end
    if te == "number" then return encode_number_fast(e) end
    if te == "boolean" then return e and "true" or "false" end
    if null ~= nil and rawequal(e, null) then return "null" end
    return nil
end

-- A table holding scalars at 1..n and nothing else, as a JSON array ("{}"
-- when empty, as the general encoder writes it); nil for any other table
-- (the record then goes whole).
local function encode_flat_array(v, null)
    local n = #v
    if n == 0 then
        if next(v) == nil then return "{}" end
        return nil
    end
    if next(v, n) ~= nil then return nil end
    if n == 1 then
        local s = encode_scalar(rawget(v, 1), null)
        return s and "[" .. s .. "]"
    end
    local out = {}
    for i = 1, n do
        local s = encode_scalar(rawget(v, i), null)
        if s == nil then return nil end
        out[i] = s
    end
    return "[" .. concat(out, ",") .. "]"
end

-- The alert's roots merged into the record table, as the library merges
-- them into a record's bytes (src/format/merge.rs): dotted members naming a
-- path the alert writes (or one below its leaves) are removed; a root that
-- is an object on both sides is merged key by key (the alert's leaves
-- win), any other is replaced or added.
local function is_object(t, null)
    return type(t) == "table" and not rawequal(t, null) and t[1] == nil
end

local function deep_merge(into, from, null)
    for k, v in pairs(from) do
        local cur = into[k]
        if is_object(cur, null) and is_object(v, null) then
            deep_merge(cur, v, null)
        else
            into[k] = v
        end
    end
end
jit.off(deep_merge)

local function alert_covers(roots, path, null)
    local cur, start = roots, 1
    while true do
        local dot = find(path, ".", start, true)
        local seg = sub(path, start, dot and dot - 1 or -1)
        local v = cur[seg]
        if v == nil then return false end
        if dot and is_object(v, null) then
            cur = v
            start = dot + 1
        else
            return true
        end
    end
end

local function merge_alert(record, roots, null)
    local covered
    for k in pairs(record) do
        if type(k) == "string" and find(k, ".", 1, true) and alert_covers(roots, k, null) then
            covered = covered or {}
            covered[#covered + 1] = k
        end
    end
    if covered then
        for i = 1, #covered do record[covered[i]] = nil end
    end
    for k, v in pairs(roots) do
        local cur = record[k]
        if is_object(cur, null) and is_object(v, null) then
            deep_merge(cur, v, null)
        else
            record[k] = v
        end
    end
end
jit.off(merge_alert)

-- The keyword values of a join-key field (appended to `out`), false when
-- unsure (a value that is not a string, a boolean or an integral number).
local function keyword(e, null, out)
    local te = type(e)
    if te == "string" then
        out[#out + 1] = e
    elseif te == "number" and e == floor(e) and e > -2 ^ 53 and e < 2 ^ 53 then
        out[#out + 1] = format("%.0f", e)
    elseif te == "boolean" then
        out[#out + 1] = tostring(e)
    elseif not (null ~= nil and rawequal(e, null)) then
        return false
    end
    return true
end

-- The same for a table value with holes or other keys (pairs: see the
-- encoder's note on Debian's LuaJIT).
local function table_keywords(v, null, out)
    for k, e in pairs(v) do
        if type(k) ~= "number" then return false end -- an object
        if not keyword(e, null, out) then return false end
    end
    return true
end
jit.off(table_keywords)

local function key_values(record, sps, null, out)
    for j = 1, #sps do
        local v = walk(record, sps[j], null)
        if v ~= nil then
            if rawequal(v, UNSURE) then return false end
            if type(v) == "table" and not rawequal(v, null) then
                local n = #v
                if next(v, n > 0 and n or nil) ~= nil then
                    if not table_keywords(v, null, out) then return false end
                else
                    for i = 1, n do
                        if not keyword(rawget(v, i), null, out) then return false end
                    end
                end
            elseif not keyword(v, null, out) then
                return false
            end
        end
    end
    return true
end

-- Every value combination of a stage's join key, each a list of strings;
-- nil when unsure, an empty list when a key field has no value.
local MAX_COMBINATIONS = 64
local function key_tuples(record, stage_keys, null)
    local tuples = { {} }
    for i = 1, #stage_keys do
        local vals = {}
        if not key_values(record, stage_keys[i], null, vals) then return nil end
        if #vals == 0 then return {} end
        local nxt = {}
        for _, t in ipairs(tuples) do
            for _, v in ipairs(vals) do
                local u = {}
                for k = 1, i - 1 do u[k] = t[k] end
                u[i] = v
                nxt[#nxt + 1] = u
            end
        end
        if #nxt > MAX_COMBINATIONS then return nil end
        tuples = nxt
    end
    return tuples
end

---------------------------------------------------------------------------
-- The decision on the record table and the reduced record, as generated
-- straight-line code: no loop, no pcall, no error on any table (rawget
-- only, every value's type checked before use), so that LuaJIT compiles
-- the callback whole and a record that cannot match costs a few table
-- lookups.

local NL = setmetatable({}, { __tostring = function() return "not looked up" end })
local MULTI = setmetatable({}, { __tostring = function() return "several spellings" end })

-- The member names the generated code looks up, read from a table at run
-- time (N[i]), not written as constants: LuaJIT specializes a lookup with a
-- constant key to the slot where the recorded table held it, and records
-- of other shapes (most) would then leave the compiled code there.
local function name_table()
    local names, index = {}, {}
    return names, function(k)
        if not index[k] then
            names[#names + 1] = k
            index[k] = #names
        end
        return "N[" .. index[k] .. "]"
    end
end

-- Code that sets local `var` to the value of the field spelt `sps`: the
-- value (false when none), MULTI when more than one spelling holds one,
-- UNSURE when a spelling crosses an array.
local function gen_load(src, var, sps, name, obj)
    src[#src + 1] = format("u = false %s = false\n", var)
    for i = #sps, 1, -1 do -- the most nested spelling first (see obj)
        local keys = sps[i]
        src[#src + 1] = format("v = rawget(r, %s)\n", name(keys[1]))
        for j = 2, #keys do
            -- A table is looked at for an element 1 (an array: unsure)
            -- only when it lacks the member and no member was found in it
            -- before: `o` is true once it showed it is an object.
            local o = obj(concat(keys, "\0", 1, j - 1))
            src[#src + 1] = format("if v ~= nil then if type(v) ~= 'table' or rawequal(v, null) then v = nil "
                .. "else t = v v = rawget(t, %s) if v ~= nil then %s = true "
                .. "elseif not %s and rawget(t, 1) ~= nil then u = true end end end\n", name(keys[j]), o, o)
        end
        src[#src + 1] = format("if v ~= nil then if %s == false then %s = v else %s = MULTI end end\n", var, var, var)
    end
    src[#src + 1] = format("if u then %s = UNSURE end\n", var)
end

-- Code that sets `h` to whether field variable `var` (loaded when not yet)
-- may hold one of the strings of SETS[set_id].
local MAX_COMPARED = 8
local function gen_test(src, var, sps_id, set_id, sps, name, set, obj)
    src[#src + 1] = format("if %s == NL then\n", var)
    gen_load(src, var, sps, name, obj)
    src[#src + 1] = format("end\nv = %s\n", var)
    -- A few literals are compared (a string is compared by reference: the
    -- string itself is not read); more are looked up in the set.
    local lits = {}
    for lit in pairs(set) do lits[#lits + 1] = lit end
    sort(lits)
    local string_test = format("SETS[%d][v] == true", set_id)
    if #lits <= MAX_COMPARED then
        for i, lit in ipairs(lits) do lits[i] = format("v == %q", lit) end
        string_test = "(" .. concat(lits, " or ") .. ")"
    end
    src[#src + 1] = format("if type(v) == 'string' then h = %s ", string_test)
    src[#src + 1] = format("elseif type(v) ~= 'table' or rawequal(v, null) then h = false "
        .. "elseif rawequal(v, UNSURE) then h = true "
        .. "elseif rawequal(v, MULTI) then h = holds(r, SPS[%d], SETS[%d], null) "
        .. "else h = array_holds(v, SETS[%d], null) end\n", sps_id, set_id, set_id)
end

-- Code that loads the key fields `key` (field indexes) one after the other
-- and sets `h` to whether a first-stage record sent before had the same
-- key: K.now and K.before hold the keys as nested tables, one level per
-- field, so that a first field no such record had ends it (true when
-- unsure; KS(r, s, null) decides values that are not one string per field).
local function gen_key_test(src, key, s, vars, fields, name, obj)
    src[#src + 1] = "if K.any then h = true else\nh = false ka = K.now kb = K.before\n"
    for i, f in ipairs(key) do
        src[#src + 1] = format("if %s == NL then\n", vars[f])
        gen_load(src, vars[f], fields[f], name, obj)
        src[#src + 1] = "end\n"
        src[#src + 1] = format("if type(%s) ~= 'string' then h = KS(r, %d, null) else\n"
            .. "if ka ~= nil then ka = ka[%s] end if kb ~= nil then kb = kb[%s] end\n", vars[f], s, vars[f], vars[f])
        if i < #key then
            src[#src + 1] = "if ka ~= nil or kb ~= nil then\n"
        else
            src[#src + 1] = "h = ka == true or kb == true\n"
        end
    end
    for i = 1, #key do
        src[#src + 1] = i < #key and "end end\n" or "end\n"
    end
    src[#src + 1] = "end\n"
end

-- plan: { fields = {sps...} (every field tested or keyed, by index),
--   sets = {set...}, prelude = candidate or nil, candidates = {{field=,
--   set=, id=}...}, stages = { { tests = {test...}, key = {field...} or
--   nil } } }, a test being {field=, set=, id=} or {key=, stage=, id=}.
-- Returns decide(r, null) -> true when the record must go to the library:
-- some stage's tests all hold (and for the first stage, its key is then
-- remembered in K: K.now, K.before, nested tables one level per key
-- field; A1(r, null) remembers keys that are not one string per field).
-- With `census`, every candidate is evaluated and each failing one counted
-- in FC[id]; then, if the prelude holds, every stage test likewise; it
-- returns nothing.
local function compile_decide(plan, census)
    local src = { "local SETS, SPS, FC, K, A1, KS, holds, array_holds, NL, MULTI, UNSURE, N, AT = ...\n"
        .. "local rawget, type, rawequal = rawget, type, rawequal\n" }
    local names, name = name_table()
    local flags, flag_index = {}, {}
    local function obj(prefix)
        if not flag_index[prefix] then
            flags[#flags + 1] = "o" .. (#flags + 1)
            flag_index[prefix] = flags[#flags]
        end
        return flag_index[prefix]
    end
    src[#src + 1] = "return function(r, null)\n"
        .. "local v, h, u, t, ka, kb\n"
    local flags_at = #src + 1
    src[flags_at] = ""
    local vars = {}
    for i = 1, #plan.fields do vars[i] = "f" .. i end
    if #vars > 0 then
        src[#src + 1] = "local " .. concat(vars, ", ") .. " = NL" .. string.rep(", NL", #vars - 1) .. "\n"
    end
    local function test(t)
        if t.key then
            gen_key_test(src, t.key, t.stage, vars, plan.fields, name, obj)
        else
            gen_test(src, vars[t.field], t.field, t.set, plan.fields[t.field], name, plan.sets[t.set], obj)
        end
    end
    if census then
        for _, c in ipairs(plan.candidates) do
            test(c)
            src[#src + 1] = format("if not h then FC[%d] = FC[%d] + 1 end\n", c.id, c.id)
        end
        -- The stage tests on records that pass the prelude, and in each
        -- stage only when its tests on the prelude's field pass (they come
        -- first and cost nothing): how often a test fails where it runs.
        local pf
        if plan.prelude then
            pf = plan.prelude.field
            test(plan.prelude)
            src[#src + 1] = "if not h then return end\n"
        end
        for s, st in ipairs(plan.stages) do
            for _, t in ipairs(st.tests) do
                if pf and t.field == pf then
                    test(t)
                    src[#src + 1] = format("if not h then goto c%d end\n", s)
                end
            end
            for _, t in ipairs(st.tests) do
                if not (pf and t.field == pf) then
                    test(t)
                    src[#src + 1] = format("if not h then FC[%d] = FC[%d] + 1 end\n", t.id, t.id)
                    if t.field then
                        -- How often the value is a table (an array: one more
                        -- table to go through).
                        src[#src + 1] = format("if type(f%d) == 'table' then AT[%d] = AT[%d] + 1 end\n",
                            t.field, t.field, t.field)
                    end
                end
            end
            src[#src + 1] = format("::c%d::\n", s)
        end
        src[#src + 1] = "AT[0] = AT[0] + 1\nend\n"
        if #flags > 0 then src[flags_at] = "local " .. concat(flags, ", ") .. " = false" .. string.rep(", false", #flags - 1) .. "\n" end
        return assert(loadstring(concat(src), "=apt_netcon census")), names
    end
    -- A record that is an array (elements at 1..n) goes to the library,
    -- which counts it (not_an_object): looked at only when the prelude's
    -- field is absent (past the prelude, the record has a named member),
    -- or, without a prelude, when no stage matched (a record with a named
    -- member that rules it out can be left out whatever else it holds).
    if plan.prelude then
        test(plan.prelude)
        src[#src + 1] = format("if not h then return %s == false and rawget(r, 1) ~= nil end\n",
            vars[plan.prelude.field])
    end
    for s, st in ipairs(plan.stages) do
        local next_label = "s" .. (s + 1)
        for _, t in ipairs(st.tests) do
            test(t)
            src[#src + 1] = format("if not h then goto %s end\n", next_label)
        end
        if s == 1 and st.key then
            -- Remember the key (one string per key field: here; else A1).
            local conds = {}
            for i, f in ipairs(st.key) do
                src[#src + 1] = format("if %s == NL then\n", vars[f])
                gen_load(src, vars[f], plan.fields[f], name, obj)
                src[#src + 1] = "end\n"
                conds[i] = format("type(%s) == 'string'", vars[f])
            end
            src[#src + 1] = "if " .. concat(conds, " and ") .. " then\nt = K.now\n"
            for i = 1, #st.key - 1 do
                local var = vars[st.key[i]]
                src[#src + 1] = format("v = t[%s] if v == nil then v = {} t[%s] = v end t = v\n", var, var)
            end
            local last = vars[st.key[#st.key]]
            src[#src + 1] = format("if t[%s] == nil then t[%s] = true K.count = K.count + 1 "
                .. "if K.count >= K.limit then K.roll() end end\n", last, last)
            src[#src + 1] = "else A1(r, null) end\n"
        end
        src[#src + 1] = format("do return true end\n::%s::\n", next_label)
    end
    src[#src + 1] = plan.prelude and "return false\nend\n" or "return rawget(r, 1) ~= nil\nend\n"
    if #flags > 0 then src[flags_at] = "local " .. concat(flags, ", ") .. " = false" .. string.rep(", false", #flags - 1) .. "\n" end
    return assert(loadstring(concat(src), "=apt_netcon decide")), names
end

-- An array of scalars (its elements at 1..n, nothing else) appended to the
-- JSON pieces B (strings as they are, their text also appended to C for
-- the check below); "{}" when empty, as the general encoder writes it. nil
-- for any other table (the record then goes whole).
local function push_array(B, C, v, null, n, c)
    local len = #v
    if len == 0 then
        if next(v) ~= nil then return nil end
        n = n + 1
        B[n] = "{}"
        return n, c
    end
    if next(v, len) ~= nil then return nil end
    n = n + 1
    B[n] = "["
    for i = 1, len do
        local e = rawget(v, i)
        if i > 1 then
            n = n + 1
            B[n] = ","
        end
        local te = type(e)
        if te == "string" then
            B[n + 1], B[n + 2], B[n + 3] = '"', e, '"'
            n = n + 3
            c = c + 1
            C[c] = e
        elseif te == "number" then
            n = n + 1
            B[n] = encode_number_fast(e)
        elseif te == "boolean" then
            n = n + 1
            B[n] = e and "true" or "false"
        elseif null ~= nil and rawequal(e, null) then
            n = n + 1
            B[n] = "null"
        else
            return nil
        end
    end
    n = n + 1
    B[n] = "]"
    return n, c
end

-- The same, each string escaped (encode_string).
local function push_array_escaped(B, C, v, null, n, c)
    local s = encode_flat_array(v, null)
    if s == nil then return nil end
    n = n + 1
    B[n] = s
    return n, c
end

-- The record reduced to the fields the detector reads (every spelling
-- found, as a dotted member), as flat JSON; nil when a path crosses an
-- array, or a value is not a scalar or an array of scalars (the record
-- then goes whole, with the general encoder). Generated code, in two
-- variants: the fast one appends strings as they are and checks them all
-- at once at the end (one loop over their bytes: most hold nothing to
-- escape), returning false when one needs escaping; the other escapes each.
local function compile_reduced(fields)
    local names, name = name_table()
    local function variant(escaped)
        local src = { "local B, C, encode_string, encode_number, push_array, KEYS, N = ...\n"
            .. "local rawget, type, rawequal, concat, byte = rawget, type, rawequal, table.concat, string.byte\n"
            .. "return function(r, null)\n"
            .. "if rawget(r, 1) ~= nil then return nil end\n"
            .. "local n, c, v, t = 1, 0, nil, nil\n" }
        for f, fd in ipairs(fields) do
            for _, keys in ipairs(fd.spellings) do
                src[#src + 1] = format("v = rawget(r, %s)\n", name(keys[1]))
                for j = 2, #keys do
                    src[#src + 1] = format("if v ~= nil then if type(v) ~= 'table' or rawequal(v, null) then v = nil "
                        .. "else t = v v = rawget(t, %s) if v == nil and rawget(t, 1) ~= nil then return nil end end end\n",
                        name(keys[j]))
                end
                -- KEYS[4f-3 .. 4f]: the member name and colon, first or after
                -- a comma, then the same with the string's opening quote.
                local key = format("if n == 1 then B[2] = KEYS[%d] else B[n + 1] = KEYS[%d] end n = n + 1\n",
                    4 * f - 3, 4 * f - 2)
                local key_quote = format("if n == 1 then B[2] = KEYS[%d] else B[n + 1] = KEYS[%d] end n = n + 1\n",
                    4 * f - 1, 4 * f)
                local string_case = escaped and (key .. "n = n + 1 B[n] = encode_string(v)\n")
                    or (key_quote .. "B[n + 1] = v B[n + 2] = '\"' n = n + 2 c = c + 1 C[c] = v\n")
                src[#src + 1] = "if v ~= nil then\n"
                    .. "if type(v) == 'string' then\n" .. string_case
                    .. "elseif type(v) == 'number' then\n" .. key .. "n = n + 1 B[n] = encode_number(v)\n"
                    .. "elseif type(v) == 'boolean' then\n" .. key .. "n = n + 1 B[n] = v and 'true' or 'false'\n"
                    .. "elseif rawequal(v, null) then\n" .. key .. "n = n + 1 B[n] = 'null'\n"
                    .. "elseif type(v) == 'table' then\n" .. key
                    .. "n, c = push_array(B, C, v, null, n, c) if n == nil then return nil end\n"
                    .. "else return nil end\nend\n"
            end
        end
        if not escaped then
            src[#src + 1] = "if c > 0 then\nlocal all = concat(C, '', 1, c)\n"
                .. "for i = 1, #all do local b = byte(all, i) "
                .. "if b < 32 or b == 34 or b == 92 or b == 127 then return false end end\nend\n"
        end
        src[#src + 1] = "if n == 1 then return '{}' end\nn = n + 1 B[n] = '}'\nreturn concat(B, '', 1, n)\nend\n"
        local keys = {}
        for f, fd in ipairs(fields) do
            local k = encode_string(fd.name) .. ":"
            keys[4 * f - 3], keys[4 * f - 2] = k, "," .. k
            keys[4 * f - 1], keys[4 * f] = k .. '"', "," .. k .. '"'
        end
        return assert(loadstring(concat(src), escaped and "=apt_netcon reduced escaped" or "=apt_netcon reduced"))(
            { "{" }, {}, encode_string, encode_number_fast, escaped and push_array_escaped or push_array, keys, names)
    end
    local fast, escaped = variant(false), variant(true)
    return function(r, null)
        local json = fast(r, null)
        if json == false then return escaped(r, null) end
        return json
    end
end

---------------------------------------------------------------------------
-- Instances: one detector each, with the callbacks over it.

local MAX_REPORTED = 5
-- The decision's tests are put in order by how often each fails, counted
-- on one record in CENSUS_EVERY (one in CENSUS_FIRST at first), from the
-- record REORDER_FIRST on and then every REORDER_EVERY records. (The
-- census runs interpreted, about 10 µs: rarely.)
local CENSUS_FIRST, CENSUS_EVERY = 4, 4096
local REORDER_FIRST, REORDER_EVERY = 1024, 65536
local KEY_GENERATION = 262144

local function load_footprint(det)
    if not has_footprint then return nil end
    if lib.aptnc_footprint(det, out_ptr, out_len) ~= STATUS_OK then return nil end
    local fp = decode(ffi.string(out_ptr[0], out_len[0]))
    if type(fp) ~= "table" or fp.whole_record or type(fp.fields) ~= "table" or #fp.fields == 0 then return nil end
    local fields = {}
    for i, name in ipairs(fp.fields) do
        local sps = spellings(name)
        if not sps then return nil end
        fields[i] = { name = name, spellings = sps }
    end
    -- The fields tested or keyed, by index (the decision's variables), the
    -- test sets, and the stages.
    local index, tested, tested_names, sets = {}, {}, {}, {}
    local function field_index(name)
        if not index[name] then
            local sps = spellings(name)
            if not sps then return nil end
            tested[#tested + 1] = sps
            tested_names[#tested] = name
            index[name] = #tested
        end
        return index[name]
    end
    local stages = {}
    for s, tests in ipairs(fp.stages or {}) do
        local st = { tests = {} }
        for t, test in ipairs(tests) do
            local set = {}
            for _, lit in ipairs(test[2]) do set[lit] = true end
            local f = field_index(test[1])
            if not f then return nil end
            sets[#sets + 1] = set
            st.tests[t] = { field = f, set = #sets, id = #sets, order = #sets }
        end
        if #st.tests == 0 then stages = {} break end
        stages[s] = st
    end
    -- Prelude candidates: a field tested in every stage, with the union of
    -- one of its test sets per stage (a record that holds none of them can
    -- match no stage).
    local candidates = {}
    if #stages > 0 then
        local seen = {}
        for _, t0 in ipairs(stages[1].tests) do
            local union, in_all = {}, true
            for _, st in ipairs(stages) do
                local found
                for _, t in ipairs(st.tests) do
                    if t.field == t0.field then found = t break end
                end
                if not found then in_all = false break end
                for lit in pairs(sets[found.set]) do union[lit] = true end
            end
            if in_all and not seen[t0.field] then
                seen[t0.field] = true
                sets[#sets + 1] = union
                candidates[#candidates + 1] = { field = t0.field, set = #sets, id = #sets }
            end
        end
    end
    -- Join keys: the same number of fields in every stage, else no key check.
    local keys, key_sps = {}, {}
    for s, paths in ipairs(fp.keys or {}) do
        keys[s], key_sps[s] = {}, {}
        for i, path in ipairs(paths) do
            local f = field_index(path)
            if not f then return nil end
            keys[s][i] = f
            key_sps[s][i] = tested[f]
        end
    end
    local keyed = #stages > 0 and #keys == #stages
    for s = 1, #keys do
        if #keys[s] == 0 or #keys[s] ~= #keys[1] then keyed = false end
    end
    local roots = {}
    for _, r in ipairs(fp.alert_roots or {}) do roots[#roots + 1] = r end
    return { fields = fields, tested = tested, tested_names = tested_names, sets = sets, stages = stages,
        candidates = candidates,
        keys = keyed and keys or nil, key_sps = keyed and key_sps or nil, roots = roots }
end

local function new_instance(opts)
    opts = opts or {}
    local config = opts.config or os.getenv("APT_NETCON_CONFIG") or ""
    local label = opts.name or "apt_netcon.lua"
    local log = opts.log or function(line) io.stderr:write(line, "\n") end
    local interval = tonumber(opts.stats_interval or os.getenv("APT_NETCON_STATS_INTERVAL") or 0) or 0
    local detector
    do
        local detp = ffi.new("aptnc_detector *[1]")
        local errp = ffi.new("aptnc_error *[1]")
        local st = lib.aptnc_init(config, #config, nil, detp, errp)
        if st ~= STATUS_OK then
            local msg = ffi.string(lib.aptnc_status_str(st))
            if errp[0] ~= nil then
                msg = ffi.string(lib.aptnc_error_message(errp[0]))
                lib.aptnc_error_free(errp[0])
            end
            fatal((opts.config and "config: " or "APT_NETCON_CONFIG: ") .. msg)
        end
        -- Freed when collected or when the Lua state closes (Fluent Bit exit
        -- or hot reload). The closure keeps the library's namespace alive
        -- as long as the detector.
        detector = ffi.gc(detp[0], function(d) lib.aptnc_free(d) end)
    end

    -- nil: every record goes whole (no footprint: a rule on the generic
    -- engine, a rule pack, max_lateness above 0, an older library; or
    -- opts.footprint == false, for tests).
    local fp
    if opts.footprint ~= false then
        local ok, res = pcall(load_footprint, detector)
        fp = ok and res or nil
    end
    -- The first member of every spelling of the fields read.
    local first_segments = {}
    if fp then
        for _, f in ipairs(fp.fields) do
            for _, keys in ipairs(f.spellings) do first_segments[keys[1]] = true end
        end
        if opts.key_check == false then fp.keys = nil end
    end

    local lua_errors, errors_reported, skipped = 0, 0, 0
    local unparsed_warned = false
    local next_stats = interval > 0 and os.time() + interval or nil

    local function lua_error(err)
        lua_errors = lua_errors + 1
        if errors_reported < MAX_REPORTED then
            errors_reported = errors_reported + 1
            pcall(log, "[" .. label .. "] record passed through: " .. tostring(err)
                .. (errors_reported == MAX_REPORTED and " (further errors are only counted)" or ""))
        end
    end

    -- The join keys of the first-stage records sent, as nested tables (one
    -- level per key field, `true` at the end), in two generations, so that
    -- at least the last KEY_GENERATION are remembered: a record that can
    -- only match a later stage is sent when its key is among them.
    local K = { now = {}, before = {}, any = false, count = 0, limit = KEY_GENERATION }
    function K.roll()
        K.before, K.now, K.count = K.now, {}, 0
    end
    local function remember(tuples)
        if not tuples then
            K.any = true -- a first-stage key the glue cannot read: send every later-stage record
            return
        end
        for _, tuple in ipairs(tuples) do
            local t, n = K.now, #tuple
            for i = 1, n - 1 do
                local nt = t[tuple[i]]
                if nt == nil then
                    nt = {}
                    t[tuple[i]] = nt
                end
                t = nt
            end
            if not t[tuple[n]] then
                t[tuple[n]] = true
                K.count = K.count + 1
            end
        end
        if K.count >= K.limit then K.roll() end
    end
    local function found(map, tuple)
        local t = map
        for i = 1, #tuple do
            t = t[tuple[i]]
            if t == nil then return false end
        end
        return t == true
    end
    -- After stage 1's tests passed: remember the record's key.
    local function after_first(record, null)
        remember(key_tuples(record, fp.key_sps[1], null))
    end
    -- The exact key check of a later stage s (values that are not one
    -- string per field).
    local function key_known(record, s, null)
        local tuples = key_tuples(record, fp.key_sps[s], null)
        if not tuples then return true end
        for _, tuple in ipairs(tuples) do
            if found(K.now, tuple) or found(K.before, tuple) then return true end
        end
        return false
    end

    -- The decision (nil: every record goes to the library) and its census.
    local plan, decide, census, census_every, checks, next_census, next_reorder
    local FC, AT = {}, { [0] = 0 }
    local function build()
        local f, names = compile_decide(plan)
        decide = f(fp.sets, fp.tested, FC, K, after_first, key_known, holds, array_holds, NL, MULTI, UNSURE,
            names, AT)
        f, names = compile_decide(plan, true)
        census = f(fp.sets, fp.tested, FC, K, after_first, key_known, holds, array_holds, NL, MULTI, UNSURE,
            names, AT)
    end
    -- The tables a field's nested spelling goes through ("process" and
    -- "process.parent" for process.parent.name): what looking it up costs.
    local through = {}
    if fp and #fp.stages > 0 then
        plan = { fields = fp.tested, sets = fp.sets, candidates = fp.candidates, stages = {} }
        for s, st in ipairs(fp.stages) do
            local tests = {}
            for i, t in ipairs(st.tests) do tests[i] = t end
            local key = fp.keys and fp.keys[s] or nil
            if key and s > 1 then
                -- A later stage's key check is one more test, put in order
                -- with the others.
                tests[#tests + 1] = { key = key, stage = s, id = #fp.sets + s, order = #fp.sets + s }
            end
            plan.stages[s] = { tests = tests, key = key }
        end
        for i = 1, #fp.sets + #fp.stages do FC[i] = 0 end
        for f = 1, #fp.tested do AT[f] = 0 end
        for f, name in ipairs(fp.tested_names) do
            local list, start = {}, 1
            while true do
                local dot = find(name, ".", start, true)
                if not dot then break end
                list[#list + 1] = sub(name, 1, dot - 1)
                start = dot + 1
            end
            through[f] = list
        end
        census_every, checks, next_census, next_reorder = CENSUS_FIRST, 0, CENSUS_FIRST, REORDER_FIRST
        -- A rule beyond what generated code can hold (LuaJIT's limits on
        -- locals): every record goes to the library.
        if not pcall(build) then plan, decide, census = nil, nil, nil end
    end
    -- The order. The prelude: the candidate that fails most often (if any
    -- ever failed). Then in each stage, one test after the other, the one
    -- that fails most often for what it costs: a field already looked up
    -- is almost free; else one per table not yet gone through. (The
    -- census counts the stage tests on records that pass the prelude.)
    local function reorder()
        local best
        for _, c in ipairs(plan.candidates) do
            if FC[c.id] > 0 and (not best or FC[c.id] > FC[best.id]) then best = c end
        end
        local changed = best ~= plan.prelude
        plan.prelude = best
        for _, st in ipairs(plan.stages) do
            local loaded, seen = {}, {}
            local function fields_of(t) return t.key or { t.field } end
            local function cost(t)
                local c = 0
                for _, f in ipairs(fields_of(t)) do
                    if not loaded[f] then
                        c = c + 1 + 1.5 * AT[f] / (AT[0] + 1)
                        for _, p in ipairs(through[f]) do
                            if not seen[p] then c = c + 1 end
                        end
                    end
                end
                return c + 0.25
            end
            local function take(t)
                for _, f in ipairs(fields_of(t)) do
                    loaded[f] = true
                    for _, p in ipairs(through[f]) do seen[p] = true end
                end
            end
            if best then take(best) end
            local rest, order = {}, {}
            for i, t in ipairs(st.tests) do rest[i] = t end
            while #rest > 0 do
                local bi, bs
                for i, t in ipairs(rest) do
                    local score = FC[t.id] / cost(t)
                    if not bi or score > bs or (score == bs and t.order < rest[bi].order) then bi, bs = i, score end
                end
                local t = table.remove(rest, bi)
                take(t)
                order[#order + 1] = t
            end
            for i, t in ipairs(order) do if t ~= st.tests[i] then changed = true end end
            st.tests = order
        end
        for i = 1, #FC do FC[i] = floor(FC[i] / 2) end
        for f = 0, #AT do AT[f] = floor(AT[f] / 2) end
        if changed then build() end
    end
    local function census_step(record, null)
        next_census = checks + census_every
        census(record, null) -- generated like decide: raises nothing
        if checks >= next_reorder then
            next_reorder = checks + REORDER_EVERY
            census_every = CENSUS_EVERY
            local ok, err = pcall(reorder)
            if not ok then lua_error(err) end
        end
    end

    -- nil (records go whole) when it cannot be generated.
    local reduced = fp and select(2, pcall(compile_reduced, fp.fields)) or nil
    if type(reduced) ~= "function" then reduced, decide = nil, nil end

    -- Once: a record of a single string member that is none of the fields
    -- the rule reads (`{"log": "..."}`) was not parsed as JSON upstream.
    local function check_unparsed(record)
        local k, v = next(record)
        if type(k) == "string" and type(v) == "string" and next(record, k) == nil and not first_segments[k] then
            unparsed_warned = true
            log("[" .. label .. "] records look unparsed (a single member `" .. k
                .. "` holding a string, none of the fields the rule reads): no alert can come from them. "
                .. "Parse the log line as JSON before this filter (a `Parser json` on the input, or a "
                .. "`parser` filter with `Key_Name " .. k .. "`)")
        end
    end

    -- The library's warnings (e.g. stage matches without @timestamp),
    -- logged; the log function (the caller's) may raise: protected.
    local function take_warning()
        if has_take_warning and lib.aptnc_take_warning(detector, warn_ptr, warn_len) == STATUS_OK
            and warn_len[0] > 0 then
            local ok, err = pcall(log, "[" .. label .. "] " .. ffi.string(warn_ptr[0], warn_len[0]))
            if not ok then lua_error(err) end
        end
    end

    -- The alert the library wrote into the reduced record, merged into the
    -- record table.
    local function annotate(record, text, null)
        local t = decode(text, null)
        local roots = {}
        for _, r in ipairs(fp.roots) do roots[r] = t[r] end
        merge_alert(record, roots, null)
        return record
    end

    -- A reduced record to the library: the annotated record table, or nil.
    local function send_reduced(record, json, null)
        local st = lib.aptnc_filter(detector, json, #json, out_ptr, out_len)
        if st == STATUS_ANNOTATED then
            -- The output belongs to the detector until its next call: copy it now.
            local ok, res = pcall(annotate, record, ffi.string(out_ptr[0], out_len[0]), null)
            if ok then return res end
            lua_error(res)
            return nil
        end
        take_warning()
        return nil
    end

    -- Standalone alert records (max_lateness above 0, or several results
    -- of the generic engine) that the library produced since the last look,
    -- as tables; nil when none came.
    local standalone_seen = 0
    local function standalone_alerts(null)
        stats_buf.size = ffi.sizeof(stats_buf)
        if lib.aptnc_get_stats(detector, stats_buf) ~= STATUS_OK then return nil end
        local n = tonumber(stats_buf.standalone_alerts)
        if n == standalone_seen then return nil end
        standalone_seen = n
        report_buf.size = ffi.sizeof(report_buf)
        if lib.aptnc_flush(detector, report_buf) ~= STATUS_OK or report_buf.alerts_len == 0 then
            return nil
        end
        local alerts = {}
        local text = ffi.string(report_buf.alerts, report_buf.alerts_len)
        for line in text:gmatch("[^\n]+") do alerts[#alerts + 1] = decode(line, null) end
        return alerts
    end

    -- The whole record to the library (no footprint, or a record the
    -- reduced encoder leaves to it): the annotated record as a table (nil
    -- to leave the record alone), and the standalone alerts that came out
    -- (nil when none).
    local function evaluate_whole(record)
        local null = flb_null
        local json = encode(record, null)
        local st = lib.aptnc_filter(detector, json, #json, out_ptr, out_len)
        local annotated
        if st == STATUS_ANNOTATED then
            annotated = decode(ffi.string(out_ptr[0], out_len[0]), null)
        else
            take_warning()
        end
        if fp then return annotated, nil end -- no standalone alerts (see load_footprint)
        return annotated, standalone_alerts(null)
    end

    local stats -- below

    local function log_stats()
        next_stats = os.time() + interval
        local t = stats()
        log(format("[%s] records=%d skipped=%d annotated=%d standalone_alerts=%d pending=%d errors=%d lua_errors=%d",
            label, t.records, t.skipped, t.annotated, t.standalone_alerts, t.pending,
            t.invalid_json + t.not_an_object + t.too_deep + t.too_large + t.bad_timestamp + t.annotate_failed,
            t.lua_errors))
    end

    -- What to return for `record`: nil (leave it alone), the annotated
    -- record, or (when standalone alerts came out) an array of the record,
    -- annotated or as it came, followed by the alerts. Never raises.
    local function filter(record)
        if next_stats ~= nil and os.time() >= next_stats then
            local ok, err = pcall(log_stats)
            if not ok then lua_error(err) end
        end
        if type(record) ~= "table" then return nil end
        if reduced ~= nil then
            local null = flb_null -- set by Fluent Bit when enable_flb_null is on
            if decide ~= nil then
                checks = checks + 1
                if checks >= next_census then census_step(record, null) end
                if not decide(record, null) then
                    -- Can match no stage (or only a later one, with a key
                    -- no first-stage record had): left alone, counted here.
                    skipped = skipped + 1
                    -- One record in 1024 is enough to notice a stream of them.
                    if not unparsed_warned and skipped % 1024 == 1 then
                        local ok, err = pcall(check_unparsed, record)
                        if not ok then lua_error(err) end
                    end
                    return nil
                end
            end
            local json = reduced(record, null)
            if json ~= nil then return send_reduced(record, json, null) end
        end
        local ok, annotated, alerts = pcall(evaluate_whole, record)
        if not ok then
            lua_error(annotated)
            return nil
        end
        if not alerts then return annotated end
        local out = { annotated or record }
        for i = 1, #alerts do out[i + 1] = alerts[i] end
        return out
    end

    -- The library's counters plus `lua_errors` (records passed through
    -- because of a Lua-side error) and `skipped` (records that could match
    -- no stage, decided here without the library; counted in `records` too).
    stats = function()
        local s = ffi.new("struct aptnc_stats")
        s.size = ffi.sizeof(s)
        local t = { lua_errors = lua_errors, skipped = skipped }
        if lib.aptnc_get_stats(detector, s) == STATUS_OK then
            for _, name in ipairs(STAT_FIELDS) do t[name] = tonumber(s[name]) end
        end
        t.records = (t.records or 0) + skipped
        return t
    end

    local inst = {}
    function inst.apt_netcon(tag, ts, record)
        local out = filter(record)
        if out ~= nil then return 2, ts, out end
        return 0, ts, record
    end

    function inst.apt_netcon_v2(tag, ts, group_attrs, metadata, record)
        if record == nil and metadata == nil then
            -- Called the 3-argument way: (tag, ts, record).
            local out = filter(group_attrs)
            if out ~= nil then return 2, ts, out end
            return 0, ts, group_attrs
        end
        local out = filter(record)
        if out ~= nil then return 2, ts, metadata, out end
        return 0, ts, metadata, record
    end

    inst.stats = stats
    -- How records cross: "reduced" (the fields read), or "whole".
    inst.mode = reduced and "reduced" or "whole"
    -- For tests and diagnostics: the decision as it is now (true: the
    -- record goes to the library), its plan (tests in their order) and the
    -- footprint; nil when records go whole.
    inst.internals = {
        decide = decide and function(r, null) return decide(r, null) end,
        reduced = reduced,
        plan = plan,
        footprint = fp,
    }
    return inst
end

---------------------------------------------------------------------------
-- The default instance (configured from the environment) and the
-- callbacks Fluent Bit calls.

local default = new_instance()

function apt_netcon(tag, ts, record)
    return default.apt_netcon(tag, ts, record)
end

function apt_netcon_v2(tag, ts, group_attrs, metadata, record)
    return default.apt_netcon_v2(tag, ts, group_attrs, metadata, record)
end

-- For scripts of your own (new) and for tests and diagnostics.
apt_netcon_glue = {
    new = new_instance,
    encode = encode,
    decode = decode,
    library = lib_path,
    version = ffi.string(lib.aptnc_version()),
    mode = default.mode,
    stats = default.stats,
}
