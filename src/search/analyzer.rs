//! Text analysis for message search, the same for documents and queries.
//!
//! Korean glues particles and endings to words ("회의는", "회의를", "배포했습니다"), so a
//! whitespace tokenizer finds none of them for "회의" or "배포". Runs of Hangul (and of Han and
//! kana, which have no spaces either) are cut into overlapping character bigrams, plus single
//! characters so a one-syllable query finds something; letters and digits of other scripts
//! form lowercased words. A query word is then a phrase of its bigrams: "회의록" finds
//! "회의록을" but not "회의는". The last Latin word of a query word matches as a prefix
//! ("deploy" finds "deployment").
//!
//! Text is NFC-normalised first: file names from macOS carry decomposed Hangul.

use unicode_normalization::UnicodeNormalization;

/// A token and its position; the tokens of a Hangul run share positions with its characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub position: usize,
}

/// One word of a query: a phrase of tokens at relative positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryWord {
    pub tokens: Vec<Token>,
    /// The last token is a Latin word (or number) that matches any word it starts.
    pub prefix: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Scripts written without spaces between words: cut into character n-grams.
    Gram,
    /// Letters and digits of other scripts: whole words.
    Word,
    Separator,
}

fn class(c: char) -> Class {
    let code = c as u32;
    let gram = matches!(code,
        0xAC00..=0xD7A3     // Hangul syllables
        | 0x1100..=0x11FF   // Hangul jamo
        | 0x3130..=0x318F   // Hangul compatibility jamo
        | 0xA960..=0xA97F | 0xD7B0..=0xD7FF // Hangul jamo extended
        | 0x3040..=0x30FF   // hiragana, katakana
        | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF // Han
    );
    if gram {
        Class::Gram
    } else if c.is_alphanumeric() {
        Class::Word
    } else {
        Class::Separator
    }
}

/// Splits normalised text into runs of one class, separators dropped.
fn runs(text: &str) -> Vec<(Class, String)> {
    let mut runs: Vec<(Class, String)> = Vec::new();
    let mut previous = Class::Separator;
    for c in text.nfc() {
        let kind = class(c);
        match kind {
            Class::Separator => {}
            _ if kind == previous => {
                if let Some((_, run)) = runs.last_mut() {
                    run.extend(c.to_lowercase());
                }
            }
            _ => runs.push((kind, c.to_lowercase().collect())),
        }
        previous = kind;
    }
    runs
}

/// The tokens of a document's text.
pub fn document_tokens(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut position = 0;
    for (kind, run) in runs(text) {
        match kind {
            Class::Gram => {
                let chars: Vec<char> = run.chars().collect();
                for (i, c) in chars.iter().enumerate() {
                    tokens.push(Token {
                        text: c.to_string(),
                        position: position + i,
                    });
                    if let Some(next) = chars.get(i + 1) {
                        tokens.push(Token {
                            text: [*c, *next].iter().collect(),
                            position: position + i,
                        });
                    }
                }
                position += chars.len();
            }
            _ => {
                tokens.push(Token {
                    text: run,
                    position,
                });
                position += 1;
            }
        }
    }
    tokens
}

/// The tokens a query word is matched by: bigrams of Hangul runs (the character itself for a
/// run of one), whole Latin words; positions relative to the word's start.
fn query_tokens(word: &str) -> (Vec<Token>, bool) {
    let mut tokens = Vec::new();
    let mut position = 0;
    let mut last_is_word = false;
    for (kind, run) in runs(word) {
        match kind {
            Class::Gram => {
                let chars: Vec<char> = run.chars().collect();
                if chars.len() == 1 {
                    tokens.push(Token {
                        text: run.clone(),
                        position,
                    });
                }
                for (i, pair) in chars.windows(2).enumerate() {
                    tokens.push(Token {
                        text: pair.iter().collect(),
                        position: position + i,
                    });
                }
                position += chars.len();
                last_is_word = false;
            }
            _ => {
                tokens.push(Token {
                    text: run,
                    position,
                });
                position += 1;
                last_is_word = true;
            }
        }
    }
    (tokens, last_is_word)
}

/// The most tokens a query word is matched by; a longer word is matched by its beginning.
const MAX_WORD_TOKENS: usize = 32;

/// The words of a search term (split at whitespace), each a phrase to find; query syntax
/// characters mean nothing and are dropped with the other separators. Repeated words count
/// once. At most `max_words` words are kept.
pub fn query(term: &str, max_words: usize) -> Vec<QueryWord> {
    let mut words: Vec<QueryWord> = Vec::new();
    for piece in term.split_whitespace() {
        let (mut tokens, mut prefix) = query_tokens(piece);
        if tokens.len() > MAX_WORD_TOKENS {
            tokens.truncate(MAX_WORD_TOKENS);
            prefix = false;
        }
        if tokens.is_empty() {
            continue;
        }
        let word = QueryWord { tokens, prefix };
        if !words.contains(&word) {
            words.push(word);
        }
        if words.len() == max_words {
            break;
        }
    }
    words
}

