//! Seeded generator of realistic, messy ticket text: subjects, HTML descriptions, conversation
//! bodies and time-entry notes.
//!
//! Every HTML document is built together with its plain-text rendering ([`Rich`]), so the
//! simulator never needs an HTML parser to fill `description_text` / `body_text`. The HTML is
//! deliberately hostile to naive converters: nested `<div>`s, entities, `&nbsp;`, tables, lists,
//! `<script>`/`<style>` blocks, inline base64 images, unicode (accents, CJK, emoji) and text lines
//! that look like markdown (`# …`, `---`, `* …`, `_…_`). This module does no IO and knows nothing
//! about tickets beyond the names it is handed.

use base64::Engine as _;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// An HTML document and its plain-text rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rich {
    pub(crate) html: String,
    pub(crate) text: String,
}

const SUBJECTS: &[&str] = &[
    "Outlook will not send mail",
    "VPN drops every 10 minutes",
    "Printer on 2nd floor jams — again",
    "New starter: laptop + accounts for Zoë Müller",
    "Shared mailbox access for accounts@ & billing@",
    "Password reset 🔑",
    "会議室のプロジェクターが映らない",
    "Réception : l'ordinateur redémarre tout seul",
    "# of Teams licences wrong on invoice",
    "--- URGENT --- server room temperature alarm",
    "Can't open *Q3 report*.xlsx",
    "_Scanner_ to folder fails",
    "Wi-Fi slow in the <board room>",
    "QuickBooks error H202 \"company file in use\"",
    "Backup job failed 3 nights in a row",
    "Phones: no dial tone at front desk",
    "Request: second monitor for Søren",
    "MFA prompt loop on iPhone",
    "Website SSL certificate expires in 7 days",
    "Onboarding – José Núñez (starts Monday)",
];

const ISSUE_LINES: &[&str] = &[
    "Since 8am every send fails with 0x800CCC0E.",
    "The printer shows \"Paper jam\" but there is no paper in it.",
    "It happens on both Wi-Fi & cable, so it's not the dock.",
    "Error says: access denied <code 5>.",
    "Le poste de réception redémarre tout seul depuis la mise à jour.",
    "Das Scannen in den Ordner \\\\fs01\\scans schlägt fehl.",
    "会議室のプロジェクターが映りません。HDMIケーブルは交換済みです。",
    "Outlook asks for the password again and again 🔁",
    "Teams calls drop after ~30 seconds 📞",
    "Disk C: has < 5% free on RECEPTION-PC.",
    "The last good backup was Sunday 02:00.",
    "Three of us are affected: Dana, Zoë and 李伟.",
    "Tried restarting twice, no change 😕",
    "Could someone look at this today? We have a client at 3pm.",
];

const STEP_LINES: &[&str] = &[
    "Restarted the PC",
    "Unplugged & re-plugged the dock",
    "Checked the cable — it's fine",
    "Signed out of Office and back in",
    "Cleared the browser cache",
];

const MARKDOWN_HOSTILE: &[&str] = &[
    "# not a heading, just how I write notes",
    "---",
    "* this is not a bullet",
    "_underscores_ and *stars* and `backticks`",
    "1. not a list either",
    "> not a quote",
];

const REPLY_LINES: &[&str] = &[
    "Thanks for reporting this — I'm looking into it now.",
    "I have reset your password; you'll be asked to change it at next sign-in.",
    "Remote session done: cleared the print queue & updated the driver to v3.2.1.",
    "Could you send a screenshot of the error? Thanks!",
    "I've scheduled an onsite visit for Tuesday 09:00–11:00.",
    "The mailbox permissions are in place; it can take up to 60 min to appear in Outlook.",
    "Please restart once more and let me know if the issue persists.",
    "Closing this ticket as resolved. Reply to reopen. 👍",
];

