/*
 * A program built the way a user of the installed library builds it:
 *
 *   cc app.c $(pkg-config --cflags --libs apt_netcon) -o app
 *
 * It checks that the header and the library agree and that a sequence is
 * detected. Exit status 0 on success.
 */
#include <apt_netcon.h>
#include <stdio.h>
#include <string.h>

static const char *const RECORDS[] = {
    "{\"@timestamp\":\"2024-05-01T10:00:00Z\",\"event\":{\"category\":\"process\",\"type\":\"start\","
    "\"action\":\"exec\"},\"host\":{\"id\":\"h1\",\"os\":{\"type\":\"linux\"}},\"process\":{\"name\":"
    "\"sh\",\"entity_id\":\"P1\",\"args\":[\"sh\",\"-c\",\"x\"],\"parent\":{\"name\":\"apt\"}}}",
    "{\"@timestamp\":\"2024-05-01T10:00:01Z\",\"event\":{\"category\":\"network\",\"type\":\"start\","
    "\"action\":\"connection_attempted\"},\"host\":{\"id\":\"h1\",\"os\":{\"type\":\"linux\"}},"
    "\"process\":{\"name\":\"curl\",\"parent\":{\"entity_id\":\"P1\"}},\"destination\":{\"ip\":\"1.1.1.1\"}}",
};

int main(void) {
    if (strcmp(aptnc_version(), APTNC_VERSION) != 0 || aptnc_abi_version() != APTNC_ABI_VERSION) {
        fprintf(stderr, "app: header %s (ABI %d) but library %s (ABI %u)\n", APTNC_VERSION,
                APTNC_ABI_VERSION, aptnc_version(), aptnc_abi_version());
        return 1;
    }
    aptnc_detector *det = NULL;
    aptnc_error *err = NULL;
    if (aptnc_init(NULL, 0, NULL, &det, &err) != APTNC_STATUS_OK) {
        fprintf(stderr, "app: %s\n", aptnc_error_message(err));
        aptnc_error_free(err);
        return 1;
    }
    int annotated = 0;
    for (size_t i = 0; i < sizeof RECORDS / sizeof *RECORDS; i++) {
        const uint8_t *out;
        size_t out_len;
        aptnc_status s = aptnc_filter(det, (const uint8_t *)RECORDS[i], strlen(RECORDS[i]), &out, &out_len);
        if (s == APTNC_STATUS_ANNOTATED) annotated++;
        else if (s != APTNC_STATUS_UNCHANGED) fprintf(stderr, "app: record %zu: %s\n", i, aptnc_status_str(s));
    }
    aptnc_free(det);
    printf("apt_netcon %s (ABI %u): %d of %zu records annotated\n", aptnc_version(), aptnc_abi_version(),
           annotated, sizeof RECORDS / sizeof *RECORDS);
    return annotated == 1 ? 0 : 1;
}
