//! HTML as its reader sees it, for erasure: the text with entities decoded (`&nbsp;`, `&#64;`,
//! `&#x40;`, `&eacute;`) and tags taken out, and for every byte of that text the markup it came
//! from. A name or an address found in the text is replaced in the markup: the whole source span,
//! tags inside it included, becomes the pseudonym, followed by the tags of the span that open or
//! close an element outside it, so what remains is as well-formed as what came in.
//!
//! Not an HTML parser: it only has to find where text, entities and tags are, the way a mail
//! client writes them. Tags that only style a run of text (`<b>`, `<span>`, Outlook's `<o:p>`)
//! join the words on either side; any other tag separates them like a space.

use std::borrow::Cow;

/// The text of some HTML, and for each byte of it the byte range of the markup it came from.
#[derive(Debug, Default)]
pub(crate) struct View {
    /// Entities decoded, inline tags dropped, other tags as one space.
    pub(crate) text: String,
    /// Per byte of `text`: the source range (a whole entity for a decoded character).
    origin: Vec<(usize, usize)>,
}

impl View {
    fn push(&mut self, text: &str, from: (usize, usize)) {
        self.text.push_str(text);
        self.origin.extend(std::iter::repeat_n(from, text.len()));
    }

    /// The source range behind the text range `start..end` (non-empty, on char boundaries).
    pub(crate) fn source(&self, start: usize, end: usize) -> (usize, usize) {
        (self.origin[start].0, self.origin[end - 1].1)
    }
}

/// A tag of the markup, by byte range.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tag {
    pub(crate) start: usize,
    pub(crate) end: usize,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// `<name …>` of an element that has content.
    Open(String),
    /// `</name>`.
    Close(String),
    /// A void or self-closing element, a comment, a doctype.
    Other,
}

/// Elements without content.
const VOID: [&str; 14] = [
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
    "track", "wbr",
];

/// Elements that style a run of text without breaking it: the words on either side are one text.
const INLINE: [&str; 26] = [
    "a", "abbr", "b", "bdi", "bdo", "cite", "code", "data", "dfn", "em", "font", "i", "kbd",
    "mark", "q", "s", "samp", "small", "span", "strike", "strong", "sub", "sup", "time", "u",
    "var",
];

fn is_inline(name: &str) -> bool {
    // Namespaced elements are Word's and Outlook's inline helpers (`<o:p>`, `<st1:personname>`).
    INLINE.contains(&name) || name == "wbr" || name.contains(':')
}

/// The view of `html` and its tags, in order.
pub(crate) fn parse(html: &str) -> (View, Vec<Tag>) {
    let mut view = View::default();
    let mut tags = Vec::new();
    let mut i = 0;
    while i < html.len() {
        let rest = &html[i..];
        if rest.starts_with('<') {
            if let Some(tag) = tag_at(html, i) {
                let separator = if is_inline(&tag_name(&html[tag.start..tag.end])) {
                    ""
                } else {
                    " "
                };
                view.push(separator, (tag.start, tag.end));
                i = tag.end;
                tags.push(tag);
                continue;
            }
        } else if rest.starts_with('&') {
            if let Some((decoded, len)) = entity(rest) {
                let mut buf = [0u8; 8];
                let mut text = String::new();
                for c in decoded {
                    text.push_str(c.encode_utf8(&mut buf));
                }
                view.push(&text, (i, i + len));
                i += len;
                continue;
            }
        }
        let c = rest
            .chars()
            .next()
            .expect("i is below the length, on a char boundary");
        let len = c.len_utf8();
        view.push(&rest[..len], (i, i + len));
        i += len;
    }
    (view, tags)
}

/// The view of a text that has entities but no tags (a tag's attributes).
pub(crate) fn decode(text: &str) -> View {
    let mut view = View::default();
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if rest.starts_with('&') {
            if let Some((decoded, len)) = entity(rest) {
                let s: String = decoded.into_iter().collect();
                view.push(&s, (i, i + len));
                i += len;
                continue;
            }
        }
        let c = rest.chars().next().expect("on a char boundary");
        view.push(&rest[..c.len_utf8()], (i, i + c.len_utf8()));
        i += c.len_utf8();
    }
    view
}

/// The tag starting at `html[at]` (a `<`), or `None` when the `<` is text.
fn tag_at(html: &str, at: usize) -> Option<Tag> {
    let rest = &html[at..];
    let second = rest[1..].chars().next()?;
    if let Some(comment) = rest.strip_prefix("<!--") {
        let end = comment.find("-->").map_or(html.len(), |e| at + 4 + e + 3);
        return Some(Tag {
            start: at,
            end,
            kind: Kind::Other,
        });
    }
    if !(second.is_ascii_alphabetic() || matches!(second, '/' | '!' | '?')) {
        return None;
    }
    // The closing `>`, outside quoted attribute values.
    let mut quote: Option<char> = None;
    let mut end = None;
    for (i, c) in rest.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => {
                end = Some(at + i + 1);
                break;
            }
            (None, '<') => return None,
            _ => {}
        }
    }
    let end = end?;
    let text = &html[at..end];
    let name = tag_name(text);
    let kind = if second == '/' {
        Kind::Close(name)
    } else if matches!(second, '!' | '?') || text.ends_with("/>") || VOID.contains(&name.as_str()) {
        Kind::Other
    } else {
        Kind::Open(name)
    };
    Some(Tag {
        start: at,
        end,
        kind,
    })
}

