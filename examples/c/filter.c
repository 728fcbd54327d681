/*
 * filter: a minimal host for apt_netcon. Reads newline-delimited JSON events
 * on standard input and writes every line to standard output, in order:
 * unchanged, except the network events that complete the rule's sequence,
 * which gain alert fields. Each line keeps its terminator ("\n", "\r\n" or
 * none on a last line); blank lines and records the library cannot read are
 * passed through as they came. Same output as `apt-netcon --quiet`.
 *
 *   cc filter.c $(pkg-config --cflags --libs apt_netcon) -o filter
 *   ./filter [CONFIG_JSON] < events.ndjson > annotated.ndjson
 *
 * Exit status: 0 done, 1 a read/write error, 2 a bad config.
 */
#define _POSIX_C_SOURCE 200809L
#include <apt_netcon.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The same set as Rust's u8::is_ascii_whitespace (no vertical tab). */
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
    /* End of stream: expire what is left, and forward any alert records the
     * flush produced (there are none in this version of the library). */
    aptnc_flush_report report = {.size = sizeof report};
    if (status == 0 && aptnc_flush(det, &report) == APTNC_STATUS_OK && report.alerts_len > 0)
        fwrite(report.alerts, 1, report.alerts_len, stdout);
    if (fflush(stdout) != 0) {
        perror("filter: writing");
        status = 1;
    }
    free(line);
    aptnc_free(det);
    return status;
}
