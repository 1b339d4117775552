{#-
    Fails with one row per duplicated key: the compound-key test that dbt_utils would give us
    (packages cannot be installed in this environment).
-#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with duplicated_keys as (

    select
        {{ combination_of_columns | join(', ') }},
        count(*) as rows_with_key

    from {{ model }}
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1

)

select * from duplicated_keys

{% endtest %}
