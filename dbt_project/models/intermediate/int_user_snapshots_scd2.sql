{{ config(materialized='table') }}

-- The CRM's view of each user as of any date: signup, country, birth year, opt-in and plan, one
-- row per version (macros/scd2_from_snapshots.sql has the rules).

{{ scd2_from_snapshots(
    ref('stg_users'),
    key='user_id',
    attributes=['signup_date', 'country', 'birth_year', 'marketing_opt_in', 'plan'],
) }}
