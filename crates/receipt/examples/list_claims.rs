fn main() {
    let path = std::env::args().nth(1).map(std::path::PathBuf::from).unwrap_or_else(onshi_receipt::fixtures::sample_uke);
    let file = onshi_receipt::uke::read(&std::fs::read(path).unwrap()).unwrap();
    for c in &file.claims {
        let h = c.insurance.as_ref();
        println!(
            "{} {} ho={:?} {:?} {:?} birth={:?} br={:?} days={:?} kind={} ko={:?}",
            c.receipt_number,
            c.treatment_month.map(|m| m.to_string()).unwrap_or_default(),
            h.map(|h| h.insurer_text.clone()),
            h.map(|h| h.symbol.clone()),
            h.map(|h| h.number.clone()),
            c.birth_date.map(|d| d.yyyymmdd()),
            c.branch(),
            c.care_days,
            c.claim_kind,
            c.public_expenses.iter().map(|k| k.payer_text.clone()).collect::<Vec<_>>()
        );
    }
}
