"""Read the commitments out of a CRM note or email.

"I'll send the revised proposal by Friday" becomes
``Commitment(action="Send the revised proposal", due=<Friday 17:00>, actor="writer", ...)``.

The extractor is rule-based and pure: clean the body (``commitment_text``), split
it into sentences, find *triggers* (a subject with a future modal, a request, an
@mention, a to-do imperative), read the verb phrase that follows, resolve its
deadline (``commitment_dates``) and score how firm the promise is. Rules and
confidence bands are documented in docs/commitments.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timezone as dt_timezone
from functools import lru_cache
from typing import Iterable
from zoneinfo import ZoneInfo

from adapter.commitment_dates import VAGUE_TIME, find_deadline
from adapter.commitment_text import Sentence, clean_message

__all__ = ["Commitment", "extract", "MAX_ACTION_LENGTH"]

MAX_ACTION_LENGTH = 80
WRITER, RECIPIENT, NAMED = "writer", "recipient", "named"
DIRECTIONS = ("note", "outbound", "inbound")

#: Verbs that start a task. State and courtesy verbs ("be", "have", "see", "know",
#: "note") are deliberately absent: "I'll be out Friday" and "Please note" are not tasks.
ACTION_VERBS = frozenset("""
    activate add answer approve arrange ask assign attach attend book brief bring build call cancel
    catch chase check circle close collect come compare compile complete configure confirm connect
    contact coordinate countersign cover create credit deliver demo deploy dig discuss do document draft
    drop email enable escalate estimate execute export extend figure file fill finalise finalize find
    finish fix follow forward gather generate get give go grab hand handle hop host include install
    integrate intro introduce invite invoice issue join kick launch let line lock log look loop mail
    make map meet migrate move negotiate nudge onboard open order outline pass pay pencil phone ping
    plan post prep prepare present price process propose provide provision pull push put quote reach
    reconnect record redline refund regroup remind renew reply request reschedule research resend
    reserve resolve respond return review revise revisit ring route run schedule scope secure send set
    share ship shoot show sign sort speak start submit summarise summarize swing sync take talk tell
    test text touch train transfer try update upload verify visit walk wire work write
