//! Secrets redacted before anything is written: credentials after a label (in English, German,
//! French, Spanish and Dutch), cloud keys, private key blocks, bearer tokens and JWTs, payment
//! card numbers (Luhn-valid only). A match becomes `[redacted:<rule>]`.
//!
//! A rule is a regex (the `regex` crate); when it has a group named `value`, only that group is
//! replaced (`password: [redacted:credential]` keeps its label), otherwise the whole match. A rule
//! may add a check the regex cannot express (the Luhn sum, a digit in a token). A [`RegexSet`]
//! tells first which rules can match at all, so a text without secrets costs one scan.
//!
//! Redaction is idempotent: a value that is already `[redacted:…]` is left alone, and a text is
//! redacted again until nothing changes (at most a few rounds), so one rule's replacement can
//! never leave a match for another behind. Matched values are never logged or kept: only the
//! number of matches per rule leaves this module.

use std::borrow::Cow;
use std::collections::BTreeMap;

use regex::{Regex, RegexSet};
use serde::Deserialize;

/// What a job file's `[redact]` table says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactSpec {
    /// Redact at all (default true).
    pub enabled: Option<bool>,
    /// Built-in rules switched on or off by name (`card_number = false`); unnamed rules stay on.
    pub rules: Option<BTreeMap<String, bool>>,
    /// More rules: name → regex. The whole match is replaced, or its group named `value`.
    pub extra: Option<BTreeMap<String, String>>,
}

/// How many matches each rule replaced.
pub type Counts = BTreeMap<String, u64>;

/// A check a rule's value must also pass.
type Check = fn(&str) -> bool;

struct Builtin {
    name: &'static str,
    pattern: &'static str,
    check: Option<Check>,
}

/// The labels a credential follows, in English, German, French, Spanish and Dutch.
const LABELS: &str = r"password|passwort|passwd|passcode|pass|pwd|pw|kennwort|mot\s+de\s+passe|mdp|contraseña|contrasena|clave|wachtwoord|pincode|pin";
/// Words between a label and its colon: "password is: x", "Passwort lautet: x".
const FILLERS: &str = r"(?:\s+(?:is|ist|lautet|est|es|era|was|was:|is:))?";
/// Whitespace, non-breaking spaces and inline tags between a label and its value (HTML bodies).
const GAP: &str = r"(?:\s|&nbsp;|<[^<>\n]{0,100}>)*";

/// The built-in rules, in the order they apply.
fn builtins() -> Vec<Builtin> {
    vec![
        Builtin {
            name: "private_key",
            // A truncated block (no END line) is redacted to the end of the text.
            pattern: r"(?P<value>-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----(?s:.*?)(?:-----END [A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----|\z))",
            check: None,
        },
        Builtin {
            name: "jwt",
            pattern: r"(?-u:\b)(?P<value>eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,})",
            check: None,
        },
        Builtin {
            name: "bearer_token",
            pattern: r"(?i)(?-u:\b)(?:bearer|authorization:\s*basic|token)\s+(?P<value>[A-Za-z0-9._~+/-]{16,}=*)",
            check: Some(has_digit),
        },
        Builtin {
            name: "aws_access_key_id",
            pattern: r"(?-u:\b)(?P<value>(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16})(?-u:\b)",
            check: None,
        },
        Builtin {
            name: "aws_secret_access_key",
            // After its label, or within `AWS_WINDOW` characters after an access key id (or
            // what is left of one once redacted): "AWS key AKIA… secret wJalr… for the bucket".
            pattern: "",
            check: Some(is_not_hex),
        },
        Builtin {
            name: "azure_key",
            pattern: r"(?i)(?:(?:AccountKey|SharedAccessKey|sig)=(?P<value>[A-Za-z0-9%+/=]{20,})|(?-u:\b)(?P<secret>[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}))",
            check: None,
        },
        Builtin {
            name: "gcp_api_key",
            pattern: r"(?-u:\b)(?P<value>AIza[0-9A-Za-z_-]{35})",
            check: None,
        },
        Builtin {
            name: "api_key",
            pattern: r#"(?i)(?-u:\b)(?:api[_ -]?key|apikey|client[_ -]?secret|secret[_ -]?key|access[_ -]?token|auth[_ -]?token)(?:\s+(?:is|ist|lautet|est|es))?\s*[:=]\s*["']?(?P<value>[^\s<>"']{6,})"#,
            check: None,
        },
        Builtin {
            name: "credential",
            // `LABELS`, optional `FILLERS`, a colon or equals sign, `GAP`, then the value.
            pattern: "",
            check: None,
        },
        Builtin {
            name: "card_number",
            pattern: r"(?-u:\b)(?P<value>\d(?:[ -]?\d){12,18})(?-u:\b)",
            check: Some(is_card_number),
        },
    ]
}

