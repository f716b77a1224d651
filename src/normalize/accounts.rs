//! department_id (or, with `account_from = workspace`, workspace_id) → customer account number.
//!
//! The account number lives in a department custom field whose name the MSP chooses
//! (`account_number` by default); it may be a JSON number or a string. An optional CSV
//! (`department_id,account_number`) overrides it. Account numbers become partition values and
//! path segments, so only plain identifiers are accepted: anything else is a reject, never a
//! strange path.
//!
//! Every account number, wherever it comes from (the department field, the account or
//! workspace map, a workspace's field), is put in one canonical form first
//! ([`canonical_account`]), so one customer is one partition: `482913`, `482913.0` and
//! `" 482913 "` are `482913`; `acme` and `ACME` are `ACME` (two directories that differ in case
//! only are one directory on a case-insensitive disk).

use std::collections::HashMap;

use serde_json::Value;

use super::RejectReason;
use crate::source::wire;

/// Where a department's account number came from, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// The account number in canonical form ([`canonical_account`]), a plain identifier
    /// ([`is_valid_account`]).
    Valid(String),
    /// The custom field is absent, null or blank (reason `no_account_number`).
    Missing,
    /// The field holds something that is not a plain identifier, as (truncated) JSON text (reason
    /// `invalid_account_number`).
    Invalid(String),
    /// The department's record did not decode: its account number is not known this run. Its
    /// tickets are neither placed nor rejected (a transient reference problem is never a
    /// reason to move a ticket).
    Unreadable(String),
}

/// What the pipeline knows about a ticket's department before it fetches anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<'a> {
    /// Placed under this account number.
    Account(&'a str),
    /// Cannot be placed, for a lasting reason (no department, no or an invalid account number).
    Unplaced(Unplaced),
    /// The department is not in the departments list: the list may have ended early, so look
    /// it up (`GET /departments/{id}`) before deciding anything.
    NotListed(i64),
    /// The department's record did not decode: its tickets fail this run.
    Unreadable {
        /// The department whose record did not decode.
        department_id: i64,
        /// What was wrong with it.
        detail: String,
    },
}

/// The account numbers of a run.
#[derive(Debug, Clone, Default)]
pub struct AccountMap {
    by_department: HashMap<i64, Account>,
    /// With `account_from = workspace`: each workspace's account (a workspace not in it has
    /// none). The department is then not needed: a ticket without one is placed by its
    /// workspace (its rows carry a null `department_id`).
    by_workspace: Option<HashMap<i64, Account>>,
}

/// Why a ticket has no account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    /// `no_department`, `unknown_department`, `no_account_number` or `invalid_account_number`.
    pub reason: RejectReason,
    /// The rejects `detail`: names the department (or workspace) and the offending value.
    pub detail: String,
}

impl AccountMap {
    /// Builds the map from departments (field `field` of `custom_fields`) and overrides.
    pub fn new(
        departments: &[wire::Department],
        field: &str,
        overrides: &HashMap<i64, String>,
    ) -> AccountMap {
        let mut by_department = HashMap::new();
        for d in departments {
            let raw = d.custom_fields.as_ref().and_then(|c| c.get(field));
            by_department.insert(d.id, classify(raw));
        }
        for (id, account) in overrides {
            by_department.insert(*id, classify(Some(&Value::String(account.clone()))));
        }
        AccountMap {
            by_department,
            by_workspace: None,
        }
    }

    /// Takes accounts from workspaces instead of departments: `values` holds each workspace's
    /// raw account number (see `pipeline::policy::workspace_account_values`), validated like a
    /// department's.
    pub fn with_workspace_accounts(mut self, values: &HashMap<i64, Value>) -> AccountMap {
        self.by_workspace = Some(
            values
                .iter()
                .map(|(id, raw)| (*id, classify(Some(raw))))
                .collect(),
        );
        self
    }

