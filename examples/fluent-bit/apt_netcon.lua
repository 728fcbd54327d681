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

Records cross the FFI as JSON. The record table is encoded here:
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
The annotated JSON is decoded back into nested tables: objects and arrays
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
local type, pairs, ipairs, next, tonumber, tostring, rawequal, pcall, error =
    type, pairs, ipairs, next, tonumber, tostring, rawequal, pcall, error

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

-- Load the library and build the detector, once per Lua state (Fluent Bit
-- gives every filter instance its own state).
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

local config = os.getenv("APT_NETCON_CONFIG") or ""
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
        fatal("APT_NETCON_CONFIG: " .. msg)
    end
    -- Freed when the Lua state closes (Fluent Bit exit or hot reload).
    detector = ffi.gc(detp[0], lib.aptnc_free)
end

-- Reused out-parameters (one caller at a time: a Lua state is single-threaded).
local out_ptr = ffi.new("const uint8_t *[1]")
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
-- The callbacks.

local lua_errors, errors_reported = 0, 0
local MAX_REPORTED = 5

-- Standalone alert records (max_lateness above 0: a sequence completed by an
-- event held back earlier) that the library produced since the last look,
-- as tables; nil when none came. One counter read per record; the alerts
-- are collected only when the counter moved.
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

-- The annotated record as a table (nil to leave the record alone), and the
-- standalone alerts that came out (nil when none).
local function evaluate(record)
    local null = flb_null -- set by Fluent Bit when enable_flb_null is on
    local json = encode(record, null)
    local st = lib.aptnc_filter(detector, json, #json, out_ptr, out_len)
    local annotated
    if st == STATUS_ANNOTATED then
        -- The output belongs to the detector until its next call: copy it now.
        annotated = decode(ffi.string(out_ptr[0], out_len[0]), null)
    end -- else UNCHANGED, or counted by the library
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

local function safe_evaluate(record)
    if type(record) ~= "table" then return nil end
    local ok, result, alerts = pcall(evaluate, record)
    if ok then return results(record, result, alerts) end
    lua_errors = lua_errors + 1
    if errors_reported < MAX_REPORTED then
        errors_reported = errors_reported + 1
        io.stderr:write("[apt_netcon.lua] record passed through: ", tostring(result),
            errors_reported == MAX_REPORTED and " (further errors are only counted)\n" or "\n")
    end
    return nil
end

function apt_netcon(tag, ts, record)
    local annotated = safe_evaluate(record)
    if annotated then return 2, ts, annotated end
    return 0, ts, record
end

function apt_netcon_v2(tag, ts, group_attrs, metadata, record)
    if record == nil and metadata == nil then
        -- Called the 3-argument way: (tag, ts, record).
        return apt_netcon(tag, ts, group_attrs)
    end
    local annotated = safe_evaluate(record)
    if annotated then return 2, ts, metadata, annotated end
    return 0, ts, metadata, record
end

-- For tests and diagnostics (Fluent Bit never calls these).
apt_netcon_glue = {
    encode = encode,
    decode = decode,
    library = lib_path,
    version = ffi.string(lib.aptnc_version()),
    -- The library's counters plus `lua_errors` (records passed through
    -- because of a Lua-side error).
    stats = function()
        local s = ffi.new("struct aptnc_stats")
        s.size = ffi.sizeof(s)
        local t = { lua_errors = lua_errors }
        if lib.aptnc_get_stats(detector, s) == STATUS_OK then
            for _, name in ipairs(STAT_FIELDS) do t[name] = tonumber(s[name]) end
        end
        return t
    end,
}