""".split())
#: Verbs that make no task on their own: "Will do.", "I'll try."
_NEEDS_OBJECT = frozenset("do go get take make try work handle send".split())
#: Verbs whose indirect object we drop from titles ("send you the deck" -> "Send the deck").
_DITRANSITIVE = frozenset("send get give email show forward bring mail text shoot quote find book pull hand pass"
                          .split())
_INDIRECT_OBJECTS = frozenset(("you", "me", "us", "them", "him", "her"))
_PARTICLES = frozenset("back up over in on off out to through around along about at for with when if and".split())
_VAGUE_ACTIONS = re.compile(
    r"^(?:touch base|catch up|talk|chat|connect|reconnect|sync|be in touch|stay in touch|circle back"
    r"|keep (?:them|you|us) (?:posted|updated|in the loop))\b", re.I)
_FORMULAIC = re.compile(
    r"^(?:(?:find|see) (?:attached|enclosed|below)|feel free|look forward|reach out (?:if|with any)"
    r"|let (?:me|us) know (?:if|whether you have|your thoughts|what you think|any))", re.I)
_THIRD_PARTIES = frozenset("customer client they he she it legal procurement finance security the their his her "
                           "this that everyone someone nobody prospect buyer champion cfo ceo cto vp i we".split())

_CONTRACTED_MODALS = ("'ll", "'m going to", "'re going to", "'m gonna", "'re gonna", "'d", "'m planning to",
                      "'re planning to", "'m hoping to", "'re hoping to", "'d like to", "'d be happy to", "'d love to",
                      "'m happy to", "'re happy to")
_SPACED_MODALS = ("will", "shall", "am going to", "are going to", "am gonna", "would", "need to", "have to", "must",
                  "should", "can", "could", "might", "may", "plan to", "am planning to", "are planning to", "hope to",
                  "intend to", "promise to", "promised to", "aim to", "expect to", "would like to", "am happy to",
                  "are happy to", "would be happy to")
_SUBJECTLESS_MODALS = ("will", "'ll", "going to", "gonna", "need to", "needs to", "have to", "plan to", "planning to",
                       "must", "promised to", "promised them I'd", "told them I'd", "told them we'd", "told him I'd",
                       "told her I'd")
#: Modals that offer or hedge rather than promise.
_HEDGED_MODALS = frozenset(("'d", "would", "should", "could", "can", "might", "may", "hope to", "'m hoping to",
                            "'re hoping to", "'d like to", "would like to", "'d love to", "'d be happy to",
                            "am happy to", "are happy to", "would be happy to", "'m happy to", "'re happy to"))


def _alternation(phrases) -> str:
    """Regex alternation, longest first so "'d be happy to" wins over "'d"."""
    return "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in sorted(phrases, key=len, reverse=True))


# ---- triggers: where a commitment starts, matched up to the verb phrase
_FIRST_PERSON = re.compile(
    rf"\b(?P<subject>I|we|our team|my team)"
    rf"(?P<modal>{_alternation(_CONTRACTED_MODALS)}|\s+(?:{_alternation(_SPACED_MODALS)}))\s+", re.I)
_SUBJECTLESS = re.compile(
    rf"(?:^|[,;:(\u2013-]\s*)(?:(?:probably|definitely|also|then|still|just)\s+)?"
    rf"(?P<modal>{_alternation(_SUBJECTLESS_MODALS)})\s+", re.I)
#: "I'm sending the contract Friday": a present progressive is a promise only with a date.
_PROGRESSIVE = re.compile(r"\b(?:I'm|I\s+am|we're|we\s+are)\s+(?=\w+ing\b)", re.I)
_LET_ME = re.compile(r"\blet\s+(?P<subject>me|us)\s+(?!know\b)|\b(?P<lets>let'?s)\s+", re.I)
_REQUEST = re.compile(
    r"\b(?:(?:can|could|would|will)\s+you\s+(?:please\s+|kindly\s+)?(?:be able to\s+)?"
    r"|please\s+|pls\s+|(?:I|we)\s+need\s+you\s+to\s+|(?:I|we)'d\s+(?:like|love)\s+(?:for\s+)?you\s+to\s+"
    r"|(?:can|could)\s+(?:someone|somebody|anyone|your team)\s+|any\s+chance\s+you\s+(?:could|can)\s+"
    r"|(?:can|could|may)\s+(?:we|I)\s+(?:please\s+)?(?=get\b))", re.I)
_YOU_WILL = re.compile(
    r"\byou\s*(?:'ll|'re going to|\s+will|\s+are going to|\s+said you'?d|\s+said you would"
    r"|\s+mentioned you'?d|\s+promised to)\s+", re.I)
_MENTION = re.compile(
    r"@(?P<mention>[A-Za-z][\w.-]*)[,:]?\s*(?:please\s+|pls\s+|can you\s+|could you\s+|to\s+|will\s+|'ll\s+)?")
_UNKNOWN_NAMED = re.compile(r"\b(?P<unknown>[A-Z][a-z]+)\s*(?:'ll|\s+will|\s+is going to)\s+")
_IMPERATIVE_START = re.compile(r"(?:^|;\s+)(?:also,?\s+)?(?=[A-Za-z])", re.I)
#: A trigger right after these words sits in a subordinate clause: "... whether we can extend".
_SUBORDINATE = re.compile(
    r"\b(?:whether|if|that|so|because|since|when|once|unless|until|while|though|although)\s*$", re.I)
#: Words after a verb-looking first word that show it is a noun: "Call went well", "Demo scheduled".
_NOUN_USE = re.compile(
    r"^(?:with|from|went|was|were|is|are|has|had|notes|recap|summary|invite|today|yesterday|looks|seems"
    r"|sent|done|got|came|given|taken|(?:\w+ed|set|made|left|run)"
    r"(?=\s*$|\s*[,.;:!]|\s+(?:for|with|on|by|at|to|in|and|yesterday|today|last|this|already|out)\b))", re.I)

# ---- reading the verb phrase
_PRELUDE = re.compile(
    r"(?:also|just|definitely|certainly|absolutely|surely|probably|hopefully|likely|quickly|then|still|first"
    r"|personally|actually|gladly|def|both|further|please|kindly|go ahead and|make sure to|be sure to|try to"
    r"|try and|be able to|get around to|get a chance to|need to|have to|want to|plan to|start|double|re)[\s-]+", re.I)
_NEGATION = re.compile(r"^(?:not|never|no longer|do not|don't|dont)\b", re.I)
_AND_NEXT_VERB = re.compile(r"(?:\s*,?\s+(?:and(?:\s+then)?|then|&)|\s*,)\s+(?P<verb>[a-z]+)\b", re.I)
#: Where the task ends and the reasons, conditions or pleasantries begin.
_CLAUSE_END = re.compile(
    r"(?:\s*,\s*(?=(?:thanks|thank you|thx|cheers|hope|let me|talk|looking|if|so|but|and (?:I|we|they|you)"
    r"|which|as|just|ok|okay|my|our|I|we|they|he|she|it's|this|that|targeting|aiming|ideally)\b)"
    r"|\s+\b(?:so that|so|because|since|as|if|once|when|whenever|unless|in case|while|assuming|provided|but"
    r"|though|although|which|to make sure|to see if|and see|just in case)\b|\s+[-\u2013\u2014]\s|\s*[(;:]).*$",
    re.I | re.S)
_FILLER = re.compile(
    r"\b(?:asap|a\.s\.a\.p\.?|as soon as possible|right away|real quick|first thing|for you(?: guys| all)?"
    r"|over to you|for us|please|pls)\b", re.I)
_TRAILING_JUNK = re.compile(
    r"[\s,.;:!?\-\u2013\u2014'\"]+$"
    r"|\s+(?:and|or|to|the|a|an|with|for|of|on|by|at|so|but|then|also|too|in|this|next|until|before)$", re.I)
_PRONOUNS_FOR_OWNER = {  # everyone's words, retold as the rep's to-do
    "recipient": {"me": "them", "us": "them", "my": "their", "our": "their", "your": "our", "yours": "ours"},
    "writer": {"you": "them", "your": "their", "yours": "theirs"},
}
_CALL_CONTEXT = re.compile(
    r"\b(?:voicemail|vm|call(?:ed|ing)?|phone|dial(?:l?ed)?|rang|no answer|left (?:a )?message)\b", re.I)
_EMAIL_CONTEXT = re.compile(r"\b(?:e-?mail(?:ed)?|inbox|no reply|replied)\b", re.I)
_VERB_SYNONYMS = (
    (re.compile(r"^circle back\b", re.I), "follow up"),
    (re.compile(r"^shoot\b(?: over)?", re.I), "send"),
    (re.compile(r"^be in touch\b", re.I), "follow up"),
    (re.compile(r"^have (.+?) (?:over |back )?(?:to (?:them|him|her)|over)$", re.I), r"send \1"),
    (re.compile(r"^have (.+?) ready$", re.I), r"prepare \1"),
    # "have the contract signed": someone else may sign, we make it happen
    (re.compile(r"^have (.+? (?:\w+ed|sent|done|written))$", re.I), r"get \1"),
)

# ---- confidence
_BASE_CONFIDENCE = {"first_person": 0.75, "progressive": 0.7, "subjectless": 0.75, "named": 0.75, "request": 0.75,
                    "let_me": 0.75, "you_will": 0.7, "imperative": 0.7, "lets": 0.6, "unknown_named": 0.55}
_HEDGED_PRELUDE = re.compile(r"\b(?:probably|hopefully|likely|try to|try and|maybe|perhaps)\b", re.I)
_BODY_HEDGES = re.compile(
    r"\b(?:if (?:I|we) can|if possible|hopefully|probably|maybe|perhaps|tentatively|ideally|or so)\b", re.I)
_CONDITION = re.compile(r"\b(?:if|once|assuming|provided|unless|depending)\b", re.I)


@dataclass(frozen=True)
class Commitment:
    action: str
    due: datetime | None
    actor: str
    actor_name: str | None
    confidence: float
    quote: str

    def to_dict(self) -> dict:
        return {
            "action": self.action,
            "due": self.due.isoformat() if self.due else None,
            "actor": self.actor,
            "actor_name": self.actor_name,
            "confidence": self.confidence,
            "quote": self.quote,
        }


@dataclass(frozen=True)
class _Trigger:
    """Where a commitment starts in a sentence and whose it is."""
    start: int
    verb_at: int
    kind: str  # a key of _BASE_CONFIDENCE
    actor: str
    actor_name: str | None = None
    modal: str = ""


def extract(text: str, sent_at: datetime, timezone: str = "UTC", *, direction: str = "note",
            known_people: Iterable[str] = (), end_of_day: time = time(17, 0),
            workdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})) -> list[Commitment]:
    """Every commitment in ``text``, in text order.

    ``direction`` says who wrote it: "note" (the rep), "outbound" (rep to customer)
    or "inbound" (customer to rep). ``known_people`` are names of owners so that
    "Maria will call them" or "@Maria" is assigned to Maria.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    if sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=dt_timezone.utc)
    now = sent_at.astimezone(ZoneInfo(timezone))
    people = _people_pattern(tuple(known_people))

    commitments: list[Commitment] = []
    sentences = clean_message(text or "")
    for index, sentence in enumerate(sentences):
        context = " ".join(s.text for s in sentences[max(0, index - 1): index + 1])
        for commitment in _sentence_commitments(sentence, context, direction, people, now, end_of_day, workdays):
            if not any(c.action == commitment.action and c.due == commitment.due for c in commitments):
                commitments.append(commitment)
    return commitments


