"""adapter.commitments: notes and emails -> commitments.

Unit cases per behaviour first, then the labeled corpus (tests/corpus/commitments.yaml)
with its precision/recall/due-day floors, then properties over everything.
"""

import re
from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from adapter.commitments import MAX_ACTION_LENGTH, Commitment, extract
from tests.corpus.scoring import action_matches, load_corpus, run_case, score_corpus

NY = "America/New_York"
# Wednesday 2026-03-04, 10:00 in New York.
WEDNESDAY = datetime(2026, 3, 4, 10, 0, tzinfo=ZoneInfo(NY))
FRIDAY_MORNING = datetime(2026, 3, 6, 9, 0, tzinfo=ZoneInfo(NY))
FRIDAY_EVENING = datetime(2026, 3, 6, 18, 30, tzinfo=ZoneInfo(NY))
SUNDAY = datetime(2026, 3, 8, 11, 0, tzinfo=ZoneInfo(NY))


def only(text, sent_at=WEDNESDAY, tz=NY, **options) -> Commitment:
    found = extract(text, sent_at, tz, **options)
    assert len(found) == 1, found
    return found[0]


def local(commitment: Commitment, tz=NY) -> str:
    return commitment.due.astimezone(ZoneInfo(tz)).strftime("%a %Y-%m-%d %H:%M")


# ---------------------------------------------------------------- deadlines


@pytest.mark.parametrize("phrase, sent_at, due", [
    ("by Friday", WEDNESDAY, "Fri 2026-03-06 17:00"),
    ("on Tuesday", WEDNESDAY, "Tue 2026-03-10 17:00"),
    ("by Friday", FRIDAY_MORNING, "Fri 2026-03-06 17:00"),  # same day, before end of day
    ("by Friday", FRIDAY_EVENING, "Fri 2026-03-13 17:00"),  # after end of day: the coming one
    ("next Tuesday", WEDNESDAY, "Tue 2026-03-10 17:00"),  # Tuesday of next week
    ("next Friday", WEDNESDAY, "Fri 2026-03-13 17:00"),
    ("next Tuesday", SUNDAY, "Tue 2026-03-10 17:00"),  # Sunday ends the week
    ("tomorrow", WEDNESDAY, "Thu 2026-03-05 17:00"),
    ("today", WEDNESDAY, "Wed 2026-03-04 17:00"),
    ("today", FRIDAY_EVENING, "Fri 2026-03-06 23:59"),
    ("tonight", WEDNESDAY, "Wed 2026-03-04 21:00"),
    ("EOD", WEDNESDAY, "Wed 2026-03-04 17:00"),
    ("by COB", WEDNESDAY, "Wed 2026-03-04 17:00"),
    ("by end of day tomorrow", WEDNESDAY, "Thu 2026-03-05 17:00"),
    ("EOW", WEDNESDAY, "Fri 2026-03-06 17:00"),
    ("by end of week", WEDNESDAY, "Fri 2026-03-06 17:00"),
    ("by end of month", WEDNESDAY, "Tue 2026-03-31 17:00"),
    ("next week", WEDNESDAY, "Fri 2026-03-13 17:00"),  # end of next week
    ("by next week", WEDNESDAY, "Mon 2026-03-09 17:00"),  # before next week gets going
    ("early next week", WEDNESDAY, "Mon 2026-03-09 17:00"),
    ("in two weeks", WEDNESDAY, "Wed 2026-03-18 17:00"),
    ("in 3 days", WEDNESDAY, "Sat 2026-03-07 17:00"),
    ("within 3 business days", WEDNESDAY, "Mon 2026-03-09 17:00"),
    ("in 2 hours", WEDNESDAY, "Wed 2026-03-04 12:00"),
    ("by the 3rd", WEDNESDAY, "Fri 2026-04-03 17:00"),
    ("by the 20th", WEDNESDAY, "Fri 2026-03-20 17:00"),
    ("Monday morning", WEDNESDAY, "Mon 2026-03-09 09:00"),
    ("first thing Monday", WEDNESDAY, "Mon 2026-03-09 09:00"),
    ("Dec 3", WEDNESDAY, "Thu 2026-12-03 17:00"),
    ("on December 3rd", WEDNESDAY, "Thu 2026-12-03 17:00"),
    ("by 12/3", WEDNESDAY, "Thu 2026-12-03 17:00"),  # US month/day
    ("by 2026-12-03", WEDNESDAY, "Thu 2026-12-03 17:00"),
    ("at 3pm", WEDNESDAY, "Wed 2026-03-04 15:00"),
    ("Thursday at 3:30 pm", WEDNESDAY, "Thu 2026-03-05 15:30"),
    ("by noon Thursday", WEDNESDAY, "Thu 2026-03-05 12:00"),
    ("Friday at 3pm PT", WEDNESDAY, "Fri 2026-03-06 18:00"),  # converted to the writer's zone
    ("by the end of March", WEDNESDAY, "Tue 2026-03-31 17:00"),
])
def test_deadline_rules(phrase, sent_at, due):
    assert local(only(f"I'll send the proposal {phrase}.", sent_at)) == due


