-- The engine floor: landing files -> user_daily_features and training_examples in one DuckDB
-- script. No orchestration, no validation, no quarantine, no intermediate files: what the same
-- feature definitions cost when DuckDB does nothing else. Placeholders in double braces are
-- filled by bench/floor.py (landing dir, output dir, the run's knowledge dates, the passes).
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

-- the snapshot each as-of date sees: the latest that arrived on or before it
create temp table snapshot_of as
select
    as_of_date,
    (select max(snapshot_date) from users where snapshot_date <= as_of_date) as users_snapshot,
    (select max(snapshot_date) from products where snapshot_date <= as_of_date)
        as products_snapshot
from as_of_dates;

-- One pass per {{dates_per_pass}} as-of dates (consecutive entries of as_of_dates, which holds
-- no others between a pass's first and last), as refinery's gold run builds a week at a time:
-- every event meets each as-of date whose window holds it, and all as-of dates at once exceed the
-- memory cap at 1M events a day (40 as-of dates for 30 days). bench/floor.py repeats this block.
-- {{begin pass}}
create or replace temp table user_events as
select
    a.as_of_date,
    e.user_id,
    e.event_type,
    e.event_date,
    e.product_id,
    e.amount,
    e.quantity,
    e.device,
    e.session_id,
    a.as_of_date - e.event_date as days_ago,
    p.category
from events as e
inner join as_of_dates as a
    on e.arrival_date <= a.as_of_date
    and e.event_date <= a.as_of_date
    and e.event_date > a.as_of_date - 30
    and a.as_of_date between date '{{pass_first}}' and date '{{pass_last}}'
inner join snapshot_of as s on s.as_of_date = a.as_of_date
left join products as p
    on p.product_id = e.product_id and p.snapshot_date = s.products_snapshot;

{{features_into}}
with aggregates as (
    select
        user_id,
        as_of_date,
        count(*) filter (where days_ago < 1) as events_1d,
        count(*) filter (where days_ago < 7) as events_7d,
        count(*) as events_30d,
        count(*) filter (where event_type = 'view' and days_ago < 1) as views_1d,
        count(*) filter (where event_type = 'view' and days_ago < 7) as views_7d,
        count(*) filter (where event_type = 'view') as views_30d,
        count(*) filter (where event_type = 'click' and days_ago < 1) as clicks_1d,
        count(*) filter (where event_type = 'click' and days_ago < 7) as clicks_7d,
        count(*) filter (where event_type = 'click') as clicks_30d,
        count(*) filter (where event_type = 'add_to_cart' and days_ago < 1) as add_to_carts_1d,
        count(*) filter (where event_type = 'add_to_cart' and days_ago < 7) as add_to_carts_7d,
        count(*) filter (where event_type = 'add_to_cart') as add_to_carts_30d,
        count(*) filter (where event_type = 'purchase' and days_ago < 1) as purchases_1d,
        count(*) filter (where event_type = 'purchase' and days_ago < 7) as purchases_7d,
        count(*) filter (where event_type = 'purchase') as purchases_30d,
        sum(quantity) filter (where event_type = 'purchase') as items_purchased_30d,
        sum(amount) filter (where event_type = 'purchase' and days_ago < 1) as spend_1d,
        sum(amount) filter (where event_type = 'purchase' and days_ago < 7) as spend_7d,
        sum(amount) filter (where event_type = 'purchase') as spend_30d,
        count(distinct session_id) filter (where days_ago < 7) as sessions_7d,
        count(distinct session_id) as sessions_30d,
        count(distinct event_date) as active_days_30d,
        count(distinct product_id) as distinct_products_30d,
        count(distinct category) as distinct_categories_30d,
        min(days_ago) as days_since_last_event,
        count(device) as events_with_device_30d,
        count(*) filter (where device in ('ios', 'android')) as mobile_events_30d
    from user_events
    group by user_id, as_of_date
),
-- most frequent value in the window; ties go to the alphabetically first
favourite_categories as (
    select user_id, as_of_date, first(category order by n desc, category) as category
    from (
        select user_id, as_of_date, category, count(*) as n
        from user_events
        where category is not null
        group by all
    )
    group by all
),
main_devices as (
    select user_id, as_of_date, first(device order by n desc, device) as device
    from (
        select user_id, as_of_date, device, count(*) as n
        from user_events
        where device is not null
        group by all
    )
    group by all
),
last_purchases as (
    select e.user_id, a.as_of_date, max(e.event_date) as last_purchase_date
    from events as e
    inner join as_of_dates as a
        on e.arrival_date <= a.as_of_date
        and e.event_date <= a.as_of_date
        and e.event_date > a.as_of_date - 90
        and a.as_of_date between date '{{pass_first}}' and date '{{pass_last}}'
    where e.event_type = 'purchase'
    group by e.user_id, a.as_of_date
)
select
    cast(g.user_id as varchar) as user_id,
    cast(g.as_of_date as date) as as_of_date,
    cast(events_1d as bigint) as events_1d,
    cast(events_7d as bigint) as events_7d,
    cast(events_30d as bigint) as events_30d,
    cast(views_1d as bigint) as views_1d,
    cast(views_7d as bigint) as views_7d,
    cast(views_30d as bigint) as views_30d,
    cast(clicks_1d as bigint) as clicks_1d,
    cast(clicks_7d as bigint) as clicks_7d,
    cast(clicks_30d as bigint) as clicks_30d,
    cast(add_to_carts_1d as bigint) as add_to_carts_1d,
    cast(add_to_carts_7d as bigint) as add_to_carts_7d,
    cast(add_to_carts_30d as bigint) as add_to_carts_30d,
    cast(purchases_1d as bigint) as purchases_1d,
    cast(purchases_7d as bigint) as purchases_7d,
    cast(purchases_30d as bigint) as purchases_30d,
    cast(coalesce(items_purchased_30d, 0) as bigint) as items_purchased_30d,
    cast(coalesce(spend_1d, 0) as double) as spend_1d,
    cast(coalesce(spend_7d, 0) as double) as spend_7d,
    cast(coalesce(spend_30d, 0) as double) as spend_30d,
    cast(spend_30d / nullif(purchases_30d, 0) as double) as avg_order_value_30d,
    cast(sessions_7d as bigint) as sessions_7d,
    cast(sessions_30d as bigint) as sessions_30d,
    cast(active_days_30d as bigint) as active_days_30d,
    cast(distinct_products_30d as bigint) as distinct_products_30d,
    cast(distinct_categories_30d as bigint) as distinct_categories_30d,
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
left join favourite_categories as fc on fc.user_id = g.user_id and fc.as_of_date = g.as_of_date
left join main_devices as md on md.user_id = g.user_id and md.as_of_date = g.as_of_date
left join last_purchases as lp on lp.user_id = g.user_id and lp.as_of_date = g.as_of_date
left join users as u on u.user_id = g.user_id and u.snapshot_date = s.users_snapshot;

-- {{end pass}}

copy (
    select * from features
    where as_of_date between date '{{min_date}}' and date '{{max_date}}'
) to '{{out_dir}}/user_daily_features.parquet' (format parquet);

copy (
    with labels as (
        select f.user_id, f.as_of_date, cast(count(e.user_id) > 0 as integer) as label
        from features as f
        left join events as e
            on e.user_id = f.user_id
            and e.event_type = 'purchase'
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
