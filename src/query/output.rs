//! Rendering query results: JSON and NDJSON for programs, CSV with a header, and an aligned
//! table for people. Hours are rounded here, and only here: to two decimals, from exact minutes.
//!
//! Writers return `io::Error`s untouched so the caller can tell a closed pipe from a failure.

use std::io::{self, Write};

use serde::Serialize;

use super::changes::Change;
use super::explain::ExplainedTicket;
use super::rollup::RollupRow;
use super::tickets::{iso_text, TicketDoc};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One pretty-printed JSON array.
    Json,
    /// One compact JSON object per line.
    Ndjson,
    /// RFC 4180 CSV with a header row; nested arrays as JSON text.
    Csv,
    /// Aligned columns for a terminal; tickets are summarized one per line.
    Table,
}

/// Exact minutes as hours with two decimals (`90` → `1.50`). minutes × 100 / 60 never ends in
/// exactly one half, so the rounding is unambiguous.
pub fn hours_text(minutes: i64) -> String {
    let hundredths = (minutes.unsigned_abs() * 10 + 3) / 6;
    let sign = if minutes < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", hundredths / 100, hundredths % 100)
}

/// Hours as a JSON number with at most two decimals.
fn hours_number(minutes: i64) -> f64 {
    // Parsing our own decimal text is exact to the nearest double and cannot fail.
    hours_text(minutes)
        .parse()
        .expect("hours_text is a decimal")
}

/// Writes tickets in `format`.
pub fn write_tickets<W: Write>(
    out: &mut W,
    tickets: &[TicketDoc],
    format: Format,
) -> io::Result<()> {
    match format {
        Format::Json => json_array(out, tickets),
        Format::Ndjson => ndjson(out, tickets),
        Format::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record(TICKET_COLUMNS)?;
            for t in tickets {
                let num = |v: f64| serde_json::to_string(&v).map_err(io::Error::from);
                csv.write_record([
                    t.ticket_id.to_string(),
                    csv_text(t.ticket_number.clone()),
                    csv_text(opt(&t.subject)),
                    csv_text(opt(&t.description)),
                    csv_text(opt(&t.description_text)),
                    csv_text(t.status.clone()),
                    csv_text(opt(&t.priority)),
                    csv_text(opt(&t.requester_email)),
                    csv_text(opt(&t.requester_name)),
                    t.created_at.as_ref().map(iso_text).unwrap_or_default(),
                    iso_text(&t.last_updated_at),
                    iso_text(&t.closed_at),
                    num(t.total_hours_spent)?,
                    num(t.billable_hours)?,
                    serde_json::to_string(&t.conversations)?,
                    serde_json::to_string(&t.notes)?,
                ])?;
            }
            csv.flush()
        }
        Format::Table => {
            let rows = tickets
                .iter()
                .map(|t| {
                    vec![
                        t.ticket_id.to_string(),
                        iso_text(&t.closed_at),
                        t.status.clone(),
                        opt(&t.priority),
                        hours_text(hours_to_minutes(t.total_hours_spent)),
                        hours_text(hours_to_minutes(t.billable_hours)),
                        t.conversations.len().to_string(),
                        t.notes.len().to_string(),
                        shorten(t.subject.as_deref().unwrap_or(""), 60),
                    ]
                })
                .collect();
            table(
                out,
                &[
                    ("ticket_id", Align::Right),
                    ("closed_at", Align::Left),
                    ("status", Align::Left),
                    ("priority", Align::Left),
                    ("hours", Align::Right),
                    ("billable", Align::Right),
                    ("convs", Align::Right),
                    ("notes", Align::Right),
                    ("subject", Align::Left),
                ],
                rows,
            )
        }
    }
}

/// The keys of a ticket document, in order (the CSV header).
pub const TICKET_COLUMNS: [&str; 16] = [
    "ticket_id",
    "ticket_number",
    "subject",
    "description",
    "description_text",
    "status",
    "priority",
    "requester_email",
    "requester_name",
    "created_at",
    "last_updated_at",
    "closed_at",
    "total_hours_spent",
    "billable_hours",
    "conversations",
    "notes",
];

/// The columns of a rollup, in order.
pub const ROLLUP_COLUMNS: [&str; 7] = [
    "account",
    "period",
    "basis",
    "tickets",
    "hours",
    "billable_hours",
    "non_billable_hours",
];

#[derive(Serialize)]
struct RollupRecord<'a> {
    account: &'a str,
    period: String,
    /// Which date put the hours in the period (`updated`: Ledger's month).
    basis: &'static str,
    tickets: u64,
    hours: f64,
    billable_hours: f64,
    non_billable_hours: f64,
}