def _sentence_commitments(sentence: Sentence, context, direction, people, now, end_of_day, workdays):
    text = sentence.text.replace("\u2019", "'").replace("\u2018", "'")
    triggers = _find_triggers(text, sentence, direction, people)
    for number, trigger in enumerate(triggers):
        clause_end = triggers[number + 1].start if number + 1 < len(triggers) else len(text)
        previous_end = triggers[number - 1].verb_at if number else 0
        for verb_at, end in _split_on_dated_and(text, trigger.verb_at, clause_end, now, end_of_day, workdays):
            commitment = _read_clause(text, sentence, trigger, verb_at, end, previous_end, context,
                                      now, end_of_day, workdays)
            if commitment is not None:
                yield commitment


def _find_triggers(text: str, sentence: Sentence, direction: str, people) -> list[_Trigger]:
    found: list[_Trigger] = []
    mine = direction != "inbound"  # in inbound mail "I"/"we" is the customer

    # Kinds are tried most specific first; a later match inside an earlier trigger is ignored.
    def add(match, kind, actor, name=None, modal=""):
        if _SUBORDINATE.search(text, 0, match.start()):
            return
        if actor and not any(t.start <= match.start() < t.verb_at for t in found):
            found.append(_Trigger(match.start(), match.end(), kind, actor, name, modal.strip().lower()))

    if people is not None:
        for match, name in people.matches(text):
            add(match, "named", NAMED, name, (match.groupdict().get("how") or "").strip(" ,"))
    for match in _MENTION.finditer(text):
        known = people.canonical.get(match.group("mention").lower()) if people is not None else None
        if known:
            add(match, "named", NAMED, known)
        elif direction == "note":
            add(match, "request", RECIPIENT)
    for match in _FIRST_PERSON.finditer(text):
        add(match, "first_person", WRITER if mine else None, modal=match.group("modal"))
    for match in _PROGRESSIVE.finditer(text):
        add(match, "progressive", WRITER if mine else None)
    for match in _SUBJECTLESS.finditer(text):
        add(match, "subjectless", WRITER if mine else None, modal=match.group("modal"))
    for match in _LET_ME.finditer(text):
        if match.group("lets"):  # "let's": shared; from a customer it asks the rep to act
            add(match, "lets", WRITER if mine else RECIPIENT)
        else:
            add(match, "let_me", WRITER if mine else None)
    for match in _REQUEST.finditer(text):
        add(match, "request", None if direction == "outbound" else RECIPIENT)
    if direction == "inbound":
        for match in _YOU_WILL.finditer(text):
            add(match, "you_will", RECIPIENT)
    if mine:
        for match in _UNKNOWN_NAMED.finditer(text):
            if match.group("unknown").lower() not in _THIRD_PARTIES:
                add(match, "unknown_named", WRITER)
    if direction != "outbound" or sentence.in_task_list:
        for match in _IMPERATIVE_START.finditer(text):
            add(match, "imperative", RECIPIENT if direction == "inbound" else WRITER)
    return sorted(found, key=lambda t: t.start)


