//! The markdown sink: one KnowledgeTree document per ticket at
//! `markdown/<account>/<year>/<ticket_id>.md` (another domain than the dataset's first:
//! `markdown/domain=<domain>/<account>/<year>/<ticket_id>.md`, see [`Scope`]). Rendering happens in normalize; this module only
//! decides which documents to stage and which stale ones to delete.

use object_store::path::Path;

use crate::normalize::Placed;
use crate::state::Location;
use crate::storage::layout::Scope;

/// The document path of a placed ticket of the domain of `scope`.
pub fn path_of(scope: &Scope, placed: &Placed) -> Path {
    scope.markdown_file(&placed.account, placed.year, placed.ticket.ticket_id)
}

/// The document a ticket had before this changeset, if it must go: the ticket moved to another
/// account or year, was rejected, or was removed.
pub fn stale_path(
    scope: &Scope,
    ticket_id: i64,
    old: Option<&Location>,
    new: Option<(&str, i32)>,
) -> Option<Path> {
    match old {
        Some(Location::Placed { account, year }) if new != Some((account.as_str(), *year)) => {
            Some(scope.markdown_file(account, *year, ticket_id))
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
        assert_eq!(
            stale_path(&Scope::Home, 5, Some(&old), Some(("1", 2024))),
            None
        );
        assert_eq!(
            stale_path(&Scope::Home, 5, Some(&old), Some(("2", 2024)))
                .unwrap()
                .as_ref(),
            "markdown/1/2024/5.md"
        );
        assert!(stale_path(&Scope::Home, 5, Some(&old), None).is_some());
        assert_eq!(
            stale_path(&Scope::Home, 5, Some(&Location::Rejected), None),
            None
        );
        assert_eq!(stale_path(&Scope::Home, 5, None, Some(("1", 2024))), None);
    }
}
