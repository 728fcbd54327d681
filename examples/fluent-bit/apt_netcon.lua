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
rule (aptnc_footprint). Most records fail that check on the Lua table at
once (a field or two looked up) and are returned with code 0 without
crossing the FFI: they match nothing, so the detector would have changed no
state for them (they are counted as `skipped`, not in the library's
`records`). So are the records that can match only a later stage of the
sequence when no first-stage record sent before held their join key
values (with max_lateness 0 a sequence's events pair only in arrival
order; the glue remembers at least the last 262,144 first-stage keys it
sent, at most twice that: more than the library's default of 100,000
pending sequences). A record that passes is sent reduced to the fields the detector
reads (dotted members; a field present at several places, nested and
dotted, is sent once per place), encoded flat; the alert the library writes
into that reduced record is then merged into the record table as the
native path merges it into the record's bytes (alert roots appended or
deep-merged, dotted members the alert covers removed). Records are sent
whole instead when the library asks for it (a rule on the generic EQL
engine, or max_lateness above 0, whose standalone alerts carry whole
records), and when a field path crosses an array of objects (the library
flattens those; the glue does not try). The JSON encoding:
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
local type, pairs, ipairs, next, tonumber, tostring, rawequal, pcall, error, setmetatable =
    type, pairs, ipairs, next, tonumber, tostring, rawequal, pcall, error, setmetatable

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
-- such records to it).
local UNSURE = setmetatable({}, { __tostring = function() return "unsure" end })
local function walk(t, keys, null)
    local v = t
    for i = 1, #keys do
        if type(v) ~= "table" or rawequal(v, null) then return nil end
        if v[1] ~= nil then return UNSURE end
        v = v[keys[i]]
        if v == nil then return nil end
    end
    return v
end

-- True when the record may hold one of `test.set`'s strings in the test's
-- field (a string equal to one, or an array holding one); true also when
-- unsure (an array crossed, a nested array).
local function test_holds(record, test, null)
    local sps, set = test.spellings, test.set
    for j = 1, #sps do
        local v = walk(record, sps[j], null)
        if v ~= nil then
            if v == UNSURE then return true end
            local tv = type(v)
            if tv == "string" then
                if set[v] then return true end
            elseif tv == "table" and not rawequal(v, null) then
                for _, e in pairs(v) do -- pairs: a null element leaves a hole
                    local te = type(e)
                    if te == "string" then
                        if set[e] then return true end
                    elseif te == "table" and not rawequal(e, null) then
                        return true
                    end
                end
            end
        end
    end
    return false
end

-- A table holding scalars at 1..n and nothing else, as a JSON array; any
-- other table with the general encoder.
local function encode_flat_table(v, null)
    if next(v) == nil then return "{}" end
    local n, count = #v, 0
    for _ in pairs(v) do count = count + 1 end
    if count ~= n then return encode(v, null) end
    local out = {}
    for i = 1, n do
        local e = v[i]
        local te = type(e)
        if te == "string" then
            out[i] = encode_string(e)
        elseif te == "number" then
            out[i] = encode_number(e)
        elseif te == "boolean" then
            out[i] = e and "true" or "false"
        elseif null ~= nil and rawequal(e, null) then
            out[i] = "null"
        else
            return encode(v, null)
        end
    end
    return "[" .. concat(out, ",") .. "]"
end

-- The record reduced to the fields the detector reads, as a flat JSON
-- object of dotted members; nil when a path crosses an array (send the
-- whole record then).
local rbuf = {}
local function encode_reduced(fields, record, null)
    local n, first = 1, true
    rbuf[1] = "{"
    for f = 1, #fields do
        local fd = fields[f]
        local sps = fd.spellings
        for j = 1, #sps do
            local v = walk(record, sps[j], null)
            if v ~= nil then
                if v == UNSURE then return nil end
                local tv, piece = type(v), nil
                if tv == "string" then
                    piece = encode_string(v)
                elseif tv == "number" then
                    piece = encode_number(v)
                elseif tv == "boolean" then
                    piece = v and "true" or "false"
                elseif null ~= nil and rawequal(v, null) then
                    piece = "null"
                elseif tv == "table" then
                    piece = encode_flat_table(v, null)
                else
                    error("a value of type " .. tv .. " cannot be written as JSON")
                end
                n = n + 1
                rbuf[n] = first and fd.key or fd.comma_key
                n = n + 1
                rbuf[n] = piece
                first = false
            end
        end
    end
    n = n + 1
    rbuf[n] = "}"
    return concat(rbuf, "", 1, n)
