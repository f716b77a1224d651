//! The markdown sink: one KnowledgeTree document per ticket at
//! `markdown/<account>/<year>/<ticket_id>.md`. Rendering happens in normalize; this module only
//! decides which documents to stage and which stale ones to delete.

use object_store::path::Path;

use crate::normalize::Placed;
use crate::state::Location;
use crate::storage::layout;

/// The document path of a placed ticket.
pub fn path_of(placed: &Placed) -> Path {
    layout::markdown_file(&placed.account, placed.year, placed.ticket.ticket_id)
}

/// The document a ticket had before this changeset, if it must go: the ticket moved to another
/// account or year, was rejected, or was removed.
pub fn stale_path(
    ticket_id: i64,
    old: Option<&Location>,
    new: Option<(&str, i32)>,
) -> Option<Path> {
    match old {
        Some(Location::Placed { account, year }) if new != Some((account.as_str(), *year)) => {
            Some(layout::markdown_file(account, *year, ticket_id))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_documents() {
        let old = Location::Placed {
            account: "1".into(),
            year: 2024,
        };
        assert_eq!(stale_path(5, Some(&old), Some(("1", 2024))), None);
        assert_eq!(
            stale_path(5, Some(&old), Some(("2", 2024)))
                .unwrap()
                .as_ref(),
            "markdown/1/2024/5.md"
        );
        assert!(stale_path(5, Some(&old), None).is_some());
        assert_eq!(stale_path(5, Some(&Location::Rejected), None), None);
        assert_eq!(stale_path(5, None, Some(("1", 2024))), None);
    }
}
