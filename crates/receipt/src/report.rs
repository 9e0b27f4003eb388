//! What reception staff read after a check: a summary, a table on the terminal, a CSV for a
//! spreadsheet and a self-contained HTML page with a chart. Japanese first; codes stay stable
//! for scripts.

use std::fmt::Write;

use onshi_domain::Date;

use crate::classify::{Assessment, Class};
use crate::fix::Change;
use crate::uke::{Claim, Severity, UkeFile};

/// Everything a report shows.
pub struct Report<'a> {
    /// The claim file's name as the user gave it.
    pub source: &'a str,
    pub file: &'a UkeFile,
    /// One per claim, in the file's order.
    pub assessments: &'a [Assessment],
    /// Changes written by `--fix`, if it was asked for.
    pub changes: &'a [Change],
    pub checked_on: Date,
}

impl Report<'_> {
    /// Claims per verdict, every verdict listed.
    pub fn counts(&self) -> Vec<(Class, usize)> {
        Class::ALL.iter().map(|&class| (class, self.assessments.iter().filter(|a| a.class == class).count())).collect()
    }

    fn rows(&self) -> impl Iterator<Item = (&Claim, &Assessment)> {
        self.file.claims.iter().zip(self.assessments)
    }

    fn insurer_text(claim: &Claim) -> String {
        claim.insurance.as_ref().map_or_else(|| "（公費単独）".to_string(), |h| h.insurer_text.trim().to_string())
    }

    fn month_text(claim: &Claim) -> String {
        claim.treatment_month.map_or_else(|| "?".to_string(), |m| m.to_string())
    }

    /// A few lines: the file, the totals and the count per verdict.
    pub fn summary_text(&self) -> String {
        let mut out = String::new();
        let billing = self.file.institution.billing_month.map_or_else(|| "?".to_string(), |m| m.to_string());
        let _ = writeln!(
            out,
            "{}: 請求年月 {billing}、レセプト {}件、合計 {}点（{}、点検日 {}）",
            self.source,
            self.file.claims.len(),
            self.file.points_total(),
            self.file.layout.encoding,
            self.checked_on.japanese()
        );
        for (class, count) in self.counts() {
            let _ = writeln!(out, "  {:<14} {count:>6}件  ({})", class.label_ja(), class.code());
        }
        let problems = self.file.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        let warnings = self.file.diagnostics.len() - problems;
        if problems + warnings > 0 {
            let _ = writeln!(out, "  ファイルの指摘: エラー {problems}件、注意 {warnings}件");
        }
        out
    }

    /// One line per claim that needs attention (every claim with `all`).
    pub fn table_text(&self, all: bool) -> String {
        let mut out = String::new();
        for (claim, assessment) in self.rows().filter(|(_, a)| all || !matches!(a.class, Class::Ok | Class::NotChecked)) {
            let _ = writeln!(
                out,
                "No.{:<5} カルテ {:<8} {}  保険者 {:<8} {}  {}",
                claim.receipt_number,
                claim.chart_number,
                claim.name,
                Self::insurer_text(claim),
                Self::month_text(claim),
                assessment.class.label_ja()
            );
            for finding in &assessment.findings {
                let _ = writeln!(out, "    [{}] {}", finding.code, finding.detail_ja);
                let _ = writeln!(out, "      → {}", finding.action_ja);
            }
        }
        out
    }

    /// The changes written by `--fix`, one per line.
    pub fn changes_text(&self) -> String {
        let mut out = String::new();
        for change in self.changes {
            let _ = writeln!(
                out,
                "No.{:<5} {} ({} {}): {:?} → {:?}",
                change.receipt_number, change.position, change.record, change.what, change.before, change.after
            );
        }
        out
    }

    /// A CSV with a byte-order mark, so that spreadsheet programs on Japanese Windows read it as
    /// UTF-8.
    pub fn csv(&self) -> String {
        let mut out = String::from("\u{FEFF}");
        let header = [
            "レセプト番号",
            "カルテ番号",
            "氏名",
            "診療年月",
            "保険者番号",
            "記号",
            "番号",
            "枝番",
            "点数",
            "判定",
            "判定コード",
            "理由コード",
            "内容",
            "対応",
            "新しい資格",
            "自動修正",
        ];
        push_csv_row(&mut out, header.iter().map(|s| s.to_string()));
        for (claim, assessment) in self.rows() {
            let insurance = claim.insurance.as_ref();
            let newer = assessment.newer.as_ref().map_or(String::new(), |c| {
                format!("{} {} {} {}", c.insurer_number, c.symbol.as_deref().unwrap_or("-"), c.number, c.branch)
            });
            let fixed = self.changes.iter().any(|c| c.receipt_number == claim.receipt_number);
            push_csv_row(
                &mut out,
                [
                    claim.receipt_number.clone(),
                    claim.chart_number.clone(),
                    claim.name.clone(),
                    Self::month_text(claim),
                    Self::insurer_text(claim),
                    insurance.map_or(String::new(), |h| h.symbol.clone()),
                    insurance.map_or(String::new(), |h| h.number.clone()),
                    claim.branch().unwrap_or("").to_string(),
                    claim.points.to_string(),
                    assessment.class.label_ja().to_string(),
                    assessment.class.code().to_string(),
                    assessment.findings.iter().map(|f| f.code).collect::<Vec<_>>().join(" "),
                    assessment.findings.iter().map(|f| f.detail_ja.as_str()).collect::<Vec<_>>().join(" / "),
                    assessment.findings.iter().map(|f| f.action_ja.as_str()).collect::<Vec<_>>().join(" / "),
                    newer,
                    if fixed { "修正済み" } else { "" }.to_string(),
                ]
                .into_iter(),
            );
        }
        out
    }

    /// A self-contained page (no scripts, no external files) that prints well.
    pub fn html(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "<!doctype html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\"><title>レセプト資格点検 {}</title>\n<style>{STYLE}</style></head><body>\n",
            escape(self.source)
        );
        let _ = writeln!(out, "<h1>レセプト資格点検</h1>");
        let _ = writeln!(
            out,
            "<p>{}、レセプト {}件、合計 {}点。点検日 {}。</p>",
            escape(self.source),
            self.file.claims.len(),
            self.file.points_total(),
            self.checked_on.japanese()
        );
        self.html_chart(&mut out);
        self.html_diagnostics(&mut out);
        self.html_table(&mut out);
        self.html_changes(&mut out);
        out.push_str("</body></html>\n");
        out
    }

    fn html_chart(&self, out: &mut String) {
        let counts = self.counts();
        let total = counts.iter().map(|(_, n)| n).sum::<usize>().max(1);
        let _ = writeln!(
            out,
            "<h2>判定の内訳</h2>\n<svg class=\"chart\" viewBox=\"0 0 640 {}\" role=\"img\" aria-label=\"判定の内訳\">",
            counts.len() * 28
        );
        for (row, (class, count)) in counts.iter().enumerate() {
            let y = row * 28;
            let width = (*count as f64 / total as f64 * 400.0).round();
            let _ = writeln!(
                out,
                "<text x=\"0\" y=\"{}\">{}</text><rect class=\"{}\" x=\"190\" y=\"{}\" width=\"{width}\" height=\"20\"/><text x=\"{}\" y=\"{}\">{count}件</text>",
                y + 15,
                class.label_ja(),
                class.code(),
                y + 1,
                200.0 + width,
                y + 15
            );
        }
        out.push_str("</svg>\n");
    }

    fn html_diagnostics(&self, out: &mut String) {
        if self.file.diagnostics.is_empty() {
            return;
        }
        out.push_str("<h2>ファイルの指摘</h2>\n<ul>\n");
        for diagnostic in &self.file.diagnostics {
            let class = if diagnostic.severity == Severity::Error { "bounce" } else { "pending" };
            let _ = writeln!(out, "<li class=\"{class}\">{}</li>", escape(&diagnostic.to_string()));
        }
        out.push_str("</ul>\n");
    }

    fn html_table(&self, out: &mut String) {
        out.push_str("<h2>レセプトごとの判定</h2>\n<table><thead><tr><th>No.</th><th>カルテ</th><th>氏名</th><th>診療年月</th><th>保険者番号・記号・番号・枝番</th><th>判定</th><th>内容と対応</th></tr></thead><tbody>\n");
        for (claim, assessment) in self.rows() {
            let numbers = claim.insurance.as_ref().map_or_else(
                || "（公費単独）".to_string(),
                |h| format!("{} {} {} {}", h.insurer_text.trim(), h.symbol, h.number, claim.branch().unwrap_or("（枝番なし）")),
            );
            let mut reasons = String::new();
            for finding in &assessment.findings {
                let _ = write!(reasons, "<p>{}<br><b>→ {}</b></p>", escape(&finding.detail_ja), escape(&finding.action_ja));
            }
            let _ = writeln!(
                out,
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{reasons}</td></tr>",
                assessment.class.code(),
                escape(&claim.receipt_number),
                escape(&claim.chart_number),
                escape(&claim.name),
                Self::month_text(claim),
                escape(&numbers),
                assessment.class.label_ja()
            );
        }
        out.push_str("</tbody></table>\n");
    }

    fn html_changes(&self, out: &mut String) {
        if self.changes.is_empty() {
            return;
        }
        out.push_str("<h2>自動修正した箇所</h2>\n<table><thead><tr><th>No.</th><th>位置</th><th>項目</th><th>修正前</th><th>修正後</th></tr></thead><tbody>\n");
        for change in self.changes {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td></tr>",
                escape(&change.receipt_number),
                escape(&change.position.to_string()),
                escape(&change.record),
                escape(&change.what),
                escape(&change.before),
                escape(&change.after)
            );
        }
        out.push_str("</tbody></table>\n");
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;width:100%}\
th,td{border:1px solid #bbb;padding:.3em .5em;vertical-align:top;text-align:left}th{background:#eee}\
td p{margin:.2em 0}.chart{max-width:640px;font-size:13px}rect.ok{fill:#3a7}rect.not_checked{fill:#999}\
rect.reroute{fill:#37c}rect.pending{fill:#e90}rect.bounce{fill:#d33}tr.bounce,li.bounce{background:#fde8e8}\
tr.pending,li.pending{background:#fff4dc}tr.reroute{background:#e6f0fb}@media print{tr{break-inside:avoid}}";

pub use onshi_domain::markup::escape;

fn push_csv_row(out: &mut String, fields: impl Iterator<Item = String>) {
    let mut first = true;
    for field in fields {
        if !first {
            out.push(',');
        }
        first = false;
        if field.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&field);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_and_csv_quotes_what_needs_it() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        let mut out = String::new();
        push_csv_row(&mut out, ["a,b".to_string(), "say \"hi\"".to_string(), "plain".to_string()].into_iter());
        assert_eq!(out, "\"a,b\",\"say \"\"hi\"\"\",plain\r\n");
    }
}
