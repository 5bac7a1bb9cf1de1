"""The tally page and data downloads for the press."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from letters.chart import chart_svg, cumulative
from tests.helpers import confirm_api, sign_api


def signed(client, mailbox, email, **fields):
    sign_api(client, email, **fields)
    confirm_api(client, mailbox.last_token())


def test_the_tally_page(client, letter, mailbox):
    signed(client, mailbox, "a@microsoft.com", name="Ada", show_name=True)
    signed(client, mailbox, "b@github.com", name="Hidden Bee")
    page = client.get("/letters/test-letter/tally")
    assert page.status_code == 200
    text = page.text
    assert '<strong class="big">2</strong>' in text
    assert "as of <time" in text
    assert "<td>Microsoft</td><td>1</td>" in text and "<td>GitHub</td><td>1</td>" in text
    today = datetime.now(UTC).date().isoformat()
    assert f"<tr><td>{today}</td><td>2</td><td>2</td></tr>" in text
    assert 'role="img"' in text and "<desc" in text  # the chart has a text alternative
    assert "What it does not prove" in text
    assert "Hidden Bee" not in text
    assert text.count("<script") == 1  # live.js only; the page is whole without it
    assert client.get("/letters/nope/tally").status_code == 404


def test_csv_downloads_hold_only_public_data(client, letter, mailbox):
    signed(client, mailbox, "a@microsoft.com", name="=HYPERLINK(1)", title="Dev", show_name=True)
    signed(client, mailbox, "b@github.com", name="Hidden Bee")
    response = client.get("/api/letters/test-letter/signatures.csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["name", "title", "organization", "signed_at"]
    assert [row[:3] for row in rows[1:]] == [["'=HYPERLINK(1)", "Dev", "Microsoft"]]
    assert rows[1][3] == datetime.now(UTC).date().isoformat()  # signed_at: the day only
    assert "Hidden Bee" not in response.text and "b@github" not in response.text

    daily = list(csv.reader(io.StringIO(client.get("/api/letters/test-letter/daily.csv").text)))
    today = datetime.now(UTC).date().isoformat()
    assert daily == [
        ["day", "organization", "verified"],
        [today, "GitHub", "1"],
        [today, "Microsoft", "1"],
    ]
    assert client.get("/api/letters/nope/daily.csv").status_code == 404
    assert client.get("/api/letters/nope/signatures.csv").status_code == 404


def test_csv_of_many_names_is_complete(client, letter, db):
    from letters.models import Signature, utcnow

    for number in range(2500):
        db.add(
            Signature(
                letter_id=letter.id,
                email_hash=f"{number:064x}",
                commitment=f"{number:064x}",
                domain="github.com",
                organization="GitHub",
                name=f"P{number}",
                show_name=True,
                verified_at=utcnow(),
                updated_at=utcnow(),
            )
        )
    db.commit()
    rows = list(csv.reader(io.StringIO(client.get("/api/letters/test-letter/signatures.csv").text)))
    assert len(rows) == 2501
    assert rows[1][0] == "P0" and rows[-1][0] == "P2499"


def test_chart():
    assert cumulative([("2026-01-01", 3), ("2026-01-02", 4)]) == [
        ("2026-01-01", 3),
        ("2026-01-02", 7),
    ]
    svg = chart_svg([("2026-01-01", 3), ("2026-01-02", 4)], "T <x>")
    assert svg.startswith("<svg") and "<polyline" in svg
    assert "T &lt;x&gt;" in svg
    assert "grew to 7" in svg
    assert "No verified signatures yet." in chart_svg([], "T")


def test_live_count_events(client, letter, mailbox):
    import json

    with client.stream("GET", "/api/letters/test-letter/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == "retry: 3000"
        assert next(lines) == ""
        assert next(lines) == "event: count"
        data = json.loads(next(lines).removeprefix("data: "))
        assert data["verified_count"] == 0 and data["slug"] == "test-letter"
        # A signature confirmed meanwhile arrives as the next event.
        sign_api(client, "live@microsoft.com")
        confirm_api(client, mailbox.last_token())
        assert [next(lines), next(lines)] == ["", "event: count"]
        assert json.loads(next(lines).removeprefix("data: "))["verified_count"] == 1
    assert client.get("/api/letters/nope/events").status_code == 404


def test_live_script_is_served_and_pages_point_at_the_event_stream(client, letter):
    script = client.get("/static/js/live.js")
    assert script.status_code == 200
    assert "EventSource" in script.text and "fetch" in script.text
    for path in ["/letters/test-letter", "/letters/test-letter/tally"]:
        page = client.get(path).text
        assert 'data-live-events="/api/letters/test-letter/events"' in page
        assert 'data-live-poll="/api/letters/test-letter"' in page
        assert 'aria-live="polite"' in page


def test_the_chart_ticks_are_round_numbers_drawn_where_they_belong():
    from letters.chart import BOTTOM, HEIGHT, TOP, y_ticks

    assert y_ticks(3) == [0, 1, 2, 3]  # not 0 / 2 / 5 with "2" drawn at 2.5
    assert y_ticks(5) == [0, 2, 4, 6]
    assert y_ticks(0) == [0, 1]
    assert y_ticks(1234) == [0, 500, 1000, 1500]
    svg = chart_svg([("2026-01-01", 1), ("2026-01-02", 2)], "T")  # 3 signatures
    labels = re.findall(r'<text x="[\d.]+" y="([\d.]+)" text-anchor="end"[^>]*>(\d+)</text>', svg)
    plot = HEIGHT - TOP - BOTTOM
    ys = {int(label): float(y) for y, label in labels}
    assert sorted(ys) == [0, 1, 2, 3]
    for value, y in ys.items():  # each label at its value's height (text sits 5 px lower)
        assert abs(y - 5 - (TOP + plot * (1 - value / 3))) < 0.2


def test_the_chart_spaces_days_by_time_and_keeps_quiet_days_flat():
    from datetime import date

    from letters.chart import LEFT, RIGHT, WIDTH

    svg = chart_svg(
        [("2026-01-01", 1), ("2026-01-02", 1), ("2026-01-11", 1)], "T", until=date(2026, 1, 11)
    )
    points = [
        tuple(map(float, pair.split(",")))
        for pair in re.search(r'points="([^"]+)"', svg).group(1).split()
    ]
    xs = [x for x, _ in points]
    day = (WIDTH - LEFT - RIGHT) / 10  # ten days from the first to the last
    assert abs(xs[0] - LEFT) < 0.1
    assert abs(xs[2] - (LEFT + day)) < 0.1  # the 2nd, one day in, not half the width
    # Flat through the quiet days, up to the 10th, then up on the 11th.
    assert points[3][1] == points[2][1] and abs(points[3][0] - (LEFT + 9 * day)) < 0.1
    assert abs(points[4][0] - (WIDTH - RIGHT)) < 0.1 and points[4][1] < points[3][1]
    assert ">2026-01-01</text>" in svg and ">2026-01-11</text>" in svg
    # Today, days after the last signature: the line goes on, flat, to today.
    later = chart_svg([("2026-01-01", 1)], "T", until=date(2026, 1, 5))
    assert ">2026-01-05</text>" in later


def test_time_elements_carry_valid_moments(client, letter):
    page = client.get("/letters/test-letter/tally").text
    moments = re.findall(r'<time[^>]* datetime="([^"]+)"', page)
    assert moments
    for moment in moments:  # to the second: the HTML standard allows no microseconds
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", moment), moment