def test_deadline_uses_writers_timezone_and_end_of_day():
    # 23:30 UTC Tuesday is already Wednesday morning in Tokyo: "tomorrow" is Thursday there.
    sent = datetime(2026, 3, 3, 23, 30, tzinfo=timezone.utc)
    found = only("I'll send the quote tomorrow.", sent, "Asia/Tokyo", end_of_day=time(18, 30))
    assert local(found, "Asia/Tokyo") == "Thu 2026-03-05 18:30"


def test_custom_workdays_move_end_of_week():
    sunday_to_thursday = frozenset({6, 0, 1, 2, 3})
    found = only("Will send the deck by end of week.", WEDNESDAY, workdays=sunday_to_thursday)
    assert local(found) == "Thu 2026-03-05 17:00"


def test_naive_sent_at_is_utc():
    found = only("I'll send the deck today.", datetime(2026, 3, 4, 10, 0), "UTC")
    assert found.due == datetime(2026, 3, 4, 17, 0, tzinfo=ZoneInfo("UTC"))


@pytest.mark.parametrize("text", [
    "I'll send the recap from the March 2 workshop.",  # a month-day already past
    "I'll send the deck by 2025-12-01.",
])
def test_past_dates_are_not_deadlines(text):
    found = only(text)
    assert found.due is None
    assert found.confidence < 0.8


@pytest.mark.parametrize("text", [
    "I'll call their controller at +1 415 555 0134.",
    "I'll call them back, extension 555-0134.",
    "I'll send the order form for 40 seats at $12,000.",
    "I'll send the notes on what we discussed.",  # "we" is not Wednesday
    "We may send the notes.",  # "may" is not May
    "I'll update 3/4 of the licenses.",  # a fraction, not March 4
])
def test_false_date_words_give_no_deadline(text):
    assert all(c.due is None for c in extract(text, WEDNESDAY, NY))


# ---------------------------------------------------------------- what is (not) a commitment


@pytest.mark.parametrize("text, direction", [
    ("Had a good call, they liked the demo.", "note"),
    ("Budget approved.", "note"),
    ("Thanks!", "inbound"),
    ("The meeting was Tuesday and went well.", "note"),
    ("We are closed Friday.", "inbound"),
    ("We met on Monday to review the pilot.", "note"),
    ("Last week they said the project is on hold.", "note"),
    ("We sat down with the team; the sun was out.", "note"),
    ("Their new CIO wants every team to march in step.", "note"),
    ("Customer will send the signed contract by Friday.", "note"),  # waiting on them, not our task
    ("They'll review the proposal with their board on Thursday.", "note"),
    ("Can you send the signed copy back by Friday?", "outbound"),  # the customer's action
    ("I'll send the PO on Monday once our CFO signs.", "inbound"),  # the customer's own promise
    ("Let me know if you have any questions.", "outbound"),
    ("Please find attached the signed order form.", "inbound"),
    ("Demo scheduled for Thursday at 2pm.", "note"),
    ("Call with the CFO went long.", "note"),
    ("I will be out of office Friday.", "outbound"),
    ("We won't be able to support on-prem this year.", "outbound"),
    ("Should I send the deck to Dana or Raj?", "outbound"),
    ("Will do.", "outbound"),
    ("Please do not send any more marketing emails.", "inbound"),
])
def test_no_commitment(text, direction):
    assert extract(text, WEDNESDAY, NY, direction=direction) == []


