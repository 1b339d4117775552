{{
    config(
        incremental_strategy='delete+insert',
        unique_key=['user_id', 'as_of_date'],
        pre_hook="{{ delete_where(this, as_of_condition(label_as_of_range())) }}"
    )
}}

-- Features of (user, D) with the label of (user, D): the key, every feature column in the order
-- of user_daily_features, then label last. Only labelled rows: D must be D+horizon+lateness old.
{%- set label_range = label_as_of_range() %}

with features as (

    select *
    from {{ ref('user_daily_features') }}
    where {{ as_of_condition(label_range) }}

),

labels as (

    select user_id, as_of_date, label
    from {{ ref('labels') }}
    where {{ as_of_condition(label_range) }}

),

final as (

    select
        features.*,
        labels.label

    from features
    inner join labels
        on features.user_id = labels.user_id
        and features.as_of_date = labels.as_of_date

)

select * from final
