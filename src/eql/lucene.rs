//! Lucene regular expressions (STUB: being written).

/// Translate a Lucene `RegExp` pattern into an anchored `regex` crate pattern.
pub fn translate(pattern: &str) -> Result<String, String> {
    Ok(format!("^(?:{})$", regex::escape(pattern)))
}