/// A quoted value is taken whole, spaces and all (`Password: "Sommer 2024"`); the quotes stay.
fn credential_pattern() -> String {
    format!(
        r#"(?i)(?-u:\b)(?:{LABELS}){FILLERS}\s*[:=]{GAP}(?:"(?P<dq>[^"\n]{{1,200}})"|'(?P<sq>[^'\n]{{1,200}})'|["']?(?P<value>[^\s<>"']+))"#
    )
}

/// How far after an AWS access key id its secret access key is looked for, in characters.
const AWS_WINDOW: usize = 80;

/// The secret access key after its label, or soon after an access key id with any words between.
fn aws_secret_pattern() -> String {
    let key = r"[A-Za-z0-9/+=]";
    format!(
        r#"(?i)aws_?secret_?(?:access_?)?key["']?\s*(?:[:=]|=>)?\s*["']?(?P<value>{key}{{40}})(?-u:\b)|(?-i:(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{{16}}(?-u:\b)|\[redacted:aws_access_key_id\])(?s:.){{0,{AWS_WINDOW}}}?[^A-Za-z0-9/+=](?P<secret>{key}{{40}})(?:[^A-Za-z0-9/+=]|\z)"#
    )
}

/// The rule of values whose custom field key names a secret (`temp_password`, `api_token`): not
/// a regex, the key decides.
pub const SECRET_FIELD: &str = "secret_field";

/// What a custom field key holds a secret under (lowercase; `-` and spaces read as `_`).
const SECRET_KEYS: [&str; 10] = [
    "password", "passwd", "pwd", "passcode", "passwort", "kennwort", "secret", "token", "api_key",
    "apikey",
];

/// The names of the built-in rules.
pub fn rule_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = builtins().iter().map(|b| b.name).collect();
    names.push(SECRET_FIELD);
    names
}

/// Whether a custom field key names a secret.
fn names_a_secret(key: &str) -> bool {
    let key = key.to_lowercase().replace(['-', ' '], "_");
    SECRET_KEYS.iter().any(|k| key.contains(k))
}

struct Rule {
    name: String,
    regex: Regex,
    check: Option<Check>,
    /// `[redacted:<name>]`.
    replacement: String,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule").field("name", &self.name).finish()
    }
}

/// The compiled rule set of a job. Cheap to share (`Arc`) between the fetch workers.
#[derive(Debug)]
pub struct Redactor {
    rules: Vec<Rule>,
    /// Which rules can match a text; `None` when there are no rules.
    set: Option<RegexSet>,
    /// [`SECRET_FIELD`] is on: values under a key that names a secret go whole.
    secret_fields: bool,
}

/// The marker every replacement starts with.
const MARKER: &str = "[redacted:";

/// Rounds of redaction at most: one, plus one for each rule whose replacement could complete a
/// match of another (none of the built-ins can; extra rules might).
const MAX_ROUNDS: usize = 4;

impl Redactor {
    /// A redactor that changes nothing (`[redact] enabled = false`).
    pub fn disabled() -> Redactor {
        Redactor {
            rules: Vec::new(),
            set: None,
            secret_fields: false,
        }
    }

    /// The built-in rules, all on.
    pub fn defaults() -> Redactor {
        Redactor::new(&RedactSpec::default()).expect("the built-in rules compile")
    }

