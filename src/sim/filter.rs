//! The `/tickets/filter` query language (API reference §6), parsed and matched against the
//! simulator's tickets.
//!
//! `query` is the whole expression in double quotes; inside: `field:value` (equality),
//! `field:>value` (greater or **equal**), `field:<value` (less or equal), combined with `AND`,
//! `OR` (AND binds tighter) and parentheses. Numbers are bare, strings and dates in single
//! quotes, `null` matches unassigned. Dates are `'YYYY-MM-DD'` (the whole day: `:>` from its
//! start, `:<` to its end) or `'YYYY-MM-DDTHH:MM:SSZ'` (production clients send those for
//! `updated_at`; the simulator honours the time). Anything else is a 400, as the API answers.

use chrono::{DateTime, NaiveDate, Utc};

use super::data::Ticket;

/// Most characters inside the quotes (§6).
const MAX_LEN: usize = 512;

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Term { field: Field, op: Op, value: Lit },
}

/// Fields the simulator knows (the documented ones it has data for, plus `updated_at` and
/// `department_id`, which production clients use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Status,
    Priority,
    Urgency,
    Impact,
    AgentId,
    GroupId,
    RequesterId,
    DepartmentId,
    WorkspaceId,
    CreatedAt,
    UpdatedAt,
    DueBy,
    FrDueBy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    /// `:>`: greater or equal.
    Ge,
    /// `:<`: less or equal.
    Le,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Int(i64),
    Null,
    /// A date or instant: the first and last instant it stands for.
    Time(DateTime<Utc>, DateTime<Utc>),
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "status" => Field::Status,
            "priority" => Field::Priority,
            "urgency" => Field::Urgency,
            "impact" => Field::Impact,
            "agent_id" => Field::AgentId,
            "group_id" => Field::GroupId,
            "requester_id" => Field::RequesterId,
            "department_id" => Field::DepartmentId,
            "workspace_id" => Field::WorkspaceId,
            "created_at" => Field::CreatedAt,
            "updated_at" => Field::UpdatedAt,
            "due_by" => Field::DueBy,
            "fr_due_by" => Field::FrDueBy,
            _ => return None,
        })
    }

    fn is_date(self) -> bool {
        matches!(
            self,
            Field::CreatedAt | Field::UpdatedAt | Field::DueBy | Field::FrDueBy
        )
    }
}

/// Parses the `query` parameter as sent (with its double quotes). `Err` holds the 400 message.
pub(crate) fn parse(raw: &str) -> Result<Expr, String> {
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .filter(|_| raw.len() >= 2)
        .ok_or("the query must be enclosed in double quotes")?;
    if inner.chars().count() > MAX_LEN {
        return Err(format!("the query must be at most {MAX_LEN} characters"));
    }
    let tokens = tokenize(inner)?;
    let mut parser = Parser { tokens, at: 0 };
    let expr = parser.or()?;
    if parser.at != parser.tokens.len() {
        return Err(format!(
            "unexpected {:?} in the query",
            parser.tokens[parser.at]
        ));
    }
    Ok(expr)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    /// `field:`, `field:>` or `field:<` and the value's text (quoted values without quotes).
    Term {
        field: String,
        op: Op,
        value: String,
        quoted: bool,
    },
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            tokens.push(Token::Open);
            i += 1;
        } else if c == ')' {
            tokens.push(Token::Close);
            i += 1;
        } else {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if word.is_empty() {
                return Err(format!("unexpected {c:?} in the query"));
            }
            if word == "AND" || word == "OR" {
                tokens.push(if word == "AND" { Token::And } else { Token::Or });
                continue;
            }
            if chars.get(i) != Some(&':') {
                return Err(format!("expected field:value, found {word:?}"));
            }
            i += 1;
            let op = match chars.get(i) {
                Some('>') => {
                    i += 1;
                    Op::Ge
                }
                Some('<') => {
                    i += 1;
                    Op::Le
                }
                _ => Op::Eq,
            };
            let (value, quoted) = if chars.get(i) == Some(&'\'') {
                let from = i + 1;
                let end = (from..chars.len())
                    .find(|&j| chars[j] == '\'')
                    .ok_or("unterminated quoted value")?;
                i = end + 1;
                (chars[from..end].iter().collect(), true)
            } else {
                let from = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && chars[i] != ')'
                    && chars[i] != '('
                {
                    i += 1;
                }
                (chars[from..i].iter().collect::<String>(), false)
            };
            tokens.push(Token::Term {
                field: word,
                op,
                value,
                quoted,
            });
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.tokens.get(self.at) == Some(&Token::Or) {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.primary()?;
        while self.tokens.get(self.at) == Some(&Token::And) {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.primary()?));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Expr, String> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        match token {
            Some(Token::Open) => {
                let inner = self.or()?;
                if self.tokens.get(self.at) != Some(&Token::Close) {
                    return Err("missing ')' in the query".into());
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Term {
                field,
                op,
                value,
                quoted,
            }) => term(&field, op, &value, quoted),
            Some(other) => Err(format!("unexpected {other:?} in the query")),
            None => Err("the query ends too early".into()),
        }
    }
}

