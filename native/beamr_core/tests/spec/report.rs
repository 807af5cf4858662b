//! Directive results: how a per-file child process reports them (one tagged JSON line per
//! directive on stdout, so a crash still leaves everything up to it), and the summary the
//! parent prints.

use std::io::Write;

use serde::{Deserialize, Serialize};

/// Marks result lines, so anything else a child prints on stdout is ignored.
const TAG: &str = "SPEC-RESULT ";

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Excluded,
}

#[derive(Serialize, Deserialize)]
pub struct Record {
    pub line: u32,
    pub kind: String,
    pub status: Status,
    /// Why it failed or was excluded.
    pub detail: String,
    /// A tolerated difference, e.g. a trap message worded differently.
    pub note: Option<String>,
}

pub fn emit(record: &Record) {
    let json = serde_json::to_string(record).expect("record serializes");
    let mut out = std::io::stdout().lock();
    // Flushed per record: if the process dies, the parent still knows how far it got.
    writeln!(out, "{TAG}{json}")
        .and_then(|_| out.flush())
        .expect("stdout is writable");
}

pub fn parse(line: &str) -> Option<Record> {
    serde_json::from_str(line.strip_prefix(TAG)?).ok()
}

/// Everything one file produced.
pub struct FileReport {
    pub file: String,
    pub records: Vec<Record>,
}

impl FileReport {
    fn count(&self, status: Status) -> usize {
        self.records.iter().filter(|r| r.status == status).count()
    }
}

/// Prints the per-file table, then failures, exclusions and notes; true if nothing failed.
pub fn summarize(reports: &[FileReport]) -> bool {
    let width = reports
        .iter()
        .map(|r| r.file.len())
        .max()
        .unwrap_or(4)
        .max(5);
    println!(
        "\n{:<width$} {:>7} {:>7} {:>9}",
        "file", "passed", "failed", "excluded"
    );
    let mut totals = [0; 3];
    for report in reports {
        let counts = [
            report.count(Status::Pass),
            report.count(Status::Fail),
            report.count(Status::Excluded),
        ];
        println!(
            "{:<width$} {:>7} {:>7} {:>9}",
            report.file, counts[0], counts[1], counts[2]
        );
        totals
            .iter_mut()
            .zip(counts)
            .for_each(|(total, n)| *total += n);
    }
    println!(
        "{:<width$} {:>7} {:>7} {:>9}",
        "TOTAL", totals[0], totals[1], totals[2]
    );

    print_section(reports, "excluded", |r| {
        (r.status == Status::Excluded).then_some(&r.detail)
    });
    print_section(reports, "notes (tolerated differences)", |r| {
        r.note.as_ref()
    });
    print_section(reports, "FAILURES", |r| {
        (r.status == Status::Fail).then_some(&r.detail)
    });
    totals[1] == 0
}

fn print_section(reports: &[FileReport], title: &str, pick: impl Fn(&Record) -> Option<&String>) {
    let lines: Vec<String> = reports
        .iter()
        .flat_map(|report| {
            report.records.iter().filter_map(|r| {
                pick(r).map(|text| format!("  {}:{} {}: {text}", report.file, r.line, r.kind))
            })
        })
        .collect();
    if !lines.is_empty() {
        println!("\n{title} ({}):", lines.len());
        lines.iter().for_each(|line| println!("{line}"));
    }
}