def test_several_commitments_in_text_order():
    text = ("I'll send the recording today, schedule a pricing call for Thursday and loop in Priya. "
            "We will review the plan with their champion on Monday.")
    actions = [c.action for c in extract(text, WEDNESDAY, NY)]
    assert actions == ["Send the recording", "Schedule a pricing call", "Loop in Priya",
                       "Review the plan with their champion"]


def test_undated_step_before_a_dated_one_stays_one_promise():
    found = only("Let me check with my team and get back to you by Thursday.", direction="outbound")
    assert found.action == "Check with my team and get back to them"
    assert local(found) == "Thu 2026-03-05 17:00"


# ---------------------------------------------------------------- who acts


@pytest.mark.parametrize("text, direction, known, actor, name", [
    ("I'll send the deck tomorrow.", "note", (), "writer", None),
    ("Will send the deck tomorrow.", "note", (), "writer", None),
    ("Let me send the deck tomorrow.", "outbound", (), "writer", None),
    ("We'll send the deck tomorrow.", "outbound", (), "writer", None),
    ("Can you get us pricing for 40 seats by Thursday?", "inbound", (), "recipient", None),
    ("Please send the W-9.", "inbound", (), "recipient", None),
    ("Could you share the SOC 2 report?", "inbound", (), "recipient", None),
    ("Please send them the MSA before Thursday.", "note", (), "recipient", None),
    ("Maria will call them Monday.", "note", ("Maria Lopez",), "named", "Maria Lopez"),
    ("@Maria please follow up with legal.", "note", ("Maria",), "named", "Maria"),
    ("@maria please follow up with legal.", "note", ("Maria",), "named", "Maria"),
    ("Asked Priya to prepare the sandbox.", "note", ("Priya Shah",), "named", "Priya Shah"),
    ("Tom, can you send the SOC 2 report?", "note", ("Tom",), "named", "Tom"),
    ("Maria said she'd call us on Thursday.", "inbound", ("Maria",), "named", "Maria"),
    ("Dave will run the security review.", "note", ("Maria",), "writer", None),  # unknown: the owner
    ("@Dave please follow up with legal.", "note", ("Maria",), "recipient", None),
])
def test_actor(text, direction, known, actor, name):
    found = only(text, direction=direction, known_people=known)
    assert (found.actor, found.actor_name) == (actor, name)


def test_unknown_named_person_is_below_the_task_threshold():
    assert only("Dave will run the security review by Friday.").confidence < 0.7


# ---------------------------------------------------------------- titles


@pytest.mark.parametrize("text, direction, title", [
    ("I'll send the revised proposal by Friday.", "note", "Send the revised proposal"),
    ("Left a voicemail, will try again tomorrow", "note", "Call again"),
    ("Emailed him twice, no reply. Will try again Monday.", "note", "Email again"),
    ("Can you get us pricing for 40 seats by Thursday?", "inbound", "Get pricing for 40 seats"),
    ("Please call me tomorrow at 10am.", "inbound", "Call them"),
    ("Could you walk our admins through SSO?", "inbound", "Walk their admins through SSO"),
    ("I'll send you the deck asap.", "outbound", "Send the deck"),
    ("I'll review your redlines tonight.", "outbound", "Review their redlines"),
    ("Will circle back with their CFO next week.", "note", "Follow up with their CFO"),
    ("Gonna shoot over the NDA tomorrow.", "note", "Send the NDA"),
    ("I'll have the business case to him by Monday.", "note", "Send the business case"),
    ("I'll have the proposal ready by Dec 3.", "note", "Prepare the proposal"),
    ("We'll have the contract signed by Friday.", "note", "Get the contract signed"),
    ("I'll be sending the pricing deck tomorrow morning.", "note", "Send the pricing deck"),
    ("I'll definitely send the deck so they can review it.", "note", "Send the deck"),
    ("Next steps:\n- Send pricing by Wed", "outbound", "Send pricing"),
])
def test_titles(text, direction, title):
    assert only(text, direction=direction).action == title


