//! Error reports for the binaries: an error and its causes on one line, each cause once. Many
//! errors quote their source in their own message (so a log line without the chain is complete)
//! and also return it from `source()`; printing the whole chain then repeated the OS error two or
//! three times ("Permission denied (os error 13): Permission denied (os error 13)").

/// `error: cause: cause…`, skipping a cause whose text the line already holds.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("/run/nanoecr: creating the socket directory: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("starting")]
    struct Outer(#[source] Quoting);

    #[test]
    fn each_os_error_appears_once() {
        let e = Outer(Quoting(std::io::Error::from_raw_os_error(13)));
        let line = one_line(&e);
        assert_eq!(line.matches("os error 13").count(), 1, "{line}");
        assert!(line.starts_with("starting: /run/nanoecr: creating the socket directory: "), "{line}");
    }
}
