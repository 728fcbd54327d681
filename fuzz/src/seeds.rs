//! Seeds: the corpus each target starts from.

use super::{chunk_of, flatten, msgpack, sample_lines, SAMPLE};
use apt_netcon::Rule;
use serde_json::Value;
use std::path::Path;

fn rule_texts() -> Vec<String> {
    let mut v: Vec<String> = ["apt_netcon_v5", "apt_netcon_v11"]
        .iter()
        .map(|n| Rule::builtin(n).unwrap().query_text().to_string())
        .collect();
    v.push(r#"process where process.name : ("sh*", "ba?h") and not cidrMatch(source.ip, "10.0.0.0/8", "::1")"#.into());
    v.push(
        r#"sequence by host.id with maxspan=2m [process where startsWith~(process.name, "A") or process.pid >= 7] by process.entity_id [network where stringContains(destination.domain, "x") and destination.port in (80, 443)] by process.parent.entity_id"#
            .into(),
    );
    v.push(
        r#"any where `weird field`.x like~ ("*a*", ?"raw\str") and wildcard(a.b, "x*") and endsWith(c, """tri"ple""")"#
            .into(),
    );
    v.push("process where x == null and not y != null and z < -1.5e3 // comment\n /* block */".into());
    v.push("sequence [process where true] until [process where false]".into());
    v
}

/// Write the seed corpus of `target` into `dir` (created if needed): the
/// bundled sample's records and the built-in rules' text, in the target's
/// input format.
pub fn write_seeds(target: &str, dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    let lines = sample_lines();
    let values: Vec<Value> = lines.iter().map(|l| serde_json::from_slice(l).unwrap()).collect();
    match target {
        "rule_parser" => {
            seeds.extend(rule_texts().into_iter().map(String::into_bytes));
        }
        "json_record" => {
            seeds.push(SAMPLE.to_vec());
            seeds.extend(lines.iter().map(|l| l.to_vec()));
            seeds.extend(values.iter().map(|v| flatten(v).to_string().into_bytes()));
            seeds.push(br#"{"a":1,"a":[1,{"b":null}],"@timestamp":"9999-12-31T23:59:59Z"}"#.to_vec());
        }
        "msgpack_chunk" => {
            // mode byte 0: the rest is a whole chunk
            let mut all = vec![0u8];
            all.extend(chunk_of(&values.iter().map(msgpack).collect::<Vec<_>>()));
            seeds.push(all);
            for v in &values {
                for mode in 0..4u8 {
                    let mut s = vec![mode];
                    if mode == 0 {
                        s.extend(chunk_of(&[msgpack(v)]));
                    } else {
                        s.extend(msgpack(v));
                    }
                    seeds.push(s);
                }
            }
        }
        "c_abi" => {
            // op 3 init (default config), op 6 filter sample line k, op 10
            // flush, op 11 stats, op 4 free.
            let mut all = vec![3, 0, 0];
            for k in 0..lines.len() as u8 {
                all.extend_from_slice(&[6, 0, k]);
            }
            all.extend_from_slice(&[10, 0, 6, 11, 0, 6, 4, 0]);
            seeds.push(all);
            // a compiled rule, a second detector on it, MessagePack chunks
            seeds.push(vec![1, 0, 0, 3, 0x10, 1, 9, 1, 2, 5, 0, 6, 1, 10, 9, 1, 2, 2, 0, 3, 13, 1, 2, 3, 4, 12, 0]);
            // generated events through both paths
            let mut gen = vec![3, 2, 0, 3, 3, 0x11];
            for i in 0..40u8 {
                gen.extend_from_slice(&[7, i & 1, i.wrapping_mul(37), 0, 0, i, 2, 3, 0, 0]);
            }
            seeds.push(gen);
            // raw records
            let mut raw = vec![3, 0, 0];
            for l in lines.iter().take(12) {
                raw.extend_from_slice(&[5, 0]);
                raw.extend_from_slice(&(l.len() as u16).to_le_bytes());
                raw.extend_from_slice(l);
            }
            seeds.push(raw);
        }
        other => return Err(std::io::Error::other(format!("unknown target {other}"))),
    }
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), s)?;
    }
    Ok(seeds.len())
}

/// Called from each target's `init`: when `APT_NETCON_FUZZ_SEEDS` names a
/// directory, write the target's seeds there (the runner does this with
/// `-runs=0` before fuzzing).
pub fn seeds_from_env(target: &str) {
    if let Some(dir) = std::env::var_os("APT_NETCON_FUZZ_SEEDS") {
        let n = write_seeds(target, Path::new(&dir)).expect("writing seeds");
        eprintln!("apt-netcon-fuzz: wrote {n} seeds for {target}");
    }
}
