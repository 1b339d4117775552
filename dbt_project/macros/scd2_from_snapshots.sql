{#
  Type-2 history of a daily full snapshot (the CRM's users, the catalogue's products): one row
  per version of a key, with valid_from, valid_to (exclusive) and is_current, so a join can ask
  what the snapshot said on any date.

  A version starts when the key first appears, reappears after missing from a snapshot, or any
  of `attributes` changes (nulls compared as values); it ends at the next snapshot that no
  longer carries it. Only snapshot dates that exist count, so a day without a file ends nobody.

  snapshots: a relation with `key`, `snapshot_date` and the attributes, one row per key and date.
#}
{% macro scd2_from_snapshots(snapshots, key, attributes) %}

with snapshots as (

    select * from {{ snapshots }}

),

snapshot_dates as (

    select
        snapshot_date,
        lag(snapshot_date) over (order by snapshot_date) as previous_snapshot_date,
        lead(snapshot_date) over (order by snapshot_date) as next_snapshot_date

    from (select distinct snapshot_date from snapshots) as distinct_dates

),

snapshots_with_previous as (

    select
        snapshots.*,
        snapshot_dates.previous_snapshot_date,
        lag(snapshots.snapshot_date) over by_key as previous_seen_date
        {%- for column in attributes %},
        lag(snapshots.{{ column }}) over by_key as previous_{{ column }}
        {%- endfor %}

    from snapshots
    inner join snapshot_dates using (snapshot_date)
    window by_key as (partition by snapshots.{{ key }} order by snapshots.snapshot_date)

),

version_starts as (

    select
        *,
        (
            previous_seen_date is null
            or previous_seen_date is distinct from previous_snapshot_date
            {%- for column in attributes %}
            or {{ column }} is distinct from previous_{{ column }}
            {%- endfor %}
        ) as starts_version

    from snapshots_with_previous

),

numbered_versions as (

    select
        *,
        sum(cast(starts_version as integer)) over (
            partition by {{ key }} order by snapshot_date rows unbounded preceding
        ) as version_number

    from version_starts

),

versions as (

    select
        {{ key }},
        version_number,
        min(snapshot_date) as valid_from,
        max(snapshot_date) as last_seen_date
        {%- for column in attributes %},
        arg_min({{ column }}, snapshot_date) as {{ column }}
        {%- endfor %}

    from numbered_versions
    group by {{ key }}, version_number

),

final as (

    select
        versions.{{ key }},
        versions.valid_from,
        snapshot_dates.next_snapshot_date as valid_to,
        snapshot_dates.next_snapshot_date is null as is_current
        {%- for column in attributes %},
        versions.{{ column }}
        {%- endfor %}

    from versions
    inner join snapshot_dates on versions.last_seen_date = snapshot_dates.snapshot_date

)

select * from final

{% endmacro %}