const FOLLOWUP_LINES: &[&str] = &[
    "Still failing after restart, screenshot attached.",
    "That worked, thank you!!",
    "Same issue again this morning :(",
    "Merci beaucoup, ça fonctionne.",
    "ありがとうございます。直りました。",
    "Can you call me at ext. 214 instead?",
];

const NOTE_BLOCKS: &[&[&str]] = &[
    &[
        "# Root cause",
        "Old SMTP port 25 → moved to 587 + STARTTLS, relay Passwort: Relay!2025",
    ],
    &[
        "--- do not share with client ---",
        "Admin password rotated; stored in the vault, not here.",
    ],
    &[
        "* checked event log",
        "* rebuilt OST",
        "* _still_ slow → escalate to L2",
    ],
    &["Customer was **very** upset; escalate if it recurs."],
    &[
        "Vendor case #48213 opened with HP.",
        "Next step: replace fuser unit. Printer web admin password: Fuser#48213",
    ],
    &[
        "_Billing_: covered by contract, no charge",
        "---",
        "2 × 15 min remote",
    ],
];

const TIME_NOTES: &[&str] = &[
    "Triage",
    "Remote session",
    "Reconfigured Outlook profile, verified send/receive",
    "Onsite visit – replaced toner & cleaned rollers",
    "Password reset + MFA re-enrol",
    "Research: vendor KB article",
    "Travel time 🚗",
    "Setup new laptop (Windows 11, Office, VPN)",
    "Follow-up call",
    "",
];

/// A valid 1×1 PNG, the shape most mail clients inline for signature logos.
const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x64, 0x60, 0xf8, 0x5f,
    0x0f, 0x00, 0x02, 0x87, 0x01, 0x80, 0xeb, 0x47, 0xba, 0x92, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Picks one element; every table here is a non-empty constant.
fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or_default()
}

/// A ticket subject.
pub(crate) fn subject(rng: &mut StdRng) -> String {
    pick(rng, SUBJECTS).to_owned()
}

/// A time-entry note (sometimes empty, as agents often leave it blank).
pub(crate) fn time_note(rng: &mut StdRng) -> String {
    pick(rng, TIME_NOTES).to_owned()
}

/// Escapes text for HTML content the way rich-text editors do.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// Builds an HTML document and its text rendering side by side.
struct Doc<'r> {
    rng: &'r mut StdRng,
    html: String,
    lines: Vec<String>,
}

impl<'r> Doc<'r> {
    fn new(rng: &'r mut StdRng) -> Self {
        Doc {
            rng,
            html: String::new(),
            lines: Vec::new(),
        }
    }

    /// Escaped text, sometimes with one space turned into `&nbsp;` (pasted from Word/Outlook).
    fn inline(&mut self, text: &str) -> String {
        let escaped = escape(text);
        if self.rng.gen_bool(0.3) {
            escaped.replacen(' ', "&nbsp;", 1)
        } else {
            escaped
        }
    }

    /// One paragraph in one of the wrappers editors produce.
    fn para(&mut self, text: &str) {
        let inner = self.inline(text);
        let html = match self.rng.gen_range(0..4) {
            0 => format!("<p>{inner}</p>"),
            1 => format!("<div>{inner}</div>"),
            2 => format!(
                "<div dir=\"ltr\"><div><span style=\"font-family:Calibri,sans-serif\">{inner}</span></div></div>"
            ),
            _ => format!("<div><div><p style=\"margin:0\">{inner}</p></div></div>"),
        };
        self.html.push_str(&html);
        self.lines.push(text.to_owned());
    }

    /// Several lines inside one block separated by `<br>`.
    fn br_block(&mut self, lines: &[String]) {
        let inner: Vec<String> = lines.iter().map(|l| self.inline(l)).collect();
        self.html
            .push_str(&format!("<div>{}</div>", inner.join("<br>")));
        self.lines.extend(lines.iter().cloned());
    }

