-- The engine floor: landing files -> user_daily_features and training_examples in one DuckDB
-- script, written the fast way: events are aggregated first, per (user, event day, arrival day)
-- and per (user, key, event day, arrival day), and only those small relations meet the as-of
-- dates; no event is ever paired with a date. No orchestration, no validation, no quarantine, no
-- intermediate files: what the feature definitions cost when DuckDB does nothing else.
-- Written apart from refinery's dbt models (which use interval step functions, not this join);
-- bench/floor.sql is the naive SQL a team writes first (every event x every as-of date). Placeholders in double braces are
-- filled by bench/floor.py (landing dir, output dir, the run's knowledge dates).
-- Semantics are refinery's (DESIGN.md "Point-in-time correctness", dbt_project/models): a
-- feature of (user, D) sees events that arrived on or before D with event_date in (D-30, D],
-- the CRM and catalogue snapshot latest on or before D; the label of D is a purchase on D+1..D+7 that arrived by D+10.
-- It assumes clean landing data (the benchmark generates it with --fault-rate 0).

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
with landed as (
    select
        nullif(trim(event_id), '') as event_id,
        nullif(trim(user_id), '') as user_id,
        lower(nullif(trim(event_type), '')) as event_type,
        cast(nullif(trim(event_time), '') as timestamptz) as event_time,
        nullif(trim(product_id), '') as product_id,
        amount,
        coalesce(quantity, 1) as quantity,
        lower(nullif(trim(device), '')) as device,
        nullif(trim(session_id), '') as session_id,
        cast(regexp_extract(filename, '/events/([0-9-]{10})/', 1) as date) as arrival_date
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
)
select
    event_id,
    user_id,
    event_type,
    cast(event_time as date) as event_date,
    product_id,
    case when event_type = 'purchase' then amount end as amount,
    quantity,
    device,
    session_id,
    arrival_date
from landed
where arrival_date <= date '{{max_date}}'
-- a re-delivered event counts once, at its first arrival
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
-- the snapshot each as-of date sees: the latest that arrived on or before it
create temp table snapshot_of as
select
    as_of_date,
    (select max(snapshot_date) from users where snapshot_date <= as_of_date) as users_snapshot,
    (select max(snapshot_date) from products where snapshot_date <= as_of_date)
        as products_snapshot
from as_of_dates;

-- what each arrival day added to each user's days (money exact, as refinery sums it)
create temp table user_days as
select
    user_id,
    event_date,
    arrival_date,
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
group by all;

create temp table user_keys as
select user_id, kind, key, event_date, arrival_date, count(*) as n
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
group by all;

create temp table known_days as
select a.as_of_date, u.*, a.as_of_date - u.event_date as days_ago
from user_days as u
inner join as_of_dates as a
    on u.arrival_date <= a.as_of_date
    and u.event_date <= a.as_of_date
    and u.event_date > a.as_of_date - 30;

create temp table known_keys as
select a.as_of_date, k.*, a.as_of_date - k.event_date as days_ago
from user_keys as k
inner join as_of_dates as a
    on k.arrival_date <= a.as_of_date
    and k.event_date <= a.as_of_date
    and k.event_date > a.as_of_date - 30;

create temp table features as
with aggregates as (
    select
        user_id,
        as_of_date,
        sum(n) filter (where days_ago < 1) as events_1d,
        sum(n) filter (where days_ago < 7) as events_7d,
        sum(n) as events_30d,
        sum(views) filter (where days_ago < 1) as views_1d,
        sum(views) filter (where days_ago < 7) as views_7d,
        sum(views) as views_30d,
        sum(clicks) filter (where days_ago < 1) as clicks_1d,
        sum(clicks) filter (where days_ago < 7) as clicks_7d,
        sum(clicks) as clicks_30d,
        sum(carts) filter (where days_ago < 1) as add_to_carts_1d,
        sum(carts) filter (where days_ago < 7) as add_to_carts_7d,
        sum(carts) as add_to_carts_30d,
        sum(purchases) filter (where days_ago < 1) as purchases_1d,
        sum(purchases) filter (where days_ago < 7) as purchases_7d,
        sum(purchases) as purchases_30d,
        sum(items) as items_purchased_30d,
        sum(spend) filter (where days_ago < 1) as spend_1d,
        sum(spend) filter (where days_ago < 7) as spend_7d,
        sum(spend) as spend_30d,
        count(distinct event_date) as active_days_30d,
        min(days_ago) as days_since_last_event,
        sum(with_device) as events_with_device_30d,
        sum(mobile) as mobile_events_30d
    from known_days
    group by all
),
key_counts as (
    select
        user_id,
        as_of_date,
        count(distinct key) filter (where kind = 'session' and days_ago < 7) as sessions_7d,
        count(distinct key) filter (where kind = 'session') as sessions_30d,
        count(distinct key) filter (where kind = 'product') as distinct_products_30d
    from known_keys
    group by all
),
categories as (
    select k.user_id, k.as_of_date, p.category, sum(k.n) as n
    from known_keys as k
    inner join snapshot_of as s on s.as_of_date = k.as_of_date
    inner join products as p
        on p.product_id = k.key and p.snapshot_date = s.products_snapshot
    where k.kind = 'product' and p.category is not null
    group by all
),
favourite_categories as (
    select
        user_id,
        as_of_date,
        first(category order by n desc, category) as category,
        count(*) as distinct_categories_30d
    from categories
    group by all
),
main_devices as (
    select user_id, as_of_date, first(key order by n desc, key) as device
    from (
        select user_id, as_of_date, key, sum(n) as n
        from known_keys
        where kind = 'device'
        group by all
    )
    group by all
),
last_purchases as (
    select u.user_id, a.as_of_date, max(u.event_date) as last_purchase_date
    from user_days as u
    inner join as_of_dates as a
        on u.arrival_date <= a.as_of_date
        and u.event_date <= a.as_of_date
        and u.event_date > a.as_of_date - 90
    where u.purchases > 0
    group by all
)
select
    cast(g.user_id as varchar) as user_id,
    cast(g.as_of_date as date) as as_of_date,
    cast(coalesce(events_1d, 0) as bigint) as events_1d,
    cast(coalesce(events_7d, 0) as bigint) as events_7d,
    cast(events_30d as bigint) as events_30d,
    cast(coalesce(views_1d, 0) as bigint) as views_1d,
    cast(coalesce(views_7d, 0) as bigint) as views_7d,
    cast(views_30d as bigint) as views_30d,
    cast(coalesce(clicks_1d, 0) as bigint) as clicks_1d,
    cast(coalesce(clicks_7d, 0) as bigint) as clicks_7d,
    cast(clicks_30d as bigint) as clicks_30d,
    cast(coalesce(add_to_carts_1d, 0) as bigint) as add_to_carts_1d,
    cast(coalesce(add_to_carts_7d, 0) as bigint) as add_to_carts_7d,
    cast(add_to_carts_30d as bigint) as add_to_carts_30d,
    cast(coalesce(purchases_1d, 0) as bigint) as purchases_1d,
    cast(coalesce(purchases_7d, 0) as bigint) as purchases_7d,
    cast(purchases_30d as bigint) as purchases_30d,
    cast(coalesce(items_purchased_30d, 0) as bigint) as items_purchased_30d,
    cast(coalesce(spend_1d, 0) as double) as spend_1d,
    cast(coalesce(spend_7d, 0) as double) as spend_7d,
    cast(coalesce(spend_30d, 0) as double) as spend_30d,
    cast(spend_30d as double) / nullif(purchases_30d, 0) as avg_order_value_30d,
    cast(coalesce(sessions_7d, 0) as bigint) as sessions_7d,
    cast(coalesce(sessions_30d, 0) as bigint) as sessions_30d,
    cast(active_days_30d as bigint) as active_days_30d,
    cast(coalesce(distinct_products_30d, 0) as bigint) as distinct_products_30d,
    cast(coalesce(fc.distinct_categories_30d, 0) as bigint) as distinct_categories_30d,
    cast(days_since_last_event as bigint) as days_since_last_event,
    cast(g.as_of_date - lp.last_purchase_date as bigint) as days_since_last_purchase,
    cast(add_to_carts_30d / nullif(views_30d, 0) as double) as view_to_cart_rate_30d,
    cast(purchases_30d / nullif(add_to_carts_30d, 0) as double) as cart_to_purchase_rate_30d,
    cast(mobile_events_30d / nullif(events_with_device_30d, 0) as double) as share_mobile_30d,
    cast(fc.category as varchar) as favourite_category_30d,
    cast(md.device as varchar) as main_device_30d,
    cast(g.as_of_date - u.signup_date as bigint) as tenure_days,
    cast(year(g.as_of_date) - u.birth_year as bigint) as age,
    cast(u.marketing_opt_in as bigint) as marketing_opt_in,
    cast(u.plan as varchar) as plan,
    cast(u.country as varchar) as country
from aggregates as g
inner join snapshot_of as s on s.as_of_date = g.as_of_date
left join key_counts as kc on kc.user_id = g.user_id and kc.as_of_date = g.as_of_date
left join favourite_categories as fc on fc.user_id = g.user_id and fc.as_of_date = g.as_of_date
left join main_devices as md on md.user_id = g.user_id and md.as_of_date = g.as_of_date
left join last_purchases as lp on lp.user_id = g.user_id and lp.as_of_date = g.as_of_date
left join users as u on u.user_id = g.user_id and u.snapshot_date = s.users_snapshot;


copy (
    select * from features
    where as_of_date between date '{{min_date}}' and date '{{max_date}}'
) to '{{out_dir}}/user_daily_features.parquet' (format parquet);

copy (
    with labels as (
        select f.user_id, f.as_of_date, cast(count(e.user_id) > 0 as integer) as label
        from features as f
        left join user_days as e
            on e.user_id = f.user_id
            and e.purchases > 0
            and e.event_date > f.as_of_date
            and e.event_date <= f.as_of_date + 7
            and e.arrival_date <= f.as_of_date + 10
        where f.as_of_date between date '{{min_date}}' - 10 and date '{{max_date}}' - 10
        group by f.user_id, f.as_of_date
    )
    select features.*, labels.label
    from features
    inner join labels using (user_id, as_of_date)
) to '{{out_dir}}/training_examples.parquet' (format parquet);