    /// Compiles a job's rule set. Errors name the rule (an unknown built-in, a regex that does
    /// not compile, an extra rule named like a built-in).
    pub fn new(spec: &RedactSpec) -> Result<Redactor, String> {
        if spec.enabled == Some(false) {
            return Ok(Redactor::disabled());
        }
        let builtins = builtins();
        let switches = spec.rules.clone().unwrap_or_default();
        for name in switches.keys() {
            if !rule_names().contains(&name.as_str()) {
                return Err(format!(
                    "redact.rules: no built-in rule {name:?} (the rules are {})",
                    rule_names().join(", ")
                ));
            }
        }
        let mut rules = Vec::new();
        for b in builtins {
            if switches.get(b.name) == Some(&false) {
                continue;
            }
            let pattern = match b.name {
                "credential" => credential_pattern(),
                "aws_secret_access_key" => aws_secret_pattern(),
                _ => b.pattern.to_string(),
            };
            let regex = Regex::new(&pattern).expect("the built-in rules compile");
            rules.push(Rule::new(b.name.to_string(), regex, b.check));
        }
        for (name, pattern) in spec.extra.clone().unwrap_or_default() {
            let plain = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !plain {
                return Err(format!(
                    "redact.extra: rule name {name:?} must be lowercase letters, digits and '_'"
                ));
            }
            if rule_names().contains(&name.as_str()) {
                return Err(format!(
                    "redact.extra: {name:?} is a built-in rule; switch it in redact.rules"
                ));
            }
            let regex = Regex::new(&pattern)
                .map_err(|e| format!("redact.extra.{name}: not a regex: {e}"))?;
            if regex.is_match("") {
                return Err(format!(
                    "redact.extra.{name}: the regex matches the empty text"
                ));
            }
            rules.push(Rule::new(name, regex, None));
        }
        let set = (!rules.is_empty()).then(|| {
            RegexSet::new(rules.iter().map(|r| r.regex.as_str())).expect("each rule compiled")
        });
        Ok(Redactor {
            rules,
            set,
            secret_fields: switches.get(SECRET_FIELD) != Some(&false),
        })
    }

    /// True when no rule is on.
    pub fn is_disabled(&self) -> bool {
        self.rules.is_empty() && !self.secret_fields
    }

    /// The text with every secret replaced; `counts` gets one per replacement, by rule.
    pub fn redact<'a>(&self, text: &'a str, counts: &mut Counts) -> Cow<'a, str> {
        let Some(set) = &self.set else {
            return Cow::Borrowed(text);
        };
        let mut current = Cow::Borrowed(text);
        for _ in 0..MAX_ROUNDS {
            let matching: Vec<usize> = set.matches(&current).into_iter().collect();
            if matching.is_empty() {
                break;
            }
            let mut changed = false;
            for i in matching {
                if let Some(next) = self.rules[i].apply(&current, counts) {
                    current = Cow::Owned(next);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        current
    }

    /// Redacts a text in place; true when it changed.
    pub fn redact_in_place(&self, text: &mut String, counts: &mut Counts) -> bool {
        match self.redact(text, counts) {
            Cow::Owned(new) => {
                *text = new;
                true
            }
            Cow::Borrowed(_) => false,
        }
    }

    /// Redacts custom fields (JSON text, as the API sent them) in place: the value of a key that
    /// names a secret (`temp_password`, `vpn_pwd`, `api_token`, and what is nested under it)
    /// becomes `[redacted:secret_field]`, every other string value goes through the rules. A
    /// text that is not JSON goes through the rules whole. The JSON is written again only when
    /// something was redacted (key order kept).
    pub fn redact_fields(&self, text: &mut String, counts: &mut Counts) -> bool {
        if self.is_disabled() || text.is_empty() {
            return false;
        }
        let Ok(mut value) = serde_json::from_str::<serde_json::Value>(text) else {
            return self.redact_in_place(text, counts);
        };
        if !self.redact_value(&mut value, false, counts) {
            return false;
        }
        *text = value.to_string();
        true
    }

    fn redact_value(
        &self,
        value: &mut serde_json::Value,
        secret: bool,
        counts: &mut Counts,
    ) -> bool {
        use serde_json::Value;
        let mut changed = false;
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    let secret = secret || (self.secret_fields && names_a_secret(key));
                    changed |= self.redact_value(v, secret, counts);
                }
            }
            Value::Array(items) => {
                for v in items {
                    changed |= self.redact_value(v, secret, counts);
                }
            }
            Value::String(s) if secret => {
                if !s.trim().is_empty() && !s.starts_with(MARKER) {
                    *s = format!("{MARKER}{SECRET_FIELD}]");
                    *counts.entry(SECRET_FIELD.to_string()).or_default() += 1;
                    changed = true;
                }
            }
            Value::Number(_) if secret => {
                *value = Value::String(format!("{MARKER}{SECRET_FIELD}]"));
                *counts.entry(SECRET_FIELD.to_string()).or_default() += 1;
                changed = true;
            }
            Value::String(s) => changed = self.redact_in_place(s, counts),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
        changed
    }
}

