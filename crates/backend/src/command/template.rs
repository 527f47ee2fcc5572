//! Command templates: `{name}` placeholders, `{{` / `}}` for literal braces, and POSIX shell
//! quoting of every substituted value (the result runs through `sh -c`).

use super::CommandConfigError;
use std::fmt;

/// A value a template can refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placeholder {
    Input,
    Output,
    Batch,
    Proof,
    Public,
    OldRoot,
    NewRoot,
    Commitment,
    Tmpdir,
}

impl Placeholder {
    const ALL: [Placeholder; 9] = [
        Placeholder::Input,
        Placeholder::Output,
        Placeholder::Batch,
        Placeholder::Proof,
        Placeholder::Public,
        Placeholder::OldRoot,
        Placeholder::NewRoot,
        Placeholder::Commitment,
        Placeholder::Tmpdir,
    ];

    /// Placeholders of the prove template.
    pub(crate) const PROVE: &'static [Placeholder] = &[
        Placeholder::Input,
        Placeholder::Output,
        Placeholder::Batch,
        Placeholder::Public,
        Placeholder::OldRoot,
        Placeholder::NewRoot,
        Placeholder::Commitment,
        Placeholder::Tmpdir,
    ];

    /// Placeholders of the verify template: no batch number or input, by the trait's contract.
    pub(crate) const VERIFY: &'static [Placeholder] = &[
        Placeholder::Proof,
        Placeholder::Public,
        Placeholder::OldRoot,
        Placeholder::NewRoot,
        Placeholder::Commitment,
        Placeholder::Tmpdir,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Placeholder::Input => "input",
            Placeholder::Output => "output",
            Placeholder::Batch => "batch",
            Placeholder::Proof => "proof",
            Placeholder::Public => "public",
            Placeholder::OldRoot => "old_root",
            Placeholder::NewRoot => "new_root",
            Placeholder::Commitment => "commitment",
            Placeholder::Tmpdir => "tmpdir",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Value(Placeholder),
}

/// A parsed, validated template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text` for the template called `which` (`prove` / `verify`), accepting only the
    /// placeholders in `allowed`.
    pub(crate) fn parse(
        which: &'static str,
        text: &str,
        allowed: &[Placeholder],
    ) -> Result<Self, CommandConfigError> {
        let err = |reason: String| CommandConfigError::Template { which, reason };
        if text.trim().is_empty() {
            return Err(err("the command is empty".into()));
        }
        if text.contains('\0') {
            return Err(err("the command contains a NUL byte".into()));
        }
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['{', '}']) {
            lit.push_str(&rest[..i]);
            let tail = &rest[i..];
            if tail.starts_with("{{") || tail.starts_with("}}") {
                lit.push_str(&tail[..1]);
                rest = &tail[2..];
                continue;
            }
            if tail.starts_with('}') {
                return Err(err(format!(
                    "unmatched '}}' at byte {} (write '}}}}' for a literal brace)",
                    text.len() - tail.len()
                )));
            }
            let Some(end) = tail.find('}') else {
                return Err(err(format!(
                    "unclosed '{{' at byte {} (write '{{{{' for a literal brace)",
                    text.len() - tail.len()
                )));
            };
            let name = &tail[1..end];
            let ph = Placeholder::from_name(name)
                .filter(|p| allowed.contains(p))
                .ok_or_else(|| {
                    err(format!(
                        "unknown placeholder {{{name}}}; allowed: {} (write '{{{{' and '}}}}' for literal braces, e.g. '${{{{HOME}}}}' or just '$HOME')",
                        Names(allowed)
                    ))
                })?;
            // The value is single-quoted already; inside quotes the quotes would become part of it.
            let before = text[..text.len() - tail.len()].chars().next_back();
            let after = tail[end + 1..].chars().next();
            if let (Some(q @ ('"' | '\'')), Some(a)) = (before, after)
                && a == q
            {
                return Err(err(format!(
                    "remove the quotes around {{{name}}}: substituted values are shell-quoted already"
                )));
            }
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Value(ph));
            rest = &tail[end + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            pieces.push(Piece::Literal(lit));
        }
        Ok(Template { pieces })
    }

    /// The shell command line, each value from `value` shell-quoted.
    /// Whether the template names `p`.
    pub(crate) fn uses(&self, p: Placeholder) -> bool {
        self.pieces.contains(&Piece::Value(p))
    }

    pub(crate) fn render(&self, value: impl Fn(Placeholder) -> String) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Value(p) => out.push_str(&shell_quote(&value(*p))),
            }
        }
        out
    }
}

/// POSIX single-quoting: `'…'`, with each `'` written as `'\''`. Safe for any byte string
/// without NUL (paths with spaces, quotes, `$`, backticks, newlines).
pub(crate) fn shell_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

struct Names<'a>(&'a [Placeholder]);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{{{}}}", p.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str) -> Result<String, CommandConfigError> {
        Ok(
            Template::parse("prove", t, Placeholder::PROVE)?.render(|p| match p {
                Placeholder::Input => "/tmp/a b/it's".into(),
                other => other.name().to_uppercase(),
            }),
        )
    }

    #[test]
    fn substitutes_and_quotes() {
        assert_eq!(
            render("prove --in {input} > {output}").unwrap(),
            r"prove --in '/tmp/a b/it'\''s' > 'OUTPUT'"
        );
        assert_eq!(render("x{batch}y").unwrap(), "x'BATCH'y");
    }

    #[test]
    fn escaped_braces_are_literal() {
        assert_eq!(
            render("echo ${{HOME}} {{ a; }}").unwrap(),
            "echo ${HOME} { a; }"
        );
    }

    #[test]
    fn rejects_bad_templates() {
        for (t, needle) in [
            ("", "empty"),
            ("   ", "empty"),
            ("run {foo}", "unknown placeholder {foo}"),
            ("run {proof}", "unknown placeholder {proof}"),
            ("echo ${HOME}", "unknown placeholder {HOME}"),
            ("run {input", "unclosed"),
            ("run }", "unmatched"),
            ("run \"{input}\"", "remove the quotes"),
            ("run '{output}'", "remove the quotes"),
            ("a\0b", "NUL"),
        ] {
            let e = render(t).unwrap_err().to_string();
            assert!(e.contains(needle), "{t:?}: {e}");
        }
        let e = Template::parse("verify", "v {batch}", Placeholder::VERIFY).unwrap_err();
        assert!(e.to_string().contains("verify"), "{e}");
    }
}