    /// What is known about a ticket's account before any call: from its department (see
    /// [`Self::check`]) or, with workspace accounts, from its workspace.
    pub fn check_ticket(&self, ticket: &wire::Ticket) -> Check<'_> {
        match self.by_workspace {
            None => self.check(ticket.department_id),
            Some(_) => match self.resolve_ticket(ticket) {
                Ok(account) => Check::Account(account),
                Err(unplaced) => Check::Unplaced(unplaced),
            },
        }
    }

    /// The account of a ticket: its department's (see [`Self::resolve`]) or, with workspace
    /// accounts, its workspace's. A workspace account needs no department: in Freshservice for
    /// MSPs the workspace is the client, and a ticket nobody filed under a department is still
    /// that client's billable work (rejecting it as `no_department` lost 5 % of it).
    pub fn resolve_ticket(&self, ticket: &wire::Ticket) -> Result<&str, Unplaced> {
        let Some(by_workspace) = &self.by_workspace else {
            return self.resolve(ticket.department_id);
        };
        let Some(id) = ticket.workspace_id else {
            return Err(Unplaced {
                reason: RejectReason::NoAccountNumber,
                detail: "ticket has no workspace_id (account numbers come from workspaces)".into(),
            });
        };
        match by_workspace.get(&id) {
            None | Some(Account::Missing | Account::Unreadable(_)) => Err(Unplaced {
                reason: RejectReason::NoAccountNumber,
                detail: format!("workspace {id} has no account number (not in the workspace map nor in its fields)"),
            }),
            Some(Account::Invalid(raw)) => Err(invalid_account(&format!("workspace {id}"), raw)),
            Some(Account::Valid(account)) => Ok(account),
        }
    }

    /// Marks departments whose records did not decode (unless the account map names them: the
    /// map needs no record).
    pub fn with_unreadable(
        mut self,
        unreadable: impl IntoIterator<Item = (i64, String)>,
        overrides: &HashMap<i64, String>,
    ) -> AccountMap {
        for (id, detail) in unreadable {
            if !overrides.contains_key(&id) {
                self.by_department.insert(id, Account::Unreadable(detail));
            }
        }
        self
    }

    /// Adds a department looked up one by one (overrides still win).
    pub fn add(
        &mut self,
        department: &wire::Department,
        field: &str,
        overrides: &HashMap<i64, String>,
    ) {
        if overrides.contains_key(&department.id) {
            return;
        }
        let raw = department.custom_fields.as_ref().and_then(|c| c.get(field));
        self.by_department.insert(department.id, classify(raw));
    }

    /// What is known about a department before any call: see [`Check`].
    pub fn check(&self, department_id: Option<i64>) -> Check<'_> {
        match (
            department_id,
            department_id.and_then(|id| self.by_department.get(&id)),
        ) {
            (Some(id), None) => Check::NotListed(id),
            (Some(id), Some(Account::Unreadable(detail))) => Check::Unreadable {
                department_id: id,
                detail: detail.clone(),
            },
            _ => match self.resolve(department_id) {
                Ok(account) => Check::Account(account),
                Err(unplaced) => Check::Unplaced(unplaced),
            },
        }
    }

    /// The account of a ticket's department.
    pub fn resolve(&self, department_id: Option<i64>) -> Result<&str, Unplaced> {
        let Some(id) = department_id else {
            return Err(no_department());
        };
        match self.by_department.get(&id) {
            None => Err(Unplaced {
                reason: RejectReason::UnknownDepartment,
                detail: format!(
                    "department {id} is not in the departments list or the account map"
                ),
            }),
            Some(Account::Missing) => Err(Unplaced {
                reason: RejectReason::NoAccountNumber,
                detail: format!("department {id} has no account number"),
            }),
            Some(Account::Invalid(raw)) => Err(invalid_account(&format!("department {id}"), raw)),
            // Only reached when the caller skipped `check`: never a lasting reason.
            Some(Account::Unreadable(detail)) => Err(Unplaced {
                reason: RejectReason::UnknownDepartment,
                detail: format!("department {id} does not decode: {detail}"),
            }),
            Some(Account::Valid(account)) => Ok(account),
        }
    }

    /// Departments known (listed, looked up or in the account map), with or without an account.
    pub fn len(&self) -> usize {
        self.by_department.len()
    }

    /// True when no department is known.
    pub fn is_empty(&self) -> bool {
        self.by_department.is_empty()
    }
}

