//! Generates the synthetic input set of the hospital examples (`examples/hospital/data/`) and
//! the development-only keys (`examples/hospital/secrets/`), deterministically from a fixed seed:
//!
//! ```sh
//! cargo run -p medplat --example gen_hospital_data -- examples/hospital
//! ```
//!
//! Every person is invented. Identifiers look real on purpose (身份证号 with valid check digits,
//! mobile numbers, 住院号) so the de-identification steps have something to remove. A few
//! records are broken on purpose (bad check digits, broken quoting, invalid JSON, a truncated
//! HL7 segment, bytes invalid in GB18030) to show quarantine at work.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use medplat::api::data_source::Charset;
use medplat::worker::charset::encode;
use medplat::worker::identifiers::resident_id_check_char;

/// A small deterministic generator (SplitMix64): the same seed gives the same files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀英", "桂英", "建华",
];
const REGIONS: &[(&str, &str)] = &[
    ("110105", "北京市朝阳区建国路"),
    ("110108", "北京市海淀区中关村大街"),
    ("310104", "上海市徐汇区漕溪北路"),
    ("440305", "深圳市南山区科技园路"),
];
const TESTS: &[(&str, &str, &str, &str, f64, f64)] = &[
    ("GLU", "葡萄糖", "mmol/L", "3.9-6.1", 3.5, 9.0),
    ("HGB", "血红蛋白", "g/L", "115-150", 90.0, 170.0),
    ("WBC", "白细胞计数", "10^9/L", "3.5-9.5", 2.5, 14.0),
    ("CREA", "肌酐", "umol/L", "41-81", 35.0, 160.0),
    ("ALT", "丙氨酸氨基转移酶", "U/L", "7-40", 5.0, 120.0),
];

struct Person {
    patient_id: String,
    inpatient_no: String,
    name: String,
    id_card: String,
    phone: String,
    gender: &'static str,
    birth: (i32, u32, u32),
    region: (&'static str, &'static str),
}

fn resident_id(region: &str, birth: (i32, u32, u32), seq: u64, female: bool) -> String {
    // The 17th digit is odd for men and even for women (GB 11643).
    let order = (seq % 99) * 10 + if female { 2 } else { 1 };
    let first17 = format!(
        "{region}{:04}{:02}{:02}{order:03}",
        birth.0, birth.1, birth.2
    );
    let check = resident_id_check_char(first17.as_bytes())
        .map(char::from)
        .unwrap_or('0');
    format!("{first17}{check}")
}

