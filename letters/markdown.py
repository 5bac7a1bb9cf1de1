"""Letter bodies: Markdown rendered with raw HTML disabled, then sanitized again."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

# "js-default" follows CommonMark but refuses raw HTML and unsafe link schemes.
_markdown = MarkdownIt("js-default", {"typographer": True}).enable(["replacements", "smartquotes"])

_ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "em",
    "strong",
    "a",
    "ul",
    "ol",
    "li",
    "blockquote",
    "code",
    "pre",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "del",
    "sup",
}


def render_markdown(text: str) -> str:
    """HTML safe to put on a page, whatever the Markdown holds.

    Headings start at h2 because the letter's title is the page's h1.
    """
    html = _markdown.render(text)
    for level in range(5, 0, -1):
        html = html.replace(f"<h{level}>", f"<h{level + 1}>").replace(
            f"</h{level}>", f"</h{level + 1}>"
        )
    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


def excerpt(text: str, length: int = 200) -> str:
    """Plain text from the start of a Markdown body, for link previews."""
    plain = " ".join(nh3.clean(_markdown.render(text), tags=set()).split())
    plain = plain.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    plain = plain.replace("&quot;", '"').replace("&#39;", "'")
    if len(plain) <= length:
        return plain
    return plain[: length - 1].rsplit(" ", 1)[0] + "…"
