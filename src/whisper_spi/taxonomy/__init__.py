"""The taxonomy stage (rules taxonomy, taxonomy_summary): error types of every decode and
their summary tables and figure."""