/// Writes a rollup in `format`.
pub fn write_rollup<W: Write>(out: &mut W, rows: &[RollupRow], format: Format) -> io::Result<()> {
    let records = || {
        rows.iter().map(|r| RollupRecord {
            account: &r.account,
            period: r.period(),
            basis: r.basis.as_str(),
            tickets: r.tickets,
            hours: hours_number(r.minutes),
            billable_hours: hours_number(r.billable_minutes),
            non_billable_hours: hours_number(r.non_billable_minutes()),
        })
    };
    let texts = || {
        rows.iter().map(|r| {
            vec![
                r.account.clone(),
                r.period(),
                r.basis.as_str().to_string(),
                r.tickets.to_string(),
                hours_text(r.minutes),
                hours_text(r.billable_minutes),
                hours_text(r.non_billable_minutes()),
            ]
        })
    };
    let align = [
        Align::Left,
        Align::Left,
        Align::Left,
        Align::Right,
        Align::Right,
        Align::Right,
        Align::Right,
    ];
    let columns: Vec<(&str, Align)> = ROLLUP_COLUMNS.into_iter().zip(align).collect();
    // The account is text (the hour columns are numbers, see `csv_text`).
    write_records(out, format, records, texts, &columns, 0)
}

/// Rows of a flat result in `format`: `records` as JSON objects, `texts` (one cell per column,
/// the cell `text_column` quoted as text in CSV) for CSV and the table.
fn write_records<W: Write, R: Serialize, I: Iterator<Item = R>, T: Iterator<Item = Vec<String>>>(
    out: &mut W,
    format: Format,
    records: impl Fn() -> I,
    texts: impl Fn() -> T,
    columns: &[(&str, Align)],
    text_column: usize,
) -> io::Result<()> {
    match format {
        Format::Json => json_array(out, &records().collect::<Vec<_>>()),
        Format::Ndjson => ndjson(out, &records().collect::<Vec<_>>()),
        Format::Csv => {
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record(columns.iter().map(|(name, _)| *name))?;
            for mut record in texts() {
                record[text_column] = csv_text(std::mem::take(&mut record[text_column]));
                csv.write_record(record)?;
            }
            csv.flush()
        }
        Format::Table => table(out, columns, texts().collect()),
    }
}

/// The columns of `--changes-since` in CSV and table form (`tickets` space-separated).
pub const CHANGES_COLUMNS: [&str; 6] = [
    "domain",
    "account",
    "month",
    "hours_then",
    "hours_now",
    "tickets",
];

#[derive(Serialize)]
struct ChangeRecord<'a> {
    domain: &'a str,
    account: &'a str,
    month: &'a str,
    hours_then: f64,
    hours_now: f64,
    tickets: &'a [i64],
}