@dataclass(frozen=True)
class _People:
    """Patterns over the known owners' names, and each spelling's canonical name."""
    subject: re.Pattern  # "Maria will", "Maria to", "Maria, can you"
    delegation: re.Pattern  # "asked Maria to", "have Maria"
    canonical: dict[str, str]

    def matches(self, text: str):
        for pattern in (self.delegation, self.subject):
            for match in pattern.finditer(text):
                yield match, self.canonical[match.group("name").lower()]


@lru_cache(maxsize=64)
def _people_pattern(known_people: tuple[str, ...]) -> _People | None:
    canonical: dict[str, str] = {}
    spellings: set[str] = set()
    for person in known_people:
        person = " ".join(person.split())
        if person:
            for spelling in (person, person.split()[0]):
                canonical.setdefault(spelling.lower(), person)
                spellings.add(spelling)
    if not canonical:
        return None
    # Names match as written (capitalised), so "will" never matches an owner called Will.
    names = "|".join(re.escape(name) for name in sorted(spellings, key=len, reverse=True))
    subject = re.compile(
        rf"(?<!@)\b(?P<name>{names})(?P<how>\s*'ll|\s+will|\s+is going to|'s going to|\s+to|\s+can|\s+should|"
        rf"\s+needs to|\s+has to|\s+plans to|,?\s+please|,\s+(?:can|could|would) you(?:\s+please)?"
        rf"|\s+said (?:she|he|they)(?:'d|\s+would|\s+will|'ll))\s+")
    delegation = re.compile(rf"\b(?:asked|told|have|having|get|getting)\s+(?P<name>{names})\s+(?:to\s+)?")
    return _People(subject, delegation, canonical)




