//! `YZKsiquc01req_` (薬剤情報) and `TKKsiquc01req_` (特定健診) answered from the center under the
//! patient's consent, in the XML shape public clients read (DOMAIN.md §2.4): `ResultCode` 1 on
//! success, otherwise the reason in `MessageContents`. Not queued when the line is down: the
//! answer says to ask again, because medical information is only shown under a live consent.

use std::collections::BTreeMap;

use onshi_api::medical::{CheckupItem, Drug, MedicalAnswer, MedicalQuery};

use crate::gateway::Gateway;
use crate::request::{Header, Kind, MedicalRequest};
use crate::xml::{Charset, XmlWriter};

pub async fn answer(gateway: &Gateway, header: &Header, kind: Kind, patient: &MedicalRequest, now: &str, charset: Charset) -> Vec<u8> {
    let query = MedicalQuery {
        insurer_number: patient.insurer_number.clone(),
        symbol: patient.symbol.clone(),
        number: patient.number.clone(),
        branch: patient.branch.clone(),
    };
    let mut w = XmlWriter::new(charset);
    w.open("XmlMsg").open("MessageHeader");
    w.leaf("ProcessExecutionTime", now);
    w.leaf("MedicalInstitutionCode", header.institution_code.as_deref().unwrap_or(&gateway.config.institution_code));
    w.opt("ArbitraryFileIdentifier", header.arbitrary_file_identifier.as_deref());
    w.leaf("CharacterCodeIdentifier", charset.identifier());
    let result = if kind == Kind::Drugs {
        gateway.client.post_json::<_, MedicalAnswer<Drug>>("/medical/drugs", &query).await.map(Shown::Drugs)
    } else {
        gateway.client.post_json::<_, MedicalAnswer<CheckupItem>>("/medical/checkups", &query).await.map(Shown::Checkups)
    };
    match result {
        Err(error) => {
            let message = match (Gateway::offline_reason(&error), &error) {
                (Some(reason), _) => format!("{reason}。回線復旧後にもう一度依頼してください。"),
                (None, onshi_api::client::ClientError::Refused { body, .. }) => body.error.reception_ja.clone(),
                (None, other) => format!("センターの応答を読めませんでした: {other}"),
            };
            w.leaf("ResultCode", "2");
            w.leaf("MessageContents", &message);
            w.close().open("MessageBody");
        }
        Ok(shown) => {
            w.leaf("ResultCode", "1");
            w.leaf("MessageContents", &shown.freshness());
            w.close().open("MessageBody");
            match shown {
                Shown::Drugs(a) => write_drugs(&mut w, &a.records),
                Shown::Checkups(a) => write_checkups(&mut w, &a.records),
            }
        }
    }
    w.finish()
}

enum Shown {
    Drugs(MedicalAnswer<Drug>),
    Checkups(MedicalAnswer<CheckupItem>),
}

impl Shown {
    /// How old the newest record is: claim-based drug records arrive about six weeks late.
    fn freshness(&self) -> String {
        let (newest, age) = match self {
            Shown::Drugs(a) => (&a.newest_arrived_on, a.newest_age_days),
            Shown::Checkups(a) => (&a.newest_arrived_on, a.newest_age_days),
        };
        match (newest, age) {
            (Some(on), Some(days)) => format!("最新の記録の到着日 {}（{days}日前）", onshi_domain::date::japanese_text(on)),
            _ => "記録はありません".to_string(),
        }
    }
}

/// 調剤 by month, dispensing institution and date (`CzDiInf/CzDiMonthInf/…/DrugInf`).
fn write_drugs(w: &mut XmlWriter, drugs: &[Drug]) {
    let mut months: BTreeMap<(String, String), BTreeMap<String, Vec<&Drug>>> = BTreeMap::new();
    for d in drugs {
        let month = d.dispensed_on.get(..6).unwrap_or_default().to_string();
        months.entry((month, d.dispensed_by.clone())).or_default().entry(d.dispensed_on.clone()).or_default().push(d);
    }
    w.open("CzDiInf");
    for ((month, by), days) in months {
        w.open("CzDiMonthInf");
        w.leaf("CzMonth", &month);
        w.leaf("CzDiHCd", &by);
        w.open("CzDiDateInfs");
        for (day, drugs) in days {
            w.open("CzDiDateInf");
            w.leaf("CzDiDate", &day);
            w.open("CzDrugInfs");
            for d in drugs {
                w.open("CzDrugInf");
                w.leaf("CzDrugC", &d.drug_code);
                w.leaf("CzDrugN", &d.drug_name);
                w.leaf("CzQua1", &d.quantity.to_string());
                w.leaf("CzUnit", &d.unit);
                w.leaf("CzTimes", &d.days.to_string());
                w.leaf("CzMeTrIdCl", if d.source == "claim" { "1" } else { "2" });
                w.close();
            }
            w.close().close();
        }
        w.close().close();
    }
    w.close();
}

/// 特定健診 by examination day (`SpecificHealthCheckupInfo`).
fn write_checkups(w: &mut XmlWriter, items: &[CheckupItem]) {
    let mut days: BTreeMap<&str, Vec<&CheckupItem>> = BTreeMap::new();
    for item in items {
        days.entry(item.examined_on.as_str()).or_default().push(item);
    }
    for (day, items) in days {
        w.open("SpecificHealthCheckupInfo");
        w.leaf("EffectiveTime", day);
        w.open("HealthCheckupResultAndQuestionInfos");
        for item in items {
            w.open("HealthCheckupResultAndQuestionInfo");
            w.leaf("ItemCode", &item.item_code);
            w.leaf("ItemName", &item.item_name);
            w.leaf("DataValue", &item.value);
            w.leaf("Unit", &item.unit);
            w.close();
        }
        w.close().close();
    }
}
