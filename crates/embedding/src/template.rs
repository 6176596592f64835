//! Infilling templates: text with `[MASK]` (one token to fill) and `[MASK:n]` (n tokens),
//! e.g. `once upon a time [MASK:6] the end.`

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Text(String),
    Mask(usize),
}

/// A template that does not parse; the message names the problem and the syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: {problem}; write [MASK] for one token or [MASK:n] for n tokens, e.g. \"once upon a time [MASK:6] the end.\"")]
pub struct TemplateError {
    pub problem: String,
}

fn bad(problem: String) -> TemplateError {
    TemplateError { problem }
}

/// The longest span one `[MASK:n]` may ask for (a model writes far fewer positions).
pub const MAX_MASK: usize = 4096;

/// Splits a template into text and masks.
pub fn parse_template(t: &str) -> Result<Vec<TemplatePart>, TemplateError> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.find("[MASK") {
        let text = &rest[..i];
        if !text.trim().is_empty() {
            parts.push(TemplatePart::Text(text.trim().to_string()));
        }
        let after = &rest[i + 5..];
        let close = after.find(']').ok_or_else(|| bad("unclosed [MASK".into()))?;
        let inner = &after[..close];
        let n = if inner.is_empty() {
            1
        } else {
            let num = inner.strip_prefix(':').ok_or_else(|| bad(format!("bad mask [MASK{inner}]")))?;
            num.trim().parse::<usize>().ok().filter(|&n| n > 0 && n <= MAX_MASK).ok_or_else(|| {
                bad(format!("bad mask length in [MASK{inner}]; it must be a positive number up to {MAX_MASK}"))
            })?
        };
        match parts.last_mut() {
            Some(TemplatePart::Mask(m)) => *m = (*m + n).min(MAX_MASK + 1),
            _ => parts.push(TemplatePart::Mask(n)),
        }
        rest = &after[close + 1..];
    }
    if !rest.trim().is_empty() {
        parts.push(TemplatePart::Text(rest.trim().to_string()));
    }
    if !parts.iter().any(|p| matches!(p, TemplatePart::Mask(_))) {
        return Err(bad("no mask to fill".into()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TemplatePart::*;

    #[test]
    fn parses_masks_and_text() {
        assert_eq!(
            parse_template("once upon a time [MASK:6] the end.").unwrap(),
            vec![Text("once upon a time".into()), Mask(6), Text("the end.".into())]
        );
        assert_eq!(parse_template("[MASK] [MASK:2]x").unwrap(), vec![Mask(3), Text("x".into())]);
        assert!(parse_template("no masks").unwrap_err().to_string().contains("no mask"));
        assert!(parse_template("a [MASK:0] b").unwrap_err().to_string().contains("positive"));
        assert!(parse_template("a [MASK:x] b").unwrap_err().to_string().contains("positive"));
        assert!(parse_template("a [MASK b").unwrap_err().to_string().contains("unclosed"));
        assert!(parse_template("a [MASKED] b").unwrap_err().to_string().contains("bad mask"));
    }
}
