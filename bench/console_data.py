"""The data the console pages benchmark reads: a year of a busy installation.

The real ZIP directory; 150 dealers on real ZIP centres (two of them inactive), a few hundred
territory ZIPs, routes rebuilt with a ROUTE_MAX_KM so that remote ZIPs are unassigned; leads on
random ZIPs with the dealer their ZIP routes to (the unassigned pool where it routes to none),
most acknowledged, each with its follow-up turn (answered, reminded, overdue, moved), its lead
moves; consent events; the outbox rows of each lead (welcome email, the dealer's ADF email and
webhook) with their tries; bounces and the suppressions they caused; refused signups per day;
staff audit entries and consent exports. Written with INSERT ... SELECT generate_series, each
statement in its own transaction and the events in chunks, so that no transaction stays open
long on a shared server.
"""

from __future__ import annotations

import random

import sqlalchemy as sa

from leadsvc.dealers.directory import import_dealers
from leadsvc.dealers.route_builder import rebuild_routes
from leadsvc.extensions import db

DEALERS = 150
#: Kilometres beyond which a ZIP has no dealer (the coverage map's red, the unassigned pool).
ROUTE_MAX_KM = 250.0
#: Consent events written per transaction.
EVENT_CHUNK = 100_000

LEADS = """
INSERT INTO leads (email, email_key, email_as_typed, first_name, last_name, zip5, consent_status,
                   consent_text_version, signup_count, dealer_id, distance_km, routing_reason,
                   routing_version, delivery_seq, utm, acknowledged_at, unsubscribed_at,
                   created_at, updated_at)
SELECT 'p' || n || '@example.com', 'p' || n || '@example.com', 'p' || n || '@example.com',
       'First', 'Last', z.zip5,
       (ARRAY['given', 'given', 'given', 'confirmed', 'pending', 'withdrawn'])[1 + n % 6], 1, 1,
       CASE WHEN n % 50 <> 0 THEN r.dealer_id END, CASE WHEN n % 50 <> 0 THEN r.distance_km END,
       CASE WHEN n % 50 <> 0 THEN coalesce(r.reason, 'unassigned') ELSE 'unassigned' END, 1, n,
       CASE WHEN n % 3 = 0 THEN NULL
            ELSE jsonb_build_object('utm_source', 'src' || n % 4, 'utm_campaign', 'camp' || n % 7)
       END,
       CASE WHEN r.dealer_id IS NOT NULL AND n % 50 <> 0
                 AND (n % 10 <> 0 AND t.at < now() - interval '7 days' OR n % 2 = 0)
            THEN t.at + make_interval(secs => 600 + (n % 97) * 900) END,
       CASE WHEN n % 6 = 5 THEN t.at + interval '3 days' END,
       t.at, t.at
FROM generate_series(1, :leads) AS n
CROSS JOIN LATERAL (SELECT now() - make_interval(secs => (:leads - n) * 31536000.0 / :leads)
                    AS at) AS t
JOIN (SELECT zip5, row_number() OVER (ORDER BY zip5) AS k FROM zip_codes
      WHERE latitude IS NOT NULL) AS z
  ON z.k = 1 + (n * 7919) % (SELECT count(*) FROM zip_codes WHERE latitude IS NOT NULL)
LEFT JOIN zip_routes AS r ON r.zip5 = z.zip5
"""

EVENTS = """
INSERT INTO consent_events (lead_id, subject, event_type, text_version, occurred_at, ip,
                            user_agent, source_url, request_id)
SELECT 1 + n % :leads, 'p' || (1 + n % :leads) || '@example.com',
       CASE WHEN n % 10 = 0 THEN 'withdrawn' ELSE 'given' END, 1,
       now() - make_interval(secs => (:events - n) * 31536000.0 / :events),
       '203.0.113.' || (n % 250),
       'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)',
       'https://www.miniusa.com/stay-in-the-loop?utm_source=bench', md5(n::text)
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n
"""

