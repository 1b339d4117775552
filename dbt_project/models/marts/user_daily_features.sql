{{
    config(
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'as_of_date'],
        pre_hook="{{ delete_where(this, as_of_condition(as_of_range())) }}"
    )
}}

-- One row per user active (any event in the feature window) on as-of date D, using only what was
-- known at the end of D. Counts are 0 rather than null; ratios and recencies are null when
-- undefined (no denominator, no purchase); profile columns are null for users the CRM snapshot
-- valid on D does not carry. marketing_opt_in is 1/0 (numeric) so a generic consumer can use it.
--
-- The algorithm never pairs events with as-of dates. What an arrival day added to a user's day
-- (int_user_day_events, int_user_day_keys: small, incremental) is known from its arrival on and
-- falls out of a w-day window w - 1 days after the event: it counts on the dates
-- [max(event_date, arrival_date), event_date + w - 1]. Each such interval becomes a +value on its
-- first date and a -value the day after its last; a running sum per user then gives every
-- additive feature as a step function of D. A distinct count (sessions, products, active days)
-- counts a key once on each D its merged intervals cover. The favourites (category by the
-- catalogue valid on D, device) need the count per (user, key, D), from the same step functions
-- per key. Recencies are running maxima of the event date. docs/DESIGN.md has the definitions;
-- tests/gold_reference.py computes them the naive way (events x as-of dates) for the tests.
{%- set as_of = as_of_range() %}
{%- set first, last = date_literal(as_of[0]), date_literal(as_of[1]) %}
{%- set window_days = var('feature_window_days') | int %}
{%- set lookback_days = var('recency_lookback_days') | int %}
{%- set windows = {'1d': 1, '7d': 7, '30d': window_days} %}
{%- set additive = ['events', 'views', 'clicks', 'add_to_carts', 'purchases', 'spend'] %}
{%- set window_only = ['items_purchased', 'events_with_device', 'mobile_events'] %}
{%- set distinct = {'sessions_7d': ('session', 7), 'sessions_30d': ('session', window_days),
    'distinct_products_30d': ('product', window_days), 'active_days_30d': ('day', window_days)} %}
{%- set additive_measures = [] %}
{%- for name in additive %}{% for suffix, days in windows.items() %}{% do additive_measures.append((name ~ '_' ~ suffix, name, days)) %}{% endfor %}{% endfor %}
{%- for name in window_only %}{% do additive_measures.append((name ~ '_30d', name, window_days)) %}{% endfor %}
{%- set measures = [] %}
{%- for measure, _, _ in additive_measures %}{% do measures.append(measure) %}{% endfor %}
{%- for name in distinct %}{% do measures.append(name) %}{% endfor %}
{#- window sizes once each (a sum filters on its size), and the longest: an event counts for
    the recency of its last event only while it is in some window -#}
{%- set window_sizes = windows.values() | unique | list %}
{%- set window_start = date_literal(days_before(as_of[0], window_days - 1)) %}
{%- set in_window = "arrival_date >= " ~ window_start ~ " and greatest(event_date, arrival_date, "
    ~ first ~ ") <= least(event_date + " ~ (window_sizes | max - 1) ~ ", " ~ last ~ ")" %}
{%- set purchase_in_lookback = "purchases > 0 and event_date > "
    ~ date_literal(days_before(as_of[0], lookback_days)) %}

with as_of_dates as (

    select cast(generated_day as date) as as_of_date
    from generate_series(
        cast({{ first }} as timestamp), cast({{ last }} as timestamp), interval 1 day
    ) as days(generated_day)

),

-- arrival_date bounds are literals so the scan prunes; an event counts only from its arrival
-- and event_date <= arrival_date (silver's contract), so nothing older can reach the window
day_events as (

    select * from {{ ref('int_user_day_events') }}
    where arrival_date between {{ date_literal(days_before(as_of[0], lookback_days - 1)) }}
        and {{ last }}

),

day_keys as (

    select * from {{ ref('int_user_day_keys') }}
    where arrival_date between {{ date_literal(days_before(as_of[0], window_days - 1)) }}
        and {{ last }}

),

-- additive measures: each (user, event_date, arrival_date) row counts in a w-day window on
-- [greatest(event_date, arrival_date), event_date + w - 1], clipped to the run's as-of dates: +x
-- on its first day, -x on the day after its last, summed per (user, day) on narrow rows (one per
-- row and window size)
window_sizes as (

    select w from (values
        {%- for days in window_sizes %} ({{ days }}){{ "," if not loop.last }}{% endfor %}
    ) as sizes(w)

),

additive_spans as (

    select
        day_events.*,
        window_sizes.w,
        greatest(event_date, arrival_date, {{ first }}) as first_day,
        least(event_date + window_sizes.w - 1, {{ last }}) as last_day
    from day_events
    cross join window_sizes
    where arrival_date >= {{ window_start }}

),

additive_changes as (

    select
        user_id,
        change_day
        {%- for measure, column, days in additive_measures %},
        sum(sign * {{ column }}) filter (where w = {{ days }}) as {{ measure }}
        {%- endfor %}
    from (
        select *, first_day as change_day, 1 as sign
        from additive_spans where first_day <= last_day
        union all
        select *, last_day + 1, -1
        from additive_spans where first_day <= last_day and last_day < {{ last }}
    ) as signed
    group by user_id, change_day

),

-- distinct keys: the arrivals of one key on one event day all leave a w-day window together
-- (after event_date + w - 1), so together they count from the first of them. A key's days, in
-- the order they became known, each add only the days beyond what the earlier ones cover (up to
-- the latest of their event days + w - 1): disjoint pieces whose union is the key's, so +1 / -1
-- on them counts each key once per date. Ties in first_day may split the pieces differently,
-- never their sum per day. An active day is a key of its own, with one piece.
key_days as (

    select
        user_id,
        kind,
        key,
        event_date,
        greatest(min(greatest(event_date, arrival_date)), {{ first }}) as first_day
    from day_keys
    where arrival_date >= {{ window_start }} and kind in ('session', 'product')
    group by user_id, kind, key, event_date

),

key_cover as (

    select
        *,
        max(event_date) over (
            partition by user_id, kind, key order by first_day
            rows between unbounded preceding and 1 preceding
        ) as covered_until
    from key_days

),

count_pieces as (

    {%- for measure, spec in distinct.items() %}
    {%- set kind, days = spec %}
    {%- if kind == 'day' %}
    select
        user_id,
        '{{ measure }}' as measure,
        greatest(min(greatest(event_date, arrival_date)), {{ first }}) as first_day,
        least(event_date + {{ days - 1 }}, {{ last }}) as last_day
    from day_events
    where arrival_date >= {{ window_start }}
    group by user_id, event_date
    {%- else %}
    select
        user_id,
        '{{ measure }}' as measure,
        greatest(first_day, coalesce(covered_until + {{ days }}, first_day)) as first_day,
        least(event_date + {{ days - 1 }}, {{ last }}) as last_day
    from key_cover
    where kind = '{{ kind }}'
    {%- endif %}
    {{ 'union all' if not loop.last }}
    {%- endfor %}

),

count_changes as (

    select
        user_id,
        change_day
        {%- for measure in distinct %},
        sum(delta) filter (where measure = '{{ measure }}') as {{ measure }}
        {%- endfor %}
    from (
        select user_id, measure, first_day as change_day, 1 as delta
        from count_pieces where first_day <= last_day
        union all
        select user_id, measure, last_day + 1, -1
        from count_pieces where first_day <= last_day and last_day < {{ last }}
    ) as signed
    group by user_id, change_day

),

-- recencies: the latest event day known (of events still in a window when they became known)
-- and the latest purchase day within the look-back, as running maxima from each arrival on
latest_changes as (

    select
        user_id,
        greatest(event_date, arrival_date, {{ first }}) as change_day,
        max(event_date) filter (where {{ in_window }}) as latest_event,
        max(event_date) filter (where {{ purchase_in_lookback }}) as latest_purchase
    from day_events
    where ({{ in_window }}) or ({{ purchase_in_lookback }})
    group by user_id, change_day

),

-- the value of every measure from each change until the next: running sums and maxima per user
steps as (

    select
        user_id,
        change_day,
        coalesce(lead(change_day) over running - 1, {{ last }}) as until_day,
        max(latest_event) over running as latest_event,
        max(latest_purchase) over running as latest_purchase
        {%- for measure in measures %},
        coalesce(sum({{ measure }}) over running, 0) as {{ measure }}
        {%- endfor %}
    from additive_changes
    full join count_changes using (user_id, change_day)
    full join latest_changes using (user_id, change_day)
    window running as (partition by user_id order by change_day rows unbounded preceding)

),

-- the population: every as-of date on which a user has an event in the window
user_days as (

    select steps.*, as_of_dates.as_of_date
    from steps
    inner join as_of_dates
        on as_of_dates.as_of_date between steps.change_day and steps.until_day
    where steps.events_30d > 0

),

-- the catalogue's category of each product as periods: consecutive versions of a product with
-- the same category are one period (a version also changes with brand, price or the active flag,
-- which the favourites do not read), so a product whose category holds through the window meets
-- one period, not every version
category_periods as (

    select
        product_id,
        category,
        min(valid_from) as valid_from,
        -- the last version's end; null (still current) if any version of the period is
        case when count(*) = count(valid_to) then max(valid_to) end as valid_to
    from (
        select
            *,
            sum(case when previous_to = valid_from and previous_category = category then 0 else 1 end)
                over (partition by product_id order by valid_from rows unbounded preceding) as period
        from (
            select
                product_id,
                category,
                valid_from,
                valid_to,
                lag(valid_to) over by_product as previous_to,
                lag(category) over by_product as previous_category
            from {{ ref('int_product_snapshots_scd2') }}
            window by_product as (partition by product_id order by valid_from)
        ) as versions
    ) as numbered
    where category is not null
    group by product_id, category, period

),

-- the favourites: events per (user, key, D); a product's category is the catalogue's on D
ranked_intervals as (

    select
        day_keys.user_id,
        'category' as kind,
        category_periods.category as key,
        greatest(
            day_keys.event_date, day_keys.arrival_date, category_periods.valid_from, {{ first }}
        ) as first_day,
        least(
            day_keys.event_date + {{ window_days - 1 }},
            coalesce(category_periods.valid_to - 1, {{ last }}),
            {{ last }}
        ) as last_day,
        day_keys.events
    from day_keys
    inner join category_periods
        on day_keys.key = category_periods.product_id
        and category_periods.valid_from <= least(day_keys.event_date + {{ window_days - 1 }}, {{ last }})
        and (
            category_periods.valid_to is null
            or category_periods.valid_to > greatest(day_keys.event_date, day_keys.arrival_date, {{ first }})
        )
    where day_keys.kind = 'product'
    union all
    select
        user_id,
        'device',
        key,
        greatest(event_date, arrival_date, {{ first }}),
        least(event_date + {{ window_days - 1 }}, {{ last }}),
        events
    from day_keys
    where kind = 'device'

),

ranked_deltas as (

    select user_id, kind, key, first_day as change_day, events
    from ranked_intervals where first_day <= last_day
    union all
    select user_id, kind, key, last_day + 1, -events
    from ranked_intervals where first_day <= last_day and last_day < {{ last }}

),

ranked_steps as (

    select
        user_id,
        kind,
        key,
        change_day,
        coalesce(
            lead(change_day) over by_key - 1, {{ last }}
        ) as until_day,
        sum(events) over (by_key rows unbounded preceding) as events
    from (
        select user_id, kind, key, change_day, sum(events) as events
        from ranked_deltas
        group by user_id, kind, key, change_day
    ) as per_day
    window by_key as (partition by user_id, kind, key order by change_day)

),

-- the favourite is the key with most events on D, ties to the first by name: the largest of
-- events * (keys + 1) - (the key's place by name), an integer per candidate (an ordered
-- aggregate over the candidates sorts a key per row: 4x the time at 30M events)
key_places as (

    select
        kind,
        key,
        row_number() over (partition by kind order by key) as place,
        count(*) over (partition by kind) + 1 as places
    from (select distinct kind, key from ranked_intervals) as keys

),

favourites as (

    select
        ranked_steps.user_id,
        as_of_dates.as_of_date,
        arg_max(ranked_steps.key, ranked_steps.events * key_places.places - key_places.place)
            filter (where ranked_steps.kind = 'category') as favourite_category_30d,
        count(*) filter (where ranked_steps.kind = 'category') as distinct_categories_30d,
        arg_max(ranked_steps.key, ranked_steps.events * key_places.places - key_places.place)
            filter (where ranked_steps.kind = 'device') as main_device_30d
    from ranked_steps
    inner join key_places using (kind, key)
    inner join as_of_dates
        on as_of_dates.as_of_date between ranked_steps.change_day and ranked_steps.until_day
    where ranked_steps.events > 0
    group by ranked_steps.user_id, as_of_dates.as_of_date

),

user_versions as (

    select * from {{ ref('int_user_snapshots_scd2') }}

),

final as (

    select
        cast(user_days.user_id as varchar) as user_id,
        cast(user_days.as_of_date as date) as as_of_date,
        {%- for name in ['events', 'views', 'clicks', 'add_to_carts', 'purchases'] %}
        {%- for suffix in windows %}
        cast({{ name }}_{{ suffix }} as bigint) as {{ name }}_{{ suffix }},
        {%- endfor %}
        {%- endfor %}
        cast(items_purchased_30d as bigint) as items_purchased_30d,
        cast(spend_1d as double) as spend_1d,
        cast(spend_7d as double) as spend_7d,
        cast(spend_30d as double) as spend_30d,
        cast(spend_30d as double) / nullif(purchases_30d, 0) as avg_order_value_30d,
        cast(sessions_7d as bigint) as sessions_7d,
        cast(sessions_30d as bigint) as sessions_30d,
        cast(active_days_30d as bigint) as active_days_30d,
        cast(distinct_products_30d as bigint) as distinct_products_30d,
        cast(coalesce(favourites.distinct_categories_30d, 0) as bigint) as distinct_categories_30d,
        cast(user_days.as_of_date - user_days.latest_event as bigint) as days_since_last_event,
        cast(
            case
                when user_days.as_of_date - user_days.latest_purchase < {{ lookback_days }}
                    then user_days.as_of_date - user_days.latest_purchase
            end as bigint
        ) as days_since_last_purchase,
        cast(add_to_carts_30d / nullif(views_30d, 0) as double) as view_to_cart_rate_30d,
        cast(purchases_30d / nullif(add_to_carts_30d, 0) as double) as cart_to_purchase_rate_30d,
        cast(
            mobile_events_30d / nullif(events_with_device_30d, 0) as double
        ) as share_mobile_30d,
        cast(favourites.favourite_category_30d as varchar) as favourite_category_30d,
        cast(favourites.main_device_30d as varchar) as main_device_30d,
        cast(user_days.as_of_date - user_versions.signup_date as bigint) as tenure_days,
        cast(year(user_days.as_of_date) - user_versions.birth_year as bigint) as age,
        cast(user_versions.marketing_opt_in as bigint) as marketing_opt_in,
        cast(user_versions.plan as varchar) as plan,
        cast(user_versions.country as varchar) as country

    from user_days
    left join favourites
        on user_days.user_id = favourites.user_id
        and user_days.as_of_date = favourites.as_of_date
    left join user_versions
        on user_days.user_id = user_versions.user_id
        and user_versions.valid_from <= user_days.as_of_date
        and (
            user_versions.valid_to is null
            or user_versions.valid_to > user_days.as_of_date
        )

)

select * from final
