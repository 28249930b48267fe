"""Operating the lakehouse (SPEC §11): alerts on failed runs and checks, freshness of every
table, and schedules for deployments that prefer a clock to sensors."""