/// Writes the adjustment list of `--changes-since` in `format`.
pub fn write_changes<W: Write>(out: &mut W, changes: &[Change], format: Format) -> io::Result<()> {
    let records = || {
        changes.iter().map(|c| ChangeRecord {
            domain: &c.domain,
            account: &c.account,
            month: &c.period,
            hours_then: hours_number(c.minutes_then),
            hours_now: hours_number(c.minutes_now),
            tickets: &c.tickets,
        })
    };
    let texts = || {
        changes.iter().map(|c| {
            vec![
                c.domain.clone(),
                c.account.clone(),
                c.period.clone(),
                hours_text(c.minutes_then),
                hours_text(c.minutes_now),
                c.tickets
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
    };
    let align = [
        Align::Left,
        Align::Left,
        Align::Left,
        Align::Right,
        Align::Right,
        Align::Left,
    ];
    let columns: Vec<(&str, Align)> = CHANGES_COLUMNS.into_iter().zip(align).collect();
    write_records(out, format, records, texts, &columns, 1)
}

/// The columns of `--explain` in CSV and table form: one line per time entry (a ticket without
/// any: one line with the entry columns empty).
pub const EXPLAIN_COLUMNS: [&str; 14] = [
    "account",
    "period",
    "basis",
    "ticket_id",
    "last_updated_at",
    "closed_at",
    "ticket_hours",
    "ticket_billable_hours",
    "time_entry_id",
    "executed_at",
    "agent_email",
    "hours",
    "billable",
    "subject",
];

#[derive(Serialize)]
struct ExplainedRecord<'a> {
    #[serde(flatten)]
    totals: RollupRecord<'a>,
    /// The tickets behind the period, with their time entries.
    detail: Vec<&'a ExplainedTicket>,
}

/// Writes a rollup with the tickets and time entries behind each period (`--explain`). JSON
/// and NDJSON: the rollup's rows, each with `detail`; CSV and table: one line per time entry.
pub fn write_explained<W: Write>(
    out: &mut W,
    rows: &[RollupRow],
    tickets: &[ExplainedTicket],
    format: Format,
) -> io::Result<()> {
    match format {
        Format::Json | Format::Ndjson => {
            let records: Vec<ExplainedRecord> = rows
                .iter()
                .map(|r| {
                    let period = r.period();
                    ExplainedRecord {
                        detail: tickets
                            .iter()
                            .filter(|t| t.account == r.account && t.period == period)
                            .collect(),
                        totals: RollupRecord {
                            account: &r.account,
                            period,
                            basis: r.basis.as_str(),
                            tickets: r.tickets,
                            hours: hours_number(r.minutes),
                            billable_hours: hours_number(r.billable_minutes),
                            non_billable_hours: hours_number(r.non_billable_minutes()),
                        },
                    }
                })
                .collect();
            match format {
                Format::Json => json_array(out, &records),
                _ => ndjson(out, &records),
            }
        }
        Format::Csv | Format::Table => {
            let basis = rows.first().map_or("", |r| r.basis.as_str());
            let mut lines = Vec::new();
            for t in tickets {
                let ticket = [
                    t.account.clone(),
                    t.period.clone(),
                    basis.to_string(),
                    t.ticket_id.to_string(),
                    iso_text(&t.last_updated_at),
                    iso_text(&t.closed_at),
                    hours_text(t.minutes),
                    hours_text(t.billable_minutes),
                ];
                let subject = t.subject.clone().unwrap_or_default();
                let subject = match format {
                    Format::Table => shorten(&subject, 40),
                    _ => csv_text(subject),
                };
                let entry_lines: Vec<[String; 5]> = if t.time_entries.is_empty() {
                    vec![Default::default()]
                } else {
                    t.time_entries
                        .iter()
                        .map(|e| {
                            [
                                e.time_entry_id.to_string(),
                                e.executed_at.as_ref().map(iso_text).unwrap_or_default(),
                                e.agent_email.clone().unwrap_or_default(),
                                hours_text(e.minutes),
                                e.billable.to_string(),
                            ]
                        })
                        .collect()
                };
                for entry in entry_lines {
                    let mut line: Vec<String> = ticket.to_vec();
                    line.extend(entry);
                    line.push(subject.clone());
                    lines.push(line);
                }
            }
            if format == Format::Table {
                let align: Vec<(&str, Align)> = EXPLAIN_COLUMNS
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let right = matches!(i, 3 | 6 | 7 | 8 | 11);
                        (*c, if right { Align::Right } else { Align::Left })
                    })
                    .collect();
                return table(out, &align, lines);
            }
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record(EXPLAIN_COLUMNS)?;
            for mut line in lines {
                line[0] = csv_text(std::mem::take(&mut line[0]));
                line[10] = csv_text(std::mem::take(&mut line[10]));
                csv.write_record(line)?;
            }
            csv.flush()
        }
    }
}

fn json_array<W: Write, T: Serialize>(out: &mut W, items: &[T]) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, items)?;
    out.write_all(b"\n")
}

