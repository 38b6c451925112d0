-- Analyst views over the readings dataset (DuckDB). The same logic as meterread/tables/logic.py; tests/tables/
-- checks both give the same rows. See docs/tables.md.
--
-- Needs three relations first: `readings` (the dataset), `meters` (meter_id, digits) and `corrections` (the human
-- corrections of `meterread review import`), e.g.
--   CREATE VIEW readings AS SELECT * FROM read_parquet('OUTPUT/capture_date=*/*.parquet',
--       hive_partitioning = true, hive_types = {'capture_date': DATE}, union_by_name = true);
--   CREATE VIEW meters AS SELECT meter_id, digits FROM read_csv('meters.csv');
--   -- no meters table: CREATE VIEW meters AS SELECT NULL::VARCHAR AS meter_id, NULL::INTEGER AS digits LIMIT 0;
--   CREATE VIEW corrections AS SELECT * FROM read_parquet('OUTPUT/_corrections/*.parquet', union_by_name = true);
--   -- none yet: CREATE VIEW corrections AS SELECT NULL::VARCHAR AS image_uri, NULL::VARCHAR AS content_sha256,
--   --     NULL::DECIMAL(24, 6) AS corrected_reading, NULL::VARCHAR AS corrected_by,
--   --     NULL::TIMESTAMPTZ AS corrected_at LIMIT 0;
-- then: .read sql/views.sql  (or con.execute(open('sql/views.sql').read()) in Python)

-- One row per photo: its newest row by (processed_at, run_id). A human correction of the content that row read
-- (same content_sha256; the newest by corrected_at, corrected_reading, corrected_by) wins: reading is the corrected
-- value and status 'accepted'; model_status and model_reading keep the model's verdict.
CREATE OR REPLACE VIEW readings_current AS
WITH newest AS (
    SELECT * EXCLUDE (newest)
    FROM (
        SELECT *, row_number() OVER (PARTITION BY image_uri ORDER BY processed_at DESC, run_id DESC) AS newest
        FROM readings
    )
    WHERE newest = 1
),
applied AS (
    SELECT c.image_uri, c.corrected_reading, c.corrected_by, c.corrected_at
    FROM corrections AS c
    JOIN newest AS n ON n.image_uri = c.image_uri AND n.content_sha256 = c.content_sha256
    QUALIFY row_number() OVER (
        PARTITION BY c.image_uri ORDER BY c.corrected_at DESC, c.corrected_reading DESC, c.corrected_by DESC
    ) = 1
)
SELECT
    n.* REPLACE (
        CASE WHEN a.image_uri IS NULL THEN n.reading ELSE a.corrected_reading END AS reading,
        CASE WHEN a.image_uri IS NULL THEN n.status ELSE 'accepted' END AS status
    ),
    n.status AS model_status,
    n.reading AS model_reading,
    a.corrected_reading,
    a.corrected_by,
    a.corrected_at
FROM newest AS n
LEFT JOIN applied AS a ON a.image_uri = n.image_uri
ORDER BY n.image_uri;

-- Accepted current readings with a meter and a time (the reference series).
CREATE OR REPLACE VIEW accepted_current AS
SELECT meter_id, captured_at, capture_date, reading
FROM readings_current
WHERE status = 'accepted' AND meter_id IS NOT NULL AND captured_at IS NOT NULL AND reading IS NOT NULL;

-- Per meter and capture day: the day's last accepted reading and the usage since the previous day with one.
-- Gaps are marked (gap, days_covered > 1), never zero-filled; a decrease wraps past 10^digits when the register
-- width is known (rollover), else it is marked (decrease) with null usage.
CREATE OR REPLACE VIEW consumption_daily AS
WITH last_of_day AS (
    SELECT * EXCLUDE (last)
    FROM (
        SELECT *, row_number() OVER (
            PARTITION BY meter_id, capture_date ORDER BY captured_at DESC, reading DESC
        ) AS last
        FROM accepted_current
    )
    WHERE last = 1
),
paired AS (
    SELECT
        d.meter_id,
        d.capture_date,
        d.captured_at,
        d.reading,
        lag(d.captured_at) OVER w AS previous_captured_at,
        lag(d.reading) OVER w AS previous_reading,
        CAST(d.capture_date - lag(d.capture_date) OVER w AS INTEGER) AS days_covered,
        CAST(m.digits AS INTEGER) AS digits
    FROM last_of_day AS d
    LEFT JOIN meters AS m ON m.meter_id = d.meter_id
    WINDOW w AS (PARTITION BY d.meter_id ORDER BY d.capture_date)
),
used AS (
    SELECT
        *,
        CAST(CASE
            WHEN reading >= previous_reading THEN reading - previous_reading
            WHEN reading < previous_reading AND digits IS NOT NULL
                THEN CAST(reading AS DECIMAL(38, 6)) - previous_reading + CAST(pow(10, digits) AS DECIMAL(38, 6))
        END AS DECIMAL(24, 6)) AS usage
    FROM paired
)
SELECT
    meter_id,
    capture_date,
    captured_at,
    reading,
    previous_captured_at,
    previous_reading,
    days_covered,
    usage,
    CAST(usage AS DOUBLE) / days_covered AS usage_per_day,
    digits,
    coalesce(reading < previous_reading AND digits IS NOT NULL, false) AS rollover,
    coalesce(reading < previous_reading AND digits IS NULL, false) AS decrease,
    coalesce(days_covered > 1, false) AS gap
FROM used
ORDER BY meter_id, capture_date;

-- Every photo whose current row is flagged or error (a corrected photo is accepted: it has left the queue), with the
-- meter's accepted readings just before and after it, newest capture first (at a tie in time: the higher reading
-- before, the lower one after).
CREATE OR REPLACE VIEW review_queue AS
WITH before_points AS (
    SELECT meter_id, captured_at, max(reading) AS reading FROM accepted_current GROUP BY ALL
),
after_points AS (
    SELECT meter_id, captured_at, min(reading) AS reading FROM accepted_current GROUP BY ALL
),
queued AS (
    SELECT * FROM readings_current WHERE status IN ('flagged', 'error')
),
with_previous AS (
    SELECT q.*, p.captured_at AS previous_captured_at, p.reading AS previous_reading
    FROM queued AS q
    ASOF LEFT JOIN before_points AS p ON q.meter_id = p.meter_id AND q.captured_at > p.captured_at
)
SELECT
    q.image_uri,
    q.meter_id,
    q.captured_at,
    q.capture_date,
    q.status,
    q.reason_codes,
    q.reasons,
    q.reading_text,
    q.reading,
    q.confidence,
    q.previous_captured_at,
    q.previous_reading,
    n.captured_at AS next_captured_at,
    n.reading AS next_reading,
    q.run_id,
    q.processed_at
FROM with_previous AS q
ASOF LEFT JOIN after_points AS n ON q.meter_id = n.meter_id AND q.captured_at < n.captured_at
ORDER BY q.captured_at DESC NULLS LAST, q.image_uri;
