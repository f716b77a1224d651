//! The builders' inverse: rows back from `RecordBatch`es of the contract's schemas, so a written
//! ticket can be rewritten (`forget`) or exported (`export-person`) through the same rows, the
//! same markdown renderer and the same commit as a sync. Columns are found by name; a batch
//! that lacks a non-null column, or has another type, is an error naming the column.

use arrow::array::{
    Array, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use chrono::{DateTime, Utc};

use crate::normalize::{
    ConversationRow, NoteRow, RejectReason, Rejection, TicketDetails, TicketRow, TimeEntryRow,
};

/// A batch's columns by name, typed.
struct Cols<'a>(&'a RecordBatch);

type Result<T> = std::result::Result<T, String>;

impl<'a> Cols<'a> {
    fn column<T: 'static>(&self, name: &str) -> Result<&'a T> {
        let column = self
            .0
            .column_by_name(name)
            .ok_or_else(|| format!("column {name} is missing"))?;
        column
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| format!("column {name} has type {}", column.data_type()))
    }

    fn strings(&self, name: &str) -> Result<Vec<Option<String>>> {
        let c: &StringArray = self.column(name)?;
        Ok(c.iter().map(|v| v.map(str::to_string)).collect())
    }

    fn ints(&self, name: &str) -> Result<Vec<Option<i64>>> {
        let c: &Int64Array = self.column(name)?;
        Ok(c.iter().collect())
    }

    fn ints32(&self, name: &str) -> Result<Vec<Option<i32>>> {
        let c: &Int32Array = self.column(name)?;
        Ok(c.iter().collect())
    }

    fn floats(&self, name: &str) -> Result<Vec<Option<f64>>> {
        let c: &Float64Array = self.column(name)?;
        Ok(c.iter().collect())
    }

    fn bools(&self, name: &str) -> Result<Vec<Option<bool>>> {
        let c: &BooleanArray = self.column(name)?;
        Ok(c.iter().collect())
    }

    fn times(&self, name: &str) -> Result<Vec<Option<DateTime<Utc>>>> {
        let c: &TimestampMillisecondArray = self.column(name)?;
        Ok(c.iter()
            .map(|v| v.and_then(DateTime::from_timestamp_millis))
            .collect())
    }

    fn lists(&self, name: &str) -> Result<Vec<Option<Vec<String>>>> {
        let c: &ListArray = self.column(name)?;
        let mut out = Vec::with_capacity(c.len());
        for i in 0..c.len() {
            if c.is_null(i) {
                out.push(None);
                continue;
            }
            let items = c.value(i);
            let items = items
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| format!("column {name} is not a list of strings"))?;
            out.push(Some(
                items.iter().map(|v| v.unwrap_or("").to_string()).collect(),
            ));
        }
        Ok(out)
    }
}

/// A required value: null in a non-null column is an error naming it.
fn req<T>(value: Option<T>, column: &str, row: usize) -> Result<T> {
    value.ok_or_else(|| format!("column {column} is null in row {row}"))
}