/// A tag's element name, lowercase (`<B class=x>` → `b`, `</o:p>` → `o:p`).
fn tag_name(tag: &str) -> String {
    tag.trim_start_matches('<')
        .trim_start_matches('/')
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '/' && *c != '>')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The entity at the start of `text` (a `&`): what it stands for and its length in bytes.
/// Named (`&nbsp;`, `&eacute;`, the legacy ones without `;`, in any case when the exact name is
/// unknown), decimal (`&#64;`) and hex (`&#x40;`, `&#X40;`), with or without the `;`.
fn entity(text: &str) -> Option<(Vec<char>, usize)> {
    let body = &text[1..];
    if let Some(num) = body.strip_prefix('#') {
        let (digits, radix, prefix) = match num.strip_prefix(['x', 'X']) {
            Some(hex) => (hex, 16, 2),
            None => (num, 10, 1),
        };
        let n = digits
            .chars()
            .take_while(|c| c.is_digit(radix))
            .take(8)
            .count();
        if n == 0 {
            return None;
        }
        let value = u32::from_str_radix(&digits[..n], radix).ok()?;
        let c = char::from_u32(value)
            .filter(|&c| c != '\0')
            .unwrap_or('\u{fffd}');
        let semi = usize::from(digits[n..].starts_with(';'));
        return Some((vec![c], 1 + prefix + n + semi));
    }
    let n = body
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .take(32)
        .count();
    if n == 0 {
        return None;
    }
    let name = &body[..n];
    let semi = body[n..].starts_with(';');
    let lookup = |name: &str| {
        let key: Cow<str> = if semi {
            Cow::Owned(format!("{name};"))
        } else {
            Cow::Borrowed(name)
        };
        html5ever::data::NAMED_ENTITIES.get(key.as_ref()).copied()
    };
    let (a, b) = lookup(name).or_else(|| lookup(&name.to_ascii_lowercase()))?;
    let chars = [a, b]
        .into_iter()
        .filter(|&c| c != 0)
        .filter_map(char::from_u32)
        .collect();
    Some((chars, 1 + n + usize::from(semi)))
}

/// What replaces the source span `start..end` of `html`: `with`, then the span's tags that
/// belong to elements reaching outside it (pairs inside the span go with it, and a close
/// followed by a reopening of the same element merges the two).
pub(crate) fn replacement(
    html: &str,
    tags: &[Tag],
    start: usize,
    end: usize,
    with: &str,
) -> String {
    let inside: Vec<&Tag> = tags
        .iter()
        .filter(|t| t.start >= start && t.end <= end && !matches!(t.kind, Kind::Other))
        .collect();
    let mut kept: Vec<&Tag> = Vec::new();
    for tag in inside {
        let pairs = match (kept.last().map(|t| &t.kind), &tag.kind) {
            // `<b>…</b>` inside the span, or `…</b> <b>…` across it.
            (Some(Kind::Open(a)), Kind::Close(b)) | (Some(Kind::Close(a)), Kind::Open(b)) => a == b,
            _ => false,
        };
        if pairs {
            kept.pop();
        } else {
            kept.push(tag);
        }
    }
    let mut out = String::from(with);
    for t in kept {
        out.push_str(&html[t.start..t.end]);
    }
    out
}

/// Whether every element `html` opens is closed, in order (void elements and comments aside).
#[cfg(test)]
pub(crate) fn is_balanced(html: &str) -> bool {
    let mut open = Vec::new();
    for tag in parse(html).1 {
        match tag.kind {
            Kind::Open(name) => open.push(name),
            Kind::Close(name) => {
                if open.pop() != Some(name) {
                    return false;
                }
            }
            Kind::Other => {}
        }
    }
    open.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_decodes_entities_and_drops_inline_tags() {
        let html = "<p>Dana&nbsp;Whitfield</p><b>Dana</b> <B>Whitfield</B> dana&#64;x.example d&#X40;y&period;example caf&eacute; &amp &lt;b&gt; a < b";
        let (view, tags) = parse(html);
        assert_eq!(
            view.text,
            " Dana\u{a0}Whitfield Dana Whitfield dana@x.example d@y.example café & <b> a < b"
        );
        assert_eq!(tags.len(), 6);
        let at = view.text.find("dana@").unwrap();
        let (s, e) = view.source(at, at + "dana@x.example".len());
        assert_eq!(&html[s..e], "dana&#64;x.example");
    }

    #[test]
    fn a_replaced_span_keeps_the_tags_of_elements_outside_it() {
        let html = "<b>Dana</b> <b>Whitfield</b>, CEO";
        let (view, tags) = parse(html);
        let (s, e) = view.source(0, "Dana Whitfield".len());
        assert_eq!(&html[s..e], "Dana</b> <b>Whitfield");
        assert_eq!(replacement(html, &tags, s, e, "X"), "X");

        let html = "Dana <span>Whitfield, CEO</span>";
        let (view, tags) = parse(html);
        let (s, e) = view.source(0, "Dana Whitfield".len());
        assert_eq!(replacement(html, &tags, s, e, "X"), "X<span>");

        let html = "<i>Dana <b>W</b>hitfield</i>";
        let (_, tags) = parse(html);
        assert_eq!(replacement(html, &tags, 3, html.len() - 4, "X"), "X");
    }

    #[test]
    fn quoted_attributes_and_comments_are_tags() {
        let (view, tags) = parse("<a title=\"a > b\" href='x'>Dana</a><!-- <b> -->");
        assert_eq!(view.text, "Dana ");
        assert_eq!(tags.len(), 3);
    }
}