fn person(
    rng: &mut Rng,
    i: u64,
    gender: &'static str,
    birth: (i32, u32, u32),
    region: (&'static str, &'static str),
) -> Person {
    let name = format!("{}{}", rng.pick(SURNAMES), rng.pick(GIVEN));
    Person {
        patient_id: format!("P{:06}", 100_000 + i),
        inpatient_no: format!("ZY{:07}", 2_026_000 + i),
        name,
        id_card: resident_id(region.0, birth, i, gender == "F"),
        phone: format!(
            "1{}{:09}",
            rng.pick(&[3, 5, 7, 8, 9]),
            rng.below(1_000_000_000)
        ),
        gender,
        birth,
        region,
    }
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// LIS results: GB18030 CSV with duplicates (re-reported results), messy codes and dates.
fn lis(rng: &mut Rng, people: &[Person], out: &Path) {
    for (day, file) in [(26u32, "2026-11-26.csv"), (27, "2026-11-27.csv")] {
        let mut csv = String::from(
            "specimen_id,patient_id,inpatient_no,patient_name,id_card,gender,birth_date,test_code,test_name,result_value,unit,reference_range,abnormal_flag,collected_at,reported_at,dept_code\r\n",
        );
        for (i, p) in people.iter().enumerate().take(40) {
            let specimen = format!("S{day}{i:04}");
            for t in 0..3 {
                let (code, name, unit, range, lo, hi) = TESTS[(i + t) % TESTS.len()];
                let value = lo + (hi - lo) * (rng.below(1000) as f64 / 1000.0);
                let value = if rng.below(25) == 0 {
                    "未测".to_string()
                } else {
                    format!("{value:.1}")
                };
                let collected = format!(
                    "202611{day:02}{:02}{:02}00",
                    6 + rng.below(3),
                    rng.below(60)
                );
                let reported = format!(
                    "2026-11-{day:02} {:02}:{:02}:00",
                    10 + rng.below(4),
                    rng.below(60)
                );
                let code_messy = if rng.below(4) == 0 {
                    format!(" {code} ")
                } else {
                    code.to_string()
                };
                let id = if i % 17 == 5 {
                    format!("{}0", &p.id_card[..17])
                } else {
                    p.id_card.clone()
                };
                let id = if id.ends_with('X') && i % 2 == 0 {
                    id.to_lowercase()
                } else {
                    id
                };
                let line = format!(
                    "{specimen},{},{},{} ,{id},{},{:04}{:02}{:02},{code_messy},{name},{value},{unit},{range},,{collected},{reported},D{:02}\r\n",
                    p.patient_id,
                    p.inpatient_no,
                    p.name,
                    p.gender,
                    p.birth.0,
                    p.birth.1,
                    p.birth.2,
                    1 + i % 6
                );
                csv.push_str(&line);
                // A corrected result reported later for the same specimen and test: dedupe keeps it.
                if t == 0 && i % 10 == 3 {
                    let later = format!("2026-11-{day:02} 16:{:02}:00", rng.below(60));
                    csv.push_str(&line.replace(
                        &format!(",{collected},{reported},"),
                        &format!(",{collected},{later},"),
                    ));
                }
            }
        }
        // A row with broken quoting: quarantined, the file goes on.
        csv.push_str("S99BAD,P999999,ZY0000000,\"未闭合引号,110105194912310020,M,19491231,GLU,葡萄糖,5.5,mmol/L,3.9-6.1,,20261127080000,2026-11-27 10:00:00,D01\r\n");
        let mut bytes = encode(&csv, Charset::Gb18030).into_owned();
        if day == 27 {
            // One row whose name holds bytes that are not valid GB18030.
            bytes.extend_from_slice(b"S99ENC,P999998,ZY0000001,\x81\x20,110105194912310020,F,19491231,HGB,x,120,g/L,115-150,,20261127080000,2026-11-27 10:00:00,D02\r\n");
        }
        write(&out.join("raw-l4/lis/results").join(file), &bytes);
    }
}

/// EMR discharge summaries: UTF-8 NDJSON, clustered so the research extract's k=5 gate passes
/// with a few records suppressed.
fn emr(rng: &mut Rng, out: &Path) -> usize {
    let mut text = String::new();
    let mut n = 0u64;
    // 24 profiles × 12 patients share their generalised quasi identifiers; 8 outliers do not.
    let mut profiles = Vec::new();
    for (g, gender) in ["M", "F"].iter().enumerate() {
        for (b, birth_year) in [1948, 1956, 1963, 1971, 1979, 1987].iter().enumerate() {
            for (r, region) in REGIONS.iter().enumerate().take(2) {
                let _ = (g, b, r);
                profiles.push((*gender, *birth_year, *region, 12u64));
            }
        }
    }
    let outliers = [
        ("F", 1931, REGIONS[2], 1u64),
        ("M", 1999, REGIONS[3], 1),
        ("F", 2001, REGIONS[3], 1),
        ("M", 1940, REGIONS[2], 1),
        ("F", 1994, REGIONS[2], 1),
        ("M", 1934, REGIONS[3], 1),
        ("F", 1938, REGIONS[3], 1),
        ("M", 1996, REGIONS[2], 1),
    ];
    const DX: &[(&str, &str)] = &[
        ("I21.9", "急性心肌梗死"),
        ("I50.0", "充血性心力衰竭"),
        ("I48.x", "心房颤动"),
        ("I20.0", "不稳定型心绞痛"),
        ("I10.x", "原发性高血压"),
    ];
    for (gender, year, region, count) in profiles.into_iter().chain(outliers) {
        for _ in 0..count {
            n += 1;
            let birth = (year, 1 + rng.below(3) as u32, 1 + rng.below(28) as u32);
            let p = person(rng, 500 + n, gender, birth, region);
            let adm_month = 4 + rng.below(6) as u32;
            let adm_day = 1 + rng.below(20) as u32;
            let los = 3 + rng.below(9) as u32;
            let (dx, dx_name) = *rng.pick(DX);
            let mut id_card = p.id_card.clone();
            if n % 97 == 13 {
                id_card.replace_range(17..18, if id_card.ends_with('0') { "1" } else { "0" });
            }
            let rec = serde_json::json!({
                "patient_id": p.patient_id,
                "inpatient_no": p.inpatient_no,
                "name": p.name,
                "id_card": id_card,
                "phone": p.phone,
                "address": format!("{}{}号", p.region.1, 1 + rng.below(300)),
                "gender": p.gender,
                "birth_date": format!("{:04}-{:02}-{:02}", p.birth.0, p.birth.1, p.birth.2),
                "age": 2026 - p.birth.0,
                "region_code": p.region.0,
                "admission_date": format!("2026-{adm_month:02}-{adm_day:02}"),
                "discharge_date": format!("2026-{adm_month:02}-{:02}", adm_day + los),
                "los_days": los,
                "dept_code": "CARD",
                "diagnosis_code": dx,
                "diagnosis_name": dx_name,
                "total_cost": (8000 + rng.below(40000)) as f64 + 0.5,
                "insurance_type": *rng.pick(&["城镇职工医保", "城乡居民医保", "自费"]),
            });
            let _ = writeln!(text, "{rec}");
        }
    }
    text.push_str("{\"patient_id\": \"P999999\", \"name\": \"截断的记录\"\n");
    write(
        &out.join("raw-l4/emr/discharge/2026-11.ndjson"),
        text.as_bytes(),
    );
    n as usize
}

/// ADT messages landed by the MLLP listener: GB18030 HL7 v2, one file per message.
fn adt(rng: &mut Rng, people: &[Person], out: &Path) {
    let dir = out.join("raw-l4/adt/inbox");
    for (i, p) in people.iter().enumerate().take(24) {
        let event = ["A01", "A02", "A03", "A08"][i % 4];
        let admit = format!(
            "202611{:02}{:02}{:02}00",
            20 + i % 7,
            8 + rng.below(10),
            rng.below(60)
        );
        let msg = format!(
            "MSH|^~\\&|HIS|HOSP|MEDPLAT|HOSP|20261128{:02}{:02}00||ADT^{event}^ADT_A01|MSG{i:05}|P|2.5|||||CHN|GB18030\r\
EVN|{event}|20261128{:02}{:02}00\r\
PID|1||{}^^^HIS^PI~{}^^^MPI^NNCHN||{}^{}||{:04}{:02}{:02}|{}|||{}\\F\\{}号^^{}||{}\r\
PV1|1|I|CARD^{:02}^01||||||||||||||||{}|||||||||||||||||||||||||{admit}\r",
            9 + i / 60,
            i % 60,
            9 + i / 60,
            i % 60,
            p.patient_id,
            p.id_card,
            p.name.chars().next().map(String::from).unwrap_or_default(),
            p.name.chars().skip(1).collect::<String>(),
            p.birth.0,
            p.birth.1,
            p.birth.2,
            p.gender,
            p.region.1,
            1 + rng.below(300),
            p.region.0,
            p.phone,
            1 + i % 30,
            p.inpatient_no,
        );
        write(
            &dir.join(format!("20261128T09{i:02}00-{i:04}.hl7")),
            &encode(&msg, Charset::Gb18030),
        );
    }
    // A message whose PID segment was cut off in transit: quarantined.
    write(
        &dir.join("20261128T095900-9999.hl7"),
        &encode(
            "MSH|^~\\&|HIS|HOSP|MEDPLAT|HOSP|20261128095900||ADT^A08|MSG99999|P|2.5\rEVN|A08|20261128095900\rPI\r",
            Charset::Gb18030,
        ),
    );
}

fn secrets(root: &Path) {
    let key = |label: &str| {
        // Development keys derived from their names: public, reproducible, useless in production.
        let mut rng = Rng(label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }));
        (0..32)
            .map(|_| format!("{:02x}", rng.below(256)))
            .collect::<String>()
    };
    for s in ["lab-deid-keys", "research-deid-keys"] {
        for k in ["hmac-key", "encryption-key", "date-shift-key"] {
            write(
                &root.join(s).join(k),
                format!("{}\n", key(&format!("{s}/{k}"))).as_bytes(),
            );
        }
    }
    write(
        &root.join("linkage-key/hmac-key"),
        format!("{}\n", key("linkage-key/hmac-key")).as_bytes(),
    );
    write(&root.join("his-db-readonly/username"), b"his_readonly\n");
    write(
        &root.join("his-db-readonly/password"),
        b"dev-only-not-a-real-password\n",
    );
    write(
        &root.join("README.md"),
        "# Development-only keys — never use them with real data\n\n\
These files stand in for the Kubernetes Secrets the example pipelines reference, laid out as\n\
`<secret>/<key>` for `medplat worker run --secrets examples/hospital/secrets`. They are public,\n\
derived from their own names by `operator/examples/gen_hospital_data.rs`, and protect nothing:\n\
anyone can recompute every pseudonym made with them. In a cluster, create real Secrets with\n\
random keys (e.g. `openssl rand -hex 32`) and keep them out of Git.\n"
            .as_bytes(),
    );
}

fn main() {
    let root: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("examples/hospital"));
    let data = root.join("data");
    let _ = std::fs::remove_dir_all(&data);
    let mut rng = Rng(20_261_128);
    let people: Vec<Person> = (0..60)
        .map(|i| {
            let gender = if i % 2 == 0 { "M" } else { "F" };
            let birth = (
                1940 + (rng.below(60) as i32),
                1 + rng.below(12) as u32,
                1 + rng.below(28) as u32,
            );
            let region = *rng.pick(REGIONS);
            person(&mut rng, i, gender, birth, region)
        })
        .collect();
    lis(&mut rng, &people, &data);
    let n = emr(&mut rng, &data);
    adt(&mut rng, &people, &data);
    secrets(&root.join("secrets"));
    eprintln!(
        "wrote {} (EMR discharge records: {n}) and {}",
        data.display(),
        root.join("secrets").display()
    );
}