def test_long_titles_are_cut_on_a_word_boundary():
    text = ("I'll put together a detailed comparison of our enterprise and professional tiers covering SSO, "
            "audit logs, data residency, sandbox environments and premium support SLAs by Friday.")
    action = only(text).action
    assert len(action) <= MAX_ACTION_LENGTH
    assert text.startswith("I'll " + action[0].lower() + action[1:])
    assert action[-1].isalnum()


# ---------------------------------------------------------------- confidence


@pytest.mark.parametrize("text, low, high", [
    ("I'll send the revised proposal by Friday.", 0.8, 1.0),  # first person, verb, date
    ("I'll send the revised proposal.", 0.7, 0.8),  # no date: medium, still a task
    ("I might send the case study next week.", 0.5, 0.7),  # hedged: confirm first
    ("I'll try to get legal to sign off by Thursday.", 0.5, 0.7),
    ("Probably going to send the pilot scope on Wednesday.", 0.5, 0.7),
    ("If they sign, we'll send the kickoff deck.", 0.5, 0.7),
    ("Let's touch base sometime.", 0.0, 0.5),  # vague
    ("We should talk again soon.", 0.0, 0.5),
    ("I'll keep you posted.", 0.0, 0.5),
])
def test_confidence_bands(text, low, high):
    assert low <= only(text, direction="outbound").confidence < high


# ---------------------------------------------------------------- message cleaning


def test_html_body_keeps_sentence_boundaries_and_entities():
    html = ("<div><p>Spoke w/ Jen. They&#8217;re comparing vendors</p><p>I&#39;ll send the one-pager by "
            "Wednesday&nbsp;&amp; schedule a reference call.</p><br></div>")
    actions = [c.action for c in extract(html, datetime(2026, 3, 2, 9, tzinfo=ZoneInfo(NY)), NY)]
    assert actions == ["Send the one-pager", "Schedule a reference call"]


def test_html_quoted_history_is_ignored():
    html = ('<div>Sounds good.</div><div class="gmail_quote">On Thu, Sam wrote:'
            "<blockquote>Can you send pricing by Friday?</blockquote></div>")
    assert extract(html, WEDNESDAY, NY, direction="inbound") == []


@pytest.mark.parametrize("history", [
    "On Tue, Mar 3, 2026 at 10:02 AM Bob Miller <bob@northwind.example> wrote:\n> I'll send the W-9 by Friday.",
    "-----Original Message-----\nFrom: Bob\nSent: Tuesday\nTo: Anna\nSubject: W-9\n\nI'll send the W-9 by Friday.",
    "> I'll send the W-9 by Friday.\n> Thanks",
])
def test_quoted_replies_are_ignored(history):
    text = f"Received, thanks.\n\n{history}"
    assert extract(text, WEDNESDAY, NY, direction="outbound") == []


@pytest.mark.parametrize("signature", [
    "Best,\nAnna Schmidt\nAccount Executive\n+1 415 555 0134",
    "--\nAnna Schmidt | Out of office Dec 3 - Dec 10",
    "Sent from my iPhone",
])
def test_signatures_are_ignored(signature):
    found = extract(f"I'll call you Friday.\n\n{signature}", WEDNESDAY, NY, direction="outbound")
    assert [(c.action, local(c)) for c in found] == [("Call them", "Fri 2026-03-06 17:00")]


def test_a_sentence_starting_with_thanks_is_not_a_signature():
    text = "Hi Bob,\nThanks, I'll get you the updated quote by Friday.\n\nBest,\nAnna"
    assert only(text, direction="outbound").action == "Get the updated quote"


def test_disclaimer_requests_are_ignored():
    text = ("Could you resend the invoice?\n\nThanks,\nMaya\n\nCONFIDENTIALITY: If you are not the intended "
            "recipient, please notify the sender and delete this email.")
    assert [c.action for c in extract(text, WEDNESDAY, NY, direction="inbound")] == ["Resend the invoice"]


# ---------------------------------------------------------------- API


def test_to_dict_is_json_friendly():
    found = only("I'll send the deck by Friday.")
    assert found.to_dict() == {
        "action": "Send the deck",
        "due": "2026-03-06T17:00:00-05:00",
        "actor": "writer",
        "actor_name": None,
        "confidence": found.confidence,
        "quote": "I'll send the deck by Friday.",
    }