REST = """
INSERT INTO lead_follow_ups (lead_id, dealer_id, delivery_seq, via, target_hours, started_at,
                             remind_at, due_at, state, reminded_at, overdue_at, paused_seconds,
                             answered_at, answered_by, answer_seconds, ended_at, end_reason)
SELECT id, dealer_id, delivery_seq, CASE WHEN id % 20 = 0 THEN 'reassignment' ELSE 'routing' END,
       24, created_at, created_at + interval '12 hours', created_at + interval '24 hours',
       CASE WHEN acknowledged_at IS NOT NULL THEN 'answered'
            WHEN created_at > now() - interval '1 day' THEN 'open'
            WHEN id % 7 = 0 THEN 'moved' ELSE 'open' END,
       CASE WHEN acknowledged_at IS NULL OR acknowledged_at > created_at + interval '12 hours'
            THEN created_at + interval '12 hours' END,
       CASE WHEN acknowledged_at IS NULL AND created_at < now() - interval '1 day' AND id % 7 <> 0
            THEN created_at + interval '24 hours' END,
       0, acknowledged_at, CASE WHEN acknowledged_at IS NOT NULL THEN 'ack' END,
       extract(epoch FROM acknowledged_at - created_at),
       coalesce(acknowledged_at, CASE WHEN acknowledged_at IS NULL AND id % 7 = 0
                                      AND created_at < now() - interval '1 day'
                                      THEN created_at + interval '24 hours' END),
       CASE WHEN acknowledged_at IS NULL AND id % 7 = 0 AND created_at < now() - interval '1 day'
            THEN 'response_overdue' END
FROM leads WHERE dealer_id IS NOT NULL;
INSERT INTO lead_moves (lead_id, from_dealer_id, to_dealer_id, reason, routing_version, moved_at)
SELECT lead_id, dealer_id, NULL, 'response_overdue', 1, ended_at
FROM lead_follow_ups WHERE state = 'moved';
INSERT INTO outbox (kind, lead_id, dealer_id, payload, status, attempts, generation, created_at,
                    updated_at, sent_at)
SELECT k.kind, l.id, CASE WHEN k.kind <> 'welcome_email' THEN l.dealer_id END,
       jsonb_build_object('lead_id', l.id),
       CASE WHEN l.id % 100 = 0 THEN 'failed' ELSE 'sent' END, 1, 1,
       l.created_at, l.created_at, l.created_at + interval '2 seconds'
FROM leads AS l
JOIN (VALUES ('welcome_email'), ('dealer_email'), ('dealer_webhook')) AS k (kind)
  ON k.kind = 'welcome_email' OR l.dealer_id IS NOT NULL;
INSERT INTO outbox_attempts (outbox_id, number, runner, outcome, started_at, finished_at)
SELECT id, 1, 'bench', status, created_at, created_at + interval '1 second' FROM outbox;
INSERT INTO bounce_events (notification_key, kind, source, lead_id, outbox_id, status, diagnostic,
                           suppressed, received_at)
SELECT md5('bounce' || o.id), CASE WHEN o.lead_id % 3 = 0 THEN 'soft' ELSE 'hard' END, 'ses',
       o.lead_id, o.id, '5.1.1', 'user unknown', o.lead_id % 3 <> 0,
       o.created_at + interval '1 minute'
FROM outbox AS o WHERE o.kind = 'welcome_email' AND o.lead_id % 67 = 0;
UPDATE leads SET bounced_at = b.received_at
FROM bounce_events AS b WHERE b.lead_id = leads.id AND b.suppressed;
INSERT INTO webhook_deliveries (provider, delivery_id, digest, received_at)
SELECT 'ses', 'msg-' || id, md5(id::text) || md5(id::text), received_at FROM bounce_events;
INSERT INTO signup_refusals (day, reason, count)
SELECT current_date - d, r, 1 + (d * 7) % 40
FROM generate_series(0, 364) AS d CROSS JOIN (VALUES ('invalid'), ('bot')) AS x (r);
INSERT INTO staff_audit (at, actor, action, target, ip)
SELECT now() - make_interval(mins => n), 'cli',
       (ARRAY['lead.acknowledge', 'dealer.update', 'consent.export', 'lead.reassign'])[1 + n % 4],
       'lead ' || n, '127.0.0.1'
FROM generate_series(1, 20000) AS n;
INSERT INTO export_audits (actor, started_at, finished_at, filters, format, rows)
SELECT 'cli', now() - make_interval(days => n), now() - make_interval(days => n),
       jsonb_build_object('from', (current_date - n - 30)::text || 'T00:00:00+00:00',
                          'to', (current_date - n)::text || 'T00:00:00+00:00'),
       'csv', 1000000
FROM generate_series(1, 200) AS n
"""


def dealer_csv(session, count: int, seed: int = 7) -> str:
    """`count` dealers on distinct real ZIP centres (a fixed random sample)."""
    zips = session.execute(
        sa.text("SELECT zip5, state FROM zip_codes WHERE latitude IS NOT NULL ORDER BY zip5")
    ).all()
    chosen = random.Random(seed).sample(zips, count)
    lines = ["code,name,street,city,state,zip,phone,lead_email"]
    for n, (zip5, state) in enumerate(chosen, 1):
        lines.append(
            f"B{n:03d},Bench dealer {n},1 Main St,Town,{state},{zip5},(800) 555-0100,"
            f"d{n}@example.com"
        )
    return "\n".join(lines) + "\n"


def dealers_and_routes(app) -> None:
    """The dealers, territories of some, two inactive, and the routing table over them."""
    with db.sessionmaker(app)() as session:
        report = import_dealers(session, dealer_csv(session, DEALERS))
        assert report.applied and report.count("created") == DEALERS, report.rejected
        session.execute(
            sa.text(
                "INSERT INTO territories (zip5, dealer_id, assigned_at) "
                "SELECT zip5, 1 + (row_number() OVER (ORDER BY zip5)) % 40, now() "
                "FROM zip_codes WHERE latitude IS NOT NULL AND zip5 LIKE '%37'"
            )
        )
        session.execute(sa.text("UPDATE dealers SET active = false WHERE code IN ('B149', 'B150')"))
        rebuild_routes(session)
        session.commit()


def fill(engine: sa.Engine, leads: int, events: int) -> None:
    """Everything but the ZIPs, dealers and routes, a statement (or chunk) per transaction."""
    with engine.begin() as connection:
        connection.execute(sa.text(LEADS), {"leads": leads})
    for first in range(1, events + 1, EVENT_CHUNK):
        last = min(first + EVENT_CHUNK - 1, events)
        with engine.begin() as connection:
            connection.execute(
                sa.text(EVENTS), {"leads": leads, "events": events, "first": first, "last": last}
            )
    for statement in REST.split(";\n"):
        with engine.begin() as connection:
            connection.execute(sa.text(statement))
    # What autovacuum does to tables of this age (index-only scans rely on its visibility map).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(sa.text("VACUUM ANALYZE"))