/// The rows of a `tickets` batch, in batch order; an error names the missing, mistyped or
/// null column (and the row).
pub fn tickets(batch: &RecordBatch) -> Result<Vec<TicketRow>> {
    let c = Cols(batch);
    let ticket_id = c.ints("ticket_id")?;
    let account = c.strings("company_account_number")?;
    let number = c.strings("ticket_number")?;
    let subject = c.strings("subject")?;
    let description = c.strings("description")?;
    let description_text = c.strings("description_text")?;
    let status = c.strings("status")?;
    let priority = c.strings("priority")?;
    let requester_email = c.strings("requester_email")?;
    let requester_name = c.strings("requester_name")?;
    let created_at = c.times("created_at")?;
    let last_updated_at = c.times("last_updated_at")?;
    let closed_at = c.times("closed_at")?;
    let total_hours = c.floats("total_hours_spent")?;
    let billable_hours = c.floats("billable_hours")?;
    let total_minutes = c.ints("total_minutes")?;
    let billable_minutes = c.ints("billable_minutes")?;
    let hours_defaulted = c.bools("hours_defaulted")?;
    let department_id = c.ints("department_id")?;
    let requester_id = c.ints("requester_id")?;
    let responder_id = c.ints("responder_id")?;
    let group_id = c.ints("group_id")?;
    let ticket_type = c.strings("ticket_type")?;
    let source = c.ints("source")?;
    let conversation_count = c.ints32("conversation_count")?;
    let note_count = c.ints32("note_count")?;
    let time_entry_count = c.ints32("time_entry_count")?;
    let synced_at = c.times("synced_at")?;
    let workspace_id = c.ints("workspace_id")?;
    let category = c.strings("category")?;
    let sub_category = c.strings("sub_category")?;
    let item_category = c.strings("item_category")?;
    let urgency = c.strings("urgency")?;
    let impact = c.strings("impact")?;
    let tags = c.lists("tags")?;
    let custom_fields = c.strings("custom_fields")?;
    let due_by = c.times("due_by")?;
    let fr_due_by = c.times("fr_due_by")?;
    let is_escalated = c.bools("is_escalated")?;
    let fr_escalated = c.bools("fr_escalated")?;
    let resolved_at = c.times("resolved_at")?;
    let first_responded_at = c.times("first_responded_at")?;
    let agent_responded_at = c.times("agent_responded_at")?;
    let first_resp_time_secs = c.ints("first_resp_time_secs")?;
    let resolution_time_secs = c.ints("resolution_time_secs")?;
    let responder_email = c.strings("responder_email")?;
    let responder_name = c.strings("responder_name")?;
    let group_name = c.strings("group_name")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(TicketRow {
                ticket_id: req(ticket_id[i], "ticket_id", i)?,
                company_account_number: req(account[i].clone(), "company_account_number", i)?,
                ticket_number: req(number[i].clone(), "ticket_number", i)?,
                subject: subject[i].clone(),
                description: description[i].clone(),
                description_text: description_text[i].clone(),
                status: req(status[i].clone(), "status", i)?,
                priority: priority[i].clone(),
                requester_email: requester_email[i].clone(),
                requester_name: requester_name[i].clone(),
                created_at: created_at[i],
                last_updated_at: req(last_updated_at[i], "last_updated_at", i)?,
                closed_at: req(closed_at[i], "closed_at", i)?,
                total_hours_spent: req(total_hours[i], "total_hours_spent", i)?,
                billable_hours: req(billable_hours[i], "billable_hours", i)?,
                total_minutes: req(total_minutes[i], "total_minutes", i)?,
                billable_minutes: req(billable_minutes[i], "billable_minutes", i)?,
                hours_defaulted: req(hours_defaulted[i], "hours_defaulted", i)?,
                department_id: department_id[i],
                requester_id: requester_id[i],
                responder_id: responder_id[i],
                group_id: group_id[i],
                ticket_type: ticket_type[i].clone(),
                source: source[i],
                conversation_count: req(conversation_count[i], "conversation_count", i)?,
                note_count: req(note_count[i], "note_count", i)?,
                time_entry_count: req(time_entry_count[i], "time_entry_count", i)?,
                synced_at: req(synced_at[i], "synced_at", i)?,
                details: TicketDetails {
                    workspace_id: workspace_id[i],
                    category: category[i].clone(),
                    sub_category: sub_category[i].clone(),
                    item_category: item_category[i].clone(),
                    urgency: urgency[i].clone(),
                    impact: impact[i].clone(),
                    tags: tags[i].clone(),
                    custom_fields: custom_fields[i].clone(),
                    due_by: due_by[i],
                    fr_due_by: fr_due_by[i],
                    is_escalated: is_escalated[i],
                    fr_escalated: fr_escalated[i],
                    resolved_at: resolved_at[i],
                    first_responded_at: first_responded_at[i],
                    agent_responded_at: agent_responded_at[i],
                    first_resp_time_secs: first_resp_time_secs[i],
                    resolution_time_secs: resolution_time_secs[i],
                    responder_email: responder_email[i].clone(),
                    responder_name: responder_name[i].clone(),
                    group_name: group_name[i].clone(),
                },
            })
        })
        .collect()
}