def test_quote_is_the_sentence_as_written():
    found = only("Good call.   I’ll send the revised proposal by Friday!  Thanks")
    assert found.quote == "I’ll send the revised proposal by Friday!"


def test_unknown_direction_is_an_error():
    with pytest.raises(ValueError, match="direction"):
        extract("I'll send it.", WEDNESDAY, direction="sideways")


def test_empty_text():
    assert extract("", WEDNESDAY) == []


# ---------------------------------------------------------------- corpus


CORPUS = load_corpus()
DATE_WORD = re.compile(r"\b(?:mon|tue|wed|thu|fri|sat|sun|may|march|dec|june|tomorrow|week|month|yesterday|\d+(?:st|nd|rd|th)|"
                       r"\d{1,2}/\d{1,2}|\d{3}[ -]\d{4})", re.I)


def test_corpus_shape():
    negatives = [case for case in CORPUS if not case["expected"]]
    assert len(CORPUS) >= 150
    assert len(negatives) >= 40
    assert sum(bool(DATE_WORD.search(case["text"])) for case in negatives) >= 15
    assert len({case["id"] for case in CORPUS}) == len(CORPUS)


def test_corpus_floors():
    score = score_corpus(CORPUS)
    report = (f"precision={score.precision:.3f} recall={score.recall:.3f} due={score.due_day_accuracy:.3f}\n"
              f"misses={score.misses}\nfalse positives={score.false_positives}\nwrong due={score.wrong_due}")
    assert score.precision >= 0.90, report
    assert score.recall >= 0.80, report
    assert score.due_day_accuracy >= 0.90, report
    assert score.actor_accuracy >= 0.90, score.wrong_actor
    assert score.band_accuracy >= 0.80, score.wrong_band


@pytest.mark.parametrize("case", [c for c in CORPUS if not c["expected"]], ids=lambda c: c["id"])
def test_corpus_negatives_never_get_a_due_date(case):
    assert [c for c in run_case(case) if c.due is not None] == []


def test_action_matching_is_verb_and_object():
    assert action_matches("Send the signed copy back", "Send the signed copy")
    assert not action_matches("Send the deck", "Call them")
    assert not action_matches("Send the revised proposal", "Send the invoice")


# ---------------------------------------------------------------- properties


def _check_invariants(found: list[Commitment], sent_at: datetime):
    for commitment in found:
        assert 0 < len(commitment.action) <= MAX_ACTION_LENGTH
        assert commitment.action[0].isupper()
        assert not commitment.action.startswith(("I ", "I'", "We ", "We'"))
        assert commitment.due is None or (commitment.due.tzinfo is not None and commitment.due >= sent_at)
        assert 0.0 <= commitment.confidence <= 1.0
        assert commitment.actor in ("writer", "recipient", "named")
        assert (commitment.actor == "named") == (commitment.actor_name is not None)


def test_invariants_over_corpus():
    for case in CORPUS:
        _check_invariants(run_case(case), datetime.fromisoformat(case["sent_at"]))


_PIECES = ["I'll", "we will", "Maria will", "please", "can you", "send", "call", "the deck", "by Friday", "tomorrow",
           "next week", "at 3pm", "EOD", "the 31st", "12/3", "we", "may", "sat", "+1 415 555 0134", "$12,000",
           "40 seats", "and", ",", ".", "?", "\n", "> ", "Best,", "<p>", "</p>", "Thanks,", "try again", "@Maria"]


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(_PIECES), max_size=25),
    sent_at=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31),
                         timezones=st.sampled_from([ZoneInfo(NY), ZoneInfo("Asia/Tokyo"), timezone.utc])),
    tz=st.sampled_from([NY, "Europe/Berlin", "Asia/Kolkata", "UTC"]),
    direction=st.sampled_from(["note", "outbound", "inbound"]),
)
def test_invariants_over_generated_text(pieces, sent_at, tz, direction):
    found = extract(" ".join(pieces), sent_at, tz, direction=direction, known_people=["Maria"])
    _check_invariants(found, sent_at)
    assert found == extract(" ".join(pieces), sent_at, tz, direction=direction, known_people=["Maria"])