    fn list(&mut self, items: &[&str], ordered: bool) {
        let tag = if ordered { "ol" } else { "ul" };
        self.html.push_str(&format!("<{tag}>"));
        for (n, item) in items.iter().enumerate() {
            let inner = self.inline(item);
            self.html.push_str(&format!("<li>{inner}</li>"));
            self.lines.push(if ordered {
                format!("{}. {item}", n + 1)
            } else {
                format!("- {item}")
            });
        }
        self.html.push_str(&format!("</{tag}>"));
    }

    fn table(&mut self, rows: &[[&str; 2]]) {
        self.html
            .push_str("<table border=\"1\" cellpadding=\"2\"><tbody>");
        for row in rows {
            let a = escape(row[0]);
            let b = escape(row[1]);
            self.html
                .push_str(&format!("<tr><td>{a}</td><td>{b}</td></tr>"));
            self.lines.push(format!("{} {}", row[0], row[1]));
        }
        self.html.push_str("</tbody></table>");
    }

    /// Markup with no visible text (scripts, styles, images, spacers).
    fn invisible(&mut self, html: &str) {
        self.html.push_str(html);
    }

    fn quote(&mut self, header: &str, lines: &[&str]) {
        let inner: Vec<String> = lines.iter().map(|l| escape(l)).collect();
        self.html.push_str(&format!(
            "<div class=\"quoted\"><div>{}</div><blockquote style=\"margin:0 0 0 .8ex;border-left:1px #ccc solid\">{}</blockquote></div>",
            escape(header),
            inner.join("<br>")
        ));
        self.lines.push(header.to_owned());
        self.lines.extend(lines.iter().map(|l| format!("> {l}")));
    }

    fn image(&mut self) {
        let data = if self.rng.gen_bool(0.7) {
            TINY_PNG.to_vec()
        } else {
            // A "screenshot": a PNG signature and a few KB of noise. Big inline blobs are what
            // makes naive markdown output explode, so some must be large.
            let len = self.rng.gen_range(2_000..6_000);
            let mut bytes = TINY_PNG[..8].to_vec();
            bytes.extend((0..len).map(|_| self.rng.gen::<u8>()));
            bytes
        };
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        self.invisible(&format!(
            "<div><img src=\"data:image/png;base64,{b64}\" alt=\"image.png\" width=\"320\"></div>"
        ));
    }

    fn finish(self) -> Rich {
        Rich {
            html: self.html,
            text: self.lines.join("\n").trim().to_owned(),
        }
    }
}

/// The HTML description a requester writes when raising a ticket.
///
/// About 2% are empty (`""`), like service requests raised from a catalogue form.
pub(crate) fn description(rng: &mut StdRng, requester_name: &str, company: &str) -> Rich {
    if rng.gen_bool(0.02) {
        return Rich {
            html: String::new(),
            text: String::new(),
        };
    }
    let first = requester_name.split(' ').next().unwrap_or(requester_name);
    let issues: Vec<&str> = {
        let n = rng.gen_range(1..=3);
        ISSUE_LINES.choose_multiple(rng, n).copied().collect()
    };
    let want_style = rng.gen_bool(0.15);
    let want_greeting = rng.gen_bool(0.5);
    let want_list = rng.gen_bool(0.3);
    let want_table = rng.gen_bool(0.15);
    let want_hostile = rng.gen_bool(0.25);
    let want_script = rng.gen_bool(0.08);
    let want_image = rng.gen_bool(0.15);
    let want_signature = rng.gen_bool(0.6);
    let hostile = pick(rng, MARKDOWN_HOSTILE);
    let steps: Vec<&str> = STEP_LINES.choose_multiple(rng, 3).copied().collect();

    let mut doc = Doc::new(rng);
    if want_style {
        doc.invisible("<style>p.MsoNormal{margin:0cm;font-size:11pt}</style>");
    }
    if want_greeting {
        doc.para("Hi team,");
        doc.invisible("<div><br></div>");
    }
    for issue in &issues {
        doc.para(issue);
    }
    if want_list {
        doc.para("What I tried so far:");
        doc.list(&steps, false);
    }
    if want_table {
        doc.table(&[
            ["Device", "Status"],
            ["RECEPTION-PC", "offline"],
            ["Printer (2nd floor)", "jammed & blinking"],
        ]);
    }
    if want_hostile {
        doc.para(hostile);
    }
    if want_script {
        doc.invisible("<script>alert('x');document.title='pwned'</script>");
    }
    if want_image {
        doc.image();
    }
    if want_signature {
        doc.br_block(&[
            "--".to_owned(),
            requester_name.to_owned(),
            company.to_owned(),
        ]);
    } else {
        doc.para(&format!("Thanks, {first}"));
    }
    doc.finish()
}