def _split_on_dated_and(text, verb_at, end, now, end_of_day, workdays):
    """Split coordinated promises: "send the deck today, schedule a call Friday and loop in Priya".

    A part that carries its own deadline closes a commitment. An undated part
    before a dated one stays attached: "check with legal and get back to you by
    Friday" is one promise with one date.
    """
    start = verb_at
    for match in _AND_NEXT_VERB.finditer(text, verb_at, end):
        if _lemma(match.group("verb")) not in ACTION_VERBS or len(text[start:match.start()].split()) < 2:
            continue
        left = find_deadline(text[start:match.start()], now, end_of_day, workdays)
        if left is not None and left.due is not None:
            yield start, match.start()
            start = match.start("verb")
    yield start, end


def _read_clause(text, sentence, trigger, verb_at, end, previous_end, context, now, end_of_day, workdays):
    """The commitment in ``text[verb_at:end]``, or None when it is not an action."""
    lead_in = text[previous_end:trigger.start]
    hedged = trigger.modal in _HEDGED_MODALS or bool(_HEDGED_PRELUDE.search(text, previous_end, verb_at))
    body_start = verb_at
    while prelude := _PRELUDE.match(text, body_start, end):
        hedged = hedged or bool(_HEDGED_PRELUDE.match(prelude.group()))
        body_start = prelude.end()
    body = text[body_start:end]
    if re.match(r"be\s+\w+ing\b", body, re.I):
        body_start += 3  # "I'll be sending" -> "sending"
        body = text[body_start:end]
    if not body[:1].isalpha() or _NEGATION.match(body) or _FORMULAIC.match(body):
        return None
    first_word = body.split(maxsplit=1)[0]
    if trigger.kind == "imperative" and (_lemma(first_word) not in ACTION_VERBS
                                         or _NOUN_USE.match(body[len(first_word):].strip())):
        return None  # "Call went well", "Demo scheduled for Thursday"

    deadline = find_deadline(body, now, end_of_day, workdays)
    title_spans = deadline.spans if deadline else ()
    if deadline is None and len(lead_in.split()) <= 5:  # "On Friday, I'll send ..."
        deadline = find_deadline(lead_in, now, end_of_day, workdays)
    due = deadline.due if deadline else None
    if trigger.kind in ("imperative", "progressive") and _lemma(first_word) != first_word.lower() and due is None:
        return None  # "Following up on our call" is a greeting; "Sending pricing Friday" is a to-do

    action = _title(body, title_spans, first_word, trigger.actor, context)
    verb = action.split(maxsplit=1)[0].lower() if action else ""
    vague = bool(_VAGUE_ACTIONS.match(action))
    if not vague and (verb not in ACTION_VERBS or (verb in _NEEDS_OBJECT and " " not in action)):
        return None  # "I'll be out Friday", "Will do."
    return Commitment(
        action=action,
        due=due,
        actor=trigger.actor,
        actor_name=trigger.actor_name,
        confidence=_confidence(trigger, sentence, body, lead_in, deadline, hedged, vague),
        quote=sentence.text.strip(),
    )


