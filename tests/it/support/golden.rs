//! Golden files: expected output kept in the repository, compared with what the code produces.
//! `UPDATE_GOLDEN=1 cargo test` (re)writes every golden file a test checks instead of comparing.
//!
//! The one golden helper of the project: the integration suite has it as `support::golden`, the
//! library's unit tests (schema contract, markdown) include this same file from `src/lib.rs`.

use std::path::{Path, PathBuf};

/// Compares `actual` with the golden file at `path` (relative to the package root, or
/// absolute). A mismatch fails with the file's name and a line diff; with `UPDATE_GOLDEN=1` set
/// the file is written instead (its directory created if needed).
#[track_caller]
pub fn check(path: impl AsRef<Path>, actual: &str) {
    let path = resolve(path.as_ref());
    if updating() {
        write(&path, actual);
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "golden file {}: {e} (UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "golden file {} differs from the output (UPDATE_GOLDEN=1 rewrites it)\n\
             --- {0} (expected)\n+++ output (actual)\n{}",
            path.display(),
            diff(&expected, actual)
        );
    }
}

/// Whether this run rewrites golden files: `UPDATE_GOLDEN` set to anything but empty or `0`.
pub fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| !v.is_empty() && v != "0")
}

fn resolve(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
    }
}

/// Writes through a temporary file and a rename: tests that check the same file in parallel
/// never see it half written.
fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    let tmp = path.with_extension(format!("golden-{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The lines that differ, `-` expected and `+` actual, with two lines of context around each
/// change (a longest-common-subsequence diff; golden files are small).
fn diff(expected: &str, actual: &str) -> String {
    const CONTEXT: usize = 2;
    const MAX_LINES: usize = 300;
    let old: Vec<&str> = expected.lines().collect();
    let new: Vec<&str> = actual.lines().collect();
    if old.len() * new.len() > 25_000_000 {
        return format!("(too large to diff)\n--- expected\n{expected}\n--- actual\n{actual}");
    }
    // lcs[i][j]: the longest common subsequence of old[i..] and new[j..].
    let mut lcs = vec![vec![0usize; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            lcs[i][j] = if old[i] == new[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // (tag, expected line number, text)
    let mut ops: Vec<(char, usize, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            ops.push((' ', i + 1, old[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < old.len() && (j == new.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', i + 1, old[i]));
            i += 1;
        } else {
            ops.push(('+', i + 1, new[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = Vec::new();
    let mut shown_to = 0;
    for &k in &changed {
        let from = k.saturating_sub(CONTEXT).max(shown_to);
        if out.is_empty() || from > shown_to {
            out.push(format!("@@ expected line {} @@", ops[from].1));
        }
        let to = (k + CONTEXT + 1).min(ops.len());
        for (tag, _, text) in &ops[from..to] {
            out.push(format!("{tag}{text}"));
        }
        shown_to = shown_to.max(to);
    }
    if expected.ends_with('\n') != actual.ends_with('\n') {
        out.push("(the files differ in the newline at the end)".into());
    }
    if out.len() > MAX_LINES {
        let more = out.len() - MAX_LINES;
        out.truncate(MAX_LINES);
        out.push(format!("... {more} more diff lines"));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::diff;

    #[test]
    fn the_diff_shows_changed_lines_with_context() {
        let expected = "a\nb\nc\nd\ne\nf\ng\n";
        let actual = "a\nb\nc\nD\ne\nf\ng\nh\n";
        assert_eq!(
            diff(expected, actual),
            "@@ expected line 2 @@\n b\n c\n-d\n+D\n e\n f\n g\n+h"
        );
    }
}