/// An incoming public conversation (a requester's email reply).
pub(crate) fn incoming_body(rng: &mut StdRng, requester_name: &str) -> Rich {
    let line = pick(rng, FOLLOWUP_LINES);
    let quoted = pick(rng, REPLY_LINES);
    let want_quote = rng.gen_bool(0.5);
    let want_image = rng.gen_bool(0.1);
    let mut doc = Doc::new(rng);
    doc.para(line);
    if want_image {
        doc.image();
    }
    doc.br_block(&["--".to_owned(), requester_name.to_owned()]);
    if want_quote {
        doc.quote(
            "On Mon, 3 Mar 2025 at 08:41, Service Desk wrote:",
            &[quoted],
        );
    }
    doc.finish()
}

/// An outgoing public conversation (an agent's reply to the requester).
pub(crate) fn reply_body(rng: &mut StdRng, requester_first: &str, agent_name: &str) -> Rich {
    let n = rng.gen_range(1..=2);
    let lines: Vec<&str> = REPLY_LINES.choose_multiple(rng, n).copied().collect();
    let want_steps = rng.gen_bool(0.25);
    let steps: Vec<&str> = STEP_LINES.choose_multiple(rng, 2).copied().collect();
    let mut doc = Doc::new(rng);
    doc.para(&format!("Hi {requester_first},"));
    for line in &lines {
        doc.para(line);
    }
    if want_steps {
        doc.list(&steps, true);
    }
    doc.br_block(&["Kind regards,".to_owned(), agent_name.to_owned()]);
    doc.finish()
}

/// A private note (internal, agents only).
pub(crate) fn note_body(rng: &mut StdRng) -> Rich {
    let block = NOTE_BLOCKS.choose(rng).copied().unwrap_or(&[]);
    let want_table = rng.gen_bool(0.1);
    let mut doc = Doc::new(rng);
    for line in block {
        doc.para(line);
    }
    if want_table {
        doc.table(&[["Port", "587"], ["Auth", "STARTTLS"]]);
    }
    doc.finish()
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn escape_covers_markup_characters() {
        assert_eq!(escape("a & b <c>"), "a &amp; b &lt;c&gt;");
    }

    #[test]
    fn text_rendering_has_no_markup_or_entities() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..300 {
            let r = description(&mut rng, "Dana Reyes", "Acme Dental");
            assert!(!r.text.contains("<div"), "{}", r.text);
            assert!(!r.text.contains("&amp;"), "{}", r.text);
            assert!(!r.text.contains("base64"), "{}", r.text);
            assert!(!r.text.contains("alert("), "{}", r.text);
        }
    }

    #[test]
    fn corpus_reaches_every_hostile_construct() {
        let mut rng = StdRng::seed_from_u64(11);
        let all: String = (0..400)
            .map(|_| description(&mut rng, "Zoë Müller", "Acme").html)
            .collect();
        for needle in [
            "<script>",
            "<style>",
            "data:image/png;base64,",
            "&amp;",
            "&nbsp;",
            "&lt;",
            "<table",
            "<ul>",
            "<br>",
            "<p># ",
        ] {
            assert!(all.contains(needle), "missing {needle}");
        }
    }
}