impl Rule {
    fn new(name: String, regex: Regex, check: Option<Check>) -> Rule {
        Rule {
            replacement: format!("{MARKER}{name}]"),
            name,
            regex,
            check,
        }
    }

    /// The text with this rule's matches replaced, or `None` when nothing was replaced.
    fn apply(&self, text: &str, counts: &mut Counts) -> Option<String> {
        let mut out = String::new();
        let mut last = 0;
        let mut replaced = 0u64;
        for caps in self.regex.captures_iter(text) {
            let Some(m) = ["value", "secret", "dq", "sq"]
                .iter()
                .find_map(|name| caps.name(name))
                .or_else(|| caps.get(0))
            else {
                continue;
            };
            let value = m.as_str();
            if value.is_empty() || value.starts_with(MARKER) || value.contains(MARKER) {
                continue;
            }
            if self.check.is_some_and(|check| !check(value)) {
                continue;
            }
            out.push_str(&text[last..m.start()]);
            out.push_str(&self.replacement);
            last = m.end();
            replaced += 1;
        }
        if replaced == 0 {
            return None;
        }
        out.push_str(&text[last..]);
        *counts.entry(self.name.clone()).or_default() += replaced;
        Some(out)
    }
}

/// A 40-digit hex string is a hash (a commit, a SHA-1), not an AWS secret (base64: mixed case).
fn is_not_hex(value: &str) -> bool {
    !value.bytes().all(|b| b.is_ascii_hexdigit())
}

fn has_digit(value: &str) -> bool {
    value.bytes().any(|b| b.is_ascii_digit())
}

