/*
 * C tests of the apt_netcon ABI, one test_* function per behaviour.
 *
 *   apt_netcon_tests            run every test
 *   apt_netcon_tests test_x     run one (ctest registers each one this way)
 *
 * Paths come from the build (CMakeLists.txt): APTNC_FIXTURE (our NDJSON
 * fixture), APTNC_SAMPLE (examples/data/sample.ndjson), APTNC_CLI (the
 * apt-netcon binary the output must equal).
 */
#define _GNU_SOURCE
#include <apt_netcon.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Test hook of debug builds of the library (not in the header): panics
 * inside the library's panic guard. Weak, so these tests also link against a
 * release build, where the panic test is skipped. */
extern aptnc_status aptnc_test_force_panic(aptnc_detector *detector) __attribute__((weak));

static int failures;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, __func__,   \
                    #cond);                                                                  \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

#define CHECK_STATUS(got, want)                                                              \
    do {                                                                                     \
        aptnc_status got_ = (got), want_ = (want);                                           \
        if (got_ != want_) {                                                                 \
            fprintf(stderr, "%s:%d: %s: %s = %u (%s), expected %u (%s)\n", __FILE__, __LINE__, \
                    __func__, #got, (unsigned)got_, aptnc_status_str(got_), (unsigned)want_,  \
                    aptnc_status_str(want_));                                                \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

#define CHECK_U64(got, want)                                                                 \
    do {                                                                                     \
        unsigned long long got_ = (got), want_ = (want);                                     \
        if (got_ != want_) {                                                                 \
            fprintf(stderr, "%s:%d: %s: %s = %llu, expected %llu\n", __FILE__, __LINE__,      \
                    __func__, #got, got_, want_);                                            \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Helpers. */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf;

static void put(buf *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n) cap *= 2;
        b->p = realloc(b->p, cap);
        if (!b->p) abort();
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void buf_free(buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

static const uint8_t *u8(const char *s) { return (const uint8_t *)s; }

static int contains(const void *hay, size_t n, const char *needle) {
    return memmem(hay, n, needle, strlen(needle)) != NULL;
}

static buf read_file(const char *path) {
    buf b = {0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        failures++;
        return b;
    }
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) put(&b, tmp, n);
    fclose(f);
    return b;
}

/* The CLI's output for `input`: `apt-netcon --quiet < input`. */
static buf run_cli(const char *input) {
    buf b = {0};
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' --quiet < '%s'", APTNC_CLI, input);
    FILE *p = popen(cmd, "r");
    if (!p) {
        perror("popen");
        failures++;
        return b;
    }
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, p)) > 0) put(&b, tmp, n);
    int rc = pclose(p);
    if (rc != 0) {
        fprintf(stderr, "%s exited with %d\n", cmd, rc);
        failures++;
    }
    return b;
}

static int is_blank(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\f' && p[i] != '\r') return 0;
    return 1;
}

/* Filter NDJSON the way the CLI does (each line keeps its terminator). */
static buf filter_ndjson(aptnc_detector *det, const uint8_t *in, size_t len) {
    buf out = {0};
    size_t pos = 0;
    while (pos < len) {
        const uint8_t *nl = memchr(in + pos, '\n', len - pos);
        size_t line_len = nl ? (size_t)(nl - (in + pos)) + 1 : len - pos;
        const uint8_t *line = in + pos;
        size_t end = line_len;
        if (line[end - 1] == '\n') {
            end--;
            if (end > 0 && line[end - 1] == '\r') end--;
        }
        const uint8_t *o = NULL;
        size_t o_len = 0;
        if (!is_blank(line, end) && aptnc_filter(det, line, end, &o, &o_len) == APTNC_STATUS_ANNOTATED) {
            put(&out, o, o_len);
            put(&out, line + end, line_len - end);
        } else {
            put(&out, line, line_len);
        }
        pos += line_len;
    }
    return out;
}

static aptnc_detector *new_detector(const char *config) {
    aptnc_detector *det = NULL;
    aptnc_error *err = NULL;
    aptnc_status s = aptnc_init(u8(config), config ? strlen(config) : 0, NULL, &det, &err);
    CHECK_STATUS(s, APTNC_STATUS_OK);
    if (s != APTNC_STATUS_OK) {
        fprintf(stderr, "aptnc_init: %s\n", aptnc_error_message(err));
        aptnc_error_free(err);
        exit(1);
    }
    return det;
}

static aptnc_stats get_stats(aptnc_detector *det) {
    aptnc_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    CHECK_STATUS(aptnc_get_stats(det, &st), APTNC_STATUS_OK);
    return st;
}

/* A stage-1 event (apt starting a shell with -c) and the stage-2 event that
 * completes it (the shell's child connecting to a public address). */
#define STAGE1                                                                                   \
    "{\"@timestamp\":\"2024-05-01T10:00:00.000Z\",\"event\":{\"category\":[\"process\"],"      \
    "\"type\":[\"start\"],\"action\":\"exec\"},\"host\":{\"id\":\"h1\",\"name\":\"web1\","      \
    "\"os\":{\"type\":\"linux\"}},\"process\":{\"name\":\"sh\",\"pid\":10,\"entity_id\":\"P1\","  \
    "\"args\":[\"sh\",\"-c\",\"curl x\"],\"parent\":{\"name\":\"apt\",\"entity_id\":\"A1\"}}}"
#define STAGE2_BODY                                                                              \
    "\"event\":{\"category\":[\"network\"],\"type\":[\"start\"],"                              \
    "\"action\":\"connection_attempted\"},\"host\":{\"id\":\"h1\",\"name\":\"web1\","           \
    "\"os\":{\"type\":\"linux\"}},\"process\":{\"name\":\"curl\",\"entity_id\":\"C1\","          \
    "\"parent\":{\"entity_id\":\"P1\"}},\"destination\":{\"ip\":\"93.184.216.34\",\"port\":80}"
#define STAGE2 "{\"@timestamp\":\"2024-05-01T10:00:01.000Z\"," STAGE2_BODY "}"
#define NOISE "{\"@timestamp\":\"2024-05-01T10:00:00.500Z\", \"message\": \"hello\"}"
#define RULE_NAME "Suspicious APT Package Manager Network Connection"

/* ------------------------------------------------------------------------ */
/* Tests. */

static void test_version(void) {
    CHECK(strcmp(aptnc_version(), APTNC_VERSION) == 0);
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", APTNC_VERSION_MAJOR, APTNC_VERSION_MINOR,
             APTNC_VERSION_PATCH);
    CHECK(strncmp(APTNC_VERSION, want, strlen(want)) == 0);
    CHECK(aptnc_abi_version() == APTNC_ABI_VERSION);
    CHECK(APTNC_ABI_VERSION == 1);
}

static void test_status_values_and_text(void) {
    /* The numbers are part of the ABI. */
    CHECK(APTNC_STATUS_OK == 0);
    CHECK(APTNC_STATUS_UNCHANGED == 1);
    CHECK(APTNC_STATUS_ANNOTATED == 2);
    CHECK(APTNC_STATUS_NULL_PARAMETER == 3);
    CHECK(APTNC_STATUS_INVALID_JSON == 4);
    CHECK(APTNC_STATUS_INVALID_MSGPACK == 5);
    CHECK(APTNC_STATUS_NOT_AN_OBJECT == 6);
    CHECK(APTNC_STATUS_TOO_DEEP == 7);
    CHECK(APTNC_STATUS_TOO_LARGE == 8);
    CHECK(APTNC_STATUS_BAD_TIMESTAMP == 9);
    CHECK(APTNC_STATUS_ANNOTATE_FAILED == 10);
    CHECK(APTNC_STATUS_CONFIG_ERROR == 11);
    CHECK(APTNC_STATUS_RULE_ERROR == 12);
    CHECK(APTNC_STATUS_PANIC == 13);
    CHECK(APTNC_STATUS_POISONED == 14);
    CHECK(APTNC_STATUS_INVALID_ARGUMENT == 15);
    CHECK(sizeof(aptnc_status) == sizeof(uint32_t));
    for (uint32_t s = 0; s <= 15; s++) {
        const char *t = aptnc_status_str(s);
        CHECK(t != NULL && *t != '\0' && strcmp(t, "unknown status") != 0);
    }
    CHECK(strcmp(aptnc_status_str(APTNC_STATUS_OK), "ok") == 0);
    CHECK(strcmp(aptnc_status_str(16), "unknown status") == 0);
    CHECK(strcmp(aptnc_status_str(UINT32_MAX), "unknown status") == 0);
}

static void test_lifecycle(void) {
    /* Defaults: NULL config. */
    aptnc_detector *det = NULL;
    aptnc_error *err = NULL;
    CHECK_STATUS(aptnc_init(NULL, 0, NULL, &det, &err), APTNC_STATUS_OK);
    CHECK(det != NULL);
    CHECK(err == NULL); /* written only on failure */
    aptnc_free(det);

    /* Empty and blank configs are the defaults too. */
    det = NULL;
    CHECK_STATUS(aptnc_init(u8(""), 0, NULL, &det, NULL), APTNC_STATUS_OK);
    aptnc_free(det);
    det = NULL;
    CHECK_STATUS(aptnc_init(u8(" \n\t "), 4, NULL, &det, NULL), APTNC_STATUS_OK);
    aptnc_free(det);

    /* Rules: built-in by name and aliases, shared by several detectors, freed
     * before the detectors built from it. */
    const char *names[] = {"apt_netcon_v5", "apt_netcon_v11", "default", "v5", "latest", "v11"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        aptnc_rule *rule = NULL;
        CHECK_STATUS(aptnc_rule_builtin(names[i], &rule, &err), APTNC_STATUS_OK);
        CHECK(rule != NULL);
        aptnc_detector *a = NULL, *b = NULL;
        CHECK_STATUS(aptnc_init(NULL, 0, rule, &a, NULL), APTNC_STATUS_OK);
        CHECK_STATUS(aptnc_init(u8("{}"), 2, rule, &b, NULL), APTNC_STATUS_OK);
        aptnc_rule_free(rule);
        const uint8_t *out = NULL;
        size_t out_len = 0;
        CHECK_STATUS(aptnc_filter(a, u8(STAGE1), strlen(STAGE1), &out, &out_len), APTNC_STATUS_UNCHANGED);
        CHECK_STATUS(aptnc_filter(a, u8(STAGE2), strlen(STAGE2), &out, &out_len), APTNC_STATUS_ANNOTATED);
        aptnc_free(a);
        aptnc_free(b);
    }

    /* Flush and stats on a fresh detector. */
    det = new_detector(NULL);
    aptnc_flush_report r = {.size = sizeof r};
    CHECK_STATUS(aptnc_flush(det, &r), APTNC_STATUS_OK);
    CHECK(r.size == sizeof r);
    CHECK(r.version == APTNC_FLUSH_REPORT_VERSION);
    CHECK_U64(r.expired, 0);
    CHECK_U64(r.pending, 0);
    CHECK(r.alerts != NULL);
    CHECK_U64(r.alerts_len, 0);
    aptnc_stats st = get_stats(det);
    CHECK(st.version == APTNC_STATS_VERSION);
    CHECK_U64(st.records, 0);
    aptnc_free(det);

    /* Every free accepts NULL. */
    aptnc_free(NULL);
    aptnc_rule_free(NULL);
    aptnc_error_free(NULL);
}

static void test_filter_json(void) {
    aptnc_detector *det = new_detector(NULL);
    const uint8_t *sentinel = u8("sentinel");
    const uint8_t *out = sentinel;
    size_t out_len = 12345;

    CHECK_STATUS(aptnc_filter(det, u8(STAGE1), strlen(STAGE1), &out, &out_len), APTNC_STATUS_UNCHANGED);
    CHECK_STATUS(aptnc_filter(det, u8(NOISE), strlen(NOISE), &out, &out_len), APTNC_STATUS_UNCHANGED);
    /* Out-parameters are written only for ANNOTATED. */
    CHECK(out == sentinel && out_len == 12345);

    CHECK_STATUS(aptnc_filter(det, u8(STAGE2), strlen(STAGE2), &out, &out_len), APTNC_STATUS_ANNOTATED);
    CHECK(out != sentinel && out != NULL);
    CHECK(out_len > strlen(STAGE2));
    /* The record's own members come first, byte for byte, then the alert. */
    CHECK(memcmp(out, STAGE2, strlen(STAGE2) - 1) == 0);
    CHECK(out[strlen(STAGE2) - 1] == ',');
    CHECK(out[out_len - 1] == '}');
    CHECK(contains(out, out_len, "\"kibana\":{\"alert\":{"));
    CHECK(contains(out, out_len, RULE_NAME));
    CHECK(!memchr(out, '\n', out_len));

    /* The sequence was consumed: the same event again is not an alert. */
    CHECK_STATUS(aptnc_filter(det, u8(STAGE2), strlen(STAGE2), &out, &out_len), APTNC_STATUS_UNCHANGED);
    aptnc_free(det);

    /* Config keys change the annotation. */
    det = new_detector("{\"annotation_prefix\":\"alert.x\",\"kibana_fields\":false}");
    CHECK_STATUS(aptnc_filter(det, u8(STAGE1), strlen(STAGE1), &out, &out_len), APTNC_STATUS_UNCHANGED);
    CHECK_STATUS(aptnc_filter(det, u8(STAGE2), strlen(STAGE2), &out, &out_len), APTNC_STATUS_ANNOTATED);
    CHECK(contains(out, out_len, "\"alert\":{\"x\":{"));
    CHECK(!contains(out, out_len, "\"kibana\""));
    aptnc_free(det);
}

/* --- MessagePack, written by hand. --- */

static void mp_byte(buf *b, uint8_t x) { put(b, &x, 1); }
static void mp_be(buf *b, uint64_t x, int bytes) {
    for (int i = bytes - 1; i >= 0; i--) mp_byte(b, (uint8_t)(x >> (8 * i)));
}
static void mp_map(buf *b, unsigned n) {
    if (n < 16) mp_byte(b, (uint8_t)(0x80 | n));
    else { mp_byte(b, 0xde); mp_be(b, n, 2); }
}
static void mp_array(buf *b, unsigned n) {
    if (n < 16) mp_byte(b, (uint8_t)(0x90 | n));
    else { mp_byte(b, 0xdc); mp_be(b, n, 2); }
}
static void mp_str(buf *b, const char *s) {
    size_t n = strlen(s);
    if (n < 32) mp_byte(b, (uint8_t)(0xa0 | n));
    else if (n < 256) { mp_byte(b, 0xd9); mp_byte(b, (uint8_t)n); }
    else { mp_byte(b, 0xda); mp_be(b, n, 2); }
    put(b, s, n);
}
static void mp_uint(buf *b, uint64_t x) {
    if (x < 128) mp_byte(b, (uint8_t)x);
    else { mp_byte(b, 0xcf); mp_be(b, x, 8); }
}
/* Fluent Bit's EventTime: ext type 0, 8 bytes, big-endian seconds and nanoseconds. */
static void mp_event_time(buf *b, uint32_t sec, uint32_t nsec) {
    mp_byte(b, 0xd7);
    mp_byte(b, 0x00);
    mp_be(b, sec, 4);
    mp_be(b, nsec, 4);
}
/* A v2 record header: [[EventTime, {}], ...body follows. */
static void mp_record_v2(buf *b, uint32_t sec) {
    mp_array(b, 2);
    mp_array(b, 2);
    mp_event_time(b, sec, 0);
    mp_map(b, 0);
}
static void mp_kv(buf *b, const char *k, const char *v) {
    mp_str(b, k);
    mp_str(b, v);
}
static void mp_host(buf *b) {
    mp_str(b, "host");
    mp_map(b, 3);
    mp_kv(b, "id", "h1");
    mp_kv(b, "name", "web1");
    mp_str(b, "os");
    mp_map(b, 1);
    mp_kv(b, "type", "linux");
}
static void mp_stage1_body(buf *b) {
    mp_map(b, 4);
    mp_kv(b, "@timestamp", "2024-05-01T10:00:00.000Z");
    mp_str(b, "event");
    mp_map(b, 3);
    mp_kv(b, "category", "process");
    mp_kv(b, "type", "start");
    mp_kv(b, "action", "exec");
    mp_host(b);
    mp_str(b, "process");
    mp_map(b, 5);
    mp_kv(b, "name", "sh");
    mp_str(b, "pid");
    mp_uint(b, 4242);
    mp_kv(b, "entity_id", "P1");
    mp_str(b, "args");
    mp_array(b, 3);
    mp_str(b, "sh");
    mp_str(b, "-c");
    mp_str(b, "curl x");
    mp_str(b, "parent");
    mp_map(b, 2);
    mp_kv(b, "name", "apt");
    mp_kv(b, "entity_id", "A1");
}
static void mp_stage2_body(buf *b) {
    mp_map(b, 5);
    mp_kv(b, "@timestamp", "2024-05-01T10:00:01.000Z");
    mp_str(b, "event");
    mp_map(b, 3);
    mp_kv(b, "category", "network");
    mp_kv(b, "type", "start");
    mp_kv(b, "action", "connection_attempted");
    mp_host(b);
    mp_str(b, "process");
    mp_map(b, 3);
    mp_kv(b, "name", "curl");
    mp_kv(b, "entity_id", "C1");
    mp_str(b, "parent");
    mp_map(b, 1);
    mp_kv(b, "entity_id", "P1");
    mp_str(b, "destination");
    mp_map(b, 2);
    mp_kv(b, "ip", "93.184.216.34");
    mp_str(b, "port");
    mp_uint(b, 80);
}

static void test_filter_msgpack(void) {
    aptnc_detector *det = new_detector(NULL);
    const uint8_t *sentinel = u8("sentinel");
    const uint8_t *out = sentinel;
    size_t out_len = 12345;

    /* Chunk 1: the stage-1 record (v2 form) and an unrelated one (legacy form). */
    buf c1 = {0};
    mp_record_v2(&c1, 1714557600);
    mp_stage1_body(&c1);
    mp_array(&c1, 2);
    mp_event_time(&c1, 1714557600, 500000000);
    mp_map(&c1, 1);
    mp_kv(&c1, "message", "hello");
    CHECK_STATUS(aptnc_filter_msgpack(det, c1.p, c1.len, &out, &out_len), APTNC_STATUS_UNCHANGED);
    CHECK(out == sentinel && out_len == 12345);

    /* Chunk 2: a group start marker, an unrelated record, the stage-2 record,
     * a group end marker. */
    buf c2 = {0};
    mp_record_v2(&c2, 0xFFFFFFFFu);
    mp_map(&c2, 0);
    mp_record_v2(&c2, 1714557601);
    mp_map(&c2, 1);
    mp_kv(&c2, "message", "before");
    size_t first_len = c2.len;
    mp_record_v2(&c2, 1714557601);
    mp_stage2_body(&c2);
    size_t end_marker = c2.len;
    mp_record_v2(&c2, 0xFFFFFFFEu);
    mp_map(&c2, 0);
    size_t marker_len = c2.len - end_marker;
    CHECK_STATUS(aptnc_filter_msgpack(det, c2.p, c2.len, &out, &out_len), APTNC_STATUS_ANNOTATED);
    CHECK(out != sentinel && out != NULL && out_len > c2.len);
    if (out != sentinel && out_len > c2.len) {
        /* The untouched record is copied as it was; the annotated one gains the alert. */
        CHECK(memcmp(out, c2.p, first_len) == 0);
        CHECK(memcmp(out + out_len - marker_len, c2.p + end_marker, marker_len) == 0);
        CHECK(contains(out, out_len, RULE_NAME));
        CHECK(contains(out, out_len, "kibana"));
    }

    aptnc_stats st = get_stats(det);
    CHECK_U64(st.records, 4);
    CHECK_U64(st.annotated, 1);
    CHECK_U64(st.sequences_completed, 1);

    /* An empty chunk has no records. */
    out = sentinel;
    CHECK_STATUS(aptnc_filter_msgpack(det, NULL, 0, &out, &out_len), APTNC_STATUS_UNCHANGED);
    CHECK(out == sentinel);

    /* Not MessagePack / not a chunk. */
    CHECK_STATUS(aptnc_filter_msgpack(det, u8("{\"a\":1}"), 7, &out, &out_len), APTNC_STATUS_INVALID_MSGPACK);
    CHECK_STATUS(aptnc_filter_msgpack(det, c2.p, c2.len - 3, &out, &out_len), APTNC_STATUS_INVALID_MSGPACK);
    CHECK(out == sentinel);

    buf_free(&c1);
    buf_free(&c2);
    aptnc_free(det);
}

static void test_record_errors(void) {
    /* The byte prefilter off: every record that may match is read whole, so
     * the deep record below (which holds none of the strings a stage
     * requires) is read and counted too. */
    aptnc_detector *det = new_detector("{\"prefilter\":false}");
    const uint8_t *sentinel = u8("sentinel");
    const uint8_t *out = sentinel;
    size_t out_len = 7;

    CHECK_STATUS(aptnc_filter(det, u8("{\"a\":"), 5, &out, &out_len), APTNC_STATUS_INVALID_JSON);
    /* Invalid UTF-8 in a field the rule reads (unread values are skipped unchecked). */
    const char *bad_utf8 = "{\"process\":{\"name\":\"\xff\"}}";
    CHECK_STATUS(aptnc_filter(det, u8(bad_utf8), strlen(bad_utf8), &out, &out_len), APTNC_STATUS_INVALID_JSON);
    CHECK_STATUS(aptnc_filter(det, NULL, 0, &out, &out_len), APTNC_STATUS_INVALID_JSON);
    CHECK_STATUS(aptnc_filter(det, u8("[1,2]"), 5, &out, &out_len), APTNC_STATUS_NOT_AN_OBJECT);
    CHECK_STATUS(aptnc_filter(det, u8("\"s\""), 3, &out, &out_len), APTNC_STATUS_NOT_AN_OBJECT);

    buf deep = {0};
    /* Deep nesting under a field the rule reads. */
    put(&deep, "{\"process\":", 11);
    for (int i = 0; i < 5000; i++) put(&deep, "[", 1);
    for (int i = 0; i < 5000; i++) put(&deep, "]", 1);
    put(&deep, "}", 1);
    CHECK_STATUS(aptnc_filter(det, deep.p, deep.len, &out, &out_len), APTNC_STATUS_TOO_DEEP);
    /* With the default, that record passes unread. */
    aptnc_detector *fast = new_detector(NULL);
    CHECK_STATUS(aptnc_filter(fast, deep.p, deep.len, &out, &out_len), APTNC_STATUS_UNCHANGED);
    aptnc_free(fast);
    buf_free(&deep);

    /* Matches stage 1 but has no @timestamp. */
    const char *no_ts = STAGE1;
    char rec[2048];
    snprintf(rec, sizeof rec, "{%s", strstr(no_ts, "\"event\""));
    CHECK_STATUS(aptnc_filter(det, u8(rec), strlen(rec), &out, &out_len), APTNC_STATUS_BAD_TIMESTAMP);
    snprintf(rec, sizeof rec, "{\"@timestamp\":\"yesterday\",%s", strstr(no_ts, "\"event\""));
    CHECK_STATUS(aptnc_filter(det, u8(rec), strlen(rec), &out, &out_len), APTNC_STATUS_BAD_TIMESTAMP);

    /* Completes the sequence, but the alert cannot be merged: its `rule`
     * member (which the alert writes into) holds a lone surrogate. */
    CHECK_STATUS(aptnc_filter(det, u8(STAGE1), strlen(STAGE1), &out, &out_len), APTNC_STATUS_UNCHANGED);
    const char *bad_merge =
        "{\"@timestamp\":\"2024-05-01T10:00:01.000Z\",\"rule\":\"\\ud800\"," STAGE2_BODY "}";
    CHECK_STATUS(aptnc_filter(det, u8(bad_merge), strlen(bad_merge), &out, &out_len),
                 APTNC_STATUS_ANNOTATE_FAILED);

    CHECK(out == sentinel && out_len == 7);
    aptnc_stats st = get_stats(det);
    CHECK_U64(st.records, 10);
    CHECK_U64(st.invalid_json, 3);
    CHECK_U64(st.not_an_object, 2);
    CHECK_U64(st.too_deep, 1);
    CHECK_U64(st.bad_timestamp, 2);
    CHECK_U64(st.annotate_failed, 1);
    CHECK_U64(st.annotated, 0);
    aptnc_free(det);

    /* Too large for the configured limit. */
    det = new_detector("{\"max_record_bytes\": 64}");
    CHECK_STATUS(aptnc_filter(det, u8(STAGE1), strlen(STAGE1), &out, &out_len), APTNC_STATUS_TOO_LARGE);
    CHECK_STATUS(aptnc_filter(det, u8("{}"), 2, &out, &out_len), APTNC_STATUS_UNCHANGED);
    st = get_stats(det);
    CHECK_U64(st.too_large, 1);
    CHECK_U64(st.records, 2);
    aptnc_free(det);
}

static void test_config_errors(void) {
    struct {
        const char *config;
        const char *key; /* NULL: no key */
    } cases[] = {
        {"{\"max_pending\": 1}", "max_pending"},
        {"{\"max_pending_sequences\": \"ten\"}", "max_pending_sequences"},
        {"{\"max_pending_sequences\": 0}", "max_pending_sequences"},
        {"{\"max_record_bytes\": -1}", "max_record_bytes"},
        {"{\"kibana_fields\": \"yes\"}", "kibana_fields"},
        {"{\"annotation_prefix\": \"a..b\"}", "annotation_prefix"},
        {"{\"rule\": \"nope\"}", "rule"},
        {"{\"rule_file\": \"/nonexistent/apt_netcon.eql\"}", "rule_file"},
        {"not json", NULL},
        {"[1]", NULL},
        {"{\"rule\": \"\xff\"}", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        aptnc_detector *det = (aptnc_detector *)&cases; /* must stay untouched */
        aptnc_error *err = NULL;
        CHECK_STATUS(aptnc_init(u8(cases[i].config), strlen(cases[i].config), NULL, &det, &err),
                     APTNC_STATUS_CONFIG_ERROR);
        CHECK(det == (aptnc_detector *)&cases);
        CHECK(err != NULL);
        CHECK_STATUS(aptnc_error_status(err), APTNC_STATUS_CONFIG_ERROR);
        const char *key = aptnc_error_key(err);
        const char *msg = aptnc_error_message(err);
        if (cases[i].key) {
            CHECK(key != NULL && strcmp(key, cases[i].key) == 0);
            CHECK(strstr(msg, cases[i].key) != NULL);
        } else {
            CHECK(key == NULL);
        }
        CHECK(*msg != '\0');
        CHECK(aptnc_error_line(err) == 0 && aptnc_error_column(err) == 0);
        aptnc_error_free(err);
    }
    /* The error out-parameter is optional. */
    aptnc_detector *det = NULL;
    CHECK_STATUS(aptnc_init(u8("{\"x\":1}"), 7, NULL, &det, NULL), APTNC_STATUS_CONFIG_ERROR);
    CHECK(det == NULL);
}

#define BAD_RULE                                                                                 \
    "sequence by host.id with maxspan=5s\n"                                                    \
    "  [process where process.name == ]\n"                                                     \
    "  [network where true]\n"

static void test_rule_compile_error(void) {
    aptnc_rule *rule = (aptnc_rule *)&failures; /* must stay untouched */
    aptnc_error *err = NULL;
    CHECK_STATUS(aptnc_rule_compile(u8(BAD_RULE), strlen(BAD_RULE), "bad", &rule, &err),
                 APTNC_STATUS_RULE_ERROR);
    CHECK(rule == (aptnc_rule *)&failures);
    CHECK(err != NULL);
    CHECK_STATUS(aptnc_error_status(err), APTNC_STATUS_RULE_ERROR);
    CHECK(aptnc_error_line(err) == 2);
    CHECK(aptnc_error_column(err) == 34);
    const char *msg = aptnc_error_message(err);
    CHECK(strstr(msg, "line 2, column 34") != NULL);
    CHECK(strstr(msg, "[process where process.name == ]") != NULL); /* the source line */
    CHECK(strstr(msg, "^") != NULL);                                   /* and a caret */
    CHECK(aptnc_error_key(err) == NULL);
    aptnc_error_free(err);

    /* An empty text, and text that is not UTF-8. */
    err = NULL;
    CHECK_STATUS(aptnc_rule_compile(NULL, 0, NULL, &rule, &err), APTNC_STATUS_RULE_ERROR);
    aptnc_error_free(err);
    err = NULL;
    const char *not_utf8 = "process where\n  \xff";
    CHECK_STATUS(aptnc_rule_compile(u8(not_utf8), strlen(not_utf8), NULL, &rule, &err),
                 APTNC_STATUS_RULE_ERROR);
    CHECK(aptnc_error_line(err) == 2 && aptnc_error_column(err) == 3);
    aptnc_error_free(err);

    /* Unknown built-in name: a rule error without position, listing the names. */
    err = NULL;
    CHECK_STATUS(aptnc_rule_builtin("apt_netcon_v99", &rule, &err), APTNC_STATUS_RULE_ERROR);
    CHECK(strstr(aptnc_error_message(err), "apt_netcon_v5") != NULL);
    CHECK(aptnc_error_line(err) == 0);
    aptnc_error_free(err);
    CHECK(rule == (aptnc_rule *)&failures);

    /* A rule_file that does not compile: RULE_ERROR from aptnc_init, with position. */
    char path[] = "/tmp/aptnc_test_rule_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, BAD_RULE, strlen(BAD_RULE)) == (ssize_t)strlen(BAD_RULE));
        close(fd);
        char config[256];
        snprintf(config, sizeof config, "{\"rule_file\": \"%s\"}", path);
        aptnc_detector *det = NULL;
        err = NULL;
        CHECK_STATUS(aptnc_init(u8(config), strlen(config), NULL, &det, &err), APTNC_STATUS_RULE_ERROR);
        CHECK(det == NULL);
        CHECK(aptnc_error_line(err) == 2 && aptnc_error_column(err) == 34);
        aptnc_error_free(err);
        unlink(path);
    }
}

static void test_custom_rule(void) {
    const char *text = "sequence by host.id with maxspan=5s\n"
                       "  [process where process.name == \"sh\"]\n"
                       "  [network where destination.port == 80]\n";
    aptnc_rule *rule = NULL;
    aptnc_error *err = NULL;
    CHECK_STATUS(aptnc_rule_compile(u8(text), strlen(text), "my_rule", &rule, &err), APTNC_STATUS_OK);
    CHECK(err == NULL);
    aptnc_detector *det = NULL;
    /* The config's rule keys are ignored when a rule handle is given. */
    CHECK_STATUS(aptnc_init(u8("{\"rule\":\"v11\"}"), 14, rule, &det, &err), APTNC_STATUS_OK);
    aptnc_rule_free(rule);
    const uint8_t *out = NULL;
    size_t out_len = 0;
    CHECK_STATUS(aptnc_filter(det, u8(STAGE1), strlen(STAGE1), &out, &out_len), APTNC_STATUS_UNCHANGED);
    CHECK_STATUS(aptnc_filter(det, u8(STAGE2), strlen(STAGE2), &out, &out_len), APTNC_STATUS_ANNOTATED);
    CHECK(contains(out, out_len, "\"name\":\"my_rule\""));
    CHECK(!contains(out, out_len, RULE_NAME));
    aptnc_free(det);
}

static void test_null_parameters(void) {
    aptnc_detector *det = new_detector(NULL);
    aptnc_rule *rule = NULL;
    aptnc_error *err = NULL;
    const uint8_t *out = NULL;
    size_t out_len = 0;
    aptnc_stats st = {.size = sizeof st};
    aptnc_flush_report rep = {.size = sizeof rep};

    /* aptnc_rule_compile: text (with a length), rule; name and error are optional. */
    CHECK_STATUS(aptnc_rule_compile(NULL, 5, NULL, &rule, &err), APTNC_STATUS_NULL_PARAMETER);
    CHECK(err != NULL && strstr(aptnc_error_message(err), "text") != NULL);
    CHECK_STATUS(aptnc_error_status(err), APTNC_STATUS_NULL_PARAMETER);
    aptnc_error_free(err);
    err = NULL;
    CHECK_STATUS(aptnc_rule_compile(u8("x"), 1, NULL, NULL, &err), APTNC_STATUS_NULL_PARAMETER);
    CHECK(err != NULL && strstr(aptnc_error_message(err), "rule") != NULL);
    aptnc_error_free(err);
    CHECK_STATUS(aptnc_rule_compile(u8("x"), 1, NULL, NULL, NULL), APTNC_STATUS_NULL_PARAMETER);

    /* aptnc_rule_builtin: name, rule. */
    err = NULL;
    CHECK_STATUS(aptnc_rule_builtin(NULL, &rule, &err), APTNC_STATUS_NULL_PARAMETER);
    CHECK(err != NULL && strstr(aptnc_error_message(err), "name") != NULL);
    aptnc_error_free(err);
    CHECK_STATUS(aptnc_rule_builtin("v5", NULL, NULL), APTNC_STATUS_NULL_PARAMETER);
    CHECK(rule == NULL);

    /* aptnc_init: config (with a length), detector; rule and error are optional. */
    aptnc_detector *d2 = NULL;
    CHECK_STATUS(aptnc_init(NULL, 3, NULL, &d2, NULL), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_init(NULL, 0, NULL, NULL, NULL), APTNC_STATUS_NULL_PARAMETER);
    err = NULL;
    CHECK_STATUS(aptnc_init(NULL, 0, NULL, NULL, &err), APTNC_STATUS_NULL_PARAMETER);
    CHECK(err != NULL && strstr(aptnc_error_message(err), "detector") != NULL);
    aptnc_error_free(err);
    CHECK(d2 == NULL);

    /* aptnc_filter: detector, record (with a length), out, out_len. */
    CHECK_STATUS(aptnc_filter(NULL, u8("{}"), 2, &out, &out_len), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_filter(det, NULL, 2, &out, &out_len), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_filter(det, u8("{}"), 2, NULL, &out_len), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_filter(det, u8("{}"), 2, &out, NULL), APTNC_STATUS_NULL_PARAMETER);

    /* aptnc_filter_msgpack: detector, chunk (with a length), out, out_len. */
    CHECK_STATUS(aptnc_filter_msgpack(NULL, NULL, 0, &out, &out_len), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_filter_msgpack(det, NULL, 1, &out, &out_len), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_filter_msgpack(det, NULL, 0, NULL, &out_len), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_filter_msgpack(det, NULL, 0, &out, NULL), APTNC_STATUS_NULL_PARAMETER);

    /* aptnc_flush, aptnc_get_stats: detector, struct. */
    CHECK_STATUS(aptnc_flush(NULL, &rep), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_flush(det, NULL), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_get_stats(NULL, &st), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_get_stats(det, NULL), APTNC_STATUS_NULL_PARAMETER);

    /* Error accessors on NULL. */
    CHECK_STATUS(aptnc_error_status(NULL), APTNC_STATUS_NULL_PARAMETER);
    CHECK(aptnc_error_message(NULL) != NULL && *aptnc_error_message(NULL) == '\0');
    CHECK(aptnc_error_key(NULL) == NULL);
    CHECK(aptnc_error_line(NULL) == 0);
    CHECK(aptnc_error_column(NULL) == 0);

    /* Frees. */
    aptnc_free(NULL);
    aptnc_rule_free(NULL);
    aptnc_error_free(NULL);

    /* None of this was counted as a record. */
    aptnc_stats s = get_stats(det);
    CHECK_U64(s.records, 0);
    CHECK(out == NULL && out_len == 0);
    aptnc_free(det);
}

static void test_stats(void) {
    aptnc_detector *det = new_detector(NULL);
    const uint8_t *out;
    size_t out_len;
    aptnc_filter(det, u8(STAGE1), strlen(STAGE1), &out, &out_len);
    aptnc_filter(det, u8(NOISE), strlen(NOISE), &out, &out_len);
    aptnc_filter(det, u8("nope"), 4, &out, &out_len);

    aptnc_stats st = get_stats(det);
    CHECK(st.size == sizeof st);
    CHECK(st.version == APTNC_STATS_VERSION);
    CHECK_U64(st.records, 3);
    CHECK_U64(st.stage1_matches, 1);
    CHECK_U64(st.stage2_matches, 0);
    CHECK_U64(st.pending, 1);
    CHECK_U64(st.invalid_json, 1);
    CHECK_U64(st.annotated, 0);

    aptnc_filter(det, u8(STAGE2), strlen(STAGE2), &out, &out_len);
    st = get_stats(det);
    CHECK_U64(st.records, 4);
    CHECK_U64(st.stage2_matches, 1);
    CHECK_U64(st.sequences_completed, 1);
    CHECK_U64(st.annotated, 1);
    CHECK_U64(st.pending, 0);

    /* An older caller that knows only `size`, `version` and `records`. */
    aptnc_stats old;
    memset(&old, 0xAB, sizeof old);
    old.size = 16;
    CHECK_STATUS(aptnc_get_stats(det, &old), APTNC_STATUS_OK);
    CHECK(old.size == 16);
    CHECK_U64(old.records, 4);
    CHECK_U64(old.annotated, 0xABABABABABABABABull); /* not written */

    /* A newer caller with a bigger struct: the library fills what it knows. */
    struct {
        aptnc_stats known;
        uint64_t future[4];
    } newer;
    memset(&newer, 0xCD, sizeof newer);
    newer.known.size = sizeof newer;
    CHECK_STATUS(aptnc_get_stats(det, &newer.known), APTNC_STATUS_OK);
    CHECK(newer.known.size == sizeof(aptnc_stats));
    CHECK_U64(newer.known.pending, 0);
    CHECK_U64(newer.future[0], 0xCDCDCDCDCDCDCDCDull);

    /* Too small to hold even the header. */
    aptnc_stats tiny;
    memset(&tiny, 0, sizeof tiny);
    tiny.size = 4;
    CHECK_STATUS(aptnc_get_stats(det, &tiny), APTNC_STATUS_INVALID_ARGUMENT);
    CHECK(tiny.size == 4 && tiny.version == 0);
    aptnc_flush_report rep = {.size = 0};
    CHECK_STATUS(aptnc_flush(det, &rep), APTNC_STATUS_INVALID_ARGUMENT);
    aptnc_free(det);
}

static void test_flush(void) {
    aptnc_detector *det = new_detector(NULL);
    const uint8_t *out;
    size_t out_len;
    CHECK_STATUS(aptnc_filter(det, u8(STAGE1), strlen(STAGE1), &out, &out_len), APTNC_STATUS_UNCHANGED);
    aptnc_flush_report rep = {.size = sizeof rep};
    CHECK_STATUS(aptnc_flush(det, &rep), APTNC_STATUS_OK);
    CHECK_U64(rep.expired, 0);
    CHECK_U64(rep.pending, 1);

    /* A stage-1 event of another host an hour later moves the watermark. */
    char later[2048];
    snprintf(later, sizeof later, "%s", STAGE1);
    memcpy(strstr(later, "T10:"), "T11:", 4);
    memcpy(strstr(later, "\"h1\""), "\"h2\"", 4);
    CHECK_STATUS(aptnc_filter(det, u8(later), strlen(later), &out, &out_len), APTNC_STATUS_UNCHANGED);
    /* The old partial sequence expired as the watermark moved; the flush
     * reports what it dropped itself (nothing left) and what is held. */
    aptnc_stats st = get_stats(det);
    CHECK_U64(st.expired_by_maxspan, 1);
    CHECK_U64(st.pending, 1);
    rep.size = sizeof rep;
    CHECK_STATUS(aptnc_flush(det, &rep), APTNC_STATUS_OK);
    CHECK_U64(rep.expired, 0);
    CHECK_U64(rep.pending, 1);
    CHECK(rep.alerts != NULL && rep.alerts_len == 0);

    /* The expired stage-1 event no longer pairs. */
    CHECK_STATUS(aptnc_filter(det, u8(STAGE2), strlen(STAGE2), &out, &out_len), APTNC_STATUS_UNCHANGED);
    aptnc_free(det);
}

/* max_lateness: the connection arrives before its shell; both go on
 * unchanged, and aptnc_finish hands over the alert as a JSON line. */
static void test_finish_releases_held_events(void) {
    aptnc_detector *det = new_detector("{\"max_lateness\": \"1m\"}");
    const uint8_t *out;
    size_t out_len;
    CHECK_STATUS(aptnc_filter(det, u8(STAGE2), strlen(STAGE2), &out, &out_len), APTNC_STATUS_UNCHANGED);
    CHECK_STATUS(aptnc_filter(det, u8(STAGE1), strlen(STAGE1), &out, &out_len), APTNC_STATUS_UNCHANGED);
    aptnc_flush_report rep = {.size = sizeof rep};
    CHECK_STATUS(aptnc_flush(det, &rep), APTNC_STATUS_OK);
    CHECK_U64(rep.alert_count, 0);
    CHECK_U64(rep.held, 2);
    CHECK_STATUS(aptnc_finish(det, &rep), APTNC_STATUS_OK);
    CHECK_U64(rep.alert_count, 1);
    CHECK_U64(rep.held, 0);
    CHECK(rep.alerts_len > 0 && rep.alerts[rep.alerts_len - 1] == '\n');
    CHECK(memmem(rep.alerts, rep.alerts_len, "\"kibana\"", 8) != NULL);
    aptnc_stats st = get_stats(det);
    CHECK_U64(st.standalone_alerts, 1);
    CHECK_U64(st.annotated, 0);
    aptnc_free(det);
}

/* ------------------------------------------------------------------------ */
/* Rule packs. */

/* Write `text` to DIR/NAME. */
static void write_text(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fputs(text, f) >= 0);
    fclose(f);
}

