//! What a link preview reads of a page: its `<title>`, `<meta name="description">` and the
//! OpenGraph (`og:*`) and Twitter card properties of its `<meta>` tags. A small tolerant
//! scanner, not a full HTML parser: it reads tags and their attributes, skips comments,
//! scripts and styles, and decodes character references.

use std::collections::BTreeMap;

/// Longest text kept of a title, description or property.
const MAX_TEXT_CHARS: usize = 1000;

/// What a page says about itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub title: Option<String>,
    pub description: Option<String>,
    /// `og:*` and `twitter:*` properties, the first of each name.
    pub properties: BTreeMap<String, String>,
}

/// The `charset` a page declares in a `<meta>` tag, if any.
pub fn declared_charset(html: &[u8]) -> Option<String> {
    // Declarations are ASCII and come early: look at the start only.
    let head = String::from_utf8_lossy(&html[..html.len().min(4096)]).to_ascii_lowercase();
    let mut rest = head.as_str();
    while let Some(at) = rest.find("charset") {
        rest = &rest[at + "charset".len()..];
        let value = rest
            .trim_start()
            .strip_prefix('=')?
            .trim_start()
            .trim_start_matches(['"', '\'']);
        let end = value
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(value.len());
        if end > 0 {
            return Some(value[..end].to_owned());
        }
    }
    None
}

/// Reads the page.
pub fn parse(html: &str) -> Page {
    let mut page = Page::default();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        if let Some(comment) = rest.strip_prefix("!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let Some(close) = rest.find('>') else {
            break;
        };
        let tag = &rest[..close];
        rest = &rest[close + 1..];
        let name_end = tag
            .find(|c: char| c.is_whitespace() || c == '/')
            .unwrap_or(tag.len());
        let name = tag[..name_end].to_ascii_lowercase();
        match name.as_str() {
            "meta" => read_meta(&attributes(&tag[name_end..]), &mut page),
            "title" if page.title.is_none() => {
                let end = find_ignore_case(rest, "</title").unwrap_or(rest.len());
                let text = clean(&decode(&rest[..end]));
                if !text.is_empty() {
                    page.title = Some(text);
                }
                rest = &rest[end..];
            }
            "script" | "style" => {
                let end = find_ignore_case(rest, &format!("</{name}")).unwrap_or(rest.len());
                rest = &rest[end..];
            }
            "body" if !page.properties.is_empty() || page.title.is_some() => break,
            _ => {}
        }
    }
    page
}

fn read_meta(attributes: &BTreeMap<String, String>, page: &mut Page) {
    let Some(content) = attributes.get("content") else {
        return;
    };
    let content = clean(content);
    if content.is_empty() {
        return;
    }
    let key = attributes
        .get("property")
        .or_else(|| attributes.get("name"))
        .map(|k| k.trim().to_ascii_lowercase());
    match key.as_deref() {
        Some("description") if page.description.is_none() => page.description = Some(content),
        Some(key) if key.starts_with("og:") || key.starts_with("twitter:") => {
            page.properties.entry(key.to_owned()).or_insert(content);
        }
        _ => {}
    }
}

/// A tag's attributes (names lowercased, values decoded).
fn attributes(text: &str) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if rest.is_empty() {
            break;
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let name = rest[..name_end].to_ascii_lowercase();
        rest = rest[name_end..].trim_start();
        let value = if let Some(after) = rest.strip_prefix('=') {
            let after = after.trim_start();
            match after.chars().next() {
                Some(quote @ ('"' | '\'')) => {
                    let inner = &after[1..];
                    let end = inner.find(quote).unwrap_or(inner.len());
                    rest = inner.get(end + 1..).unwrap_or("");
                    &inner[..end]
                }
                _ => {
                    let end = after.find(char::is_whitespace).unwrap_or(after.len());
                    rest = &after[end..];
                    &after[..end]
                }
            }
        } else {
            ""
        };
        if !name.is_empty() {
            found.entry(name).or_insert_with(|| decode(value));
        }
    }
    found
}

fn find_ignore_case(haystack: &str, needle: &str) -> Option<usize> {
    haystack.char_indices().map(|(i, _)| i).find(|&i| {
        haystack
            .get(i..i + needle.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(needle))
    })
}

/// Decodes character references (`&amp;`, `&#233;`, `&#xE9;` and the common named ones).
fn decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest[1..].find(';').map(|e| e + 1).filter(|e| *e <= 10);
        let decoded = end.and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whitespace collapsed, control characters dropped, at most [`MAX_TEXT_CHARS`].
fn clean(text: &str) -> String {
    let collapsed = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>();
    match collapsed.char_indices().nth(MAX_TEXT_CHARS) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opengraph_title_and_description_are_read() {
        let page = parse(
            r#"<!doctype html><html><head>
            <!-- <meta property="og:title" content="commented out"> -->
            <title> 배포 &amp; 회의
              노트 </title>
            <meta charset="utf-8">
            <meta name="description" content="Team notes &#x2014; weekly">
            <meta property="og:title" content="Sprint 42 &quot;release&quot;" />
            <META PROPERTY='og:image' CONTENT='/img/cover.png'>
            <meta property=og:type content=article>
            <meta name="twitter:card" content="summary">
            <script>var s = "<meta property='og:title' content='from script'>";</script>
            <meta property="og:title" content="second title is ignored">
            </head><body><meta property="og:description" content="in body"></body></html>"#,
        );
        assert_eq!(page.title.as_deref(), Some("배포 & 회의 노트"));
        assert_eq!(page.description.as_deref(), Some("Team notes — weekly"));
        assert_eq!(page.properties["og:title"], "Sprint 42 \"release\"");
        assert_eq!(page.properties["og:image"], "/img/cover.png");
        assert_eq!(page.properties["og:type"], "article");
        assert_eq!(page.properties["twitter:card"], "summary");
        assert!(!page.properties.contains_key("og:description"));
    }

    #[test]
    fn garbage_and_long_text_are_handled() {
        assert_eq!(parse(""), Page::default());
        assert_eq!(parse("<<<>>><meta <title"), Page::default());
        assert_eq!(parse("&#99999999; <meta content>").properties.len(), 0);
        let long = format!("<title>{}</title>", "가".repeat(5000));
        let title = parse(&long).title.unwrap();
        assert_eq!(title.chars().count(), MAX_TEXT_CHARS + 1);
        assert_eq!(decode("a &bogus; b &#65; &"), "a &bogus; b A &");
    }

    #[test]
    fn charsets_are_found_in_meta_tags() {
        assert_eq!(
            declared_charset(br#"<meta charset="EUC-KR">"#).as_deref(),
            Some("euc-kr")
        );
        assert_eq!(
            declared_charset(
                br#"<meta http-equiv="Content-Type" content="text/html; charset=utf-8">"#
            )
            .as_deref(),
            Some("utf-8")
        );
        assert_eq!(declared_charset(b"<html>"), None);
    }
}