fn ndjson<W: Write, T: Serialize>(out: &mut W, items: &[T]) -> io::Result<()> {
    for item in items {
        serde_json::to_writer(&mut *out, item)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// A text cell made inert for spreadsheets (OWASP's CSV injection rule): a cell that starts with
/// `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, so a subject such as
/// `=HYPERLINK(…)` is shown, not run, when the file is opened in Excel or LibreOffice.
///
/// Only text columns go through here. Numeric columns (ids, hours, ticket counts) are written as
/// numbers and left alone: a `'` would turn them into text in the sheet, and they never start with
/// one of those characters anyway (hours come from non-negative minutes; a negative total could
/// only come from a corrupt file, and `-1.5` is a number, not a formula). Timestamps and the
/// nested JSON arrays start with a digit or `[`.
fn csv_text(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
    }
}

fn opt(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

/// The stored hours are minutes / 60; the nearest whole minute recovers them exactly.
fn hours_to_minutes(hours: f64) -> i64 {
    (hours * 60.0).round() as i64
}

/// One line of text, at most `max` characters (an ellipsis marks the cut).
fn shorten(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    if line.chars().count() <= max {
        return line.to_string();
    }
    let mut cut: String = line.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Columns separated by two spaces, padded to the widest cell; no trailing spaces.
fn table<W: Write>(
    out: &mut W,
    columns: &[(&str, Align)],
    rows: Vec<Vec<String>>,
) -> io::Result<()> {
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            match columns[i].1 {
                Align::Left => {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_rounded_from_minutes() {
        let cases = [
            (0, "0.00"),
            (1, "0.02"),
            (15, "0.25"),
            (20, "0.33"),
            (40, "0.67"),
            (90, "1.50"),
            (599, "9.98"),
            (6001, "100.02"),
            (-20, "-0.33"),
        ];
        for (minutes, text) in cases {
            assert_eq!(hours_text(minutes), text, "{minutes} minutes");
        }
        // Two decimals always identify the minute.
        for minutes in 0..100_000 {
            let back = (hours_number(minutes) * 60.0).round() as i64;
            assert_eq!(back, minutes);
        }
        assert_eq!(serde_json::to_string(&hours_number(4)).unwrap(), "0.07");
    }

    #[test]
    fn tables_align_and_trim() {
        let mut out = Vec::new();
        table(
            &mut out,
            &[("name", Align::Left), ("n", Align::Right)],
            vec![
                vec!["a".into(), "1".into()],
                vec!["long name".into(), "1234".into()],
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "name          n\na             1\nlong name  1234\n"
        );
    }

    #[test]
    fn subjects_become_one_short_line() {
        assert_eq!(shorten("a\nb\tc ", 10), "a b c");
        assert_eq!(shorten("abcdefghijk", 5), "abcd…");
    }

    #[test]
    fn csv_text_cells_cannot_run_as_formulas() {
        for (cell, safe) in [
            (
                "=HYPERLINK(\"http://x.example\",\"click\")",
                "'=HYPERLINK(\"http://x.example\",\"click\")",
            ),
            ("+1+2", "'+1+2"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("Printer = broken", "Printer = broken"),
            ("", ""),
            ("ünïcødé", "ünïcødé"),
        ] {
            assert_eq!(csv_text(cell.to_string()), safe, "{cell:?}");
        }
    }

    #[test]
    fn csv_tickets_escape_text_but_not_numbers() {
        let at = |t: &str| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let doc = TicketDoc {
            ticket_id: 17531,
            ticket_number: "17531".into(),
            subject: Some("=HYPERLINK(\"http://x.example\")".into()),
            description: Some("@cmd".into()),
            description_text: Some("-1+1".into()),
            status: "Closed".into(),
            priority: Some("+High".into()),
            requester_email: Some("\tuser@example.test".into()),
            requester_name: Some("-Joe".into()),
            created_at: Some(at("2025-01-10T09:00:00Z")),
            last_updated_at: at("2025-01-15T16:30:00Z"),
            closed_at: at("2025-01-15T16:30:00Z"),
            total_hours_spent: 1.5,
            billable_hours: 1.5,
            domain: "acme".into(),
            conversations: vec![],
            notes: vec![],
        };
        let mut out = Vec::new();
        write_tickets(&mut out, &[doc], Format::Csv).unwrap();
        let text = String::from_utf8(out).unwrap();
        let row = text.lines().nth(1).unwrap();
        assert_eq!(
            row,
            "17531,17531,\"'=HYPERLINK(\"\"http://x.example\"\")\",'@cmd,'-1+1,Closed,'+High,'\tuser@example.test,'-Joe,2025-01-10T09:00:00Z,2025-01-15T16:30:00Z,2025-01-15T16:30:00Z,1.5,1.5,[],[]"
        );
    }

    #[test]
    fn rollup_formats() {
        let rows = vec![RollupRow {
            account: "482913".into(),
            year: 2025,
            month: Some(3),
            basis: crate::query::Basis::Updated,
            tickets: 2,
            minutes: 95,
            billable_minutes: 60,
        }];
        let render = |format| {
            let mut out = Vec::new();
            write_rollup(&mut out, &rows, format).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            render(Format::Csv),
            "account,period,basis,tickets,hours,billable_hours,non_billable_hours\n482913,2025-03,updated,2,1.58,1.00,0.58\n"
        );
        assert_eq!(
            render(Format::Ndjson),
            "{\"account\":\"482913\",\"period\":\"2025-03\",\"basis\":\"updated\",\"tickets\":2,\"hours\":1.58,\"billable_hours\":1.0,\"non_billable_hours\":0.58}\n"
        );
        assert_eq!(
            render(Format::Table),
            "account  period   basis    tickets  hours  billable_hours  non_billable_hours\n482913   2025-03  updated        2   1.58            1.00                0.58\n"
        );
        let mut out = Vec::new();
        write_rollup(&mut out, &[], Format::Json).unwrap();
        assert_eq!(out, b"[]\n");
    }
}
