//! `#[sync(rename_all = "...")]`: the naming conventions a struct can map its field
//! names to.

/// A naming convention for column names, applied to Rust field names (which are
/// taken to be `snake_case`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RenameRule {
    /// `dueAt`
    Camel,
    /// `DueAt`
    Pascal,
    /// `due_at`
    Snake,
    /// `due_at` -> `due_at`, `Due` -> `due`
    Lower,
    /// `DUE_AT`
    Upper,
    /// `DUE_AT`
    ScreamingSnake,
}

impl RenameRule {
    /// Every rule with the name the attribute spells it with.
    pub(crate) const ALL: [(&'static str, RenameRule); 6] = [
        ("camelCase", RenameRule::Camel),
        ("PascalCase", RenameRule::Pascal),
        ("snake_case", RenameRule::Snake),
        ("lowercase", RenameRule::Lower),
        ("UPPERCASE", RenameRule::Upper),
        ("SCREAMING_SNAKE_CASE", RenameRule::ScreamingSnake),
    ];

    /// The rule spelled `name`, exactly.
    pub(crate) fn from_name(name: &str) -> Option<RenameRule> {
        RenameRule::ALL.iter().find(|(n, _)| *n == name).map(|(_, rule)| *rule)
    }

    /// `"camelCase", "PascalCase", ...` for error messages.
    pub(crate) fn names() -> String {
        let quoted: Vec<String> = RenameRule::ALL.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        quoted.join(", ")
    }

    /// The column name of a field named `field` (without `r#`).
    pub(crate) fn apply(self, field: &str) -> String {
        match self {
            RenameRule::Snake => field.to_owned(),
            RenameRule::Lower => field.to_ascii_lowercase(),
            RenameRule::Upper | RenameRule::ScreamingSnake => field.to_ascii_uppercase(),
            RenameRule::Pascal => pascal(field),
            RenameRule::Camel => {
                let pascal = pascal(field);
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => pascal,
                }
            }
        }
    }
}

/// `due_at` -> `DueAt`: each `_`-separated word capitalized, underscores dropped.
fn pascal(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut capitalize = true;
    for ch in field.chars() {
        if ch == '_' {
            capitalize = true;
        } else if capitalize {
            out.push(ch.to_ascii_uppercase());
            capitalize = false;
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::RenameRule::{self, *};

    #[test]
    fn applies_each_rule() {
        let cases: [(&str, RenameRule, &str); 10] = [
            ("due_at", Camel, "dueAt"),
            ("due_at", Pascal, "DueAt"),
            ("due_at", Snake, "due_at"),
            ("due_at", Lower, "due_at"),
            ("due_at", Upper, "DUE_AT"),
            ("due_at", ScreamingSnake, "DUE_AT"),
            ("text", Camel, "text"),
            ("is_done_2", Camel, "isDone2"),
            ("a_b_c", Pascal, "ABC"),
            ("_private", Camel, "private"),
        ];
        for (field, rule, column) in cases {
            assert_eq!(rule.apply(field), column, "{field} with {rule:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for (name, rule) in RenameRule::ALL {
            assert_eq!(RenameRule::from_name(name), Some(rule));
        }
        assert_eq!(RenameRule::from_name("camelcase"), None);
        assert_eq!(RenameRule::from_name("kebab-case"), None);
    }
}
