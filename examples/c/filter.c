/*
 * filter: a minimal host for apt_netcon. Reads newline-delimited JSON events
 * on standard input and writes every line to standard output, in order:
 * unchanged, except the network events that complete the rule's sequence,
 * which gain alert fields. Each line keeps its terminator ("\n", "\r\n" or
 * none on a last line); blank lines and records the library cannot read are
 * passed through as they came. Standalone alert records (a rule pack, or
 * max_lateness above 0) follow the record that released them, one per line.
 * Same output as `apt-netcon --quiet` (with the same config).
 *
 *   cc filter.c $(pkg-config --cflags --libs apt_netcon) -o filter
 *   ./filter [CONFIG_JSON] < events.ndjson > annotated.ndjson
 *   ./filter '{"rules_dir": "rules"}' < events.ndjson > with_alerts.ndjson
 *
 * Exit status: 0 done, 1 a read/write error, 2 a bad config.
 */
#define _POSIX_C_SOURCE 200809L
#include <apt_netcon.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The same set as Rust's u8::is_ascii_whitespace (no vertical tab). */
/* Write the standalone alerts that came since the last call (a rule pack's
 * alerts; with max_lateness, the alerts a record released): aptnc_flush
 * hands them over when aptnc_get_stats' standalone_alerts moved, or
 * aptnc_finish at the end (`finish`). Returns 0 on a write error. */
static int forward_alerts(aptnc_detector *det, uint64_t *seen, int finish) {
    aptnc_stats st = {.size = sizeof st};
    if (!finish && (aptnc_get_stats(det, &st) != APTNC_STATUS_OK || st.standalone_alerts == *seen))
        return 1;
    if (!finish) *seen = st.standalone_alerts;
    aptnc_flush_report report = {.size = sizeof report};
    aptnc_status s = finish ? aptnc_finish(det, &report) : aptnc_flush(det, &report);
    if (s != APTNC_STATUS_OK || report.alerts_len == 0) return 1;
    return fwrite(report.alerts, 1, report.alerts_len, stdout) == report.alerts_len;
}

static int is_blank(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\f' && c != '\r') return 0;
    }
    return 1;
}

int main(int argc, char **argv) {
    const char *config = argc > 1 ? argv[1] : NULL;
    aptnc_detector *det = NULL;
    aptnc_error *err = NULL;
    if (aptnc_init((const uint8_t *)config, config ? strlen(config) : 0, NULL, &det, &err) !=
        APTNC_STATUS_OK) {
        fprintf(stderr, "filter: %s\n", aptnc_error_message(err));
        aptnc_error_free(err);
        return 2;
    }

    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int status = 0;
    uint64_t seen = 0; /* standalone alerts forwarded so far */
    while ((n = getline(&line, &cap, stdin)) > 0) {
        /* The record is the line without its "\n" or "\r\n". */
        size_t end = (size_t)n;
        if (line[end - 1] == '\n') {
            end--;
            if (end > 0 && line[end - 1] == '\r') end--;
        }
        const uint8_t *out = NULL;
        size_t out_len = 0;
        int ok;
        if (!is_blank(line, end) &&
            aptnc_filter(det, (const uint8_t *)line, end, &out, &out_len) == APTNC_STATUS_ANNOTATED) {
            /* `out` belongs to the detector until the next call: write it now. */
            ok = fwrite(out, 1, out_len, stdout) == out_len &&
                 fwrite(line + end, 1, (size_t)n - end, stdout) == (size_t)n - end;
        } else {
            /* Unchanged, blank, or an error: the line as it came. */
            ok = fwrite(line, 1, (size_t)n, stdout) == (size_t)n;
        }
        if (ok) ok = forward_alerts(det, &seen, 0);
        if (!ok) {
            perror("filter: writing");
            status = 1;
            break;
        }
    }
    if (ferror(stdin)) {
        perror("filter: reading");
        status = 1;
    }
    /* End of stream: release what max_lateness still holds, and forward the
     * alert records that gives. */
    if (status == 0 && !forward_alerts(det, &seen, 1)) {
        perror("filter: writing");
        status = 1;
    }
    if (fflush(stdout) != 0) {
        perror("filter: writing");
        status = 1;
    }
    free(line);
    aptnc_free(det);
    return status;
}