/// 13 to 19 digits (spaces and dashes between them allowed), an issuer prefix of a payment card
/// network (2 to 6) and a valid Luhn sum: order, invoice, phone and ticket numbers rarely pass
/// all three.
fn is_card_number(value: &str) -> bool {
    let digits: Vec<u32> = value.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || !(2..=6).contains(&digits[0]) {
        return false;
    }
    // Mixed separators ("1234-5678 9012…") are not how card numbers are written.
    if value.contains(' ') && value.contains('-') {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The built-in rules, compiled once for all the tests (a debug build takes a while).
    static DEFAULTS: std::sync::LazyLock<Redactor> = std::sync::LazyLock::new(Redactor::defaults);

    fn redact(text: &str) -> (String, Counts) {
        let mut counts = Counts::new();
        let out = DEFAULTS.redact(text, &mut counts).into_owned();
        (out, counts)
    }

    fn redacted(text: &str) -> String {
        redact(text).0
    }

    #[test]
    fn credentials_after_a_label_in_five_languages() {
        let cases = [
            (
                "New VPN login for Anna. Password: Sommer2024!",
                "New VPN login for Anna. Password: [redacted:credential]",
            ),
            (
                "user admin pw=hunter22 (temporary)",
                "user admin pw=[redacted:credential] (temporary)",
            ),
            (
                "Das neue Passwort lautet: Xk9#mQ2z bitte ändern.",
                "Das neue Passwort lautet: [redacted:credential] bitte ändern.",
            ),
            ("Kennwort: geheim123", "Kennwort: [redacted:credential]"),
            (
                "Votre mot de passe : Azerty!2024 est temporaire.",
                "Votre mot de passe : [redacted:credential] est temporaire.",
            ),
            (
                "La contraseña: Clave$egura9 para el wifi",
                "La contraseña: [redacted:credential] para el wifi",
            ),
            (
                "Het wachtwoord is: Welkom01! voor de printer",
                "Het wachtwoord is: [redacted:credential] voor de printer",
            ),
            ("PIN: 4821", "PIN: [redacted:credential]"),
        ];
        for (text, expected) in cases {
            assert_eq!(redacted(text), expected, "{text}");
        }
    }

    /// Issue 19, redaction 4: a quoted value goes whole, its quotes stay.
    #[test]
    fn quoted_credentials_are_redacted() {
        let cases = [
            (
                r#"Password: "Sommer2024!Rx""#,
                r#"Password: "[redacted:credential]""#,
            ),
            (
                "Login pw = 'MotDePasse#42' (changed at first login)",
                "Login pw = '[redacted:credential]' (changed at first login)",
            ),
            (
                r#"Passwort: "Mein Hund 7" bitte ändern"#,
                r#"Passwort: "[redacted:credential]" bitte ändern"#,
            ),
            (
                r#"password="unterminated"#,
                r#"password="[redacted:credential]"#,
            ),
        ];
        for (text, expected) in cases {
            let (once, counts) = redact(text);
            assert_eq!(once, expected, "{text}");
            assert_eq!(counts.get("credential"), Some(&1), "{text}");
            assert_eq!(redacted(&once), once, "idempotent: {text}");
        }
    }

    /// Issue 19, redaction 6: a secret access key soon after an access key id, whatever words
    /// are between; a 40-digit hash is no secret, and neither is one far from a key id.
    #[test]
    fn an_aws_secret_after_its_key_id_is_redacted() {
        let (out, counts) = redact(
            "AWS key AKIAIOSFODNN7EXAMPLE secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY for the backup bucket",
        );
        assert_eq!(
            out,
            "AWS key [redacted:aws_access_key_id] secret [redacted:aws_secret_access_key] for the backup bucket"
        );
        assert_eq!(counts.values().sum::<u64>(), 2, "{counts:?}");
        assert_eq!(
            redacted("ASIAY34FZKBOKMUTVV7A,\nsecret is: je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY."),
            "[redacted:aws_access_key_id],\nsecret is: [redacted:aws_secret_access_key]."
        );
        let untouched = [
            // A commit hash next to a key id, and base64 that is far from any key id.
            "AKIA rotation done in 3f786850e387550fdab836ed7e6dc881de23001b, see the runbook",
            "build wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY of the image",
        ];
        for text in untouched {
            assert_eq!(redacted(text), text);
        }
        let far = format!(
            "AKIAIOSFODNN7EXAMPLE {} wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "x".repeat(AWS_WINDOW + 1)
        );
        assert!(redacted(&far).ends_with(" wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"));
        let hash = "AKIAIOSFODNN7EXAMPLE commit 3f786850e387550fdab836ed7e6dc881de23001b";
        assert_eq!(
            redacted(hash),
            "[redacted:aws_access_key_id] commit 3f786850e387550fdab836ed7e6dc881de23001b"
        );
    }

    /// Issue 19, redaction 5: custom fields by key, the rest of their values by the rules.
    #[test]
    fn custom_fields_lose_the_values_of_secret_keys() {
        let r = Redactor::defaults();
        let mut counts = Counts::new();
        let mut fields =
            r#"{"Temp-Password":"Start#2025","db_passwd":"x","user_pwd":null,"empty_secret":"","vpn":{"auth_token":"abc","user":"anna"},"token_count":3,"comment":"Passwort: Geheim1"}"#
                .to_string();
        assert!(r.redact_fields(&mut fields, &mut counts));
        assert_eq!(
            fields,
            r#"{"Temp-Password":"[redacted:secret_field]","db_passwd":"[redacted:secret_field]","user_pwd":null,"empty_secret":"","vpn":{"auth_token":"[redacted:secret_field]","user":"anna"},"token_count":"[redacted:secret_field]","comment":"Passwort: [redacted:credential]"}"#
        );
        assert_eq!(counts.get(SECRET_FIELD), Some(&4));
        assert_eq!(counts.get("credential"), Some(&1));
        let mut again = Counts::new();
        assert!(!r.redact_fields(&mut fields, &mut again));
        assert!(again.is_empty());
        // Untouched JSON keeps its exact text; text that is not JSON goes through the rules.
        let mut plain = r#"{ "laptop" : "T14" }"#.to_string();
        assert!(!r.redact_fields(&mut plain, &mut counts));
        assert_eq!(plain, r#"{ "laptop" : "T14" }"#);
        let mut broken = "{temp_password: pw=abc".to_string();
        assert!(r.redact_fields(&mut broken, &mut counts));
        assert_eq!(broken, "{temp_password: pw=[redacted:credential]");
        // The rule switches off like any other.
        let off = Redactor::new(&RedactSpec {
            rules: Some(BTreeMap::from([(SECRET_FIELD.to_string(), false)])),
            ..Default::default()
        })
        .unwrap();
        let mut fields = r#"{"temp_password":"Start#2025"}"#.to_string();
        assert!(!off.redact_fields(&mut fields, &mut counts));
    }

    #[test]
    fn credentials_in_html_keep_the_markup() {
        assert_eq!(
            redacted("<p>Password:&nbsp;<b>S3cret!</b></p>"),
            "<p>Password:&nbsp;<b>[redacted:credential]</b></p>"
        );
        assert_eq!(
            redacted("<td>pwd</td><td>=</td> <code>abc123</code>"),
            "<td>pwd</td><td>=</td> <code>abc123</code>",
            "a label in another cell is no label"
        );
    }

    #[test]
    fn what_only_looks_like_a_secret_stays() {
        let untouched = [
            "password reset done, user can log in again",
            "Changed the password policy to 12 characters.",
            "Passwort zurückgesetzt, Benutzer informiert.",
            "Order 100045678 shipped; invoice INV-2024-00871 attached.",
            "Call me at +49 30 1234 5678 or +1 (555) 010-9999.",
            "See ticket #17531 and #17602.",
            "Invoice number 4000 1234 5678 9011 was paid.", // not Luhn-valid
            "Serial 1234567890123456 replaced.",            // issuer prefix 1
            "The bearer of this note is our new technician.",
            "Please pass the token to the next shift.",
            "Meeting 2026-11-30 10:30, room 4.",
            "client secret rotation is planned for Monday",
        ];
        for text in untouched {
            let (out, counts) = redact(text);
            assert_eq!(out, text);
            assert!(counts.is_empty(), "{text}: {counts:?}");
        }
    }

    #[test]
    fn cloud_keys_tokens_and_private_keys() {
        let (out, counts) = redact(
            "aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n\
             aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        );
        assert_eq!(
            out,
            "aws_access_key_id = [redacted:aws_access_key_id]\n\
             aws_secret_access_key = [redacted:aws_secret_access_key]\n"
        );
        assert_eq!(counts.values().sum::<u64>(), 2);

        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(
            redacted(&format!("Authorization: Bearer {jwt}")),
            "Authorization: Bearer [redacted:jwt]"
        );
        assert_eq!(
            redacted("curl -H 'Authorization: Bearer 9f8e7d6c5b4a39281706f5e4'"),
            "curl -H 'Authorization: Bearer [redacted:bearer_token]'"
        );
        assert_eq!(
            redacted("key AIzaSyA1234567890abcdefghijklmnopqrstuv in the app"),
            "key [redacted:gcp_api_key] in the app"
        );
        assert_eq!(
            redacted("DefaultEndpointsProtocol=https;AccountName=x;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"),
            "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=[redacted:azure_key];"
        );
        assert_eq!(
            redacted("App secret: abc8Q~Zx1yV2wU3tS4rQ5pO6nM7lK8jI9hG0fE1d"),
            "App secret: [redacted:azure_key]"
        );
        assert_eq!(
            redacted("api_key=sk_live_51HabcDEF"),
            "api_key=[redacted:api_key]"
        );
        let pem = "Key below:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nq83+abc\n-----END RSA PRIVATE KEY-----\nthanks";
        assert_eq!(redacted(pem), "Key below:\n[redacted:private_key]\nthanks");
        assert_eq!(
            redacted("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXkt (cut off"),
            "[redacted:private_key]"
        );
    }

    #[test]
    fn card_numbers_only_when_luhn_valid() {
        assert_eq!(
            redacted("Card 4111 1111 1111 1111 exp 12/27"),
            "Card [redacted:card_number] exp 12/27"
        );
        assert_eq!(
            redacted("MC 5500-0000-0000-0004."),
            "MC [redacted:card_number]."
        );
        assert_eq!(
            redacted("Amex 378282246310005"),
            "Amex [redacted:card_number]"
        );
        assert_eq!(
            redacted("Card 4111 1111 1111 1112"),
            "Card 4111 1111 1111 1112"
        );
    }

    #[test]
    fn counts_by_rule_and_idempotent() {
        let text = "pw: a1 and password=b2, card 4111111111111111";
        let (once, counts) = redact(text);
        assert_eq!(counts.get("credential"), Some(&2));
        assert_eq!(counts.get("card_number"), Some(&1));
        let (twice, again) = redact(&once);
        assert_eq!(twice, once);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn rules_switch_and_extra_rules() {
        let spec = RedactSpec {
            enabled: None,
            rules: Some(BTreeMap::from([("card_number".to_string(), false)])),
            extra: Some(BTreeMap::from([(
                "employee_pin".to_string(),
                r"EMP-PIN\s*(?P<value>\d{4})".to_string(),
            )])),
        };
        let r = Redactor::new(&spec).unwrap();
        let mut counts = Counts::new();
        assert_eq!(
            r.redact("4111 1111 1111 1111 EMP-PIN 1234", &mut counts),
            "4111 1111 1111 1111 EMP-PIN [redacted:employee_pin]"
        );
        assert_eq!(counts.get("employee_pin"), Some(&1));

        let off = Redactor::new(&RedactSpec {
            enabled: Some(false),
            ..Default::default()
        })
        .unwrap();
        assert!(off.is_disabled());
        assert_eq!(off.redact("password: x", &mut counts), "password: x");

        let unknown = RedactSpec {
            rules: Some(BTreeMap::from([("passwords".to_string(), false)])),
            ..Default::default()
        };
        assert!(Redactor::new(&unknown).unwrap_err().contains("credential"));
        let bad = RedactSpec {
            extra: Some(BTreeMap::from([("x".to_string(), "(".to_string())])),
            ..Default::default()
        };
        assert!(Redactor::new(&bad).unwrap_err().contains("redact.extra.x"));
        let empty = RedactSpec {
            extra: Some(BTreeMap::from([("y".to_string(), "a*".to_string())])),
            ..Default::default()
        };
        assert!(Redactor::new(&empty).unwrap_err().contains("empty"));
    }

    proptest! {
        #[test]
        fn never_panics_and_is_idempotent(text in "\\PC{0,200}") {
            let (once, _) = redact(&text);
            let (twice, counts) = redact(&once);
            prop_assert_eq!(&twice, &once);
            prop_assert!(counts.is_empty());
        }

        #[test]
        fn idempotent_around_secrets(
            a in "[ -~]{0,20}",
            b in "[ -~äöüéñ]{0,20}",
            label in "(password|Passwort|pw|pin|token|Bearer|api_key|card)",
            sep in "(: |=| is: | )",
            value in "[A-Za-z0-9!#$%/+=.-]{1,30}",
        ) {
            let text = format!("{a}{label}{sep}{value}{b} 4111 1111 1111 1111 {value}");
            let (once, _) = redact(&text);
            let (twice, counts) = redact(&once);
            prop_assert_eq!(&twice, &once);
            prop_assert!(counts.is_empty());
        }
    }
}