/// The rows of a `conversations` batch, in batch order.
pub fn conversations(batch: &RecordBatch) -> Result<Vec<ConversationRow>> {
    let c = Cols(batch);
    let ticket_id = c.ints("ticket_id")?;
    let id = c.ints("conversation_id")?;
    let body = c.strings("body")?;
    let body_html = c.strings("body_html")?;
    let from_email = c.strings("from_email")?;
    let to_emails = c.lists("to_emails")?;
    let created_at = c.times("created_at")?;
    let updated_at = c.times("updated_at")?;
    let incoming = c.bools("incoming")?;
    let private = c.bools("private")?;
    let user_id = c.ints("user_id")?;
    let support_email = c.strings("support_email")?;
    let attachments = c.strings("attachments")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(ConversationRow {
                ticket_id: req(ticket_id[i], "ticket_id", i)?,
                conversation_id: req(id[i], "conversation_id", i)?,
                body: req(body[i].clone(), "body", i)?,
                body_html: body_html[i].clone(),
                from_email: from_email[i].clone(),
                to_emails: req(to_emails[i].clone(), "to_emails", i)?,
                created_at: created_at[i],
                updated_at: updated_at[i],
                incoming: req(incoming[i], "incoming", i)?,
                private: req(private[i], "private", i)?,
                user_id: user_id[i],
                support_email: support_email[i].clone(),
                attachments: attachments[i].clone(),
            })
        })
        .collect()
}

/// The rows of a `notes` batch, in batch order.
pub fn notes(batch: &RecordBatch) -> Result<Vec<NoteRow>> {
    let c = Cols(batch);
    let ticket_id = c.ints("ticket_id")?;
    let id = c.ints("note_id")?;
    let body = c.strings("body")?;
    let body_html = c.strings("body_html")?;
    let from_email = c.strings("from_email")?;
    let created_at = c.times("created_at")?;
    let user_id = c.ints("user_id")?;
    // Null in rows written before format 3.
    let to_emails = c.lists("to_emails")?;
    let updated_at = c.times("updated_at")?;
    let incoming = c.bools("incoming")?;
    let support_email = c.strings("support_email")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(NoteRow {
                to_emails: to_emails[i].clone().unwrap_or_default(),
                updated_at: updated_at[i],
                incoming: incoming[i].unwrap_or(false),
                support_email: support_email[i].clone(),
                ticket_id: req(ticket_id[i], "ticket_id", i)?,
                note_id: req(id[i], "note_id", i)?,
                body: req(body[i].clone(), "body", i)?,
                body_html: body_html[i].clone(),
                from_email: from_email[i].clone(),
                created_at: created_at[i],
                user_id: user_id[i],
            })
        })
        .collect()
}

/// The rows of a `time_entries` batch, in batch order.
pub fn time_entries(batch: &RecordBatch) -> Result<Vec<TimeEntryRow>> {
    let c = Cols(batch);
    let ticket_id = c.ints("ticket_id")?;
    let id = c.ints("time_entry_id")?;
    let agent_id = c.ints("agent_id")?;
    let agent_email = c.strings("agent_email")?;
    let minutes = c.ints("minutes")?;
    let hours = c.floats("hours")?;
    let billable = c.bools("billable")?;
    let timer_running = c.bools("timer_running")?;
    let executed_at = c.times("executed_at")?;
    let note = c.strings("note")?;
    let workspace_id = c.ints("workspace_id")?;
    let task_id = c.ints("task_id")?;
    let custom_fields = c.strings("custom_fields")?;
    let agent_name = c.strings("agent_name")?;
    let start_time = c.times("start_time")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(TimeEntryRow {
                ticket_id: req(ticket_id[i], "ticket_id", i)?,
                time_entry_id: req(id[i], "time_entry_id", i)?,
                agent_id: agent_id[i],
                agent_email: agent_email[i].clone(),
                minutes: req(minutes[i], "minutes", i)?,
                hours: req(hours[i], "hours", i)?,
                billable: req(billable[i], "billable", i)?,
                timer_running: req(timer_running[i], "timer_running", i)?,
                executed_at: executed_at[i],
                note: note[i].clone(),
                workspace_id: workspace_id[i],
                task_id: task_id[i],
                custom_fields: custom_fields[i].clone(),
                agent_name: agent_name[i].clone(),
                start_time: start_time[i],
            })
        })
        .collect()
}

/// The `rejects` rows. `updated_at` is not a column: it is `None` (the index has it).
pub fn rejects(batch: &RecordBatch) -> Result<Vec<Rejection>> {
    let c = Cols(batch);
    let ticket_id = c.ints("ticket_id")?;
    let reason = c.strings("reason")?;
    let department_id = c.ints("department_id")?;
    let detail = c.strings("detail")?;
    let seen_at = c.times("seen_at")?;
    (0..batch.num_rows())
        .map(|i| {
            let code = req(reason[i].clone(), "reason", i)?;
            let reason = RejectReason::ALL
                .into_iter()
                .find(|r| r.as_str() == code)
                .ok_or_else(|| format!("rejects row {i}: unknown reason {code:?}"))?;
            Ok(Rejection {
                ticket_id: req(ticket_id[i], "ticket_id", i)?,
                reason,
                department_id: department_id[i],
                detail: req(detail[i].clone(), "detail", i)?,
                updated_at: None,
                seen_at: req(seen_at[i], "seen_at", i)?,
            })
        })
        .collect()
}