fn term(name: &str, op: Op, value: &str, quoted: bool) -> Result<Expr, String> {
    let field = Field::parse(name).ok_or_else(|| format!("{name} is not a filterable field"))?;
    let value = if !quoted && value == "null" {
        if op != Op::Eq {
            return Err(format!("{name}: null allows only ':'"));
        }
        Lit::Null
    } else if field.is_date() {
        if !quoted {
            return Err(format!("{name}: dates go in single quotes"));
        }
        if op == Op::Eq {
            return Err(format!("{name}: dates allow only ':>' and ':<'"));
        }
        date(value).ok_or_else(|| format!("{name}: {value:?} is not a date"))?
    } else if quoted {
        return Err(format!("{name}: expects a number"));
    } else {
        Lit::Int(
            value
                .parse()
                .map_err(|_| format!("{name}: {value:?} is not a number"))?,
        )
    };
    Ok(Expr::Term { field, op, value })
}

/// `YYYY-MM-DD` (the whole day) or an RFC 3339 instant.
fn date(text: &str) -> Option<Lit> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        let at = at.with_timezone(&Utc);
        return Some(Lit::Time(at, at));
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let start = day.and_hms_opt(0, 0, 0)?.and_utc();
    let end = day.and_hms_opt(23, 59, 59)?.and_utc();
    Some(Lit::Time(start, end))
}

impl Expr {
    /// Whether `t` matches.
    pub(crate) fn matches(&self, t: &Ticket) -> bool {
        match self {
            Expr::And(a, b) => a.matches(t) && b.matches(t),
            Expr::Or(a, b) => a.matches(t) || b.matches(t),
            Expr::Term { field, op, value } => {
                match (field_value(*field, t), value) {
                    (Value::Int(v), Lit::Int(x)) => compare(v, *x, *op),
                    (Value::Opt(v), Lit::Int(x)) => v.is_some_and(|v| compare(v, *x, *op)),
                    (Value::Opt(v), Lit::Null) => v.is_none(),
                    (Value::Int(_), Lit::Null) => false,
                    (Value::Time(v), Lit::Time(start, end)) => match op {
                        Op::Ge => v >= *start,
                        Op::Le => v <= *end,
                        // Rejected by the parser.
                        Op::Eq => false,
                    },
                    // Types are checked by the parser.
                    _ => false,
                }
            }
        }
    }
}

enum Value {
    Int(i64),
    Opt(Option<i64>),
    Time(DateTime<Utc>),
}

fn field_value(field: Field, t: &Ticket) -> Value {
    match field {
        Field::Status => Value::Int(t.status),
        Field::Priority => Value::Int(t.priority),
        Field::Urgency => Value::Int(t.urgency),
        Field::Impact => Value::Int(t.impact),
        Field::AgentId => Value::Opt(t.responder_id),
        Field::GroupId => Value::Opt(t.group_id),
        Field::RequesterId => Value::Int(t.requester_id),
        Field::DepartmentId => Value::Opt(t.department_id),
        Field::WorkspaceId => Value::Int(t.workspace_id),
        Field::CreatedAt => Value::Time(t.created_at),
        Field::UpdatedAt => Value::Time(t.updated_at),
        Field::DueBy => Value::Time(t.due_by),
        Field::FrDueBy => Value::Time(t.fr_due_by),
    }
}

fn compare(v: i64, x: i64, op: Op) -> bool {
    match op {
        Op::Eq => v == x,
        Op::Ge => v >= x,
        Op::Le => v <= x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_grammar_parses() {
        let ok = [
            "\"status:5\"",
            "\"status:5 AND priority:3\"",
            "\"(status:4 OR status:5) AND updated_at:>'2025-01-01T00:00:00Z'\"",
            "\"agent_id:null AND created_at:<'2025-03-01'\"",
            "\"department_id:21000351606 AND status:5 AND updated_at:>'2025-01-01'\"",
        ];
        for q in ok {
            parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
        let and_binds_tighter = parse("\"status:4 OR status:5 AND priority:3\"").unwrap();
        assert!(
            matches!(and_binds_tighter, Expr::Or(..)),
            "{and_binds_tighter:?}"
        );
    }

    #[test]
    fn bad_queries_are_refused_with_a_reason() {
        let bad = [
            ("status:5", "double quotes"),
            ("'status:5'", "double quotes"),
            ("\"colour:5\"", "not a filterable field"),
            ("\"status:'5'\"", "expects a number"),
            ("\"updated_at:'2025-01-01'\"", "only ':>' and ':<'"),
            ("\"updated_at:>2025-01-01\"", "single quotes"),
            ("\"status:5 AND\"", "ends too early"),
            ("\"(status:5\"", "missing ')'"),
            ("\"status:5 priority:3\"", "unexpected"),
            ("\"updated_at:>'yesterday'\"", "not a date"),
        ];
        for (q, needle) in bad {
            let err = parse(q).unwrap_err();
            assert!(err.contains(needle), "{q}: {err}");
        }
        let long = format!("\"{}\"", "status:5 OR ".repeat(60));
        assert!(parse(&long).unwrap_err().contains("at most 512"));
    }
}
