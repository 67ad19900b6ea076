"""Turn a CRM note or email body into the sentences a person actually wrote.

HubSpot and Salesforce hand us HTML bodies with the whole reply chain, signatures
and legal disclaimers attached. Commitment extraction only wants the newest
message, as plain text, one sentence at a time:

    html_to_text()      HTML -> text, keeping paragraph and line breaks
    latest_message()    drop quoted history, signature and disclaimers
    split_sentences()   text -> [Sentence] with list/label context

Reply and signature detection is delegated to ``mail-parser-reply``; this module
only adds the guards Baton needs on top of it (see ``_signature_start``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bs4 import BeautifulSoup
from mailparser_reply.parser import EmailMessage

_HTML_TAG = re.compile(
    r"<(?:p|div|br|span|html|body|b|i|u|a|ul|ol|li|table|td|blockquote|strong|em|h[1-6])\b[^>]*>", re.I)

#: Block-level elements whose end is a line break in the rendered text.
_BLOCK_TAGS = ("p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "pre")

#: Elements that hold quoted history in HTML mail (Gmail, Apple Mail, Outlook).
_QUOTE_SELECTORS = "blockquote, div.gmail_quote, div.gmail_extra, div#appendonsend, div#divRplyFwdMsg, [type=cite]"

# One parsed prototype gives us the library's compiled English patterns, so we
# apply exactly its signature/disclaimer rules without re-deriving them.
_PROTOTYPE = EmailMessage("", languages=["en"], keep_hyphen_lists=True)
_SIGNATURE = _PROTOTYPE.SIGNATURE_REGEX
_DISCLAIMER = _PROTOTYPE.DISCLAIMERS_REGEX

#: A real sign-off line ("Best,", "Thanks, Anna", "Kind regards, Anna Smith") is short.
#: "Thanks, I'll send the deck by Friday." starts like one but is a sentence.
_MAX_SIGN_OFF_WORDS = 4

_QUOTED_LINE = re.compile(r"^[ \t]*>.*$\n?", re.M)
_BULLET = re.compile(r"^\s*(?:[-*\u2022\u25aa\u2013]|\d{1,2}[.)]|\[[ xX]?\])\s+")
_LABEL = re.compile(
    r"^\s*(?:next\s+steps?|to[- ]?dos?|action\s+items?|actions?|follow[- ]?ups?|tasks?|ns|ai)\s*[:\-\u2013]\s*",
    re.I,
)
#: A period after these does not end a sentence.
_ABBREVIATIONS = "".join(
    rf"(?<!\b{re.escape(word)})"
    for word in ("Mr", "Mrs", "Ms", "Dr", "e.g", "i.e", "vs", "etc", "a.m", "p.m", "No", "Inc", "approx"))
_SENTENCE_END = re.compile(_ABBREVIATIONS + r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(@\[]?[A-Z0-9])")


@dataclass(frozen=True)
class Sentence:
    text: str
    #: The sentence sits under a "Next steps:" / "TODO:" label or is such a labelled line:
    #: bare imperatives there are to-dos even outside notes.
    in_task_list: bool
    #: Index of the line in the cleaned message; neighbouring sentences give context.
    line: int


def looks_like_html(text: str) -> bool:
    return bool(_HTML_TAG.search(text))


def html_to_text(html: str) -> str:
    """Render HTML to text with one line per block, without quoted history."""
    soup = BeautifulSoup(html, "html.parser")
    for quoted in soup.select(_QUOTE_SELECTORS):
        quoted.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(_BLOCK_TAGS):
        block.append("\n")
    text = soup.get_text()
    return text.replace("\xa0", " ")


def latest_message(text: str) -> str:
    """The newest message of a body: no quoted replies, signature or disclaimer."""
    text = text.replace("\r\n", "\n")
    message = EmailMessage(text, languages=["en"], keep_hyphen_lists=True).read()
    newest = message.replies[0].content if message.replies else ""
    newest = _QUOTED_LINE.sub("", newest)
    for disclaimer in _DISCLAIMER.findall(newest):
        newest = newest.replace(disclaimer, "\n")
    return newest[: _signature_start(newest)].strip()


def _signature_start(text: str) -> int:
    """Where the signature begins, or len(text).

    The library treats any line starting with a sign-off ("Thanks,") as the start
    of the signature; we skip matches whose first line is a whole sentence.
    """
    position = 0
    while match := _SIGNATURE.search(text, position):
        signature = match.group()
        first_line_start = match.start() + len(signature) - len(signature.lstrip())
        line_end = text.find("\n", first_line_start)
        first_line = text[first_line_start : line_end if line_end >= 0 else len(text)]
        if len(first_line.split()) <= _MAX_SIGN_OFF_WORDS:
            return match.start()
        if line_end < 0:
            break
        position = line_end + 1
    return len(text)


def split_sentences(text: str) -> list[Sentence]:
    sentences: list[Sentence] = []
    in_task_list = False
    for number, raw_line in enumerate(text.split("\n")):
        line = raw_line.strip()
        if not line:
            in_task_list = False
            continue
        line = _BULLET.sub("", line)
        label = _LABEL.match(line)
        if label:
            # A label heads the lines below it until the next blank line.
            line = line[label.end():]
            in_task_list = True
        for part in _SENTENCE_END.split(line):
            part = part.strip()
            if part:
                sentences.append(Sentence(part, in_task_list, number))
    return sentences


def clean_message(text: str) -> list[Sentence]:
    """HTML or text body -> sentences of the newest message."""
    if looks_like_html(text):
        text = html_to_text(text)
    return split_sentences(latest_message(text))