fn no_department() -> Unplaced {
    Unplaced {
        reason: RejectReason::NoDepartment,
        detail: "ticket has no department_id".into(),
    }
}

/// `owner` (a department or a workspace) has an account number that cannot be a path segment.
fn invalid_account(owner: &str, raw: &str) -> Unplaced {
    Unplaced {
        reason: RejectReason::InvalidAccountNumber,
        detail: format!("{owner} has account number {raw} (allowed: letters, digits, '.', '_', '-', at most 64, starting with a letter or digit)"),
    }
}

fn classify(raw: Option<&Value>) -> Account {
    let text = match raw {
        None | Some(Value::Null) => return Account::Missing,
        Some(Value::String(s)) => s.trim().to_string(),
        // serde_json writes a float with its fraction (`482913.0`), which the canonical form
        // drops when it is zero.
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Account::Invalid(truncate_json(other)),
    };
    if text.is_empty() {
        return Account::Missing;
    }
    let account = canonical_account(&text);
    if is_valid_account(&account) {
        Account::Valid(account)
    } else {
        // The value as sent (trimmed), not its canonical form: the detail must be findable.
        Account::Invalid(truncate_json(&Value::String(text)))
    }
}

/// The one spelling of an account number: trimmed; an integral decimal (`482913.0`, `482913.00`:
/// a numeric field sent as a float, or a CSV written from a float column) without its zero
/// fraction; ASCII letters upper-cased (`acme` and `ACME` are one customer, and would be one
/// directory on a case-insensitive disk). Leading zeros of a string are kept (`007` may be a
/// real code). Not validated: see [`is_valid_account`].
pub fn canonical_account(raw: &str) -> String {
    let text = raw.trim();
    let text = match text.split_once('.') {
        Some((int, frac))
            if !int.is_empty()
                && int.bytes().all(|b| b.is_ascii_digit())
                && !frac.is_empty()
                && frac.bytes().all(|b| b == b'0') =>
        {
            int
        }
        _ => text,
    };
    text.to_ascii_uppercase()
}

