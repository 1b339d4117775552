-- The as-of dates this run computes features for: one per knowledge date of the run.
{%- set knowledge = knowledge_date_range() %}

with as_of_dates as (

    select cast(generated_day as date) as as_of_date
    from generate_series(
        cast({{ date_literal(knowledge[0]) }} as timestamp),
        cast({{ date_literal(knowledge[1]) }} as timestamp),
        interval 1 day
    ) as days(generated_day)

)

select * from as_of_dates
