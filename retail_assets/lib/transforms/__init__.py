"""Pure PySpark transformations: DataFrames in, DataFrames out, no I/O and no Dagster."""
