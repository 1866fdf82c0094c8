//! Bounded text: names, chat titles and grant reasons follow one rule, parsed once into a type
//! that every edge and service uses (zero2prod's `SubscriberName` is the model), so no two places
//! can disagree on it. The rule: no control character anywhere; surrounding whitespace trimmed;
//! then 1 to `MAX` characters. The OpenAPI document states the same rule as one pattern.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// Text of 1 to `MAX` characters after trimming, without control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedText<const MAX: usize>(String);

/// A person's given or family name: 1 to 100 characters.
pub type Name = BoundedText<100>;
/// A chat's title: 1 to 200 characters.
pub type ChatTitle = BoundedText<200>;
/// Why an admin granted or took back credits: 1 to 200 characters.
pub type Reason = BoundedText<200>;

/// What is wrong with a text, as the client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextProblem {
    /// Empty (or only whitespace) or longer than allowed.
    #[error("must be 1 to {0} characters")]
    Length(usize),
    /// A control character somewhere.
    #[error("must not contain control characters")]
    ControlCharacter,
}

impl<const MAX: usize> BoundedText<MAX> {
    /// Checks and trims `raw`.
    pub fn parse(raw: &str) -> Result<BoundedText<MAX>, TextProblem> {
        if raw.chars().any(char::is_control) {
            return Err(TextProblem::ControlCharacter);
        }
        let text = raw.trim();
        if text.is_empty() || text.chars().count() > MAX {
            return Err(TextProblem::Length(MAX));
        }
        Ok(BoundedText(text.to_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }

    /// The rule as a JSON Schema (ECMA-262) pattern: optional whitespace that is no control
    /// character, then 1 to `MAX` characters that are no control character and neither start nor
    /// end with whitespace, then optional whitespace again.
    pub fn pattern() -> String {
        const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";
        let (space, visible, any) =
            (format!("[^\\S{CONTROL}]"), format!("[^\\s{CONTROL}]"), format!("[^{CONTROL}]"));
        let inner = MAX.saturating_sub(2);
        format!("^{space}*{visible}(?:{any}{{0,{inner}}}{visible})?{space}*$")
    }
}

impl<const MAX: usize> fmt::Display for BoundedText<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> AsRef<str> for BoundedText<MAX> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de, const MAX: usize> Deserialize<'de> for BoundedText<MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        // Worded as serde's own "invalid …, expected …", which the REST edge turns into
        // "must be …" under the field's name without echoing the value.
        BoundedText::parse(&raw).map_err(|problem| {
            let expected = match problem {
                TextProblem::Length(max) => format!("1 to {max} characters"),
                TextProblem::ControlCharacter => "text without control characters".to_owned(),
            };
            serde::de::Error::custom(format!("invalid text, expected {expected}"))
        })
    }
}

impl<const MAX: usize> utoipa::PartialSchema for BoundedText<MAX> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(Self::pattern()))
            .description(Some(format!(
                "1 to {MAX} characters once surrounding whitespace is trimmed (it is), without control characters"
            )))
            .into()
    }
}

impl<const MAX: usize> utoipa::ToSchema for BoundedText<MAX> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("Text1To{MAX}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_trimmed_before_its_length_is_counted() {
        let title = ChatTitle::parse(&format!(" {} ", "é".repeat(200))).expect("200 after trimming");
        assert_eq!(title.as_str().chars().count(), 200);
        assert_eq!(ChatTitle::parse(&"x".repeat(201)), Err(TextProblem::Length(200)));
        assert_eq!(Name::parse("  Ada  ").unwrap().as_str(), "Ada");
    }

    #[test]
    fn blank_text_and_control_characters_are_refused_wherever_they_are() {
        for (case, raw) in [("empty", ""), ("spaces", "   "), ("tab only", "\t")] {
            assert!(Name::parse(raw).is_err(), "{case}");
        }
        for (case, raw) in [
            ("inside", "A\u{7}da"),
            ("leading tab", "\tAda"),
            ("newline at the end", "Ada\n"),
            ("C1", "A\u{85}"),
        ] {
            assert_eq!(Name::parse(raw), Err(TextProblem::ControlCharacter), "{case}");
        }
    }

    #[test]
    fn the_schema_pattern_states_the_same_rule() {
        // The pattern is ECMA-262, which Rust's regex crate reads the same way for these classes.
        let pattern = BoundedText::<5>::pattern();
        assert_eq!(
            pattern,
            r"^[^\S\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f](?:[^\x00-\x1f\x7f-\x9f]{0,3}[^\s\x00-\x1f\x7f-\x9f])?[^\S\x00-\x1f\x7f-\x9f]*$"
        );
        let schema = serde_json::to_value(<BoundedText<5> as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["pattern"], pattern.as_str(), "{schema}");
        let regex = regex::Regex::new(&pattern).unwrap();
        for sample in [
            "a",
            "abcde",
            "abcdef",
            " abcde ",
            "  a  ",
            "",
            " ",
            "ab\tc",
            "\tab",
            "ab\n",
            "a b",
            "é ü",
            " x\u{a0}",
            "\u{a0}abc",
            "a\u{7f}",
            "a\u{9f}b",
            "\u{2003}abcde\u{2003}",
            "ab cd e",
        ] {
            let sample = sample.replace("\\t", "\t");
            assert_eq!(
                regex.is_match(&sample),
                BoundedText::<5>::parse(&sample).is_ok(),
                "the pattern and the parser agree on {sample:?}"
            );
        }
    }
}
