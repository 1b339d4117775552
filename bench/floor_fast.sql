-- The engine floor: landing files -> user_daily_features and training_examples in one DuckDB
-- script, written the fast way: no relation is ever multiplied by the as-of dates beyond the
-- output's own (user, as-of date) rows (and, for the two favourites, one row per category or
-- device a user has in the window on that date). Events are aggregated first, per (user, event
-- day, arrival day) and per (user, key, event day, arrival day). Each such row counts towards the
-- as-of dates D of an interval: an event day e that arrived on a is known from max(e, a) and
-- stays in a w-day window until e + w, so it contributes +x on max(e, a) and -x on e + w. Those
-- deltas are summed per (user, day) and one running sum per user gives every count and sum for
-- every date at once. A distinct count (sessions, products, active days) counts the union of a
-- key's intervals, each day once; favourites, categories and devices are running sums per
-- (user, category or device); recency, last purchase and the label are running maxima.
-- No orchestration, no validation, no quarantine, no intermediate files: what the feature
-- definitions cost when DuckDB does nothing else.
-- Written apart from refinery's dbt models, from this script's earlier join-to-every-date
-- version (whose results were proven equal to refinery's); bench/floor.sql is the naive SQL a
-- team writes first (every event x every as-of date). Placeholders in double braces are filled by
-- bench/floor.py (landing dir, output dir, the run's knowledge dates, the first and last as-of
-- date).
-- Semantics are refinery's (DESIGN.md "Point-in-time correctness", dbt_project/models): a
-- feature of (user, D) sees events that arrived on or before D with event_date in (D-30, D],
-- the CRM and catalogue snapshot latest on or before D; the label of D is a purchase on D+1..D+7
-- that arrived by D+10. A (user, D) row exists when the user has an event in that 30-day window.
-- It assumes clean landing data (the benchmark generates it with --fault-rate 0): one row per key
-- in a snapshot, no event time after its arrival day.

set TimeZone = 'UTC';
set memory_limit = '{{memory_limit}}';
set preserve_insertion_order = false;
-- spill beside the output (the benchmark deletes it), not into the working directory's .tmp/
set temp_directory = '{{out_dir}}/.spill';

-- the dates the outputs need: features for min..max, training examples (features joined to
-- labels) for min-10..max-10; at L (one day on 30 of history) that is 2 dates, not 11
create temp table as_of_dates as
select cast(unnest([{{as_of_dates}}]) as date) as as_of_date;

-- {{begin landing}}
create temp table events as
with landed as materialized (
    select
        nullif(trim(event_id), '') as event_id,
        nullif(trim(user_id), '') as user_id,
        lower(nullif(trim(event_type), '')) as event_type,
        cast(cast(nullif(trim(event_time), '') as timestamptz) as date) as event_date,
        nullif(trim(product_id), '') as product_id,
        case when lower(trim(event_type)) = 'purchase' then amount end as amount,
        coalesce(quantity, 1) as quantity,
        lower(nullif(trim(device), '')) as device,
        nullif(trim(session_id), '') as session_id,
        -- the arrival date is the file's folder (the glob below has exactly that shape)
        cast(split_part(filename, '/', -2) as date) as arrival_date
    from read_json(
        '{{landing}}/events/*/*.jsonl*',
        format = 'newline_delimited',
        filename = true,
        columns = {
            event_id: 'varchar', user_id: 'varchar', event_type: 'varchar',
            event_time: 'varchar', product_id: 'varchar', amount: 'double',
            quantity: 'integer', device: 'varchar', session_id: 'varchar'
        }
    )
    where cast(split_part(filename, '/', -2) as date) <= date '{{max_date}}'
),
-- a re-delivered event counts once, at its first arrival; re-deliveries are few, so only the
-- ids seen more than once go through the window
repeated as (
    select event_id from landed group by event_id having count(*) > 1
)
select * from landed anti join repeated using (event_id)
union all
select * from (select * from landed semi join repeated using (event_id))
qualify row_number() over (partition by event_id order by arrival_date) = 1;

create temp table users as
select
    trim(user_id) as user_id,
    cast(trim(signup_date) as date) as signup_date,
    upper(trim(country)) as country,
    cast(trim(birth_year) as integer) as birth_year,
    lower(trim(marketing_opt_in)) in ('true', '1', 'yes') as marketing_opt_in,
    lower(trim(plan)) as plan,
    cast(regexp_extract(filename, '/users/([0-9-]{10})/', 1) as date) as snapshot_date
from read_csv('{{landing}}/users/*/users.csv', all_varchar = true, filename = true);

create temp table products as
select
    trim(product_id) as product_id,
    lower(trim(category)) as category,
    cast(regexp_extract(filename, '/products/([0-9-]{10})/', 1) as date) as snapshot_date
from read_csv('{{landing}}/products/*/products.csv', all_varchar = true, filename = true);

-- {{end landing}}
-- the CRM snapshot each as-of date sees: the latest that arrived on or before it
create temp table users_snapshot_of as
select
    as_of_date,
    (select max(snapshot_date) from users where snapshot_date <= as_of_date) as users_snapshot
from as_of_dates;

-- the catalogue as periods: a product's category holds from the snapshot that gave it until the
-- first later snapshot that changes it or lacks the product (the snapshot valid on D is the
-- latest on or before D); a category that never changes is one row, however many snapshots
create temp table category_periods as
with snapshots as (
    select
        snapshot_date,
        lead(snapshot_date, 1, date '9999-12-31') over (order by snapshot_date) as next_snapshot
    from (select distinct snapshot_date from products)
),
listed as (
    select
        p.product_id,
        p.category,
        p.snapshot_date,
        s.next_snapshot,
        lag(s.next_snapshot) over product_order as previous_until,
        lag(p.category) over product_order as previous_category
    from products as p
    inner join snapshots as s on s.snapshot_date = p.snapshot_date
    window product_order as (partition by p.product_id order by p.snapshot_date)
),
numbered as (
    select
        *,
        sum(
            case
                when previous_until = snapshot_date
                    and previous_category is not distinct from category then 0
                else 1
            end
        ) over (
            partition by product_id order by snapshot_date rows unbounded preceding
        ) as period
    from listed
)
select
    product_id,
    category,
    min(snapshot_date) as valid_from,
    max(next_snapshot) as valid_until
from numbered
where category is not null
group by product_id, category, period;

-- what each arrival day added to each user's days (money exact, as refinery sums it); known_from
-- is the first as-of date that sees the row. Older days than 90 before the first as-of date
-- (the last-purchase look-back) can never count.
create temp table user_days as
select
    user_id,
    event_date,
    arrival_date,
    greatest(event_date, arrival_date) as known_from,
    count(*) as n,
    count(*) filter (where event_type = 'view') as views,
    count(*) filter (where event_type = 'click') as clicks,
    count(*) filter (where event_type = 'add_to_cart') as carts,
    count(*) filter (where event_type = 'purchase') as purchases,
    sum(quantity) filter (where event_type = 'purchase') as items,
    sum(cast(amount as decimal(38, 6))) filter (where event_type = 'purchase') as spend,
    count(device) as with_device,
    count(*) filter (where device in ('ios', 'android')) as mobile
from events
where event_date > date '{{first_as_of}}' - 90
group by all;

-- the same per key: sessions and products (distinct counts), products and devices (favourites)
create temp table user_keys as
select
    user_id,
    kind,
    key,
    event_date,
    arrival_date,
    greatest(event_date, arrival_date) as known_from,
    count(*) as n
from (
    select user_id, 'session' as kind, session_id as key, event_date, arrival_date
    from events where session_id is not null
    union all
    select user_id, 'product', product_id, event_date, arrival_date
    from events where product_id is not null
    union all
    select user_id, 'device', device, event_date, arrival_date
    from events where device is not null
)
where event_date > date '{{first_as_of}}' - 30
group by all;

-- every change of a per-user feature, as (user, day, delta) rows: +x where a contribution
-- starts, -x where it ends; recency, last purchase and label as values that a running maximum
-- carries forward. Only starts and ends inside the as-of dates matter: earlier ones are moved to
-- the first as-of date (they are already in effect there), later ones dropped.
create temp table user_changes as
with windows as (
    select w from (values (1), (7), (30)) as t (w)
),
edges as (
    select edge from (values (0), (1)) as t (edge)
),
-- an event day counts in a w-day window from known_from until e + w (never, if it arrived later)
additive as (
    select
        u.user_id,
        windows.w,
        case when edges.edge = 0 then u.known_from else u.event_date + windows.w end as day,
        1 - 2 * edges.edge as sign,
        u.n, u.views, u.clicks, u.carts, u.purchases, u.items, u.spend, u.with_device, u.mobile
    from user_days as u, windows, edges
    where u.known_from < u.event_date + windows.w
),
-- a day is active from its first arrival until it leaves the window
active_days as (
    select user_id, event_date, min(known_from) as known_from
    from user_days
    where event_date > date '{{first_as_of}}' - 30
    group by all
),
-- a session or product counts once while any of its days is in the window: with its days in
-- order of known_from, each day adds only what lies beyond what the earlier ones covered
key_days as (
    select user_id, kind, key, event_date, min(known_from) as known_from
    from user_keys
    where kind in ('session', 'product')
    group by all
),
covered as (
    select
        user_id,
        kind,
        known_from,
        event_date,
        max(event_date + 7) over earlier as covered_7,
        max(event_date + 30) over earlier as covered_30
    from key_days
    window earlier as (
        partition by user_id, kind, key order by known_from
        rows between unbounded preceding and 1 preceding
    )
),
key_parts as (
    select
        user_id,
        kind || '_7' as feature,
        greatest(known_from, coalesce(covered_7, known_from)) as start,
        event_date + 7 as stop
    from covered
    where kind = 'session'
    union all
    select
        user_id,
        kind || '_30',
        greatest(known_from, coalesce(covered_30, known_from)),
        event_date + 30
    from covered
),
-- each source is summed per (user, day) on its own (narrow rows), then the three are joined
additive_changes as (
    select
        user_id,
        greatest(day, date '{{first_as_of}}') as day,
        sum(sign * n) filter (where w = 1) as events_1d,
        sum(sign * n) filter (where w = 7) as events_7d,
        sum(sign * n) filter (where w = 30) as events_30d,
        sum(sign * views) filter (where w = 1) as views_1d,
        sum(sign * views) filter (where w = 7) as views_7d,
        sum(sign * views) filter (where w = 30) as views_30d,
        sum(sign * clicks) filter (where w = 1) as clicks_1d,
        sum(sign * clicks) filter (where w = 7) as clicks_7d,
        sum(sign * clicks) filter (where w = 30) as clicks_30d,
        sum(sign * carts) filter (where w = 1) as add_to_carts_1d,
        sum(sign * carts) filter (where w = 7) as add_to_carts_7d,
        sum(sign * carts) filter (where w = 30) as add_to_carts_30d,
        sum(sign * purchases) filter (where w = 1) as purchases_1d,
        sum(sign * purchases) filter (where w = 7) as purchases_7d,
        sum(sign * purchases) filter (where w = 30) as purchases_30d,
        sum(sign * items) filter (where w = 30) as items_purchased_30d,
        sum(sign * spend) filter (where w = 1) as spend_1d,
        sum(sign * spend) filter (where w = 7) as spend_7d,
        sum(sign * spend) filter (where w = 30) as spend_30d,
        sum(sign * with_device) filter (where w = 30) as events_with_device_30d,
        sum(sign * mobile) filter (where w = 30) as mobile_events_30d
    from additive
    where day <= date '{{last_as_of}}'
    group by all
),
count_changes as (
    select
        user_id,
        greatest(day, date '{{first_as_of}}') as day,
        sum(delta) filter (where feature = 'active') as active_days_30d,
        sum(delta) filter (where feature = 'session_7') as sessions_7d,
        sum(delta) filter (where feature = 'session_30') as sessions_30d,
        sum(delta) filter (where feature = 'product_30') as distinct_products_30d
    from (
        select user_id, known_from as day, 'active' as feature, 1 as delta
        from active_days where known_from < event_date + 30
        union all
        select user_id, event_date + 30, 'active', -1
        from active_days where known_from < event_date + 30
        union all
        select user_id, start, feature, 1 from key_parts where start < stop
        union all
        select user_id, stop, feature, -1 from key_parts where start < stop
    )
    where day <= date '{{last_as_of}}'
    group by all
),
latest_changes as (
    select
        user_id,
        greatest(day, date '{{first_as_of}}') as day,
        max(last_event) as last_event,
        max(last_purchase) as last_purchase,
        max(label_until) as label_until
    from (
        -- the latest event day known by D is the last event (it is in the window if any is)
        select user_id, known_from as day, event_date as last_event
        from user_days where event_date > date '{{first_as_of}}' - 30
        union all by name
        select user_id, known_from as day, event_date as last_purchase
        from user_days where purchases > 0
        union all by name
        -- a purchase on e that arrived on a labels the as-of dates [max(e - 7, a - 10), e)
        select
            user_id, greatest(event_date - 7, arrival_date - 10) as day, event_date as label_until
        from user_days where purchases > 0
    )
    where day <= date '{{last_as_of}}'
    group by all
)
select *
from additive_changes
full join count_changes using (user_id, day)
full join latest_changes using (user_id, day);

-- running sums (and maxima) per user: the value of every feature from each change until the
-- next; each such span is paired with the as-of dates in it, where the user has an event in
-- the window
create temp table user_dates as
with running as (
    select
        user_id,
        day,
        lead(day, 1, date '{{last_as_of}}' + 1) over (partition by user_id order by day) as until,
        sum(events_1d) over upto as events_1d,
        sum(events_7d) over upto as events_7d,
        sum(events_30d) over upto as events_30d,
        sum(views_1d) over upto as views_1d,
        sum(views_7d) over upto as views_7d,
        sum(views_30d) over upto as views_30d,
        sum(clicks_1d) over upto as clicks_1d,
        sum(clicks_7d) over upto as clicks_7d,
        sum(clicks_30d) over upto as clicks_30d,
        sum(add_to_carts_1d) over upto as add_to_carts_1d,
        sum(add_to_carts_7d) over upto as add_to_carts_7d,
        sum(add_to_carts_30d) over upto as add_to_carts_30d,
        sum(purchases_1d) over upto as purchases_1d,
        sum(purchases_7d) over upto as purchases_7d,
        sum(purchases_30d) over upto as purchases_30d,
        sum(items_purchased_30d) over upto as items_purchased_30d,
        sum(spend_1d) over upto as spend_1d,
        sum(spend_7d) over upto as spend_7d,
        sum(spend_30d) over upto as spend_30d,
        sum(events_with_device_30d) over upto as events_with_device_30d,
        sum(mobile_events_30d) over upto as mobile_events_30d,
        sum(active_days_30d) over upto as active_days_30d,
        sum(sessions_7d) over upto as sessions_7d,
        sum(sessions_30d) over upto as sessions_30d,
        sum(distinct_products_30d) over upto as distinct_products_30d,
        max(last_event) over upto as last_event,
        max(last_purchase) over upto as last_purchase,
        max(label_until) over upto as label_until
    from user_changes
    window upto as (partition by user_id order by day rows unbounded preceding)
)
select a.as_of_date, r.* exclude (day, until)
from running as r
inner join as_of_dates as a on a.as_of_date >= r.day and a.as_of_date < r.until
where r.events_30d > 0;

-- favourites: events per (user, category of the catalogue valid on D) and per (user, device),
-- as deltas on the days each (user, product or device, day, arrival) row starts and stops
-- counting; a product's row is split at its category periods. An argmax needs every
-- candidate's count on D, so this is the one relation with more rows than the output: one per
-- (user, D, category or device with events in the window)
create temp table favourite_changes as
with spans as (
    select
        k.user_id,
        'category' as kind,
        p.category as value,
        greatest(k.known_from, p.valid_from) as start,
        least(k.event_date + 30, p.valid_until) as stop,
        k.n
    from user_keys as k
    inner join category_periods as p on p.product_id = k.key
    where k.kind = 'product'
        and greatest(k.known_from, p.valid_from) < least(k.event_date + 30, p.valid_until)
    union all
    select user_id, 'device', key, known_from, event_date + 30, n
    from user_keys
    where kind = 'device' and known_from < event_date + 30
),
changes as (
    select user_id, kind, value, start as day, n from spans
    union all
    select user_id, kind, value, stop as day, -n from spans
)
select user_id, kind, value, greatest(day, date '{{first_as_of}}') as day, sum(n) as n
from changes
where day <= date '{{last_as_of}}'
group by all;

create temp table favourites as
with running as (
    select
        user_id,
        kind,
        value,
        day,
        lead(day, 1, date '{{last_as_of}}' + 1) over per_value as until,
        sum(n) over (per_value rows unbounded preceding) as n
    from favourite_changes
    window per_value as (partition by user_id, kind, value order by day)
)
select
    r.user_id,
    a.as_of_date,
    first(r.value order by r.n desc, r.value) filter (where r.kind = 'category')
        as favourite_category_30d,
    count(*) filter (where r.kind = 'category') as distinct_categories_30d,
    first(r.value order by r.n desc, r.value) filter (where r.kind = 'device') as main_device_30d
from running as r
inner join as_of_dates as a on a.as_of_date >= r.day and a.as_of_date < r.until
where r.n > 0
group by all;

create temp table features as
select
    cast(g.user_id as varchar) as user_id,
    cast(g.as_of_date as date) as as_of_date,
    cast(coalesce(events_1d, 0) as bigint) as events_1d,
    cast(coalesce(events_7d, 0) as bigint) as events_7d,
    cast(events_30d as bigint) as events_30d,
    cast(coalesce(views_1d, 0) as bigint) as views_1d,
    cast(coalesce(views_7d, 0) as bigint) as views_7d,
    cast(coalesce(views_30d, 0) as bigint) as views_30d,
    cast(coalesce(clicks_1d, 0) as bigint) as clicks_1d,
    cast(coalesce(clicks_7d, 0) as bigint) as clicks_7d,
    cast(coalesce(clicks_30d, 0) as bigint) as clicks_30d,
    cast(coalesce(add_to_carts_1d, 0) as bigint) as add_to_carts_1d,
    cast(coalesce(add_to_carts_7d, 0) as bigint) as add_to_carts_7d,
    cast(coalesce(add_to_carts_30d, 0) as bigint) as add_to_carts_30d,
    cast(coalesce(purchases_1d, 0) as bigint) as purchases_1d,
    cast(coalesce(purchases_7d, 0) as bigint) as purchases_7d,
    cast(coalesce(purchases_30d, 0) as bigint) as purchases_30d,
    cast(coalesce(items_purchased_30d, 0) as bigint) as items_purchased_30d,
    cast(coalesce(spend_1d, 0) as double) as spend_1d,
    cast(coalesce(spend_7d, 0) as double) as spend_7d,
    cast(coalesce(spend_30d, 0) as double) as spend_30d,
    cast(spend_30d as double) / nullif(purchases_30d, 0) as avg_order_value_30d,
    cast(coalesce(sessions_7d, 0) as bigint) as sessions_7d,
    cast(coalesce(sessions_30d, 0) as bigint) as sessions_30d,
    cast(active_days_30d as bigint) as active_days_30d,
    cast(coalesce(distinct_products_30d, 0) as bigint) as distinct_products_30d,
    cast(coalesce(f.distinct_categories_30d, 0) as bigint) as distinct_categories_30d,
    cast(g.as_of_date - last_event as bigint) as days_since_last_event,
    cast(
        case when g.as_of_date - last_purchase < 90 then g.as_of_date - last_purchase end
        as bigint
    ) as days_since_last_purchase,
    cast(add_to_carts_30d / nullif(views_30d, 0) as double) as view_to_cart_rate_30d,
    cast(purchases_30d / nullif(add_to_carts_30d, 0) as double) as cart_to_purchase_rate_30d,
    cast(mobile_events_30d / nullif(events_with_device_30d, 0) as double) as share_mobile_30d,
    cast(f.favourite_category_30d as varchar) as favourite_category_30d,
    cast(f.main_device_30d as varchar) as main_device_30d,
    cast(g.as_of_date - u.signup_date as bigint) as tenure_days,
    cast(year(g.as_of_date) - u.birth_year as bigint) as age,
    cast(u.marketing_opt_in as bigint) as marketing_opt_in,
    cast(u.plan as varchar) as plan,
    cast(u.country as varchar) as country,
    cast(coalesce(label_until > g.as_of_date, false) as integer) as label
from user_dates as g
inner join users_snapshot_of as s on s.as_of_date = g.as_of_date
left join favourites as f on f.user_id = g.user_id and f.as_of_date = g.as_of_date
left join users as u on u.user_id = g.user_id and u.snapshot_date = s.users_snapshot;

copy (
    select * exclude (label) from features
    where as_of_date between date '{{min_date}}' and date '{{max_date}}'
) to '{{out_dir}}/user_daily_features.parquet' (format parquet);

copy (
    select * from features
    where as_of_date between date '{{min_date}}' - 10 and date '{{max_date}}' - 10
) to '{{out_dir}}/training_examples.parquet' (format parquet);