/* A new directory (under the working directory: ctest's build directory)
 * holding the pack, in file-name order: a_port, b_addr, the three-stage
 * c_seq (all three completed by PACK_REC3) and d_quiet (never matches);
 * with `broken`, also e_broken and f_broken, which do not load. Its
 * absolute path goes to `dir`. */
static int make_pack(char *dir, size_t cap, int broken) {
    char tmpl[] = "aptnc_pack.XXXXXX";
    if (!mkdtemp(tmpl) || !realpath(tmpl, dir) || strlen(dir) >= cap) {
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
    if (broken) {
        write_text(dir, "e_broken.eql", "network where destination.port ==\n");
        write_text(dir, "f_broken.eql", "this is not eql\n");
    }
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

#define PACK_REC1                                                                             \
    "{\"@timestamp\":\"2026-03-14T09:30:00.000Z\",\"event\":{\"category\":[\"process\"],"  \
    "\"id\":\"e1\"},\"host\":{\"id\":\"h1\"},\"process\":{\"name\":\"stage1\","             \
    "\"entity_id\":\"p1\"}}"
#define PACK_REC2                                                                             \
    "{\"@timestamp\":\"2026-03-14T09:30:01.000Z\",\"event\":{\"category\":[\"file\"],"     \
    "\"id\":\"e2\"},\"host\":{\"id\":\"h1\"},\"file\":{\"name\":\"stage2\"}}"
#define PACK_REC3                                                                             \
    "{\"@timestamp\":\"2026-03-14T09:30:02.000Z\",\"event\":{\"category\":[\"network\"],"  \
    "\"id\":\"e3\"},\"host\":{\"id\":\"h1\"},\"destination\":{\"port\":4444,"               \
    "\"address\":\"203.0.113.9\",\"ip\":\"203.0.113.9\"}}"

static aptnc_detector *pack_detector(const char *dir, int skip_broken) {
    char config[4200];
    snprintf(config, sizeof config, "{\"rules_dir\": \"%s\", \"skip_broken_rules\": %s}", dir,
             skip_broken ? "true" : "false");
    return new_detector(config);
}

/* Filter one record as a host does with a pack: forward it, then, when
 * `standalone_alerts` moved, the alerts aptnc_flush hands over. Appends
 * both to `out`; returns the number of alerts. */
static uint64_t pack_filter(aptnc_detector *det, const char *rec, buf *out) {
    uint64_t before = get_stats(det).standalone_alerts;
    const uint8_t *o = NULL;
    size_t o_len = 0;
    CHECK_STATUS(aptnc_filter(det, u8(rec), strlen(rec), &o, &o_len), APTNC_STATUS_UNCHANGED);
    put(out, rec, strlen(rec));
    put(out, "\n", 1);
    uint64_t n = get_stats(det).standalone_alerts - before;
    if (n == 0) return 0;
    aptnc_flush_report rep = {.size = sizeof rep};
    CHECK_STATUS(aptnc_flush(det, &rep), APTNC_STATUS_OK);
    CHECK_U64(rep.alert_count, n);
    put(out, rep.alerts, rep.alerts_len);
    return n;
}

/* The n-th line of `b` (0-based), NUL-terminated in `line`. */
static int nth_line(const buf *b, int n, char *line, size_t cap) {
    size_t pos = 0;
    for (int i = 0; pos < b->len; i++) {
        const uint8_t *nl = memchr(b->p + pos, '\n', b->len - pos);
        size_t len = nl ? (size_t)(nl - (b->p + pos)) : b->len - pos;
        if (i == n) {
            if (len >= cap) return 0;
            memcpy(line, b->p + pos, len);
            line[len] = '\0';
            return 1;
        }
        pos += len + 1;
    }
    return 0;
}

/* One record completing three rules of a pack: it goes on unchanged, then
 * one alert per rule, in rule order, each `event.kind: "signal"` with its
 * rule's name; then the per-rule report. */
static void test_pack_json(void) {
    char dir[4096];
    if (!make_pack(dir, sizeof dir, 0)) return;
    aptnc_detector *det = pack_detector(dir, 0);
    buf out = {0};
    CHECK_U64(pack_filter(det, PACK_REC1, &out), 0);
    CHECK_U64(pack_filter(det, PACK_REC2, &out), 0);
    CHECK_U64(pack_filter(det, PACK_REC3, &out), 3);
    char line[8192];
    static const char *const want[] = {PACK_REC1, PACK_REC2, PACK_REC3};
    for (int i = 0; i < 3; i++) CHECK(nth_line(&out, i, line, sizeof line) && strcmp(line, want[i]) == 0);
    static const char *const names[] = {"\"name\":\"a_port\"", "\"name\":\"b_addr\"",
                                        "\"name\":\"c_seq\""};
    for (int i = 0; i < 3; i++) {
        CHECK(nth_line(&out, 3 + i, line, sizeof line));
        CHECK(strstr(line, "\"kind\":\"signal\"") != NULL);
        CHECK(strstr(line, "\"id\":\"e3\"") != NULL); /* the completing record's document */
        CHECK(strstr(line, names[i]) != NULL);
        for (int j = 0; j < 3; j++)
            if (j != i) CHECK(strstr(line, names[j]) == NULL);
    }
    CHECK(!nth_line(&out, 6, line, sizeof line));
    aptnc_stats st = get_stats(det);
    CHECK_U64(st.records, 3);
    CHECK_U64(st.annotated, 0);
    CHECK_U64(st.standalone_alerts, 3);

    /* The report: every rule, in order, with its alerts. */
    const uint8_t *rep = NULL;
    size_t rep_len = 0;
    CHECK_STATUS(aptnc_rules_report(det, &rep, &rep_len), APTNC_STATUS_OK);
    CHECK(rep != NULL && rep_len > 0 && rep[0] == '{' && rep[rep_len - 1] == '}');
    const char *a = memmem(rep, rep_len, "\"name\":\"a_port\"", 15);
    const char *b = memmem(rep, rep_len, "\"name\":\"b_addr\"", 15);
    const char *c = memmem(rep, rep_len, "\"name\":\"c_seq\"", 14);
    const char *q = memmem(rep, rep_len, "\"name\":\"d_quiet\"", 16);
    CHECK(a && b && c && q && a < b && b < c && c < q);
    if (a && q) {
        CHECK(memmem(a, (size_t)(q - a), "\"alerts\":1", 10) != NULL);
        CHECK(memmem(q, rep_len - (size_t)(q - (const char *)rep), "\"alerts\":0", 10) != NULL);
    }
    CHECK(contains(rep, rep_len, "\"skipped\":[]"));
    /* Hostile calls: refused, nothing written. */
    const uint8_t *keep = rep;
    size_t keep_len = rep_len;
    CHECK_STATUS(aptnc_rules_report(NULL, &rep, &rep_len), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_rules_report(det, NULL, &rep_len), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_rules_report(det, &rep, NULL), APTNC_STATUS_NULL_PARAMETER);
    CHECK(rep == keep && rep_len == keep_len);
    aptnc_free(det);
    buf_free(&out);
    remove_pack(dir);
}

/* Broken rules: refused with every one named, unless skip_broken_rules;
 * then reported under "skipped". The default detector: one rule, none
 * skipped. */
static void test_pack_broken_rules(void) {
    char dir[4096];
    if (!make_pack(dir, sizeof dir, 1)) return;
    char config[4200];
    snprintf(config, sizeof config, "{\"rules_dir\": \"%s\"}", dir);
    aptnc_detector *det = NULL;
    aptnc_error *err = NULL;
    CHECK_STATUS(aptnc_init(u8(config), strlen(config), NULL, &det, &err), APTNC_STATUS_CONFIG_ERROR);
    CHECK(det == NULL);
    CHECK(err != NULL);
    if (err) {
        const char *msg = aptnc_error_message(err);
        CHECK(strstr(msg, "2 of 6 rules do not load") != NULL);
        CHECK(strstr(msg, "e_broken.eql: ") != NULL);
        CHECK(strstr(msg, "f_broken.eql: ") != NULL);
        CHECK(aptnc_error_key(err) && strcmp(aptnc_error_key(err), "rules_dir") == 0);
        aptnc_error_free(err);
    }

    det = pack_detector(dir, 1);
    const uint8_t *rep = NULL;
    size_t rep_len = 0;
    CHECK_STATUS(aptnc_rules_report(det, &rep, &rep_len), APTNC_STATUS_OK);
    const char *sk = memmem(rep, rep_len, "\"skipped\":[{\"name\":\"", 20);
    CHECK(sk != NULL);
    if (sk) {
        size_t rest = rep_len - (size_t)(sk - (const char *)rep);
        CHECK(memmem(sk, rest, "e_broken.eql\",\"reason\":\"", 24) != NULL);
        CHECK(memmem(sk, rest, "f_broken.eql\",\"reason\":\"", 24) != NULL);
    }
    buf out = {0};
    pack_filter(det, PACK_REC1, &out);
    pack_filter(det, PACK_REC2, &out);
    CHECK_U64(pack_filter(det, PACK_REC3, &out), 3);
    buf_free(&out);
    aptnc_free(det);
    remove_pack(dir);

    det = new_detector(NULL);
    CHECK_STATUS(aptnc_rules_report(det, &rep, &rep_len), APTNC_STATUS_OK);
    CHECK(contains(rep, rep_len, "{\"rules\":[{\"rule_id\":\"eaef8a35-12e0-4ac0-bc14-81c72b6bd27c\""));
    CHECK(contains(rep, rep_len, "\"skipped\":[]}"));
    aptnc_free(det);
}

static void test_take_warning(void) {
    aptnc_detector *det = new_detector(NULL);
    const uint8_t *w = NULL, *out;
    size_t w_len = 1, out_len;
    /* Nothing seen: no warning. */
    CHECK_STATUS(aptnc_take_warning(det, &w, &w_len), APTNC_STATUS_OK);
    CHECK_U64(w_len, 0);
    const char *unparsed = "{\"log\":\"2024-05-01 sshd[1]: accepted\"}";
    for (int i = 0; i < 3; i++) {
        CHECK_STATUS(aptnc_filter(det, u8(unparsed), strlen(unparsed), &out, &out_len), APTNC_STATUS_UNCHANGED);
    }
    CHECK_STATUS(aptnc_take_warning(det, &w, &w_len), APTNC_STATUS_OK);
    CHECK(w_len > 0 && memmem(w, w_len, "look unparsed", 13) != NULL && memmem(w, w_len, "`log`", 5) != NULL);
    /* Once per cause. */
    CHECK_STATUS(aptnc_take_warning(det, &w, &w_len), APTNC_STATUS_OK);
    CHECK_U64(w_len, 0);
    CHECK_STATUS(aptnc_take_warning(det, NULL, &w_len), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_take_warning(NULL, &w, &w_len), APTNC_STATUS_NULL_PARAMETER);
    aptnc_free(det);
}

static void test_footprint(void) {
    aptnc_detector *det = new_detector(NULL);
    const uint8_t *fp = NULL;
    size_t fp_len = 0;
    CHECK_STATUS(aptnc_footprint(det, &fp, &fp_len), APTNC_STATUS_OK);
    CHECK(fp != NULL && fp_len > 0);
    char *text = malloc(fp_len + 1);
    memcpy(text, fp, fp_len);
    text[fp_len] = 0;
    CHECK(strncmp(text, "{\"fields\":[", 11) == 0);
    CHECK(strstr(text, "\"host.id\"") != NULL);
    CHECK(strstr(text, "[\"process.parent.name\",[\"apt\"]]") != NULL);
    CHECK(strstr(text, "\"whole_record\":false") != NULL);
    /* The same bytes after a record: fixed for the detector's life. */
    const uint8_t *out;
    size_t out_len;
    CHECK_STATUS(aptnc_filter(det, u8(STAGE1), strlen(STAGE1), &out, &out_len), APTNC_STATUS_UNCHANGED);
    const uint8_t *fp2 = NULL;
    size_t fp2_len = 0;
    CHECK_STATUS(aptnc_footprint(det, &fp2, &fp2_len), APTNC_STATUS_OK);
    CHECK(fp2_len == fp_len && memcmp(fp2, text, fp_len) == 0);
    free(text);
    CHECK_STATUS(aptnc_footprint(det, NULL, &fp_len), APTNC_STATUS_NULL_PARAMETER);
    CHECK_STATUS(aptnc_footprint(NULL, &fp, &fp_len), APTNC_STATUS_NULL_PARAMETER);
    aptnc_free(det);
    /* max_lateness: records must be passed whole. */
    det = new_detector("{\"max_lateness\":\"10s\"}");
    CHECK_STATUS(aptnc_footprint(det, &fp, &fp_len), APTNC_STATUS_OK);
    CHECK(fp_len > 20 && memmem(fp, fp_len, "\"whole_record\":true", 19) != NULL);
    aptnc_free(det);
}

static void test_panic_poisons_detector(void) {
    if (!aptnc_test_force_panic) {
        fprintf(stderr, "%s: skipped (the library is a release build without the test hook)\n", __func__);
        return;
    }
    aptnc_detector *det = new_detector(NULL);
    const uint8_t *sentinel = u8("x");
    const uint8_t *out = sentinel;
    size_t out_len = 0;
    CHECK_STATUS(aptnc_test_force_panic(det), APTNC_STATUS_PANIC);
    CHECK_STATUS(aptnc_filter(det, u8(STAGE1), strlen(STAGE1), &out, &out_len), APTNC_STATUS_POISONED);
    CHECK_STATUS(aptnc_filter_msgpack(det, NULL, 0, &out, &out_len), APTNC_STATUS_POISONED);
    aptnc_stats st = {.size = sizeof st};
    CHECK_STATUS(aptnc_get_stats(det, &st), APTNC_STATUS_POISONED);
    aptnc_flush_report rep = {.size = sizeof rep};
    CHECK_STATUS(aptnc_flush(det, &rep), APTNC_STATUS_POISONED);
    CHECK_STATUS(aptnc_test_force_panic(det), APTNC_STATUS_POISONED);
    CHECK(out == sentinel);
    aptnc_free(det); /* a poisoned detector is freed normally */

    /* Other detectors are not affected. */
    det = new_detector(NULL);
    CHECK_STATUS(aptnc_filter(det, u8(STAGE1), strlen(STAGE1), &out, &out_len), APTNC_STATUS_UNCHANGED);
    aptnc_free(det);
}

static void compare_with_cli(const char *path) {
    buf in = read_file(path);
    buf want = run_cli(path);
    aptnc_detector *det = new_detector(NULL);
    buf got = filter_ndjson(det, in.p, in.len);
    CHECK(got.len == want.len && memcmp(got.p, want.p, got.len) == 0);
    if (got.len != want.len || memcmp(got.p, want.p, got.len) != 0)
        fprintf(stderr, "output on %s differs from the CLI's (%zu vs %zu bytes)\n", path, got.len,
                want.len);
    aptnc_stats st = get_stats(det);
    CHECK(st.annotated > 0);
    aptnc_free(det);
    buf_free(&in);
    buf_free(&want);
    buf_free(&got);
}

static void test_annotated_output_equals_cli(void) {
    compare_with_cli(APTNC_FIXTURE);
    if (access(APTNC_SAMPLE, R_OK) == 0) compare_with_cli(APTNC_SAMPLE);
    else fprintf(stderr, "%s: %s not found, only the fixture was compared\n", __func__, APTNC_SAMPLE);
}

/* --- Threads: one rule, one detector per thread. --- */

#define THREADS 4

#define ROUNDS 10

typedef struct {
    const aptnc_rule *rule;
    const buf *input, *want;
    int failed_inits, mismatches;
    uint64_t annotated;
} thread_job;

static void *thread_main(void *arg) {
    thread_job *job = arg;
    /* Detectors are created and freed concurrently from the shared rule; each
     * round filters the whole stream with a fresh detector. */
    for (int round = 0; round < ROUNDS; round++) {
        aptnc_detector *det = NULL;
        if (aptnc_init(NULL, 0, job->rule, &det, NULL) != APTNC_STATUS_OK) {
            job->failed_inits++;
            continue;
        }
        buf out = filter_ndjson(det, job->input->p, job->input->len);
        if (out.len != job->want->len || memcmp(out.p, job->want->p, out.len) != 0) job->mismatches++;
        aptnc_stats st = {.size = sizeof st};
        if (aptnc_get_stats(det, &st) == APTNC_STATUS_OK) job->annotated += st.annotated;
        buf_free(&out);
        aptnc_free(det);
    }
    return NULL;
}

static void test_threads_share_one_rule(void) {
    aptnc_rule *rule = NULL;
    CHECK_STATUS(aptnc_rule_builtin("apt_netcon_v5", &rule, NULL), APTNC_STATUS_OK);
    buf in = read_file(APTNC_FIXTURE);
    buf want = run_cli(APTNC_FIXTURE);

    thread_job jobs[THREADS];
    pthread_t tids[THREADS];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < THREADS; i++) {
        jobs[i].rule = rule;
        jobs[i].input = &in;
        jobs[i].want = &want;
        CHECK(pthread_create(&tids[i], NULL, thread_main, &jobs[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(tids[i], NULL) == 0);
    aptnc_rule_free(rule);

    for (int i = 0; i < THREADS; i++) {
        CHECK(jobs[i].failed_inits == 0);
        CHECK(jobs[i].mismatches == 0);
        CHECK(jobs[i].annotated > 0);
        CHECK(jobs[i].annotated == jobs[0].annotated);
    }
    buf_free(&in);
    buf_free(&want);
}

/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    void (*fn)(void);
} TESTS[] = {
#define T(f) {#f, f}
    T(test_version),
    T(test_status_values_and_text),
    T(test_lifecycle),
    T(test_filter_json),
    T(test_filter_msgpack),
    T(test_record_errors),
    T(test_config_errors),
    T(test_rule_compile_error),
    T(test_custom_rule),
    T(test_null_parameters),
    T(test_stats),
    T(test_flush),
    T(test_finish_releases_held_events),
    T(test_footprint),
    T(test_take_warning),
    T(test_pack_json),
    T(test_pack_broken_rules),
    T(test_panic_poisons_detector),
    T(test_annotated_output_equals_cli),
    T(test_threads_share_one_rule),
#undef T
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
        fprintf(stderr, "no test named %s\n", argv[1]);
        return 2;
    }
    return failures ? 1 : 0;
}
