//! What the privacy oracle plants and looks for (issue 19): a person to forget, mentioned in
//! other tickets in every encoding a mail client writes, and secrets in texts and custom fields.

use std::collections::BTreeMap;

use ticketsync::sim::{Requester, Simulator};

use super::Dump;

/// What the oracle looks for (lowercase), and whom to forget.
pub struct Planted {
    pub email: String,
    pub needles: Vec<String>,
}

/// The requester with the most tickets in `placed` (a clean run's dump) whose name has two
/// words, so a sync can learn it.
pub fn busiest_placed(sim: &Simulator, placed: &Dump) -> Requester {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for row in placed.table("tickets") {
        if let Some(email) = row
            .split(' ')
            .find_map(|kv| kv.strip_prefix("requester_email="))
        {
            *count.entry(email.to_string()).or_default() += 1;
        }
    }
    let person = sim
        .ground_truth()
        .requesters
        .iter()
        .filter(|r| !r.first_name.is_empty() && !r.last_name.is_empty())
        .max_by_key(|r| {
            (
                count.get(&r.primary_email).copied().unwrap_or(0),
                std::cmp::Reverse(r.id),
            )
        })
        .expect("a requester")
        .clone();
    assert!(count.get(&person.primary_email).copied().unwrap_or(0) > 0);
    person
}

/// Mentions `person` in other closed tickets (plain, `&nbsp;`, split by tags, in capitals, the
/// address as `&#64;`) and plants secrets (quoted passwords, an AWS secret after its key id, a
/// `temp_password` custom field). The simulator's own notes hold `Relay!2025` and
/// `Fuser#48213`.
pub fn plant(sim: &Simulator, person: &Requester) -> Planted {
    let (first, last) = (person.first_name.clone(), person.last_name.clone());
    let email = person.primary_email.clone();
    let escaped = email.replace('@', "&#64;");
    let lines = [
        format!("<p>Spoke with {first}&nbsp;{last} about it.</p>"),
        format!("<p><b>{first}</b> <b>{last}</b> called back.</p>"),
        format!("<p>{} will confirm.</p>", format!("{first} {last}").to_uppercase()),
        format!("<p>Copy to {escaped} please.</p>"),
        "<p>Login pw = 'MotDePasse#42' and Password: \"Sommer2024!Rx\"</p>".to_string(),
        "<p>AWS key AKIAIOSFODNN7EXAMPLE secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY for the backup bucket</p>".to_string(),
    ];
    let others: Vec<i64> = sim
        .ground_truth()
        .closed_tickets()
        .filter(|t| t.requester_id != person.id)
        .map(|t| t.id)
        .step_by(7)
        .take(lines.len())
        .collect();
    for (id, line) in others.iter().zip(lines) {
        sim.edit_ticket(*id, |t| {
            t.description.push_str(&line);
            if let Some(fields) = t.custom_fields.as_object_mut() {
                fields.insert("temp_password".into(), "Welcome!Onboard7".into());
            }
        });
    }
    let needles = [
        email.clone(),
        escaped,
        format!("{first} {last}"),
        format!("{first}&nbsp;{last}"),
        format!("<b>{first}</b> <b>{last}</b>"),
        "MotDePasse#42".into(),
        "Sommer2024!Rx".into(),
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        "Welcome!Onboard7".into(),
        "Relay!2025".into(),
        "Fuser#48213".into(),
    ];
    Planted {
        email,
        needles: needles.into_iter().map(|n| n.to_lowercase()).collect(),
    }
}

impl Planted {
    /// Where a planted value shows in `dump` (tables and documents, decoded) and in `texts`
    /// (what else was written: files, reports, log lines, metrics; named).
    pub fn leaks(&self, dump: &Dump, texts: &[(String, String)]) -> Vec<String> {
        let mut all: Vec<(String, &str)> = Vec::new();
        for (table, rows) in &dump.rows {
            all.extend(rows.iter().map(|r| (format!("table {table}"), r.as_str())));
        }
        for (path, text) in &dump.markdown {
            all.push((format!("document {path}"), text.as_str()));
        }
        all.extend(
            texts
                .iter()
                .map(|(what, text)| (what.clone(), text.as_str())),
        );
        let mut found = Vec::new();
        for (what, text) in all {
            let text = text.to_lowercase();
            for needle in &self.needles {
                if text.contains(needle.as_str()) {
                    found.push(format!("{what} holds {needle:?}"));
                }
            }
        }
        found
    }
}
