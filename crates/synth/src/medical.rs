//! Medical information for the synthetic population: dispensed drugs (from claims, arriving
//! about six weeks after dispensing, or from pharmacies the same day) and 特定健診 results for
//! ages 40–74. Each person's records come from a generator of their own, so adding them does
//! not change the rest of the population.

use onshi_api::medical::{CheckupItem, Drug, MedicalRecord};
use onshi_domain::Date;
use onshi_domain::ids::InstitutionCode;

use crate::rng::Rng;

/// (レセ電 drug code, name, unit, quantity per day). Synthetic examples of common outpatient drugs.
const DRUGS: [(&str, &str, &str, f64); 10] = [
    ("610443047", "アムロジピン錠５ｍｇ", "錠", 1.0),
    ("620098801", "ロキソプロフェンナトリウム錠６０ｍｇ", "錠", 3.0),
    ("622224901", "メトホルミン塩酸塩錠２５０ｍｇ", "錠", 2.0),
    ("620004422", "ファモチジン錠２０ｍｇ", "錠", 2.0),
    ("621980601", "ロスバスタチン錠２．５ｍｇ", "錠", 1.0),
    ("620008801", "カルボシステイン錠５００ｍｇ", "錠", 3.0),
    ("622265501", "レバミピド錠１００ｍｇ", "錠", 3.0),
    ("620003855", "酸化マグネシウム錠３３０ｍｇ", "錠", 3.0),
    ("622038501", "テルミサルタン錠４０ｍｇ", "錠", 1.0),
    ("620007736", "ツムラ葛根湯エキス顆粒", "ｇ", 7.5),
];

/// (JLAC10 item code, name, unit, low, high, decimals). Synthetic values in plausible ranges.
const CHECKUP_ITEMS: [(&str, &str, &str, f64, f64, u32); 7] = [
    ("9N001000000000001", "身長", "cm", 145.0, 185.0, 1),
    ("9N006000000000001", "体重", "kg", 40.0, 95.0, 1),
    ("9N016160100000001", "腹囲", "cm", 65.0, 105.0, 1),
    ("9A751000000000001", "収縮期血圧", "mmHg", 100.0, 170.0, 0),
    ("9A761000000000001", "拡張期血圧", "mmHg", 60.0, 105.0, 0),
    ("3D046000001906202", "HbA1c（NGSP値）", "%", 4.8, 8.5, 1),
    ("3F077000002327101", "LDLコレステロール", "mg/dL", 70.0, 190.0, 0),
];

/// Days between dispensing and the claim-based record's arrival: about six weeks.
const CLAIM_LAG_DAYS: (i64, i64) = (35, 50);

fn pharmacy(rng: &mut Rng) -> String {
    let prefecture = 1 + rng.below(47);
    let body = format!("{prefecture:02}401{:04}", 4000 + rng.below(1000));
    InstitutionCode::with_check_digit(&body).map(|c| c.as_str().to_string()).unwrap_or(body)
}

fn value(rng: &mut Rng, low: f64, high: f64, decimals: u32) -> String {
    let scale = 10f64.powi(decimals as i32);
    let steps = ((high - low) * scale) as u64;
    let v = low + rng.below(steps.max(1)) as f64 / scale;
    format!("{v:.prec$}", prec = decimals as usize)
}

/// The records known to the center on `today` for one person.
pub fn records(seed: u64, index: u64, person_ref: &str, birth: Date, today: Date) -> Vec<MedicalRecord> {
    let mut rng = Rng::new(seed ^ 0x6D65_6469_6361_6C00 ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let age = birth.age_on(today);
    let mut out = Vec::new();
    let prescriptions = match age {
        0..=39 => rng.below(2),
        40..=64 => rng.below(4),
        _ => 1 + rng.below(5),
    };
    for _ in 0..prescriptions {
        let (code, name, unit, per_day) = *rng.pick(&DRUGS);
        let dispensed_on = today.add_days(-rng.between(1, 180));
        let days = *rng.pick(&[7u32, 14, 28, 30]);
        let from_claim = rng.chance(700);
        let arrived_on = if from_claim { dispensed_on.add_days(rng.between(CLAIM_LAG_DAYS.0, CLAIM_LAG_DAYS.1)) } else { dispensed_on };
        if arrived_on > today || dispensed_on < birth {
            continue;
        }
        out.push(MedicalRecord::Drug {
            person_ref: person_ref.to_string(),
            drug: Drug {
                drug_code: code.into(),
                drug_name: name.into(),
                quantity: per_day * f64::from(days),
                unit: unit.into(),
                days,
                dispensed_on: dispensed_on.yyyymmdd(),
                dispensed_by: pharmacy(&mut rng),
                source: if from_claim { "claim" } else { "pharmacy" }.into(),
                arrived_on: arrived_on.yyyymmdd(),
            },
        });
    }
    if (40..=74).contains(&age) && rng.chance(600) {
        let examined_on = today.add_days(-rng.between(30, 365));
        let arrived_on = examined_on.add_days(rng.between(30, 90));
        if arrived_on <= today {
            for (code, name, unit, low, high, decimals) in CHECKUP_ITEMS {
                out.push(MedicalRecord::Checkup {
                    person_ref: person_ref.to_string(),
                    item: CheckupItem {
                        item_code: code.into(),
                        item_name: name.into(),
                        value: value(&mut rng, low, high, decimals),
                        unit: unit.into(),
                        examined_on: examined_on.yyyymmdd(),
                        arrived_on: arrived_on.yyyymmdd(),
                    },
                });
            }
        }
    }
    out
}