end

-- The alert's roots merged into the record table, as the library merges
-- them into a record's bytes (src/annotate.rs): dotted members naming a
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

-- The keyword values of a join-key field (appended to `out`), false when
-- unsure (a value that is not a string, a boolean or an integral number).
local function key_values(record, sps, null, out)
    for j = 1, #sps do
        local v = walk(record, sps[j], null)
        if v ~= nil then
            if v == UNSURE then return false end
            local tv = type(v)
            if tv == "table" and not rawequal(v, null) then
                if v[1] == nil and next(v) ~= nil then return false end -- an object
                for i = 1, #v do
                    local e = v[i]
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
                end
            elseif tv == "string" then
                out[#out + 1] = v
            elseif tv == "number" and v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
                out[#out + 1] = format("%.0f", v)
            elseif tv == "boolean" then
                out[#out + 1] = tostring(v)
            elseif not rawequal(v, null) then
                return false
            end
        end
    end
    return true
end

-- Every value combination of a stage's join key, joined with "\0"; nil
-- when unsure, an empty list when a key field has no value.
local MAX_COMBINATIONS = 64
local function key_tuples(record, stage_keys, null)
    local tuples = { "" }
    for i = 1, #stage_keys do
        local vals = {}
        if not key_values(record, stage_keys[i], null, vals) then return nil end
        if #vals == 0 then return {} end
        local nxt = {}
        for _, t in ipairs(tuples) do
            for _, v in ipairs(vals) do nxt[#nxt + 1] = i == 1 and v or (t .. "\0" .. v) end
        end
        if #nxt > MAX_COMBINATIONS then return nil end
        tuples = nxt
    end
    return tuples
end

-- Whether a field's value may hold one of the literals of `set` (or is
-- unsure: a nested array).
-- Arrays are walked 1..#v (pairs() stops LuaJIT's compiler): a null
-- element (without enable_flb_null) leaves a hole, and when the LAST
-- element is null `#v` may stop before elements in front of it.
local function element_may_hold(e, set, null)
    if e == nil then return false end
    local te = type(e)
    if te == "string" then return set[e] == true end
    return te == "table" and not rawequal(e, null) -- nested: the library flattens it
end

local function value_may_hold(v, set, null)
    if type(v) == "string" then return set[v] == true end
    if type(v) ~= "table" or rawequal(v, null) then return false end
    local n = #v
    if n <= 4 then
        -- Unrolled: a loop here would keep LuaJIT from compiling the callback.
        return element_may_hold(v[1], set, null) or element_may_hold(v[2], set, null)
            or element_may_hold(v[3], set, null) or element_may_hold(v[4], set, null)
    end
    for i = 1, n do
        local e = v[i]
        local te = type(e)
        if te == "string" then
            if set[e] then return true end
        elseif te == "table" and not rawequal(e, null) then
            return true -- nested: the library flattens it
        end
    end
    return false
end



-- A stage's join key as one string (values joined with "\0", as
-- key_tuples joins them) when each key field holds exactly one string: the
-- common case, in straight-line code. nil when a key field has no value;
-- false for anything else (then key_tuples decides).
local function compile_key(stage_keys)
    local src = { "return function(r, null)\nif r[1] ~= nil then return false end\nlocal v\n" }
    for i, sps in ipairs(stage_keys) do
        src[#src + 1] = format("local k%d\n", i)
        for _, keys in ipairs(sps) do
            src[#src + 1] = "v = r[" .. format("%q", keys[1]) .. "]\n"
            for j = 2, #keys do
                src[#src + 1] = "if v ~= nil then if type(v) ~= 'table' or v == null then v = nil "
                    .. "elseif v[1] ~= nil then return false else v = v[" .. format("%q", keys[j]) .. "] end end\n"
            end
            src[#src + 1] = format("if v ~= nil then if type(v) == 'string' and k%d == nil then k%d = v else return false end end\n", i, i)
        end
        src[#src + 1] = format("if k%d == nil then return nil end\n", i)
    end
    local parts = {}
    for i = 1, #stage_keys do parts[i] = "k" .. i end
    src[#src + 1] = "return " .. (#parts > 0 and concat(parts, ' .. "\\0" .. ') or '""') .. "\nend\n"
    return assert(loadstring(concat(src), "=apt_netcon key"))()
end

-- Every stage's tests, in their current order, as ONE straight-line
-- function (no loop, no call per test: LuaJIT runs it fast whether it
-- compiles it or interprets it): true when the record may take part in a
-- sequence (some stage's tests all hold and after(record, null, stage)
-- says so). A failing test is counted in F[test.id].
local function compile_match(stages)
    local src = { "local F, after, held, SETS = ...\n" }
    for _, tests in ipairs(stages) do
        for _, t in ipairs(tests) do src[#src + 1] = format("local S%d = SETS[%d]\n", t.id, t.id) end
    end
    src[#src + 1] = "return function(r, null)\nif r[1] ~= nil then return true end\nlocal v, h\n"
    for si, tests in ipairs(stages) do
        for _, t in ipairs(tests) do
            local S = "S" .. t.id
            src[#src + 1] = format("h = false -- %s\n", t.field)
            for _, keys in ipairs(t.spellings) do
                src[#src + 1] = "if not h then v = r[" .. format("%q", keys[1]) .. "]\n"
                for j = 2, #keys do
                    src[#src + 1] = "if v ~= nil then if type(v) ~= 'table' or v == null then v = nil "
                        .. "elseif v[1] ~= nil then h = true v = nil else v = v[" .. format("%q", keys[j]) .. "] end end\n"
                end
                -- A string, or an array of one or two strings (event.category,
                -- event.type) inline; anything else through held().
                src[#src + 1] = format("if v ~= nil then if type(v) == 'string' then h = %s[v] == true "
                    .. "elseif type(v) == 'table' and v ~= null then "
                    .. "local e1, e2 = v[1], v[2] "
                    .. "if (e1 == nil or type(e1) == 'string') and (e2 == nil or type(e2) == 'string') "
                    .. "and v[3] == nil and v[4] == nil and #v <= 2 then h = (e1 ~= nil and %s[e1] == true) or (e2 ~= nil and %s[e2] == true) "
                    .. "else h = held(v, %s, null) end end end end\n", S, S, S, S)
            end
            src[#src + 1] = format("if not h then F[%d] = F[%d] + 1 goto stage%d end\n", t.id, t.id, si + 1)
        end
        src[#src + 1] = format("if after(r, null, %d) then return true end\n::stage%d::\n", si, si + 1)
    end
    src[#src + 1] = "return false\nend\n"
    return assert(loadstring(concat(src), "=apt_netcon match"))
end

---------------------------------------------------------------------------
-- Instances: one detector each, with the callbacks over it.

local MAX_REPORTED = 5
local REORDER_EVERY = 16384

local function load_footprint(det)
    if not has_footprint then return nil end
    if lib.aptnc_footprint(det, out_ptr, out_len) ~= STATUS_OK then return nil end
    local fp = decode(ffi.string(out_ptr[0], out_len[0]))
    if fp.whole_record then return nil end
    local fields, names = {}, {}
    for i, name in ipairs(fp.fields) do
        local sps = spellings(name)
        if not sps then return nil end
        local key = encode_string(name) .. ":"
        fields[i] = { name = name, spellings = sps, key = key, comma_key = "," .. key }
        names[name] = true
    end
    local stages = {}
    for s, tests in ipairs(fp.stages or {}) do
        stages[s] = {}
        for t, test in ipairs(tests) do
            local set = {}
            for _, lit in ipairs(test[2]) do set[lit] = true end
            local sps = spellings(test[1])
            if not sps then return nil end
            stages[s][t] = { field = test[1], spellings = sps, set = set, fails = 0 }
        end
    end
    local roots = {}
    for _, r in ipairs(fp.alert_roots or {}) do roots[#roots + 1] = r end
    local keys = {}
    for s, paths in ipairs(fp.keys or {}) do
        keys[s] = {}
        for i, path in ipairs(paths) do
            local sps = spellings(path)
            if not sps then return nil end
            keys[s][i] = sps
        end
    end
    if #keys ~= #stages then keys = nil end
    return { fields = fields, names = names, stages = stages, keys = keys, roots = roots }
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

    -- nil: every record goes whole, as before aptnc_footprint.
    local fp = load_footprint(detector)
    local stages = fp and #fp.stages > 0 and fp.stages or nil
    local first_segments = {}
    if fp then
        for _, f in ipairs(fp.fields) do first_segments[f.spellings[1][1]] = true end
        if opts.key_check == false then fp.keys = nil end
    end

    local lua_errors, errors_reported, skipped, checks = 0, 0, 0, 0
    local unparsed_warned = false
    local next_stats = interval > 0 and os.time() + interval or nil

    -- The join keys of the first-stage records sent (two generations, so
    -- that at least the last KEY_GENERATION are remembered): a record that
    -- can only match a later stage is sent when its key is among them.
    local keys = fp and fp.keys
    local KEY_GENERATION = 262144
    local keys_now, keys_before, keys_count, any_key = {}, {}, 0, false
    local function remember(tuples)
        if not tuples then
            any_key = true -- a first-stage key the glue cannot read: send every later-stage record
            return
        end
        if type(tuples) == "string" then tuples = { tuples } end
        for _, t in ipairs(tuples) do
            if not keys_now[t] then
                keys_now[t] = true
                keys_count = keys_count + 1
            end
        end
        if keys_count >= KEY_GENERATION then
            keys_before, keys_now, keys_count = keys_now, {}, 0
        end
    end
    local function known(tuples)
        if not tuples then return true end
        if type(tuples) == "string" then return keys_now[tuples] or keys_before[tuples] or false end
        for _, t in ipairs(tuples) do
            if keys_now[t] or keys_before[t] then return true end
        end
        return false
    end
    local key_fns = {}
    if keys then
        for s = 1, #keys do key_fns[s] = compile_key(keys[s]) end
    end
    -- The key of the record for stage s: a string, a list, {} (none) or
    -- nil (unsure).
    local function key_of(record, s, null)
        local k = key_fns[s](record, null)
        if k == nil then return {} end
        if k == false then return key_tuples(record, keys[s], null) end
        return k
    end
    -- After stage s's tests passed: must the record go to the library?
    local function after(record, null, s)
        if not keys then return true end
        if s == 1 then
            remember(key_of(record, 1, null))
            return true
        end
        return any_key or known(key_of(record, s, null))
    end

    -- The stages' tests compiled into one function (compile_match), tried
    -- most often failing first: most records stop at the first test of
    -- each stage.
    local fails, sets, match_fn = {}, {}, nil
    local function recompile()
        match_fn = compile_match(stages)(fails, after, value_may_hold, sets)
    end
    if stages then
        local id = 0
        for _, tests in ipairs(stages) do
            for _, t in ipairs(tests) do
                id = id + 1
                t.id = id
                fails[id], sets[id] = 0, t.set
            end
        end
        recompile()
    end
    local function by_fails(a, b)
        if fails[a.id] ~= fails[b.id] then return fails[a.id] > fails[b.id] end
        return a.id < b.id
    end
    local function reorder()
        local changed = false
        for s = 1, #stages do
            local tests = stages[s]
            local before = {}
            for i, t in ipairs(tests) do before[i] = t.id end
            sort(tests, by_fails)
            for i, t in ipairs(tests) do if t.id ~= before[i] then changed = true end end
        end
        for k, v in pairs(fails) do fails[k] = floor(v / 2) end
        if changed then recompile() end
    end

    -- True when the record may take part in a sequence, so it must go to
    -- the library (see the header comment).
    local function may_match(record, null)
        checks = checks + 1
        if checks >= REORDER_EVERY then
            checks = 0
            reorder()
        end
        return match_fn(record, null)
    end

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

    -- The annotated record as a table (nil to leave the record alone), and
    -- the standalone alerts that came out (nil when none).
    local function evaluate(record)
        local null = flb_null -- set by Fluent Bit when enable_flb_null is on
        if stages and not may_match(record, null) then
            skipped = skipped + 1
            -- One record in 64 is enough to notice a stream of them.
            if not unparsed_warned and skipped % 64 == 1 then check_unparsed(record) end
            return nil
        end
        local json = fp and encode_reduced(fp.fields, record, null)
        local reduced = json ~= nil
        if not reduced then json = encode(record, null) end
        local st = lib.aptnc_filter(detector, json, #json, out_ptr, out_len)
        local annotated
        -- The library's warnings (e.g. stage matches without @timestamp).
        if has_take_warning and st ~= STATUS_ANNOTATED
            and lib.aptnc_take_warning(detector, warn_ptr, warn_len) == STATUS_OK and warn_len[0] > 0 then
            log("[" .. label .. "] " .. ffi.string(warn_ptr[0], warn_len[0]))
        end
        if st == STATUS_ANNOTATED then
            -- The output belongs to the detector until its next call: copy it now.
            local t = decode(ffi.string(out_ptr[0], out_len[0]), null)
            if reduced then
                local roots = {}
                for _, r in ipairs(fp.roots) do roots[r] = t[r] end
                merge_alert(record, roots, null)
                annotated = record
            else
                annotated = t
            end
        end -- else UNCHANGED, or counted by the library
        if fp then return annotated, nil end -- no standalone alerts (see load_footprint)
        return annotated, standalone_alerts(null)
    end

    -- The records to return: the annotated one, or (when alerts came out) an
    -- array of the record, annotated or as it came, followed by the alerts.
    local function results(record, annotated, alerts)
        if not alerts then return annotated end
        local out = { annotated or record }
        for i = 1, #alerts do out[i + 1] = alerts[i] end
        return out
    end

    local stats -- below

    local function safe_evaluate(record)
        if next_stats and os.time() >= next_stats then
            next_stats = os.time() + interval
            local t = stats()
            log(format("[%s] records=%d skipped=%d annotated=%d standalone_alerts=%d pending=%d errors=%d lua_errors=%d",
                label, t.records, t.skipped, t.annotated, t.standalone_alerts, t.pending,
                t.invalid_json + t.not_an_object + t.too_deep + t.too_large + t.bad_timestamp + t.annotate_failed,
                t.lua_errors))
        end
        if type(record) ~= "table" then return nil end
        local ok, result, alerts = pcall(evaluate, record)
        if ok then return results(record, result, alerts) end
        lua_errors = lua_errors + 1
        if errors_reported < MAX_REPORTED then
            errors_reported = errors_reported + 1
            log("[" .. label .. "] record passed through: " .. tostring(result)
                .. (errors_reported == MAX_REPORTED and " (further errors are only counted)" or ""))
        end
        return nil
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
        local annotated = safe_evaluate(record)
        if annotated then return 2, ts, annotated end
        return 0, ts, record
    end

    function inst.apt_netcon_v2(tag, ts, group_attrs, metadata, record)
        if record == nil and metadata == nil then
            -- Called the 3-argument way: (tag, ts, record).
            return inst.apt_netcon(tag, ts, group_attrs)
        end
        local annotated = safe_evaluate(record)
        if annotated then return 2, ts, metadata, annotated end
        return 0, ts, metadata, record
    end

    inst.stats = stats
    -- How records cross: "reduced" (the fields read), or "whole".
    inst.mode = fp and "reduced" or "whole"
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