/// Letters, digits, `.`, `_`, `-`; at most 64; first character a letter or digit (so never `.`
/// or `..`, never a hidden or parent directory).
pub fn is_valid_account(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

fn truncate_json(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let mut end = 80;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

/// Reads an account-map CSV: `department_id,account_number`, with or without a header row;
/// account numbers in canonical form ([`canonical_account`]).
pub fn parse_account_map(csv_text: &str) -> Result<HashMap<i64, String>, String> {
    parse_id_map(csv_text, "department_id")
}

/// Reads a workspace-map CSV: `workspace_id,account_number`, with or without a header row,
/// validated and put in canonical form like the account map.
pub fn parse_workspace_map(csv_text: &str) -> Result<HashMap<i64, String>, String> {
    parse_id_map(csv_text, "workspace_id")
}

/// `<id_name>,account_number` lines → id → account number.
fn parse_id_map(csv_text: &str, id_name: &str) -> Result<HashMap<i64, String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(csv_text.as_bytes());
    let mut map = HashMap::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("line {}: {e}", i + 1))?;
        if record.len() < 2 {
            return Err(format!("line {}: expected {id_name},account_number", i + 1));
        }
        let Ok(id) = record[0].parse::<i64>() else {
            if i == 0 {
                continue; // a header row
            }
            return Err(format!(
                "line {}: {id_name} {:?} is not a number",
                i + 1,
                &record[0]
            ));
        };
        let account = canonical_account(&record[1]);
        if !is_valid_account(&account) {
            return Err(format!(
                "line {}: account number {:?} is not a plain identifier",
                i + 1,
                &record[1]
            ));
        }
        map.insert(id, account);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dept(id: i64, fields: Value) -> wire::Department {
        serde_json::from_value(json!({"id": id, "custom_fields": fields})).unwrap()
    }

    #[test]
    fn numbers_strings_and_garbage() {
        let depts = vec![
            dept(1, json!({"account_number": 482913})),
            dept(2, json!({"account_number": "  100200 "})),
            dept(3, json!({"account_number": null})),
            dept(4, json!({})),
            dept(5, json!({"account_number": "../../x"})),
            dept(6, json!({"account_number": ""})),
            dept(7, json!({"account_number": [1]})),
        ];
        let map = AccountMap::new(&depts, "account_number", &HashMap::new());
        assert_eq!(map.resolve(Some(1)), Ok("482913"));
        assert_eq!(map.resolve(Some(2)), Ok("100200"));
        assert_eq!(
            map.resolve(Some(3)).unwrap_err().reason,
            RejectReason::NoAccountNumber
        );
        assert_eq!(
            map.resolve(Some(4)).unwrap_err().reason,
            RejectReason::NoAccountNumber
        );
        let invalid = map.resolve(Some(5)).unwrap_err();
        assert_eq!(invalid.reason, RejectReason::InvalidAccountNumber);
        assert!(invalid.detail.contains("\"../../x\""), "{}", invalid.detail);
        assert_eq!(
            map.resolve(Some(6)).unwrap_err().reason,
            RejectReason::NoAccountNumber
        );
        assert_eq!(
            map.resolve(Some(7)).unwrap_err().reason,
            RejectReason::InvalidAccountNumber
        );
        assert_eq!(
            map.resolve(Some(99)).unwrap_err().reason,
            RejectReason::UnknownDepartment
        );
        assert_eq!(
            map.resolve(None).unwrap_err().reason,
            RejectReason::NoDepartment
        );
    }

    #[test]
    fn the_csv_map_wins_and_is_validated() {
        let depts = vec![dept(1, json!({"account_number": 1})), dept(3, json!({}))];
        let overrides =
            parse_account_map("department_id,account_number\n1, 777\n# comment\n3,ACME-1\n")
                .unwrap();
        let map = AccountMap::new(&depts, "account_number", &overrides);
        assert_eq!(map.resolve(Some(1)), Ok("777"));
        assert_eq!(map.resolve(Some(3)), Ok("ACME-1"));
        assert!(parse_account_map("1,../x").unwrap_err().contains("line 1"));
        assert!(parse_account_map("1,2\nx,3")
            .unwrap_err()
            .contains("line 2"));
    }

    #[test]
    fn unreadable_and_unlisted_departments_are_not_reasons_to_reject() {
        let depts = vec![dept(1, json!({"account_number": 1}))];
        let overrides = HashMap::from([(3, "ACME-3".to_string())]);
        let mut map = AccountMap::new(&depts, "account_number", &overrides).with_unreadable(
            [(2, "name: expected a string".into()), (3, "x".into())],
            &overrides,
        );
        assert_eq!(map.check(Some(1)), Check::Account("1"));
        assert!(matches!(
            map.check(Some(2)),
            Check::Unreadable {
                department_id: 2,
                ..
            }
        ));
        // The account map needs no record.
        assert_eq!(map.check(Some(3)), Check::Account("ACME-3"));
        assert_eq!(map.check(Some(9)), Check::NotListed(9));
        assert!(matches!(
            map.check(None),
            Check::Unplaced(Unplaced {
                reason: RejectReason::NoDepartment,
                ..
            })
        ));
        // Looked up one by one: now known.
        map.add(&dept(9, json!({})), "account_number", &overrides);
        assert!(matches!(
            map.check(Some(9)),
            Check::Unplaced(Unplaced {
                reason: RejectReason::NoAccountNumber,
                ..
            })
        ));
    }

    #[test]
    fn one_canonical_form_whatever_the_source() {
        for (raw, canonical) in [
            ("482913", "482913"),
            ("  482913 ", "482913"),
            ("482913.0", "482913"),
            ("482913.000", "482913"),
            ("0482913", "0482913"),
            ("482913.5", "482913.5"),
            ("1.0.0", "1.0.0"),
            ("acme", "ACME"),
            (" Acme-1 ", "ACME-1"),
            ("a.b_c", "A.B_C"),
            ("", ""),
        ] {
            assert_eq!(canonical_account(raw), canonical, "{raw:?}");
        }
        // The department field: a float number, a number, a string, different cases.
        let depts = vec![
            dept(1, json!({"account_number": 482913.0})),
            dept(2, json!({"account_number": 482913})),
            dept(3, json!({"account_number": "482913.0"})),
            dept(4, json!({"account_number": "acme"})),
            dept(5, json!({"account_number": "ACME"})),
            dept(6, json!({"account_number": 4.82913e5})),
        ];
        let map = AccountMap::new(&depts, "account_number", &HashMap::new());
        for id in [1, 2, 3, 6] {
            assert_eq!(map.resolve(Some(id)), Ok("482913"), "department {id}");
        }
        assert_eq!(map.resolve(Some(4)), Ok("ACME"));
        assert_eq!(map.resolve(Some(5)), Ok("ACME"));
        // The account map (CSV), as parsed and as an override.
        let overrides = parse_account_map("1,acme-9\n2,100200.0\n").unwrap();
        assert_eq!(overrides[&1], "ACME-9");
        assert_eq!(overrides[&2], "100200");
        let map = AccountMap::new(&depts, "account_number", &overrides);
        assert_eq!(map.resolve(Some(1)), Ok("ACME-9"));
        assert_eq!(map.resolve(Some(2)), Ok("100200"));
        // Workspace mode: the workspace map and a workspace's field.
        let ws = parse_workspace_map("workspace_id,account_number\n2, c-2 \n").unwrap();
        assert_eq!(ws[&2], "C-2");
        let map = AccountMap::default().with_workspace_accounts(&HashMap::from([
            (2, json!(ws[&2])),
            (3, json!(700103.0)),
            (4, json!("beta")),
        ]));
        let ticket = |workspace: i64| -> wire::Ticket {
            serde_json::from_value(json!({"id": 1, "department_id": 1, "workspace_id": workspace}))
                .unwrap()
        };
        assert_eq!(map.resolve_ticket(&ticket(2)), Ok("C-2"));
        assert_eq!(map.resolve_ticket(&ticket(3)), Ok("700103"));
        assert_eq!(map.resolve_ticket(&ticket(4)), Ok("BETA"));
    }

    #[test]
    fn workspace_accounts_need_no_department() {
        let map = AccountMap::default()
            .with_workspace_accounts(&HashMap::from([(2, json!("C-2")), (3, json!(null))]));
        let ticket = |value: Value| -> wire::Ticket { serde_json::from_value(value).unwrap() };
        // Before: `no_department`, although the workspace gives the account.
        for t in [
            ticket(json!({"id": 1, "workspace_id": 2})),
            ticket(json!({"id": 1, "workspace_id": 2, "department_id": null})),
            ticket(json!({"id": 1, "workspace_id": 2, "department_id": 7})),
        ] {
            assert_eq!(map.resolve_ticket(&t), Ok("C-2"), "{t:?}");
            assert_eq!(map.check_ticket(&t), Check::Account("C-2"));
        }
        // Without a workspace account it is still a reject, for that reason.
        for t in [
            ticket(json!({"id": 1, "workspace_id": 3})),
            ticket(json!({"id": 1})),
        ] {
            assert_eq!(
                map.resolve_ticket(&t).unwrap_err().reason,
                RejectReason::NoAccountNumber
            );
        }
        // Department accounts still need the department.
        let by_department = AccountMap::new(
            &[dept(7, json!({"account_number": 1}))],
            "account_number",
            &HashMap::new(),
        );
        assert_eq!(
            by_department
                .resolve_ticket(&ticket(json!({"id": 1, "workspace_id": 2})))
                .unwrap_err()
                .reason,
            RejectReason::NoDepartment
        );
    }

    #[test]
    fn custom_field_name() {
        let depts = vec![dept(1, json!({"company_code": "C-9"}))];
        let map = AccountMap::new(&depts, "company_code", &HashMap::new());
        assert_eq!(map.resolve(Some(1)), Ok("C-9"));
    }

    #[test]
    fn path_safety() {
        for bad in ["..", ".", ".hidden", "a/b", "a b", "a\\b", "é", "a%2F", ""] {
            assert!(!is_valid_account(bad), "{bad}");
        }
        for good in ["482913", "ACME-1", "a.b_c"] {
            assert!(is_valid_account(good), "{good}");
        }
    }
}
