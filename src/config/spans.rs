//! A job file's parse error pointed at the key it is about. An unknown key in `[source]` is
//! reported by the TOML reader at the table's header (`kind` decides the table's type, and
//! the key's own place is lost on the way): the error is told again at the key's line.

/// The parse error `e` of job file `text`, as shown: an unknown field reported at a table's
/// header line is shown at its own line in that table, where one spells it.
pub(super) fn shown(text: &str, e: &toml::de::Error) -> String {
    let as_read = e.to_string().trim_end().to_string();
    let message = e.message();
    let Some(name) = message
        .strip_prefix("unknown field `")
        .and_then(|m| m.split_once('`'))
        .map(|(name, _)| name)
    else {
        return as_read;
    };
    let Some(span) = e.span() else {
        return as_read;
    };
    let lines: Vec<&str> = text.lines().collect();
    let header = text[..span.start.min(text.len())].matches('\n').count();
    if !lines
        .get(header)
        .is_some_and(|l| l.trim_start().starts_with('['))
    {
        return as_read;
    }
    // The table's own lines: up to the next header.
    let Some(at) = lines
        .iter()
        .enumerate()
        .skip(header + 1)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| key_of(l) == Some(name))
        .map(|(i, _)| i)
    else {
        return as_read;
    };
    let line = lines[at];
    let column = line.len() - line.trim_start().len();
    let number = (at + 1).to_string();
    let pad = " ".repeat(number.len());
    format!(
        "TOML parse error at line {number}, column {}\n{pad} |\n{number} | {line}\n{pad} | {}{}\n{message}",
        column + 1,
        " ".repeat(column),
        "^".repeat(name.chars().count().max(1)),
    )
}

/// The key a line sets (`key = value`, the key bare or quoted), if it sets one.
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let key = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(key);
    (!key.is_empty()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_of_a_tagged_table_is_shown_at_its_line() {
        let text = "[job]\nname = \"j\"\n[source]\nkind = \"kafka\"\nbrokers = \"b\"\n  topic = \"events\"\n[repo]\nschema = \"s.toml\"\n[sink]\nurl = \"out/\"\n";
        let e = toml::from_str::<super::super::JobFile>(text).unwrap_err();
        let told = shown(text, &e);
        assert!(
            told.starts_with("TOML parse error at line 6, column 3\n  |\n6 |   topic = \"events\"\n  |   ^^^^^\nunknown field `topic`"),
            "{told}"
        );
        // Elsewhere the reader's own place stands.
        let text = text.replace("  topic = \"events\"", "topics = [\"e\"]") + "formt = 1\n";
        let e = toml::from_str::<super::super::JobFile>(&text).unwrap_err();
        assert_eq!(shown(&text, &e), e.to_string().trim_end());
    }
}