impl QueryWord {
    /// Whether the word occurs in `tokens` (a document's tokens), by the rules the index
    /// applies: its tokens at the same relative positions, the last one as a prefix when it
    /// is a Latin word.
    pub fn occurs_in(&self, tokens: &[Token]) -> bool {
        let Some(first) = self.tokens.first() else {
            return false;
        };
        let last = self.tokens.len() - 1;
        let matches = |i: usize, token: &Token| {
            let wanted = &self.tokens[i].text;
            if i == last && self.prefix {
                token.text.starts_with(wanted.as_str())
            } else {
                token.text == *wanted
            }
        };
        tokens.iter().filter(|t| matches(0, t)).any(|start| {
            self.tokens.iter().enumerate().skip(1).all(|(i, wanted)| {
                let at = start.position + wanted.position - first.position;
                tokens.iter().any(|t| t.position == at && matches(i, t))
            })
        })
    }
}

/// The words of `text` (as written, trimmed of punctuation) in which any of `words` occurs:
/// what a client highlights.
pub fn highlights(text: &str, words: &[QueryWord]) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for piece in text.split_whitespace() {
        let piece = piece.trim_matches(|c: char| !c.is_alphanumeric());
        if piece.is_empty() || found.iter().any(|f| f == piece) {
            continue;
        }
        let tokens = document_tokens(piece);
        if words.iter().any(|w| w.occurs_in(&tokens)) {
            found.push(piece.to_owned());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(tokens: &[Token]) -> Vec<(&str, usize)> {
        tokens
            .iter()
            .map(|t| (t.text.as_str(), t.position))
            .collect()
    }

    fn finds(term: &str, text: &str) -> bool {
        let tokens = document_tokens(text);
        let words = query(term, 16);
        !words.is_empty() && words.iter().all(|w| w.occurs_in(&tokens))
    }

    #[test]
    fn hangul_runs_become_characters_and_bigrams_latin_words_lowercase() {
        assert_eq!(
            texts(&document_tokens("API 회의는 3시")),
            vec![
                ("api", 0),
                ("회", 1),
                ("회의", 1),
                ("의", 2),
                ("의는", 2),
                ("는", 3),
                ("3", 4),
                ("시", 5),
            ]
        );
    }

    #[test]
    fn korean_words_are_found_inside_inflected_forms() {
        assert!(finds("회의", "오늘 회의는 3시"));
        assert!(finds("회의", "회의를 시작합니다"));
        assert!(finds("배포", "어제 배포했습니다"));
        assert!(finds("배포했", "어제 배포했습니다"));
        assert!(finds("회의록", "회의록 공유드립니다"));
        assert!(!finds("회의록", "오늘 회의는 3시"));
        assert!(finds("3시", "오늘 회의는 3시"));
        assert!(finds("시", "오늘 회의는 3시"));
        assert!(!finds("회의 점심", "오늘 회의는 3시"));
    }

    #[test]
    fn latin_words_match_case_insensitively_and_by_prefix() {
        assert!(finds("api", "API 배포 일정"));
        assert!(finds("deploy", "Deployment finished"));
        assert!(!finds("deployment", "deploy finished"));
        assert!(finds("API배포", "API 배포 일정"));
        assert!(finds("budget.xlsx", "2026_budget.xlsx"));
        assert!(finds("xlsx", "2026_budget.xlsx"));
    }

    #[test]
    fn decomposed_hangul_matches_composed() {
        let decomposed: String = "회의록.pdf".chars().collect::<String>();
        let decomposed: String =
            unicode_normalization::UnicodeNormalization::nfd(decomposed.as_str()).collect();
        assert_ne!(decomposed, "회의록.pdf");
        assert!(finds("회의록", &decomposed));
    }

    #[test]
    fn query_syntax_means_nothing() {
        assert!(query("\" * - ( : \\", 16).is_empty());
        assert!(query("", 16).is_empty());
        assert_eq!(query("\"회의\"", 16), query("회의", 16));
        assert_eq!(query("a b c d", 2).len(), 2);
        assert_eq!(query("회의 회의", 16).len(), 1);
    }

    #[test]
    fn highlights_are_the_words_as_written() {
        let words = query("회의 deploy", 16);
        assert_eq!(
            highlights("오늘 회의는 3시, Deployed (회의실)!", &words),
            vec!["회의는", "Deployed", "회의실"]
        );
    }
}
