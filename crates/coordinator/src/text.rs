//! Text that comes from outside (provers, clients) made fit to log and to store.

/// Text from a prover made fit to store: at most `max` characters, and NUL (which PostgreSQL
/// text cannot hold) replaced.
pub(crate) fn storable_text(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| {
            if c == '\0' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// Names and versions a prover or client gives: printable, 1 to 128 bytes.
pub(crate) fn check_label(what: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > 128 {
        return Err(format!("{what} must be 1-128 bytes"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(())
}