def _confidence(trigger, sentence, body, lead_in, deadline, hedged, vague) -> float:
    """How sure we are this is a promise to act: the bands are documented in docs/commitments.md."""
    confidence = _BASE_CONFIDENCE[trigger.kind]
    if trigger.kind == "imperative" and sentence.in_task_list:
        confidence += 0.08
    undated = deadline is None or deadline.due is None
    if not undated:
        confidence += 0.15
    elif deadline is not None:
        confidence -= 0.15  # it names a day already past: more likely a report than a promise
    if _CONDITION.search(lead_in) or _CONDITION.search(body):
        confidence -= 0.1
    if hedged or _BODY_HEDGES.search(body):
        confidence = min(confidence, 0.65)
    if vague and undated:
        confidence = min(confidence, 0.4)  # "let's touch base sometime"
    elif VAGUE_TIME.search(body) and undated:
        confidence = min(confidence, 0.7)  # "I'll send it over shortly": a promise, no date
    if trigger.kind == "unknown_named":
        confidence = min(confidence, 0.55)
    if trigger.kind == "lets" and undated:
        confidence = min(confidence, 0.5)
    return round(max(0.05, min(confidence, 0.95)), 2)


def _lemma(word: str) -> str:
    word = word.lower().strip(",.;:!?\"'()").split("-")[0]
    if word in ACTION_VERBS or not word.endswith("ing"):
        return word
    for candidate in (word[:-3], word[:-3] + "e", word[:-4]):
        if candidate in ACTION_VERBS:
            return candidate
    return word


def _title(body: str, date_spans, first_word: str, actor: str, context: str) -> str:
    """The imperative task title for a clause: verb phrase, no date, no filler."""
    chars = list(body)
    for start, stop in date_spans:
        chars[start:stop] = " " * (stop - start)
    phrase = _CLAUSE_END.sub("", "".join(chars))
    phrase = VAGUE_TIME.sub(" ", phrase)
    phrase = _FILLER.sub(" ", phrase)
    words = phrase.split()
    if not words:
        return ""
    verb = _lemma(words[0]) if words[0] == first_word else words[0].lower()
    words[0] = verb
    if len(words) > 2 and verb in _DITRANSITIVE and words[1].lower() in _INDIRECT_OBJECTS \
            and words[2].lower() not in _PARTICLES:
        del words[1]  # "send you the deck" -> "send the deck"
    swaps = _PRONOUNS_FOR_OWNER[RECIPIENT if actor == RECIPIENT else WRITER]  # named owners speak like writers
    words = [swaps.get(word.lower(), word) for word in words]
    phrase = _trim(" ".join(words))
    phrase = _trim(_normalise_verb(phrase, context))
    if len(phrase) > MAX_ACTION_LENGTH:
        phrase = _trim(phrase[: MAX_ACTION_LENGTH + 1].rsplit(" ", 1)[0])
    return phrase[:1].upper() + phrase[1:]


def _trim(phrase: str) -> str:
    """Drop trailing punctuation and dangling words ("... to the", "... and")."""
    while (trimmed := _TRAILING_JUNK.sub("", phrase)) != phrase:
        phrase = trimmed
    return phrase


def _normalise_verb(phrase: str, context: str) -> str:
    """Make weak verbs say what to do: "try again" after a voicemail is "Call again"."""
    retry = re.match(r"^try (?:(?:them|him|her) )?(?:again|back)\b", phrase, re.I)
    if retry:
        if _CALL_CONTEXT.search(context):
            verb = "call"
        elif _EMAIL_CONTEXT.search(context):
            verb = "email"
        else:
            verb = "follow up"
        return f"{verb} again{phrase[retry.end():]}"
    for pattern, replacement in _VERB_SYNONYMS:
        phrase, count = pattern.subn(replacement, phrase, count=1)
        if count:
            break
    return phrase
