//! HTML → plain text, and text made safe to embed in markdown.

/// Deeper nesting than this is not handed to html2text (its tree walk is recursive); such
/// documents are flattened by [`strip_tags`] instead. Real ticket HTML nests a few dozen levels.
const MAX_NESTING: usize = 400;

/// Bodies larger than this (pasted logs, inline attachments) skip html2text, whose layout work
/// grows faster than linearly on huge inputs, and go through the linear [`strip_tags`].
const MAX_RENDERED_BYTES: usize = 512 * 1024;

/// No text line is wrapped: we want the author's lines, not a terminal's.
const WIDTH: usize = 10_000;

/// Renders HTML as plain text: no tags, no `<script>`/`<style>` content, no inline `data:` image
/// payloads, entities decoded, unicode intact, trailing whitespace trimmed.
pub fn html_to_text(html: &str) -> String {
    if html.trim().is_empty() {
        return String::new();
    }
    let rendered = if html.len() > MAX_RENDERED_BYTES || nesting_depth(html) > MAX_NESTING {
        strip_tags(html)
    } else {
        html2text::config::plain_no_decorate()
            .allow_width_overflow()
            .string_from_read(html.as_bytes(), WIDTH)
            .unwrap_or_else(|_| strip_tags(html))
    };
    tidy(&rendered)
}

/// Trims trailing spaces on each line, drops control characters (keeping newlines and tabs),
/// turns no-break spaces into plain ones,
/// collapses runs of blank lines and trims the whole text.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line: String = line
            .chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .map(|c| if c == '\u{a0}' { ' ' } else { c })
            .collect();
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_string()
}

/// An upper bound of the element nesting depth, by counting open and close tags.
fn nesting_depth(html: &str) -> usize {
    let bytes = html.as_bytes();
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'<' {
            let next = bytes[i + 1];
            if next == b'/' {
                depth = depth.saturating_sub(1);
            } else if next.is_ascii_alphabetic() {
                depth += 1;
                max = max.max(depth);
            }
        }
        i += 1;
    }
    max
}

/// A flat, non-recursive tag stripper for pathological documents: drops tags, `<script>`/`<style>`
/// bodies and comments, decodes the common entities, and turns block ends into newlines.
pub fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&decode_entities(&rest[..start]));
        rest = &rest[start..];
        let lower_head: String = rest
            .chars()
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        let skip_to = if lower_head.starts_with("<!--") {
            rest.find("-->").map(|i| i + 3)
        } else if lower_head.starts_with("<script") {
            find_ci(rest, "</script>").map(|i| i + 9)
        } else if lower_head.starts_with("<style") {
            find_ci(rest, "</style>").map(|i| i + 8)
        } else {
            let end = rest.find('>').map(|i| i + 1);
            if let Some(end) = end {
                let tag = rest[1..end - 1]
                    .trim_start_matches('/')
                    .to_ascii_lowercase();
                let name: String = tag
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric())
                    .collect();
                if matches!(
                    name.as_str(),
                    "br" | "p"
                        | "div"
                        | "li"
                        | "tr"
                        | "h1"
                        | "h2"
                        | "h3"
                        | "h4"
                        | "h5"
                        | "h6"
                        | "table"
                        | "ul"
                        | "ol"
                ) {
                    out.push('\n');
                }
            }
            end
        };
        match skip_to {
            Some(i) => rest = &rest[i..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(&decode_entities(rest));
    out
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack.to_ascii_lowercase().find(needle)
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[..rest.len().min(12)].find(';');
        let decoded = end.and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                _ if entity.starts_with("#x") || entity.starts_with("#X") => {
                    u32::from_str_radix(&entity[2..], 16)
                        .ok()
                        .and_then(char::from_u32)
                }
                _ if entity.starts_with('#') => entity[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            };
            c.map(|c| (c, end + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
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

/// Makes one line of user text safe inside a markdown heading or bullet: no line breaks.
pub fn inline(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    joined
}

/// Makes multi-line user text safe as a markdown block: lines that a markdown reader would take
/// as structure (headings, thematic breaks such as our `---` separators, setext underlines) are
/// escaped with a backslash, so a body can never end a message or open a section.
pub fn block(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        if trimmed.starts_with('#') || is_break_or_underline(trimmed) {
            out.push_str(indent);
            out.push('\\');
            out.push_str(trimmed);
        } else {
            out.push_str(line);
        }
    }
    out
}

fn is_break_or_underline(line: &str) -> bool {
    let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
    let mut chars = compact.chars();
    match chars.next() {
        Some(c @ ('-' | '*' | '_' | '=')) => compact.chars().all(|x| x == c),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_markup_noise() {
        let html = r#"<div><style>p{color:red}</style><script>alert('x')</script>
            <p>Hello&nbsp;&amp; welcome &lt;team&gt; — ünïcødé 日本語 🎉</p>
            <img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==">
            <ul><li>one</li><li>two</li></ul></div>"#;
        let text = html_to_text(html);
        for tag in ["<div", "<p", "<img", "<ul", "<li", "</"] {
            assert!(!text.contains(tag), "{tag} in {text}");
        }
        assert!(!text.contains("color"), "{text}");
        assert!(!text.contains("alert"), "{text}");
        assert!(!text.contains("base64"), "{text}");
        assert!(!text.contains("iVBOR"), "{text}");
        assert!(
            text.contains("Hello & welcome <team> — ünïcødé 日本語 🎉"),
            "{text}"
        );
        assert!(text.contains("one") && text.contains("two"), "{text}");
    }

    #[test]
    fn long_lines_are_not_wrapped() {
        let long = "word ".repeat(200);
        let text = html_to_text(&format!("<p>{long}</p>"));
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let html = format!(
            "{}deep text{}",
            "<div>".repeat(100_000),
            "</div>".repeat(100_000)
        );
        assert_eq!(html_to_text(&html), "deep text");
    }

    #[test]
    fn stripper_handles_entities_and_blocks() {
        assert_eq!(
            strip_tags("a<br>b&amp;c&#233;&#x41;<script>x</script>"),
            "a\nb&céA"
        );
        assert_eq!(strip_tags("broken <tag"), "broken ");
        assert_eq!(decode_entities("&bogus; & &amp"), "&bogus; & &amp");
    }

    #[test]
    fn markdown_structure_is_escaped() {
        let body = "# not a heading\n---\nok line\n  ## indented\n===\n- a list is fine\n***";
        assert_eq!(
            block(body),
            "\\# not a heading\n\\---\nok line\n  \\## indented\n\\===\n- a list is fine\n\\***"
        );
        assert_eq!(inline("two\nlines  here"), "two lines here");
    }

    #[test]
    fn empty_and_whitespace() {
        assert_eq!(html_to_text(""), "");
        assert_eq!(html_to_text("   "), "");
        assert_eq!(html_to_text("<div></div>"), "");
    }
}