/// The `rejects` rows as (ticket id, when it was seen): all retention needs.
pub fn rejects_seen(batch: &RecordBatch) -> Result<Vec<(i64, DateTime<Utc>)>> {
    let c = Cols(batch);
    let ticket_id = c.ints("ticket_id")?;
    let seen_at = c.times("seen_at")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok((
                req(ticket_id[i], "ticket_id", i)?,
                req(seen_at[i], "seen_at", i)?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{conversations_batch, notes_batch, tickets_batch, time_entries_batch};

    fn t(s: &str) -> Option<DateTime<Utc>> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn rows_survive_a_round_trip_through_arrow() {
        let ticket = TicketRow {
            ticket_id: 7,
            company_account_number: "482913".into(),
            ticket_number: "7".into(),
            subject: Some("Printer".into()),
            description: None,
            description_text: Some("It jams".into()),
            status: "Closed".into(),
            priority: None,
            requester_email: Some("a@b.example".into()),
            requester_name: None,
            created_at: t("2025-01-02T03:04:05.678Z"),
            last_updated_at: t("2025-01-03T00:00:00Z").unwrap(),
            closed_at: t("2025-01-03T00:00:00Z").unwrap(),
            total_hours_spent: 0.25,
            billable_hours: 0.0,
            total_minutes: 15,
            billable_minutes: 0,
            hours_defaulted: true,
            department_id: Some(3),
            requester_id: Some(9),
            responder_id: None,
            group_id: Some(1),
            ticket_type: Some("Incident".into()),
            source: Some(2),
            conversation_count: 1,
            note_count: 1,
            time_entry_count: 1,
            synced_at: t("2025-01-04T00:00:00Z").unwrap(),
            details: TicketDetails {
                tags: Some(vec!["vip".into(), String::new()]),
                custom_fields: Some("{\"a\":1}".into()),
                is_escalated: Some(false),
                urgency: Some("Low".into()),
                due_by: t("2025-01-05T00:00:00Z"),
                ..Default::default()
            },
        };
        let conversation = ConversationRow {
            ticket_id: 7,
            conversation_id: 70,
            body: "Hello".into(),
            body_html: Some("<p>Hello</p>".into()),
            from_email: None,
            to_emails: vec!["x@y.example".into()],
            created_at: t("2025-01-02T04:00:00Z"),
            updated_at: None,
            incoming: true,
            private: false,
            user_id: Some(9),
            support_email: None,
            attachments: Some("[]".into()),
        };
        let note = NoteRow {
            ticket_id: 7,
            note_id: 71,
            body: "Inside".into(),
            body_html: None,
            from_email: Some("t@msp.example".into()),
            created_at: None,
            user_id: Some(1),
            to_emails: Vec::new(),
            updated_at: None,
            incoming: false,
            support_email: None,
        };
        let entry = TimeEntryRow {
            ticket_id: 7,
            time_entry_id: 72,
            agent_id: Some(1),
            agent_email: None,
            minutes: 30,
            hours: 0.5,
            billable: true,
            timer_running: false,
            executed_at: t("2025-01-02T00:00:00Z"),
            note: Some("Fixed".into()),
            workspace_id: Some(2),
            task_id: None,
            custom_fields: Some("{}".into()),
            agent_name: Some("Terry".into()),
            start_time: None,
        };
        assert_eq!(tickets(&tickets_batch(&[&ticket])).unwrap(), vec![ticket]);
        assert_eq!(
            conversations(&conversations_batch(&[&conversation])).unwrap(),
            vec![conversation]
        );
        assert_eq!(notes(&notes_batch(&[&note])).unwrap(), vec![note]);
        assert_eq!(
            time_entries(&time_entries_batch(&[&entry])).unwrap(),
            vec![entry]
        );
    }

    #[test]
    fn a_missing_column_is_named() {
        let batch = notes_batch(&[]);
        let err = tickets(&batch).unwrap_err();
        assert!(err.contains("column"), "{err}");
    }
}
